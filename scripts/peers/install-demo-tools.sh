#!/usr/bin/env bash
# Installs what examples/agency/demo.sh (run by tests/cli) needs: bash, git and python3.
# Idempotent: returns at once when they are present.
set -euo pipefail
missing=()
command -v git >/dev/null || missing+=(git)
command -v python3 >/dev/null || missing+=(python3)
[ ${#missing[@]} -eq 0 ] && exit 0
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
