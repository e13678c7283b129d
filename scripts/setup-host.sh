#!/usr/bin/env bash
# Installs the host packages Flotilla's drivers and tests use, if they are missing. Idempotent.
#   tini     - a tiny init that reaps orphaned processes inside each process-driver sandbox
#   uidmap   - newuidmap/newgidmap, so root inside a sandbox maps to an unprivileged host uid
#   iproute2 - `ip`, used by tests to check a sandbox's network namespace
#   qemu-system-x86 - QEMU for the qemu (microVM) driver and its tests
#   cpio, xz-utils  - guest-image/build.sh packs the initramfs and unpacks Debian's kernel
#   attr            - setfattr: the images module marks opaque directories of unpacked layers
#                     (trusted.overlay.opaque); getfattr in its tests
#   docker-registry, skopeo, umoci - the images module's ITs run a real registry on loopback,
#                     build images with umoci and push them with skopeo
#   apache2-utils, openssl - htpasswd and a token-signing certificate for the images module's auth ITs
set -euo pipefail
need=()
command -v tini >/dev/null 2>&1 || need+=(tini)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
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

# Subordinate id ranges for the node user, so the process driver can map root inside a sandbox
# to an unprivileged host range (unshare --map-users/--map-groups through newuidmap/newgidmap).
# Only added when missing, and only as root: an existing entry for the user is left as it is.
node_user=${FLOTILLA_NODE_USER:-$(id -un)}
subid_start=${FLOTILLA_SUBID_START:-100000}
subid_count=${FLOTILLA_SUBID_COUNT:-65536}
for f in /etc/subuid /etc/subgid; do
  if ! grep -qs "^${node_user}:" "$f"; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup-host: no ${f} entry for ${node_user}; sandboxes fall back to --map-root-user (add '${node_user}:${subid_start}:${subid_count}' as root)" >&2
    else
      echo "setup-host: adding ${node_user}:${subid_start}:${subid_count} to ${f}"
      echo "${node_user}:${subid_start}:${subid_count}" >> "$f"
    fi
  fi
done
