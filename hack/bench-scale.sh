#!/usr/bin/env bash
# Scale and memory benchmark of the operator on the local cluster (prints figures, asserts
# nothing): N echo models, time to Ready, the operator's peak RSS, CPU and API requests (from the
# apiserver's audit log), RSS at rest, time until deletion is complete, then the same writes by a
# plain client (host/examples/scale_baseline.rs) and the ratio. Starts the cluster if it is down
# (and stops it at the end). Options: hack/bench_scale.py --help.
#
#   hack/bench-scale.sh --models 100 --runs 3
#   hack/bench-scale.sh --models 1000 --runs 1 --memory-only          # memory at rest
#   BENCH_OPERATOR_CMD='/path/to/other --ns {namespace}' hack/bench-scale.sh --models 100
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 hack/bench_scale.py "$@"
