# Shared settings and helpers of the local environment scripts.
# Sourced by scripts/env/main.sh; every setting can be overridden from the
# environment, and docs/setup.md lists them.

# runuser and ss live in sbin, which a non-login PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

DEPMAN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPMAN_CACHE=${DEPMAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/depman}
# Built binaries live under bin/, keyed by version; state/ holds data and logs.
DEPMAN_BIN=$DEPMAN_CACHE/bin
DEPMAN_STATE=${DEPMAN_STATE:-$DEPMAN_CACHE/state}
DEVENV_DIR=$DEPMAN_ROOT/.devenv

DEPMAN_PG_PORT=${DEPMAN_PG_PORT:-55432}
DEPMAN_NATS_PORT=${DEPMAN_NATS_PORT:-4222}
DEPMAN_NATS_MONITOR_PORT=${DEPMAN_NATS_MONITOR_PORT:-8222}
DEPMAN_KUBE_PORT=${DEPMAN_KUBE_PORT:-56443}
DEPMAN_DEX_PORT=${DEPMAN_DEX_PORT:-55556}
DEPMAN_KUBE_CLUSTER=${DEPMAN_KUBE_CLUSTER:-depman}

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
NATS_SERVER_VERSION=v2.15.2
NATSCLI_VERSION=v0.5.0
# Dex v2.45.1 (its commit 11d2eeb; the module has no /v2 path, so the
# release is pinned by pseudo-version in tools/dex/go.mod).
DEX_VERSION=v2.45.1

say() { printf '==> %s\n' "$*" >&2; }

# One clear line naming the problem and the fix, then stop.
die() {
  printf 'make env: %s\n' "$*" >&2
  exit 1
}

require_command() { # name, fix
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Fails with the owner of the port when it is taken by someone else.
require_free_port() { # port, variable that moves it
  port_open "$1" || return 0
  local owner
  owner=$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*"' | head -n1 | cut -d'"' -f2)
  die "port $1 is in use${owner:+ by $owner}: stop that process or choose another port with $2=<port>"
}

# Polls a command until it succeeds or the timeout (seconds) runs out.
wait_until() { # timeout, description, command...
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
  say "$what"
}

# The pid in a pid file, if that process is still alive and runs the given
# binary (a path, or a glob of paths). A machine booted from a saved disk
# reuses the pids of the last session, so a live pid alone may well be some
# other program's.
live_pid() { # pidfile, binary
  local pid exe
  [[ -f $1 ]] && pid=$(<"$1") && [[ $pid =~ ^[0-9]+$ ]] &&
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) && [[ -n $exe ]] &&
    # shellcheck disable=SC2053 # $2 may be a glob
    { [[ $exe == "$(readlink -f "$2")" ]] || [[ $exe == $2 ]]; } && echo "$pid"
}

# Waits for processes that were asked to stop to exit; KILLs those still
# there after the grace period.
wait_exit() { # seconds, pids...
  local deadline=$((SECONDS + $1)) pid alive
  shift
  while :; do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    ((${#alive[@]})) || return 0
    ((SECONDS < deadline)) || break
    sleep 0.25
  done
  kill -9 "${alive[@]}" 2>/dev/null || true
}

# Stops the process of a pid file: TERM, then KILL after a grace period.
stop_pidfile() { # pidfile, binary, name
  local pid
  pid=$(live_pid "$1" "$2") || { rm -f "$1"; return 0; }
  kill "$pid" 2>/dev/null
  wait_exit 10 "$pid"
  rm -f "$1"
  say "$3 stopped"
}
