'use strict';
/*
 * Shared harness for the happn-rs compatibility suite.
 *
 *  - startServer(opts)      spawn the happn-rs binary on a free port, wait until it is ready
 *  - connect(srv, opts)     the REAL happn@2.21.0 node client (happn.client.create), promisified
 *  - set/get/remove/...     promisified client calls with a harness timeout
 *  - RawSocket              hand-written frames over the `ws` module happn itself uses (ws@1.1.5)
 *  - httpGet, rawHandshake  plain HTTP / raw TCP helpers
 *  - shape matcher          expect(actual, template) with wildcards for ids and timestamps
 *
 * Environment:
 *  HAPPN_RS_BIN          path of the server binary (default ../../../target/release/happn-rs)
 *  HAPPN_TEST_LOG_LEVEL  log level of the happn client logger (default 'off')
 *  HAPPN_TEST_VERBOSE=1  echo server stdout/stderr to the test output
 */

// node --test runs every .js file below test/ as a test file; this one only exports helpers.
if (require.main === module) process.exit(0);

const path = require('path');
const fs = require('fs');
const os = require('os');
const net = require('net');
const http = require('http');
const crypto = require('crypto');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const happn = require('happn');
const WS = require('ws');

const BIN = process.env.HAPPN_RS_BIN || path.resolve(__dirname, '../../../target/release/happn-rs');
const LOG_LEVEL = process.env.HAPPN_TEST_LOG_LEVEL || 'off';
const VERBOSE = !!process.env.HAPPN_TEST_VERBOSE;
const CALL_TIMEOUT = 5000;

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

let uidCounter = 0;
/** short unique token for building test paths */
function uid(prefix) {
  uidCounter++;
  return (prefix || 'u') + uidCounter + crypto.randomBytes(3).toString('hex');
}

function withTimeout(promise, ms, label) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('harness timeout after ' + ms + 'ms: ' + label)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// server process
// ---------------------------------------------------------------------------------------------

const liveServers = new Set();
process.on('exit', () => {
  for (const s of liveServers) {
    try { s.proc.kill('SIGKILL'); } catch (e) { /* gone */ }
  }
});

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function portOpen(port, host) {
  return new Promise(resolve => {
    const s = net.connect({ port, host: host || '127.0.0.1' });
    const done = ok => { s.removeAllListeners(); s.destroy(); resolve(ok); };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(500, () => done(false));
  });
}

function tmpFile(name, content) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-compat-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

function binaryMissingError() {
  return new Error('happn-rs binary not found at ' + BIN +
    ' (build it with `cargo build --release` or point HAPPN_RS_BIN at it)');
}

class ServerHandle {
  constructor(proc, port, opts) {
    this.proc = proc;
    this.port = port;
    this.host = '127.0.0.1';
    this.opts = opts;
    this.secure = !!(opts.secure || (opts.config && opts.config.secure) || (opts.configFile && opts.configFile.secure));
    this.stdout = '';
    this.stderr = '';
    this.exitInfo = null;
    this.exited = new Promise(resolve => {
      proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        liveServers.delete(this);
        resolve(this.exitInfo);
      });
    });
    proc.stdout.on('data', d => { this.stdout += d; if (VERBOSE) process.stderr.write('[srv:' + port + '] ' + d); });
    proc.stderr.on('data', d => { this.stderr += d; if (VERBOSE) process.stderr.write('[srv:' + port + '!] ' + d); });
    proc.on('error', e => { this.stderr += '\n[spawn error] ' + e.message; });
  }
  get output() { return this.stdout + this.stderr; }
  get running() { return this.exitInfo === null; }
  /** send a signal and wait for the process to exit (SIGKILL after `timeout`) */
  async stop(signal, timeout) {
    if (!this.running) return this.exitInfo;
    try { this.proc.kill(signal || 'SIGTERM'); } catch (e) { /* gone */ }
    const t = setTimeout(() => { try { this.proc.kill('SIGKILL'); } catch (e) { /* gone */ } }, timeout || 6000);
    const info = await this.exited;
    clearTimeout(t);
    return info;
  }
  kill() { return this.stop('SIGKILL', 1000); }
}

