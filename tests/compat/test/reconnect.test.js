'use strict';
// Reconnect and shutdown with the real client (wire.md §4–5, semantics §9, decisions.md "Shutdown is
// announced"; traces 20, 21, 22): restart on the same port (SIGTERM), SIGINT stop (no reconnect),
// dropped TCP connection (proxy) and SIGKILL + restart. After a reconnect the client re-logs in and
// re-subscribes with `on {refCount: <local listener count>}`, and events flow again.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

// first attempt after 200 ms, then at most 1 s apart (the default is 500 ms, then 1–2 s, 2–4 s ...)
const FAST_RECONNECT = { reconnect: { min: 200, max: 1000 } };

const isReplyTo = eventId => j => j && !Array.isArray(j) && j._meta && j._meta.type === 'response' && j._meta.eventId === eventId;
const isEvent = j => j && j._meta && j._meta.type === 'data';

/** settle a client call: {error} or {result} */
function settle(label, fn, ms) {
  return h.cbCall(label, fn, ms || 15000).then(result => ({ result }), error => ({ error }));
}

/** after reconnect-successful: wait until every re-subscription (`on` sent after `mark`) is answered */
async function resubscribed(spy, mark, expected) {
  const deadline = Date.now() + 5000;
  let ons;
  for (;;) {
    ons = spy.since(mark, 'out').filter(f => f.json && f.json.action === 'on');
    if (ons.length >= expected || Date.now() > deadline) break;
    await h.sleep(20);
  }
  assert.equal(ons.length, expected, 're-subscriptions sent: ' + spy.dump('out'));
  for (const on of ons) {
    const reply = await spy.waitIn(isReplyTo(on.json.eventId), 5000, 'reply to re-subscription ' + on.json.path);
    assert.equal(reply.json._meta.status, 'ok', 're-subscription ' + on.json.path + ' answered ' + reply.raw);
  }
  return ons.map(f => f.json);
}

