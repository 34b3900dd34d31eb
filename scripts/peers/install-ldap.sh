#!/usr/bin/env bash
# Installs the LDAP test peer: OpenLDAP slapd + ldap-utils (tests run a throwaway cn=config).
set -euo pipefail
if [ -x /usr/sbin/slapd ] && [ -x /usr/sbin/slapadd ] && command -v ldapadd >/dev/null; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slapd ldap-utils
