#!/usr/bin/env bash
# Builds the Flotilla microVM guest image from Debian packages: see guest-image/README.md.
#
#   guest-image/build.sh [--agent-jar PATH] [--out DIR] [--jdk PATH|build]
#
# Output (default guest-image/out): vmlinux (uncompressed ELF kernel, PVH entry),
# initramfs.cpio (busybox + tini + virtio modules + jlinked JRE + agent + its class archive: an
# AOT cache on JDK 25, a CDS archive on 17, see build-args.sh for which JDK; a newc cpio compressed
# with lz4 in the kernel's legacy format, see "Pack" below) and image.properties (what went in).
# Idempotent and cached: the inputs are hashed and a second run with the same inputs does nothing.
# Downloaded .debs are kept in ${FLOTILLA_CACHE:-~/.cache/flotilla}/debs.
set -euo pipefail

. "$(dirname "$0")/build-args.sh"
parse_build_args "$(cd "$(dirname "$0")" && pwd)/out" "$@"
cache="${FLOTILLA_CACHE:-$HOME/.cache/flotilla}"
debs="$cache/debs"
mkdir -p "$debs" "$out"
log() { echo "guest-image: $*" >&2; }

# The guest agent (a self-contained jar). Built here only when nobody built it yet.
ensure_agent_jar log

for tool in apt-get apt-cache dpkg-deb cpio xz lz4 jlink jdeps od sha256sum nsenter; do
  command -v "$tool" >/dev/null || { log "missing $tool (run scripts/setup-host.sh)"; exit 1; }
done
# Temurin 25 + AOT where this machine kind has it (a guest boots ~2.5 s of CPU sooner under TCG,
# docs/benchmarks.md), else JDK 17 + CDS; --jdk (or FLOTILLA_RUNTIME_JDK) picks another, `--jdk
# build` the build's own.
pick_runtime_jdk log

# --- What goes in: resolved package versions, the agent, this script, the JDK ---------------
resolve_kernel() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg="$(resolve_kernel)"
if [ -z "$kpkg" ] && [ "$(id -u)" -eq 0 ]; then
  log "no package lists: apt-get update"
  apt-get update -qq && kpkg="$(resolve_kernel)"
fi
[ -n "$kpkg" ] || { log "cannot resolve linux-image-amd64 (apt-get update?)"; exit 1; }
pkgs=("$kpkg" busybox-static tini)
versions=""
for p in "${pkgs[@]}"; do
  v="$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
  [ -n "$v" ] && [ "$v" != "(none)" ] || { log "package $p not available"; exit 1; }
  versions+="$p=$v "
done
# The agent by content, not bytes: a rebuilt jar differs in entry timestamps only.
jar_digest() { if command -v unzip >/dev/null; then unzip -p "$jar" | sha256sum; else sha256sum <"$jar"; fi; }
key="$( { echo "$versions"; jar_digest; sha256sum "$here/build.sh" "$here/init" "$here/flotilla-root" "$here/build-args.sh" "$here/AgentTraining.java" | cut -d' ' -f1;
          echo "$jhome"; "$jhome/bin/java" -version 2>&1; } | sha256sum | cut -c1-16)"
if [ -f "$out/image.properties" ] && grep -qx "key=$key" "$out/image.properties" \
   && [ -f "$out/vmlinux" ] && [ -f "$out/initramfs.cpio" ]; then
  log "up to date ($out, key $key)"
  exit 0
fi
t0=$(date +%s)
log "building image $key into $out ($versions)"

# --- Packages -------------------------------------------------------------------------------
for p in "${pkgs[@]}"; do
  v="$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
  if ! ls "$debs/${p}_"*.deb 2>/dev/null | grep -qF "_${v//:/%3a}_"; then
    (cd "$debs" && apt-get download -q "$p=$v" >/dev/null 2>&1 || apt-get download "$p=$v")
  fi
