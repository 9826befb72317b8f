#!/usr/bin/env bash
# Record the real happn 2.21 client against happn-rs with the wire recorder (../shared/tools),
# then diff the normalised trace against the reference recording. Differences that remain must be
# listed in COMPATIBILITY.md.
#
#   scripts/wire-diff.sh [scenario,scenario,...]   (default: every scenario happn-rs covers so far)
#
# Needs: a release build (cargo build --release), node, and happn@2.21.0 in tests/compat
# (cd tests/compat && npm ci). Exit code: 0 when the run completed (the diff is printed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${HAPPN_SHARED:-$root/../shared}
recorder=$shared/tools/wire-recorder/record.js
reference=$shared/spec/traces/reference-2.21.0.jsonl
bin=${HAPPN_RS_BIN:-$root/target/release/happn-rs}
covered=connect-describe-login,login-bad-password,set-variants,get-variants,remove-variants,raw-primus-protocol,large-and-unicode-payload,raw-server-heartbeat,client-custom-heartbeat,on-event-types,on-count-1,on-initial-callback-emit,off-variants,two-clients-pubsub,server-shutdown-reconnect,server-shutdown-no-reconnect,reconnect-after-restart,idle-heartbeat-40s,client-pong-timeout,access-denied,login-with-token,server-side-disconnect,disconnect-revoke-session,login-digest,encrypted-payloads,http-endpoints
scenarios=${1:-$covered}
out=$root/target/traces
mkdir -p "$out"
export HAPPN_REF_MODULES=${HAPPN_REF_MODULES:-$root/tests/compat/node_modules}
# The security scenarios manage users through tests/wire/setup-module.js, which talks to the
# server port directly (not through the recording proxy).
export HAPPN_WIRE_SERVER_PORT=${WIRE_PORT:-23401}
# The reference recording ran a secure server; so do we.
node "$recorder" --server-cmd "$bin --port {port} --host 127.0.0.1 --secure --memory --log-level error" \
  --port "${WIRE_PORT:-23401}" --proxy-port "${WIRE_PROXY_PORT:-23400}" --only "$scenarios" \
  --setup-module "$root/tests/wire/setup-module.js" \
  --out "$out/happn-rs.jsonl" --split-dir "$out/happn-rs" >"$out/recorder.log" 2>&1 || {
  echo "wire recorder failed; see $out/recorder.log" >&2
  tail -20 "$out/recorder.log" >&2
  exit 1
}
node "$recorder" --normalize "$reference" --only "$scenarios" > "$out/reference.txt"
node "$recorder" --normalize "$out/happn-rs.jsonl" --only "$scenarios" > "$out/happn-rs.txt"
# Frames are compared per connection (the order the protocol defines); see wire-compare.js.
node "$root/scripts/wire-compare.js" "$out/reference.txt" "$out/happn-rs.txt"
