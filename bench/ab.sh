#!/usr/bin/env bash
# A/B of two happn-rs binaries under the same loads, in one run, alternating A, B (and the floor
# server as the reference) for every load, ROUNDS times; prints server CPU µs per request of each
# run and the medians, B ÷ A and each ÷ floor. See bench/README.md.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#   ROUNDS=3 LOADS="set-frame npm-set" bench/ab.sh A B
#
# Loads: set-frame, get-frame, set-batched, get-batched (happn-bench 8×32), npm-set, npm-get
# (bench/real-client.js, 4 processes × 32), devices-5000 (5,000 devices × 10 sets/s),
# durable-set (A and B on their durable store, 32 clients × 1 in flight, one frame per write;
# no floor). FLOOR_THREADS=1 runs the floor server on one thread (to set beside
# `happn-rs --threads 1`). Results: bench/results/ab-<timestamp>.jsonl.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
[ $# -eq 2 ] || { echo "usage: bench/ab.sh A_BINARY B_BINARY" >&2; exit 2; }
bin_a=$1 bin_b=$2
bench=${HAPPN_BENCH_BIN:-$target/release/happn-bench}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
LOADS=${LOADS:-set-frame get-frame set-batched npm-set devices-5000 durable-set}
port=${PORT_BASE:-$(($(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range) - 9000))}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
scratch=$(mktemp -d)
mkdir -p "$here/results"
out="$here/results/ab-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$scratch"' EXIT
echo "{\"meta\":true,\"a\":\"$bin_a\",\"b\":\"$bin_b\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >"$out"

start() { # which durable?
  port=$((port + 1))
  case "$1" in
    floor) "$bench" floor-server --listen "127.0.0.1:$port" --threads "${FLOOR_THREADS:-0}" >/dev/null 2>&1 & ;;
    *)
      local bin=$bin_a store=(--memory)
      [ "$1" = B ] && bin=$bin_b
      [ "$2" = durable ] && store=(--data-dir "$scratch/data-$port")
      HAPPN_SERVER_CONFIG='{"connections":{"maxPerIp":0}}' "$bin" --port "$port" --host 127.0.0.1 --secure \
        --log-level warn "${store[@]}" >/dev/null 2>&1 &
      ;;
  esac
  pid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.05; done
  echo "ab: server $1 did not start" >&2
  return 1
}

one() { # load which
  local load=$1 which=$2 store=memory
  [ "$load" = durable-set ] && store=durable
  start "$which" "$store" || return
  local common=(--url "ws://127.0.0.1:$port" --pid "$pid" --label "$which" --duration "$DURATION" --warmup "$WARMUP")
  case "$load" in
    set-frame | get-frame | set-batched | get-batched)
      "$bench" "${common[@]}" --write-mode "${load#*-}" "${load%-*}" ;;
    npm-set | npm-get)
      node "$here/real-client.js" --port "$port" --pid "$pid" --label "$which" --duration "$DURATION" --warmup "$WARMUP" --op "${load#npm-}" ;;
    devices-5000) "$bench" "${common[@]}" devices --count 5000 --interval-ms 100 ;;
    durable-set) "$bench" "${common[@]}" set --clients 32 --inflight 1 ;;
  esac | grep '^{' | node -e 'const l=require("fs").readFileSync(0,"utf8").trim().split("\n").pop(); const r=JSON.parse(l); r.load=process.argv[1]; console.log(JSON.stringify(r));' "$load" | tee -a "$out"
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
}

for load in $LOADS; do
  for _ in $(seq "$ROUNDS"); do
    one "$load" A
    one "$load" B
    [ "$load" = durable-set ] || one "$load" floor
  done
done

node -e '
const rs = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const meta = rs.shift();
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null; };
console.log(`A = ${meta.a}\nB = ${meta.b}\nload average at start ${meta.loadavg}; server CPU µs per request (each run; median)`);
for (const load of [...new Set(rs.map((r) => r.load))]) {
  const of = (w) => rs.filter((r) => r.load === load && r.server === w);
  const cpu = (w) => of(w).map((r) => r.server_cpu_us_per_op);
  const ops = (w) => of(w).map((r) => r.ops_per_s);
  const [a, b, f] = ["A", "B", "floor"].map((w) => med(cpu(w)));
  const line = ["A", "B", "floor"].filter((w) => of(w).length).map((w) => `${w} ${cpu(w).join(" / ")} (${med(ops(w))} ops/s)`).join("   ");
  console.log(`${load.padEnd(13)} ${line}`);
  console.log(`${"".padEnd(13)} B/A ${(b / a).toFixed(3)}` + (f ? `   A/floor ${(a / f).toFixed(2)}   B/floor ${(b / f).toFixed(2)}` : ""));
}
' "$out"
echo "results: $out"
