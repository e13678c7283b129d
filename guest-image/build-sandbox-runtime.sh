#!/usr/bin/env bash
# Builds the runtime that the process driver mounts read-only at /.fl in every sandbox: the guest
# agent, a jlinked JRE and the glibc it needs, tini and busybox. A user's image may have no glibc
# at all (busybox, Alpine, distroless), so nothing here may rely on the image: bin/java's ELF
# interpreter is set to /.fl/lib/ld-linux-x86-64.so.2 (Debian's patchelf) and the agent alone gets
# LD_LIBRARY_PATH=/.fl/lib (the agent never passes it on: its children get a clean environment).
#
#   guest-image/build-sandbox-runtime.sh [--agent-jar PATH] [--out DIR]
#
# Output (default guest-image/out/sandbox-runtime): jre/ lib/ bin/{tini,busybox} agent.jar
# agent.jsa (a CDS archive made for the paths under /.fl) runtime.properties.
# Cached: a second run with the same inputs does nothing.
set -euo pipefail

. "$(dirname "$0")/build-args.sh"
parse_build_args "$(cd "$(dirname "$0")" && pwd)/out/sandbox-runtime" "$@"
log() { echo "sandbox-runtime: $*" >&2; }
ensure_agent_jar log
for tool in jlink jdeps patchelf sha256sum unshare chroot setpriv; do
  command -v "$tool" >/dev/null || { log "missing $tool (run scripts/setup-host.sh)"; exit 1; }
done
busybox="$(command -v busybox || true)"; [ -x /bin/busybox ] && busybox=/bin/busybox
tini="$(command -v tini-static || true)"; [ -z "$tini" ] && [ -x /usr/bin/tini-static ] && tini=/usr/bin/tini-static
[ -n "$busybox" ] && [ -n "$tini" ] || { log "missing busybox-static or tini (run scripts/setup-host.sh)"; exit 1; }
file "$busybox" 2>/dev/null | grep -q 'statically linked' || ! command -v file >/dev/null \
  || { log "$busybox is not static (install busybox-static)"; exit 1; }
jhome="$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")"

jar_digest() { if command -v unzip >/dev/null; then unzip -p "$jar" | sha256sum; else sha256sum <"$jar"; fi; }
key="$( { jar_digest; sha256sum "$0" "$busybox" "$tini" | cut -d' ' -f1; "$jhome/bin/java" -version 2>&1; } | sha256sum | cut -c1-16)"
if [ -f "$out/runtime.properties" ] && grep -qx "key=$key" "$out/runtime.properties"; then
  exit 0
fi
t0=$(date +%s)
log "building $out (key $key)"
work="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-sandbox-runtime.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rt="$work/rt"
mkdir -p "$rt/bin" "$rt/lib" "$rt/run"
cp "$jar" "$rt/agent.jar"
cp "$busybox" "$rt/bin/busybox"
cp "$tini" "$rt/bin/tini"
# util-linux's setpriv runs a process as the image's (or the exec's) user: the agent prefixes it.
cp /usr/bin/setpriv "$rt/bin/setpriv"

mods="$(jdeps --multi-release 17 --ignore-missing-deps --print-module-deps "$jar" 2>/dev/null || true)"
# JNA (the agent's terminals) names java.desktop for AWT helpers the agent never calls; JNA only
# "requires static" it, so it stays out (12 MiB).
mods="$(echo "java.base,jdk.unsupported${mods:+,$mods}" | tr , "\\n" | grep -vx java.desktop | sort -u | paste -sd,)"
jlink --add-modules "$mods" --output "$rt/jre" --strip-debug --no-man-pages --no-header-files --compress=0
rm -f "$rt/jre/lib/server/classes"*.jsa
# JNA's native part for this host's architecture, where the agent tells JNA to load it from (its
# JRE's lib/): never unpacked into a temporary directory at run time (the root may be read-only).
jna_so="com/sun/jna/linux-$(uname -m | sed 's/^x86_64$/x86-64/; s/^arm64$/aarch64/')/libjnidispatch.so"
mkdir -p "$work/jna" && (cd "$work/jna" && "$jhome/bin/jar" xf "$jar" "$jna_so")
[ -s "$work/jna/$jna_so" ] || { log "no $jna_so in $jar"; exit 1; }
cp "$work/jna/$jna_so" "$rt/jre/lib/libjnidispatch.so"

