# Shared by guest-image/build.sh and build-sandbox-runtime.sh (sourced): their arguments and the
# guest agent jar both package.
#   parse_build_args DEFAULT_OUT "$@"   sets here, repo, out, jar from [--agent-jar PATH] [--out DIR]
#   ensure_agent_jar LOG_FUNCTION        the default jar is built when nobody built it yet
parse_build_args() {
  here="$(cd "$(dirname "$0")" && pwd)"
  repo="$(cd "$here/.." && pwd)"
  out="$1"
  shift
  jar=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --agent-jar) jar="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      *) echo "usage: $0 [--agent-jar PATH] [--out DIR]" >&2; exit 2 ;;
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
}
