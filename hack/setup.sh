#!/usr/bin/env bash
# Installs what the build needs and a fresh machine lacks. Idempotent: a second run only checks.
set -euo pipefail
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding rust target wasm32-wasip2" >&2
  rustup target add wasm32-wasip2 >&2
fi
# S3-compatible server for the downloader's tests (host/tests/fetch_s3.rs), in a venv of its own.
MOTO_VENV="${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}/venv"
if ! "$MOTO_VENV/bin/moto_server" --help >/dev/null 2>&1; then
  echo "setup: installing moto[server] into $MOTO_VENV" >&2
  python3 -m venv "$MOTO_VENV" >&2
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' >&2
fi
# The local cluster's scripts use openssl (certificates) and curl (health probes).
missing=()
for tool in openssl curl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
