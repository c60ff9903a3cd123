#!/usr/bin/env bash
# The image of Seldon MLServer 1.7.1 with its scikit-learn runtime, built without a container
# engine: a Debian 12 root file system made by mmdebstrap (variant essential + python3), the
# Python packages of the lock hack/runtime/mlserver-requirements.txt installed from their wheels
# (sha256-checked), byte code compiled by the image's own python3, then one layer by
# hack/image.py --tree. Same entry point behaviour as upstream's seldonio/mlserver:1.7.1-sklearn:
# `mlserver start /mnt/models` as user 1000 (here: Cmd, no Entrypoint), working directory and
# HOME /tmp, which must be writable (scipy makes a temporary file at import: with a read-only root
# file system, mount an emptyDir at /tmp). hack/runtime/README.md has the details and figures.
#
#   hack/runtime-image.sh                        # build (or find) it; prints the cache directory
#   hack/runtime-image.sh --push localhost:23500 # ...and push it as REGISTRY/seldonio/mlserver:1.7.1-sklearn;
#                                                # the last line is REGISTRY/seldonio/mlserver:1.7.1-sklearn@sha256:...
#
# Cached by the hash of its inputs (this script, hack/image.py, the lock) under
# ${MLMODEL_CACHE:-~/.cache/mlmodel-operator}/images/mlserver-<hash>/: rootfs/ (the tree),
# oci/ (an OCI image layout: the compressed layer, config, manifest), build.json (figures) and
# debian-packages.txt. A second run with the same inputs builds nothing; a push of blobs the
# registry has uploads nothing. Builds go to a temporary directory renamed at the end, under a
# lock, so an interrupted or concurrent run leaves no half-built image behind. Wheels are kept
# in .../images/wheels/. Needs root (mmdebstrap and chroot) and reaches deb.debian.org and PyPI
# on a cold build only.
set -euo pipefail

MLSERVER_VERSION=1.7.1
IMAGE_NAME=seldonio/mlserver
IMAGE_TAG=$MLSERVER_VERSION-sklearn
DEBIAN_SUITE=bookworm
DEBIAN_MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# Debian's python3 (3.11) and its libraries; libstdc++6, which manylinux wheels take from the
# system (pandas, grpcio, ...: 50 of their shared objects); netbase for /etc/services and
# /etc/protocols. The wheels carry every other library they need (OpenBLAS, libgomp,
# libgfortran, ...).
DEBIAN_PACKAGES=python3,libstdc++6,netbase
PY=python3.11
UID_GID=1000:1000

here=$(cd "$(dirname "$0")" && pwd)
cache=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}
images=$cache/images
lock_file=$here/runtime/mlserver-requirements.txt
log() { echo "runtime-image: $*" >&2; }
die() { log "$*"; exit 1; }

