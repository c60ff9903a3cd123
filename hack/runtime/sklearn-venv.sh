#!/usr/bin/env bash
# A virtualenv on this machine with the scikit-learn stack of the MLServer image (the same
# scikit-learn, numpy, scipy, joblib and threadpoolctl wheels, from the same lock
# hack/runtime/mlserver-requirements.txt), for hack/runtime/train_iris.py: a model trained here
# loads in the image.
#
#   hack/runtime/sklearn-venv.sh      # the last line printed is the venv's python
#   $(hack/runtime/sklearn-venv.sh | tail -1) hack/runtime/train_iris.py --out DIR
#
# Under ${MLMODEL_CACHE:-~/.cache/mlmodel-operator}/venv-sklearn; made again when the lock's
# lines for these packages (or the interpreter) change, else untouched. Needs a CPython 3.11
# (python3.11, else python3), as the image's is; the wheels come from PyPI, or from the wheels
# hack/runtime-image.sh already downloaded.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
venv=$cache/venv-sklearn
packages="scikit-learn numpy scipy joblib threadpoolctl"
log() { echo "sklearn-venv: $*" >&2; }

python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  { log "$python is not Python 3.11 (the image's is): the lock's wheels are cp311"; exit 1; }

# The lock's entries (name==version and its --hash line) of these packages.
requirements=$("$python" - "$here/mlserver-requirements.txt" $packages <<'EOF'
import re, sys
lock, wanted = open(sys.argv[1]).read(), set(sys.argv[2:])
for block in re.findall(r"^([a-z0-9-]+==\S+ \\\n\s+--hash=sha256:[0-9a-f]{64})", lock, re.M):
    if block.split("==")[0] in wanted:
        print(block)
EOF
)
[ "$(grep -c '==' <<<"$requirements")" = "$(wc -w <<<"$packages")" ] ||
  { log "the lock lacks one of: $packages"; exit 1; }
stamp=$({ echo "$requirements"; "$python" -VV; } | sha256sum | cut -c1-16)

mkdir -p "$cache"
exec 9>"$cache/.venv-sklearn.lock"
flock 9
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "creating $venv ($packages from the lock)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  find_links=()
  [ -d "$cache/images/wheels" ] && find_links=(--find-links "$cache/images/wheels")
  env -u PIP_FIND_LINKS "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-deps --require-hashes --only-binary=:all: "${find_links[@]}" \
    -r /dev/stdin <<<"$requirements" >&2
  "$venv/bin/python" -c 'import sklearn, numpy, scipy, joblib' >&2
  echo "$stamp" >"$venv/.stamp" # last: a venv without it is made again
fi
echo "$venv/bin/python"