done
deb() { ls "$debs/${1}_${2//:/%3a}_"*.deb 2>/dev/null | head -1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-guest-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$work/pkg" "$root"/{bin,sbin,proc,sys,dev,tmp,root,etc,lib/modules,opt/flotilla}
for p in "${pkgs[@]}"; do
  v="$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
  dpkg-deb -x "$(deb "$p" "$v")" "$work/pkg"
done

# --- Kernel: the ELF vmlinux inside Debian's XZ bzImage ---------------------------------------
# Boot protocol header (Documentation/x86/boot.rst): setup_sects at 0x1f1, "HdrS" at 0x202,
# payload_offset/payload_length at 0x248/0x24c, relative to the protected-mode code that
# follows the (setup_sects + 1) * 512 bytes of real-mode setup.
bz="$(ls "$work"/pkg/boot/vmlinuz-* | head -1)"
u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' \n'; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' \n'; }
[ "$(od -An -c -j $((0x202)) -N4 "$bz" | tr -d ' \n')" = "HdrS" ] || { log "$bz is not a bzImage"; exit 1; }
sects="$(u8 "$bz" $((0x1f1)))"; [ "$sects" -eq 0 ] && sects=4
start=$(( (sects + 1) * 512 + $(u32 "$bz" $((0x248))) ))
len="$(u32 "$bz" $((0x24c)))"
[ "$(od -An -tx1 -j "$start" -N6 "$bz" | tr -d ' \n')" = "fd377a585a00" ] \
  || { log "kernel payload is not XZ; only XZ bzImages are handled"; exit 1; }
dd if="$bz" iflag=skip_bytes,count_bytes bs=64k skip="$start" count="$len" status=none | xz -dc --single-stream >"$work/vmlinux"
[ "$(od -An -c -N4 "$work/vmlinux" | tr -d ' \n')" = "177ELF" ] || { log "extracted kernel is not ELF"; exit 1; }
kver="$(basename "$bz" | sed 's/^vmlinuz-//')"

# --- Modules (load order matters; see init) ---------------------------------------------------
# virtio_balloon (live resize gives the host memory back through it), virtio_blk, erofs (the image, read-only), ext4 (the sandbox's writable disk), overlay (the two as
# the tenant's root) and the checksum modules they ask the crypto API for (no modprobe in the guest);
# virtio_net (after the failover modules it links against) for network egress through passt.
order="virtio_ring virtio virtio_mmio virtio_console virtio_balloon virtio_blk crc16 crc32c_generic libcrc32c mbcache jbd2 ext4 erofs overlay"
order="$order failover net_failover virtio_net"
for m in $order; do
  f="$(find "$work/pkg/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" | head -1)"
  [ -n "$f" ] || { log "module $m not in $kpkg"; exit 1; }
  case "$f" in *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;; *) cp "$f" "$root/lib/modules/$m.ko" ;; esac
done
echo "$order" >"$root/lib/modules/load-order"

# --- Userland: busybox (all applets as links), tini, init -------------------------------------
cp "$work/pkg/bin/busybox" "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
cp "$work/pkg/usr/bin/tini-static" "$root/sbin/tini"
install -m 0755 "$here/init" "$root/init"
# The tenant's root, mounted by init on a cold boot and by a template's agent at a clone's rebirth.
install -m 0755 "$here/flotilla-root" "$root/sbin/flotilla-root"
# A clone drops the template's cache of its disks with busybox's blockdev (see flotilla-root).
[ -e "$root/bin/blockdev" ] || { log "busybox in $(deb busybox-static "$(apt-cache policy busybox-static | awk '/Candidate:/ {print $2}')") has no blockdev applet (flotilla-root needs it)"; exit 1; }
# util-linux's nsenter: the agent runs each tenant process through it (chroot into the image's root,
# working directory, user); its libraries are copied with the runtime's below.
mkdir -p "$root/usr/bin" "$root/run"
cp /usr/bin/nsenter "$root/usr/bin/nsenter"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"

