'use strict';
// Pub/sub with the real client (semantics §3.6–3.7, §5; wire.md §7.8, §8; decisions.md "Copy exactly";
// traces 08–12): event types and onAll, one frame per channel, ordering, recipient sessionId,
// event contents, targetClients / noCluster, count / off / offPath / offAll and the refCount
// arithmetic on raw frames, initialCallback / initialEmit, permissions, disconnect cleanup.
//
// `spy` (h.spyClient) records the frames a real client receives and sends, so tests can tell
// "the server sent nothing" apart from "the client dropped it".
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const isEvent = j => j && j._meta && j._meta.type === 'data';
const isReplyTo = eventId => j => j && !Array.isArray(j) && j._meta && j._meta.type === 'response' && j._meta.eventId === eventId;
/** channels of the data frames in a list of spy frames */
const channels = frames => frames.filter(f => isEvent(f.json)).map(f => f.json._meta.channel);

/** a fresh client whose listener ids start at 0 (the 2.21 client sends its listener id as refCount) */
async function fresh(srv, opts) {
  const c = await h.connect(srv, opts);
  const spy = h.spyClient(c);
  return { c, spy };
}

function onAll(c, handler) {
  return h.cbCall('onAll', cb => c.onAll(handler, cb));
}

/** raw `on` / `off` / `set` helpers */
const rawOn = (r, channel, options) => r.request({ action: 'on', path: channel, sessionId: r.session.id, options: options === undefined ? { refCount: 0 } : options, protocol: '1.1.0' });
const rawOff = (r, channel, options) => r.request({ action: 'off', path: channel, sessionId: r.session.id, options: options === undefined ? { refCount: 1 } : options, protocol: '1.1.0' });
/** set from the raw socket itself and return the event frames it received before its own reply
 * (events to the writer are written before the reply, so this is complete, not a race) */
async function rawSetEvents(r, p, data) {
  const start = r.frames.length;
  const reply = await r.request({ action: 'set', path: p, data: data || { n: 1 }, protocol: '1.1.0' });
  assert.equal(reply._meta.status, 'ok', 'raw set: ' + JSON.stringify(reply));
  return r.frames.slice(start).filter(f => isEvent(f.json)).map(f => f.json);
}

