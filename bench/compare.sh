#!/usr/bin/env bash
# Side-by-side performance comparison: happn-rs vs happn-3 (latest, npm) vs happn 2.21.0 (npm) vs
# the floor server (`happn-bench floor-server`: websocket framing and canned replies, no happn
# work), driven by the same loads (crates/bench `happn-bench`, and the npm happn client through
# bench/real-client.js) on loopback. See bench/README.md.
#
#   bench/compare.sh                       # everything, 5 s per measurement
#   DURATION=1 CONNS=200 bench/compare.sh  # a quick look
#   SERVERS="happn-rs happn-3" SCENARIOS="set fanout" bench/compare.sh
#   SCENARIOS="devices" DEVICE_OPS=set bench/compare.sh
#
# Every JSON line goes to bench/results/<timestamp>.jsonl (the readable tables to .log beside it);
# the summary is printed at the end (and saved as .txt). Each server runs as a fresh process per
# scenario; a scenario that errors, times out or kills its server is reported as failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

DURATION=${DURATION:-5}              # measured seconds per run
WARMUP=${WARMUP:-1}                  # warm-up seconds before each measurement
CLIENTS=${CLIENTS:-8}                # set / get / echo / subs-scale: connections …
INFLIGHT=${INFLIGHT:-32}             # … and requests in flight on each
KEYS=${KEYS:-1000}                   # distinct paths for set / get
PAYLOAD=${PAYLOAD:-64}               # bytes per document
FANOUT_PUBS=${FANOUT_PUBS:-1}
FANOUT_SUBS=${FANOUT_SUBS:-100}
FANOUT_INFLIGHT=${FANOUT_INFLIGHT:-32}
SUBS_RS=${SUBS_RS:-0,1000,10000,100000}   # subs-scale points for happn-rs
SUBS_NODE=${SUBS_NODE:-0,1000,10000}      # … and for the Node.js servers (100k takes hours on 2.21)
CONNS=${CONNS:-1000}                 # idle logged-in connections for the conns scenario
LOGIN_CLIENTS=${LOGIN_CLIENTS:-8}
SERVERS=${SERVERS:-happn-rs happn-3 happn-2.21 floor}
SCENARIOS=${SCENARIOS:-set get npm devices fanout subs-scale conns login}
MODES=${MODES:-frame batched}        # write modes of set, get and echo (frame: one per write, as the npm client)
NPM_PROCS=${NPM_PROCS:-4}            # npm: client processes …
NPM_CLIENTS=${NPM_CLIENTS:-1}        # … happn clients in each …
NPM_INFLIGHT=${NPM_INFLIGHT:-32}     # … and requests in flight on each
NPM_OPS=${NPM_OPS:-set get}
DEVICE_OPS=${DEVICE_OPS:-set get}    # devices: the request each device sends
DEVICE_POINTS=${DEVICE_POINTS-1000:1000 5000:1000 19000:2000}  # COUNT:INTERVAL_MS, every server
DEVICE_POINTS_RS=${DEVICE_POINTS_RS-1000:100 5000:100 19000:1000} # … and happn-rs + floor only
DEVICE_REPEAT=${DEVICE_REPEAT:-1}    # runs of each fleet point
ECHO=${ECHO:-1}                      # run the websocket echo ceilings (0: skip)
REPEAT=${REPEAT:-3}                  # runs of set, get and each echo; the summary takes the median
H3_PROTOCOL=${H3_PROTOCOL:-happn_4}  # happn-3's own client protocol (1.1.0: its happn_1 compat layer)
PORT_BASE=${PORT_BASE:-}             # each server start takes the next port from here (default:
                                     # just below the ephemeral range, where no client socket sits)