// =============================================================================================
describe('reconnect: server restarted on the same port (SIGTERM)', () => {
  const CONFIG = { secure: true, name: 'compat-reconnect' };
  let srv;
  let again;
  let c;
  let spy;
  let w;
  let other;
  let otherWatch;
  let oldSession;
  let mark;
  const h1 = h.collector();
  const h2 = h.collector();
  const h3 = h.collector();
  let s1;
  let s2;
  let queuedSet;
  let queuedGet;

  before(async () => {
    srv = await h.startServer({ config: CONFIG });
    c = await h.connect(srv, { pubsub: FAST_RECONNECT });
    spy = h.spyClient(c);
    w = h.watchClient(c);
    other = await h.connect(srv, { pubsub: FAST_RECONNECT });
    otherWatch = h.watchClient(other);
    s1 = await h.on(c, '/rc/*', { event_type: 'set' }, h1.handler);
    s2 = await h.on(c, '/rc/*', { event_type: 'set' }, h2.handler);
    await h.on(c, '/rc/exact', { event_type: 'remove' }, h3.handler);
    await h.set(c, '/rc/exact', { seeded: true });
    await h1.wait(1);
    oldSession = c.session.id;
  });
  after(() => h.cleanup(srv, again));

  it('SIGTERM: the server exits, the clients schedule reconnects (no connection-ended)', async () => {
    mark = spy.mark();
    const info = await srv.stop('SIGTERM', 8000);
    assert.notEqual(info.signal, 'SIGKILL', 'server did not exit on SIGTERM within 8 s');
    await w.wait('reconnect-scheduled', 5000);
    await otherWatch.wait('reconnect-scheduled', 5000);
    assert.ok(!w.kinds().includes('connection-ended'), 'no connection-ended: ' + JSON.stringify(w.kinds()));
    assert.ok(!spy.in.some(f => f.json === 'primus::server::close'), 'no primus::server::close on SIGTERM');
  });

  it('requests made while the server is down are queued (the call does not fail at once)', async () => {
    queuedSet = settle('set while down', cb => c.set('/rc/while-down', { queued: true }, cb));
    queuedGet = settle('get while down', cb => c.get('/rc/exact', cb));
    let early;
    queuedSet.then(() => { early = true; });
    await h.sleep(300);
    assert.equal(early, undefined, 'set answered while the server was down?');
  });

  it('server back on the same port: reconnect-successful, a new session, re-login with the credentials', async () => {
    again = await h.startServer({ port: srv.port, config: CONFIG });
    await w.wait('reconnect-successful', 15000);
    await otherWatch.wait('reconnect-successful', 15000);
    assert.equal(typeof c.session.id, 'string');
    assert.notEqual(c.session.id, oldSession, 'a new session after reconnect');
    assert.equal(c.session.user.username, '_ADMIN');
    assert.notEqual(other.session.id, c.session.id);
    const out = spy.since(mark, 'out').map(f => f.json).filter(j => j && j.action);
    const describeIdx = out.findIndex(j => j.action === 'describe');
    const loginIdx = out.findIndex(j => j.action === 'login');
    assert.ok(describeIdx >= 0 && loginIdx > describeIdx, 'describe then login: ' + spy.dump('out'));
    assert.equal(out[loginIdx].data.username, '_ADMIN');
    const loginReply = await spy.waitIn(isReplyTo(out[loginIdx].eventId), 3000, 'login reply', mark.in);
    assert.equal(loginReply.json._meta.status, 'ok', 'login with a stale sessionId is accepted: ' + loginReply.raw);
    assert.equal(loginReply.json.data.id, c.session.id);
    // the queued requests went out first, still carrying the old session id
    const setIdx = out.findIndex(j => j.action === 'set' && j.path === '/rc/while-down');
    assert.ok(setIdx >= 0 && setIdx < describeIdx, 'queued set flushed before describe: ' + spy.dump('out'));
    assert.equal(out[setIdx].sessionId, oldSession);
  });

  it('the requests made while down are answered with an error (secure: they arrive before the login) and the socket keeps working', async () => {
    const qs = await queuedSet;
    const qg = await queuedGet;
    for (const [name, q] of [['set', qs], ['get', qg]]) {
      assert.ok(q.error, name + ' answered with an error: ' + h.safeJson(q.result));
      assert.ok(!/timed out/.test(String(q.error.message)), name + ' must be answered, not time out: ' + q.error);
    }
    // happn-rs answers AccessDenied "not logged in" (COMPATIBILITY.md), the reference a TypeError
    const reply = spy.since(mark, 'in').find(f => f.json && f.json._meta && f.json._meta.action === 'set' && f.json._meta.status === 'error');
    assert.ok(reply, 'error reply frame for the queued set: ' + spy.dump());
    assert.equal(await h.get(c, '/rc/while-down'), null, 'the refused set wrote nothing');
    const after = await h.set(c, '/rc/after-restart', { ok: true });
    assert.equal(after._meta.status, 'ok');
    h.deq((await h.get(c, '/rc/after-restart')).ok, true);
    assert.equal(c.pubsub.readyState, 3, 'socket open');
  });

  it('the client re-subscribes with `on {refCount: local listener count}` (no event_type/count/initial*) and the server accepts it', async () => {
    const ons = await resubscribed(spy, mark, 2);
    const byPath = {};
    ons.forEach(o => { byPath[o.path] = o; });
    h.deq(Object.keys(byPath).sort(), ['/REMOVE@/rc/exact', '/SET@/rc/*']);
    h.deq(byPath['/SET@/rc/*'].options, { refCount: 2, timeout: 20000 });
    h.deq(byPath['/REMOVE@/rc/exact'].options, { refCount: 1, timeout: 20000 });
    assert.equal(byPath['/SET@/rc/*'].sessionId, c.session.id);
  });

  it('events flow again: one frame per channel, both local handlers called; remove subscription too', async () => {
    const writer = await h.connect(again);
    await h.set(writer, '/rc/exact', { seeded: 'again' }, { noPublish: true }); // the restarted server is empty
    const m = spy.mark();
    const n1 = h1.items.length;
    const n2 = h2.items.length;
    await h.set(writer, '/rc/back', { back: true });
    await h1.wait(n1 + 1, 5000);
    await h2.wait(n2 + 1, 5000);
    const ev = h1.items[h1.items.length - 1];
    h.deq(ev.data, { back: true });
    assert.equal(ev.meta.sessionId, c.session.id, 'events carry the new session id');
    assert.equal(ev.meta.channel, '/SET@/rc/*');
    await h.remove(writer, '/rc/exact');
    await h3.wait(1, 5000);
    h.deq(h3.items[0].data, { removed: 1 });
    await h.sleep(100);
    h.deq(spy.events(m).map(f => f.json._meta.channel), ['/SET@/rc/*', '/REMOVE@/rc/exact']);
  });

  it('the re-subscription refCount is honoured: off(h1) keeps the channel for h2, off(h2) drops it on the server', async () => {
    const writer = await h.connect(again);
    await h.off(c, s1.id); // server count 2-1 = 1
    let m = spy.mark();
    const n2 = h2.items.length;
    const n1 = h1.items.length;
    await h.set(writer, '/rc/one-left', { v: 1 });
    await h2.wait(n2 + 1, 3000);
    await h.sleep(100);
    assert.equal(h1.items.length, n1);
    assert.equal(spy.events(m).length, 1);
    await h.off(c, s2.id); // 1-1 = 0
    m = spy.mark();
    await h.set(writer, '/rc/none-left', { v: 1 });
    await h.sleep(200);
    assert.equal(spy.events(m).length, 0, 'no frame once the count reaches 0: ' + spy.dump());
  });

  it('the other client reconnected too and works', async () => {
    const r = await h.set(other, '/rc/other', { v: 1 });
    assert.equal(r._meta.status, 'ok');
    assert.equal(r._meta.sessionId, other.session.id);
  });
});