# glibc and whatever else the runtime links outside itself, flat in lib/.
for l in $( { find "$rt/jre" -name '*.so' -o -path '*/bin/*' -type f; echo "$rt/bin/setpriv"; } | xargs ldd 2>/dev/null \
             | awk '/=> \// {print $3}' | grep -v "^$rt" | sort -u); do
  cp -L "$l" "$rt/lib/"
done
ld="$(ldd "$rt/jre/bin/java" | awk '/ld-linux/ {print $1}')"
cp -L "$ld" "$rt/lib/ld-linux-x86-64.so.2"
# Every executable of the runtime, jspawnhelper too (the JVM starts each child process through it).
for exe in $(find "$rt/jre" -type f -perm -u+x); do
  if patchelf --print-interpreter "$exe" >/dev/null 2>&1; then
    patchelf --set-interpreter /.fl/lib/ld-linux-x86-64.so.2 "$exe"
  fi
done

# setpriv runs with the clean environment of the processes the agent starts: no LD_LIBRARY_PATH.
patchelf --set-interpreter /.fl/lib/ld-linux-x86-64.so.2 --set-rpath /.fl/lib "$rt/bin/setpriv"

# CDS: train and dump at the paths the sandbox sees (/.fl), in a throwaway root holding only the
# runtime, so the archive's class-path check passes there.
in_root() {
  local r="$work/root"
  mkdir -p "$r/.fl" "$r/proc" "$r/dev" "$r/tmp" "$r/bin"
  cp "$busybox" "$r/bin/sh"
  unshare --mount --pid --fork sh -c 'mount --bind "$1" "$0/.fl" && mount -t proc proc "$0/proc" \
    && mount -t tmpfs tmpfs "$0/dev" && mknod -m 666 "$0/dev/null" c 1 3 && shift && exec chroot "$0" "$@"' "$r" "$rt" "$@"
}
java_opts="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Xms8m -Xmx48m -XX:-UsePerfData"
export LD_LIBRARY_PATH=/.fl/lib
cds=no
if in_root /bin/sh -c "/.fl/jre/bin/java -Xshare:off $java_opts -XX:DumpLoadedClassList=/tmp/classes.lst \
      -jar /.fl/agent.jar --listen unix:/tmp/train.sock --sandbox-id train --incarnation 1 & pid=\$!; \
    i=0; while [ ! -S /tmp/train.sock ] && [ \$i -lt 600 ] && kill -0 \$pid 2>/dev/null; do usleep 50000; i=\$((i+1)); done; \
    kill \$pid; wait \$pid; true; \
    /.fl/jre/bin/java -Xshare:dump $java_opts -XX:SharedClassListFile=/tmp/classes.lst \
      -XX:SharedArchiveFile=/.fl/agent.jsa -cp /.fl/agent.jar" >"$work/cds.log" 2>&1 && [ -s "$rt/agent.jsa" ]; then
  cds=yes
else
  log "CDS archive not built (the agent starts slower):"; cat "$work/cds.log" >&2
fi
in_root /.fl/jre/bin/java -version >"$work/version.log" 2>&1 || { log "the runtime does not run:"; cat "$work/version.log" >&2; exit 1; }
unset LD_LIBRARY_PATH
chmod -R a+rX,go-w "$rt"
cat >"$rt/runtime.properties" <<PROPS
key=$key
java.modules=$mods
cds=$cds
bytes=$(du -sb "$rt" | cut -f1)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
PROPS
rm -rf "$out.new" && mkdir -p "$(dirname "$out")" && cp -a "$rt" "$out.new"
rm -rf "$out.old"; [ -d "$out" ] && mv "$out" "$out.old"; mv "$out.new" "$out"; rm -rf "$out.old"
log "done in $(( $(date +%s) - t0 )) s: $out ($(( $(du -sb "$out" | cut -f1) / 1048576 )) MiB, cds $cds)"
