# A Kubernetes control plane of real components built from the Go module
# proxy (etcd, kube-apiserver, kube-controller-manager, kube-scheduler),
# orchestrated by kwokctl's binary runtime, which writes the certificates and
# the kubeconfig; KWOK's controller plays the kubelet of one fake node.

KWOK_DIR=$DEPMAN_STATE/kwok
KUBE_KUBECONFIG=$KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/kubeconfig.yaml

kube_bin() { echo "$(tool_dir k8s "$KUBE_VERSION")/$1"; }

kwokctl() {
  KWOK_WORKDIR=$KWOK_DIR KWOK_KUBE_VERSION=$KUBE_VERSION KWOK_RUNTIME=binary KWOK_KUBECTL_BINARY="$(kube_bin kubectl)" \
    "$(tool_dir kwok "$KWOK_VERSION")/kwokctl" --name "$DEPMAN_KUBE_CLUSTER" "$@"
}

kubectl_() { "$(kube_bin kubectl)" --kubeconfig "$KUBE_KUBECONFIG" "$@"; }

kube_ready() {
  [[ -f $KUBE_KUBECONFIG ]] && [[ $(kubectl_ get --raw /readyz 2>/dev/null) == ok ]]
}

node_ready() {
  kubectl_ get node kwok-node-0 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}

# How the cluster is made. A cluster made with other settings (an older
# checkout's) is made anew, since kwokctl keeps them from its creation.
KUBE_SETTINGS="port=$DEPMAN_KUBE_PORT version=$KUBE_VERSION qps-limits=off"
KUBE_SETTINGS_FILE=$KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/depman-settings

kube_create() {
  require_free_port "$DEPMAN_KUBE_PORT" DEPMAN_KUBE_PORT
  say "creating the Kubernetes control plane $KUBE_VERSION (kwokctl, binary runtime)"
  # No client-side rate limits in the controllers and the scheduler: tests
  # run many rollouts in parallel, and the defaults (20 requests/s) made the
  # deployment controller fall tens of seconds behind.
  kwokctl create cluster \
    --kubeconfig "" \
    --disable-qps-limits \
    --kube-apiserver-port "$DEPMAN_KUBE_PORT" \
    --etcd-binary "$(tool_dir etcd "$ETCD_VERSION")/etcd" \
    --kube-apiserver-binary "$(kube_bin kube-apiserver)" \
    --kube-controller-manager-binary "$(kube_bin kube-controller-manager)" \
    --kube-scheduler-binary "$(kube_bin kube-scheduler)" \
    --kwok-controller-binary "$(tool_dir kwok "$KWOK_VERSION")/kwok" \
    --wait 120s >>"$KWOK_DIR/kwokctl.log" 2>&1 && echo "$KUBE_SETTINGS" >"$KUBE_SETTINGS_FILE"
}

kube_up() {
  mkdir -p "$KWOK_DIR"
  if [[ -f $KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/kwok.yaml && $(cat "$KUBE_SETTINGS_FILE" 2>/dev/null) != "$KUBE_SETTINGS" ]]; then
    say "the cluster was made with other settings: making it anew"
    kwokctl delete cluster >>"$KWOK_DIR/kwokctl.log" 2>&1 || true
  fi
  if kube_ready; then
    say "Kubernetes already up at https://127.0.0.1:$DEPMAN_KUBE_PORT"
  elif [[ -f $KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/kwok.yaml ]]; then
    # The processes died with the last session: start the same cluster again,
    # or build a new one if its state cannot be started.
    say "starting the existing Kubernetes control plane"
    kwokctl start cluster >>"$KWOK_DIR/kwokctl.log" 2>&1 && wait_until 120 "Kubernetes up" kube_ready || {
      say "the existing cluster did not start: creating it anew"
      kwokctl delete cluster >>"$KWOK_DIR/kwokctl.log" 2>&1 || true
      kube_create || die "kwokctl could not create the cluster: see $KWOK_DIR/kwokctl.log"
    }
  else
    kube_create || die "kwokctl could not create the cluster: see $KWOK_DIR/kwokctl.log"
  fi
  wait_until 120 "Kubernetes API ready at https://127.0.0.1:$DEPMAN_KUBE_PORT" kube_ready ||
    die "the Kubernetes API does not answer /readyz: see the logs under $KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/logs"
  node_ready && return 0
  kubectl_ apply -f "$DEPMAN_ROOT/scripts/env/fake-node.yaml" >/dev/null || die "could not create the fake node"
  wait_until 60 "fake node kwok-node-0 Ready" node_ready ||
    die "the fake node did not become Ready: see $KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/logs/kwok-controller.log"
}

kube_down() {
  [[ -f $KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER/kwok.yaml ]] || return 0
  kwokctl stop cluster >>"$KWOK_DIR/kwokctl.log" 2>&1 && say "Kubernetes stopped"
}

kube_status() {
  if kube_ready; then
    echo "kubernetes up    https://127.0.0.1:$DEPMAN_KUBE_PORT  $KUBE_VERSION  kubeconfig $KUBE_KUBECONFIG"
    kubectl_ get nodes --no-headers 2>/dev/null | sed 's/^/           node  /'
  else
    echo "kubernetes down  (port $DEPMAN_KUBE_PORT)"
  fi
}
