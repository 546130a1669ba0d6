# The CloudNativePG CRDs, taken from the operator's Go module (the module
# proxy serves its source, manifests included) and installed into the local
# API server, so that the prod overlay's Cluster passes a server-side dry
# run (crates/depman/tests/deploy.rs). No operator runs here.

CNPG_MODULE=github.com/cloudnative-pg/cloudnative-pg
CNPG_VERSION=v1.30.1

cnpg_crd() { echo "$DEPMAN_BIN/cnpg-$CNPG_VERSION/postgresql.cnpg.io_clusters.yaml"; }

cnpg_up() {
  local crd dir
  crd=$(cnpg_crd)
  if [[ ! -s $crd ]]; then
    check_go
    say "fetching the CloudNativePG $CNPG_VERSION CRDs from the Go module proxy"
    dir=$(cd "$DEPMAN_ROOT/tools" && go mod download -json "$CNPG_MODULE@$CNPG_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n $dir && -s $dir/config/crd/bases/postgresql.cnpg.io_clusters.yaml ]] ||
      die "go mod download $CNPG_MODULE@$CNPG_VERSION gave no CRD (output above): check that the Go module proxy is reachable"
    mkdir -p "$(dirname "$crd")"
    cp "$dir/config/crd/bases/postgresql.cnpg.io_clusters.yaml" "$crd.tmp" && mv "$crd.tmp" "$crd"
  fi
  # Server-side: the CRD is too large for the last-applied annotation.
  "$(tool_dir k8s "$KUBE_VERSION")/kubectl" --kubeconfig "$KUBE_KUBECONFIG" \
    apply --server-side --force-conflicts -f "$crd" >/dev/null ||
    die "installing the CloudNativePG Cluster CRD failed (output above)"
}
