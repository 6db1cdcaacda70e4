#!/usr/bin/env bash
# Headless Chromium for tests/browser (Debian's `chromium` package, driven by Playwright through
# its executablePath; Playwright's own browser download is never used).
#
# Called by `make install`. Installs the package only when it is missing and we can: root with
# apt-get (CI, containers). Otherwise it says why and exits 0 -- the browser test then skips
# with the same reason. QLAB_CHROMIUM=/path/to/chrome points the test at another binary.
set -euo pipefail

for exe in "${QLAB_CHROMIUM:-}" chromium chromium-browser; do
    if [ -n "$exe" ] && command -v "$exe" >/dev/null 2>&1; then
        echo "install_browser: using $(command -v "$exe")"
        exit 0
    fi
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser: chromium not found and not root: skipping (browser test will be skipped;" \
         "install Debian's chromium package to run it)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: chromium not found and no apt-get: skipping (browser test will be skipped)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# the package lists may be missing on a fresh image; a failed update still lets install try
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
echo "install_browser: installed $(command -v chromium)"
