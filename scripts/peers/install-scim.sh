#!/usr/bin/env bash
# Installs the SCIM test peer: scim2-server from PyPI in a venv (idempotent, quick when done).
set -euo pipefail
VENV="${LATCHKEY_SCIM_VENV:-/opt/latchkey-peers/scim-venv}"
VERSION=0.8.3
if [ -x "$VENV/bin/scim2-server" ] && "$VENV/bin/pip" show scim2-server 2>/dev/null | grep -qx "Version: $VERSION"; then
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "scim2-server==$VERSION"
