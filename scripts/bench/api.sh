#!/usr/bin/env bash
# make bench-api: POST create throughput and latency of a release build of
# `depman api` at 1, 16 and 64 concurrent clients (wrk), next to a baseline
# measured in the same run: pgbench running the same SQL transaction at the
# same concurrency. Prints api/baseline throughput as a ratio.
# Knobs: BENCH_DURATION (s per step), BENCH_CONCURRENCY ("1 16 64"),
# BENCH_RUST_LOG (the api's log filter, default info: warn shows what the
# per-request log line costs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. .devenv/env.sh

DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64"}
PORT=${BENCH_PORT:-18090}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
work=$(mktemp -d)

if ! command -v wrk >/dev/null; then
  echo "installing wrk from Debian's packages" >&2
  apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
cargo build --locked --release --bin depman -q
depman=${CARGO_TARGET_DIR:-target}/release/depman

run=$(date +%s)
database="bench_api_$run"
# Streams of its own, so the messages it publishes stay out of `make dev`'s.
export DEPMAN_PREFIX="benchapi$run"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $database"
bench_url="${DATABASE_URL%/*}/$database"
cleanup() {
  [[ -n ${api_pid:-} ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  # As the superuser: autovacuum may be in the database after the load.
  psql -q "$DEPMAN_PG_ADMIN dbname=postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
  for stream in requests dead_letters sync; do
    nats --server "$NATS_URL" stream rm -f "${DEPMAN_PREFIX}_$stream" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The per-user rate limit is off: a few users post at full speed here.
DEPMAN_RATE_LIMIT=off DATABASE_URL=$bench_url DEPMAN_HTTP_ADDR=127.0.0.1:$PORT RUST_LOG=${BENCH_RUST_LOG:-info} "$depman" api >"$work/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/api/v1/ping" >/dev/null && break; sleep 0.2; done
# The first request creates the user; the baseline uses the same one.
wrk -t1 -c1 -d1s -s scripts/bench/create.lua "http://127.0.0.1:$PORT" >/dev/null
user_id=$(psql -qAt "$bench_url" -c "SELECT id FROM users WHERE user_external_id = 'bench'")

# Prints "<throughput/s> <p50 ms> <p99 ms>" for wrk's --latency output.
wrk_figures() {
  awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /^Requests\/sec/ {rps=$2}
       function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
       END { printf "%.0f %.2f %.2f\n", rps, ms(p50), ms(p99) }' "$1"
}

# Prints the same for pgbench's per-transaction log (latency in microseconds).
pgbench_figures() { # log files..., tps
  local tps=$1
  shift
  cat "$@" | awk '{print $3}' | sort -n | awk -v tps="$tps" '{v[NR]=$1} END {
    printf "%.0f %.2f %.2f\n", tps, v[int(NR*0.50)]/1000, v[int(NR*0.99)]/1000 }'
}

printf '\n%-8s %12s %9s %9s %14s %9s %9s %8s\n' clients "api req/s" "p50 ms" "p99 ms" "baseline tx/s" "p50 ms" "p99 ms" ratio
for c in $CONCURRENCY; do
  threads=$((c < 2 ? 1 : 2))
  wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s scripts/bench/create.lua \
    "http://127.0.0.1:$PORT" >"$work/wrk-$c.txt"
  read -r api_rps api_p50 api_p99 < <(wrk_figures "$work/wrk-$c.txt")
  failed=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {n+=1} END {print n+0}' "$work/wrk-$c.txt")
  (cd "$work" && "$PG_BIN/pgbench" -n -M prepared -c "$c" -j "$threads" -T "$DURATION" \
    -D user_id="$user_id" -f "$OLDPWD/scripts/bench/create.sql" -l --log-prefix="pg-$c" "$bench_url" >"pgbench-$c.txt" 2>&1)
  tps=$(awk '/^tps/ {print $3; exit}' "$work/pgbench-$c.txt")
  read -r pg_tps pg_p50 pg_p99 < <(pgbench_figures "$tps" "$work"/pg-"$c".*)
  ratio=$(awk -v a="$api_rps" -v b="$pg_tps" 'BEGIN { printf "%.2f", a / b }')
  printf '%-8s %12s %9s %9s %14s %9s %9s %8s%s\n' "$c" "$api_rps" "$api_p50" "$api_p99" "$pg_tps" "$pg_p50" "$pg_p99" "$ratio" \
    "$([[ $failed != 0 ]] && echo "  (of which $failed were errors)")"
done
echo
echo "api/baseline is the ratio of throughputs; goal at 16 clients: >= 0.6 with api p99 < 25 ms"
