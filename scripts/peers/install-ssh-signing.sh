#!/usr/bin/env bash
# tests/trust.rs signs commits with SSH keys: it needs git (>= 2.34, SSH signing) and
# ssh-keygen (openssh-client). Idempotent: does nothing when both are present.
set -euo pipefail
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-ssh-signing: missing ${missing[*]}; run as root or install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
