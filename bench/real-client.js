#!/usr/bin/env node
'use strict';
/*
 * The real npm happn@2.21.0 client as load: what a happn user's own processes cost the server.
 *
 *   node bench/real-client.js --port N --pid SERVER_PID [--label happn-rs] [--op set|get]
 *        [--procs 4] [--clients 1] [--inflight 32] [--duration 5] [--warmup 1] [--keys 1000]
 *        [--payload 64] [--host 127.0.0.1]
 *
 * Forks `procs` worker processes (one Node.js process drives ~35-40k requests/s at most, so one
 * would measure the client), each opening `clients` happn clients (`happn.client.create`, secure,
 * _ADMIN / happn) and keeping `inflight` requests outstanding on each: `set` of a 64-byte document
 * on /bench/npm/<key>, or `get` of documents set before. The parent counts the replies that
 * arrive inside the measured window and reads the server's CPU from /proc/<pid>/task/*\/schedstat
 * over the same window; it prints one JSON line in happn-bench's format
 * (`scenario: "npm-set" | "npm-get"`, `write_mode: "npm client"`), so bench/summarize.js can put it
 * beside the other figures. Every wait is bounded; a worker that fails makes the run fail.
 */
const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');

function args(argv) {
  const o = {
    host: '127.0.0.1', port: 55000, pid: null, label: 'server', op: 'set', procs: 4, clients: 1,
    inflight: 32, duration: 5, warmup: 1, keys: 1000, payload: 64, worker: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (k === 'worker') { o.worker = true; continue; }
    if (!(k in o)) { console.error('real-client: unknown option ' + argv[i]); process.exit(2); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' || o[k] === null ? Number(v) : v;
  }
  return o;
}
const opt = args(process.argv.slice(2));

// bench/'s own happn@2.21.0 (compare.sh installs it), else the compat suite's.
const HAPPN_DIR = [path.join(__dirname, 'node_modules', 'happn'), path.join(__dirname, '..', 'tests', 'compat', 'node_modules', 'happn')]
  .find((dir) => fs.existsSync(path.join(dir, 'package.json')));
function loadHappn() {
  if (!HAPPN_DIR) throw new Error('happn@2.21.0 not found: run npm ci in bench/ (or tests/compat/)');
  return require(HAPPN_DIR);
}

// Latency histogram: 1 µs .. ~67 s in buckets of 1/16 of a power of two (bounded, mergeable).
const SUB = 16;
const BUCKETS = 26 * SUB;
function bucket(us) {
  if (us < 1) us = 1;
  const e = Math.floor(Math.log2(us));
  const f = Math.floor((us / 2 ** e - 1) * SUB);
  return Math.min(BUCKETS - 1, e * SUB + f);
}
const bucketValue = (b) => Math.round(2 ** Math.floor(b / SUB) * (1 + (b % SUB + 1) / SUB));
function quantile(h, q) {
  const total = h.reduce((a, b) => a + b, 0);
  if (!total) return null;
  let seen = 0;
  for (let b = 0; b < h.length; b++) {
    seen += h[b];
    if (seen >= q * total) return bucketValue(b);
  }
  return bucketValue(h.length - 1);
}

// ── worker ────────────────────────────────────────────────────────────────────────────────────
async function worker() {
  const happn = loadHappn();
  const body = { v: 'x'.repeat(opt.payload) };
  const connect = () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('happn.client.create timed out')), 30000);
    happn.client.create({
      config: { host: opt.host, port: opt.port, username: '_ADMIN', password: 'happn' },
      utils: { logLevel: 'error' },
    }, (e, c) => { clearTimeout(t); e ? reject(e) : resolve(c); });
  });
  const clients = [];
  for (let i = 0; i < opt.clients; i++) clients.push(await connect());
  let counting = false;
  let running = true;
  let ops = 0;
  let errors = 0;
  const hist = new Array(BUCKETS).fill(0);
  let seq = Math.floor(Math.random() * opt.keys);
  const one = (c) => {
    if (!running) return;
    const key = seq++ % opt.keys;
    const t0 = process.hrtime.bigint();
    const done = (e) => {
      if (counting) {
        if (e) errors++;
        else {
          ops++;
          hist[bucket(Number(process.hrtime.bigint() - t0) / 1000)]++;
        }
      }
      one(c);
    };
    if (opt.op === 'get') c.get('/bench/npm/' + key, {}, done);
    else c.set('/bench/npm/' + key, body, {}, done);
  };
  process.on('message', (m) => {
    if (m === 'start') {
      counting = true;
      for (const c of clients) for (let i = 0; i < opt.inflight; i++) one(c);
    } else if (m === 'measure') {
      ops = 0; errors = 0; hist.fill(0);
    } else if (m === 'stop') {
      counting = false;
      running = false;
      process.send({ ops, errors, hist }, () => {
        for (const c of clients) try { c.disconnect(() => {}); } catch (_) {}
        setTimeout(() => process.exit(0), 200).unref();
      });
    }
  });
  process.send('ready');
}

