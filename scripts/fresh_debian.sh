#!/bin/sh
# The README's two commands on a truly fresh Debian 12: debootstrap a minbase bookworm
# root (no make, git, curl, python3 or locale), put a clean clone of this repository's
# HEAD and ../shared beside it, and run the first two lines of the sh block under "The two
# commands" there as root, one after the other; print their closing lines. Needs root,
# mounts and a Debian mirror (about 5-10 minutes); not part of make test.
#   usage: sudo scripts/fresh_debian.sh [ROOT_DIR]   (default /tmp/ds4-bookworm; reused)
set -e
cd "$(dirname "$0")/.."
root=${1:-/tmp/ds4-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || { echo "fresh_debian: run as root" >&2; exit 2; }
[ -d ../shared ] || { echo "fresh_debian: ../shared is missing beside the checkout" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
[ -x "$root/usr/bin/apt-get" ] || debootstrap --variant=minbase bookworm "$root" "$mirror"
# the README's two commands, exactly as written there
cmds=$(awk '/^## The two commands/ { on = 1 } on && /^```sh/ { getline a; getline b; print a; print b; exit }' README.md |
    sed 's/ *#.*//')
[ "$(echo "$cmds" | wc -l)" -eq 2 ] || { echo "fresh_debian: no two commands in README.md" >&2; exit 1; }
rm -rf "$root/root/ds4" "$root/root/shared"
git clone -q --no-hardlinks . "$root/root/ds4"
cp -a ../shared "$root/root/shared"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# This host's network may re-sign TLS (a proxy with its own CA, trusted by the host in
# /usr/local/share/ca-certificates): the root gets those certificates, and npm, which
# keeps its own list, is told of them. Nothing else of the host goes in.
extra_ca=
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cat /usr/local/share/ca-certificates/*.crt >"$root/root/host-network-ca.crt"
    extra_ca="NODE_EXTRA_CA_CERTS=/root/host-network-ca.crt"
fi
# The root is a mount point, as on a machine (the tests make private mount namespaces)
mount --bind "$root" "$root"
mounted="$root"
for m in proc sys dev dev/pts; do
    mkdir -p "$root/$m"
    mount --bind "/$m" "$root/$m"
    mounted="$root/$m $mounted"
done
cleanup() { for m in $mounted; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
n=0
echo "$cmds" | while IFS= read -r cmd; do
    n=$((n + 1))
    echo "== [$n] $cmd"
    log=/tmp/fresh-debian-$n.log
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb $extra_ca \
        sh -c "cd /root/ds4 && $cmd" >"$log" 2>&1 && rc=0 || rc=$?
    echo "exit $rc; last line: $(tail -n 1 "$log")   (log: $log)"
done
