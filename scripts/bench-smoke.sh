#!/usr/bin/env bash
# A few seconds of every happn-bench scenario against a fresh happn-rs, so the tool keeps working.
# (The full side-by-side comparison with the Node.js servers is bench/compare.sh.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
server=${HAPPN_RS_BIN:-$target/release/happn-rs}
bench=${HAPPN_BENCH_BIN:-$target/release/happn-bench}
port=${BENCH_SMOKE_PORT:-22990}
"$server" --port "$port" --host 127.0.0.1 --secure --memory --log-level warn >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
common=(--url "ws://127.0.0.1:$port" --pid "$pid" --label happn-rs --duration 1 --warmup 0.2)
out=$(mktemp)
run() {
  "$bench" "${common[@]}" "$@" | tee -a "$out" | tail -1
}
run set --clients 4 --inflight 8
run --write-mode batched set --clients 4 --inflight 8
run get --clients 4 --inflight 8 --keys 100
run fanout --subscribers 10 --inflight 8
run subs-scale --subs 0,1000 --clients 2 --inflight 8
run conns --count 100
run login --clients 2
run login-isolation --clients 2 --logins 10
run echo --clients 2 --inflight 8
run devices --count 50 --interval-ms 50
run devices --count 50 --interval-ms 50 --op get --keys 20
# The echo server as a process of its own (`echo --external`), as bench/compare.sh runs it too.
"$bench" echo-server --listen 127.0.0.1:0 >"$out.echo" &
echo_pid=$!
trap 'kill $pid $echo_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$out.echo" && break; sleep 0.05; done
echo_addr=$(sed -n 's/^echo server listening on //p' "$out.echo")
"$bench" --url "ws://$echo_addr" --pid "$echo_pid" --duration 1 --warmup 0.2 echo --external --clients 2 --inflight 8 | tee -a "$out" | tail -1
# The floor server (canned happn-shaped replies), with a request load against it.
"$bench" floor-server --listen 127.0.0.1:0 >"$out.floor" &
floor_pid=$!
trap 'kill $pid $echo_pid $floor_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$out.floor" && break; sleep 0.05; done
floor_addr=$(sed -n 's/^floor server listening on //p' "$out.floor")
floor=(--url "ws://$floor_addr" --pid "$floor_pid" --label floor --duration 1 --warmup 0.2)
"$bench" "${floor[@]}" set --clients 2 --inflight 8 | tee -a "$out" | tail -1
# Every JSON line must report zero errors and some work done.
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(l => l.startsWith("{")).map(JSON.parse);
let bad = 0;
for (const r of lines) {
  const errs = Object.entries(r).filter(([k, v]) => k.endsWith("errors") && v > 0);
  const work = Object.entries(r).filter(([k, v]) => (k.endsWith("ops") || k === "connections" || k === "deliveries") && v > 0);
  if (errs.length || !work.length) { console.error("bench smoke: bad result", JSON.stringify(r)); bad++; }
}
if (lines.length < 14) { console.error("bench smoke: expected 14 result lines, got " + lines.length); bad++; }
console.log("bench smoke: " + lines.length + " results checked" + (bad ? ", " + bad + " bad" : ", all fine"));
process.exit(bad ? 1 : 0);
' "$out"
