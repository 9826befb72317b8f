#!/usr/bin/env node
'use strict';
/*
 * The summary table of one bench/compare.sh run: reads its .jsonl (one JSON line per happn-bench
 * or bench/real-client.js result, plus {"failed":true} lines for runs that failed and one
 * {"meta":true} line) and prints tables, one frame per write first (the headline), then batched,
 * the npm client, the device fleet and the echo ceilings: the key figure of each server and the
 * ratios happn-rs / happn-3, happn-rs / happn-2.21 and happn-rs / the floor server.
 *
 *   node bench/summarize.js bench/results/<timestamp>.jsonl
 */
const fs = require('fs');

const file = process.argv[2];
if (!file) {
  console.error('usage: node summarize.js RESULTS.jsonl');
  process.exit(2);
}
const lines = fs
  .readFileSync(file, 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('{'))
  .map((l) => {
    try {
      return JSON.parse(l);
    } catch (_) {
      return null;
    }
  })
  .filter(Boolean);

const SERVERS = ['happn-rs', 'happn-3', 'happn-2.21', 'floor'];
const meta = lines.find((l) => l.meta) || {};
const results = lines.filter((l) => !l.meta && !l.failed);
const failures = lines.filter((l) => l.failed);

// Results from before write modes existed were all batched.
const modeOf = (r) => r.write_mode || 'batched';
const isMode = (m) => (r) => modeOf(r) === m;

// A figure run several times (compare.sh REPEAT) is the run with the median ops/s (for a device
// fleet, whose rate is fixed, the median server CPU per request).
function median(runs) {
  if (runs.length < 2) return runs[0];
  const key = (r) => (r.scenario.startsWith('devices-') ? r.server_cpu_us_per_op : r.ops_per_s) || 0;
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
const find = (server, scenario, pred = () => true) =>
  median(results.filter((r) => r.server === server && r.scenario === scenario && pred(r)));
const failedRun = (server, scenario) => failures.filter((f) => f.server === server && f.scenario === scenario);

function fmt(x) {
  if (x == null || Number.isNaN(x)) return '—';
  if (typeof x === 'boolean') return x ? 'yes' : 'NO';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 10) return (Math.round(x * 10) / 10).toString();
  return (Math.round(x * 100) / 100).toString();
}

// Warnings that belong next to a figure: errors, missing deliveries, failed connections, a fleet
// whose offered rate was not held.
function flags(r) {
  const out = [];
  for (const [k, v] of Object.entries(r)) if (k.endsWith('errors') && v > 0) out.push(`${v} err`);
  if (r.scenario === 'fanout' && r.expected_deliveries > 0 && r.deliveries < 0.95 * r.expected_deliveries)
    out.push(`${Math.round((100 * r.deliveries) / r.expected_deliveries)}% delivered`);
  if (r.scenario === 'conns' && meta.conns && r.connections < meta.conns) out.push(`${r.connections}/${meta.conns} open`);
  if (r.scenario && r.scenario.startsWith('devices-') && r.held_offered_rate === false) out.push('rate not held');
  return out;
}

// Tables: a title, then rows (label, how to find the record, which field; `lower` marks
// lower-is-better figures).
const tables = [];
let rows = null;
function table(title) {
  rows = [];
  tables.push({ title, rows });
}
function row(label, scenario, field, opts = {}) {
  rows.push({ label, scenario, field, pred: opts.pred || (() => true), lower: !!opts.lower });
}
const present = new Set(results.map((r) => r.scenario).concat(failures.map((f) => f.scenario)));
const has = (scenario, pred) => results.some((r) => r.scenario === scenario && pred(r)) || failures.some((f) => f.scenario === scenario);

function requestRows(scenario, pred) {
  row(`${scenario} ops/s`, scenario, 'ops_per_s', { pred });
  row(`${scenario} ops per server CPU-s`, scenario, 'ops_per_cpu_s', { pred });
  row(`${scenario} server CPU µs per op (lower better)`, scenario, 'server_cpu_us_per_op', { pred, lower: true });
  row(`${scenario} p99 latency µs (lower better)`, scenario, 'p99_us', { pred, lower: true });
}

