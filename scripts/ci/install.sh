#!/bin/sh
# Installs a latchkey release binary into DIR/bin after checking it against the
# release's SHA256SUMS: what the GitHub Action and the CI examples run instead of
# building latchkey from source on every job.
#
# Usage: install.sh VERSION DIR      (VERSION as in the tag without its v: 0.1.0)
#
# LATCHKEY_RELEASES_URL overrides where releases are downloaded from (a mirror; the
# tests serve one on loopback). Needs curl, tar and sha256sum (or shasum).
set -eu
version=${1:?usage: install.sh VERSION DIR}
dir=${2:?usage: install.sh VERSION DIR}
base=${LATCHKEY_RELEASES_URL:-https://github.com/latchkey-dev/latchkey/releases/download}

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) target=x86_64-unknown-linux-gnu ;;
    Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-gnu ;;
    Darwin-x86_64) target=x86_64-apple-darwin ;;
    Darwin-arm64) target=aarch64-apple-darwin ;;
    *)
        echo "install.sh: no latchkey release for $(uname -s) $(uname -m); build it with cargo install --locked latchkey" >&2
        exit 1
        ;;
esac

archive="latchkey-$version-$target.tar.gz"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl --fail --silent --show-error --location --retry 3 \
    --output "$tmp/$archive" "$base/v$version/$archive"
curl --fail --silent --show-error --location --retry 3 \
    --output "$tmp/SHA256SUMS" "$base/v$version/SHA256SUMS"

# Only the line for this archive; a missing line is a failure, not a skipped check.
grep "  $archive\$" "$tmp/SHA256SUMS" > "$tmp/expected" || {
    echo "install.sh: SHA256SUMS of v$version has no line for $archive" >&2
    exit 1
}
if command -v sha256sum >/dev/null 2>&1; then
    (cd "$tmp" && sha256sum -c expected >/dev/null)
else
    (cd "$tmp" && shasum -a 256 -c expected >/dev/null)
fi || {
    echo "install.sh: $archive does not match its checksum in SHA256SUMS; not installed" >&2
    exit 1
}

mkdir -p "$dir/bin"
tar -xzf "$tmp/$archive" -C "$tmp"
install -m 0755 "$tmp/latchkey-$version-$target/latchkey" "$dir/bin/latchkey"
"$dir/bin/latchkey" --version