/**
 * Start the server under test.
 *   opts.config      object -> HAPPN_SERVER_CONFIG (JSON merged over the config)
 *   opts.configFile  object -> written to a temp file and passed as --config FILE
 *   opts.secure      true   -> --secure flag
 *   opts.port        fixed port (default: a free one)
 *   opts.args        extra CLI arguments
 *   opts.dataDir     durable store in this directory (default: --memory)
 *   opts.cwd         working directory of the server process
 *   opts.durableDefault  pass neither --memory nor --data-dir (the binary's own default)
 *   opts.env         extra environment
 */
async function startServer(opts) {
  opts = opts || {};
  if (!fs.existsSync(BIN)) throw binaryMissingError();
  const port = opts.port || await freePort();
  const args = ['--port', String(port), '--host', '127.0.0.1'];
  if (opts.secure) args.push('--secure');
  // In memory unless a test asks for a data directory (the binary is durable by default).
  if (opts.dataDir) args.push('--data-dir', opts.dataDir);
  else if (!opts.durableDefault) args.push('--memory');
  if (opts.configFile) args.push('--config', tmpFile('config.json', JSON.stringify(opts.configFile)));
  if (opts.args) args.push(...opts.args);
  const env = Object.assign({}, process.env, opts.env || {});
  if (opts.config) env.HAPPN_SERVER_CONFIG = JSON.stringify(opts.config);
  else delete env.HAPPN_SERVER_CONFIG;
  const proc = spawn(BIN, args, { env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const srv = new ServerHandle(proc, port, opts);
  liveServers.add(srv);

  const deadline = Date.now() + (opts.startTimeout || 15000);
  for (;;) {
    if (!srv.running) {
      throw new Error('server exited before becoming ready (' + JSON.stringify(srv.exitInfo) + '), args ' +
        JSON.stringify(args) + ', output:\n' + srv.output);
    }
    if (/listening on/.test(srv.output) && await portOpen(port)) break;
    if (await portOpen(port)) { await sleep(50); break; }
    if (Date.now() > deadline) {
      await srv.kill();
      throw new Error('server not ready within timeout, args ' + JSON.stringify(args) + ', output:\n' + srv.output);
    }
    await sleep(50);
  }
  return srv;
}

/** run the binary to completion (for CLI tests); opts.stdin is written to its standard input */
function runCli(args, opts) {
  opts = opts || {};
  if (!fs.existsSync(BIN)) return Promise.reject(binaryMissingError());
  const env = Object.assign({}, process.env, opts.env || {});
  if (!opts.env || !('HAPPN_SERVER_CONFIG' in opts.env)) delete env.HAPPN_SERVER_CONFIG;
  return new Promise(resolve => {
    const proc = spawn(BIN, args, { env, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (opts.stdin !== undefined) proc.stdin.end(opts.stdin);
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', d => { stdout += d; });
    proc.stderr.on('data', d => { stderr += d; });
    let timedOut = false;
    const t = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); }, opts.timeout || 8000);
    proc.on('exit', (code, signal) => {
      clearTimeout(t);
      // let the pipes drain
      setTimeout(() => resolve({ code, signal, stdout, stderr, output: stdout + stderr, timedOut }), 50);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// real happn client
// ---------------------------------------------------------------------------------------------

const liveClients = new Set();

/**
 * happn.client.create against a server handle (or port).
 *   opts.username/password  default _ADMIN/happn when the server is secure, nothing otherwise
 *   opts.anonymous          send no credentials even on a secure server
 *   opts.pubsub             config.pubsub.options (ping, pong, reconnect ...)
 *   opts.info, opts.token
 *   opts.protocol           'https' for a TLS server (with opts.allowSelfSignedCerts)
 */
function connect(srv, opts) {
  opts = opts || {};
  const port = typeof srv === 'number' ? srv : srv.port;
  const secure = typeof srv === 'object' && srv.secure;
  const config = { host: '127.0.0.1', port };
  if (!opts.anonymous) {
    if (opts.username !== undefined) config.username = opts.username;
    else if (secure && !opts.token) config.username = '_ADMIN';
    if (opts.password !== undefined) config.password = opts.password;
    else if (secure && !opts.token) config.password = 'happn';
  }
  if (opts.token) config.token = opts.token;
  if (opts.protocol) config.protocol = opts.protocol;
  if (opts.allowSelfSignedCerts) config.allowSelfSignedCerts = true;
  if (opts.pubsub) config.pubsub = { options: Object.assign({}, opts.pubsub) };
  const options = { config, utils: { logLevel: LOG_LEVEL }, connectTimeout: opts.connectTimeout || 8000 };
  if (opts.info) options.info = opts.info;
  const p = new Promise((resolve, reject) => {
    happn.client.create(options, (e, client) => {
      if (e) return reject(e);
      liveClients.add(client);
      resolve(client);
    });
  });
  return withTimeout(p, (opts.connectTimeout || 8000) + 2000, 'happn.client.create on port ' + port);
}

/**
 * happn.client.create with exactly this client config (host/port filled in; no default
 * credentials), e.g. {username, keyPair} for key-pair logins. Destroyed by cleanup().
 */
function createClient(srv, config) {
  const options = { config: Object.assign({ host: '127.0.0.1', port: srv.port }, config), utils: { logLevel: LOG_LEVEL } };
  return withTimeout(new Promise((resolve, reject) => {
    happn.client.create(options, (e, c) => {
      if (e) return reject(e);
      liveClients.add(c);
      resolve(c);
    });
  }), 10000, 'happn.client.create');
}

/** invoke fn(callback) and turn the node-style callback into a promise with a harness timeout */
function cbCall(label, fn, ms) {
  return withTimeout(new Promise((resolve, reject) => {
    fn(function (e, result) {
      if (e) return reject(e);
      if (arguments.length > 2) return resolve(Array.prototype.slice.call(arguments, 1));
      resolve(result);
    });
  }), ms || CALL_TIMEOUT, label);
}

function set(c, p, data, options) {
  return cbCall('set ' + p, cb => (options === undefined ? c.set(p, data, cb) : c.set(p, data, options, cb)));
}
function get(c, p, options) {
  return cbCall('get ' + p, cb => (options === undefined ? c.get(p, cb) : c.get(p, options, cb)));
}
function remove(c, p, options) {
  return cbCall('remove ' + p, cb => (options === undefined ? c.remove(p, cb) : c.remove(p, options, cb)));
}
function getPaths(c, p) { return cbCall('getPaths ' + p, cb => c.getPaths(p, cb)); }
function setSibling(c, p, data) { return cbCall('setSibling ' + p, cb => c.setSibling(p, data, cb)); }
/** subscribe; resolves {id, response} */
async function on(c, p, params, handler) {
  const r = await cbCall('on ' + p, cb => c.on(p, params || {}, handler, cb));
  return Array.isArray(r) ? { id: r[0], response: r[1] } : { id: r, response: undefined };
}
function off(c, id) { return cbCall('off ' + id, cb => c.off(id, cb)); }
function offPath(c, p) { return cbCall('offPath ' + p, cb => c.offPath(p, cb)); }
function offAll(c) { return cbCall('offAll', cb => c.offAll(cb)); }
function disconnect(c) {
  liveClients.delete(c);
  return cbCall('disconnect', cb => c.disconnect(cb), 5000);
}

/** await a promise that must reject; returns the error */
async function expectError(promise, label) {
  let result;
  try {
    result = await promise;
  } catch (e) {
    return e;
  }
  assert.fail((label || 'call') + ' was expected to fail but succeeded with ' + safeJson(result));
}

/** event collector for client.on handlers */
function collector() {
  const items = [];
  const waiters = [];
  const handler = (data, meta) => {
    items.push({ data, meta });
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (items.length >= waiters[i].n) { waiters[i].resolve(); waiters.splice(i, 1); }
    }
  };
  return {
    handler,
    items,
    async wait(n, ms) {
      if (items.length >= n) return items;
      await withTimeout(new Promise(resolve => waiters.push({ n, resolve })), ms || 3000,
        'waiting for ' + n + ' event(s), got ' + items.length + ': ' + safeJson(items));
      return items;
    },
  };
}

function destroyClient(c) {
  liveClients.delete(c);
  return new Promise(resolve => {
    const t = setTimeout(resolve, 3000);
    const done = () => { clearTimeout(t); resolve(); };
    try {
      if (c.pubsub && c.initialized && c.pubsub.readyState === 3) {
        return c.disconnect(() => done());
      }
      if (c.pubsub) {
        c.pubsub.once('destroy', done);
        c.pubsub.destroy();
        c.initialized = false;
        return;
      }
    } catch (e) { /* ignore */ }
    done();
  });
}

/**
 * Record the frames a real happn client sends and receives, as they cross its websocket
 * (Primus `incoming::data` / `outgoing::data`, i.e. the raw text, parsed here so that the client's
 * own handlers cannot have mutated it). Survives reconnects (the Primus instance is reused).
 *   spy.in / spy.out           [{raw, json, t}]
 *   spy.waitIn(pred, ms, label) / spy.waitOut(...)   first frame (already seen or future) with pred(json)
 *   spy.mark()                  index pair to slice frames seen after this point
 */
function spyClient(c) {
  const spy = { in: [], out: [], waiters: [] };
  const push = (dir, raw) => {
    const text = typeof raw === 'string' ? raw : String(raw);
    let json;
    try { json = JSON.parse(text); } catch (e) { json = undefined; }
    const f = { dir, raw: text, json, t: Date.now() };
    spy[dir].push(f);
    for (let i = spy.waiters.length - 1; i >= 0; i--) {
      const w = spy.waiters[i];
      if (w.dir === dir && w.from <= spy[dir].length - 1 && w.pred(json)) { spy.waiters.splice(i, 1); w.resolve(f); }
    }
  };
  c.pubsub.on('incoming::data', raw => push('in', raw));
  c.pubsub.on('outgoing::data', raw => push('out', raw));
  const wait = dir => (pred, ms, label, from) => {
    from = from || 0;
    const found = spy[dir].slice(from).find(f => pred(f.json));
    if (found) return Promise.resolve(found);
    return withTimeout(new Promise(resolve => spy.waiters.push({ dir, pred, resolve, from })), ms || 3000,
      'client spy: waiting for ' + dir + ' frame ' + (label || '') + '; ' + dir + ': ' + spy.dump(dir));
  };
  spy.waitIn = wait('in');
  spy.waitOut = wait('out');
  spy.mark = () => ({ in: spy.in.length, out: spy.out.length });
  spy.since = (mark, dir) => spy[dir || 'in'].slice(mark[dir || 'in']);
  /** data frames (events) received after mark, optionally only those on `channel` */
  spy.events = (mark, channel) => spy.since(mark || { in: 0 }, 'in')
    .filter(f => f.json && f.json._meta && f.json._meta.type === 'data' && (channel === undefined || f.json._meta.channel === channel));
  spy.dump = dir => spy[dir || 'in'].slice(-30).map(f => f.raw.slice(0, 300)).join(' | ');
  return spy;
}

/** record a happn client's lifecycle events (onEvent) and system messages (onSystemMessage) */
function watchClient(c) {
  const log = [];
  const waiters = [];
  const seen = kind => log.filter(l => l.kind === kind);
  const push = (kind, data) => {
    log.push({ kind, data, t: Date.now() });
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w.kind === kind && seen(kind).length >= w.n) { waiters.splice(i, 1); w.resolve(data); }
    }
  };
  c.onSystemMessage((eventKey, data) => { push('system:' + eventKey, data); return true; });
  ['connection-ended', 'reconnect-scheduled', 'reconnect-successful', 'reconnect', 'reconnect-timeout']
    .forEach(ev => c.onEvent(ev, function () { push(ev, this); }));
  return {
    log,
    kinds: () => log.map(l => l.kind),
    count: kind => seen(kind).length,
    /** resolves when `kind` has been seen at least `n` times (default 1) */
    wait(kind, ms, n) {
      n = n || 1;
      if (seen(kind).length >= n) return Promise.resolve(seen(kind)[n - 1].data);
      return withTimeout(new Promise(resolve => waiters.push({ kind, n, resolve })), ms || 5000,
        'client event ' + kind + ' x' + n + ' (seen: ' + JSON.stringify(log.map(l => l.kind)) + ')');
    },
  };
}

/**
 * Minimal TCP proxy (like the wire recorder's RecordingProxy, without recording): clients connect
 * to proxy.port, bytes are forwarded to 127.0.0.1:targetPort. dropAll() destroys every open
 * connection on both sides (a dropped network, no websocket close frame).
 */
class TcpProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.accepted = 0;
  }
  async start(port) {
    this.port = port || await freePort();
    this.server = net.createServer(client => {
      this.accepted++;
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      const pair = { client, upstream };
      this.pairs.add(pair);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      client.pipe(upstream);
      upstream.pipe(client);
      const kill = () => { client.destroy(); upstream.destroy(); this.pairs.delete(pair); };
      client.on('error', kill);
      upstream.on('error', kill);
      client.on('close', kill);
      upstream.on('close', kill);
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', resolve);
    });
    liveProxies.add(this);
    return this;
  }
  get open() { return this.pairs.size; }
  dropAll() {
    const n = this.pairs.size;
    for (const p of [...this.pairs]) { p.client.destroy(); p.upstream.destroy(); this.pairs.delete(p); }
    return n;
  }
  close() {
    liveProxies.delete(this);
    this.dropAll();
    return new Promise(resolve => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
const liveProxies = new Set();

// ---------------------------------------------------------------------------------------------
// raw websocket (ws@1.1.5, the version the happn client uses)
// ---------------------------------------------------------------------------------------------

const liveRaw = new Set();

class RawSocket {
  constructor(ws, url) {
    this.ws = ws;
    this.url = url;
    this.frames = []; // {text, json, t, consumed}
    this.closed = null; // {code, reason}
    this.t0 = Date.now();
    this.eventCounter = 0;
    this.waiters = [];
    this.closeWaiters = [];
    ws.on('message', (data, flags) => {
      const text = typeof data === 'string' ? data : (flags && flags.binary ? '<binary ' + data.length + ' bytes>' : String(data));
      const f = { text, t: Date.now() - this.t0, consumed: false, json: undefined, isJson: false };
      try { f.json = JSON.parse(text); f.isJson = true; } catch (e) { /* not json */ }
      this.frames.push(f);
      this._check();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: String(reason || ''), t: Date.now() - this.t0 };
      liveRaw.delete(this);
      this._check();
      this.closeWaiters.splice(0).forEach(w => w(this.closed));
    });
    ws.on('error', e => { this.lastError = e; });
  }

  static open(port, opts) {
    opts = opts || {};
    const q = opts.query !== undefined ? opts.query : '_primuscb=compat-' + Date.now().toString(36) + '&ping=25000&pong=10000';
    const url = 'ws://127.0.0.1:' + port + (opts.path || '/primus') + (q ? '?' + q : '');
    return withTimeout(new Promise((resolve, reject) => {
      const ws = new WS(url, opts.wsOptions || {});
      const raw = new RawSocket(ws, url);
      ws.once('open', () => { raw.t0 = Date.now(); liveRaw.add(raw); resolve(raw); });
      ws.once('error', e => reject(new Error('raw websocket ' + url + ': ' + e.message)));
    }), 5000, 'raw websocket open ' + url);
  }

  nextEventId() { return ++this.eventCounter; }

  /** send an object (JSON-encoded) or a string as-is */
  send(x) {
    const text = typeof x === 'string' ? x : JSON.stringify(x);
    this.ws.send(text);
  }

  _check() {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      const f = this.frames.find(fr => !fr.consumed && w.pred(fr));
      if (f) {
        f.consumed = true;
        this.waiters.splice(i, 1);
        w.resolve(f);
      } else if (this.closed && !w.allowClosed) {
        this.waiters.splice(i, 1);
        w.reject(new Error('socket closed (' + this.closed.code + ') while waiting for ' + w.label + '; frames: ' + this.dump()));
      }
    }
  }

  /** wait for (and consume) the first unconsumed frame matching pred(frame) */
  waitFrame(pred, ms, label) {
    label = label || 'frame';
    const p = new Promise((resolve, reject) => {
      this.waiters.push({ pred, resolve, reject, label });
      this._check();
    });
    return withTimeout(p, ms || 3000, 'raw: waiting for ' + label + '; frames so far: ' + this.dump())
      .catch(e => { this.waiters = this.waiters.filter(w => w.pred !== pred); throw e; });
  }

  /** send a request and wait for the reply carrying its eventId (object or array trailer) */
  async request(msg, ms) {
    if (msg.eventId === undefined) msg.eventId = this.nextEventId();
    const want = JSON.stringify(msg.eventId);
    this.send(msg);
    const f = await this.waitFrame(fr => fr.isJson && replyEventId(fr.json) === want, ms,
      'reply to ' + JSON.stringify(msg).slice(0, 200));
    return f.json;
  }

  /** describe + login with the given credentials (insecure servers accept anything) */
  async login(data) {
    await this.request({ action: 'describe', protocol: '1.1.0' });
    const reply = await this.request({ action: 'login', data: data || { info: {} }, protocol: '1.1.0' });
    if (reply && reply._meta && reply._meta.status === 'ok') this.session = reply.data;
    return reply;
  }

  waitClose(ms) {
    if (this.closed) return Promise.resolve(this.closed);
    return withTimeout(new Promise(resolve => this.closeWaiters.push(resolve)), ms || 3000,
      'raw: waiting for close; frames: ' + this.dump());
  }

  unconsumed() { return this.frames.filter(f => !f.consumed); }

  dump() {
    return this.frames.map(f => (f.consumed ? '' : '*') + '@' + f.t + 'ms ' + f.text.slice(0, 300)).join(' | ') +
      (this.closed ? ' | CLOSED ' + this.closed.code : '');
  }

  close() {
    liveRaw.delete(this);
    try { this.ws.close(); } catch (e) { /* ignore */ }
    const t = setTimeout(() => { try { this.ws.terminate(); } catch (e) { /* ignore */ } }, 1000);
    return new Promise(resolve => {
      if (this.closed) { clearTimeout(t); return resolve(); }
      this.closeWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }
}

function replyEventId(json) {
  if (Array.isArray(json)) {
    const trailer = json[json.length - 1];
    return trailer && typeof trailer === 'object' && 'eventId' in trailer ? JSON.stringify(trailer.eventId) : undefined;
  }
  if (json && typeof json === 'object' && json._meta && json._meta.type === 'response' && 'eventId' in json._meta) {
    return JSON.stringify(json._meta.eventId);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// HTTP / TCP helpers
// ---------------------------------------------------------------------------------------------

function httpGet(port, p, headers) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'GET', path: p, headers: Object.assign({ Connection: 'close' }, headers || {}), agent: false }, res => {
      const chunks = [];
      res.on('data', d => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  }), 5000, 'GET ' + p);
}

/**
 * Any HTTP(S) request; resolves {status, statusMessage, headers, body, peerCertificate}.
 *   opts.method, opts.headers, opts.body
 *   opts.https  true -> TLS (certificates are not verified; compare peerCertificate instead)
 */
function httpRequest(port, p, opts) {
  opts = opts || {};
  const mod = opts.https ? require('https') : http;
  const options = {
    host: '127.0.0.1', port, method: opts.method || 'GET', path: p, agent: false,
    headers: Object.assign({ Connection: 'close' }, opts.headers || {}),
  };
  if (opts.https) options.rejectUnauthorized = false;
  return withTimeout(new Promise((resolve, reject) => {
    const req = mod.request(options, res => {
      const peerCertificate = opts.https ? res.socket.getPeerCertificate() : undefined;
      const chunks = [];
      res.on('data', d => chunks.push(d));
      res.on('end', () => resolve({
        status: res.statusCode, statusMessage: res.statusMessage, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'), peerCertificate,
      }));
    });
    req.on('error', reject);
    req.end(opts.body);
  }), 5000, (opts.method || 'GET') + ' ' + p);
}

/** send a websocket upgrade request by hand and return the raw response head */
function rawHandshake(port, p, extraHeaders) {
  const key = crypto.randomBytes(16).toString('base64');
  const lines = [
    'GET ' + (p || '/primus?_primuscb=hs&ping=25000&pong=10000') + ' HTTP/1.1',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Host: 127.0.0.1:' + port,
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: ' + key,
  ].concat(extraHeaders || []);
  return withTimeout(new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => s.write(lines.join('\r\n') + '\r\n\r\n'));
    let buf = '';
    s.on('data', d => {
      buf += d.toString('latin1');
      const idx = buf.indexOf('\r\n\r\n');
      if (idx >= 0) {
        s.destroy();
        const head = buf.slice(0, idx);
        const [statusLine, ...hl] = head.split('\r\n');
        const headers = {};
        hl.forEach(l => { const i = l.indexOf(':'); headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim(); });
        const expectedAccept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        resolve({ statusLine, headers, head, expectedAccept });
      }
    });
    s.on('error', reject);
  }), 5000, 'raw handshake');
}

