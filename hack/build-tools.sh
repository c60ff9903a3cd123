#!/usr/bin/env bash
# Builds the local control plane's binaries (and helm) from source through the Go module proxy,
# once per pinned version, into $MLMODEL_CACHE/k8s/<version>/bin. A second run finds them and does
# nothing.
# Prints the bin directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
bin="$cache/k8s/v$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION/bin"
mkdir -p "$bin"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

log() { echo "build-tools: $*" >&2; }

# build DIR OUTPUT... PACKAGE...: builds into a temp dir, then moves into place so a killed build
# never leaves a binary that looks finished.
build() {
  local mod=$1 ldflags=$2; shift 2
  local want=() pkgs=()
  for p in "$@"; do
    local name=${p##*/}
    [ "$name" = v3 ] && name=etcd # go.etcd.io/etcd/server/v3 is etcd's main package
    [ -x "$bin/$name" ] || { want+=("$name"); pkgs+=("$p"); }
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "building ${want[*]} (cold builds take minutes; cached afterwards)"
  local tmp; tmp=$(mktemp -d "$bin/.build.XXXXXX")
  if [ ${#pkgs[@]} -eq 1 ]; then
    (cd "$here/tools/$mod" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/${want[0]}" "${pkgs[0]}")
  else
    (cd "$here/tools/$mod" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "${pkgs[@]}")
  fi
  for n in "${want[@]}"; do mv "$tmp/$n" "$bin/$n"; done
  rmdir "$tmp"
}

k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
  minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  k8s_ldflags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build etcd "" go.etcd.io/etcd/server/v3
build kwok "" sigs.k8s.io/kwok/cmd/kwok
build k8s "$k8s_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
# The real node's volume provisioner (hack/node.sh runs it as a pod).
build local-path "" github.com/rancher/local-path-provisioner
# The echo-server plugins' default image (hashicorp/http-echo:1.0), for the real node.
build http-echo "" github.com/hashicorp/http-echo
# helm shares the directory (one PATH entry for the tests); its version is not in the directory's
# name, so a binary of another version is replaced.
if [ -x "$bin/helm" ] && [ "$("$bin/helm" version --template '{{.Version}}' 2>/dev/null)" != "v$HELM_VERSION" ]; then
  log "replacing helm $("$bin/helm" version --template '{{.Version}}' 2>/dev/null || echo '?') by v$HELM_VERSION"
  rm -f "$bin/helm"
fi
build helm "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" helm.sh/helm/v3/cmd/helm
echo "$bin"
