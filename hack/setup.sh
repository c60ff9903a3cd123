#!/usr/bin/env bash
# Installs what the build needs and a fresh machine lacks. Idempotent: a second run only checks.
set -euo pipefail
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding rust target wasm32-wasip2" >&2
  rustup target add wasm32-wasip2 >&2
fi
