#!/usr/bin/env bash
# Installs Debian's chromium and its chromedriver for the approval-page browser tests
# (tests/approval/test_browser.py). Idempotent: does nothing when both are already there.
# Never downloads a browser from anywhere but the distribution's apt repositories.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "SKIPPED: not root and no sudo: cannot install chromium (browser tests will skip or fail)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q; then
    echo "SKIPPED: apt-get update failed (apt unreachable): chromium not installed"
    exit 0
fi
if ! $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver; then
    echo "SKIPPED: apt-get install chromium chromium-driver failed: chromium not installed"
    exit 0
fi
chromium --version || true
