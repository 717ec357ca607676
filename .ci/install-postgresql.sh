#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries (initdb, pg_ctl) for the store tests. Idempotent.
# The tests start their own throwaway cluster in a temp folder on 127.0.0.1; the system cluster the
# package may create is neither needed nor started here. If apt cannot be reached: a loud SKIPPED
# line and exit 0 (the tests then fail under KLINK_REQUIRE_REAL_SERVICES=1, skip otherwise).
set -uo pipefail

have_server() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

if have_server; then
  echo "postgresql: server binaries already present ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "SKIPPED: postgresql not installed: apt-get is not available on this machine"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "SKIPPED: postgresql not installed: not root and no sudo"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# Do not start (or enable) the packaged cluster: policy-rc.d answers "not allowed" while installing.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
if ! $SUDO apt-get update -qq; then
  echo "SKIPPED: postgresql not installed: apt-get update failed (no network or mirror?)"
  exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; then
  echo "SKIPPED: postgresql not installed: apt-get install postgresql failed"
  exit 0
fi
if have_server; then
  echo "postgresql: installed ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '))"
else
  echo "SKIPPED: postgresql package installed but initdb/pg_ctl not found under /usr/lib/postgresql"
fi
exit 0
