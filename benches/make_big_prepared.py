#!/usr/bin/env python3
"""Write a large synthetic `medtrain data prepare` directory, for memory measurements of `medtrain train`.

Standard library only, and streaming: the tensors are written example by example in chunks, so the
generator holds only a bank of row templates and a few small per-example arrays, whatever the size of
the output (about 250 MB of Python memory at the defaults, for any --train).

Layout (trainer/src/data/prepared.rs, trainer/src/data/prepare.rs): OUT/manifest.json and, per split
(train, tuning, held_out), OUT/<split>.safetensors with `site` [n] i64, `subject` [n] i64 (group ids
0, 1, ... in first-seen order), `lab_mask`, `lab_since_last`, `lab_values` [n, T, K] f32 and `y` [n] f32,
in that order (the order `data prepare` writes). No notes (note_tokens = 0).

The manifest is a copy of a small real one (--template, written by `medtrain data prepare`) with the
counts, channels, buckets and normalization replaced. Channels are the first K catalogue analytes
(trainer/src/data/catalog.tsv), those with a public reference interval first.

Values: a bank of --bank row templates, each one synthetic patient window (per channel a patient mean
and an observation rate; per bucket the last value, the mask, and the time since the last observation
as a fraction of the lookback, 1 when none, carried forward as `data prepare` computes it). Each example
is a template drawn at random; its label is Bernoulli(sigmoid(a * score + b)), where the score is the
mean observed normalized creatinine plus 0.7 times that of urea nitrogen (channels 0 and 1) and b is set so that about --positive
of the labels are 1: a learnable signal, so training is not degenerate. Subjects have 1 to 7 examples
(mean 4) and a random site.

Example (about 4 GB):
    python3 benches/make_big_prepared.py --template /tmp/rss/small/manifest.json \
        --out /tmp/rss/big --train 220000 --tuning 4000 --held-out 4000
"""

import argparse
import array
import hashlib
import json
import math
import os
import random
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOG = os.path.join(HERE, "..", "trainer", "src", "data", "catalog.tsv")


def catalogue(path, k):
    """The first k analytes: those with a reference interval first, as (name, lo, hi, source)."""
    with_ref, without = [], []
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]
    head = rows[0]
    col = {name: i for i, name in enumerate(head)}
    for r in rows[1:]:
        name = r[col["name"]]
        if r[col["ref_low"]] != "-":
            with_ref.append((name, float(r[col["ref_low"]]), float(r[col["ref_high"]]), r[col["source"]]))
        else:
            # `data prepare` would normalize these with DP quantiles; the plausible range stands in
            lo, hi = float(r[col["plausible_low"]]), float(r[col["plausible_high"]])
            without.append((name, lo, hi, "dp_quantiles"))
    chosen = (with_ref + without)[:k]
    if len(chosen) < k:
        sys.exit(f"the catalogue has only {len(chosen)} analytes, {k} channels asked")
    return chosen


