#!/bin/bash
# The GPU checks of the CUDA backend, run on the device machine from the repository root over the
# bundle benches/gpu/bundle.sh made: the per-backend test suites on CUDA, dp-grad and train against the
# CPU, then `medtrain bench --backend cuda` beside peer_opacus.py --device cuda at the standard batch,
# 1024 and 4096. Writes log.txt, tests.txt and bench.jsonl under $OUT.
set -u
ROOT=$PWD
exec > >(tee "$OUT/log.txt") 2>&1
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
tar xzf .gpu/bin.tgz -C .gpu || exit 1
LIBS=$(find /opt /usr/local -xdev \( -name 'libnvrtc.so.1*' -o -name 'libcublas.so.1*' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${LIBS}${LD_LIBRARY_PATH:-}"
# the test binaries know the repository as the path they were built in
if [ "$ROOT" != /work/main ]; then mkdir -p /work && rm -rf /work/main && ln -s "$ROOT" /work/main; fi
mkdir -p /work/main/target/debug && cp .gpu/bin/medtrain-debug /work/main/target/debug/medtrain
B=.gpu/bin
$B/medtrain node devices 2>&1 | head -8
export MEDTRAIN_TEST_CUDA=1
T0=$(date +%s)
for t in cuda_probe cuda_device cuda_memory buffers gemm noise_vectors optim layers dp; do
  echo "== test $t" | tee -a "$OUT/tests.txt"; (cd kernels && timeout 120 ../$B/$t >> "$OUT/tests.txt" 2>&1; echo "rc=$?" >> "$OUT/tests.txt")
  sed -n "/^== test $t\$/,\$p" "$OUT/tests.txt" | grep -E "FAILED|test result|rc=" | head -30
done
for t in dp_grad_cli cuda_train; do
  echo "== test $t" | tee -a "$OUT/tests.txt"; (cd trainer && timeout 200 ../$B/$t --nocapture >> "$OUT/tests.txt" 2>&1; echo "rc=$?" >> "$OUT/tests.txt")
  sed -n "/^== test $t\$/,\$p" "$OUT/tests.txt" | grep -E "FAILED|test result|rc=|largest weight" | head -30
done
echo "== tests took $(( $(date +%s) - T0 )) s"
unset MEDTRAIN_TEST_CUDA
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/opacus-*.whl && export PYTHONPATH=/tmp/site
for w in lab-mlp lab-transformer notes-encoder notes-bert; do
  case $w in lab-mlp) d=256;; lab-transformer) d=128;; notes-encoder) d=64;; notes-bert) d=32;; esac
  for b in $d 1024 4096; do
    # notes-bert's DP step needs about 50 MB of activations an example: 4096 at once does not fit
    micro=""; [ "$w$b" = notes-bert4096 ] && micro="--micro-batch 1024"
    timeout 100 $B/medtrain bench --backend cuda --workload $w --batch $b $micro --steps 10 --json | tee -a "$OUT/bench.jsonl"
    PYTHONUNBUFFERED=1 timeout 120 python3 .gpu/peer_opacus.py --device cuda --threads 16 --workload $w --batch $b --steps 10 2>&1 | grep -v Warning | tee -a "$OUT/bench.jsonl"
  done
  echo "== bench $w done at $(( $(date +%s) - T0 )) s"
done
date -u