TIMEOUT=${TIMEOUT:-600}              # seconds one happn-bench run may take, at most …
SUBS_TIMEOUT=${SUBS_TIMEOUT:-1800}   # … and a whole subs-scale series
NOFILE=${NOFILE:-65536}              # wanted open-file limit (conns); the hard limit caps it
SKIP_INSTALL=${SKIP_INSTALL:-0}      # 1: use bench/node_modules as it is
SKIP_BUILD=${SKIP_BUILD:-0}          # 1: use the release binaries as they are

rs_bin=${HAPPN_RS_BIN:-$target/release/happn-rs}
bench_bin=${HAPPN_BENCH_BIN:-$target/release/happn-bench}

say() { printf '%s\n' "$*" >&2; }
die() { say "compare: $*"; exit 1; }

command -v node >/dev/null || die "node is needed for the Node.js servers and the summary"
command -v timeout >/dev/null || die "coreutils timeout is needed"
loadavg=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

# ── 1. install the Node.js servers and build happn-rs + happn-bench ─────────────────────────────
if [ "$SKIP_INSTALL" != 1 ]; then
  say "== npm: happn@2.21.0 (server and client) and happn-3 into bench/node_modules"
  if [ -f "$here/package-lock.json" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  else
    (cd "$here" && npm install --no-audit --no-fund --loglevel=error) || die "npm install failed"
  fi
fi
[ -d "$here/node_modules/happn" ] && [ -d "$here/node_modules/happn-3" ] || die "bench/node_modules lacks happn or happn-3 (run without SKIP_INSTALL=1)"
if [ "$SKIP_BUILD" != 1 ]; then
  say "== cargo build --release (happn-rs, happn-bench)"
  (cd "$root" && cargo build --release -p happn-rs -p happn-bench) || die "cargo build failed"
fi
[ -x "$rs_bin" ] || die "no happn-rs binary at $rs_bin"
[ -x "$bench_bin" ] || die "no happn-bench binary at $bench_bin"

# happn-rs in memory, like the Node.js servers (their default stores are in memory): `--memory`
# where the binary has it (its default is a durable store in ./happn-data). RS_STORE=durable gives
# each happn-rs process a fresh --data-dir in the scratch directory instead (the Node.js servers
# stay in memory: not like for like). RS_ARGS adds options.
rs_args=(--host 127.0.0.1 --secure --log-level warn)
rs_memory=0
if [ "${RS_STORE:-memory}" = memory ] && "$rs_bin" --help 2>/dev/null | grep -q -- '--memory'; then
  rs_args+=(--memory)
  rs_memory=1
fi
read -r -a rs_extra <<<"${RS_ARGS:-}"
rs_args+=("${rs_extra[@]}")

# Many connections need many descriptors, in the servers (started from this shell) and the tool.
hard=$(ulimit -Hn)
want=$NOFILE
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && ! ulimit -Hn "$want" 2>/dev/null && want=$hard
ulimit -n "$want" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  say "compare: warning: open-file limit $(ulimit -n) is below CONNS=$CONNS + 200: conns will fail (raise the hard limit or lower CONNS)"
fi

# ── 2. results ──────────────────────────────────────────────────────────────────────────────────
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$here/results"
mkdir -p "$results"
jsonl="$results/$stamp.jsonl"
log="$results/$stamp.log"
: >"$jsonl"
: >"$log"

version_of() { node -p "require('$here/node_modules/$1/package.json').version" 2>/dev/null || echo '?'; }
v_rs=$("$rs_bin" --version 2>/dev/null | awk '{print $2}')
v_h3=$(version_of happn-3)
v_h2=$(version_of happn)
commit=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(cd "$root" && git status --porcelain -- crates 2>/dev/null | head -1)
node -e 'const [,...a]=process.argv; const o={meta:true,started:a[0],happn_rs:a[1],git:a[2]+(a[3]?"+dirty":""),happn_3:a[4],happn_2_21:a[5],h3_protocol:a[6],node:process.version,cores:require("os").cpus().length,duration_s:+a[7],warmup_s:+a[8],clients:+a[9],inflight:+a[10],conns:+a[11],nofile:a[12],happn_rs_args:a[13],repeat:+a[14],loadavg:a[15],modes:a[16]}; console.log(JSON.stringify(o));' \
  "$stamp" "$v_rs" "$commit" "$dirty" "$v_h3" "$v_h2" "$H3_PROTOCOL" "$DURATION" "$WARMUP" "$CLIENTS" "$INFLIGHT" "$CONNS" "$(ulimit -n)" "${rs_args[*]}" "$REPEAT" "$loadavg" "$MODES" >>"$jsonl"

# A failure as a JSON line of its own, so the summary shows it next to the numbers (with the
# write mode or fleet point of the run in `fail_ctx`, e.g. {"write_mode":"frame"}).
fail_ctx='{}'
record_failure() { # server scenario reason
  node -e 'const [,s,sc,r,c]=process.argv; console.log(JSON.stringify({scenario:sc,server:s,failed:true,reason:r,...JSON.parse(c)}))' "$1" "$2" "$3" "$fail_ctx" >>"$jsonl"
  say "   !! $1 $2: $3"
}

# ── 3. servers ──────────────────────────────────────────────────────────────────────────────────
# A listening port inside the kernel's ephemeral range can be taken at any moment by the local end
# of some client connection (thousands come and go here): start below the range.
if [ -z "$PORT_BASE" ]; then
  eph_lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  PORT_BASE=$((eph_lo > 12000 ? eph_lo - 10000 : 20000))
fi
port=$PORT_BASE
# Servers run in a scratch directory, so that nothing they might write lands in the work tree.
scratch=$(mktemp -d)
server_pid=
server_port=
server_err=

start_server() { # name → sets server_pid, server_port; returns non-zero if it did not come up
  local try
  for try in 1 2 3 4 5; do
    start_server_once "$1" && return 0
    grep -qi 'in use' "$server_err" 2>/dev/null || return 1
    stop_server # the port was taken: take the next one
  done
  return 1
}

start_server_once() {
  port=$((port + 1))
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done # someone listens there
  server_port=$port
  [ -n "$server_err" ] && rm -f "$server_err"
  server_err=$(mktemp)
  case "$1" in
    happn-rs)
      local data=()
      if [ "$rs_memory" != 1 ] && "$rs_bin" --help 2>/dev/null | grep -q -- '--data-dir'; then
        data=(--data-dir "$scratch/rs-data-$port") # a fresh durable store per process
      fi
      # Every benchmark connection comes from 127.0.0.1: no per-address connection limit; and
      # a fleet of 19k devices needs more than the default total (the open-file limit less 1/8).
      local max=$(($(ulimit -n) - 256))
      (cd "$scratch" && HAPPN_SERVER_CONFIG="{\"connections\":{\"maxPerIp\":0,\"max\":$max}}" exec "$rs_bin" --port "$port" "${rs_args[@]}" "${data[@]}") >/dev/null 2>"$server_err" &
      ;;
    happn-3) (cd "$scratch" && exec node "$here/servers.js" happn-3 --port "$port" --host 127.0.0.1) >/dev/null 2>"$server_err" & ;;
    happn-2.21) (cd "$scratch" && exec node "$here/servers.js" happn-2.21 --port "$port" --host 127.0.0.1) >/dev/null 2>"$server_err" & ;;
    floor) (cd "$scratch" && exec "$bench_bin" floor-server --listen "127.0.0.1:$port") >/dev/null 2>"$server_err" & ;;
    *) say "compare: unknown server $1"; return 1 ;;
  esac
  server_pid=$!
  for _ in $(seq 600); do # up to 30 s (the Node.js servers take a second or two)
    kill -0 "$server_pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.2
      kill -0 "$server_pid" 2>/dev/null && return 0
      return 1
    fi
    sleep 0.05
  done
  return 1
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=
}