def f32_bytes(values):
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def i64_bytes(values):
    a = array.array("q", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def make_bank(rng, size, t, k):
    """Row templates: (values, mask, since_last) bytes of T*K f32 each, and a risk score."""
    bank = []
    for _ in range(size):
        means = [rng.gauss(0.0, 0.7) for _ in range(k)]
        rates = [rng.uniform(0.02, 0.3) for _ in range(k)]
        # an observation before the window: its distance before the window start, as a fraction
        prior = [rng.uniform(0.0, 0.5) if rng.random() < 0.5 else None for _ in range(k)]
        values = [0.0] * (t * k)
        mask = [0.0] * (t * k)
        since = [1.0] * (t * k)
        last = [(-p) if p is not None else None for p in prior]  # time of last observation (window = [0, 1])
        observed = {0: [], 1: []}
        for b in range(t):
            end = (b + 1) / t
            for ch in range(k):
                i = b * k + ch
                if rng.random() < rates[ch]:
                    v = max(-10.0, min(10.0, means[ch] + rng.gauss(0.0, 0.3)))
                    values[i] = v
                    mask[i] = 1.0
                    last[ch] = (b + rng.random()) / t
                    if ch in observed:
                        observed[ch].append(v)
                if last[ch] is not None:
                    since[i] = max(0.0, min(1.0, end - last[ch]))
        # risk from channels 0 and 1 (creatinine, urea nitrogen); the patient mean when unobserved
        s0 = sum(observed[0]) / len(observed[0]) if observed[0] else means[0]
        s1 = sum(observed[1]) / len(observed[1]) if observed[1] else means[1]
        score = s0 + 0.7 * s1
        bank.append((f32_bytes(values), f32_bytes(mask), f32_bytes(since), score))
    return bank


def calibrate(scores, slope, positive):
    """b such that the mean of sigmoid(slope * score + b) over the bank is `positive`."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        mean = sum(1.0 / (1.0 + math.exp(-(slope * s + mid))) for s in scores) / len(scores)
        if mean < positive:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def plan_split(rng, n, bank, slope, bias, sites):
    """Per example: template index, label, subject group id, site."""
    idx = array.array("I")
    y = array.array("f")
    subject = array.array("q")
    site = array.array("q")
    g = 0
    while len(idx) < n:
        m = min(rng.randint(1, 7), n - len(idx))
        s = rng.randrange(sites)
        for _ in range(m):
            j = rng.randrange(len(bank))
            p = 1.0 / (1.0 + math.exp(-(slope * bank[j][3] + bias)))
            idx.append(j)
            y.append(1.0 if rng.random() < p else 0.0)
            subject.append(g)
            site.append(s)
        g += 1
    return idx, y, subject, site, g


def write_split(path, name, fingerprint, plan, bank, t, k, chunk=2048):
    idx, y, subject, site, _ = plan
    n = len(idx)
    row = t * k * 4
    tensors = [
        ("site", "I64", [n], 8 * n),
        ("subject", "I64", [n], 8 * n),
        ("lab_mask", "F32", [n, t, k], row * n),
        ("lab_since_last", "F32", [n, t, k], row * n),
        ("lab_values", "F32", [n, t, k], row * n),
        ("y", "F32", [n], 4 * n),
    ]
    header = {"__metadata__": {"split": name, "fingerprint": fingerprint}}
    off = 0
    for tname, dtype, shape, size in tensors:
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
        off += size
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # pad the header to 8 bytes, as the safetensors writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.write(i64_bytes(site))
        f.write(i64_bytes(subject))
        for part in (1, 2, 0):  # lab_mask, lab_since_last, lab_values
            for c in range(0, n, chunk):
                f.write(b"".join(bank[j][part] for j in idx[c : c + chunk]))
        f.write(f32_bytes(y))
        size = f.tell()
    expected = 8 + len(hb) + off
    if size != expected:
        sys.exit(f"{tmp}: wrote {size} bytes, expected {expected}")
    os.replace(tmp, path)
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--template", required=True, help="manifest.json of a small `medtrain data prepare` output")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=220000, help="train examples")
    ap.add_argument("--tuning", type=int, default=4000)
    ap.add_argument("--held-out", type=int, default=4000)
    ap.add_argument("--buckets", type=int, default=24)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--bank", type=int, default=8192, help="row templates")
    ap.add_argument("--positive", type=float, default=0.4, help="fraction of positive labels")
    ap.add_argument("--slope", type=float, default=2.0, help="log-odds per unit of the risk score")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--catalog", default=CATALOG)
    a = ap.parse_args()

    t0 = time.time()
    with open(a.template, encoding="utf-8") as f:
        manifest = json.load(f)
    t, k = a.buckets, a.channels
    chans = catalogue(a.catalog, k)
    rng = random.Random(a.seed)
    bank = make_bank(rng, a.bank, t, k)
    bias = calibrate([b[3] for b in bank], a.slope, a.positive)
    print(f"bank of {a.bank} templates in {time.time() - t0:.1f} s (bias {bias:.3f})", file=sys.stderr)

    sites = len(manifest.get("sites") or ["site-01"])
    counts = {"train": a.train, "tuning": a.tuning, "held_out": a.held_out}
    plans = {s: plan_split(rng, n, bank, a.slope, bias, sites) for s, n in counts.items()}
    params = json.dumps(vars(a), sort_keys=True).encode()
    fingerprint = "sha256:" + hashlib.sha256(b"medtrain synthetic prepared\n" + params).hexdigest()

    os.makedirs(a.out, exist_ok=True)
    total = 0
    for s, plan in plans.items():
        size = write_split(os.path.join(a.out, f"{s}.safetensors"), s, fingerprint, plan, bank, t, k)
        total += size
        print(f"{s}: {len(plan[0])} examples, {plan[4]} subjects, {size / 1e9:.3f} GB", file=sys.stderr)

    manifest.update(
        fingerprint=fingerprint,
        subjects=sum(p[4] for p in plans.values()),
        examples={s: len(p[0]) for s, p in plans.items()},
        positives={s: int(sum(p[1])) for s, p in plans.items()},
        channels=[c[0] for c in chans],
        buckets=t,
        note_tokens=0,
        tokenizer_exportable=None,
        categories=[],
        label_type="boolean_value",
        labels_unknown_subjects=0,
        normalization=[list(c) for c in chans],
    )
    for key in ("dp_phases", "dp_epsilon", "dp_delta"):
        manifest.pop(key, None)
    tmp = os.path.join(a.out, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(a.out, "manifest.json"))
    print(f"{a.out}: {total / 1e9:.3f} GB ({total / 2**30:.2f} GiB) in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
