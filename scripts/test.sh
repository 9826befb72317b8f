#!/usr/bin/env bash
# Run every test of happn-rs: Rust unit/integration tests, the compatibility suite that drives
# the real npm happn@2.21.0 client against the release binary, and the wire-trace comparison
# against the reference recording (when ../shared is present).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
export HAPPN_RS_BIN=${HAPPN_RS_BIN:-$target/release/happn-rs}

echo "== cargo build --release"
cargo build --release --workspace --locked

echo "== cargo test (with a private PostgreSQL for the cluster store's tests, stopped after)"
scripts/pg.sh run cargo test --release --workspace --locked

echo "== soak (${SOAK_SECONDS:=60} s of churn with misbehaving clients; CI runs 300 s)"
SOAK_SECONDS=$SOAK_SECONDS cargo test --release -p happn-rs --locked --test soak -- --ignored --nocapture

echo "== compat suite (real happn@2.21.0 client; the cluster tests on a private PostgreSQL)"
if [ ! -d tests/compat/node_modules/happn ]; then
  (cd tests/compat && npm ci --no-audit --no-fund)
fi
# A private PostgreSQL for the cluster tests (test/cluster.test.js: three nodes on one database).
(cd tests/compat && ../../scripts/pg.sh run npm test)

echo "== bench smoke (every happn-bench scenario for a second against happn-rs)"
HAPPN_BENCH_BIN=$target/release/happn-bench scripts/bench-smoke.sh

shared=${HAPPN_SHARED:-$root/../shared}
if [ -f "$shared/tools/wire-recorder/record.js" ]; then
  echo "== wire traces vs reference (differences must be the ones in tests/wire/expected.diff)"
  mkdir -p "$target/traces"
  scripts/wire-diff.sh > "$target/traces/wire.diff"
  if ! diff -u tests/wire/expected.diff "$target/traces/wire.diff"; then
    echo "wire trace differences changed: review them, list new ones in COMPATIBILITY.md, update tests/wire/expected.diff" >&2
    exit 1
  fi
  echo "wire traces: only the expected differences"
else
  echo "== wire traces skipped: $shared/tools/wire-recorder not found"
fi
echo "== browser suite (own browser client in headless Chromium)"
scripts/browser-test.sh

echo "== fuzz smoke (every cargo-fuzz target for ${FUZZ_SECONDS:=10} s from the committed seeds)"
FUZZ_SECONDS=$FUZZ_SECONDS FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$target/fuzz} scripts/fuzz-smoke.sh

echo "all test suites passed"
