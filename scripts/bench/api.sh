#!/usr/bin/env bash
# make bench-api: POST create throughput and latency of a release build of
# `depman api` at 1, 16 and 64 concurrent clients (wrk), next to a baseline
# measured in the same run: pgbench running the same SQL transaction at the
# same concurrency. Prints api/baseline throughput as a ratio.
# Knobs: BENCH_DURATION (s per step), BENCH_CONCURRENCY ("1 16 64"),
# BENCH_RUST_LOG (the api's log filter, default info: warn shows what the
# per-request log line costs), DEPMAN_BIN (a depman binary to measure instead
# of the checkout's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. .devenv/env.sh

DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64"}
PORT=${BENCH_PORT:-18090}
. scripts/bench/lib.sh

install_from_debian wrk wrk
build_depman
fresh_database bench_api
start_api "$depman" "$PORT"
# The first request creates the user; the baseline uses the same one.
wrk -t1 -c1 -d1s -s scripts/bench/create.lua "http://127.0.0.1:$PORT" >/dev/null
user_id=$(psql -qAt "$bench_url" -c "SELECT id FROM users WHERE user_external_id = 'bench'")

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