// =============================================================================================
describe('pubsub: event types, channels, ordering, recipients', () => {
  let srv;
  let a;
  let b;
  let spyA;
  let spyB;
  before(async () => {
    srv = await h.startServer();
    a = await h.connect(srv);
    b = await h.connect(srv);
    spyA = h.spyClient(a);
    spyB = h.spyClient(b);
  });
  after(() => h.cleanup(srv));

  it('event_type set / remove / all on exact and wildcard paths and onAll: one event per matching channel, each handler with its own channel (trace 08)', async () => {
    const { c, spy } = await fresh(srv);
    const base = '/pt/' + h.uid('types');
    const thing = base + '/thing';
    const got = [];
    const rec = name => (data, meta) => got.push({ name, data: h.plain(data), meta: h.plain(meta) });
    await h.on(c, thing, { event_type: 'set' }, rec('set-exact'));
    await h.on(c, base + '/*', { event_type: 'set' }, rec('set-wild'));
    await h.on(c, thing, { event_type: 'remove' }, rec('remove-exact'));
    await h.on(c, base + '/*', { event_type: 'remove' }, rec('remove-wild'));
    await h.on(c, thing, { event_type: 'all' }, rec('all-exact'));
    await h.on(c, base + '/*', null, rec('all-wild-default'));
    const all = [];
    const r = await onAll(c, (data, meta) => { if (meta.path === thing) all.push({ name: 'onAll', data: h.plain(data), meta: h.plain(meta) }); });
    assert.equal(r[0], 6, 'onAll returns its listener id');

    // the channels the client sent
    const onFrames = spy.out.filter(f => f.json && f.json.action === 'on').map(f => f.json.path);
    h.deq(onFrames, ['/SET@' + thing, '/SET@' + base + '/*', '/REMOVE@' + thing, '/REMOVE@' + base + '/*',
      '/ALL@' + thing, '/ALL@' + base + '/*', '/ALL@*']);

    let m = spy.mark();
    const sr = await h.set(c, thing, { v: 1 });
    const setEvents = got.concat(all);
    h.deq(setEvents.map(e => e.name).sort(), ['all-exact', 'all-wild-default', 'onAll', 'set-exact', 'set-wild']);
    for (const e of setEvents) {
      h.deq(e.data, { v: 1 }, e.name);
      h.assertShape(e.meta, {
        created: sr._meta.created, modified: sr._meta.modified, path: thing, type: 'data', sessionId: c.session.id,
        action: '/SET@' + thing,
        channel: { 'set-exact': '/SET@' + thing, 'set-wild': '/SET@' + base + '/*', 'all-exact': '/ALL@' + thing, 'all-wild-default': '/ALL@' + base + '/*', onAll: '/ALL@*' }[e.name],
      }, e.name + ' event _meta');
    }
    // wire: exactly five data frames, in the reference order (wire.md §7.8), then the reply
    const setFrames = spy.since(m).filter(f => f.json && (isEvent(f.json) || f.json._meta));
    h.deq(setFrames.map(f => (isEvent(f.json) ? f.json._meta.channel : 'reply')),
      ['/SET@' + thing, '/ALL@' + thing, '/ALL@*', '/ALL@' + base + '/*', '/SET@' + base + '/*', 'reply'], spy.dump());

    got.length = 0;
    all.length = 0;
    m = spy.mark();
    const rr = await h.remove(c, thing);
    const rmEvents = got.concat(all);
    h.deq(rmEvents.map(e => e.name).sort(), ['all-exact', 'all-wild-default', 'onAll', 'remove-exact', 'remove-wild']);
    for (const e of rmEvents) {
      h.deq(e.data, { removed: 1 }, e.name);
      h.assertShape(e.meta, {
        timestamp: rr._meta.timestamp, path: thing, type: 'data', sessionId: c.session.id, action: '/REMOVE@' + thing,
        channel: { 'remove-exact': '/REMOVE@' + thing, 'remove-wild': '/REMOVE@' + base + '/*', 'all-exact': '/ALL@' + thing, 'all-wild-default': '/ALL@' + base + '/*', onAll: '/ALL@*' }[e.name],
      }, e.name + ' remove event _meta');
    }
    h.deq(spy.since(m).filter(f => f.json && (isEvent(f.json) || f.json._meta)).map(f => (isEvent(f.json) ? f.json._meta.channel : 'reply')),
      ['/REMOVE@' + thing, '/ALL@' + thing, '/ALL@*', '/ALL@' + base + '/*', '/REMOVE@' + base + '/*', 'reply'], spy.dump());

    // a set elsewhere under base reaches only the wildcard set/all listeners (and onAll, filtered out here)
    got.length = 0;
    await h.set(c, base + '/other', { v: 2 });
    h.deq(got.map(e => e.name).sort(), ['all-wild-default', 'set-wild']);
    await h.disconnect(c);
  });

  it('two handlers on one channel: the server sends one frame per channel, the client calls both', async () => {
    const p = '/pt/' + h.uid('dup') + '/x';
    const e1 = h.collector();
    const e2 = h.collector();
    await h.on(a, p, { event_type: 'set' }, e1.handler);
    await h.on(a, p, { event_type: 'set' }, e2.handler);
    const m = spyA.mark();
    await h.set(b, p, { v: 1 });
    await e1.wait(1);
    await e2.wait(1);
    await h.sleep(100);
    assert.equal(spyA.events(m).length, 1, 'one data frame for one channel: ' + spyA.dump());
    assert.equal(e1.items.length, 1);
    assert.equal(e2.items.length, 1);
    assert.equal(e1.items[0].meta.channel, '/SET@' + p);
  });

  it('events reach the writer before its reply (several channels), and the writer gets its own events', async () => {
    const base = '/pt/' + h.uid('order');
    const log = [];
    await h.on(a, base + '/*', { event_type: 'set' }, () => log.push('wild'));
    await h.on(a, base + '/k', { event_type: 'all' }, () => log.push('exact'));
    const m = spyA.mark();
    await h.set(a, base + '/k', { v: 1 }).then(() => log.push('reply'));
    h.deq(log.slice().sort(), ['exact', 'reply', 'wild']);
    assert.equal(log[2], 'reply', 'both handlers ran before the set callback: ' + JSON.stringify(log));
    const frames = spyA.since(m).filter(f => f.json && f.json._meta);
    h.deq(frames.map(f => f.json._meta.type), ['data', 'data', 'response'], spyA.dump());
    for (const f of frames.slice(0, 2)) assert.equal(f.json._meta.sessionId, a.session.id, 'own event carries own session');
  });

  it('_meta.sessionId of an event is the recipient\'s session; both clients get the same event otherwise', async () => {
    const p = '/pt/' + h.uid('sess') + '/v';
    const ea = h.collector();
    const eb = h.collector();
    await h.on(a, p, { event_type: 'set' }, ea.handler);
    await h.on(b, p, { event_type: 'set' }, eb.handler);
    assert.notEqual(a.session.id, b.session.id);
    const r = await h.set(a, p, { from: 'a' });
    await ea.wait(1);
    await eb.wait(1);
    assert.equal(ea.items[0].meta.sessionId, a.session.id, 'writer\'s copy');
    assert.equal(eb.items[0].meta.sessionId, b.session.id, 'other client\'s copy has ITS session id');
    const strip = m => { const o = h.plain(m); delete o.sessionId; return o; };
    h.deq(strip(ea.items[0].meta), strip(eb.items[0].meta));
    h.deq(eb.items[0].data, { from: 'a' });
    assert.equal(eb.items[0].meta.modified, r._meta.modified);

    await h.set(b, p, { from: 'b' });
    await ea.wait(2);
    await eb.wait(2);
    assert.equal(ea.items[1].meta.sessionId, a.session.id);
    assert.equal(eb.items[1].meta.sessionId, b.session.id);
  });

  it('remove events: exact remove on the request path; wildcard remove publishes once on its pattern with removed:n; subscribers of the removed paths are not notified', async () => {
    const { c: x, spy: sx } = await fresh(srv);
    const base = '/pt/' + h.uid('rm');
    for (const i of [1, 2, 3, 4]) await h.set(a, base + '/e/' + i, { i });
    const got = [];
    const rec = name => (data, meta) => got.push({ name, data: h.plain(data), meta: h.plain(meta) });
    await h.on(x, base + '/e/*', { event_type: 'remove' }, rec('remove-wild'));
    await h.on(x, base + '/e*', { event_type: 'all' }, rec('all-wild'));
    await h.on(x, base + '/e/2', { event_type: 'remove' }, rec('remove-exact-2'));
    await h.on(x, base + '/e/3', { event_type: 'all' }, rec('all-exact-3'));
    await onAll(x, (data, meta) => { if (meta.path.startsWith(base)) got.push({ name: 'onAll', data: h.plain(data), meta: h.plain(meta) }); });

    // exact remove: the event path is the request path
    const r1 = await h.remove(b, base + '/e/1');
    await h.sleep(100);
    h.deq(got.map(g => g.name).sort(), ['all-wild', 'onAll', 'remove-wild']);
    for (const g of got) {
      h.deq(g.data, { removed: 1 });
      h.assertShape(g.meta, {
        timestamp: r1._meta.timestamp, path: base + '/e/1', type: 'data', sessionId: x.session.id,
        action: '/REMOVE@' + base + '/e/1', channel: h.m.str,
      }, g.name);
    }

    // wildcard remove of 3 records
    got.length = 0;
    const m = sx.mark();
    const r2 = await h.remove(b, base + '/e/*');
    assert.equal(r2.removed, 3);
    await h.sleep(150);
    h.deq(got.map(g => g.name).sort(), ['all-wild', 'onAll', 'remove-wild'], 'one event per wildcard/onAll channel, none for the per-path ones');
    for (const g of got) {
      h.deq(g.data, { removed: 3 });
      h.assertShape(g.meta, {
        timestamp: r2._meta.timestamp, path: base + '/e/*', type: 'data', sessionId: x.session.id,
        action: '/REMOVE@' + base + '/e/*',
        channel: { 'remove-wild': '/REMOVE@' + base + '/e/*', 'all-wild': '/ALL@' + base + '/e*', onAll: '/ALL@*' }[g.name],
      }, g.name + ' wildcard remove event');
    }
    const wire = channels(sx.since(m));
    h.deq(wire.slice().sort(), ['/ALL@*', '/ALL@' + base + '/e*', '/REMOVE@' + base + '/e/*'].sort(), 'frames on the wire: ' + sx.dump());
    await h.disconnect(x);
  });

  it('merge event carries the full merged record (seen by another client)', async () => {
    const p = '/pt/' + h.uid('merge') + '/m';
    const s = await h.set(a, p, { a: 1, b: 2, keep: 'x' });
    const ev = h.collector();
    await h.on(b, p, { event_type: 'set' }, ev.handler);
    const r = await h.set(a, p, { c: 3, b: 20, keep: null }, { merge: true });
    await ev.wait(1);
    h.deq(ev.items[0].data, { c: 3, b: 20, keep: 'x', a: 1 });
    h.assertShape(ev.items[0].meta, {
      created: s._meta.created, modified: r._meta.modified, path: p, type: 'data', sessionId: b.session.id,
      action: '/SET@' + p, channel: '/SET@' + p,
    }, 'merge event _meta');
  });

  it('tag event carries the snapshot with _meta.tag and the tag path (seen by another client)', async () => {
    const p = '/pt/' + h.uid('tag') + '/t';
    const s = await h.set(a, p, { v: 'orig' });
    const ev = h.collector();
    await h.on(b, p, { event_type: 'set' }, ev.handler);
    const r = await h.set(a, p, null, { tag: 'v1' });
    await ev.wait(1);
    const { data, meta } = ev.items[0];
    h.assertShape(data, { data: { v: 'orig' }, _meta: { path: p }, created: s._meta.created, modified: h.m.ts, _id: p }, 'tag event data');
    h.assertShape(meta, {
      created: h.m.ts, modified: h.m.ts, path: r._meta.path, tag: 'v1', type: 'data', sessionId: b.session.id,
      action: '/SET@' + p, channel: '/SET@' + p,
    }, 'tag event _meta');
    assert.match(meta.path, new RegExp('^/_TAGS' + p + '/[0-9a-f]{32}$'));
  });

  it('sibling event: generated path in _meta.path, delivered to /SET@base subscribers (not /SET@base/*)', async () => {
    const base = '/pt/' + h.uid('sib') + '/list';
    const exact = h.collector();
    const all = h.collector();
    const below = h.collector();
    await h.on(b, base, { event_type: 'set' }, exact.handler);
    await h.on(b, base, { event_type: 'all' }, all.handler);
    await h.on(b, base + '/*', { event_type: 'set' }, below.handler);
    const m = spyB.mark();
    const r1 = await h.setSibling(a, base, { n: 1 });
    const r2 = await h.setSibling(a, base, { n: 2 });
    await exact.wait(2);
    await all.wait(2);
    await h.sleep(100);
    assert.equal(below.items.length, 0, 'no event for /SET@base/*');
    h.deq(channels(spyB.since(m)).slice().sort(), ['/ALL@' + base, '/ALL@' + base, '/SET@' + base, '/SET@' + base]);
    assert.notEqual(r1._meta.path, r2._meta.path);
    [r1, r2].forEach((r, i) => {
      assert.match(r._meta.path, new RegExp('^' + base + '/[0-9a-f]{32}$'));
      h.deq(exact.items[i].data, { n: i + 1 });
      h.assertShape(exact.items[i].meta, {
        created: r._meta.created, modified: r._meta.modified, path: r._meta.path, type: 'data', sessionId: b.session.id,
        action: '/SET@' + base, channel: '/SET@' + base,
      }, 'sibling event ' + i);
      assert.equal(all.items[i].meta.path, r._meta.path);
    });
  });

  it('noStore event has only path in _meta (plus type/sessionId/action/channel); noPublish sends no frame at all', async () => {
    const base = '/pt/' + h.uid('flags');
    const ev = h.collector();
    await h.on(b, base + '/*', { event_type: 'all' }, ev.handler);
    const own = h.collector();
    await h.on(a, base + '/*', { event_type: 'all' }, own.handler);
    const mb = spyB.mark();
    const ma = spyA.mark();
    const np = await h.set(a, base + '/quiet', { q: 1 }, { noPublish: true });
    assert.equal(np._meta.published, false);
    await h.remove(a, base + '/quiet', { noPublish: true });
    await h.sleep(150);
    assert.equal(spyB.events(mb).length, 0, 'no data frame to the other client: ' + spyB.dump());
    assert.equal(spyA.events(ma).length, 0, 'no data frame to the writer: ' + spyA.dump());
    assert.equal(ev.items.length + own.items.length, 0);

    await h.set(a, base + '/ns', { t: 1 }, { noStore: true });
    await ev.wait(1);
    h.deq(ev.items[0].data, { t: 1 });
    h.assertShape(ev.items[0].meta, {
      path: base + '/ns', type: 'data', sessionId: b.session.id, action: '/SET@' + base + '/ns', channel: '/ALL@' + base + '/*',
    }, 'noStore event _meta');
    assert.equal(await h.get(a, base + '/ns'), null, 'noStore stored nothing');
  });
});