clean() { tail -c "${2:-300}" "$1" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' '; }
trap 'stop_server; rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM

# One happn-bench run (or, for scenario npm-*, one bench/real-client.js run) against a fresh
# server: JSON lines to the .jsonl, the tables to the .log.
run() { # server scenario limit_s happn-bench-args… (real-client.js args for npm-*)
  local name=$1 scenario=$2 limit=$3
  shift 3
  say "-- $name: $scenario"
  if ! start_server "$name"; then
    record_failure "$name" "$scenario" "server did not start: $(clean "$server_err")"
    stop_server
    rm -f "$server_err"
    return
  fi
  local extra=()
  [ "$name" = happn-3 ] && extra=(--protocol "$H3_PROTOCOL")
  local out err rc
  out=$(mktemp)
  err=$(mktemp)
  case "$scenario" in
    npm-*) # the npm client speaks its own protocol (happn-3 answers it with its 2.x compatibility layer)
      timeout --kill-after=10 "$limit" node "$here/real-client.js" --port "$server_port" --pid "$server_pid" --label "$name" \
        --duration "$DURATION" --warmup "$WARMUP" "$@" >"$out" 2>"$err" ;;
    *)
      timeout --kill-after=10 "$limit" "$bench_bin" --url "ws://127.0.0.1:$server_port" --pid "$server_pid" --label "$name" \
        --duration "$DURATION" --warmup "$WARMUP" "${extra[@]}" "$@" >"$out" 2>"$err" ;;
  esac
  rc=$?
  local alive=1
  kill -0 "$server_pid" 2>/dev/null || alive=0
  { echo "### $name $scenario (exit $rc)"; cat "$out" "$err"; } >>"$log"
  grep '^{' "$out" >>"$jsonl"
  grep '^{' "$out" | sed 's/^/   /' >&2
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    record_failure "$name" "$scenario" "timed out after ${limit}s (any points finished before are still shown)"
  elif [ "$rc" != 0 ]; then
    record_failure "$name" "$scenario" "happn-bench exit $rc: $(clean "$err")"
  fi
  if [ "$alive" = 0 ]; then
    record_failure "$name" "$scenario" "server process died: $(clean "$server_err")"
  fi
  rm -f "$out" "$err"
  stop_server
  rm -f "$server_err"
}