// =============================================================================================
describe('SIGINT stop: server-side-disconnect, no reconnect', () => {
  let srv;
  let again;
  let c;
  let spy;
  let w;
  let info;
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv, { pubsub: FAST_RECONNECT });
    spy = h.spyClient(c);
    w = h.watchClient(c);
    await h.on(c, '/sigint/*', { event_type: 'all' }, () => {});
    info = await srv.stop('SIGINT', 8000);
  });
  after(() => h.cleanup(srv, again));

  it('the server exits by itself', () => {
    assert.notEqual(info.signal, 'SIGKILL', 'server did not exit on SIGINT within 8 s (' + JSON.stringify(info) + ')');
  });

  it('the client receives "primus::server::close", then connection-ended', async () => {
    await w.wait('connection-ended', 3000);
    assert.ok(spy.in.some(f => f.json === 'primus::server::close'), 'primus::server::close: ' + spy.dump());
  });

  it('onSystemMessage gets server-side-disconnect; the frame carries reconnect:false (happn-rs: decisions.md "Shutdown is announced")', async () => {
    const data = await w.wait('system:server-side-disconnect', 2000);
    assert.equal(typeof data, 'string', 'data is the reason text');
    const sys = spy.in.find(f => f.json && f.json._meta && f.json._meta.type === 'system');
    h.assertShape(sys.json, {
      _meta: { type: 'system' }, eventKey: 'server-side-disconnect', data: h.m.str, reconnect: false, protocol: '1.1.0',
    }, 'system message frame');
    const idx = spy.in.indexOf(sys);
    const closeIdx = spy.in.findIndex(f => f.json === 'primus::server::close');
    assert.ok(closeIdx > idx, 'system message before primus::server::close');
  });

  it('the client does not reconnect, even when a server is back on the port', async () => {
    again = await h.startServer({ port: srv.port });
    await h.sleep(1500);
    const k = w.kinds();
    assert.ok(!k.includes('reconnect-scheduled') && !k.includes('reconnect-successful'), 'no reconnect: ' + JSON.stringify(k));
    assert.notEqual(c.pubsub.readyState, 3, 'socket not open');
  });
});

