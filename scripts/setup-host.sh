#!/usr/bin/env bash
# Installs the host packages Flotilla's drivers and tests use, if they are missing. Idempotent.
#   tini     - a tiny init that reaps orphaned processes inside each process-driver sandbox
#   uidmap   - newuidmap/newgidmap, so root inside a sandbox maps to an unprivileged host uid
#   iproute2 - `ip`, used by tests to check a sandbox's network namespace
set -euo pipefail
need=()
command -v tini >/dev/null 2>&1 || need+=(tini)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "setup-host: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