// =============================================================================================
describe('pubsub: targetClients and noCluster', () => {
  let srv;
  let w;
  let c1;
  let c2;
  let peer;
  before(async () => {
    srv = await h.startServer();
    w = await fresh(srv);
    c1 = await fresh(srv);
    c2 = await fresh(srv);
    peer = await fresh(srv, { info: { clusterName: 'peer-cluster', role: 'peer' } });
  });
  after(() => h.cleanup(srv));

  async function subscribeAll(p, eventType) {
    const cols = {};
    for (const [name, x] of Object.entries({ w, c1, c2, peer })) {
      cols[name] = h.collector();
      await h.on(x.c, p, { event_type: eventType || 'all' }, cols[name].handler);
    }
    return cols;
  }
  const marks = () => ({ w: w.spy.mark(), c1: c1.spy.mark(), c2: c2.spy.mark(), peer: peer.spy.mark() });
  const frameCounts = (m, ch) => ({
    w: w.spy.events(m.w, ch).length, c1: c1.spy.events(m.c1, ch).length,
    c2: c2.spy.events(m.c2, ch).length, peer: peer.spy.events(m.peer, ch).length,
  });

  it('login info is kept on the session (info.clusterName)', () => {
    assert.equal(peer.c.session.info.clusterName, 'peer-cluster');
    assert.equal(peer.c.session.info.role, 'peer');
    assert.equal(peer.c.session.info._browser, false);
    assert.equal(c1.c.session.info.clusterName, undefined);
  });

  it('targetClients: [sessionId] → only that session receives the event (not even the writer)', async () => {
    const p = '/tc/' + h.uid('one') + '/x';
    const cols = await subscribeAll(p);
    let m = marks();
    const r = await h.set(w.c, p, { only: 'c2' }, { targetClients: [c2.c.session.id] });
    assert.equal(r._meta.status, 'ok');
    await cols.c2.wait(1);
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 0, c1: 0, c2: 1, peer: 0 });
    assert.equal(cols.c2.items[0].meta.sessionId, c2.c.session.id);
    h.deq(cols.c2.items[0].data, { only: 'c2' });

    m = marks();
    await h.set(w.c, p, { two: true }, { targetClients: [c1.c.session.id, peer.c.session.id] });
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 0, c1: 1, c2: 0, peer: 1 });

    m = marks();
    await h.remove(w.c, p, { targetClients: [c1.c.session.id] });
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 0, c1: 1, c2: 0, peer: 0 });

    m = marks();
    await h.set(w.c, p, { everyone: true });
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 1, c1: 1, c2: 1, peer: 1 }, 'without targetClients everybody gets it');
  });

  it('targetClients applies per channel: a target with two matching subscriptions gets both', async () => {
    const base = '/tc/' + h.uid('chan');
    const e = h.collector();
    await h.on(c1.c, base + '/*', { event_type: 'set' }, e.handler);
    await h.on(c1.c, base + '/k', { event_type: 'all' }, e.handler);
    await h.on(c2.c, base + '/*', { event_type: 'set' }, () => {});
    const m = marks();
    await h.set(w.c, base + '/k', { v: 1 }, { targetClients: [c1.c.session.id] });
    await e.wait(2);
    await h.sleep(100);
    h.deq(frameCounts(m), { w: 0, c1: 2, c2: 0, peer: 0 });
  });

  it('noCluster: true → sessions whose login info.clusterName is set are skipped', async () => {
    const p = '/nc/' + h.uid('nc') + '/x';
    const cols = await subscribeAll(p);
    let m = marks();
    await h.set(w.c, p, { v: 1 }, { noCluster: true });
    await cols.c1.wait(1);
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 1, c1: 1, c2: 1, peer: 0 });

    m = marks();
    await h.remove(w.c, p, { noCluster: true });
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 1, c1: 1, c2: 1, peer: 0 });

    m = marks();
    await h.set(w.c, p, { v: 2 });
    await cols.peer.wait(1);
    await h.sleep(100);
    h.deq(frameCounts(m), { w: 1, c1: 1, c2: 1, peer: 1 }, 'without noCluster the peer gets it');

    m = marks();
    await h.set(peer.c, p, { v: 3 }, { noCluster: true });
    await h.sleep(150);
    h.deq(frameCounts(m), { w: 1, c1: 1, c2: 1, peer: 0 }, 'a cluster peer writing with noCluster does not get its own event');
  });
});