// =============================================================================================
describe('dropped TCP connection (proxy): reconnect and resubscribe', () => {
  let srv;
  let proxy;
  let c;
  let spy;
  let w;
  let writer;
  const ev = h.collector();
  before(async () => {
    srv = await h.startServer();
    proxy = await new h.TcpProxy(srv.port).start();
    c = await h.connect(proxy.port, { pubsub: FAST_RECONNECT });
    spy = h.spyClient(c);
    w = h.watchClient(c);
    writer = await h.connect(srv);
    await h.on(c, '/drop/*', { event_type: 'all' }, ev.handler);
    await h.set(writer, '/drop/before', { n: 0 });
    await ev.wait(1);
  });
  after(() => h.cleanup(srv));

  it('the proxy kills the connection (no close frame): the client reconnects through it with a new session', async () => {
    const old = c.session.id;
    const mark = spy.mark();
    assert.equal(proxy.open, 1);
    proxy.dropAll();
    await w.wait('reconnect-scheduled', 5000);
    // a request while the socket is down is queued and answered after the reconnect
    const queued = settle('set while dropped', cb => c.set('/drop/queued', { q: 1 }, cb));
    await w.wait('reconnect-successful', 10000);
    assert.notEqual(c.session.id, old);
    assert.equal(proxy.accepted, 2, 'one new TCP connection');
    await resubscribed(spy, mark, 1);
    // insecure mode: the queued set arrives before the new login and is executed anyway (as in the original)
    const q = await queued;
    assert.ok(!q.error, 'queued set answered without error: ' + (q.error && q.error.message));
    assert.equal(q.result.q, 1);
    assert.equal(q.result._meta.status, 'ok');
    h.deq((await h.get(writer, '/drop/queued')).q, 1);
  });

  it('events flow again, exactly one per publish; the writer is unaffected by the dead session', async () => {
    const m = spy.mark();
    const n = ev.items.length;
    const r = await h.set(writer, '/drop/after', { n: 1 });
    assert.equal(r._meta.status, 'ok');
    await ev.wait(n + 1, 5000);
    await h.remove(writer, '/drop/after');
    await ev.wait(n + 2, 5000);
    await h.sleep(100);
    h.deq(ev.items[n].data, { n: 1 });
    assert.equal(ev.items[n].meta.sessionId, c.session.id);
    h.deq(ev.items[n + 1].data, { removed: 1 });
    assert.equal(spy.events(m).length, 2, spy.dump());
    const own = await h.set(c, '/drop/own', { mine: true });
    assert.equal(own._meta.sessionId, c.session.id);
  });

  it('a second drop works the same way', async () => {
    const mark = spy.mark();
    proxy.dropAll();
    await w.wait('reconnect-successful', 10000, 2);
    await resubscribed(spy, mark, 1);
    const n = ev.items.length;
    await h.set(writer, '/drop/again', { n: 2 });
    await ev.wait(n + 1, 5000);
    h.deq(ev.items[n].data, { n: 2 });
  });
});

// =============================================================================================
describe('SIGKILL + restart: reconnect and resubscribe', () => {
  let srv;
  let again;
  let c;
  let spy;
  let w;
  const ev = h.collector();
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv, { pubsub: FAST_RECONNECT });
    spy = h.spyClient(c);
    w = h.watchClient(c);
    await h.on(c, '/kill/*', { event_type: 'set' }, ev.handler);
    await h.on(c, '/kill/x', { event_type: 'all' }, ev.handler);
  });
  after(() => h.cleanup(srv, again));

  it('the server dies without a close frame; the client reconnects to the new process, re-subscribes, events flow', async () => {
    const old = c.session.id;
    const mark = spy.mark();
    await srv.kill();
    await w.wait('reconnect-scheduled', 5000);
    assert.ok(!spy.in.some(f => f.json && f.json._meta && f.json._meta.type === 'system'), 'no system message from a killed server');
    again = await h.startServer({ port: srv.port });
    await w.wait('reconnect-successful', 15000);
    assert.notEqual(c.session.id, old);
    const ons = await resubscribed(spy, mark, 2);
    h.deq(ons.map(o => o.path).sort(), ['/ALL@/kill/x', '/SET@/kill/*']);
    const m = spy.mark();
    const writer = await h.connect(again);
    await h.set(writer, '/kill/x', { alive: true });
    await ev.wait(2, 5000);
    await h.sleep(100);
    h.deq(ev.items.map(i => i.meta.channel).sort(), ['/ALL@/kill/x', '/SET@/kill/*']);
    ev.items.forEach(i => h.deq(i.data, { alive: true }));
    assert.equal(spy.events(m).length, 2);
    assert.ok(!w.kinds().includes('connection-ended'));
  });
});
