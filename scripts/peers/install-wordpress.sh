#!/usr/bin/env bash
# Installs what tests/wordpress.rs needs: WordPress (Debian package), MariaDB and PHP.
# Idempotent: returns at once when they are present.
set -euo pipefail
if [ -f /usr/share/wordpress/wp-load.php ] && command -v mariadbd >/dev/null \
    && command -v mariadb-install-db >/dev/null && command -v php >/dev/null; then
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    wordpress mariadb-server php8.2-fpm php8.2-cli php8.2-mysql
