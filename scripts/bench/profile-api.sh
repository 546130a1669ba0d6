#!/usr/bin/env bash
# make profile-api: where the time of a POST create goes. Runs a release
# build of `depman api` under wrk (the load of make bench-api, 16 clients by
# default) while perf samples the api's threads, and prints:
#   - what PostgreSQL spent per statement (pg_stat_statements, preloaded by
#     make env), for the api's own database;
#   - the api's CPU by function (perf report, self time), and by thread;
#   - the request rate, and the CPU seconds each process used per request.
# Knobs: BENCH_DURATION (s, 20), BENCH_CLIENTS (16), BENCH_RUST_LOG (info).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. .devenv/env.sh

DURATION=${BENCH_DURATION:-20}
CLIENTS=${BENCH_CLIENTS:-16}
PORT=${BENCH_PORT:-18092}
. scripts/bench/lib.sh

install_from_debian wrk wrk
install_from_debian perf linux-perf

# Symbols and frame pointers for perf, otherwise the release build.
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
export RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/profile"
build_depman

if [[ $(psql -qAt "$DEPMAN_PG_ADMIN dbname=postgres" -c "SHOW shared_preload_libraries") != *pg_stat_statements* ]]; then
  echo "PostgreSQL was started without pg_stat_statements: run make env-down, then make env" >&2
  exit 1
fi

fresh_database profile_api
start_api "$depman" "$PORT"
wrk -t1 -c1 -d1s -s scripts/bench/create.lua "http://127.0.0.1:$PORT" >/dev/null
admin="$DEPMAN_PG_ADMIN dbname=$database"
psql -q "$admin" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null

# CPU seconds (user + system) a process used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
postgres_cpu() { # every PostgreSQL process, in seconds
  local total=0 pid
  for pid in $(pgrep -x postgres); do total=$(awk -v a="$total" -v b="$(cpu_seconds "$pid" 2>/dev/null || echo 0)" 'BEGIN { print a + b }'); done
  echo "$total"
}

api_before=$(cpu_seconds "$api_pid")
pg_before=$(postgres_cpu)
perf record -F 499 -g -p "$api_pid" -o "$work/perf.data" -- sleep "$DURATION" >/dev/null 2>"$work/perf.log" &
perf_pid=$!
threads=$((CLIENTS < 2 ? 1 : 2))
wrk -t"$threads" -c"$CLIENTS" -d"${DURATION}s" --latency -s scripts/bench/create.lua "http://127.0.0.1:$PORT" >"$work/wrk.txt"
wait "$perf_pid" || true
api_used=$(awk -v a="$(cpu_seconds "$api_pid")" -v b="$api_before" 'BEGIN { print a - b }')
pg_used=$(awk -v a="$(postgres_cpu)" -v b="$pg_before" 'BEGIN { print a - b }')
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")

echo
echo "== wrk, $CLIENTS clients, ${DURATION} s"
grep -E "Requests/sec|^ +(50|99)%" "$work/wrk.txt"
awk -v n="$requests" -v api="$api_used" -v pg="$pg_used" 'BEGIN {
  printf "CPU per request: api %.0f us, PostgreSQL (all its processes) %.0f us\n", api / n * 1e6, pg / n * 1e6 }'

echo
echo "== PostgreSQL, by statement (pg_stat_statements, this database)"
psql -q "$admin" -P pager=off -c "
  SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric) AS total_ms,
         round((100 * total_exec_time / sum(total_exec_time) OVER ())::numeric, 1) AS pct,
         left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  ORDER BY total_exec_time DESC LIMIT 12"

echo "== the api's CPU by thread (perf samples)"
perf report -i "$work/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed -n '1,8p'
echo
echo "== the api's CPU by function, self time (perf samples)"
perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9]+\.[0-9]+%' | cut -c1-150 | sed -e 's/ *$//' -n -e '1,30p'
