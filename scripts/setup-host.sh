#!/usr/bin/env bash
# Installs the host packages Flotilla's drivers and tests use, if they are missing. Idempotent.
#   tini     - a tiny init that reaps orphaned processes inside each process-driver sandbox
#   uidmap   - newuidmap/newgidmap, so root inside a sandbox maps to an unprivileged host uid
#   iproute2 - `ip`, used by tests to check a sandbox's network namespace
#   qemu-system-x86 - QEMU for the qemu (microVM) driver and its tests
#   cpio, xz-utils, lz4 - guest-image/build.sh packs and compresses the initramfs, unpacks Debian's kernel
#   runc     - the OCI runtime that runs every process-driver sandbox
#   golang-github-containers-common - Podman's seccomp profile (/usr/share/containers/seccomp.json)
#   busybox-static, patchelf - the default image and the sandbox runtime (guest-image/build-*.sh)
#   e2fsprogs - mkfs.ext4 for each sandbox's capped writable layer (both drivers)
#   erofs-utils - mkfs.erofs: the qemu driver's read-only block device of each image
#   attr            - setfattr: the images module marks opaque directories of unpacked layers
#                     (trusted.overlay.opaque); getfattr in its tests
#   docker-registry, skopeo, umoci - the images module's ITs run a real registry on loopback,
#                     build images with umoci and push them with skopeo
#   apache2-utils, openssl - htpasswd and a token-signing certificate for the images module's auth ITs
#   openssl  - also the CA and node certificates of `flotilla dev-cluster` (TLS by default) and TlsIT
#   passt    - `pasta`: user-mode networking of process-driver sandboxes with spec network=egress;
#              `passt`: the same for qemu-driver sandboxes (the backend of their virtio-net device)
#   iptables - iptables/ip6tables(-restore): the egress policy of each such sandbox, enforced on the
#              host (OUTPUT, by the uid pasta or passt runs as), outside the sandbox's reach
#   tmux     - a pseudo-terminal the tests can type into and resize: `exec -it` end to end (NodeOnH2IT)
#   ipset    - the per-sandbox sets of addresses its DNS lookups of listed host names were answered,
#              which those rules match (host names matched at connection time, either driver)
set -euo pipefail
need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -f /usr/share/containers/seccomp.json ] || need+=(golang-github-containers-common)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || need+=(busybox-static)
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v mkfs.erofs >/dev/null 2>&1 || need+=(erofs-utils)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
if [ "${FLOTILLA_SETUP_TEST_TOOLS:-1}" = 1 ]; then
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  command -v umoci >/dev/null 2>&1 || need+=(umoci)
  command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
  command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
  command -v tmux >/dev/null 2>&1 || need+=(tmux)
fi
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v tini >/dev/null 2>&1 || need+=(tini)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v lz4 >/dev/null 2>&1 || need+=(lz4)
{ command -v pasta >/dev/null 2>&1 && command -v passt >/dev/null 2>&1; } || need+=(passt)
command -v ip6tables-restore >/dev/null 2>&1 || need+=(iptables)
command -v ipset >/dev/null 2>&1 || need+=(ipset)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "setup-host: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Subordinate ids for the node user: every sandbox gets its own 65536 of them (host uid and gid
# ranges that no other sandbox and no host user has). Flotilla's delegation, the same line in
# /etc/subuid and /etc/subgid, holds 4096 sandboxes; added only when missing, and only as root.
node_user=${FLOTILLA_NODE_USER:-$(id -un)}
subid_start=${FLOTILLA_SUBID_START:-16777216}
subid_count=${FLOTILLA_SUBID_COUNT:-268435456}
line="${node_user}:${subid_start}:${subid_count}"
for f in /etc/subuid /etc/subgid; do
  if ! grep -qsx "$line" "$f"; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup-host: ${f} lacks '${line}': process sandboxes need it (run as root: scripts/setup-host.sh)" >&2
    else
      echo "setup-host: adding ${line} to ${f} (an id range of 65536 for each of up to 4096 sandboxes)"
      echo "$line" >> "$f"
    fi
  fi
done

# pasta runs as each egress sandbox's own unprivileged uid and opens /dev/net/tun inside the
# sandbox's network namespace (creating the device there needs CAP_NET_ADMIN over that namespace,
# which it has; opening the node is only allowed by the file's mode). 0666 is the kernel's and
# udev's usual mode; some minimal hosts ship 0600.
if [ "$(id -u)" -eq 0 ]; then
  if [ ! -e /dev/net/tun ]; then
    mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200
  elif [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    echo "setup-host: /dev/net/tun is $(stat -c %a /dev/net/tun); making it 0666 for pasta (egress sandboxes)"
    chmod 0666 /dev/net/tun
  fi
fi
