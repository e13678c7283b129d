# Shared by guest-image/build.sh and build-sandbox-runtime.sh (sourced): their arguments, the
# guest agent jar both package and the JDK whose runtime they package.
#   parse_build_args DEFAULT_OUT "$@"   sets here, repo, out, jar, jdk from [--agent-jar PATH]
#                                        [--out DIR] [--jdk PATH|build]
#   ensure_agent_jar LOG_FUNCTION        the default jar is built when nobody built it yet
#   pick_runtime_jdk LOG_FUNCTION        sets jhome, jmajor and aot (yes/no)
parse_build_args() {
  here="$(cd "$(dirname "$0")" && pwd)"
  repo="$(cd "$here/.." && pwd)"
  out="$1"
  shift
  jar=""
  jdk="${FLOTILLA_RUNTIME_JDK:-}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --agent-jar) jar="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --jdk) jdk="$2"; shift 2 ;;
      *) echo "usage: $0 [--agent-jar PATH] [--out DIR] [--jdk PATH|build]" >&2; exit 2 ;;
    esac
  done
}

ensure_agent_jar() {
  if [ -z "$jar" ]; then
    jar="$repo/guest-agent/target/flotilla-guest-agent.jar"
    if [ ! -f "$jar" ]; then
      "$1" "building the guest agent jar"
      (cd "$repo" && mvn -B -q -ntp -pl guest-agent -am package -DskipTests)
    fi
  fi
  [ -f "$jar" ] || { "$1" "no agent jar at $jar"; exit 1; }
  # Absolute: the builds read it from other working directories (jar xf of JNA's native part).
  jar="$(readlink -f "$jar")"
}

# The JDK whose jlink makes the runtime. JDK 25 or later has the AOT cache (JEP 483/514/515: classes
# loaded and linked ahead of time, method profiles), which starts the agent faster than a CDS archive
# on 17; this machine kind has Temurin 25 at the path below, which is on no registry the build could
# fetch it from, so without it the runtime is JDK 17's with a CDS archive, as before. --jdk (or
# FLOTILLA_RUNTIME_JDK) names another JDK home, or "build" for the JDK running the build;
# FLOTILLA_AOT_JDK moves where Temurin 25 is looked for (a missing path tries the fallback). The agent
# jar stays compiled for 17 either way.
AOT_JDK_DEFAULT="${FLOTILLA_AOT_JDK:-/usr/lib/jvm/temurin-25-jdk-$(dpkg --print-architecture 2>/dev/null || echo amd64)}"
java_major() { "$1/bin/java" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}' | cut -d. -f1; }
pick_runtime_jdk() {
  local build_jdk
  build_jdk="$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")"
  case "$jdk" in
    build) jhome="$build_jdk" ;;
    "") if [ -x "$AOT_JDK_DEFAULT/bin/jlink" ] && [ "$(java_major "$AOT_JDK_DEFAULT")" -ge 25 ] 2>/dev/null; then
          jhome="$AOT_JDK_DEFAULT"
        else
          "$1" "no JDK 25 at $AOT_JDK_DEFAULT: the runtime is the build's JDK with a CDS archive (the agent starts slower)"
          jhome="$build_jdk"
        fi ;;
    *) [ -x "$jdk/bin/jlink" ] || { "$1" "--jdk $jdk: no bin/jlink there"; exit 1; }; jhome="$(readlink -f "$jdk")" ;;
  esac
  jmajor="$(java_major "$jhome")"
  aot=no; [ "$jmajor" -ge 25 ] && aot=yes
  true
}