// ── parent ────────────────────────────────────────────────────────────────────────────────────
function threadCpuNs(pid) {
  const out = new Map();
  let tids;
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch (_) { return null; }
  for (const tid of tids) {
    try { out.set(tid, Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])); } catch (_) {}
  }
  return out;
}
function cpuSince(pid, before) {
  const after = threadCpuNs(pid);
  if (!after || !before) return null;
  let ns = 0;
  for (const [tid, v] of after) ns += Math.max(0, v - (before.get(tid) || 0));
  return ns / 1e9;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function preset() {
  // A get run reads documents that exist: one client sets every key first.
  const happn = loadHappn();
  const c = await new Promise((resolve, reject) => happn.client.create({
    config: { host: opt.host, port: opt.port, username: '_ADMIN', password: 'happn' }, utils: { logLevel: 'error' },
  }, (e, c) => (e ? reject(e) : resolve(c))));
  const body = { v: 'x'.repeat(opt.payload) };
  for (let k = 0; k < opt.keys; k++) await new Promise((res, rej) => c.set('/bench/npm/' + k, body, {}, (e) => (e ? rej(e) : res())));
  await new Promise((res) => c.disconnect(() => res()));
}

async function parent() {
  if (opt.op === 'get') await preset();
  const workers = [];
  const ready = [];
  for (let i = 0; i < opt.procs; i++) {
    const w = fork(__filename, [...process.argv.slice(2), '--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    workers.push(w);
    ready.push(new Promise((resolve, reject) => {
      w.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error('worker: ' + m))));
      w.once('exit', (code) => reject(new Error('worker exited with ' + code + ' before it was ready')));
    }));
  }
  const fail = (e) => {
    for (const w of workers) w.kill();
    console.error('real-client: ' + (e.stack || e));
    process.exit(1);
  };
  const bound = (p, ms, what) => Promise.race([p, sleep(ms).then(() => { throw new Error(what + ' timed out'); })]);
  await bound(Promise.all(ready), 60000, 'connecting the clients').catch(fail);
  for (const w of workers) w.removeAllListeners('exit');
  for (const w of workers) w.send('start');
  await sleep(opt.warmup * 1000);
  for (const w of workers) w.send('measure');
  const before = opt.pid ? threadCpuNs(opt.pid) : null;
  await sleep(opt.duration * 1000);
  const cpu = opt.pid ? cpuSince(opt.pid, before) : null;
  const results = await bound(Promise.all(workers.map((w) => new Promise((resolve) => {
    w.once('message', resolve);
    w.send('stop');
  }))), 30000, 'collecting the results').catch(fail);
  let ops = 0;
  let errors = 0;
  const hist = new Array(BUCKETS).fill(0);
  for (const r of results) {
    ops += r.ops;
    errors += r.errors;
    r.hist.forEach((n, b) => { hist[b] += n; });
  }
  const r3 = (x) => Math.round(x * 1000) / 1000;
  const out = {
    scenario: 'npm-' + opt.op, server: opt.label, write_mode: 'npm client', client: 'happn@' + (HAPPN_DIR ? require(path.join(HAPPN_DIR, 'package.json')).version : '?'),
    procs: opt.procs, clients: opt.clients, inflight: opt.inflight, keys: opt.keys, payload_bytes: opt.payload,
    ops, ops_per_s: Math.round((ops / opt.duration) * 10) / 10, errors,
    p50_us: quantile(hist, 0.5), p99_us: quantile(hist, 0.99), p999_us: quantile(hist, 0.999),
  };
  if (cpu != null) {
    out.server_cpu_s = r3(cpu);
    if (cpu > 0) out.ops_per_cpu_s = Math.round((ops / cpu) * 10) / 10;
    if (ops > 0) out.server_cpu_us_per_op = r3((cpu * 1e6) / ops);
  }
  console.log(`── npm-${opt.op} against ${opt.label} (npm happn client, ${opt.procs} processes × ${opt.clients} clients × ${opt.inflight} in flight)`);
  console.log(JSON.stringify(out));
  await sleep(300);
  process.exit(errors > 0 && ops === 0 ? 1 : 0);
}

(opt.worker ? worker() : parent()).catch((e) => {
  console.error('real-client: ' + (e.stack || e));
  process.exit(1);
});
