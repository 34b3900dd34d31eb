#!/usr/bin/env bash
# Installs the checkers of the files this repository ships for other tools, in a venv
# (idempotent, quick when done): check-jsonschema (its vendored schemas of GitHub
# workflows, GitHub Actions and GitLab CI) and pre-commit (validate-manifest for
# .pre-commit-hooks.yaml). tests/cli/ci.rs runs them.
set -euo pipefail
VENV="${LATCHKEY_CI_LINTERS_VENV:-/opt/latchkey-peers/ci-linters-venv}"
PINS=(check-jsonschema==0.39.0 pre-commit==4.7.0)
installed() {
  for pin in "${PINS[@]}"; do
    "$VENV/bin/pip" show "${pin%%==*}" 2>/dev/null | grep -qx "Version: ${pin##*==}" || return 1
  done
}
if [ -x "$VENV/bin/pip" ] && installed; then
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
