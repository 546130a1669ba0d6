# Dex, a real OpenID Connect provider, built from the Go module proxy
# (tools/dex), for the tests of DEPMAN_AUTH=jwt: a static client and static
# users with groups, memory storage, the resource-owner password grant.

DEX_DIR=$DEPMAN_STATE/dex
DEX_PIDFILE=$DEX_DIR/dex.pid
DEX_LOG=$DEX_DIR/dex.log
DEX_ANY="$DEPMAN_BIN/dex-*/dex"

dex_bin() { echo "$(tool_dir dex "$DEX_VERSION")/dex"; }

dex_issuer() { echo "http://127.0.0.1:$DEPMAN_DEX_PORT/dex"; }

dex_ready() {
  curl -fsS "$(dex_issuer)/.well-known/openid-configuration" 2>/dev/null | grep -q '"issuer"'
}

dex_up() {
  if live_pid "$DEX_PIDFILE" "$(dex_bin)" >/dev/null && dex_ready; then
    say "Dex already up at $(dex_issuer)"
    return 0
  fi
  stop_pidfile "$DEX_PIDFILE" "$DEX_ANY" "stale Dex"
  require_free_port "$DEPMAN_DEX_PORT" DEPMAN_DEX_PORT
  mkdir -p "$DEX_DIR"
  # The users' passwords are `password` (alice, Dex's own example hash) and
  # `bob-secret` (bob); they exist only on this machine's loopback.
  cat >"$DEX_DIR/config.yaml" <<CONF
issuer: $(dex_issuer)
storage:
  type: memory
web:
  http: 127.0.0.1:$DEPMAN_DEX_PORT
oauth2:
  passwordConnector: local
  skipApprovalScreen: true
enablePasswordDB: true
staticClients:
  - id: depman
    secret: depman-dev-secret
    name: depman
    redirectURIs: ["http://127.0.0.1:8080/callback"]
staticPasswords:
  - email: alice@example.com
    hash: "\$2a\$10\$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"
    username: alice
    userID: 08a8684b-db88-4b73-90a9-3cd1661f5466
    groups: ["team-a"]
  - email: bob@example.com
    hash: "\$2a\$10\$rjCnRWLUMzmJUHE06NUsGeWQnKC1Aj5OJyR3H015a0eFuLL/7PlUy"
    username: bob
    userID: 41331323-6f44-45e6-b3b9-2c4b60c02be5
    groups: ["team-b"]
CONF
  setsid "$(dex_bin)" serve "$DEX_DIR/config.yaml" >>"$DEX_LOG" 2>&1 </dev/null &
  echo $! >"$DEX_PIDFILE"
  wait_until 30 "Dex up at $(dex_issuer)" dex_ready || die "Dex did not come up: see $DEX_LOG"
}

dex_down() {
  stop_pidfile "$DEX_PIDFILE" "$DEX_ANY" "Dex"
}

dex_status() {
  if dex_ready; then
    echo "dex        up    $(dex_issuer)  client depman  users alice, bob"
  else
    echo "dex        down  (port $DEPMAN_DEX_PORT)"
  fi
}
