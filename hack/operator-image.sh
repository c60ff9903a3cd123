#!/usr/bin/env bash
# The operator's image without a container engine: the release binary (default plugins embedded)
# and the shared libraries it links (glibc), entry point /usr/local/bin/mlmodel-operator, user
# 65532, no shell, /tmp writable; the same entry point and user as the Dockerfile's image.
# Written as an OCI layout tarball (target/image/mlmodel-operator.oci.tar) and, when the local
# cluster's registry runs, pushed there.
#
#   hack/operator-image.sh [TAG]     default TAG: localhost:23500/mlmodel-operator:dev
# Prints the pushed reference (TAG@sha256:...) on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-localhost:23500/mlmodel-operator:dev}
cd "$root"
echo "operator-image: cargo build --release" >&2
cargo build --release --quiet -p mlmodel-operator
bin=target/release/mlmodel-operator
mkdir -p target/image
args=(--tag "$tag" --add "$bin:/usr/local/bin/mlmodel-operator" --libs-of /usr/local/bin/mlmodel-operator
  --dir /tmp:1777 --entrypoint /usr/local/bin/mlmodel-operator --user 65532:65532
  --oci-archive target/image/mlmodel-operator.oci.tar)
registry=${tag%%/*}
if curl -fsS -m 2 "http://$registry/v2/" >/dev/null 2>&1; then
  python3 hack/image.py "${args[@]}" --push
else
  python3 hack/image.py "${args[@]}" >/dev/null
  echo "operator-image: no registry at $registry (make cluster-up starts one): wrote target/image/mlmodel-operator.oci.tar only" >&2
fi
