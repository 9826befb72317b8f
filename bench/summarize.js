#!/usr/bin/env node
'use strict';
/*
 * The summary table of one bench/compare.sh run: reads its .jsonl (one JSON line per happn-bench
 * result, plus {"failed":true} lines for runs that failed and one {"meta":true} line) and prints,
 * per scenario, the key figure for each server and the ratios happn-rs / happn-3 and
 * happn-rs / happn-2.21.
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

const SERVERS = ['happn-rs', 'happn-3', 'happn-2.21'];
const meta = lines.find((l) => l.meta) || {};
const results = lines.filter((l) => !l.meta && !l.failed);
const failures = lines.filter((l) => l.failed);

// A figure run several times (compare.sh REPEAT) is the run with the median ops/s.
function median(runs) {
  if (runs.length < 2) return runs[0];
  const sorted = [...runs].sort((a, b) => (a.ops_per_s || 0) - (b.ops_per_s || 0));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
const find = (server, scenario, pred = () => true) =>
  median(results.filter((r) => r.server === server && r.scenario === scenario && pred(r)));
const failedRun = (server, scenario) => failures.filter((f) => f.server === server && f.scenario === scenario);

function fmt(x) {
  if (x == null || Number.isNaN(x)) return '—';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  return (Math.round(x * 10) / 10).toString();
}

// Warnings that belong next to a figure: errors, missing deliveries, failed connections.
function flags(r) {
  const out = [];
  for (const [k, v] of Object.entries(r)) if (k.endsWith('errors') && v > 0) out.push(`${v} err`);
  if (r.scenario === 'fanout' && r.expected_deliveries > 0 && r.deliveries < 0.95 * r.expected_deliveries)
    out.push(`${Math.round((100 * r.deliveries) / r.expected_deliveries)}% delivered`);
  if (r.scenario === 'conns' && meta.conns && r.connections < meta.conns) out.push(`${r.connections}/${meta.conns} open`);
  return out;
}

// One row: label, how to find the record, which field; `lower` marks lower-is-better figures.
const rows = [];
function row(label, scenario, field, opts = {}) {
  rows.push({ label, scenario, field, pred: opts.pred || (() => true), lower: !!opts.lower });
}

const present = new Set(results.map((r) => r.scenario).concat(failures.map((f) => f.scenario)));
if (present.has('set')) {
  row('set ops/s', 'set', 'ops_per_s');
  row('set ops per server CPU-s', 'set', 'ops_per_cpu_s');
  row('set p99 latency µs (lower better)', 'set', 'p99_us', { lower: true });
}
if (present.has('get')) {
  row('get ops/s', 'get', 'ops_per_s');
  row('get ops per server CPU-s', 'get', 'ops_per_cpu_s');
  row('get p99 latency µs (lower better)', 'get', 'p99_us', { lower: true });
}
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

function cell(server, rw) {
  const r = find(server, rw.scenario, rw.pred);
  if (!r) {
    const f = failedRun(server, rw.scenario);
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

const header = ['scenario / figure', ...SERVERS, 'rs / happn-3', 'rs / 2.21'];
const table = [header];
for (const rw of rows) {
  const cells = SERVERS.map((s) => cell(s, rw));
  table.push([rw.label, ...cells.map((c) => c.text), ratio(cells[0], cells[1]), ratio(cells[0], cells[2])]);
}

// The transport ceiling: the same load shape against a raw websocket echo inside happn-bench
// (the target's reference), and against the same echo server run as a process of its own, which
// pays the cross-process wake-ups any real server pays.
const echo = find('echo (in-process)', 'echo');
const echoApart = find('echo (separate process)', 'echo');
const rsSet = find('happn-rs', 'set');
const extra = [];
for (const [e, what] of [
  [echo, 'in-process websocket echo'],
  [echoApart, 'the same echo server as a separate process'],
]) {
  if (!e) continue;
  const cpu = e.ops_per_cpu_s ? `, ${fmt(e.ops_per_cpu_s)} per echo-server CPU second` : '';
  extra.push(`echo (${what}, same load shape): ${fmt(e.ops_per_s)} ops/s${cpu}`);
  if (rsSet && e.ops_per_s > 0)
    extra.push(`  happn-rs set throughput = ${((100 * rsSet.ops_per_s) / e.ops_per_s).toFixed(1)}% of it`);
}

const widths = header.map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
const line = (r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');

const out = [];
out.push(
  `happn-rs ${meta.happn_rs || '?'} (git ${meta.git || '?'}; ${meta.happn_rs_args || ''}) vs happn-3 ${meta.happn_3 || '?'} (protocol ${meta.h3_protocol || '?'}) ` +
    `vs happn ${meta.happn_2_21 || '?'} — node ${meta.node || '?'}, ${meta.cores || '?'} cores, ` +
    `${meta.duration_s}s measured + ${meta.warmup_s}s warm-up per run, ${meta.clients}×${meta.inflight} load, ${meta.conns} conns` +
    (meta.repeat > 1 ? `; set, get and echo: median of ${meta.repeat} runs` : '')
);
out.push('');
out.push(line(header));
out.push(widths.map((w) => '─'.repeat(w)).join('  '));
for (const r of table.slice(1)) out.push(line(r));
out.push('');
for (const e of extra) out.push(e);
out.push(
  'ratios are happn-rs ÷ other: above 1 is better for happn-rs, except "lower better" rows (latency, memory, subscribe time) where below 1 is.'
);
out.push('(!) = a figure in the ratio carries errors or missing deliveries; "not run" = not part of this run.');
if (failures.length) {
  out.push('');
  out.push('FAILED runs:');
  for (const f of failures) out.push(`  ${f.server} ${f.scenario}: ${f.reason}`);
}
const flagged = results.filter((r) => flags(r).length);
if (flagged.length) {
  out.push('');
  out.push('Runs with errors:');
  for (const r of flagged) out.push(`  ${r.server} ${r.scenario}${r.wildcard_subscriptions != null ? ' M=' + r.wildcard_subscriptions : ''}: ${flags(r).join(', ')}`);
}
console.log(out.join('\n'));
