# NATS server with JetStream, built from the Go module proxy (tools/nats).
# File store under the state folder; monitoring on its own port.

NATS_DIR=$DEPMAN_STATE/nats
NATS_PIDFILE=$NATS_DIR/nats-server.pid
NATS_LOG=$NATS_DIR/nats-server.log

nats_bin() { echo "$(tool_dir nats "$NATS_SERVER_VERSION")/$1"; }

# Any build of nats-server this cache holds: after a pin bump the running
# server is the old build, and must still be recognised to be stopped.
NATS_ANY_SERVER="$DEPMAN_BIN/nats-*/nats-server"

nats_url() { echo "nats://127.0.0.1:$DEPMAN_NATS_PORT"; }

nats_monitor() { echo "http://127.0.0.1:$DEPMAN_NATS_MONITOR_PORT"; }

# Healthy and with JetStream on: what /healthz answers when JetStream is ready.
nats_ready() {
  curl -fsS "$(nats_monitor)/healthz?js-enabled-only=true" 2>/dev/null | grep -q '"ok"'
}

nats_up() {
  if live_pid "$NATS_PIDFILE" "$(nats_bin nats-server)" >/dev/null && nats_ready; then
    say "NATS already up on port $DEPMAN_NATS_PORT"
    return 0
  fi
  stop_pidfile "$NATS_PIDFILE" "$NATS_ANY_SERVER" "stale NATS server"
  require_free_port "$DEPMAN_NATS_PORT" DEPMAN_NATS_PORT
  require_free_port "$DEPMAN_NATS_MONITOR_PORT" DEPMAN_NATS_MONITOR_PORT
  mkdir -p "$NATS_DIR"
  cat >"$NATS_DIR/nats-server.conf" <<CONF
server_name: depman-dev
listen: 127.0.0.1:$DEPMAN_NATS_PORT
http: 127.0.0.1:$DEPMAN_NATS_MONITOR_PORT
pid_file: "$NATS_PIDFILE"
jetstream {
  store_dir: "$NATS_DIR"
  max_memory_store: 1GB
  max_file_store: 20GB
}
CONF
  setsid "$(nats_bin nats-server)" -c "$NATS_DIR/nats-server.conf" >>"$NATS_LOG" 2>&1 </dev/null &
  wait_until 30 "NATS with JetStream up on port $DEPMAN_NATS_PORT (monitoring $(nats_monitor))" nats_ready ||
    die "NATS did not become healthy: see $NATS_LOG"
}

nats_down() {
  stop_pidfile "$NATS_PIDFILE" "$NATS_ANY_SERVER" "NATS"
}

nats_status() {
  if nats_ready; then
    echo "nats       up    $(nats_url)  monitoring $(nats_monitor)  store $NATS_DIR/jetstream"
  else
    echo "nats       down  (port $DEPMAN_NATS_PORT)"
  fi
}
