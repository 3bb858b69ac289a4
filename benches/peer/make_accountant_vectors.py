#!/usr/bin/env python3
"""Test vectors for medtrain's RDP accountant, from Google's dp_accounting (run at generation time only:
pip install dp-accounting). Poisson-subsampled Gaussian, add/remove adjacency, dp_accounting's default
RDP orders; single phases over a grid and a few heterogeneous compositions. Writes
trainer/tests/golden/rdp_epsilon.json."""
import json, os, itertools
import dp_accounting
from dp_accounting import rdp

def eps_rdp(phases, delta):
    acc = rdp.RdpAccountant()
    for q, sigma, steps in phases:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)

def main():
    vectors = []
    for q, sigma, steps, delta in itertools.product([1e-4, 1e-3, 0.01, 0.05, 0.3], [0.5, 0.8, 1.1, 2.0, 5.0, 10.0],
                                                    [1, 100, 1000, 100000], [1e-4, 1e-5, 1e-6, 1e-8]):
        vectors.append({"phases": [[q, sigma, steps]], "delta": delta, "epsilon": eps_rdp([(q, sigma, steps)], delta)})
    for phases, delta in [([(256 / 60000, 1.1, 14063)], 1e-5),
                          ([(0.01, 1.0, 500), (0.02, 1.5, 300)], 1e-5),
                          ([(0.001, 0.8, 10000), (0.001, 2.0, 10000), (0.3, 10.0, 50)], 1e-6)]:
        vectors.append({"phases": [list(p) for p in phases], "delta": delta, "epsilon": eps_rdp(phases, delta)})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "trainer", "tests", "golden", "rdp_epsilon.json")
    with open(path, "w") as f:
        json.dump({"generator": "benches/peer/make_accountant_vectors.py", "accountant": "dp_accounting.rdp.RdpAccountant",
                   "vectors": vectors}, f, indent=0)
    print("wrote", len(vectors), "vectors to", os.path.normpath(path))

if __name__ == "__main__":
    main()
