#!/usr/bin/env bash
# Headless Chromium for tests/browser (lessons in Voilà and in JupyterLab; Debian's `chromium`
# package, driven by Playwright through its executablePath; Playwright's own browser download is
# never used), and a CJK font so that the Korean edition (notebooks/ko) renders as Hangul, not as
# boxes (Debian's `fonts-noto-cjk`; the JupyterLab test checks the font Chromium actually used).
#
# Called by `make install`. Installs what is missing only when it can: root with apt-get (CI,
# containers). Otherwise it says why and exits 0 -- the browser test then skips with the same
# reason. QLAB_CHROMIUM=/path/to/chrome points the test at another binary.
set -euo pipefail

have_browser=""
for exe in "${QLAB_CHROMIUM:-}" chromium chromium-browser; do
    if [ -n "$exe" ] && command -v "$exe" >/dev/null 2>&1; then
        have_browser="$(command -v "$exe")"
        break
    fi
done
have_cjk=""
if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ko family 2>/dev/null)" ]; then
    have_cjk="yes"
fi
if [ -n "$have_browser" ] && [ -n "$have_cjk" ]; then
    echo "install_browser: using $have_browser; Korean font: $(fc-list :lang=ko family | head -1)"
    exit 0
fi

missing="$([ -z "$have_browser" ] && echo chromium) $([ -z "$have_cjk" ] && echo fonts-noto-cjk)"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: missing ${missing# } and not root with apt-get: skipping (the browser test" \
         "skips without chromium; Korean text needs a CJK font such as Debian's fonts-noto-cjk)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# the package lists may be missing on a fresh image; a failed update still lets install try
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-noto-cjk fontconfig
echo "install_browser: installed $(command -v chromium); Korean font: $(fc-list :lang=ko family | head -1)"
