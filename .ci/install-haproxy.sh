#!/usr/bin/env bash
# Install Debian's HAProxy for the team suite (tests/team) and tests/ops/test_haproxy.py: the tests start their own haproxy in the
# foreground (-db) with a generated config in a temporary folder on 127.0.0.1; this script never
# starts, enables or configures the system service.
#
# Idempotent: does nothing when haproxy is already installed. Runs `apt-get update` at most once.
# Exit status: 0 installed (or already there), or SKIPPED (said loudly) when apt cannot be reached;
# 1 apt was reachable but the install failed.
set -uo pipefail

haproxy_version() { "$(command -v haproxy || echo /usr/sbin/haproxy)" -v 2>/dev/null | sed -n 1p; }

if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
  echo "haproxy: already installed ($(haproxy_version))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "SKIPPED: haproxy is not installed and apt-get is not available (not Debian?)" >&2
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "SKIPPED: haproxy is not installed and this user cannot run apt-get (not root, no sudo)" >&2
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
  echo "SKIPPED: apt repositories cannot be reached; haproxy not installed (team suite will skip or fail)" >&2
  exit 0
fi

# policy-rc.d 101: the package's maintainer scripts must not start the system service (a container
# without systemd would otherwise try /etc/init.d/haproxy start).
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY" && CREATED_POLICY=1
fi
status=0
$SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null || status=$?
if [ "$CREATED_POLICY" = "1" ]; then $SUDO rm -f "$POLICY"; fi

if [ "$status" != "0" ]; then
  echo "haproxy: apt-get install failed (exit $status)" >&2
  exit 1
fi
echo "haproxy: installed ($(haproxy_version))"
