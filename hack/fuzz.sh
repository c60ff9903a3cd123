#!/usr/bin/env bash
# Fuzzing (`make fuzz`; not part of `make test`): builds the cargo-fuzz targets of fuzz/ and runs
# each for FUZZ_SECONDS, one after the other (one process each: libFuzzer's default, the same
# as -jobs=1 without its log redirection), then prints a summary: executions, coverage, crashes.
#
#   make fuzz                                  # policy, extract, names: 600 s each
#   FUZZ_SECONDS=60 FUZZ_TARGETS=names make fuzz
#   hack/fuzz.sh policy -- -only_ascii=1       # targets as arguments; after --, libFuzzer flags
#
# Installs what it needs, idempotently, under $MLMODEL_CACHE (~/.cache/mlmodel-operator):
# cargo-fuzz ($CARGO_FUZZ_VERSION, `cargo install --locked --root cargo-fuzz/`) and the nightly
# toolchain (rustup) if missing. Everything it writes lives under fuzz/ there: the build
# (target/), the corpora (corpus/<target>: the committed seeds of fuzz/seeds/<target> are read
# as a second corpus, never written), crashes (artifacts/<target>/), logs and summary.txt.
#
# The host crate embeds the default plugins, which its build script compiles for wasm32-wasip2;
# a nightly often lacks that target, so the plugins are built with the repository's own
# toolchain (MLMODEL_PLUGIN_TOOLCHAIN, see host/runtime/build.rs).
#
# Exit status: 0 if no target found anything, 1 otherwise (the artifacts are named in the summary;
# reproduce one with `cargo +nightly fuzz run TARGET ARTIFACT` from the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
export MLMODEL_CACHE=${MLMODEL_CACHE:-$HOME/.cache/mlmodel-operator}

FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
ALL_TARGETS="policy extract names"

targets=()
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} = 0 ]; then
  read -r -a targets <<<"${FUZZ_TARGETS:-$ALL_TARGETS}"
fi
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz.sh: no target $t (known: $ALL_TARGETS)" >&2; exit 2; }
done

say() { printf '==> fuzz.sh: %s\n' "$*" >&2; }

dir=$MLMODEL_CACHE/fuzz
mkdir -p "$dir/logs"

# The plugins' toolchain: the one this repository builds with, before switching to nightly.
if [ -z "${MLMODEL_PLUGIN_TOOLCHAIN:-}" ]; then
  MLMODEL_PLUGIN_TOOLCHAIN=$(rustup show active-toolchain | awk '{print $1; exit}')
fi
export MLMODEL_PLUGIN_TOOLCHAIN

if ! rustup run "$FUZZ_TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  say "installing the $FUZZ_TOOLCHAIN toolchain"
  rustup toolchain install "$FUZZ_TOOLCHAIN" --profile minimal
fi

cargo_fuzz=$MLMODEL_CACHE/cargo-fuzz/bin/cargo-fuzz
if ! "$cargo_fuzz" --version 2>/dev/null | grep -qF " $CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION under $MLMODEL_CACHE/cargo-fuzz"
  cargo install --locked --root "$MLMODEL_CACHE/cargo-fuzz" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH=$MLMODEL_CACHE/cargo-fuzz/bin:$PATH
export RUSTUP_TOOLCHAIN=$FUZZ_TOOLCHAIN

fuzz=(cargo fuzz)
common=(--sanitizer "$FUZZ_SANITIZER" --target-dir "$dir/target")

say "building ${targets[*]} ($FUZZ_TOOLCHAIN, sanitizer $FUZZ_SANITIZER; plugins with $MLMODEL_PLUGIN_TOOLCHAIN)"
t0=$SECONDS
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "${common[@]}" "$t"
done
say "built in $((SECONDS - t0)) s"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
summary=()
found=0
for t in "${targets[@]}"; do
  corpus=$dir/corpus/$t
  artifacts=$dir/artifacts/$t
  log=$dir/logs/$t-$stamp.log
  mkdir -p "$corpus" "$artifacts"
  flags=(-max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048
    -artifact_prefix="$artifacts/")
  [ -f "fuzz/dicts/$t.dict" ] && flags+=(-dict="fuzz/dicts/$t.dict")
  before=$(find "$artifacts" -type f | wc -l)
  say "running $t for ${FUZZ_SECONDS} s (log: $log)"
  start=$SECONDS
  rc=0
  # The extract target's sandbox: tmpfs when there is one, removed after the run.
  scratch=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/mlmodel-fuzz.XXXXXX")
  FUZZ_EXTRACT_DIR=$scratch "${fuzz[@]}" run "${common[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- "${flags[@]}" ${extra[@]+"${extra[@]}"} \
    >"$log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  rm -rf "$scratch"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  new=$(find "$artifacts" -type f | sort | tail -n +$((before + 1)))
  if [ "$rc" = 0 ] && [ -z "$new" ]; then
    outcome="no crash"
  else
    found=1
    reason=$(grep -m1 -E '^==[0-9]+== ERROR|panicked at|^thread .* panicked' "$log" || echo "exit $rc")
    outcome="FOUND (exit $rc): ${reason}; artifacts: $(echo "$new" | tr '\n' ' ')"
  fi
  line="$t: ${took} s, ${execs:-?} execs (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}: $outcome"
  summary+=("$line")
  printf '%s %s %s\n' "$stamp" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$line" >>"$dir/summary.txt"
done

printf '\n==> fuzz.sh: summary (also in %s)\n' "$dir/summary.txt"
printf '  %s\n' "${summary[@]}"
exit "$found"
