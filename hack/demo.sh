#!/usr/bin/env bash
# `make demo`: builds the operator and its image, starts the local cluster (control plane, kwok
# nodes and the real node), runs the operator against it, and deploys two models that are really
# downloaded (from a file server this script starts on the real node's bridge: this machine has
# no internet) and really served on the real node: a scikit-learn model trained here, served by
# Seldon MLServer, which answers an inference request through its Service beside what the same
# model predicts locally; and a file served as it is, fetched back through its Service. The
# samples of deploy/samples are applied too: their sources are on the internet, so they show
# what the operator says when a download cannot succeed. The operator and the cluster keep
# running afterwards; `make demo-stop` ends them.
#
# One cargo profile only: the operator runs from the release binary that its image is built from.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
demo="$cache/demo"
mkdir -p "$demo/models"
ns=mlmodel-demo
host_ip=10.88.0.1            # the real node's bridge (hack/node.sh): pods reach this machine there
model_port=${MLMODEL_DEMO_MODEL_PORT:-23580}
image=localhost:23500/mlmodel-operator:dev

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the local cluster (control plane, kwok nodes, the real node with its registry and runtime images)"
hack/cluster.sh up
export KUBECONFIG="$cache/cluster/kubeconfig"
kubectl=$(hack/build-tools.sh)/kubectl
"$kubectl" get nodes -L mlmodel.dev/real-node

step "Building the operator (release, default plugins embedded; the first build takes several minutes) and its image, into the local registry"
hack/operator-image.sh "$image"
bin="$root/target/release/mlmodel-operator"

step "Installing the MLModel CRD"
"$kubectl" apply --server-side -f deploy/crd/mlmodel.dev_mlmodels.yaml
"$kubectl" wait --for=condition=Established crd/mlmodels.mlmodel.dev --timeout=60s

step "Serving a model file from this machine at http://$host_ip:$model_port/ (log: $demo/model-server.log)"
if [ ! -s "$demo/models/weights.bin" ]; then
  head -c $((4 * 1024 * 1024)) /dev/urandom >"$demo/models/weights.bin"
fi
sha=$(sha256sum "$demo/models/weights.bin" | cut -d' ' -f1)
# A scikit-learn model trained here, with the scikit-learn, numpy and joblib the runtime image has.
python=$(hack/runtime/sklearn-venv.sh | tail -n 1)
mkdir -p "$demo/models/iris"
"$python" hack/runtime/train_iris.py --out "$demo/models/iris" --variant a | tail -n 1 >"$demo/iris.json"
if [ -f "$demo/model-server.pid" ]; then kill "$(cat "$demo/model-server.pid")" 2>/dev/null || true; fi
python3 -m http.server "$model_port" --bind "$host_ip" --directory "$demo/models" >"$demo/model-server.log" 2>&1 &
echo $! >"$demo/model-server.pid"
echo "weights.bin: 4 MiB, sha256 $sha"
echo "iris/model.joblib: a LogisticRegression on the iris data set, trained just now"

step "Starting the operator (log: $demo/operator.log; download Jobs run $image)"
if [ -f "$demo/operator.pid" ] && kill -0 "$(cat "$demo/operator.pid")" 2>/dev/null; then
  kill "$(cat "$demo/operator.pid")" && sleep 1
fi
metrics="127.0.0.1:${MLMODEL_DEMO_METRICS_PORT:-23280}"
# Only the demo's namespace: tests or benchmarks may share the cluster.
MLMODEL_OPERATOR_IMAGE=$image "$bin" run --namespace "$ns" --cache-dir "$cache/wasm" --metrics-bind-address "$metrics" \
  >"$demo/operator.log" 2>&1 &
echo $! >"$demo/operator.pid"

step "A namespace whose pods run on the real node, under the restricted Pod Security Standard"
"$kubectl" apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels:
    pod-security.kubernetes.io/enforce: restricted
  annotations:
    scheduler.alpha.kubernetes.io/node-selector: mlmodel.dev/real-node=true
    scheduler.alpha.kubernetes.io/defaultTolerations: '[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"}]'
EOF

step "Applying the models: 'iris' and 'weights' (served from this machine) and the samples (sources on the internet)"
"$kubectl" -n "$ns" apply -f - <<EOF
apiVersion: mlmodel.dev/v1alpha1
kind: MLModel
metadata:
  name: iris
spec:
  modelURL: http://$host_ip:$model_port/iris/model.joblib
  storageSize: 64Mi
  framework: sklearn          # the built-in mlserver plugin: Seldon MLServer, Open Inference Protocol
  replicas: 1
  expose: true
  plugins:
    config:
      download: {storageClassName: local-path}
---
apiVersion: mlmodel.dev/v1alpha1
kind: MLModel
metadata:
  name: weights
spec:
  modelURL: http://$host_ip:$model_port/weights.bin
  sha256: $sha
  storageSize: 64Mi
  framework: file-server      # the built-in plugin that serves the model's files over HTTP
  replicas: 2
  expose: true
  plugins:
    config:
      download: {storageClassName: local-path}   # the real node's provisioner