// =============================================================================================
describe('pubsub: count, off, offPath, offAll and refCount arithmetic', () => {
  let srv;
  let writer;
  before(async () => {
    srv = await h.startServer();
    writer = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  it('count: 1 → handler called once; the client sends off (refCount 1) and the server stops sending (trace 09)', async () => {
    const { c, spy } = await fresh(srv);
    const p = '/cnt/' + h.uid('once') + '/x';
    const calls = [];
    const { id } = await h.on(c, p, { event_type: 'set', count: 1 }, data => {
      // the client sends the off before it calls the handler for the last time
      calls.push({ data: h.plain(data), offSent: spy.out.some(f => f.json && f.json.action === 'off') });
    });
    assert.equal(id, 0);
    const onFrame = spy.out.find(f => f.json && f.json.action === 'on');
    h.deq(onFrame.json.options, { event_type: 'set', count: 1, refCount: 0, timeout: 20000 });
    await h.set(writer, p, { n: 1 });
    const off = await spy.waitOut(j => j && j.action === 'off', 3000, 'off after count reached');
    h.deq({ path: off.json.path, options: off.json.options }, { path: '/SET@' + p, options: { refCount: 1, timeout: 20000 } });
    await spy.waitIn(isReplyTo(off.json.eventId), 3000, 'off reply');
    await h.sleep(50);
    h.deq(calls, [{ data: { n: 1 }, offSent: true }]);

    const m = spy.mark();
    await h.set(writer, p, { n: 2 });
    await h.set(writer, p, { n: 3 });
    await h.sleep(200);
    assert.equal(calls.length, 1, 'handler called once');
    assert.equal(spy.events(m).length, 0, 'server sends nothing after the off (refCount 0→1, 1-1=0): ' + spy.dump());
    await h.disconnect(c);
  });

  it('count: 2 → handler called twice, then off', async () => {
    const { c, spy } = await fresh(srv);
    const p = '/cnt/' + h.uid('twice') + '/x';
    const ev = h.collector();
    await h.on(c, p, { event_type: 'set', count: 2 }, ev.handler);
    await h.set(writer, p, { n: 1 });
    await ev.wait(1);
    assert.equal(spy.out.filter(f => f.json && f.json.action === 'off').length, 0, 'no off after the first event');
    await h.set(writer, p, { n: 2 });
    await ev.wait(2);
    await spy.waitOut(j => j && j.action === 'off' && j.path === '/SET@' + p, 3000, 'off');
    await h.set(writer, p, { n: 3 });
    await h.sleep(150);
    h.deq(ev.items.map(i => i.data), [{ n: 1 }, { n: 2 }]);
    await h.disconnect(c);
  });

  it('off(handle): that handler gets nothing more; the other handler on the channel still does; server count follows refCount (trace 11)', async () => {
    const { c, spy } = await fresh(srv);
    const p = '/off/' + h.uid('h') + '/a';
    const e1 = h.collector();
    const e2 = h.collector();
    const s1 = await h.on(c, p, { event_type: 'set' }, e1.handler); // refCount 0 → server +1
    const s2 = await h.on(c, p, { event_type: 'set' }, e2.handler); // refCount 1 → server +1
    await h.set(writer, p, { n: 1 });
    await e1.wait(1);
    await e2.wait(1);

    await h.off(c, s1.id);
    const off1 = spy.out.filter(f => f.json && f.json.action === 'off').pop();
    h.deq({ path: off1.json.path, options: off1.json.options }, { path: '/SET@' + p, options: { refCount: 1, timeout: 20000 } });
    let m = spy.mark();
    await h.set(writer, p, { n: 2 });
    await e2.wait(2);
    await h.sleep(100);
    assert.equal(e1.items.length, 1, 'off handler not called again');
    assert.equal(spy.events(m).length, 1, 'server count 2-1=1: still one frame');

    await h.off(c, s2.id);
    m = spy.mark();
    await h.set(writer, p, { n: 3 });
    await h.sleep(200);
    assert.equal(e2.items.length, 2);
    assert.equal(spy.events(m).length, 0, 'server count 0: no frame: ' + spy.dump());

    // off of an unknown handle is a no-op
    await h.off(c, 999);
    await h.disconnect(c);
  });

  it('offPath(pattern): handlers of every matching channel stop; off carries the local listener count', async () => {
    const { c, spy } = await fresh(srv);
    const base = '/off/' + h.uid('path');
    const ex = h.collector();
    const ey = h.collector();
    const ez = h.collector();
    const keep = h.collector();
    await h.on(c, base + '/x/*', { event_type: 'set' }, ex.handler); // refCount 0 → 1
    await h.on(c, base + '/y', { event_type: 'set' }, ey.handler); // refCount 1 → 1
    await h.on(c, base + '/z/*', { event_type: 'all' }, ez.handler); // refCount 2 → 2
    await h.on(c, '/keep' + base, { event_type: 'set' }, keep.handler); // refCount 3 → 3
    await h.offPath(c, base + '/*');
    const offs = spy.out.filter(f => f.json && f.json.action === 'off').map(f => ({ path: f.json.path, refCount: f.json.options.refCount }));
    h.deq(offs.sort((p, q) => (p.path < q.path ? -1 : 1)), [
      { path: '/ALL@' + base + '/z/*', refCount: 1 },
      { path: '/SET@' + base + '/x/*', refCount: 1 },
      { path: '/SET@' + base + '/y', refCount: 1 },
    ]);
    const m = spy.mark();
    await h.set(writer, base + '/x/1', { v: 1 });
    await h.set(writer, base + '/y', { v: 1 });
    await h.set(writer, base + '/z/1', { v: 1 });
    await h.set(writer, '/keep' + base, { v: 1 });
    await keep.wait(1);
    await h.sleep(150);
    assert.equal(ex.items.length + ey.items.length + ez.items.length, 0, 'no handler of an offPath channel is called');
    // refCount arithmetic copied from the original (wire.md §8): x and y reach 0 and are dropped,
    // z was counted 2 and only 1 was taken off, so the server keeps sending it and the client drops it
    h.deq(channels(spy.since(m)).sort(), ['/ALL@' + base + '/z/*', '/SET@/keep' + base].sort(), spy.dump());
    await h.disconnect(c);
  });

  it('offAll(): off "*" with refCount 0; the server sends nothing for any channel afterwards', async () => {
    const { c, spy } = await fresh(srv);
    const base = '/off/' + h.uid('all');
    const ev = h.collector();
    await h.on(c, base + '/a', { event_type: 'set' }, ev.handler);
    await h.on(c, base + '/*', { event_type: 'all' }, ev.handler);
    await h.on(c, base + '/*', { event_type: 'all' }, ev.handler);
    await onAll(c, ev.handler);
    await h.offAll(c);
    const off = spy.out.filter(f => f.json && f.json.action === 'off').pop();
    h.deq({ path: off.json.path, options: off.json.options }, { path: '*', options: { refCount: 0, timeout: 20000 } });
    const m = spy.mark();
    await h.set(writer, base + '/a', { v: 1 });
    await h.remove(writer, base + '/a');
    await h.sleep(200);
    assert.equal(ev.items.length, 0);
    assert.equal(spy.events(m).length, 0, 'no data frame after off *: ' + spy.dump());
    // subscribing again works
    await h.on(c, base + '/a', { event_type: 'set' }, ev.handler);
    await h.set(writer, base + '/a', { v: 2 });
    await ev.wait(1);
    await h.disconnect(c);
  });

  describe('refCount on raw frames', () => {
    let r;
    before(async () => {
      r = await h.RawSocket.open(srv.port);
      await r.login();
    });

    it('on twice with refCount 0 (counts 1 each) → off refCount 1 → still subscribed → off refCount 1 → gone', async () => {
      const p = '/rc/' + h.uid('zero');
      const ch = '/SET@' + p;
      assert.equal((await rawOn(r, ch, { refCount: 0 }))._meta.status, 'ok');
      assert.equal((await rawOn(r, ch, { refCount: 0 }))._meta.status, 'ok');
      let evs = await rawSetEvents(r, p);
      assert.equal(evs.length, 1, 'one frame per channel, whatever the count');
      assert.equal(evs[0]._meta.channel, ch);
      h.assertShape(await rawOff(r, ch, { refCount: 1 }), {
        data: {}, _meta: { status: 'ok', type: 'response', published: false, eventId: h.m.any, sessionId: r.session.id, action: 'off' }, protocol: '1.1.0',
      }, 'off reply');
      evs = await rawSetEvents(r, p);
      assert.equal(evs.length, 1, 'count 2-1 = 1: still subscribed');
      await rawOff(r, ch, { refCount: 1 });
      evs = await rawSetEvents(r, p);
      assert.equal(evs.length, 0, 'count 0: unsubscribed');
    });

    it('on with refCount 3 → off 2 keeps it, off 1 removes it; missing refCount on on counts 1', async () => {
      const p = '/rc/' + h.uid('three');
      const ch = '/ALL@' + p;
      await rawOn(r, ch, { refCount: 3 });
      await rawOff(r, ch, { refCount: 2 });
      assert.equal((await rawSetEvents(r, p)).length, 1, '3-2 = 1');
      await rawOff(r, ch, { refCount: 1 });
      assert.equal((await rawSetEvents(r, p)).length, 0, '1-1 = 0');

      const ch2 = '/SET@' + p + '/*';
      await rawOn(r, ch2, {});
      assert.equal((await rawSetEvents(r, p + '/x')).length, 1);
      await rawOff(r, ch2, { refCount: 1 });
      assert.equal((await rawSetEvents(r, p + '/x')).length, 0, 'missing refCount on `on` counted 1');
    });

    it('off with refCount 0 changes nothing; off with a bigger refCount removes the channel; off of an unknown channel is ok', async () => {
      const p = '/rc/' + h.uid('edge');
      const ch = '/SET@' + p;
      await rawOn(r, ch, { refCount: 2 });
      await rawOff(r, ch, { refCount: 0 });
      assert.equal((await rawSetEvents(r, p)).length, 1, 'refCount 0: no change');
      await rawOff(r, ch, { refCount: 10 });
      assert.equal((await rawSetEvents(r, p)).length, 0, '2-10 ≤ 0 removes');
      const unknown = await rawOff(r, '/SET@/never/subscribed', { refCount: 1 });
      assert.equal(unknown._meta.status, 'ok');
      assert.equal(unknown._meta.action, 'off');
    });

    it('off with path "*" removes every subscription of the session (exact, wildcard, /ALL@*), refCount ignored', async () => {
      const p = '/rc/' + h.uid('star');
      await rawOn(r, '/SET@' + p, { refCount: 5 });
      await rawOn(r, '/ALL@' + p + '*', { refCount: 1 });
      await rawOn(r, '/ALL@*', { refCount: 0 });
      await rawOn(r, '/REMOVE@' + p, { refCount: 1 });
      const evs = await rawSetEvents(r, p);
      h.deq(evs.map(e => e._meta.channel), ['/SET@' + p, '/ALL@*', '/ALL@' + p + '*']);
      const reply = await rawOff(r, '*', { refCount: 1 });
      assert.equal(reply._meta.status, 'ok');
      assert.equal((await rawSetEvents(r, p)).length, 0, 'nothing after off *');
      const start = r.frames.length;
      await r.request({ action: 'remove', path: p, protocol: '1.1.0' });
      assert.equal(r.frames.slice(start).filter(f => isEvent(f.json)).length, 0, 'no remove event either');
    });

    it('off "*" on one socket does not touch another socket\'s subscriptions', async () => {
      const p = '/rc/' + h.uid('iso');
      const r2 = await h.RawSocket.open(srv.port);
      await r2.login();
      await rawOn(r, '/SET@' + p, { refCount: 1 });
      await rawOn(r2, '/SET@' + p, { refCount: 1 });
      await rawOff(r2, '*', { refCount: 0 });
      assert.equal((await rawSetEvents(r, p)).length, 1);
      assert.equal((await rawSetEvents(r2, p)).length, 0);
      await r2.close();
    });
  });
});

// =============================================================================================
describe('pubsub: initialCallback and initialEmit (trace 10)', () => {
  let srv;
  let c;
  let spy;
  let base;
  const items = {};
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv);
    spy = h.spyClient(c);
    base = '/iv/' + h.uid('init');
    // written in reverse path order: initial values come in path order (semantics §5.7)
    items.b = await h.set(c, base + '/b', { v: 'b' });
    await h.sleep(5);
    items.a = await h.set(c, base + '/a', { v: 'a' });
  });
  after(() => h.cleanup(srv));

  const itemOf = (r, data) => Object.assign({}, data, { _meta: { created: r._meta.created, modified: r._meta.modified, path: r._meta.path, _id: r._meta.path } });

  it('initialCallback on a wildcard: the on callback gets [refCount, array of {...data, _meta:{created, modified, path, _id}}]; the handler is not called for them', async () => {
    const ev = h.collector();
    const m = spy.mark();
    const { id, response } = await h.on(c, base + '/*', { event_type: 'set', initialCallback: true }, ev.handler);
    assert.equal(typeof id, 'number');
    assert.ok(Array.isArray(response), 'callback value is an array: ' + h.safeJson(response));
    h.deq(response, [itemOf(items.a, { v: 'a' }), itemOf(items.b, { v: 'b' })]);
    assert.equal(response._meta.status, 'ok', 'the client hangs the reply _meta on the array');
    assert.equal(response._meta.action, 'on');

    // the raw reply: data array plus the redundant initialValues array
    const reply = spy.since(m).find(f => f.json && f.json._meta && f.json._meta.action === 'on').json;
    h.assertShape(reply, {
      data: [itemOf(items.a, { v: 'a' }), itemOf(items.b, { v: 'b' })],
      _meta: { status: 'ok', type: 'response', published: false, eventId: h.m.num, sessionId: c.session.id, action: 'on' },
      initialValues: [
        { data: itemOf(items.a, { v: 'a' }), _meta: itemOf(items.a, {})._meta },
        { data: itemOf(items.b, { v: 'b' }), _meta: itemOf(items.b, {})._meta },
      ],
      protocol: '1.1.0',
    }, 'initialCallback reply frame');

    await h.sleep(150);
    assert.equal(ev.items.length, 0, 'initial values are not passed to the handler');
    assert.equal(spy.events(m).length, 0, 'no data frames for initialCallback');
    await h.set(c, base + '/c', { v: 'c' });
    await ev.wait(1);
    h.deq(ev.items[0].data, { v: 'c' });
    await h.remove(c, base + '/c');
    await h.offPath(c, base + '/*');
  });

  it('initialCallback on an exact path → one-item array; missing exact path and empty wildcard → [] (and initialValues [])', async () => {
    const one = await h.on(c, base + '/a', { event_type: 'set', initialCallback: true }, () => {});
    h.deq(one.response, [itemOf(items.a, { v: 'a' })]);
    const m = spy.mark();
    const none = await h.on(c, base + '/missing', { event_type: 'all', initialCallback: true }, () => {});
    h.deq(none.response, []);
    const empty = await h.on(c, base + '/none/*', { event_type: 'set', initialCallback: true }, () => {});
    h.deq(empty.response, []);
    const replies = spy.since(m).filter(f => f.json && f.json._meta && f.json._meta.action === 'on').map(f => f.json);
    assert.equal(replies.length, 2);
    for (const rep of replies) {
      h.assertShape(rep, {
        data: [], _meta: { status: 'ok', type: 'response', published: false, eventId: h.m.num, sessionId: c.session.id, action: 'on' },
        initialValues: [], protocol: '1.1.0',
      }, 'empty initialCallback reply');
    }
    await h.offAll(c);
  });

  it('initialEmit on a wildcard: reply data [], then one event per existing value (path order, on-request eventId), before later events', async () => {
    const ev = h.collector();
    const m = spy.mark();
    const { response } = await h.on(c, base + '/*', { event_type: 'set', initialEmit: true }, ev.handler);
    h.deq(response, []);
    await ev.wait(2);
    const onOut = spy.out.filter(f => f.json && f.json.action === 'on').pop().json;
    h.deq(onOut.options, { event_type: 'set', initialEmit: true, count: 0, refCount: onOut.options.refCount, timeout: 20000 });
    const ch = '/SET@' + base + '/*';
    h.deq(ev.items.map(i => i.data), [{ v: 'a' }, { v: 'b' }]);
    [items.a, items.b].forEach((r, i) => h.assertShape(ev.items[i].meta, {
      created: r._meta.created, modified: r._meta.modified, path: r._meta.path, _id: r._meta.path,
      channel: ch, sessionId: c.session.id, action: ch, type: 'data', eventId: onOut.eventId, status: 'ok', published: false,
    }, 'initialEmit event ' + i));
    // wire: the on reply first, then the initial events
    const seq = spy.since(m).filter(f => f.json && f.json._meta).map(f => f.json._meta.type);
    h.deq(seq, ['response', 'data', 'data'], spy.dump());

    await h.set(c, base + '/c', { v: 'c' });
    await ev.wait(3);
    h.deq(ev.items.map(i => i.data), [{ v: 'a' }, { v: 'b' }, { v: 'c' }], 'initial values first, then later events');
    h.assertShape(ev.items[2].meta, {
      created: h.m.ts, modified: h.m.ts, path: base + '/c', type: 'data', sessionId: c.session.id, action: '/SET@' + base + '/c', channel: ch,
    }, 'later event');
    await h.remove(c, base + '/c');
    await h.offAll(c);
  });

  it('initialEmit on an exact path → one event; on a missing path or empty wildcard → none', async () => {
    const ev = h.collector();
    await h.on(c, base + '/b', { event_type: 'all', initialEmit: true }, ev.handler);
    await ev.wait(1);
    h.deq(ev.items[0].data, { v: 'b' });
    assert.equal(ev.items[0].meta.channel, '/ALL@' + base + '/b');
    assert.equal(ev.items[0].meta.action, '/ALL@' + base + '/b');
    const none = h.collector();
    const m = spy.mark();
    const r1 = await h.on(c, base + '/missing', { event_type: 'set', initialEmit: true }, none.handler);
    const r2 = await h.on(c, base + '/empty/*', { event_type: 'set', initialEmit: true }, none.handler);
    h.deq(r1.response, []);
    h.deq(r2.response, []);
    await h.sleep(150);
    assert.equal(none.items.length, 0);
    assert.equal(spy.events(m).length, 0);
    assert.equal(ev.items.length, 1);
    await h.offAll(c);
  });

  it('initialEmit events go to every handler of the channel on that socket (client dispatch by channel)', async () => {
    const first = h.collector();
    const second = h.collector();
    await h.on(c, base + '/*', { event_type: 'set' }, first.handler);
    await h.on(c, base + '/*', { event_type: 'set', initialEmit: true }, second.handler);
    await second.wait(2);
    await first.wait(2);
    h.deq(first.items.map(i => i.data), [{ v: 'a' }, { v: 'b' }]);
    await h.offAll(c);
  });

  it('initialCallback and initialEmit together: initialCallback wins (array in the callback, no data frames)', async () => {
    const ev = h.collector();
    const m = spy.mark();
    const { response } = await h.on(c, base + '/*', { event_type: 'set', initialCallback: true, initialEmit: true }, ev.handler);
    h.deq(response, [itemOf(items.a, { v: 'a' }), itemOf(items.b, { v: 'b' })]);
    await h.sleep(150);
    assert.equal(spy.events(m).length, 0, spy.dump());
    assert.equal(ev.items.length, 0);
    await h.offAll(c);
  });
});

