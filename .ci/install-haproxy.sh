#!/usr/bin/env bash
# Install Debian's HAProxy for tests/ops/test_haproxy.py (the reference load balancer). Idempotent.
set -uo pipefail
if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
  echo "haproxy: already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if ! $SUDO apt-get update -qq; then
  echo "SKIPPED: apt-get cannot reach the Debian archive; HAProxy not installed (tests needing it will fail under KLINK_REQUIRE_REAL_SERVICES=1)"
  exit 0
fi
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq haproxy; then
  echo "SKIPPED: apt-get install haproxy failed"
  exit 0
fi
# The package starts a system service on Debian; the tests run their own instance.
$SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
echo "haproxy: $(/usr/sbin/haproxy -v | head -1)"
