#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. setup      hack/setup.sh (toolchain pieces)
#   2. lint       cargo fmt --check, cargo clippy -D warnings
#   3. unit       cargo test --workspace (tests that need no cluster)
#   4. cluster    the local cluster (hack/cluster.sh: control plane, kwok nodes, the real node),
#                 the operator's image pushed to its registry (hack/operator-image.sh), then the
#                 tests marked #[ignore = "needs the local cluster: make test"], run with --ignored
#   5. chaos      a short seeded fault run on the same cluster (hack/chaos.py --short: the
#                 operator killed mid-flow, one and two replicas, the leader cut off), so the
#                 fault tier of `make chaos` cannot rot; CHAOS_SEED picks the seed (default 1)
# Stages after setup all run even when one fails, so one run reports everything; the script
# exits non-zero if any failed and names them. A cluster this script started is stopped on exit,
# also on failure or Ctrl-C; one that was already up (make cluster-up) is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLMODEL_CACHE=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}

failed=()
started_cluster=0

say() { printf '\n==> test.sh: %s\n' "$*" >&2; }

cleanup() {
  if [ "$started_cluster" = 1 ]; then
    say "stopping the cluster this run started"
    hack/cluster.sh down || true
  fi
}
trap cleanup EXIT
# Let Ctrl-C or a TERM from CI run the EXIT trap instead of leaving the cluster behind.
trap 'exit 130' INT TERM

# stage NAME COMMAND...: runs COMMAND, records NAME as failed if it fails, and carries on.
stage() {
  local name=$1 t0=$SECONDS rc=0; shift
  say "stage $name: $*"
  "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    say "stage $name passed ($((SECONDS - t0))s)"
  else
    say "stage $name FAILED (exit $rc, $((SECONDS - t0))s)"
    failed+=("$name")
  fi
}

cluster_tests() {
  if hack/cluster.sh status >/dev/null 2>&1; then
    say "using the local cluster that is already up (left running afterwards)"
  else
    started_cluster=1
    hack/cluster.sh up || return 1
  fi
  export KUBECONFIG=$MLMODEL_CACHE/cluster/kubeconfig
  # The real-node tests pull the operator's image (the download Jobs' `fetch`, and the installed
  # operator) from the cluster's registry: built from the release binary and pushed first.
  # By digest: the real node's containerd keeps an image it pulled under a tag, so a tag would
  # run the previous build's downloader.
  local image
  image=$(hack/operator-image.sh | tail -n 1) || return 1
  export MLMODEL_TEST_OPERATOR_IMAGE=$image
  cargo test --workspace --no-fail-fast -- --ignored
}

# Without the toolchain nothing else can work: stop at once.
stage setup hack/setup.sh
[ ${#failed[@]} = 0 ] || { say "FAILED: setup"; exit 1; }

stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage unit cargo test --workspace
stage cluster cluster_tests
# After the cluster tests, alone: it kills operators and cuts connections of its own only.
if [ "$started_cluster" = 1 ] || hack/cluster.sh status >/dev/null 2>&1; then
  stage chaos env KUBECONFIG="$MLMODEL_CACHE/cluster/kubeconfig" python3 hack/chaos.py --short --seed "${CHAOS_SEED:-1}"
fi

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED stages: ${failed[*]}"
  exit 1
fi
say "all stages passed"
