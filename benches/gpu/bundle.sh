#!/bin/bash
# Builds here what the GPU checks of the CUDA backend run on a lent GPU machine (which has CUDA and
# PyTorch but no Rust) and packs it into .gpu/ at the repository root (ignored: add `/.gpu/` to
# .git/info/exclude), with this folder's device.sh, the peer and the opacus wheel. Then, on the device:
#     run(command="bash .gpu/device.sh", carry=[".gpu"], timeout_s=540)
# Keeps the bundle under the device tool's 64 MiB: binaries stripped and gzipped (about 22 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cargo build --release
cargo build
mapfile -t bins < <(cargo test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import sys, json
want = {"buffers", "dp", "gemm", "layers", "noise_vectors", "optim", "cuda_device", "cuda_memory", "cuda_probe", "dp_grad_cli", "cuda_train"}
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"] and m["target"]["name"] in want:
        print(m["target"]["name"], m["executable"])')
rm -rf .gpu/bin && mkdir -p .gpu/bin
for line in "${bins[@]}"; do set -- $line; strip -o ".gpu/bin/$1" "$2"; done
strip -o .gpu/bin/medtrain-debug target/debug/medtrain
strip -o .gpu/bin/medtrain target/release/medtrain
(cd .gpu && tar czf bin.tgz bin && rm -rf bin)
cp benches/gpu/device.sh .gpu/
peer=${MEDTRAIN_PEER:-$root/../shared/bench/peer_opacus.py}
if [ -f "$peer" ]; then cp "$peer" .gpu/peer_opacus.py; else echo "bundle: no peer at $peer (MEDTRAIN_PEER)" >&2; fi
ls .gpu/opacus-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d .gpu opacus
du -sh .gpu
