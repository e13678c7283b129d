#!/usr/bin/env bash
# Builds Flotilla's default sandbox image, the root file system a sandbox runs when no --image is
# given: Debian's busybox-static with every applet linked, /etc/passwd and /etc/group, and the
# usual empty directories. Offline, from Debian packages only.
#
#   guest-image/build-default-image.sh [--out DIR]     (default guest-image/out/default-image)
#
# Output: DIR/rootfs (the tree, owned by root) and DIR/image.properties. Cached by busybox's digest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out/default-image"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "default-image: busybox-static is not installed (run scripts/setup-host.sh)" >&2; exit 1; }
key="$(sha256sum "$busybox" "$0" | cut -d' ' -f1 | sha256sum | cut -c1-16)"
if [ -f "$out/image.properties" ] && grep -qx "key=$key" "$out/image.properties"; then exit 0; fi
work="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-default-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
r="$work/rootfs"
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,tmp,var/tmp,proc,sys,dev,run,mnt}
cp "$busybox" "$r/bin/busybox"
for a in $("$r/bin/busybox" --list-full); do
  [ -e "$r/$a" ] || ln -s /bin/busybox "$r/$a"
done
chmod 1777 "$r/tmp" "$r/var/tmp"
chmod 0700 "$r/root"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
echo "127.0.0.1 localhost" >"$r/etc/hosts"
chown -R 0:0 "$r"
printf 'key=%s\nbusybox=%s\nbuilt=%s\n' "$key" "$("$busybox" 2>&1 | head -1)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/image.properties"
rm -rf "$out.new" && mkdir -p "$out.new" && cp -a "$r" "$work/image.properties" "$out.new/"
rm -rf "$out.old"; [ -d "$out" ] && mv "$out" "$out.old"; mv "$out.new" "$out"; rm -rf "$out.old"
echo "default-image: built $out" >&2
