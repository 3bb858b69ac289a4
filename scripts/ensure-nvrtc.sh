#!/usr/bin/env bash
# Installs NVIDIA's NVRTC and ptxas from PyPI into a venv in the cache, for the CUDA kernel checks that
# need no GPU (kernels/tests/cuda_nvrtc.rs: every .cu compiled by NVRTC exactly as production compiles
# it, then `ptxas -v` on the PTX):
#   ${MEDTRAIN_CACHE:-$HOME/.cache/medtrain}/cuda-wheels-13.0.88/   (a python3 venv)
# The wheels nvidia-cuda-nvrtc and nvidia-cuda-nvcc 13.0.88 (CUDA 13.0, the version of cudarc's
# bindings, feature cuda-13000) are pinned by version and by the SHA-256 of their manylinux x86_64
# wheels (pip --require-hashes): a different file is refused.
#
# Idempotent and fast when done: a marker in the venv records the pinned hashes; when it is there and
# the library and ptxas exist, nothing is downloaded (about 0.1 s). Otherwise the venv is built in a
# temporary directory beside the target and renamed into place (5.5 s here from PyPI with no pip cache: 127 MB
# of wheels, 354 MB installed).
# Needs python3 with venv and pip, and PyPI (or the index pip is configured with). x86_64 Linux only.
#
# Prints on stdout, for `eval "$(scripts/ensure-nvrtc.sh)"`:
#   MEDTRAIN_NVRTC_LIB_DIR=<dir holding libnvrtc.so.13>   (put it on LD_LIBRARY_PATH)
#   MEDTRAIN_PTXAS=<path of ptxas>
# Progress goes to stderr.
set -euo pipefail

VERSION=13.0.88
NVRTC_SHA256=ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575
NVCC_SHA256=56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
MARKER=.medtrain-cuda-wheels

PYTHON=${PYTHON:-python3}
CACHE=${MEDTRAIN_CACHE:-$HOME/.cache/medtrain}
DEST=$CACHE/cuda-wheels-$VERSION

say() { echo "ensure-nvrtc: $*" >&2; }
die() { echo "ensure-nvrtc: error: $*" >&2; exit 1; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "the pinned wheels are for x86_64 Linux, not $(uname -s)-$(uname -m)"

want_marker="nvidia-cuda-nvrtc==$VERSION sha256:$NVRTC_SHA256 nvidia-cuda-nvcc==$VERSION sha256:$NVCC_SHA256"

# the files the checks use, inside a venv at $1 (the wheels unpack under site-packages/nvidia/cu13)
lib_dir() { echo "$(ls -d "$1"/lib/python3*/site-packages/nvidia/cu13/lib 2>/dev/null | head -n 1)"; }
ptxas() { echo "$(ls -d "$1"/lib/python3*/site-packages/nvidia/cu13/bin/ptxas 2>/dev/null | head -n 1)"; }

complete() {
    local d=$1 lib bin
    [ -f "$d/$MARKER" ] && [ "$(cat "$d/$MARKER")" = "$want_marker" ] || return 1
    lib=$(lib_dir "$d"); bin=$(ptxas "$d")
    [ -n "$lib" ] && [ -f "$lib/libnvrtc.so.13" ] && [ -n "$bin" ] && [ -x "$bin" ]
}

report() {
    echo "MEDTRAIN_NVRTC_LIB_DIR=$(lib_dir "$DEST")"
    echo "MEDTRAIN_PTXAS=$(ptxas "$DEST")"
}

if complete "$DEST"; then
    say "NVRTC and ptxas $VERSION are in place ($DEST)"
    report
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (python3 with venv and pip is needed)"
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.cuda-wheels.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

say "installing nvidia-cuda-nvrtc and nvidia-cuda-nvcc $VERSION into a venv (about 127 MB from PyPI)"
"$PYTHON" -m venv "$tmp/venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
cat >"$tmp/requirements.txt" <<EOF
nvidia-cuda-nvrtc==$VERSION --hash=sha256:$NVRTC_SHA256
nvidia-cuda-nvcc==$VERSION --hash=sha256:$NVCC_SHA256
EOF
"$tmp/venv/bin/python" -m pip install --quiet --no-deps --only-binary=:all: --require-hashes \
    --disable-pip-version-check -r "$tmp/requirements.txt" >&2 || die "pip install of the pinned wheels failed"
echo "$want_marker" >"$tmp/venv/$MARKER"
complete "$tmp/venv" || die "the installed wheels lack libnvrtc.so.13 or ptxas"

# a venv's scripts name its own path, but nothing here runs them: the libraries and ptxas are plain
# files, so the venv may move into place
rm -rf "$DEST"
mv "$tmp/venv" "$DEST"
say "installed in $DEST"
report
