#!/usr/bin/env bash
# Record the real happn 2.21 client against happn-rs with the wire recorder (../shared/tools),
# then diff the normalised trace against the reference recording. Differences that remain must be
# listed in COMPATIBILITY.md.
#
#   scripts/wire-diff.sh [scenario,scenario,...]      (default: the scenarios happn-rs covers)
#
# Needs: a release build (cargo build --release), node, and happn@2.21.0 in tests/compat
# (cd tests/compat && npm ci). Exit code: 0 when the run completed (the diff is printed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${HAPPN_SHARED:-$root/../shared}
recorder=$shared/tools/wire-recorder/record.js
reference=$shared/spec/traces/reference-2.21.0.jsonl
bin=${HAPPN_RS_BIN:-$root/target/release/happn-rs}
scenarios=${1:-connect-describe-login,login-bad-password,set-variants,get-variants,remove-variants,raw-primus-protocol,large-and-unicode-payload,raw-server-heartbeat,client-custom-heartbeat}
out=$root/target/traces
mkdir -p "$out"
export HAPPN_REF_MODULES=${HAPPN_REF_MODULES:-$root/tests/compat/node_modules}
# The reference recording ran a secure server; so do we.
node "$recorder" --server-cmd "$bin --port {port} --host 127.0.0.1 --secure --log-level error" \
  --port "${WIRE_PORT:-55401}" --proxy-port "${WIRE_PROXY_PORT:-55400}" --only "$scenarios" \
  --out "$out/happn-rs.jsonl" --split-dir "$out/happn-rs" >"$out/recorder.log" 2>&1 || {
  echo "wire recorder failed; see $out/recorder.log" >&2
  tail -20 "$out/recorder.log" >&2
  exit 1
}
diff <(node "$recorder" --normalize "$reference" --only "$scenarios") \
     <(node "$recorder" --normalize "$out/happn-rs.jsonl" --only "$scenarios") || true
