'use strict';
// Command line, config validation and signals (brief: SIGTERM = graceful stop, clients reconnect;
// SIGINT = stop with primus::server::close; decisions.md "Shutdown is announced"; wire.md §4–5).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const SYSTEM_DISCONNECT = reconnect => ({
  _meta: { type: 'system' },
  eventKey: 'server-side-disconnect',
  data: h.m.any,
  reconnect,
  protocol: '1.1.0',
});

/** attach listeners to a connected happn client that record its lifecycle */
function watchClient(c) {
  const log = [];
  const waiters = [];
  const push = (kind, data) => {
    log.push({ kind, data, t: Date.now() });
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].kind === kind) { waiters[i].resolve(data); waiters.splice(i, 1); }
    }
  };
  c.onSystemMessage((eventKey, data) => push('system:' + eventKey, data));
  ['connection-ended', 'reconnect-scheduled', 'reconnect-successful', 'reconnect'].forEach(ev => c.onEvent(ev, function () { push(ev, this); }));
  return {
    log,
    kinds: () => log.map(l => l.kind),
    wait(kind, ms) {
      const found = log.find(l => l.kind === kind);
      if (found) return Promise.resolve(found.data);
      return h.withTimeout(new Promise(resolve => waiters.push({ kind, resolve })), ms || 5000,
        'client event ' + kind + ' (seen: ' + JSON.stringify(log.map(l => l.kind)) + ')');
    },
  };
}

describe('cli', () => {
  const servers = [];
  after(() => h.cleanup(...servers));

  it('--help lists --port, --host, --config and exits 0', async () => {
    const res = await h.runCli(['--help']);
    assert.equal(res.timedOut, false, '--help must exit');
    assert.equal(res.code, 0, 'exit code; output:\n' + res.output);
    for (const flag of ['--port', '--host', '--config']) assert.ok(res.output.includes(flag), flag + ' missing from --help:\n' + res.output);
  });

  it('an unknown command line flag → exit code 2', async () => {
    const res = await h.runCli(['--no-such-flag']);
    assert.equal(res.timedOut, false, 'must exit; output:\n' + res.output);
    assert.equal(res.code, 2, 'exit code; output:\n' + res.output);
    assert.match(res.output, /no-such-flag/);
  });

  it('config file with a wrong type → exit code 2 and a message naming the key', async () => {
    const file = h.tmpFile('bad.json', JSON.stringify({ port: 'abc' }));
    const res = await h.runCli(['--config', file]);
    assert.equal(res.timedOut, false, 'must exit, not start; output:\n' + res.output);
    assert.equal(res.code, 2, 'exit code; output:\n' + res.output);
    assert.match(res.output, /port/, 'message names the key:\n' + res.output);
  });

  it('HAPPN_SERVER_CONFIG with a wrong type → exit code 2 naming the key', async () => {
    const port = await h.freePort();
    const res = await h.runCli(['--port', String(port), '--host', '127.0.0.1'], { env: { HAPPN_SERVER_CONFIG: JSON.stringify({ secure: 'yes' }) } });
    assert.equal(res.timedOut, false, 'must exit; output:\n' + res.output);
    assert.equal(res.code, 2, 'exit code; output:\n' + res.output);
    assert.match(res.output, /secure/, 'message names the key:\n' + res.output);
  });

  it('config file that is not JSON → exit code 2', async () => {
    const file = h.tmpFile('broken.json', '{"port": 1,,}');
    const res = await h.runCli(['--config', file]);
    assert.equal(res.timedOut, false, 'must exit; output:\n' + res.output);
    assert.equal(res.code, 2, 'exit code; output:\n' + res.output);
    assert.ok(res.output.trim().length > 0, 'prints a message');
  });

  it('unknown config key → warning on stderr, server still starts', async () => {
    const srv = await h.startServer({ configFile: { someUnknownCompatKey: 1 } });
    servers.push(srv);
    await h.sleep(200);
    assert.match(srv.stderr, /someUnknownCompatKey/, 'warning names the key; stderr:\n' + srv.stderr);
    const res = await h.httpGet(srv.port, '/version');
    assert.equal(res.status, 200);
  });

  it('config name and the listening message', async () => {
    const srv = await h.startServer({ configFile: { name: 'compat-cli-name' } });
    servers.push(srv);
    assert.match(srv.output, /listening on/, 'prints "listening on":\n' + srv.output);
    const r = await h.RawSocket.open(srv.port);
    const d = await r.request({ action: 'describe', protocol: '1.1.0' });
    assert.equal(d.data.name, 'compat-cli-name');
    assert.equal(d.data.secure, false, 'insecure by default');
    await r.close();
  });

  it('HAPPN_SERVER_CONFIG is merged over the config file', async () => {
    const srv = await h.startServer({ configFile: { name: 'from-file', secure: false }, config: { name: 'from-env' } });
    servers.push(srv);
    const r = await h.RawSocket.open(srv.port);
    const d = await r.request({ action: 'describe', protocol: '1.1.0' });
    assert.equal(d.data.name, 'from-env');
    await r.close();
  });

});