push_to=""
while [ $# -gt 0 ]; do
  case $1 in
    --push) [ $# -ge 2 ] || die "--push needs a registry (host:port)"; push_to=$2; shift 2 ;;
    --push=*) push_to=${1#--push=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

# The inputs: what decides the image's bytes (apart from the Debian mirror's current packages).
hash=$({
  for f in "$0" "$here/image.py" "$lock_file"; do echo "== ${f##*/}"; cat "$f"; done
  echo "$MLSERVER_VERSION $IMAGE_TAG $DEBIAN_SUITE $DEBIAN_PACKAGES $PY $UID_GID ${DEBIAN_MIRRORS[*]}"
} | sha256sum | cut -c1-16)
out=$images/mlserver-$hash

# The launcher of `mlserver` (what pip writes as the console script, with Debian's
# interpreter).
launcher='#!/usr/bin/python3
import sys

from mlserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
'

# Mount points under DIR (deepest first), so nothing mounted is ever removed through them.
umount_under() {
  local m
  for m in $(awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

build() {
  local tmp=$1 rootfs=$1/rootfs site t0 t1 t2 t3 t4
  t0=$SECONDS
  command -v mmdebstrap >/dev/null ||
    apt-get install -y -qq mmdebstrap >&2 || { apt-get update -qq >&2 && apt-get install -y -qq mmdebstrap >&2; }
  log "mmdebstrap $DEBIAN_SUITE (essential + $DEBIAN_PACKAGES)"
  # Merged /usr through the hook (usr-is-merged), not the usrmerge package (which brings perl).
  # Documentation, manual pages and translations are never unpacked (copyright files are kept).
  mmdebstrap --quiet --variant=essential --include="$DEBIAN_PACKAGES" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$DEBIAN_SUITE" "$rootfs" "${DEBIAN_MIRRORS[@]}" >"$tmp/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$tmp/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
  t1=$SECONDS
  [ -x "$rootfs/usr/bin/$PY" ] || die "no /usr/bin/$PY in the root file system"
  chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$tmp/debian-packages.txt"

  log "wheels of $(grep -c '==' "$lock_file") packages (${lock_file#"$here"/})"
  site=$rootfs/usr/local/lib/$PY/dist-packages
  local pip_target=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311)
  local minor
  for minor in $(seq 36 -1 17); do pip_target+=(--platform "manylinux_2_${minor}_x86_64"); done
  pip_target+=(--platform manylinux2014_x86_64)
  mkdir -p "$images/wheels"
  local install=(env -u PIP_FIND_LINKS python3 -m pip install --quiet --no-deps --require-hashes
    --no-compile --no-index --find-links "$images/wheels" "${pip_target[@]}" --target "$site"
    -r "$lock_file")
  # From the wheels already here (no network), else download the missing ones first.
  "${install[@]}" 2>/dev/null || {
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL python3 -m pip download --quiet --no-deps \
      --require-hashes "${pip_target[@]}" -d "$images/wheels" -r "$lock_file" >&2
    "${install[@]}" >&2
  }
  rm -rf "$site/bin" # console scripts with this machine's interpreter; ours is below
  # The packages' own test suites (numpy, scipy, sklearn, pandas, gevent...: about 100 MB with
  # their byte code); nothing imports them at run time.
  find "$site" -type d -name tests -prune -exec rm -rf {} +
  printf '%s' "$launcher" >"$rootfs/usr/local/bin/mlserver"
  chmod 0755 "$rootfs/usr/local/bin/mlserver"
  t2=$SECONDS

  log "trimming, user ${UID_GID%%:*}, byte code"
  # Not needed at run time; the dpkg database stays (scanners read it).
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/cache/ldconfig/aux-cache "$rootfs"/var/log/* "$rootfs"/etc/machine-id
  # Nobody in the container needs su, mount or passwd to change identity.
  find "$rootfs" -xdev -type f -perm /6000 -exec chmod ug-s {} +
  # The user of upstream's image (uid 1000, the pod's runAsUser), home /tmp (writable).
  grep -q '^mlserver:' "$rootfs/etc/passwd" ||
    echo "mlserver:x:${UID_GID%%:*}:${UID_GID##*:}:MLServer:/tmp:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
  grep -q '^mlserver:' "$rootfs/etc/group" || echo "mlserver:x:${UID_GID##*:}:" >>"$rootfs/etc/group"
  chmod 1777 "$rootfs/tmp"
  mkdir -p "$rootfs/mnt/models"
  # Byte code for everything, compiled by the image's python and checked by nothing at import
  # (unchecked-hash): the layer's mtimes are 0, so timestamp-based .pyc would be stale, and a
  # read-only root could not take new ones; every start would compile pandas, scipy, ... again.
  find "$rootfs" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
  chroot "$rootfs" /usr/bin/$PY -m compileall -q -q --invalidation-mode unchecked-hash \
    /usr/lib/$PY /usr/lib/python3/dist-packages /usr/local/lib/$PY/dist-packages >&2 ||
    log "(compileall could not compile some files: test data of the packages; they stay source)"
  t3=$SECONDS

  log "layer (hack/image.py --tree)"
  python3 "$here/image.py" --tag "$IMAGE_NAME:$IMAGE_TAG" --tree "$rootfs:/" \
    --user "$UID_GID" --workdir /tmp --cmd "[\"mlserver\", \"start\", \"/mnt/models\"]" \
    --env MLSERVER_MODELS_DIR=/mnt/models --env HOME=/tmp \
    --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 \
    --layout "$tmp/oci" >"$tmp/reference"
  t4=$SECONDS
  python3 - "$tmp" "$t0" "$t1" "$t2" "$t3" "$t4" <<'EOF'
import json, os, sys
tmp, t0, t1, t2, t3, t4 = sys.argv[1], *map(int, sys.argv[2:])
oci = os.path.join(tmp, "oci")
index = json.load(open(os.path.join(oci, "index.json")))
digest = index["manifests"][0]["digest"]
manifest = json.load(open(os.path.join(oci, "blobs", "sha256", digest.split(":")[1])))
size = 0
for root, dirs, files in os.walk(os.path.join(tmp, "rootfs")):
    for name in files + dirs:
        st = os.lstat(os.path.join(root, name))
        size += st.st_size if not os.path.isdir(os.path.join(root, name)) else 0
json.dump({
    "manifest": digest,
    "layer": manifest["layers"][0],
    "rootfs_bytes": size,
    "seconds": {"mmdebstrap": t1 - t0, "wheels": t2 - t1, "trim_compile": t3 - t2,
                "layer": t4 - t3, "total": t4 - t0},
}, open(os.path.join(tmp, "build.json"), "w"), indent=2)
EOF
  log "built in $((t4 - t0))s: mmdebstrap $((t1 - t0))s, wheels $((t2 - t1))s, byte code $((t3 - t2))s, layer $((t4 - t3))s"
}

mkdir -p "$images"
if [ ! -f "$out/build.json" ]; then
  [ "$(id -u)" = 0 ] || die "building needs root (mmdebstrap, chroot); run as root"
  exec 9>"$images/.mlserver.lock"
  flock 9
  if [ ! -f "$out/build.json" ]; then # not built meanwhile by another run
    # What an interrupted run left (we hold the lock: no other build is in flight).
    for stale in "$images"/.tmp-mlserver-*; do
      [ -e "$stale" ] || continue
      umount_under "$stale/"
      rm -rf --one-file-system "$stale"
    done
    tmp=$images/.tmp-mlserver-$hash.$$
    trap 'umount_under "$tmp/"; rm -rf --one-file-system "$tmp"' EXIT
    mkdir -p "$tmp"
    build "$tmp"
    mv "$tmp" "$out"
    trap - EXIT
    # Older builds (other inputs): the newest one stays besides this one, the rest go.
    kept=0
    for old in $(ls -dt "$images"/mlserver-*/); do
      [ "${old%/}" != "$out" ] || continue
      kept=$((kept + 1))
      [ "$kept" -gt 1 ] || continue
      log "removing the older build ${old%/}"
      rm -rf --one-file-system "$old"
    done
  fi
  exec 9>&-
else
  log "cached: $out"
fi

if [ -n "$push_to" ]; then
  t0=$(date +%s.%N)
  ref=$(python3 "$here/image.py" --tag "$push_to/$IMAGE_NAME:$IMAGE_TAG" --from-layout "$out/oci" --push)
  log "pushed in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))")s"
  echo "$ref"
else
  echo "$out"
fi