# --- Java: a jlinked runtime with the modules the agent uses, its libraries, a CDS archive ----
cp "$jar" "$root/opt/flotilla/agent.jar"
mods="$("$jhome/bin/jdeps" --multi-release 17 --ignore-missing-deps --print-module-deps "$jar" 2>/dev/null || true)"
# JNA (the agent's terminals) names java.desktop for AWT helpers the agent never calls; JNA only
# "requires static" it, so it stays out (12 MiB).
mods="$(echo "java.base,jdk.unsupported${mods:+,$mods}" | tr , "\\n" | grep -vx java.desktop | sort -u | paste -sd,)"
"$jhome/bin/jlink" --add-modules "$mods" --output "$root/opt/flotilla/jre" --strip-debug --no-man-pages \
  --no-header-files --compress="$([ "$jmajor" -ge 21 ] && echo zip-0 || echo 0)"
rm -f "$root/opt/flotilla/jre/lib/server/classes"*.jsa   # rebuilt below for this runtime
# JNA's native part for this host's architecture, where the agent tells JNA to load it from (its
# JRE's lib/): never unpacked into a temporary directory at run time (the root may be read-only).
jna_so="com/sun/jna/linux-$(uname -m | sed 's/^x86_64$/x86-64/; s/^arm64$/aarch64/')/libjnidispatch.so"
mkdir -p "$work/jna" && (cd "$work/jna" && "$jhome/bin/jar" xf "$jar" "$jna_so")
[ -s "$work/jna/$jna_so" ] || { log "no $jna_so in $jar"; exit 1; }
cp "$work/jna/$jna_so" "$root/opt/flotilla/jre/lib/libjnidispatch.so"
# The runtime's shared libraries, copied from this host's Debian packages at the same paths.
libs="$( { find "$root/opt/flotilla/jre" -name '*.so' -o -path '*/bin/*' -type f; echo "$root/usr/bin/nsenter"; } | xargs ldd 2>/dev/null \
  | awk '/=> \// {print $3}' | grep -v "^$root" | sort -u)"
for l in $libs; do
  mkdir -p "$root$(dirname "$l")"
  cp -L "$l" "$root$l"
done
ld="$(ldd "$root/opt/flotilla/jre/bin/java" | awk '/ld-linux/ {print $1}')"
mkdir -p "$root$(dirname "$ld")" && cp -L "$ld" "$root$ld"

