#!/usr/bin/env python3
"""Tiny Hugging Face checkpoints for the loader's tests (trainer/tests/hf.rs), saved by transformers:
a randomly initialized BertForSequenceClassification in f32, the same in bf16, and the f32 one sharded
(model.safetensors.index.json), with golden logits of fixed inputs computed by transformers in float32
from exactly the weights each directory holds.

Run at generation time only (needs torch and transformers):  python3 benches/peer/make_hf_fixtures.py
"""
import json, os, shutil
import torch
from transformers import BertConfig, BertForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "trainer", "tests", "fixtures", "hf")

def main():
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=24, max_position_embeddings=20, type_vocab_size=2, num_labels=3,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg).eval()
    ids = torch.tensor([[2, 7, 19, 33, 4, 0, 0], [2, 48, 5, 9, 11, 30, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    golden = {"generator": "benches/peer/make_hf_fixtures.py", "transformers": __import__("transformers").__version__,
              "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "dirs": {}}
    variants = [("tiny-bert", {}, torch.float32), ("tiny-bert-bf16", {}, torch.bfloat16),
                ("tiny-bert-sharded", {"max_shard_size": "20KB"}, torch.float32)]
    for name, kw, dtype in variants:
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model.to(dtype).save_pretrained(d, safe_serialization=True, **kw)
        model.to(torch.float32)
        # the reference: the saved weights, read back, run in float32
        back = BertForSequenceClassification.from_pretrained(d, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            logits = back(input_ids=ids, attention_mask=mask).logits
        golden["dirs"][name] = logits.tolist()
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", os.path.normpath(OUT))

if __name__ == "__main__":
    main()
