# A Kubernetes control plane of real components built from the Go module
# proxy (etcd, kube-apiserver, kube-controller-manager, kube-scheduler),
# orchestrated by kwokctl's binary runtime, which writes the certificates and
# the kubeconfig; KWOK's controller plays the kubelet of one fake node.

KWOK_DIR=$DEPMAN_STATE/kwok
KUBE_CLUSTER_DIR=$KWOK_DIR/clusters/$DEPMAN_KUBE_CLUSTER
KUBE_KUBECONFIG=$KUBE_CLUSTER_DIR/kubeconfig.yaml

kube_bin() { echo "$(tool_dir k8s "$KUBE_VERSION")/$1"; }

kwokctl() {
  KWOK_WORKDIR=$KWOK_DIR KWOK_KUBE_VERSION=$KUBE_VERSION KWOK_RUNTIME=binary KWOK_KUBECTL_BINARY="$(kube_bin kubectl)" \
    "$(tool_dir kwok "$KWOK_VERSION")/kwokctl" --name "$DEPMAN_KUBE_CLUSTER" "$@"
}

kubectl_() { "$(kube_bin kubectl)" --kubeconfig "$KUBE_KUBECONFIG" "$@"; }

kube_ready() {
  [[ -f $KUBE_KUBECONFIG ]] && [[ $(kubectl_ get --raw /readyz 2>/dev/null) == ok ]]
}

# The running KWOK controller holds the fake node's Lease: it renewed it
# after the given time (seconds since the epoch). Only then do pods on the
# node become ready; a stale Lease looks the same to `kubectl get nodes`.
node_managed_since() { # epoch seconds
  local renewed
  renewed=$(kubectl_ -n kube-node-lease get lease kwok-node-0 -o 'jsonpath={.spec.renewTime}' 2>/dev/null) &&
    [[ -n $renewed ]] && (($(date -d "$renewed" +%s) >= $1))
}

node_ready() {
  kubectl_ get node kwok-node-0 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}

