#!/usr/bin/env bash
# make bench-list: the list routes of a release build of `depman api` with
# 100,000 requests of one user in the table (scripts/bench/list-seed.sql),
# at 16 concurrent clients (wrk), each next to a baseline measured in the
# same run: pgbench running the query that answers the route, its filters
# written in (the plan PostgreSQL would pick for that very page), at the same
# concurrency. Prints throughput, p50 and p99 of both and api/baseline.
# Knobs: BENCH_DURATION (s per route), BENCH_CLIENTS (16), DEPMAN_BIN (a
# depman binary to measure instead of the checkout's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. .devenv/env.sh

DURATION=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-16}
PORT=${BENCH_PORT:-18091}
. scripts/bench/lib.sh

install_from_debian wrk wrk
build_depman
fresh_database bench_list
start_api "$depman" "$PORT"
seeding=$(date +%s%N)
psql -q -v ON_ERROR_STOP=1 "$bench_url" -f scripts/bench/list-seed.sql
awk -v ns=$(($(date +%s%N) - seeding)) 'BEGIN { printf "seeded 100,000 requests (and 10,000 of another user) in %.1f s\n", ns / 1e9 }'
# The seeding's writes on disk before measuring, so that flushing them does
# not compete with the first route.
psql -q "$DEPMAN_PG_ADMIN dbname=postgres" -c CHECKPOINT
sync
user_id=$(psql -qAt "$bench_url" -c "SELECT id FROM users WHERE user_external_id = 'bench'")
# The cursor of a page halfway down: the 50,000th request, newest first.
read -r middle_micros middle_id < <(psql -qAt -F ' ' "$bench_url" -c \
  "SELECT (extract(epoch FROM created_on) * 1000000)::bigint, id FROM deployment_requests
   WHERE user_id = '$user_id' ORDER BY created_on DESC, id DESC OFFSET 50000 LIMIT 1")
middle_cursor=$(printf '%s|%s' "$middle_micros" "$middle_id" | base64 -w0 | tr '+/' '-_' | tr -d '=')

REQUEST_COLUMNS="id, request_id, identifier, name, namespace, request_type, status, failure_reason, failure_code, attempts, image, spec, created_on, updated_on, fingerprint, rollout, rolled_back_to"
DEPLOYMENT_COLUMNS="id, identifier, name, namespace, image, status, health, health_reason, health_message, replicas, ready_replicas, available_replicas, updated_replicas, generation, observed_generation, conditions, resource_version, created_on, updated_on"
EVENT_COLUMNS="xid::text AS xid, seq, type, occurred_on, user_id, identifier, request_id, actor, data::text AS data, changes::text AS changes"
NEWEST="ORDER BY created_on DESC, id DESC LIMIT 51"

# name | path and query | the query that answers it
routes=(
  "requests, first page|/api/v1/deployments/requests|SELECT $REQUEST_COLUMNS FROM deployment_requests WHERE user_id = :user_id::uuid $NEWEST"
  "requests, status=FAILURE|/api/v1/deployments/requests?status=FAILURE|SELECT $REQUEST_COLUMNS FROM deployment_requests WHERE user_id = :user_id::uuid AND status = 'FAILURE' $NEWEST"
  "requests, one identifier|/api/v1/deployments/requests?identifier=d-04242|SELECT $REQUEST_COLUMNS FROM deployment_requests WHERE user_id = :user_id::uuid AND identifier = 'd-04242' $NEWEST"
  "requests, page at 50,000|/api/v1/deployments/requests?cursor=$middle_cursor|SELECT $REQUEST_COLUMNS FROM deployment_requests WHERE user_id = :user_id::uuid AND (created_on, id) < (to_timestamp($middle_micros / 1000000.0), '$middle_id') $NEWEST"
  "deployments, namespace|/api/v1/deployments?namespace=ns-3|SELECT $DEPLOYMENT_COLUMNS FROM deployments WHERE user_id = :user_id::uuid AND namespace = 'ns-3' $NEWEST"
  "deployments, search|/api/v1/deployments?search=424|SELECT $DEPLOYMENT_COLUMNS FROM deployments WHERE user_id = :user_id::uuid AND identifier LIKE '%424%' $NEWEST"
  "revisions of one|/api/v1/deployments/d-04242/revisions|SELECT $REQUEST_COLUMNS, row_number() OVER (ORDER BY sequence) FROM deployment_requests WHERE identifier = 'd-04242' AND user_id = :user_id::uuid AND status = 'SUCCESS' AND request_type IN ('CREATE', 'UPDATE') ORDER BY sequence DESC LIMIT 51"
  "events, newest first|/api/v1/events?order=newest_first|SELECT $EVENT_COLUMNS FROM events WHERE (user_id, xid, seq) > (:user_id::uuid, '0'::xid8, 0) AND (user_id, xid) < (:user_id::uuid, pg_snapshot_xmin(pg_current_snapshot())) ORDER BY events.user_id DESC, events.xid DESC, events.seq DESC LIMIT 101"
)

threads=$((CLIENTS < 2 ? 1 : 2))
printf '\n%-28s %10s %8s %8s %14s %8s %8s %7s\n' "route ($CLIENTS clients)" "api req/s" "p50 ms" "p99 ms" "baseline tx/s" "p50 ms" "p99 ms" ratio
index=0
for route in "${routes[@]}"; do
  IFS='|' read -r name path query <<<"$route"
  index=$((index + 1))
  status=$(curl -s -o "$work/body-$index.json" -w '%{http_code}' -H 'X-User-ID: bench' "http://127.0.0.1:$PORT$path")
  items=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$work/body-$index.json" 2>/dev/null || echo "?")
  if [[ $status != 200 || $items == 0 || $items == "?" ]]; then
    echo "$name: $path answered $status with $items items" >&2
    exit 1
  fi
  # Warm: every pooled connection open and its statements prepared.
  wrk -t"$threads" -c"$CLIENTS" -d2s -H 'X-User-ID: bench' "http://127.0.0.1:$PORT$path" >/dev/null
  wrk -t"$threads" -c"$CLIENTS" -d"${DURATION}s" --latency -H 'X-User-ID: bench' \
    "http://127.0.0.1:$PORT$path" >"$work/wrk-$index.txt"
  read -r api_rps api_p50 api_p99 < <(wrk_figures "$work/wrk-$index.txt")
  failed=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {n+=1} END {print n+0}' "$work/wrk-$index.txt")
  printf '%s;\n' "$query" >"$work/query-$index.sql"
  (cd "$work" && "$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$threads" -T "$DURATION" \
    -D user_id="$user_id" -f "query-$index.sql" -l --log-prefix="pg-$index" "$bench_url" >"pgbench-$index.txt" 2>&1) ||
    { cat "$work/pgbench-$index.txt" >&2; exit 1; }
  tps=$(awk '/^tps/ {print $3; exit}' "$work/pgbench-$index.txt")
  read -r pg_tps pg_p50 pg_p99 < <(pgbench_figures "$tps" "$work"/pg-"$index".*)
  ratio=$(awk -v a="$api_rps" -v b="$pg_tps" 'BEGIN { printf "%.2f", a / b }')
  echo "$name: measured from $(date -u +%T -d "@$(($(date +%s) - 2 * DURATION))")" >>"$work/times.txt"
  printf '%-28s %10s %8s %8s %14s %8s %8s %7s%s\n' "$name" "$api_rps" "$api_p50" "$api_p99" "$pg_tps" "$pg_p50" "$pg_p99" "$ratio" \
    "$([[ $failed != 0 ]] && echo "  ($failed errors)")"
done
echo
echo "api/baseline is the ratio of throughputs; goal: every list route's api p99 < 20 ms"