# The agent's class archive, made with the runtime that will use it, at the paths it will see
# (chroot) and with init's JVM flags, so that its class-path and flag checks pass at boot: on JDK 25
# an AOT cache trained by a real start, handshake and execs; on 17 a CDS archive of the classes
# loaded until the agent listens.
archive="none"
# Runs a command in the image root with /proc mounted (glibc finds $ORIGIN through it), in
# throwaway mount and pid namespaces so nothing outlives the build.
in_root() { unshare --mount --pid --fork sh -c 'mount -t proc proc "$0/proc" && mount -t tmpfs tmpfs "$0/dev" && mknod -m 666 "$0/dev/null" c 1 3 && exec chroot "$0" "$@"' "$root" "$@"; }
# Starts the agent in the root with extra JVM options $1, runs $2 on the host once it listens, then
# stops it with SIGTERM (an AOT recording is written as the JVM exits).
train() {
  rm -f "$root/tmp/train.sock" "$root/tmp/trained"
  in_root /bin/sh -c "/opt/flotilla/jre/bin/java $1 $java_opts -jar /opt/flotilla/agent.jar \
      --listen unix:/tmp/train.sock --sandbox-id train --incarnation 1 & pid=\$!; \
    i=0; while [ ! -e /tmp/trained ] && [ \$i -lt 1200 ] && kill -0 \$pid 2>/dev/null; do usleep 50000; i=\$((i+1)); done; \
    kill \$pid; wait \$pid; true" >>"$work/archive.log" 2>&1 &
  local root_pid=$! i=0
  while [ ! -S "$root/tmp/train.sock" ] && [ $i -lt 600 ] && kill -0 $root_pid 2>/dev/null; do sleep 0.05; i=$((i+1)); done
  local ok=0
  [ -S "$root/tmp/train.sock" ] && eval "$2" >>"$work/archive.log" 2>&1 && ok=1
  touch "$root/tmp/trained"
  wait $root_pid || true
  [ $ok = 1 ]
}
if [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null && command -v unshare >/dev/null; then
  # Keep in step with init's java command line.
  java_opts="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Xms8m -Xmx48m -XX:-UsePerfData"
  if [ "$aot" = yes ]; then
    # JEP 483/514/515 (see build-sandbox-runtime.sh); -XX:AOTMode=on refuses a cache that does not fit.
    # No machine code in the cache: JDK 25 put the build host's (AVX) adapters in it, and the guest's
    # TCG CPU died of SIGILL on them.
    no_aot_code="-XX:+UnlockDiagnosticVMOptions -XX:-AOTAdapterCaching -XX:-AOTStubCaching"
    if train "-XX:AOTMode=record -XX:AOTConfiguration=/tmp/agent.aotconf" \
         'java -cp "$jar" "$here/AgentTraining.java" "$root/tmp/train.sock"' \
       && in_root /opt/flotilla/jre/bin/java -XX:AOTMode=create -XX:AOTConfiguration=/tmp/agent.aotconf $no_aot_code \
            -XX:AOTCache=/opt/flotilla/agent.aot $java_opts -cp /opt/flotilla/agent.jar >>"$work/archive.log" 2>&1 \
       && in_root /opt/flotilla/jre/bin/java -XX:AOTCache=/opt/flotilla/agent.aot -XX:AOTMode=on $java_opts \
            -cp /opt/flotilla/agent.jar -version >>"$work/archive.log" 2>&1; then
      archive="agent.aot"
    else
      log "AOT cache not made (the agent boots slower):"; cat "$work/archive.log" >&2 2>/dev/null || true
      rm -f "$root/opt/flotilla/agent.aot"
    fi
  elif train "-Xshare:off -XX:DumpLoadedClassList=/tmp/classes.lst" 'true' \
     && [ -s "$root/tmp/classes.lst" ] && in_root /opt/flotilla/jre/bin/java -Xshare:dump $java_opts \
       -XX:SharedClassListFile=/tmp/classes.lst -XX:SharedArchiveFile=/opt/flotilla/agent.jsa \
       -cp /opt/flotilla/agent.jar >>"$work/archive.log" 2>&1; then
    archive="agent.jsa ($(wc -l <"$root/tmp/classes.lst") classes)"
  else
    log "CDS archive not built (agent boots ~1.4 s slower):"; cat "$work/archive.log" >&2 2>/dev/null || true
  fi
  rm -rf "${root:?}/tmp/"*
else
  log "not root: no class archive (agent boots ~1.4 s slower)"
fi

# --- Pack -------------------------------------------------------------------------------------
# Compressed, with lz4 (the kernel's legacy frame, `-l`): a booting guest holds the archive QEMU
# loaded and the files unpacked from it at once. Uncompressed (88 MiB), that left a 256 MiB guest
# 113 MiB before unpacking and no room for the rest of its boot: some boots ended in "System is
# deadlocked on memory". lz4 (35 MiB) leaves it 168 MiB, and under TCG it reaches /init sooner
# than the bigger file loads (1.39 s against 1.85 s in the guest's clock; gzip 2.5 s, zstd 2.3 s).
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | lz4 -l -9 -q >"$work/initramfs.cpio"
mv "$work/vmlinux" "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
mv "$work/initramfs.cpio" "$out/initramfs.cpio.tmp" && mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
cat >"$out/image.properties.tmp" <<EOF
key=$key
kernel=$kver
packages=$versions
java.modules=$mods
jdk=$("$jhome/bin/java" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.runtime.version/ {print $2}')
archive=$archive
initramfs.bytes=$(stat -c %s "$out/initramfs.cpio")
initramfs.compression=lz4-legacy
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
mv "$out/image.properties.tmp" "$out/image.properties"
log "done in $(( $(date +%s) - t0 )) s: $out (initramfs $(( $(stat -c %s "$out/initramfs.cpio") / 1048576 )) MiB, JDK $jmajor, archive $archive)"
