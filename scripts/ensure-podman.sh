#!/usr/bin/env bash
# Podman (container jobs of the node daemon) and what its tests need: runc (crun refuses this kind
# of machine's hybrid cgroups) and busybox-static (the tests' image is imported from it, offline).
# Idempotent: nothing is installed when all of it is there.
set -euo pipefail
need=()
for p in podman runc busybox-static; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