# ── 4. scenarios ────────────────────────────────────────────────────────────────────────────────
load=(--clients "$CLIENTS" --inflight "$INFLIGHT" --keys "$KEYS" --payload "$PAYLOAD")
# The floor server answers with canned replies and delivers no events: no fan-out, no subs-scale.
floor_skips=" fanout subs-scale "
for scenario in $SCENARIOS; do
  for name in $SERVERS; do
    [ "$name" = floor ] && [[ "$floor_skips" == *" $scenario "* ]] && continue
    fail_ctx='{}'
    case "$scenario" in
      # This machine's run-to-run noise is large: set and get run $REPEAT times (median shown), in
      # each write mode.
      set | get)
        for mode in $MODES; do
          fail_ctx="{\"write_mode\":\"$mode\"}"
          for _ in $(seq "$REPEAT"); do run "$name" "$scenario" "$TIMEOUT" --write-mode "$mode" "$scenario" "${load[@]}"; done
        done
        ;;
      npm)
        for op in $NPM_OPS; do
          for _ in $(seq "$REPEAT"); do
            run "$name" "npm-$op" "$TIMEOUT" --op "$op" --procs "$NPM_PROCS" --clients "$NPM_CLIENTS" --inflight "$NPM_INFLIGHT" --keys "$KEYS" --payload "$PAYLOAD"
          done
        done
        ;;
      devices)
        points=$DEVICE_POINTS
        case "$name" in happn-rs | floor) points="$DEVICE_POINTS $DEVICE_POINTS_RS" ;; esac
        for op in $DEVICE_OPS; do
          for point in $points; do
            count=${point%%:*} interval=${point##*:}
            fail_ctx="{\"point_devices\":$count,\"point_interval_ms\":$interval}"
            for _ in $(seq "$DEVICE_REPEAT"); do
              run "$name" "devices-$op" "$TIMEOUT" devices --op "$op" --count "$count" --interval-ms "$interval" --keys "$KEYS" --payload "$PAYLOAD"
            done
          done
        done
        ;;
      fanout) run "$name" fanout "$TIMEOUT" fanout --publishers "$FANOUT_PUBS" --subscribers "$FANOUT_SUBS" --inflight "$FANOUT_INFLIGHT" --payload "$PAYLOAD" ;;
      subs-scale)
        subs=$SUBS_NODE
        [ "$name" = happn-rs ] && subs=$SUBS_RS
        run "$name" subs-scale "$SUBS_TIMEOUT" subs-scale --subs "$subs" "${load[@]}"
        ;;
      conns) run "$name" conns "$TIMEOUT" conns --count "$CONNS" ;;
      login) run "$name" login "$TIMEOUT" login --clients "$LOGIN_CLIENTS" ;;
      *) say "compare: unknown scenario $scenario (set get npm devices fanout subs-scale conns login)" ;;
    esac
  done