table(`ONE FRAME PER WRITE (the headline: every request in a write syscall of its own, as the npm client writes; ${meta.clients}×${meta.inflight})`);
for (const sc of ['set', 'get']) if (has(sc, isMode('frame'))) requestRows(sc, isMode('frame'));
if (present.has('fanout')) {
  const f = results.find((r) => r.scenario === 'fanout');
  const shape = f ? ` ${f.publishers}→${f.subscribers}` : '';
  row(`fanout${shape} deliveries/s`, 'fanout', 'deliveries_per_s');
  row(`fanout${shape} deliveries per CPU-s`, 'fanout', 'deliveries_per_cpu_s');
  row(`fanout${shape} delivery p99 µs (lower better)`, 'fanout', 'delivery_p99_us', { lower: true });
}
if (present.has('subs-scale')) {
  const ms = [...new Set(results.filter((r) => r.scenario === 'subs-scale').map((r) => r.wildcard_subscriptions))].sort((a, b) => a - b);
  for (const m of ms) {
    const pred = (r) => r.wildcard_subscriptions === m;
    row(`subs-scale M=${m} sets/s`, 'subs-scale', 'ops_per_s', { pred });
  }
  for (const m of ms.filter((m) => m > 0)) {
    const pred = (r) => r.wildcard_subscriptions === m;
    row(`subs-scale M=${m} subscribe s (lower better)`, 'subs-scale', 'subscribe_s', { pred, lower: true });
  }
}
if (present.has('conns')) row(`conns bytes/connection (lower better)`, 'conns', 'server_bytes_per_connection', { lower: true });
if (present.has('login')) {
  row('login password logins/s', 'login', 'password_ops_per_s');
  row('login token logins/s', 'login', 'token_ops_per_s');
  row('login password per CPU-s', 'login', 'password_ops_per_cpu_s');
  row('login token per CPU-s', 'login', 'token_ops_per_cpu_s');
}

if (['set', 'get'].some((sc) => has(sc, isMode('batched')))) {
  table(`BATCHED (labelled: the load tool feeds every ready frame and flushes once, up to ${meta.inflight} frames per write; no npm client does this)`);
  for (const sc of ['set', 'get']) if (has(sc, isMode('batched'))) requestRows(sc, isMode('batched'));
}

for (const op of ['set', 'get']) {
  const sc = `npm-${op}`;
  if (!present.has(sc)) continue;
  if (op === 'set' || !present.has('npm-set')) {
    const n = results.find((r) => r.scenario.startsWith('npm-'));
    table(`THE NPM CLIENT (happn@2.21.0 client as load: bench/real-client.js${n ? `, ${n.procs} processes × ${n.clients} × ${n.inflight} in flight` : ''})`);
  }
  row(`npm ${op} ops/s`, sc, 'ops_per_s');
  row(`npm ${op} ops per server CPU-s`, sc, 'ops_per_cpu_s');
  row(`npm ${op} server CPU µs per op (lower better)`, sc, 'server_cpu_us_per_op', { lower: true });
  row(`npm ${op} p99 latency µs (lower better)`, sc, 'p99_us', { lower: true });
}

const fleets = [];
for (const r of results.concat(failures)) {
  if (!r.scenario || !r.scenario.startsWith('devices-')) continue;
  const count = r.devices != null ? r.devices : r.point_devices;
  const interval = r.interval_ms != null ? r.interval_ms : r.point_interval_ms;
  if (count == null) continue;
  const key = `${r.scenario}|${count}|${interval}`;
  if (!fleets.some((f) => f.key === key)) fleets.push({ key, scenario: r.scenario, count, interval });
}
fleets.sort((a, b) => a.scenario.localeCompare(b.scenario) || a.count - b.count || b.interval - a.interval);
if (fleets.length) {
  table('DEVICE FLEET (open loop: N connections, each one request per interval, one frame per write)');
  for (const f of fleets) {
    const pred = (r) => (r.devices != null ? r.devices : r.point_devices) === f.count && (r.interval_ms != null ? r.interval_ms : r.point_interval_ms) === f.interval;
    const what = `${f.scenario.replace('devices-', '')} ${f.count} × 1/${f.interval} ms`;
    row(`${what}: offered/s`, f.scenario, 'offered_per_s', { pred });
    row(`${what}: achieved/s`, f.scenario, 'ops_per_s', { pred });
    row(`${what}: server CPU µs per req (lower better)`, f.scenario, 'server_cpu_us_per_op', { pred, lower: true });
    row(`${what}: p50 µs (lower better)`, f.scenario, 'p50_us', { pred, lower: true });
    row(`${what}: p99 µs (lower better)`, f.scenario, 'p99_us', { pred, lower: true });
    row(`${what}: p999 µs (lower better)`, f.scenario, 'p999_us', { pred, lower: true });
    row(`${what}: server RSS MB (lower better)`, f.scenario, 'server_rss_mb', { pred, lower: true });
  }
}
for (const r of results) if (r.server_rss_bytes != null) r.server_rss_mb = r.server_rss_bytes / 1048576;

