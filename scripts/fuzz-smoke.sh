#!/usr/bin/env bash
# Short coverage-guided fuzzing run of every target in fuzz/ (docs/FUZZING.md): builds them all
# with cargo-fuzz (libFuzzer), then runs each for FUZZ_SECONDS (default 20) starting from the
# committed seeds in fuzz/seeds/<target>/. Fails if any target finds a crash (a panic, a failed
# assertion, an out-of-bounds access, a timeout or a memory blow-up); the input that did it is
# left in fuzz/artifacts/<target>/.
#
# Works on a stable toolchain: cargo-fuzz needs -Z flags, so RUSTC_BOOTSTRAP=1 is set for these
# builds only. Environment:
#   FUZZ_SECONDS     seconds per target (default 20)
#   FUZZ_SANITIZER   address (default) or none; see docs/FUZZING.md
#   FUZZ_TARGETS     space-separated subset of targets (default: all)
#   FUZZ_TARGET_DIR  build directory (default fuzz/target, gitignored)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

seconds=${FUZZ_SECONDS:-20}
sanitizer=${FUZZ_SANITIZER:-address}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$root/fuzz/target}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
echo "== cargo fuzz build (sanitizer: $sanitizer)"
start=$(date +%s)
# fuzz/Cargo.lock is committed, so a fresh clone builds the versions tested here.
cargo fuzz build -s "$sanitizer"
echo "   built in $(($(date +%s) - start)) s"

failed=()
for t in $targets; do
  seeds="$root/fuzz/seeds/$t"
  # New inputs go to a scratch corpus; the committed seeds are only read.
  work="$CARGO_TARGET_DIR/smoke-corpus/$t"
  rm -rf "$work"
  mkdir -p "$work" "$seeds"
  dict=()
  case $t in
    envelope_scanner | query_parse | nedb_import | config) dict=("-dict=$root/fuzz/dicts/json.dict") ;;
  esac
  echo "== $t for ${seconds}s"
  log="$CARGO_TARGET_DIR/smoke-$t.log"
  if cargo fuzz run -s "$sanitizer" "$t" "$work" "$seeds" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
      ${dict[@]+"${dict[@]}"} >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$log" | tail -2 | sed 's/^/   /'
  else
    echo "!! $t failed; the log is $log, the input is in fuzz/artifacts/$t/"
    tail -40 "$log"
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz-smoke: all targets ran ${seconds}s without a crash"