describe('SIGINT (stop, clients must not reconnect)', () => {
  let srv;
  let w;
  let raw;
  let info;
  before(async () => {
    srv = await h.startServer({ config: { secure: true } });
    const c = await h.connect(srv);
    w = watchClient(c);
    raw = await h.RawSocket.open(srv.port);
    await raw.login({ username: '_ADMIN', password: 'happn', info: {} });
    info = await srv.stop('SIGINT', 8000);
    await raw.waitClose(3000).catch(() => {});
  });
  after(() => h.cleanup(srv));

  it('the server exits by itself', () => {
    assert.notEqual(info.signal, 'SIGKILL', 'server did not exit on SIGINT within 8 s (' + JSON.stringify(info) + ')');
  });

  it('raw socket: "primus::server::close" then close 1000', () => {
    assert.ok(raw.closed, 'socket closed; frames ' + raw.dump());
    assert.equal(raw.closed.code, 1000, 'close code 1000; frames ' + raw.dump());
    assert.ok(raw.unconsumed().some(f => f.json === 'primus::server::close'), '"primus::server::close" received: ' + raw.dump());
  });

  it('raw socket: server-side-disconnect system message with reconnect:false before primus::server::close', () => {
    const texts = raw.unconsumed().map(f => f.json);
    const sysIdx = texts.findIndex(j => j && j._meta && j._meta.type === 'system');
    assert.ok(sysIdx >= 0, 'system message received: ' + raw.dump());
    h.assertShape(texts[sysIdx], SYSTEM_DISCONNECT(false), 'system message');
    assert.ok(texts.indexOf('primus::server::close') > sysIdx, '"primus::server::close" follows the system message: ' + raw.dump());
  });

  it('happn client: onSystemMessage sees server-side-disconnect', async () => {
    await w.wait('system:server-side-disconnect', 2000);
  });

  it('happn client: connection-ended and no reconnect attempt', async () => {
    await w.wait('connection-ended', 3000);
    await h.sleep(1500);
    assert.ok(!w.kinds().includes('reconnect-scheduled'), 'client must not try to reconnect: ' + JSON.stringify(w.kinds()));
  });
});

describe('SIGTERM (graceful stop, clients reconnect)', () => {
  let srv;
  let again;
  let c;
  let w;
  let ev;
  let raw;
  let info;
  let oldSession;
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv, { pubsub: { reconnect: { min: 200, max: 1000 } } });
    w = watchClient(c);
    ev = h.collector();
    await h.on(c, '/rc/*', { event_type: 'set' }, ev.handler);
    oldSession = c.session.id;
    raw = await h.RawSocket.open(srv.port);
    await raw.login();
    info = await srv.stop('SIGTERM', 8000);
    await raw.waitClose(3000).catch(() => {});
  });
  after(() => h.cleanup(srv, again));

  it('the server exits by itself', () => {
    assert.notEqual(info.signal, 'SIGKILL', 'server did not exit on SIGTERM within 8 s (' + JSON.stringify(info) + ')');
  });

  it('raw socket: close 1000 without "primus::server::close"', () => {
    assert.ok(raw.closed, 'socket closed; frames ' + raw.dump());
    assert.equal(raw.closed.code, 1000, 'close code 1000; frames ' + raw.dump());
    assert.ok(!raw.unconsumed().some(f => f.json === 'primus::server::close'), 'no primus::server::close on a graceful stop: ' + raw.dump());
  });

  it('raw socket: server-side-disconnect system message with reconnect:true', () => {
    const sys = raw.unconsumed().map(f => f.json).find(j => j && j._meta && j._meta.type === 'system');
    assert.ok(sys, 'system message received: ' + raw.dump());
    h.assertShape(sys, SYSTEM_DISCONNECT(true), 'system message');
  });

  it('happn client: onSystemMessage sees server-side-disconnect', async () => {
    await w.wait('system:server-side-disconnect', 2000);
  });

  it('happn client: reconnects, re-logs in and re-subscribes when the server is back on the same port', async () => {
    await w.wait('reconnect-scheduled', 5000);
    again = await h.startServer({ port: srv.port });
    await w.wait('reconnect-successful', 15000);
    assert.notEqual(c.session.id, oldSession, 'a new session after reconnect');
    await h.sleep(300); // the re-subscription (on with refCount only) is sent right after login
    const writer = await h.connect(again);
    await h.set(writer, '/rc/after', { back: true });
    const items = await ev.wait(1, 5000);
    h.deq(items[0].data, { back: true });
    assert.equal(items[0].meta.sessionId, c.session.id);
    const mine = await h.set(c, '/rc/mine', { v: 1 });
    assert.equal(mine._meta.status, 'ok');
  });
});