function cell(server, rw) {
  const r = find(server, rw.scenario, rw.pred);
  if (!r) {
    const f = failedRun(server, rw.scenario).filter((x) => rw.pred(x));
    if (f.length) return { text: 'FAILED', value: null };
    return { text: 'not run', value: null };
  }
  const v = r[rw.field];
  if (v == null) return { text: '—', value: null };
  const fl = flags(r);
  return { text: fmt(v) + (fl.length ? ` (${fl.join(', ')})` : ''), value: v, flagged: fl.length > 0 };
}

function ratio(a, b) {
  if (a.value == null || b.value == null || !(b.value > 0) || !(a.value > 0)) return '—';
  const x = a.value / b.value;
  return (x >= 10 ? x.toFixed(1) : x.toFixed(2)) + '×' + (a.flagged || b.flagged ? ' (!)' : '');
}

const header = ['figure', ...SERVERS, 'rs / happn-3', 'rs / 2.21', 'rs / floor'];
const out = [];
out.push(
  `happn-rs ${meta.happn_rs || '?'} (git ${meta.git || '?'}; ${meta.happn_rs_args || ''}) vs happn-3 ${meta.happn_3 || '?'} (protocol ${meta.h3_protocol || '?'}) ` +
    `vs happn ${meta.happn_2_21 || '?'} vs the floor server (happn-bench floor-server: websocket framing + canned replies, no happn work) — node ${meta.node || '?'}, ${meta.cores || '?'} cores, ` +
    `${meta.duration_s}s measured + ${meta.warmup_s}s warm-up per run, ${meta.clients}×${meta.inflight} load, ${meta.conns} conns` +
    (meta.repeat > 1 ? `; set, get, npm and echo: median of ${meta.repeat} runs` : '') +
    (meta.loadavg ? `; load average at start ${meta.loadavg}` : '')
);
for (const t of tables) {
  if (!t.rows.length) continue;
  const body = [header];
  for (const rw of t.rows) {
    const cells = SERVERS.map((s) => cell(s, rw));
    body.push([rw.label, ...cells.map((c) => c.text), ratio(cells[0], cells[1]), ratio(cells[0], cells[2]), ratio(cells[0], cells[3])]);
  }
  const widths = header.map((_, i) => Math.max(...body.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  out.push('');
  out.push(t.title);
  out.push(line(header));
  out.push(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const r of body.slice(1)) out.push(line(r));
}

// The transport ceilings, in each write mode: the same load shape against a raw websocket echo
// inside happn-bench, and against the same echo server run as a process of its own (which pays
// the cross-process wake-ups any real server pays).
const extra = [];
for (const mode of ['frame', 'batched']) {
  const rsSet = find('happn-rs', 'set', isMode(mode));
  for (const [label, what] of [
    ['echo (in-process)', 'in-process websocket echo'],
    ['echo (separate process)', 'the same echo server as a separate process'],
  ]) {
    const e = find(label, 'echo', isMode(mode));
    if (!e) continue;
    const cpu = e.ops_per_cpu_s ? `, ${fmt(e.ops_per_cpu_s)} per echo-server CPU second (${fmt(e.server_cpu_us_per_op)} µs per echo)` : '';
    extra.push(`echo, ${mode === 'frame' ? 'one frame per write' : 'batched'} (${what}): ${fmt(e.ops_per_s)} ops/s${cpu}`);
    if (rsSet && e.ops_per_s > 0) extra.push(`  happn-rs set (${mode}) throughput = ${((100 * rsSet.ops_per_s) / e.ops_per_s).toFixed(1)}% of it`);
  }
}
out.push('');
for (const e of extra) out.push(e);
out.push(
  'ratios are happn-rs ÷ other: above 1 is better for happn-rs, except "lower better" rows (CPU per op, latency, memory, subscribe time) where below 1 is; ' +
    '"rs / floor" on a CPU-per-op row is how many times the bare transport cost happn-rs spends per request.'
);
out.push('(!) = a figure in the ratio carries errors, missing deliveries or a fleet rate not held; "not run" = not part of this run.');
if (failures.length) {
  out.push('');
  out.push('FAILED runs:');
  for (const f of failures) out.push(`  ${f.server} ${f.scenario}: ${f.reason}`);
}
const flagged = results.filter((r) => flags(r).length);
if (flagged.length) {
  out.push('');
  out.push('Runs with errors:');
  for (const r of flagged) out.push(`  ${r.server} ${r.scenario}${r.wildcard_subscriptions != null ? ' M=' + r.wildcard_subscriptions : ''}${r.devices != null ? ' ' + r.devices + ' devices' : ''}: ${flags(r).join(', ')}`);
}
console.log(out.join('\n'));
