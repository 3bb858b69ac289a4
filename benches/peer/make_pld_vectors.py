#!/usr/bin/env python3
"""Test vectors for medtrain's PLD accountant, from Google's dp_accounting PLDAccountant (default
discretization 1e-4, add/remove adjacency). Run at generation time only (pip install dp-accounting).
Writes trainer/tests/golden/pld_epsilon.json."""
import json, os, itertools, time, sys
import dp_accounting
from dp_accounting import pld

def accountant(phases):
    acc = pld.PLDAccountant()
    for q, sigma, steps in phases:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc

def main():
    deltas = [1e-4, 1e-5, 1e-6, 1e-8]
    vectors = []
    grid = list(itertools.product([1e-4, 1e-3, 0.01, 0.05, 0.3], [0.5, 0.8, 1.1, 2.0, 5.0, 10.0], [1, 100, 1000, 100000]))
    extra = [([(256 / 60000, 1.1, 14063)], [1e-5]),
             ([(0.01, 1.0, 500), (0.02, 1.5, 300)], [1e-5, 1e-7]),
             ([(0.001, 0.8, 10000), (0.001, 2.0, 10000)], [1e-6])]
    cases = [([g], deltas) for g in grid] + extra
    for phases, ds in cases:
        t = time.time()
        acc = accountant(phases)
        for d in ds:
            vectors.append({"phases": [list(p) for p in phases], "delta": d, "epsilon": acc.get_epsilon(d)})
        print(phases, round(time.time() - t, 2), "s", file=sys.stderr, flush=True)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "trainer", "tests", "golden", "pld_epsilon.json")
    with open(path, "w") as f:
        json.dump({"generator": "benches/peer/make_pld_vectors.py", "accountant": "dp_accounting.pld.PLDAccountant",
                   "vectors": vectors}, f, indent=0)
    print("wrote", len(vectors), "vectors")

if __name__ == "__main__":
    main()