EOF
# The samples as shipped, with their claims on the real node's StorageClass (the default class,
# kwok's, makes volumes only kwok nodes can pretend to mount).
"$kubectl" -n "$ns" apply -k deploy/samples/ --dry-run=client -o json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for m in doc.get("items", [doc]):
    config = m["spec"].setdefault("plugins", {}).setdefault("config", {})
    config.setdefault("download", {})["storageClassName"] = "local-path"
json.dump(doc, sys.stdout)
' | "$kubectl" -n "$ns" apply -f -

step "Following the models (the samples cannot download here: no internet)"
declare -A last
deadline=$((SECONDS + 300))
while :; do
  for m in $("$kubectl" -n "$ns" get mlmodels -o name); do
    line=$("$kubectl" -n "$ns" get "$m" -o jsonpath='{.status.phase} {.status.reason}: {.status.message}' 2>/dev/null || true)
    [ "$line" = " : " ] && line="(waiting for the operator)"
    if [ "${last[$m]:-}" != "$line" ]; then
      printf '%-20s %s\n' "${m#*/}" "$line"
      last[$m]=$line
    fi
  done
  ready=0
  for m in iris weights; do
    phase=$("$kubectl" -n "$ns" get mlmodel "$m" -o jsonpath='{.status.phase}')
    [ "$phase" = Ready ] && ready=$((ready + 1))
    if [ "$phase" = Failed ] || [ $SECONDS -gt $deadline ]; then
      echo "$m did not become Ready; see $demo/operator.log and 'kubectl -n $ns describe mlmodel $m'" >&2
      exit 1
    fi
  done
  [ $ready = 2 ] && break
  sleep 1
done

step "iris and weights are Ready: really downloaded, really served on the real node"
"$kubectl" -n "$ns" get mlmodels
echo
"$kubectl" -n "$ns" get pods -o wide
ip=$("$kubectl" -n "$ns" get service weights -o jsonpath='{.spec.clusterIP}')
fetch="curl -s http://$ip/weights.bin | sha256sum"
echo
echo "Fetching the served file through the model's Service (ClusterIP $ip, routed by kube-proxy):"
echo "  \$ $fetch"
# A Service created a moment ago is routed once kube-proxy has synced (about a second).
for _ in $(seq 50); do curl -fsS -m 5 -o /dev/null "http://$ip/weights.bin" 2>/dev/null && break; sleep 0.2; done
got=$(curl -fsS "http://$ip/weights.bin" | sha256sum | cut -d' ' -f1)
echo "  $got  -"
if [ "$got" = "$sha" ]; then
  echo "  = the sha256 of the file this machine served ($sha)"
else
  echo "  differs from the source's sha256 $sha" >&2
  exit 1
fi

step "Asking the served model: an Open Inference Protocol (V2) request through its Service"
url=$("$kubectl" -n "$ns" get mlmodel iris -o jsonpath='{.status.inference.url}')
echo "status.inference: $("$kubectl" -n "$ns" get mlmodel iris -o jsonpath='{.status.inference}')"
iris_ip=$("$kubectl" -n "$ns" get service iris -o jsonpath='{.spec.clusterIP}')
# This machine does not resolve cluster DNS names: the same path through the ClusterIP.
infer="http://$iris_ip/${url#http://*/}"
python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["request"]))' <"$demo/iris.json" >"$demo/iris-request.json"
echo "  \$ curl -s -H 'Content-Type: application/json' -d @$demo/iris-request.json $infer"
echo "  request: $(cat "$demo/iris-request.json")"
for _ in $(seq 50); do curl -fsS -m 5 -o /dev/null "http://$iris_ip/v2/health/ready" 2>/dev/null && break; sleep 0.2; done
answer=$(curl -fsS -H 'Content-Type: application/json' -d @"$demo/iris-request.json" "$infer")
echo "  answer:  $answer"
python3 - "$demo/iris.json" "$answer" <<'PY'
import json, sys
local = json.load(open(sys.argv[1]))["predictions"]
served = json.loads(sys.argv[2])["outputs"][0]["data"]
print(f"  served predictions: {served}")
print(f"  local predictions:  {local}  (the same model, scikit-learn on this machine)")
if served != local:
    sys.exit("  the served model answered differently from the local one")
print("  = the same, value for value")
PY
echo
echo "The operator's metrics (http://$metrics/metrics):"
curl -fsS "http://$metrics/metrics" | grep -E '^mlmodel_(models|downloads_total|reconciles_total)' || true
cat <<MSG

Look around:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $ns get mlmodels                  # phase, readiness, endpoint
  kubectl -n $ns describe mlmodel iris         # conditions, events, status.inference
  kubectl -n $ns get mlmodels -o wide          # ... with the inference URL
  curl -s -H 'Content-Type: application/json' -d @$demo/iris-request.json $infer
  kubectl -n $ns describe mlmodel echo-model   # why a sample is not Ready here
  kubectl -n $ns get deploy,job,pvc,svc,pods -o wide
  $fetch
  tail -f $demo/operator.log

Stop the operator, the model server and the cluster:
  make demo-stop
MSG
