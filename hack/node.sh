#!/usr/bin/env bash
# The local cluster's real node, beside the kwok fake nodes: containerd + runc (Debian packages),
# the CNI plugins on the bridge mlm0 (10.88.0.0/16, pod addresses reachable from this machine),
# kubelet and kube-proxy of the cluster's Kubernetes version (built from source by
# hack/build-tools.sh), a registry on loopback that containerd pulls from by name, and the
# images the node needs (pause from Kubernetes' own source, busybox, the local-path provisioner).
# Run by hack/cluster.sh (up after the control plane, down before it); not meant to run alone.
#
#   hack/node.sh up|down|status
#
# Pods land here only when they ask: the node is tainted mlmodel.dev/real-node=true:NoSchedule and
# labelled mlmodel.dev/real-node=true. A namespace annotated with
#   scheduler.alpha.kubernetes.io/node-selector: mlmodel.dev/real-node=true
#   scheduler.alpha.kubernetes.io/defaultTolerations: '[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"}]'
# sends all its pods here (admission plugins PodNodeSelector and PodTolerationRestriction); every
# other pod keeps landing on the kwok nodes. Claims of the StorageClass `local-path` are real
# directories under $MLMODEL_CACHE/node/volumes, made by rancher's local-path-provisioner; claims
# of `local-path-small` share a 16 MiB tmpfs ($MLMODEL_CACHE/node/small-volumes), where a large
# download really fills its volume (the DiskFull fault of hack/chaos.py).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
dir=$cache/cluster                 # the control plane's state (pki, kubeconfig, logs, run)
pki=$dir/pki
run=$dir/run
logs=$dir/logs
node_dir=$cache/node               # containerd's content (kept: images stay cached), kubelet, CNI
state=/run/mlmodel-operator        # sockets and runtime state (tmpfs, wiped by a reboot)
sock=$state/containerd/containerd.sock
registry_dir=$cache/registry       # the loopback registry's storage (kept between clusters)
kubeconfig=$dir/kubeconfig

apiserver_port=23443
registry_port=23500
kubelet_port=23251
kubelet_healthz_port=23248
proxy_metrics_port=23249
proxy_healthz_port=23256
export REGISTRY=localhost:$registry_port

bridge=mlm0
pod_cidr=10.88.0.0/16
service_cidr=10.96.0.0/16          # hack/cluster.sh's --service-cluster-ip-range
kwok_pod_cidr=10.244.0.0/16        # the kwok nodes' fake pod IPs
bridge_ip=10.88.0.1
first_bridge_ip=$bridge_ip         # the first node's: where the apiserver and the registry are reached
node_name=${MLMODEL_NODE_NAME:-$(hostname | tr 'A-Z_.' 'a-z--')}
node_components=(registry containerd kubelet kube-proxy)
healthz_ip=127.0.0.1               # where the node's components answer their health probes
taints='- {key: mlmodel.dev/real-node, value: "true", effect: NoSchedule}'
cgroup_root=/
pod_logs=/var/log/pods
export NETNS=

# The second real node (MLMODEL_NODE_INDEX=2): its own network namespace joined to this machine by
# a veth pair (10.87.2.1 here, 10.87.2.2 there), its own bridge and pod range (10.89.0.0/16,
# routed here through the veth), containerd (own root, state and socket), kubelet (own root and
# cgroup root) and kube-proxy (own iptables, in its namespace). It reaches the apiserver and the
# registry at the first node's bridge address. Besides the first node's taint it carries
# mlmodel.dev/second-node: only the pods of namespaces that tolerate it (the multi-node tests)
# land there, so the one-node tests stay where they were.
index=${MLMODEL_NODE_INDEX:-1}
if [ "$index" = 2 ]; then
  node_dir=$cache/node2
  state=/run/mlmodel-operator-node2
  sock=$state/containerd/containerd.sock
  run=$run/node2
  logs=$logs/node2
  bridge=mlm2
  pod_cidr=10.89.0.0/16
  bridge_ip=10.89.0.1
  healthz_ip=$bridge_ip
  kubelet_port=23261
  kubelet_healthz_port=23258
  proxy_metrics_port=23259
  proxy_healthz_port=23266
  node_name=$node_name-2
  node_components=(containerd kubelet kube-proxy)
  taints="$taints