// ---------------------------------------------------------------------------------------------
// shape matching
// ---------------------------------------------------------------------------------------------

const ANY = Symbol('any');
const UUIDISH = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const m = {
  any: ANY,
  num: v => typeof v === 'number' && Number.isFinite(v),
  /** epoch milliseconds within a day of now */
  ts: v => typeof v === 'number' && Math.abs(v - Date.now()) < 86400000,
  str: v => typeof v === 'string',
  nonEmpty: v => typeof v === 'string' && v.length > 0,
  id: v => typeof v === 'string' && v.length > 0,
  uuid: v => typeof v === 'string' && UUIDISH.test(v),
  re: rx => v => typeof v === 'string' && rx.test(v),
  absent: Symbol('absent'),
};

/** collect differences between actual and template; objects must have exactly the template's keys */
function diffShape(actual, expected, where, out) {
  where = where || '$';
  out = out || [];
  if (expected === ANY) return out;
  if (typeof expected === 'function') {
    if (!expected(actual)) out.push(where + ': ' + safeJson(actual) + ' does not satisfy ' + (expected.name || 'predicate'));
    return out;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) { out.push(where + ': expected array, got ' + safeJson(actual)); return out; }
    if (actual.length !== expected.length) out.push(where + ': expected ' + expected.length + ' items, got ' + actual.length);
    expected.forEach((e, i) => diffShape(actual[i], e, where + '[' + i + ']', out));
    return out;
  }
  if (expected && typeof expected === 'object') {
    if (!actual || typeof actual !== 'object' || Array.isArray(actual)) { out.push(where + ': expected object, got ' + safeJson(actual)); return out; }
    for (const k of Object.keys(expected)) {
      if (expected[k] === m.absent) {
        if (k in actual) out.push(where + '.' + k + ': should be absent, got ' + safeJson(actual[k]));
        continue;
      }
      if (!(k in actual)) { out.push(where + '.' + k + ': missing'); continue; }
      diffShape(actual[k], expected[k], where + '.' + k, out);
    }
    for (const k of Object.keys(actual)) {
      if (!(k in expected)) out.push(where + '.' + k + ': unexpected key (value ' + safeJson(actual[k]) + ')');
    }
    return out;
  }
  if (actual !== expected) out.push(where + ': expected ' + safeJson(expected) + ', got ' + safeJson(actual));
  return out;
}

