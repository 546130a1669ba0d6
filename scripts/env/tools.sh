# Builds the Go-based parts of the environment from the Go module proxy.
# Each tools/<name> module pins its commands (go.mod + go.sum); the binaries
# go to $DEPMAN_BIN/<name>-<version>-<hash of go.mod and go.sum>, so a second
# run finds them, and a changed pin builds into a new folder.

# Prints the cache folder of a tools module.
tool_dir() { # module, version
  local sum
  sum=$(cat "$DEPMAN_ROOT/tools/$1/go.mod" "$DEPMAN_ROOT/tools/$1/go.sum" | sha256sum | cut -c1-10)
  echo "$DEPMAN_BIN/$1-$2-$sum"
}

# Builds the commands of a tools module into its cache folder, once.
# Each command is given as binary=package.
build_tools() { # module, version, ldflags, binary=package...
  local module=$1 version=$2 ldflags=$3
  shift 3
  local dest
  dest=$(tool_dir "$module" "$version")
  [[ -f $dest/.complete ]] && return 0
  check_go
  say "building $module $version (first run only; cached in $dest)"
  local tmp="$dest.tmp.$$" started=$SECONDS command
  rm -rf "$tmp" && mkdir -p "$tmp"
  for command in "$@"; do
    (cd "$DEPMAN_ROOT/tools/$module" &&
      CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/${command%%=*}" "${command#*=}") ||
      die "building ${command%%=*} $version failed (output above): check that the Go module proxy is reachable"
  done
  touch "$tmp/.complete"
  rm -rf "$dest" && mv "$tmp" "$dest"
  say "built $module in $((SECONDS - started)) s"
}

check_go() {
  require_command go "install Go 1.26 or newer (https://go.dev/doc/install); on this project's machines it is preinstalled"
  local v
  v=$(go env GOVERSION | sed 's/^go//')
  [[ $(printf '%s\n' 1.26 "$v" | sort -V | head -n1) == 1.26 ]] ||
    die "Go $v is too old: the pinned Kubernetes needs Go 1.26 or newer"
}

build_all_tools() {
  local kube_ld="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean"
  done
  build_tools nats "$NATS_SERVER_VERSION" "-s -w" \
    nats-server=github.com/nats-io/nats-server/v2 nats=github.com/nats-io/natscli/nats
  build_tools etcd "$ETCD_VERSION" "-s -w" etcd=go.etcd.io/etcd/server/v3
  build_tools dex "$DEX_VERSION" "-s -w -X main.version=$DEX_VERSION" dex=github.com/dexidp/dex/cmd/dex
  build_tools kwok "$KWOK_VERSION" "-s -w" \
    kwok=sigs.k8s.io/kwok/cmd/kwok kwokctl=sigs.k8s.io/kwok/cmd/kwokctl
  build_tools k8s "$KUBE_VERSION" "$kube_ld" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    kubectl=k8s.io/kubernetes/cmd/kubectl
}
