#!/usr/bin/env python3
"""Golden values for `medtrain dp-grad`, from an independent implementation (PyTorch, brute force).

Weights and batches come from an integer hash (`hashed` below; trainer/tests/dp_grad_cli.rs has the same
function), so both sides start from bit-identical inputs without shipping megabytes of tensors. For each
case this computes, in float64, the clipped per-group gradient sum (loss reduction: sum): for every
privacy group, one backward of the sum of its examples' losses, its L2 norm over all parameters, the
clip factor min(1, C / norm), and the weighted sum. It writes a digest per parameter (sum, L2 norm and
24 sampled coordinates) to trainer/tests/golden/dp_grad.json.

Run at generation time only (needs torch):  python3 benches/peer/make_dp_grad_golden.py
"""
import json, math, os, sys
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "bench"))
import peer_opacus as peer  # the reference modules (names and layouts)

MASK64 = (1 << 64) - 1

def fnv1a(name):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & MASK64
    return h

def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)

def hashed(name, n):
    """n values in [-1, 1], each exactly float32(k / 1000) for an integer k in [-1000, 1000]."""
    s = fnv1a(name)
    return [((splitmix(s ^ i) >> 11) % 2001 - 1000) / 1000.0 for i in range(n)]

def hashed_np(name, n):
    """`hashed` vectorized (the same values, for tensors of millions of entries)."""
    import numpy as np
    with np.errstate(over="ignore"):
        x = np.uint64(fnv1a(name)) ^ np.arange(n, dtype=np.uint64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    k = ((x >> np.uint64(11)) % np.uint64(2001)).astype(np.int64) - 1000
    return k.astype(np.float64) / 1000.0

def hashed_int(name, n, modulo):
    s = fnv1a(name)
    return [(splitmix(s ^ i) >> 11) % modulo for i in range(n)]

def param_values(name, shape):
    import numpy as np
    n = math.prod(shape)
    if ".ln" in name or name.startswith("ln.") or "LayerNorm" in name:
        scale, offset = 0.1, (1.0 if name.endswith("weight") else 0.0)
    elif name == "pos.weight" or (name == "embed.weight" and shape[0] == 8000):
        scale, offset = 1.0, 0.0  # the text encoder's embeddings
    else:
        fan_in = shape[1] if len(shape) == 2 else None
        scale, offset = (1.0 / math.sqrt(fan_in) if fan_in else 0.1), 0.0
    # float32(float32(v * scale) + offset), as the Rust side computes it
    v = (hashed_np(name, n) * scale).astype(np.float32).astype(np.float64) + offset
    return torch.from_numpy(v.astype(np.float32)).reshape(shape)

CASES = [
    # name, workload, batch, groups (None = one per example)
    ("lab-mlp", "lab-mlp", 8, [0, 0, 1, 2, 2, 2, 3, 4]),
    ("lab-mlp-per-example", "lab-mlp", 5, None),
    ("lab-transformer", "lab-transformer", 6, [7, 7, 3, 9, 9, 3]),
    ("notes-encoder", "notes-encoder", 4, [1, 2, 1, 5]),
    ("notes-bert", "notes-bert", 3, [4, 2, 4]),
]

def batch(case, workload, b):
    if workload in ("notes-encoder", "notes-bert"):
        t = 128
        x = torch.tensor(hashed_int(case + "/x", b * t, 8000 if workload == "notes-encoder" else 30522)).reshape(b, t)
        y = torch.tensor(hashed_int(case + "/y", b, 2))
    else:
        t = 48
        x = torch.tensor(hashed(case + "/x", b * t * 64), dtype=torch.float32).reshape(b, t, 64)
        y = torch.tensor([float(v) for v in hashed_int(case + "/y", b, 2)], dtype=torch.float32)
    keep = hashed_int(case + "/mask", b * t, 10)
    mask = torch.tensor([k != 0 or i % t == 0 for i, k in enumerate(keep)]).reshape(b, t)
    if workload == "lab-mlp":
        mask[:] = True
    return x, mask, y

def main():
    torch.set_default_dtype(torch.float64)
    out = {"generator": "benches/peer/make_dp_grad_golden.py", "torch": torch.__version__, "cases": []}
    for case, workload, b, groups in CASES:
        model, _, _, _, kind = peer.workload(workload, batch=2)
        model = model.double()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(param_values(name, list(p.shape)).double())
        x, mask, y = batch(case, workload, b)
        if x.is_floating_point():
            x = x.double()
        y = y.double() if kind == "bce" else y
        members = {}
        for i, g in enumerate(groups if groups is not None else range(b)):
            members.setdefault(g, []).append(i)
        grads, norms = [], []
        for g, idx in members.items():
            model.zero_grad()
            out_ = model(x[idx], mask[idx])
            loss = (F.binary_cross_entropy_with_logits(out_.squeeze(-1), y[idx], reduction="sum") if kind == "bce"
                    else F.cross_entropy(out_, y[idx], reduction="sum"))
            loss.backward()
            gr = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            grads.append(gr)
            norms.append(math.sqrt(sum(float((v * v).sum()) for v in gr.values())))
        clip = sorted(norms)[len(norms) // 2] * 0.999  # about half the groups clipped
        total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for gr, nm in zip(grads, norms):
            c = min(1.0, clip / nm)
            for n in total:
                total[n] += c * gr[n]
        params = []
        for n, v in total.items():
            flat = v.flatten()
            picks = [int(i) for i in hashed_int(case + "/" + n + "/pick", 24, flat.numel())]
            params.append({"name": n, "shape": list(v.shape), "sum": float(flat.sum()), "l2": float(flat.norm()),
                           "samples": [[i, float(flat[i])] for i in picks]})
        out["cases"].append({"case": case, "workload": workload, "batch": b, "groups": groups, "clip": clip,
                             "group_norms": norms, "params": params})
    path = os.path.join(HERE, "..", "..", "trainer", "tests", "golden", "dp_grad.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", os.path.normpath(path))

if __name__ == "__main__":
    main()