function assertShape(actual, expected, label) {
  const d = diffShape(actual, expected);
  if (d.length) assert.fail((label ? label + ': ' : '') + d.join('; ') + '\n  actual: ' + safeJson(actual));
}

function safeJson(v) {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : (s.length > 1500 ? s.slice(0, 1500) + '…' : s);
  } catch (e) { return String(v); }
}

/**
 * The happn client parses frames inside a vm context (Primus), so its objects have another realm's
 * Object.prototype and fail deepStrictEqual; compare JSON-normalised copies instead.
 */
function plain(v) { return v === undefined ? undefined : JSON.parse(JSON.stringify(v)); }
function deq(actual, expected, message) { assert.deepEqual(plain(actual), plain(expected), message); }

/** paths of get() result items */
function paths(items) { return items.map(i => i && i._meta && i._meta.path); }
/** keys of an object, sorted */
function keys(o) { return Object.keys(o).sort(); }

/** tear down everything this file created */
async function cleanup(...servers) {
  await Promise.all([...liveClients].map(destroyClient));
  await Promise.all([...liveRaw].map(r => r.close()));
  await Promise.all([...liveProxies].map(p => p.close()));
  await Promise.all(servers.filter(Boolean).map(s => s.stop('SIGKILL', 2000)));
}

module.exports = {
  BIN, sleep, uid, withTimeout, freePort, portOpen, tmpFile,
  startServer, runCli, ServerHandle,
  connect, createClient, set, get, remove, getPaths, setSibling, on, off, offPath, offAll, disconnect,
  destroyClient, expectError, collector, cbCall, spyClient, watchClient, TcpProxy,
  RawSocket, httpGet, httpRequest, rawHandshake,
  m, diffShape, assertShape, safeJson, paths, keys, cleanup, plain, deq,
};