- {key: mlmodel.dev/second-node, value: \"true\", effect: NoSchedule}"
  # Two kubelets under one cgroup root would each remove the other's pod cgroups as strays;
  # sharing /var/log/pods, each deletes the other's pods' logs as orphans.
  cgroup_root=/mlmodel-node2
  pod_logs=$cache/node2/pod-logs
  netns=mlm-n2
  veth_host=mlm-n2 veth_host_ip=10.87.2.1 veth_node_ip=10.87.2.2
  export NETNS=$netns
fi

log() { echo "node: $*" >&2; }
die() { log "error: $*"; exit 1; }
pid_mark="$node_dir/"    # every node component's command line names a file under it

# The binaries: Debian's for the runtime, ours for kubelet and kube-proxy.
exe_of() {
  case $1 in
    registry) echo /usr/bin/docker-registry ;;
    containerd) echo /usr/bin/containerd ;;
    *) echo "$bin/$1" ;;
  esac
}

probe() {
  case $1 in
    registry) curl -fsS -m 2 "http://127.0.0.1:$registry_port/v2/" ;;
    containerd) ctr version ;;
    kubelet) curl -fsS -m 2 "http://$healthz_ip:$kubelet_healthz_port/healthz" ;;
    kube-proxy) curl -fsS -m 2 "http://$healthz_ip:$proxy_healthz_port/healthz" ;;
  esac >/dev/null 2>&1
}

. "$here/lib.sh"

ctr() { command ctr --address "$sock" "$@"; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# What a fresh machine lacks for the node (Debian packages); the versions are Debian 12's.
check_packages() {
  local missing=() p
  for p in containerd runc containernetworking-plugins docker-registry busybox-static conntrack iptables; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] || die "missing Debian packages ${missing[*]}: run hack/setup.sh"
}

node_kubeconfig() { # FILE USER
  local apiserver_host=127.0.0.1
  [ "$index" = 1 ] || apiserver_host=$first_bridge_ip
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mlmodel-local
  cluster: {server: "https://$apiserver_host:$apiserver_port", certificate-authority: "$pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$pki/$2.crt", client-key: "$pki/$2.key"}
contexts:
- name: mlmodel-local
  context: {cluster: mlmodel-local, user: $2}
current-context: mlmodel-local
EOF
}

# The registry on loopback: storage kept between clusters, so images are pushed once.
registry_up() {
  pid_of registry >/dev/null && probe registry && return 0
  mkdir -p "$registry_dir"
  cat >"$node_dir/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $registry_dir}
  delete: {enabled: true}
http:
  # Every address: the second node pulls from its own network namespace, through the first
  # node's bridge address.
  addr: 0.0.0.0:$registry_port
EOF
  start registry serve "$node_dir/registry.yml"
  wait_for registry "the registry" 30 probe registry
}