// =============================================================================================
describe('pubsub: permissions (secure)', () => {
  const CONFIG = {
    secure: true,
    groups: [{ name: 'subsLimited', permissions: { '/allowed/*': { actions: ['get', 'on'] } } }],
    users: [{ username: 'subber', password: 'subber_pw', groups: ['subsLimited'] }],
  };
  let srv;
  let admin;
  let lim;
  let spy;
  before(async () => {
    srv = await h.startServer({ config: CONFIG });
    admin = await h.connect(srv);
    lim = await h.connect(srv, { username: 'subber', password: 'subber_pw' });
    spy = h.spyClient(lim);
    await h.set(admin, '/forbidden/seed', { secret: 1 });
  });
  after(() => h.cleanup(srv));

  const isAccessDenied = e => {
    assert.equal(e.name, 'AccessDenied', 'error: ' + h.safeJson(e) + ' name ' + e.name);
    assert.equal(e.message, 'unauthorized');
  };

  it('on a permitted path works and delivers events', async () => {
    const ev = h.collector();
    await h.on(lim, '/allowed/*', { event_type: 'set' }, ev.handler);
    await h.set(admin, '/allowed/x', { v: 1 });
    await ev.wait(1);
    h.deq(ev.items[0].data, { v: 1 });
    assert.equal(ev.items[0].meta.sessionId, lim.session.id);
  });

  it('on a forbidden path → AccessDenied for set / remove / all; no subscription is left (no frames)', async () => {
    const ev = h.collector();
    for (const et of ['set', 'remove', 'all']) {
      isAccessDenied(await h.expectError(h.on(lim, '/forbidden/*', { event_type: et }, ev.handler), 'on forbidden ' + et));
    }
    isAccessDenied(await h.expectError(h.on(lim, '/forbidden/seed', { event_type: 'all', initialCallback: true }, ev.handler), 'initialCallback forbidden'));
    isAccessDenied(await h.expectError(h.on(lim, '/forbidden/seed', { event_type: 'all', initialEmit: true }, ev.handler), 'initialEmit forbidden'));
    assert.equal(Object.keys(lim.events).filter(k => k.includes('/forbidden')).length, 0, 'the client dropped the failed listeners');
    const m = spy.mark();
    await h.set(admin, '/forbidden/x', { v: 1 });
    await h.remove(admin, '/forbidden/x');
    await h.set(admin, '/forbidden/seed', { secret: 2 });
    await h.sleep(200);
    assert.equal(spy.events(m).length, 0, 'no data frame reaches the limited session: ' + spy.dump());
    assert.equal(ev.items.length, 0);
  });

  it('onAll (/ALL@*) is denied for a non-admin user and allowed for _ADMIN', async () => {
    const ev = h.collector();
    isAccessDenied(await h.expectError(onAll(lim, ev.handler), 'onAll as limited user'));
    const mine = h.collector();
    await onAll(admin, mine.handler);
    const m = spy.mark();
    await h.set(admin, '/anything/' + h.uid('oa'), { v: 1 });
    await mine.wait(1);
    assert.equal(mine.items[0].meta.channel, '/ALL@*');
    await h.sleep(100);
    assert.equal(spy.events(m).length, 0);
    await h.offAll(admin);
  });
});

