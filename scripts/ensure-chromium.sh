#!/usr/bin/env bash
# Makes sure a headless Chromium is on PATH for the report test (trainer/tests/report_html.rs renders
# report.html and screenshots it). Idempotent: does nothing when `chromium` or `chromium-browser` is
# already there. Installs the Debian package only when it can (root and apt-get); otherwise it says so
# and exits 0, and the browser half of the test skips unless MEDTRAIN_REQUIRE_BROWSER=1.
set -euo pipefail

have_browser() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_browser; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium is not on PATH and cannot be installed here (needs root and apt-get);" >&2
    echo "ensure-chromium: the browser check of the report test will be skipped." >&2
    exit 0
fi

install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
}

echo "ensure-chromium: installing chromium with apt-get" >&2
# The package lists may be missing or stale (slim images ship without them): refresh only if needed.
# A failed install (no network, no mirror) is reported, not fatal: the test suite still runs without it.
if ! install; then
    if ! { apt-get update && install; }; then
        echo "ensure-chromium: apt-get could not install chromium; the browser check will be skipped" >&2
        exit 0
    fi
fi

if have_browser; then
    echo "ensure-chromium: $(command -v chromium || command -v chromium-browser) installed" >&2
else
    echo "ensure-chromium: apt-get finished but chromium is still not on PATH" >&2
fi
