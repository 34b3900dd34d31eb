#!/usr/bin/env bash
# tests/audit.rs signs an audit commit with `ssh-keygen -Y sign` and checks it with
# `git verify-commit`: needs ssh-keygen (openssh-client) and git. Idempotent.
set -euo pipefail
missing=()
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v git >/dev/null 2>&1 || missing+=(git)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-ssh-signing: need ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
