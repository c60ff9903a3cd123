#!/usr/bin/env bash
# The TypeScript and Python plugin SDKs (plugins/sdk-ts, plugins/sdk-python): their pinned build
# tools, and their template plugins built into components for the shared vector test
# (host/tests/offline/plugins_sdk_vectors.rs). Everything lives in the cache, nothing in the
# checkout; both steps are idempotent and a second run only checks:
#   tools  componentize-py (plugins/sdk-python/requirements.txt) into a venv, and the npm tools
#          of plugins/sdk-ts/package-lock.json (`npm ci`), each in a folder named by the hash of
#          its pins: $MLMODEL_CACHE/sdk-tools/{python,node}-<hash>;
#   build  plugins/echo-server-ts and plugins/echo-server-py into $MLMODEL_CACHE/sdk-plugins/
#          (or $MLMODEL_SDK_PLUGINS), each beside a record of the sources it was built from
#          (`<file>.inputs`: sha256 of every file): rebuilt only when one changed.
# Usage: hack/sdk-plugins.sh [tools|build|all]   (default all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
tools=$cache/sdk-tools
out=${MLMODEL_SDK_PLUGINS:-$cache/sdk-plugins}
what=${1:-all}
case $what in tools | build | all) ;; *) echo "usage: $0 [tools|build|all]" >&2; exit 2 ;; esac

say() { echo "sdk-plugins: $*" >&2; }

command -v node >/dev/null && command -v npm >/dev/null || { say "node and npm are needed (node >= 20)"; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { say "node >= 20 is needed, found $(node --version)"; exit 1; }

mkdir -p "$tools" "$out"
# One run at a time (make targets may start several).
exec 9>"$tools/.lock"
flock 9

key() { cat "$@" | sha256sum | cut -c1-12; }
# Removes the other versions of a tool folder once the current one is complete.
prune() {
  local keep=$1 prefix=$2 d
  for d in "$tools/$prefix"-*; do
    [ -e "$d" ] && [ "$d" != "$keep" ] && rm -rf "$d"
  done
  return 0
}

requirements=$root/plugins/sdk-python/requirements.txt
pyvenv=$tools/python-$(key "$requirements")
nodedir=$tools/node-$(key "$root/plugins/sdk-ts/package.json" "$root/plugins/sdk-ts/package-lock.json")

install_tools() {
  if [ ! -f "$pyvenv/.complete" ] || ! "$pyvenv/bin/componentize-py" --version >/dev/null 2>&1; then
    say "installing componentize-py into $pyvenv"
    rm -rf "$pyvenv"
    python3 -m venv "$pyvenv" >&2
    "$pyvenv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    touch "$pyvenv/.complete"
  fi
  prune "$pyvenv" python
  if [ ! -f "$nodedir/.complete" ]; then
    say "installing the TypeScript SDK's tools (npm ci) into $nodedir"
    rm -rf "$nodedir"
    mkdir -p "$nodedir"
    cp "$root/plugins/sdk-ts/package.json" "$root/plugins/sdk-ts/package-lock.json" "$nodedir/"
    # No install scripts: nothing may download beyond the registry's packages.
    (cd "$nodedir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    touch "$nodedir/.complete"
  fi
  prune "$nodedir" node
}

# The record of a component's sources: `# roots:` (what the test walks again), `# tools:`, then
# `sha256  path` of every file under the roots (no node_modules, __pycache__ or hidden files).
record() {
  local tools_line=$1; shift
  echo "# roots: $*"
  echo "# tools: $tools_line"
  (cd "$root" && find "$@" \( -name node_modules -o -name __pycache__ -o -name '.*' \) -prune -o -type f -print \
    | LC_ALL=C sort | xargs -r sha256sum)
}

# build_one FILE TOOLS_LINE "ROOTS" COMMAND...: COMMAND writes $out/FILE.tmp.
build_one() {
  local file=$1 tools_line=$2 roots=$3; shift 3
  local wanted
  # shellcheck disable=SC2086 # roots is a list of paths without spaces
  wanted=$(record "$tools_line" $roots)
  if [ -f "$out/$file" ] && [ "$(cat "$out/$file.inputs" 2>/dev/null)" = "$wanted" ]; then
    return 0
  fi
  say "building $file"
  rm -f "$out/$file" "$out/$file.inputs" "$out/$file.tmp"
  "$@"
  mv "$out/$file.tmp" "$out/$file"
  printf '%s\n' "$wanted" > "$out/$file.inputs"
}

build_plugins() {
  [ -f "$pyvenv/.complete" ] && [ -f "$nodedir/.complete" ] || { say "tools missing: run $0 tools"; exit 1; }
  export PYTHONDONTWRITEBYTECODE=1
  local py_tools node_tools
  py_tools="$("$pyvenv/bin/componentize-py" --version), $("$pyvenv/bin/python" --version)"
  node_tools="node $(node --version), npm tools $(basename "$nodedir")"
  build_one echo_server_ts.wasm "$node_tools" "plugins/sdk-ts plugins/echo-server-ts wit" \
    ts_build
  build_one echo_server_py.wasm "$py_tools" "plugins/sdk-python plugins/echo-server-py wit" \
    py_build
}

# Each build first runs the plugin natively on the vectors (a diff at once when it differs);
# the vector test then compares the component itself through the host.
ts_build() {
  local sdk=$root/plugins/sdk-ts
  node "$sdk/build.mjs" test "$root/plugins/echo-server-ts/plugin.ts" --modules "$nodedir/node_modules" >&2
  node "$sdk/build.mjs" build "$root/plugins/echo-server-ts/plugin.ts" --modules "$nodedir/node_modules" \
    -o "$out/echo_server_ts.wasm.tmp"
}

py_build() {
  local sdk=$root/plugins/sdk-python
  (cd "$sdk" && "$pyvenv/bin/python" -m mlmodel_plugin.testing "$root/plugins/echo-server-py/app.py" >&2)
  (cd "$sdk" && "$pyvenv/bin/python" -m mlmodel_plugin.build "$root/plugins/echo-server-py" \
    -o "$out/echo_server_py.wasm.tmp")
}

case $what in
  tools) install_tools ;;
  build) build_plugins ;;
  all) install_tools; build_plugins ;;
esac