done
fail_ctx='{}'

# The echo ceilings, in turn, $REPEAT times each (the summary takes the medians).
echo_in_process() { # write mode
  say "-- echo, $1 (in-process websocket echo: the transport ceiling for the set load shape)"
  local out
  out=$(mktemp)
  if timeout --kill-after=10 "$TIMEOUT" "$bench_bin" --duration "$DURATION" --warmup "$WARMUP" --write-mode "$1" echo "${load[@]}" >"$out" 2>&1; then
    grep '^{' "$out" >>"$jsonl"
    grep '^{' "$out" | sed 's/^/   /' >&2
  else
    record_failure "echo (in-process)" echo "happn-bench echo failed: $(clean "$out")"
  fi
  { echo "### echo"; cat "$out"; } >>"$log"
  rm -f "$out"
}
echo_separate_process() { # write mode
  say "-- echo, $1 (the same echo server as a process of its own, as a real server is)"
  local out echo_pid echo_addr
  out=$(mktemp)
  "$bench_bin" echo-server --listen 127.0.0.1:0 >"$out.addr" 2>&1 &
  echo_pid=$!
  for _ in $(seq 50); do grep -q listening "$out.addr" && break; sleep 0.1; done
  echo_addr=$(sed -n 's/^echo server listening on //p' "$out.addr")
  if [ -n "$echo_addr" ] && timeout --kill-after=10 "$TIMEOUT" "$bench_bin" --url "ws://$echo_addr" --pid "$echo_pid" \
    --duration "$DURATION" --warmup "$WARMUP" --write-mode "$1" echo --external "${load[@]}" >"$out" 2>&1; then
    grep '^{' "$out" >>"$jsonl"
    grep '^{' "$out" | sed 's/^/   /' >&2
  else
    record_failure "echo (separate process)" echo "happn-bench echo --external failed: $(clean "$out") $(clean "$out.addr")"
  fi
  kill "$echo_pid" 2>/dev/null || true
  wait "$echo_pid" 2>/dev/null || true
  { echo "### echo (separate process)"; cat "$out"; } >>"$log"
  rm -f "$out" "$out.addr"
}
if [ "$ECHO" = 1 ]; then
  for mode in $MODES; do
    for _ in $(seq "$REPEAT"); do
      echo_in_process "$mode"
      echo_separate_process "$mode"
    done
  done
fi

# ── 5. summary ──────────────────────────────────────────────────────────────────────────────────
node "$here/summarize.js" "$jsonl" | tee "$results/$stamp.txt"
say ""
say "results: $jsonl (tables: $log, summary: $results/$stamp.txt)"