// =============================================================================================
describe('pubsub: disconnect cleans up', () => {
  let srv;
  let writer;
  before(async () => {
    srv = await h.startServer();
    writer = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  it('after a subscriber disconnects (and after one is destroyed without off), a publish still works and the other subscriber still receives', async () => {
    const p = '/dc/' + h.uid('leave') + '/x';
    const gone = await h.connect(srv);
    const dropped = await h.connect(srv);
    const { c: stay, spy } = await fresh(srv);
    const eg = h.collector();
    const es = h.collector();
    await h.on(gone, p, { event_type: 'all' }, eg.handler);
    await h.on(dropped, p, { event_type: 'all' }, eg.handler);
    await h.on(stay, p, { event_type: 'all' }, es.handler);
    await h.set(writer, p, { n: 1 });
    await eg.wait(2);
    await es.wait(1);

    await h.disconnect(gone); // off * then close
    // socket closed without off
    await h.withTimeout(new Promise(resolve => { dropped.pubsub.once('end', resolve); dropped.pubsub.end(); }), 3000, 'end');
    await h.sleep(100);
    const m = spy.mark();
    const r = await h.set(writer, p, { n: 2 });
    assert.equal(r._meta.status, 'ok');
    assert.equal(r._meta.published, true);
    await es.wait(2);
    const r2 = await h.remove(writer, p);
    assert.equal(r2.removed, 1);
    await es.wait(3);
    await h.sleep(100);
    assert.equal(eg.items.length, 2, 'departed clients get nothing');
    assert.equal(spy.events(m).length, 2, 'one frame per publish: ' + spy.dump());
  });

  it('a raw socket that closes without off leaves no subscription behind', async () => {
    const base = '/dc/' + h.uid('raw');
    for (let i = 0; i < 3; i++) {
      const r = await h.RawSocket.open(srv.port);
      await r.login();
      await rawOn(r, '/ALL@' + base + '/*', { refCount: 1 });
      await rawOn(r, '/SET@' + base + '/x', { refCount: 2 });
      await rawOn(r, '/ALL@*', { refCount: 0 });
      assert.equal((await rawSetEvents(r, base + '/x')).length, 3);
      await r.close();
    }
    await h.sleep(100);
    // a new raw session (likely reusing a released session slot) only sees its own channel
    const r = await h.RawSocket.open(srv.port);
    await r.login();
    await rawOn(r, '/SET@' + base + '/*', { refCount: 1 });
    const evs = await rawSetEvents(r, base + '/x');
    h.deq(evs.map(e => e._meta.channel), ['/SET@' + base + '/*'], 'only the new subscription: ' + r.dump());
    // and a new client with the same channel as the departed ones gets exactly one event per publish
    const { c, spy } = await fresh(srv);
    const ev = h.collector();
    await h.on(c, base + '/*', { event_type: 'all' }, ev.handler);
    const m = spy.mark();
    await h.set(writer, base + '/x', { n: 1 });
    await h.set(writer, base + '/y', { n: 2 });
    await ev.wait(2);
    await h.sleep(100);
    h.deq(channels(spy.since(m)), ['/ALL@' + base + '/*', '/ALL@' + base + '/*']);
    assert.equal(ev.items.length, 2);
    await r.close();
  });
});
