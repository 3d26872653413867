#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (report, explorer), only if it is missing
# and apt-get exists. Never fails the build: without Chromium those tests are skipped with their reason.
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get here; the browser tests (report, explorer) will be skipped"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: not root and no sudo; the browser tests (report, explorer) will be skipped"
        exit 0
    fi
fi
echo "ensure-chromium: installing chromium with apt-get (for the browser tests)"
{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "ensure-chromium: apt-get could not install chromium; the browser tests will be skipped"
exit 0
