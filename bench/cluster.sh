#!/usr/bin/env bash
# The cluster bench (issue 15, docs/CLUSTER.md, docs/PERFORMANCE.md): a private PostgreSQL
# (scripts/pg.sh), NODES happn-rs nodes on it (durable: PostgreSQL's default synchronous_commit),
# and happn-bench's `cluster` scenario at four points:
#   peak       CLIENTS writers × INFLIGHT sets in flight, spread over the nodes, a subscriber per node
#   half       the same at half the peak's acknowledged rate: cross-node delivery latency
#   serial     one writer, one set in flight: one write per transaction
#   fanout     one writer, FANOUT_SUBS subscribers spread over the nodes: deliveries/s
# Prints the readable tables and saves the JSON lines to bench/results/cluster-<UTC time>.jsonl.
# Environment: NODES (3), CLIENTS (48), INFLIGHT (32), DURATION (5), WARMUP (2), FANOUT_SUBS (99),
# SKIP_BUILD=1, WRITE_MODE (frame), NODE_ARGS (more happn-rs arguments, e.g. "--threads 1").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
NODES=${NODES:-3}
CLIENTS=${CLIENTS:-48}
INFLIGHT=${INFLIGHT:-32}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
FANOUT_SUBS=${FANOUT_SUBS:-99}
WRITE_MODE=${WRITE_MODE:-frame}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p happn-rs -p happn-bench
fi
bin=$target/release/happn-rs
bench=$target/release/happn-bench
mkdir -p bench/results
out=bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ).jsonl

source scripts/pg.sh
pg_start
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop
}
trap cleanup EXIT
postmaster=$(head -1 "$HAPPN_PG_DIR/data/postmaster.pid")
urls=()
base=$((23000 + RANDOM % 2000))
for i in $(seq 0 $((NODES - 1))); do
  port=$((base + i))
  # shellcheck disable=SC2086 # NODE_ARGS is a word list
  "$bin" --port "$port" --host 127.0.0.1 --secure --name "n$i" --cluster "$HAPPN_PG_URL" --log-level warn ${NODE_ARGS:-} &
  pids+=($!)
  urls+=("ws://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
  port=${u##*:}
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
done
nodes=$(IFS=,; echo "${urls[*]}")
allpids=$(IFS=,; echo "${pids[*]},$postmaster")
echo "{\"meta\":true,\"nodes\":$NODES,\"commit\":\"$(git rev-parse --short HEAD)\",\"cpus\":$(nproc),\"postgres\":\"$("$(cat "$HAPPN_PG_DIR/bin")/postgres" --version)\"}" > "$out"

run() {
  local label=$1
  shift
  echo "== $label"
  "$bench" --label "$label" --duration "$DURATION" --warmup "$WARMUP" --write-mode "$WRITE_MODE" \
    cluster --nodes "$nodes" --pids "$allpids" "$@" | tee /dev/stderr | tail -1 >> "$out"
}
run peak --clients "$CLIENTS" --inflight "$INFLIGHT"
peak=$(tail -1 "$out" | sed -n 's/.*"set_ops_per_s":\([0-9.]*\).*/\1/p')
half=$(awk -v p="${peak:-0}" 'BEGIN { printf "%d", p / 2 }')
run half --clients "$CLIENTS" --inflight "$INFLIGHT" --rate "$half"
run serial --clients 1 --inflight 1
run fanout --clients 1 --inflight "$INFLIGHT" --subscribers $(( (FANOUT_SUBS + NODES - 1) / NODES ))
echo "results: $out"
