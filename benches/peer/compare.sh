#!/usr/bin/env bash
# Side-by-side: PyTorch + Opacus (shared/bench/peer_opacus.py) and `medtrain bench`, same thread count,
# alternating in rounds so that drift on a shared machine affects both alike. One JSON line per
# (system, workload, mode, round) on stdout.
#   benches/peer/compare.sh [threads] [rounds] [python]
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
rounds=${2:-2}
python=${3:-$HOME/.cache/peer/bin/python}
peer=../shared/bench/peer_opacus.py
cargo build --release -q -p medtrain
for round in $(seq 1 "$rounds"); do
  for w in lab-mlp lab-transformer notes-encoder; do
    "$python" "$peer" --threads "$threads" --workload "$w" --steps 20 2>/dev/null | sed "s/}\$/, \"round\": $round}/"
    ./target/release/medtrain bench --threads "$threads" --workload "$w" --steps 20 --json | sed "s/}\$/,\"round\":$round}/"
  done
done
