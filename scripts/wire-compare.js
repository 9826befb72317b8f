#!/usr/bin/env node
'use strict';
// Compare two normalised wire traces (output of record.js --normalize) the way the protocol
// defines order: frames are ordered per connection, not across connections. Interleaving between
// different sockets (and the harness's own log lines) depends on scheduling in both servers, so
// each connection's frames are diffed as a sequence and every other line as a multiset.
//
//   node scripts/wire-compare.js reference.txt ours.txt
//
// Prints the differences, grouped by scenario and connection ("-" reference only, "+" ours only).
// Values that are random on every run in either server are masked first: the payload-encryption
// session `secret`, and ciphertexts (kept as their length, which still shows the plaintext size).
const fs = require('fs');

function mask(line) {
  return line
    .replace(/"secret":"[^"]*"/g, '"secret":"<secret>"')
    .replace(/"encrypted":"([0-9a-f]*)"/g, (_, hex) => '"encrypted":"<hex:' + hex.length + '>"')
    .replace(/"encrypted":\{"type":"Buffer","data":\[([0-9,]*)\]\}/g, (_, b) => '"encrypted":"<buffer:' + (b ? b.split(',').length : 0) + '>"');
}

function parse(file) {
  const scenarios = new Map();
  let cur = null;
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!raw) continue;
    const line = mask(raw);
    if (line.startsWith('=== ')) {
      cur = { conns: new Map(), other: [] };
      scenarios.set(line.slice(4), cur);
      continue;
    }
    if (!cur) continue;
    const m = /^(c\d+) /.exec(line);
    if (m) {
      if (!cur.conns.has(m[1])) cur.conns.set(m[1], []);
      cur.conns.get(m[1]).push(line);
    } else {
      cur.other.push(line);
    }
  }
  return scenarios;
}

// Longest-common-subsequence diff of two short line arrays.
function diff(a, b) {
  const n = a.length, m = b.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { i++; j++; } else if (j < m && (i === n || dp[i][j + 1] >= dp[i + 1][j])) out.push('+ ' + b[j++]); else out.push('- ' + a[i++]);
  }
  return out;
}

function multisetDiff(a, b) {
  const count = new Map();
  for (const x of a) count.set(x, (count.get(x) || 0) + 1);
  for (const x of b) count.set(x, (count.get(x) || 0) - 1);
  const out = [];
  for (const [x, c] of [...count.entries()].sort()) {
    for (let k = 0; k < Math.abs(c); k++) out.push((c > 0 ? '- ' : '+ ') + x);
  }
  return out;
}

const [ref, ours] = process.argv.slice(2).map(parse);
const lines = [];
for (const name of new Set([...ref.keys(), ...ours.keys()])) {
  const r = ref.get(name) || { conns: new Map(), other: [] };
  const o = ours.get(name) || { conns: new Map(), other: [] };
  for (const c of new Set([...r.conns.keys(), ...o.conns.keys()])) {
    const d = diff(r.conns.get(c) || [], o.conns.get(c) || []);
    if (d.length) lines.push('=== ' + name + ' / ' + c, ...d);
  }
  const d = multisetDiff(r.other, o.other);
  if (d.length) lines.push('=== ' + name + ' / harness', ...d);
}
process.stdout.write(lines.join('\n') + (lines.length ? '\n' : ''));
