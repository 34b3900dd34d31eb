#!/usr/bin/env bash
# Installs what the browser tests of `latchkey serve` need: Debian's Chromium (driven headless
# through playwright-core, which downloads no browser of its own) with a font for the
# screenshots, and tests/browser's npm packages (playwright-core, oidc-provider) from its
# package-lock.json. Idempotent: quick when both are present and node_modules is newer than the
# lock file.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=tests/browser
if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
fi
# npm ci writes node_modules/.package-lock.json; older than the lock file means stale.
if [ ! -e "$dir/node_modules/.package-lock.json" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  if ! command -v npm >/dev/null; then
    echo "install-browser: npm (Node.js 20 or later) is needed for $dir" >&2
    exit 1
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
