#!/usr/bin/env bash
# `make demo`: builds the operator, starts the local cluster, runs the operator against it,
# applies the samples and follows each model until it is Ready. The operator and the cluster keep
# running afterwards so you can look around; `make demo-stop` ends both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
demo="$cache/demo"
mkdir -p "$demo"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Building the operator and its default plugins (first build takes several minutes)"
cargo build --bin mlmodel-operator
bin="$root/target/debug/mlmodel-operator"

step "Starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
hack/cluster.sh up
export KUBECONFIG="$cache/cluster/kubeconfig"
kubectl=$(hack/build-tools.sh)/kubectl

step "Installing the MLModel CRD"
"$kubectl" apply --server-side -f deploy/crd/mlmodel.dev_mlmodels.yaml
"$kubectl" wait --for=condition=Established crd/mlmodels.mlmodel.dev --timeout=60s

step "Starting the operator (log: $demo/operator.log)"
if [ -f "$demo/operator.pid" ] && kill -0 "$(cat "$demo/operator.pid")" 2>/dev/null; then
  kill "$(cat "$demo/operator.pid")" && sleep 1
fi
metrics="127.0.0.1:${MLMODEL_DEMO_METRICS_PORT:-23280}"
"$bin" run --cache-dir "$cache/wasm" --metrics-bind-address "$metrics" >"$demo/operator.log" 2>&1 &
echo $! >"$demo/operator.pid"

step "Applying the samples (deploy/samples)"
"$kubectl" apply -k deploy/samples/
models=$("$kubectl" get mlmodels -o name)

step "Following each model's phase until Ready"
declare -A last
deadline=$((SECONDS + 300))
while :; do
  all_ready=1
  for m in $models; do
    line=$("$kubectl" get "$m" -o jsonpath='{.status.phase} {.status.reason}: {.status.message}' 2>/dev/null || true)
    [ "$line" = " : " ] && line="(waiting for the operator)"
    if [ "${last[$m]:-}" != "$line" ]; then
      printf '%-32s %s\n' "${m#*/}" "$line"
      last[$m]=$line
    fi
    case "$line" in Ready*) ;; *) all_ready=0 ;; esac
  done
  [ $all_ready = 1 ] && break
  if [ $SECONDS -gt $deadline ]; then
    echo "models did not become Ready in time; see $demo/operator.log and 'kubectl describe mlmodels'" >&2
    exit 1
  fi
  sleep 1
done

step "All models are Ready"
"$kubectl" get mlmodels
echo
echo "The operator's metrics (http://$metrics/metrics):"
curl -fsS "http://$metrics/metrics" | grep -E '^mlmodel_(models|downloads_total|plugin_renders_total|reconciles_total)' || true
cat <<MSG

Look around:
  export KUBECONFIG=$KUBECONFIG
  kubectl get mlmodels                 # phase, readiness, endpoint
  kubectl describe mlmodel echo-model  # conditions and events
  kubectl get deploy,job,pvc,svc -l app.kubernetes.io/managed-by=mlmodel-operator
  mlmodel-operator render -f deploy/samples/echo-model.yaml   # what each plugin renders ($bin)
  tail -f $demo/operator.log
  curl -s http://$metrics/metrics      # reconciles, renders, downloads, models by phase

Stop the operator and the cluster:
  make demo-stop
MSG