# KWOK's stages: what the fake node's "kubelet" does with nodes and pods.
# defaults.yaml stands in for KWOK's own defaults (kwokctl drops them all once
# it is given any Stage); chaos.yaml makes pods with a chaos.invalid/<failure>
# image fail as a kubelet would report it (see the file for the images).
KUBE_STAGE_FILES=("$DEPMAN_ROOT"/scripts/env/stages/*.yaml)

# How the cluster is made. A cluster made with other settings (an older
# checkout's) is made anew, since kwokctl keeps them from its creation; the
# stages are copied into the cluster's kwok.yaml then, so they count too.
KUBE_SETTINGS="port=$DEPMAN_KUBE_PORT version=$KUBE_VERSION qps-limits=off node-lease=10s leader-elect=off"
KUBE_SETTINGS+=" stages=$(cat "${KUBE_STAGE_FILES[@]}" | sha256sum | cut -c1-12)"
KUBE_SETTINGS_FILE=$KUBE_CLUSTER_DIR/depman-settings

kube_create() {
  require_free_port "$DEPMAN_KUBE_PORT" DEPMAN_KUBE_PORT
  say "creating the Kubernetes control plane $KUBE_VERSION (kwokctl, binary runtime)"
  # A KWOK controller that died keeps the fake node's Lease until it expires,
  # and the next one manages no pod before that: kwokctl's default of 200 s
  # made the first rollouts after a restart time out; 10 s is enough.
  # One controller manager and one scheduler: without leader election they
  # do not wait out their predecessor's lease after a restart either.
  # No client-side rate limits in the controllers and the scheduler: tests
  # run many rollouts in parallel, and the defaults (20 requests/s) made the
  # deployment controller fall tens of seconds behind.
  local stages=() file
  for file in "${KUBE_STAGE_FILES[@]}"; do stages+=(--config="$file"); done
  kwokctl create cluster \
    "${stages[@]}" \
    --kubeconfig "" \
    --disable-qps-limits \
    --heartbeat-factor 1 --node-lease-duration-seconds 10 \
    --extra-args kube-controller-manager=leader-elect=false \
    --extra-args kube-scheduler=leader-elect=false \
    --kube-apiserver-port "$DEPMAN_KUBE_PORT" \
    --etcd-binary "$(tool_dir etcd "$ETCD_VERSION")/etcd" \
    --kube-apiserver-binary "$(kube_bin kube-apiserver)" \
    --kube-controller-manager-binary "$(kube_bin kube-controller-manager)" \
    --kube-scheduler-binary "$(kube_bin kube-scheduler)" \
    --kwok-controller-binary "$(tool_dir kwok "$KWOK_VERSION")/kwok" \
    --wait 120s >>"$KWOK_DIR/kwokctl.log" 2>&1 && echo "$KUBE_SETTINGS" >"$KUBE_SETTINGS_FILE"
}

KUBE_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller)

kube_component_pid() { # name
  live_pid "$KUBE_CLUSTER_DIR/pids/$1.pid" "$KUBE_CLUSTER_DIR/bin/$1"
}

kube_component_running() { kube_component_pid "$1" >/dev/null; }

kube_components_running() {
  local name
  for name in "${KUBE_COMPONENTS[@]}"; do
    kube_component_running "$name" || return 1
  done
}

# kwokctl skips starting a component whose pid file names a live process, of
# whatever program. After a reboot that pid may belong to another program, and
# the component (in CI once: the KWOK controller, so no pod ever became ready)
# silently stays down. Pid files that do not name the component are dropped.
kube_forget_stale_pids() {
  local name
  for name in "${KUBE_COMPONENTS[@]}"; do
    kube_component_running "$name" || rm -f "$KUBE_CLUSTER_DIR/pids/$name.pid"
  done
}

kube_running() { kube_ready && kube_components_running; }

# kwokctl stop|delete cluster: it signals the components and returns at once,
# so this waits for them to exit (and frees their ports) before going on.
kube_stop() { # stop|delete
  local name pid pids=()
  kube_forget_stale_pids # kwokctl would signal whatever process they name
  for name in "${KUBE_COMPONENTS[@]}"; do
    pid=$(kube_component_pid "$name") && pids+=("$pid")
  done
  kwokctl "$1" cluster >>"$KWOK_DIR/kwokctl.log" 2>&1 || return 1
  wait_exit 30 "${pids[@]}"
}

kube_up() {
  local now started=yes
  now=$(date +%s)
  mkdir -p "$KWOK_DIR"
  if [[ -f $KUBE_CLUSTER_DIR/kwok.yaml && $(cat "$KUBE_SETTINGS_FILE" 2>/dev/null) != "$KUBE_SETTINGS" ]]; then
    say "the cluster was made with other settings: making it anew"
    kube_stop delete || true
  fi
  if kube_running; then
    started=no
    say "Kubernetes already up at https://127.0.0.1:$DEPMAN_KUBE_PORT"
  elif [[ -f $KUBE_CLUSTER_DIR/kwok.yaml ]]; then
    # Some or all processes died with the last session: start the same
    # cluster again, or build a new one if its state cannot be started.
    say "starting the existing Kubernetes control plane"
    kube_forget_stale_pids
    kwokctl start cluster >>"$KWOK_DIR/kwokctl.log" 2>&1 && wait_until 120 "Kubernetes started" kube_running || {
      say "the existing cluster did not start: creating it anew"
      kube_stop delete || true
      kube_create || die "kwokctl could not create the cluster: see $KWOK_DIR/kwokctl.log"
    }
  else
    kube_create || die "kwokctl could not create the cluster: see $KWOK_DIR/kwokctl.log"
  fi
  wait_until 120 "Kubernetes API ready at https://127.0.0.1:$DEPMAN_KUBE_PORT" kube_running ||
    die "the Kubernetes control plane is not fully up: see the logs under $KUBE_CLUSTER_DIR/logs"
  if ! node_ready; then
    kubectl_ apply -f "$DEPMAN_ROOT/scripts/env/fake-node.yaml" >/dev/null || die "could not create the fake node"
    wait_until 60 "fake node kwok-node-0 Ready" node_ready ||
      die "the fake node did not become Ready: see $KUBE_CLUSTER_DIR/logs/kwok-controller.log"
  fi
  # Only a KWOK controller started just now may find a dead one's Lease.
  [[ $started == yes ]] || return 0
  wait_until 60 "KWOK manages the fake node" node_managed_since "$now" ||
    die "no KWOK controller holds the fake node's Lease: see $KUBE_CLUSTER_DIR/logs/kwok-controller.log"
}

kube_down() {
  [[ -f $KUBE_CLUSTER_DIR/kwok.yaml ]] || return 0
  kube_stop stop && say "Kubernetes stopped"
}

kube_status() {
  if kube_ready; then
    echo "kubernetes up    https://127.0.0.1:$DEPMAN_KUBE_PORT  $KUBE_VERSION  kubeconfig $KUBE_KUBECONFIG"
    kubectl_ get nodes --no-headers 2>/dev/null | sed 's/^/           node  /'
  else
    echo "kubernetes down  (port $DEPMAN_KUBE_PORT)"
  fi
}
