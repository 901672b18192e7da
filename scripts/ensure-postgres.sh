#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are on this machine; the tests start their own server.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL server binaries are missing: install the 'postgresql' package" \
       "(Debian/Ubuntu: sudo apt-get install postgresql), then run make test again." >&2
  exit 1
fi
echo "installing PostgreSQL from the distribution's packages..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
