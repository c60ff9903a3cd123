#!/usr/bin/env bash
# Benchmark (prints figures, asserts nothing): `mlmodel-operator fetch --sha256` against
# `curl -o` on the same 2 GiB file over loopback, median of 3 runs each.
#
# Like is compared with like: fetch streams, hashes (sha256) and fsyncs the file before writing its
# completion marker; the matching curl figure is `curl -o FILE && sha256sum FILE && sync FILE`
# (download, verify, make durable). `curl -o` + `sha256sum` without the fsync and `curl -o` alone
# are printed too, the latter as the ceiling of the transfer itself. The server is a tiny Python server answering with
# os.sendfile (zero-copy), so it is not the bottleneck: its own ceiling (curl to /dev/null) is
# printed first.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${BENCH_FETCH_MIB:-2048}
RUNS=${BENCH_FETCH_RUNS:-3}
# Scratch space of our own (removed at exit), on the cache's disk rather than a tmpfs.
PARENT=${BENCH_FETCH_DIR:-${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}}
mkdir -p "$PARENT"
WORK=$(mktemp -d "$PARENT/bench-fetch.XXXXXX")
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "bench-fetch: building release" >&2
cargo build --release --quiet --bin mlmodel-operator
BIN=${CARGO_TARGET_DIR:-target}/release/mlmodel-operator

echo "bench-fetch: making a ${SIZE_MIB} MiB file" >&2
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/model.bin"
SHA=$(sha256sum "$WORK/model.bin" | cut -d' ' -f1)
BYTES=$(stat -c %s "$WORK/model.bin")

cat > "$WORK/serve.py" <<'PY'
import http.server, os, socketserver, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        outputfile.flush()
        out, src = self.connection.fileno(), source.fileno()
        offset, size = 0, os.fstat(src).st_size
        while offset < size:
            offset += os.sendfile(out, src, offset, size - offset)
    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

os.chdir(sys.argv[1])
srv = Server(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
python3 "$WORK/serve.py" "$WORK" > "$WORK/port" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
URL="http://127.0.0.1:$(cat "$WORK/port")/model.bin"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN {printf "%.0f", b / s / 1e6}'; }

run_server() { curl -sS -o /dev/null "$URL"; }
run_curl() { curl -sS -o "$WORK/curl.bin" "$URL"; }
run_curl_sha() {
  curl -sS -o "$WORK/curl.bin" "$URL"
  [ "$(sha256sum "$WORK/curl.bin" | cut -d' ' -f1)" = "$SHA" ] || { echo "curl: bad digest" >&2; exit 1; }
}
run_curl_sync() {
  run_curl
  sync "$WORK/curl.bin"
}
run_curl_sha_sync() {
  run_curl_sha
  sync "$WORK/curl.bin"
}
run_fetch() {
  MLMODEL_LOG=warn "$BIN" fetch --url "$URL" --dest "$WORK/dest" --sha256 "$SHA" \
    --extract none --termination-log "$WORK/term.json"
}

# Times one command RUNS times from a clean, synced state; prints the median seconds.
measure() {
  local fn=$1 t0 t1
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/dest" "$WORK/curl.bin"
    sync
    t0=$(now)
    "$fn"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
  done | median
}

echo "bench-fetch: $RUNS runs each of ${SIZE_MIB} MiB over loopback" >&2
S_SERVER=$(measure run_server)
S_CURL=$(measure run_curl)
S_CURL_SYNC_ONLY=$(measure run_curl_sync)
S_CURL_SHA=$(measure run_curl_sha)
S_CURL_SYNC=$(measure run_curl_sha_sync)
S_FETCH=$(measure run_fetch)

printf '%-40s %8s %8s\n' "median of $RUNS, ${SIZE_MIB} MiB" "seconds" "MB/s"
printf '%-40s %8.2f %8s\n' "server ceiling (curl -o /dev/null)" "$S_SERVER" "$(mbps "$S_SERVER")"
printf '%-40s %8.2f %8s\n' "curl -o file (no hashing)" "$S_CURL" "$(mbps "$S_CURL")"
printf '%-40s %8.2f %8s\n' "curl -o file && sync file" "$S_CURL_SYNC_ONLY" "$(mbps "$S_CURL_SYNC_ONLY")"
printf '%-40s %8.2f %8s\n' "curl -o file && sha256sum file" "$S_CURL_SHA" "$(mbps "$S_CURL_SHA")"
printf '%-40s %8.2f %8s\n' "curl -o file && sha256sum && sync file" "$S_CURL_SYNC" "$(mbps "$S_CURL_SYNC")"
printf '%-40s %8.2f %8s\n' "mlmodel-operator fetch --sha256" "$S_FETCH" "$(mbps "$S_FETCH")"
awk -v f="$S_FETCH" -v d="$S_CURL_SYNC" -v c="$S_CURL_SHA" -v s="$S_CURL_SYNC_ONLY" -v n="$S_CURL" 'BEGIN {
  printf "fetch vs curl + sha256sum + sync (like for like): %.2fx   (goal >= 0.95x)\n", d / f
  printf "fetch vs curl + sha256sum (curl not durable):     %.2fx\n", c / f
  printf "fetch vs curl + sync (curl does not hash):        %.2fx\n", s / f
  printf "fetch vs curl alone (no hashing, not durable):    %.2fx\n", n / f
}'
