#!/bin/sh
# The runtime image's whole file system, collected into ROOT: the binary, the shared
# libraries it loads (as ldd lists them, with the dynamic loader), CA certificates, a
# passwd entry for the non-root user 65532, and writable /tmp, home and cache folders.
#
# The Dockerfile's runtime stage is FROM scratch and copies only ROOT, so what this
# script collects is everything the image holds; tests/cli/image.rs builds the same
# root from the test binary and runs latchkey in it (chroot) as that user.
#
# Usage: scripts/image-rootfs.sh BINARY ROOT
set -eu
bin=$1
root=$2

mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" \
    "$root/home/latchkey" "$root/var/cache/latchkey"
cp "$bin" "$root/usr/local/bin/latchkey"

# Every library the binary needs, where the dynamic loader looks for it. A library ldd
# cannot find is an error here, not a crash when the image starts.
libs=$(ldd "$bin")
if printf '%s\n' "$libs" | grep -q 'not found'; then
    printf '%s\n' "$libs" >&2
    echo "image-rootfs: a library the binary needs is missing" >&2
    exit 1
fi
printf '%s\n' "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done

# https:// remotes: libgit2 verifies servers against these.
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
latchkey:x:65532:65532:latchkey:/home/latchkey:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
latchkey:x:65532:
GROUP
# Names resolve from /etc/hosts (mounted by the container runtime), then DNS; glibc
# 2.34 and later holds both in libc itself.
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"

chmod 1777 "$root/tmp"
chmod 0755 "$root/home/latchkey" "$root/var/cache/latchkey"
