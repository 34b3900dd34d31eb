#!/usr/bin/env bash
# Installs the second SCIM test peer: django-scim2 (PyPI) in a venv, served by the small
# Django project in tests/contract/peers/django-scim (idempotent, quick when done).
set -euo pipefail
VENV="${LATCHKEY_DJANGO_SCIM_VENV:-/opt/latchkey-peers/django-scim-venv}"
VERSION=0.23.0
DJANGO=5.2.19
if [ -x "$VENV/bin/python" ] \
  && "$VENV/bin/pip" show django-scim2 2>/dev/null | grep -qx "Version: $VERSION" \
  && "$VENV/bin/pip" show django 2>/dev/null | grep -qx "Version: $DJANGO"; then
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "django-scim2==$VERSION" "django==$DJANGO"
