#!/usr/bin/env bash
# The local environment: `up` builds what is missing and starts PostgreSQL,
# NATS with JetStream and the Kubernetes control plane (and installs the
# Chromium the browser tests drive); `down` stops them;
# `status` says what runs where. See docs/setup.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
for part in lib tools postgres nats kube dex chromium cnpg; do source "$here/$part.sh"; done

write_env_file() {
  mkdir -p "$DEVENV_DIR"
  # A webhook key of this checkout's own, made once, so that `make dev`
  # has webhooks on (receivers on this machine allowed).
  [[ -s $DEVENV_DIR/webhook.key ]] || head -c 32 /dev/urandom | base64 >"$DEVENV_DIR/webhook.key"
  cat >"$DEVENV_DIR/env.sh" <<ENV
# Written by \`make env\`: the local environment of depman. Source it.
export DATABASE_URL=$(postgres_url)
export NATS_URL=$(nats_url)
export KUBECONFIG=$KUBE_KUBECONFIG
export DEPMAN_WEBHOOK_KEY=$(cat "$DEVENV_DIR/webhook.key")
export DEPMAN_WEBHOOK_ALLOWED_HOSTS=127.0.0.1,localhost,::1
# Dex, for the tests of DEPMAN_AUTH=jwt (docs/setup.md).
export DEPMAN_TEST_OIDC_ISSUER=$(dex_issuer)
export DEPMAN_TEST_DEX_BIN=$(dex_bin)
export DEPMAN_TEST_DEX_CONFIG=$DEX_DIR/config.yaml
# The superuser over the server's socket, for make profile-api's statistics.
export DEPMAN_PG_ADMIN="host=$PG_DATA port=$DEPMAN_PG_PORT user=postgres"
export PATH="$(tool_dir k8s "$KUBE_VERSION"):$(tool_dir nats "$NATS_SERVER_VERSION"):\$PATH"
ENV
}

up() {
  local started=$SECONDS
  require_command curl "install curl (apt-get install -y curl)"
  require_command ss "install iproute2 (apt-get install -y iproute2)"
  mkdir -p "$DEPMAN_STATE"
  build_all_tools
  postgres_up
  nats_up
  kube_up
  cnpg_up
  dex_up
  chromium_up
  write_env_file
  say "environment up in $((SECONDS - started)) s; load it with: . .devenv/env.sh"
}

down() {
  dex_down
  kube_down
  nats_down
  postgres_down
}

status() {
  postgres_status
  nats_status
  kube_status
  dex_status
  chromium_status
  [[ -f $DEVENV_DIR/env.sh ]] && echo "env file   $DEVENV_DIR/env.sh"
  return 0
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
