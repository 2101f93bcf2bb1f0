#!/usr/bin/env bash
# Debian's chromium and chromedriver (+ a font, so that screenshots show text) for the browser test
# (tests/test_app_browser.py), where missing. apt-get as root, else through sudo. .ci/run calls it; without a
# browser the test is skipped locally, and fails under CI=true.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_browser.sh: no apt-get here; install Chromium and its chromedriver (same version) yourself" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing chromium and chromium-driver (Debian packages, about 350 MB)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >&2
