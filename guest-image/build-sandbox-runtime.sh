#!/usr/bin/env bash
# Builds the runtime that the process driver mounts read-only at /.fl in every sandbox: the guest
# agent, a jlinked JRE and the glibc it needs, tini and busybox. A user's image may have no glibc
# at all (busybox, Alpine, distroless), so nothing here may rely on the image: bin/java's ELF
# interpreter is set to /.fl/lib/ld-linux-x86-64.so.2 (Debian's patchelf) and the agent alone gets
# LD_LIBRARY_PATH=/.fl/lib (the agent never passes it on: its children get a clean environment).
#
#   guest-image/build-sandbox-runtime.sh [--agent-jar PATH] [--out DIR] [--jdk PATH|build]
#
# Output (default guest-image/out/sandbox-runtime): jre/ lib/ bin/{tini,busybox} agent.jar
# runtime.properties and the agent's class archive, made for the paths under /.fl and the JVM flags
# the driver starts it with (ProcessHypervisorConfig.LEAN_JVM_FLAGS): agent.aot, an AOT cache
# trained by a real agent start, handshake and execs, when the JDK is 25 or later (Temurin 25 where
# the machine has it, see build-args.sh); otherwise agent.jsa, a CDS archive of JDK 17.
# Cached: a second run with the same inputs (the JDK among them) does nothing.
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
pick_runtime_jdk log

jar_digest() { if command -v unzip >/dev/null; then unzip -p "$jar" | sha256sum; else sha256sum <"$jar"; fi; }
key="$( { jar_digest; sha256sum "$0" "$here/build-args.sh" "$here/AgentTraining.java" "$busybox" "$tini" | cut -d' ' -f1
          echo "$jhome"; "$jhome/bin/java" -version 2>&1; } | sha256sum | cut -c1-16)"
if [ -f "$out/runtime.properties" ] && grep -qx "key=$key" "$out/runtime.properties"; then
  exit 0
fi
t0=$(date +%s)
log "building $out (key $key, JDK $jmajor at $jhome, aot $aot)"
work="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-sandbox-runtime.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rt="$work/rt"
mkdir -p "$rt/bin" "$rt/lib" "$rt/run"
cp "$jar" "$rt/agent.jar"
cp "$busybox" "$rt/bin/busybox"
cp "$tini" "$rt/bin/tini"
# util-linux's setpriv runs a process as the image's (or the exec's) user: the agent prefixes it.
cp /usr/bin/setpriv "$rt/bin/setpriv"

mods="$("$jhome/bin/jdeps" --multi-release 17 --ignore-missing-deps --print-module-deps "$jar" 2>/dev/null || true)"
# JNA (the agent's terminals) names java.desktop for AWT helpers the agent never calls; JNA only
# "requires static" it, so it stays out (12 MiB).
mods="$(echo "java.base,jdk.unsupported${mods:+,$mods}" | tr , "\\n" | grep -vx java.desktop | sort -u | paste -sd,)"
"$jhome/bin/jlink" --add-modules "$mods" --output "$rt/jre" --strip-debug --no-man-pages --no-header-files --compress="$([ "$jmajor" -ge 21 ] && echo zip-0 || echo 0)"
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

# The agent's class archive: trained and made at the paths the sandbox sees (/.fl), in a throwaway
# root holding only the runtime, with the flags the driver runs it with, so that the archive's
# class-path and flag checks pass there. Either archive is optional: the agent runs without one.
in_root() {
  local r="$work/root"
  mkdir -p "$r/.fl" "$r/proc" "$r/dev" "$r/tmp" "$r/bin"
  cp "$busybox" "$r/bin/sh"
  unshare --mount --pid --fork sh -c 'mount --bind "$1" "$0/.fl" && mount -t proc proc "$0/proc" \
    && mount -t tmpfs tmpfs "$0/dev" && mknod -m 666 "$0/dev/null" c 1 3 && shift && exec chroot "$0" "$@"' "$r" "$rt" "$@"
}
# Keep in step with ProcessHypervisorConfig.LEAN_JVM_FLAGS: an AOT cache made with other flags
# (the GC above all) is refused at run time.
java_opts="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -Xss512k -Xmx48m -XX:MaxMetaspaceSize=64m \
  -XX:ReservedCodeCacheSize=16m -XX:-UsePerfData"
