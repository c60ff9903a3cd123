#!/usr/bin/env bash
# Installs what the build needs and a fresh machine lacks. Idempotent: a second run only checks.
set -euo pipefail
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding rust target wasm32-wasip2" >&2
  rustup target add wasm32-wasip2 >&2
fi
# S3-compatible server for the downloader's tests (host/fetch/tests/fetch/s3.rs), in a venv of its own.
MOTO_VENV="${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}/venv"
if ! "$MOTO_VENV/bin/moto_server" --help >/dev/null 2>&1; then
  echo "setup: installing moto[server] into $MOTO_VENV" >&2
  python3 -m venv "$MOTO_VENV" >&2
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' >&2
fi
# The TypeScript and Python plugin SDKs: their pinned tools (npm and PyPI packages) in the cache,
# then their template plugins built for the offline vector test (hack/sdk-plugins.sh; both steps
# cached). A template that fails to build does not stop setup: that test fails and says why.
"$(dirname "$0")/sdk-plugins.sh" tools
"$(dirname "$0")/sdk-plugins.sh" build ||
  echo "setup: the SDK template plugins did not build (above); the offline test plugins_sdk_vectors fails until they do" >&2
# Debian packages: openssl (certificates) and curl (health probes) for the cluster scripts; the
# real node's runtime (hack/node.sh): containerd, runc, the CNI plugins, the registry, busybox
# (images), conntrack and iptables (kube-proxy), gcc and libc6-dev (the static pause binary);
# apache2-utils: htpasswd, for the offline test of plugins from a registry that asks for a login.
missing=()
for pkg in openssl curl containerd runc containernetworking-plugins docker-registry busybox-static \
  conntrack iptables iproute2 procps gcc libc6-dev apache2-utils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# Cargo's target directory lives in the cache, shared by every clone on this machine (CI builds a
# fresh clone each run): one per toolchain, so artefacts of another rustc never mix in; cargo's
# own fingerprints rebuild whatever changed (see below for a switch of checkout). A checkout's real `target/` directory is left alone.
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -e "$root/target" ] || [ -L "$root/target" ]; then
  shared="$cache/target-$(rustc -V | sha256sum | cut -c1-12)"
  # Each clone's own crates are built again beside the shared dependencies: start over when the
  # directory has grown past 30 GiB (one clean-clone run adds about 20), so runs cannot fill the disk.
  if [ -d "$shared" ] && [ "$(du -s --block-size=1G "$shared" | cut -f1)" -gt 30 ]; then
    echo "setup: $shared is over 30 GiB: emptying it" >&2
    rm -rf "$shared"
  fi
  mkdir -p "$shared"
  [ "$(readlink "$root/target" 2>/dev/null)" = "$shared" ] || ln -sfn "$shared" "$root/target"
  # Cargo names a workspace crate's artefacts by its path relative to the workspace, so every
  # checkout builds the same files here, and judges them fresh by mtime: after another checkout
  # built, our older sources would look built, and its crates would be linked in (seen: a
  # checkout's tests compiled against another's older mlmodel-fetch). When the last checkout to
  # use this directory was another, our sources are touched so that cargo rebuilds our crates
  # (the dependencies stay shared). Two checkouts must not build here at the same time.
  marker="$shared/.last-checkout"
  if [ "$(cat "$marker" 2>/dev/null)" != "$root" ]; then
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      (cd "$root" && git ls-files -z | xargs -0 touch -c --)
    else
      find "$root" -path "$root/target" -prune -o -type f -exec touch -c {} +
    fi
    echo "$root" > "$marker"
  fi
fi
