# What make bench-api, bench-list and profile-api share: a fresh database
# and JetStream prefix of their own, a release `depman api` on it, removed
# again on exit, and the figures of wrk and pgbench. Sourced from the
# repository's root, with .devenv/env.sh loaded.

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
work=$(mktemp -d)

install_from_debian() { # command package
  command -v "$1" >/dev/null && return 0
  echo "installing $2 from Debian's packages" >&2
  apt-get install -y -qq "$2" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }
}

# Sets `depman`: the release build of the checkout, or DEPMAN_BIN when set
# (another build, to compare two in one sitting).
build_depman() {
  if [[ -n ${DEPMAN_BIN:-} ]]; then
    depman=$DEPMAN_BIN
  else
    cargo build --locked --release --bin depman -q
    depman=${CARGO_TARGET_DIR:-target}/release/depman
  fi
}

# A database and streams named after `name` and this second; sets
# `database`, `bench_url` and DEPMAN_PREFIX, and removes them on exit.
fresh_database() { # name
  local run
  run=$(date +%s)
  database="${1}_$run"
  # Streams of its own, so the messages it publishes stay out of `make dev`'s.
  export DEPMAN_PREFIX="${1//_/}$run"
  psql -q "$DATABASE_URL" -c "CREATE DATABASE $database"
  bench_url="${DATABASE_URL%/*}/$database"
  trap cleanup EXIT
}

cleanup() {
  [[ -n ${api_pid:-} ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  # As the superuser: autovacuum may be in the database after the load.
  psql -q "$DEPMAN_PG_ADMIN dbname=postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
  for stream in requests dead_letters sync; do
    nats --server "$NATS_URL" stream rm -f "${DEPMAN_PREFIX}_$stream" >/dev/null 2>&1 || true
  done
  if [[ -n ${BENCH_KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

# `depman api` from binary `bin` on the fresh database at `port`, its log in
# $work/api.log, once it answers. The per-user rate limit is off: a few
# users send at full speed here.
start_api() { # bin port
  DEPMAN_RATE_LIMIT=off DATABASE_URL=$bench_url DEPMAN_HTTP_ADDR=127.0.0.1:$2 RUST_LOG=${BENCH_RUST_LOG:-info} "$1" api >"$work/api.log" 2>&1 &
  api_pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$2/api/v1/ping" >/dev/null && break; sleep 0.2; done
}

# Prints "<throughput/s> <p50 ms> <p99 ms>" for wrk's --latency output.
wrk_figures() {
  awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /^Requests\/sec/ {rps=$2}
       function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
       END { printf "%.0f %.2f %.2f\n", rps, ms(p50), ms(p99) }' "$1"
}

# Prints the same for pgbench's per-transaction logs (latency in microseconds).
pgbench_figures() { # tps, log files...
  local tps=$1
  shift
  cat "$@" | awk '{print $3}' | sort -n | awk -v tps="$tps" '{v[NR]=$1} END {
    printf "%.0f %.2f %.2f\n", tps, v[int(NR*0.50)]/1000, v[int(NR*0.99)]/1000 }'
}