# The images every real node needs, pushed to the loopback registry (no-ops when present).
images_up() {
  local gomod src out=$node_dir/images
  mkdir -p "$out"
  # pause, from Kubernetes' own source (its module is in the Go module cache after the build).
  gomod=$(cd "$here/tools/k8s" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  src=$gomod/build/pause/linux/pause.c
  [ -f "$src" ] || die "no $src in the Go module cache"
  if [ ! -x "$out/pause-$PAUSE_VERSION" ]; then
    gcc -Os -static -Wall -Werror -DVERSION="v$PAUSE_VERSION-mlmodel" -o "$out/pause.tmp" "$src"
    strip "$out/pause.tmp" && mv "$out/pause.tmp" "$out/pause-$PAUSE_VERSION"
  fi
  python3 "$here/image.py" --tag "$REGISTRY/pause:$PAUSE_VERSION" --push \
    --add "$out/pause-$PAUSE_VERSION:/pause" --entrypoint /pause --user 65535:65535 >/dev/null
  # busybox (Debian's static build of the same upstream version) as docker.io's library/busybox,
  # which the docker.io mirror below resolves: the file-server plugin's default image and the
  # local-path helper pods.
  python3 "$here/image.py" --tag "$REGISTRY/library/busybox:$BUSYBOX_TAG" --push \
    --add /bin/busybox:/bin/busybox --link /bin/sh:busybox --dir /tmp:1777 \
    --entrypoint /bin/busybox --cmd sh >/dev/null
  # hashicorp/http-echo, built from its source: the echo-server plugins' default image, so echo
  # models (the dry-run framework) really serve on the real node.
  python3 "$here/image.py" --tag "$REGISTRY/hashicorp/http-echo:$HTTP_ECHO_TAG" --push \
    --add "$bin/http-echo:/http-echo" --entrypoint /http-echo --user 65532:65532 >/dev/null
  # Seldon MLServer with its scikit-learn runtime (the mlserver plugin's seldonio/mlserver image),
  # from Debian packages and PyPI wheels: built once (cached by its inputs), then a no-op push.
  "$here/runtime-image.sh" --push "$REGISTRY" >/dev/null
  # rancher's local-path-provisioner, built from source like the control plane.
  python3 "$here/image.py" --tag "$REGISTRY/local-path-provisioner:v$LOCAL_PATH_VERSION" --push \
    --add "$bin/local-path-provisioner:/usr/bin/local-path-provisioner" --dir /tmp:1777 \
    --entrypoint /usr/bin/local-path-provisioner --user 65532:65532 >/dev/null
}

containerd_up() {
  pid_of containerd >/dev/null && probe containerd && return 0
  mkdir -p "$node_dir/containerd" "$node_dir/cni" "$node_dir/certs.d/$REGISTRY" "$state"
  # containerd pulls localhost:23500/... over plain http; docker.io and ghcr.io images are looked
  # up there first (a mirror), so manifests naming them work when the image was pushed locally.
  # The registry as this node reaches it (the second node: not on its own loopback).
  local at=$REGISTRY
  [ "$index" = 1 ] || at=$first_bridge_ip:$registry_port
  cat >"$node_dir/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$at"
[host."http://$at"]
  capabilities = ["pull", "resolve", "push"]
EOF
  local upstream
  for upstream in docker.io ghcr.io; do
    mkdir -p "$node_dir/certs.d/$upstream"
    cat >"$node_dir/certs.d/$upstream/hosts.toml" <<EOF
[host."http://$at"]
  capabilities = ["pull", "resolve"]
EOF
  done
  cat >"$node_dir/cni/10-mlmodel.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "mlmodel",
  "plugins": [
    {
      "type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$state/cni-ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$bridge_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat >"$node_dir/containerd.toml" <<EOF
version = 2
root = "$node_dir/containerd"
state = "$state/containerd"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REGISTRY/pause:$PAUSE_VERSION"
  enable_unprivileged_ports = false
  # Lowering oom_score_adj (the kubelet asks -998 for sandboxes) needs CAP_SYS_RESOURCE, which
  # this machine's root lacks: keep containers' scores no lower than containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$node_dir/certs.d"
EOF
  start containerd --config "$node_dir/containerd.toml"
  wait_for containerd "containerd" 30 probe containerd
}

# The second node's network namespace: a veth pair to this machine, the bridge inside, routes
# both ways (its pod range here, everything else there).
second_network_up() {
  [ -e "/run/netns/$netns" ] || ip netns add "$netns"
  local n=(ip -n "$netns")
  if ! ip link show "$veth_host" >/dev/null 2>&1; then
    ip link add "$veth_host" type veth peer name eth0 netns "$netns"
  fi
  local addrs; addrs=$(ip -4 -o addr show dev "$veth_host")
  [[ $addrs == *"inet $veth_host_ip/"* ]] || ip addr add "$veth_host_ip/30" dev "$veth_host"
  ip link set "$veth_host" up
  "${n[@]}" link set lo up
  addrs=$("${n[@]}" -4 -o addr show dev eth0)
  [[ $addrs == *"inet $veth_node_ip/"* ]] || "${n[@]}" addr add "$veth_node_ip/30" dev eth0
  "${n[@]}" link set eth0 up
  "${n[@]}" link show "$bridge" >/dev/null 2>&1 || "${n[@]}" link add "$bridge" type bridge
  addrs=$("${n[@]}" -4 -o addr show dev "$bridge")
  [[ $addrs == *"inet $bridge_ip/"* ]] || "${n[@]}" addr add "$bridge_ip/16" dev "$bridge"
  "${n[@]}" link set "$bridge" up
  "${n[@]}" route replace default via "$veth_host_ip"
  ip route replace "$pod_cidr" via "$veth_node_ip"
  ip netns exec "$netns" sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && ip netns exec "$netns" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1
}

# The kubelet's cgroup root, in every hierarchy (cgroup v1) or the unified one (v2).
cgroup_root_up() {
  [ "$cgroup_root" = / ] && return 0
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup$cgroup_root"
  else
    local h
    for h in /sys/fs/cgroup/*/; do
      [ -L "${h%/}" ] && continue
      mkdir -p "$h${cgroup_root#/}" 2>/dev/null || true
    done
  fi
}

network_up() {
  if [ "$index" != 1 ]; then second_network_up; return; fi
  # /run/netns a shared mount of itself before any pod's namespace is mounted there, as
  # `ip netns add` (the second node) would make it later: done after, that bind would hide the
  # mounts already made below it, and nothing could unmount them.
  mkdir -p /run/netns
  mountpoint -q /run/netns || mount --bind /run/netns /run/netns
  mount --make-shared /run/netns
  # The bridge exists before the kubelet starts: its address is the node's IP (the kubelet
  # refuses loopback) and the apiserver's advertised address, which pods reach.
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
  fi
  local addrs; addrs=$(ip -4 -o addr show dev "$bridge")
  [[ $addrs == *"inet $bridge_ip/"* ]] || ip addr add "$bridge_ip/16" dev "$bridge"
  ip link set "$bridge" up
  # Nothing addressed to the cluster's virtual ranges may leave this machine: ClusterIPs go to
  # the bridge (kube-proxy's DNAT rewrites them to a pod; an unprogrammed one finds no neighbour
  # there and fails here), and kwok's fake pod IPs go nowhere.
  ip route replace "$service_cidr" dev "$bridge"
  ip route replace blackhole "$kwok_pod_cidr"
  sysctl -qw net.ipv4.ip_forward=1
  # Pod-to-Service traffic that kube-proxy sends back to a pod on the same bridge.
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl -qw net.bridge.bridge-nf-call-iptables=1 || true
}

kubelet_up() {
  pid_of kubelet >/dev/null && probe kubelet && return 0
  local kdir=$node_dir/kubelet
  mkdir -p "$kdir"
  sign "node-$node_name" "/O=system:nodes/CN=system:node:$node_name" "$CLIENT_EXT"
  node_kubeconfig "$kdir/kubeconfig" "node-$node_name"
  cat >"$kdir/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $bridge_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: $healthz_ip
healthzPort: $kubelet_healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
podLogsDir: $pod_logs
failCgroupV1: false
failSwapOn: false
registerWithTaints:
$taints
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
maxPods: 60
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
EOF
  start kubelet --config="$kdir/config.yaml" --kubeconfig="$kdir/kubeconfig" \
    --root-dir="$kdir/root" --cert-dir="$kdir/pki" --hostname-override="$node_name" \
    --node-ip="$bridge_ip" --node-labels=mlmodel.dev/real-node=true --v=1
  wait_for kubelet "the kubelet" 60 probe kubelet
}

kube_proxy_up() {
  pid_of kube-proxy >/dev/null && probe kube-proxy && return 0
  sign kube-proxy "/CN=system:kube-proxy" "$CLIENT_EXT"
  node_kubeconfig "$node_dir/kube-proxy.kubeconfig" kube-proxy
  start kube-proxy --kubeconfig="$node_dir/kube-proxy.kubeconfig" --hostname-override="$node_name" \
    --proxy-mode=iptables --cluster-cidr=10.88.0.0/15 --masquerade-all \
    --metrics-bind-address="$healthz_ip:$proxy_metrics_port" --healthz-bind-address="$healthz_ip:$proxy_healthz_port" \
    --conntrack-max-per-core=0
  wait_for kube-proxy "kube-proxy" 60 probe kube-proxy
}

provisioner_up() {
  local small=$node_dir/small-volumes
  mkdir -p "$small"
  mountpoint -q "$small" || mount -t tmpfs -o size=16m,mode=0755 mlmodel-small-volumes "$small"
  sed -e "s#@REGISTRY@#$REGISTRY#g" -e "s#@LOCAL_PATH_VERSION@#$LOCAL_PATH_VERSION#g" \
    -e "s#@BUSYBOX_TAG@#$BUSYBOX_TAG#g" -e "s#@VOLUMES@#$node_dir/volumes#g" -e "s#@SMALL_VOLUMES@#$small#g" \
    -e "s#@NODE2@#$node_name-2#g" -e "s#@VOLUMES2@#$cache/node2/volumes#g" \
    "$here/cluster/local-path.yaml" | kubectl apply -f - >/dev/null
}

up() {
  check_packages
  bin=$("$here/build-tools.sh")
  mkdir -p "$node_dir" "$run" "$logs"
  local t0=$SECONDS
  if [ "$index" = 1 ]; then
    registry_up
    images_up
  fi
  network_up
  cgroup_root_up
  containerd_up
  kubelet_up
  kube_proxy_up
  wait_for kubelet "node $node_name to be Ready" 90 kubectl wait --for=condition=Ready "node/$node_name" --timeout=1s
  [ "$index" = 1 ] || { log "real node $node_name Ready in $((SECONDS - t0))s (pods on $bridge $pod_cidr in netns $netns)"; return 0; }
  provisioner_up
  wait_for kubelet "the local-path provisioner" 120 \
    kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout=1s
  log "real node $node_name Ready in $((SECONDS - t0))s (pods on $bridge $pod_cidr, registry $REGISTRY)"
}

# Everything the node left on this machine goes: containers, their network namespaces and
# mounts, kube-proxy's rules, the bridge. The images (containerd's content, the registry) stay.
down() {
  stop kube-proxy
  stop kubelet
  if pid_of containerd >/dev/null; then
    local id
    for id in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr -n k8s.io containers ls -q 2>/dev/null); do ctr -n k8s.io containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io .*-address $sock" 2>/dev/null || true
  local m
  for m in $(awk -v a="$node_dir/kubelet/root" -v b="$state" '$2 ~ "^"a"(/|$)" || $2 ~ "^"b"(/|$)" || (first && $2 ~ "^/run/netns/cni-") {print $2}' first=$([ "$index" = 1 ] && echo 1 || echo 0) /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  if [ "$index" = 1 ]; then rm -rf /run/netns/cni-* 2>/dev/null || true; fi
  rm -rf "$state/cni-ipam" "$node_dir/kubelet/root/pods" 2>/dev/null || true
  if [ "$index" != 1 ]; then
    # Its namespace takes its iptables rules, bridge and veth with it; the route here goes with the veth.
    ip netns del "$netns" 2>/dev/null || true
    ip link del "$veth_host" 2>/dev/null || true
    return 0
  fi
  [ -x "$bin/kube-proxy" ] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  umount "$node_dir/small-volumes" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  ip route del blackhole "$kwok_pod_cidr" 2>/dev/null || true
  stop registry
}

status() {
  local c pid rc=0
  for c in "${node_components[@]}"; do
    if pid=$(pid_of "$c"); then
      if probe "$c"; then printf '%-24s %s\n' "$c" "running, healthy (pid $pid)"; else printf '%-24s %s\n' "$c" "running, NOT healthy (pid $pid)"; rc=1; fi
    else
      printf '%-24s %s\n' "$c" "stopped"; rc=1
    fi
  done
  return "$rc"
}

healthy() {
  local c
  for c in "${node_components[@]}"; do pid_of "$c" >/dev/null && probe "$c" || return 1; done
}

bin=$(dirname "$(ls -d "$cache"/k8s/v"$K8S_VERSION"-*/bin/kubelet 2>/dev/null | head -1)" 2>/dev/null || true)
case ${1:-} in
  up) up ;;
  network) network_up ;;
  down) down ;;
  status) status ;;
  healthy) healthy ;;
  restart)
    [[ " ${node_components[*]} " == *" ${2:-} "* ]] || die "no component ${2:-} (the control plane's: hack/cluster.sh status; the node's: ${node_components[*]})"
    restart "$2"
    wait_for "$2" "$2" 90 probe "$2"
    log "restarted $2 (pid $(pid_of "$2"))"
    ;;
  *) echo "usage: $0 up|network|down|status|healthy|restart COMPONENT" >&2; exit 2 ;;
esac
