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
    # bf16 last: casting the model to bf16 and back rounds its weights
    variants = [("tiny-bert", {}, torch.float32), ("tiny-bert-sharded", {"max_shard_size": "20KB"}, torch.float32),
                ("tiny-bert-bf16", {}, torch.bfloat16)]
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
    # RoBERTa: positions from pad_token_id + 1, one token type, a classification head on the first token
    from transformers import RobertaConfig, RobertaForSequenceClassification
    torch.manual_seed(8)
    rcfg = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=24, max_position_embeddings=22, type_vocab_size=1, num_labels=3,
                         pad_token_id=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    rmodel = RobertaForSequenceClassification(rcfg).eval()
    d = os.path.join(OUT, "tiny-roberta")
    shutil.rmtree(d, ignore_errors=True)
    rmodel.save_pretrained(d, safe_serialization=True)
    with torch.no_grad():
        golden["dirs"]["tiny-roberta"] = rmodel(input_ids=ids, attention_mask=mask).logits.tolist()
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", os.path.normpath(OUT))



def make_tokenizer_and_embed_golden():
    """A WordPiece tokenizer.json for the tiny checkpoints (50 tokens, the model's vocab_size) and the
    golden `medtrain embed` output: transformers' BertModel (the encoder of tiny-bert) on a text,
    pooled by [CLS] and by the masked mean of the last hidden state."""
    from transformers import BertModel
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "patient", "has", "high", "low", "glucose",
             "blood", "pressure", "no", "fever", "and", "is", "was", "today", "##s", "##ing", "##ed", "a", "of",
             "in", "with", "pain", "chest", "normal", "level", "test", "result", ".", ",", "血", "糖", "値", "高",
             "い", "患", "者", "は", "の", "が", "を", "に", "で", "##al", "##ly", "up"]
    assert len(words) == 50
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    model = BertModel.from_pretrained(os.path.join(OUT, "tiny-bert"), torch_dtype=torch.float32).eval()
    cases = []
    for text in ["The patient has high blood glucose today.", "患者は血糖値が高い", "no fever and normal tests"]:
        ids = torch.tensor([tok.encode(text).ids])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        cases.append({"text": text, "input_ids": ids[0].tolist(), "cls": h[0].tolist(), "mean": h.mean(0).tolist()})
    for name in ["tiny-bert", "tiny-bert-bf16", "tiny-bert-sharded"]:
        tok.save(os.path.join(OUT, name, "tokenizer.json"))
    with open(os.path.join(OUT, "golden_embed.json"), "w") as f:
        json.dump({"generator": "benches/peer/make_hf_fixtures.py", "dir": "tiny-bert", "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
    make_tokenizer_and_embed_golden()