agent_args="--listen unix:/tmp/train.sock --sandbox-id train --incarnation 1"
# Starts the agent in the root with extra JVM options $1, runs $2 on the host once it listens, then
# stops it with SIGTERM (an AOT recording is written as the JVM exits).
train() {
  rm -f "$work/root/tmp/train.sock" "$work/root/tmp/trained"
  in_root /bin/sh -c "/.fl/jre/bin/java $1 $java_opts -jar /.fl/agent.jar $agent_args & pid=\$!; \
    i=0; while [ ! -e /tmp/trained ] && [ \$i -lt 1200 ] && kill -0 \$pid 2>/dev/null; do usleep 50000; i=\$((i+1)); done; \
    kill \$pid; wait \$pid; true" >>"$work/archive.log" 2>&1 &
  local root_pid=$! i=0
  while [ ! -S "$work/root/tmp/train.sock" ] && [ $i -lt 600 ] && kill -0 $root_pid 2>/dev/null; do sleep 0.05; i=$((i+1)); done
  local ok=0
  [ -S "$work/root/tmp/train.sock" ] && eval "$2" >>"$work/archive.log" 2>&1 && ok=1
  touch "$work/root/tmp/trained"
  wait $root_pid || true
  [ $ok = 1 ]
}
export LD_LIBRARY_PATH=/.fl/lib
archive=none
if [ "$aot" = yes ]; then
  # JEP 483/514/515: record what a real start + handshake + execs loads, links and profiles, then
  # create the cache. The host's JDK runs the training client from the agent jar's client classes.
  # No machine code in the cache (JDK 25 adds adapters compiled for the build host's CPU, which
  # another host's or a TCG guest's CPU may lack, SIGILL): classes and profiles only, portable.
  no_aot_code="-XX:+UnlockDiagnosticVMOptions -XX:-AOTAdapterCaching -XX:-AOTStubCaching"
  if train "-XX:AOTMode=record -XX:AOTConfiguration=/tmp/agent.aotconf" \
       'java -cp "$jar" "$here/AgentTraining.java" "$work/root/tmp/train.sock"' \
     && in_root /.fl/jre/bin/java -XX:AOTMode=create -XX:AOTConfiguration=/tmp/agent.aotconf -XX:AOTCache=/.fl/agent.aot $no_aot_code \
          $java_opts -cp /.fl/agent.jar >>"$work/archive.log" 2>&1 \
     && [ -s "$rt/agent.aot" ] \
     && in_root /.fl/jre/bin/java -XX:AOTCache=/.fl/agent.aot -XX:AOTMode=on -Xlog:aot $java_opts -cp /.fl/agent.jar -version \
          >"$work/aot-check.log" 2>&1; then
    # AOTMode=on refuses to start with a cache it cannot use: this proves the one made fits.
    archive=agent.aot
  else
    log "AOT cache not made (the agent starts slower):"; cat "$work/archive.log" "$work/aot-check.log" >&2 2>/dev/null || true
    rm -f "$rt/agent.aot"
  fi
else
  if train "-Xshare:off -XX:DumpLoadedClassList=/tmp/classes.lst" 'true' \
     && in_root /.fl/jre/bin/java -Xshare:dump $java_opts -XX:SharedClassListFile=/tmp/classes.lst \
          -XX:SharedArchiveFile=/.fl/agent.jsa -cp /.fl/agent.jar >>"$work/archive.log" 2>&1 && [ -s "$rt/agent.jsa" ]; then
    archive=agent.jsa
  else
    log "CDS archive not built (the agent starts slower):"; cat "$work/archive.log" >&2
  fi
fi
in_root /.fl/jre/bin/java -version >"$work/version.log" 2>&1 || { log "the runtime does not run:"; cat "$work/version.log" >&2; exit 1; }
unset LD_LIBRARY_PATH
chmod -R a+rX,go-w "$rt"
cat >"$rt/runtime.properties" <<PROPS
key=$key
java.modules=$mods
jdk=$("$jhome/bin/java" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.runtime.version/ {print $2}')
archive=$archive
bytes=$(du -sb "$rt" | cut -f1)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
PROPS
rm -rf "$out.new" && mkdir -p "$(dirname "$out")" && cp -a "$rt" "$out.new"
rm -rf "$out.old"; [ -d "$out" ] && mv "$out" "$out.old"; mv "$out.new" "$out"; rm -rf "$out.old"
log "done in $(( $(date +%s) - t0 )) s: $out ($(( $(du -sb "$out" | cut -f1) / 1048576 )) MiB, JDK $jmajor, archive $archive)"
