'use strict';
// Minimal pub/sub: event shapes for set/merge/tag/sibling/noStore/remove, ordering before the
// writer's reply, one event per matching channel (decisions.md; semantics §5.3–5.5).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

describe('pubsub (basic)', () => {
  let srv;
  let c;
  let other;
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv);
    other = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  const setMeta = (c, p, channel, extra) => Object.assign({
    created: h.m.ts, modified: h.m.ts, path: p, type: 'data', sessionId: c.session.id,
    action: '/SET@' + p, channel,
  }, extra || {});

  it('on() reply is {data:{}, _meta:{status, type, published:false, eventId, sessionId, action:on}}', async () => {
    const b = '/ps/' + h.uid('reply');
    const { id, response } = await h.on(c, b + '/*', { event_type: 'set' }, () => {});
    assert.equal(typeof id, 'number');
    h.assertShape(response._meta, {
      status: 'ok', type: 'response', published: false, eventId: h.m.num, sessionId: c.session.id, action: 'on',
    }, 'on reply _meta');
  });

  it('set event shape (no eventId/status/published), writer receives its own event', async () => {
    const b = '/ps/' + h.uid('set');
    const ev = h.collector();
    await h.on(c, b + '/*', { event_type: 'set' }, ev.handler);
    const r = await h.set(c, b + '/a', { v: 1 });
    await ev.wait(1);
    h.deq(ev.items[0].data, { v: 1 });
    h.assertShape(ev.items[0].meta, setMeta(c, b + '/a', '/SET@' + b + '/*', { created: r._meta.created, modified: r._meta.modified }), 'set event _meta');
  });

  it('events reach the writer before its reply', async () => {
    const b = '/ps/' + h.uid('order');
    const log = [];
    await h.on(c, b + '/*', { event_type: 'set' }, () => log.push('event'));
    await h.set(c, b + '/x', { v: 1 }).then(() => log.push('reply'));
    await h.remove(c, b + '/x').then(() => log.push('reply-remove'));
    h.deq(log, ['event', 'reply', 'reply-remove']);

    // and exactly on the wire
    const r = await h.RawSocket.open(srv.port);
    await r.login();
    const sub = await r.request({ action: 'on', path: '/ALL@' + b + '/*', options: { event_type: 'all', count: 0, refCount: 0 }, protocol: '1.1.0' });
    assert.equal(sub._meta.status, 'ok', JSON.stringify(sub));
    const before = r.frames.length;
    await r.request({ action: 'set', path: b + '/raw', data: { v: 2 }, protocol: '1.1.0' });
    await r.request({ action: 'remove', path: b + '/raw', protocol: '1.1.0' });
    const seq = r.frames.slice(before).map(f => f.json && f.json._meta && f.json._meta.type + ':' + f.json._meta.action);
    h.deq(seq, ['data:/SET@' + b + '/raw', 'response:/SET@' + b + '/raw', 'data:/REMOVE@' + b + '/raw', 'response:/REMOVE@' + b + '/raw'], 'frames: ' + r.dump());
    const evFrame = r.frames[before].json;
    h.assertShape(evFrame, {
      data: { v: 2 },
      _meta: { created: h.m.ts, modified: h.m.ts, path: b + '/raw', type: 'data', sessionId: r.session.id, action: '/SET@' + b + '/raw', channel: '/ALL@' + b + '/*' },
      protocol: '1.1.0',
    }, 'raw set event');
    await r.close();
  });

  it('merge event carries the full merged record', async () => {
    const b = '/ps/' + h.uid('merge');
    await h.set(c, b + '/m', { a: 1, b: 2 });
    const ev = h.collector();
    await h.on(c, b + '/*', { event_type: 'set' }, ev.handler);
    const r = await h.set(c, b + '/m', { c: 3, b: null }, { merge: true });
    await ev.wait(1);
    h.deq(ev.items[0].data, { c: 3, b: 2, a: 1 });
    h.assertShape(ev.items[0].meta, setMeta(c, b + '/m', '/SET@' + b + '/*', { created: r._meta.created, modified: r._meta.modified }), 'merge event _meta');
  });

  it('tag event carries the snapshot, _meta.path = tag path, _meta.tag', async () => {
    const b = '/ps/' + h.uid('tag');
    const s = await h.set(c, b + '/t', { v: 'orig' });
    const ev = h.collector();
    await h.on(c, b + '/*', { event_type: 'set' }, ev.handler);
    const r = await h.set(c, b + '/t', null, { tag: 'SNAP' });
    await ev.wait(1);
    const { data, meta } = ev.items[0];
    h.assertShape(data, { data: { v: 'orig' }, _meta: { path: b + '/t' }, created: s._meta.created, modified: h.m.ts, _id: b + '/t' }, 'tag event data');
    h.assertShape(meta, {
      created: h.m.ts, modified: h.m.ts, path: r._meta.path, tag: 'SNAP', type: 'data',
      sessionId: c.session.id, action: '/SET@' + b + '/t', channel: '/SET@' + b + '/*',
    }, 'tag event _meta');
    assert.match(meta.path, new RegExp('^/_TAGS' + b + '/t/[0-9a-f]{32}$'));
  });

  it('sibling event uses the base path for channel matching, _meta.path is the generated path', async () => {
    const b = '/ps/' + h.uid('sib');
    const exact = h.collector();
    const below = h.collector();
    const parent = h.collector();
    await h.on(c, b + '/base', { event_type: 'set' }, exact.handler);
    await h.on(c, b + '/base/*', { event_type: 'set' }, below.handler);
    await h.on(c, b + '/*', { event_type: 'set' }, parent.handler);
    const r = await h.setSibling(c, b + '/base', { s: 1 });
    await exact.wait(1);
    await parent.wait(1);
    await h.sleep(150);
    assert.equal(below.items.length, 0, '/SET@base/* does not see sibling events (published on the base path)');
    h.deq(exact.items[0].data, { s: 1 });
    h.assertShape(exact.items[0].meta, {
      created: h.m.ts, modified: h.m.ts, path: r._meta.path, type: 'data', sessionId: c.session.id,
      action: '/SET@' + b + '/base', channel: '/SET@' + b + '/base',
    }, 'sibling event _meta');
    assert.equal(parent.items[0].meta.channel, '/SET@' + b + '/*');
  });

  it('noStore event has path but no timestamps; noPublish sends none', async () => {
    const b = '/ps/' + h.uid('nostore');
    const ev = h.collector();
    await h.on(c, b + '/*', { event_type: 'set' }, ev.handler);
    await h.set(c, b + '/quiet', { q: 1 }, { noPublish: true });
    await h.set(c, b + '/ns', { t: 1 }, { noStore: true });
    await ev.wait(1);
    await h.sleep(150);
    assert.equal(ev.items.length, 1, 'only the noStore set is published: ' + h.safeJson(ev.items));
    h.deq(ev.items[0].data, { t: 1 });
    h.assertShape(ev.items[0].meta, {
      path: b + '/ns', type: 'data', sessionId: c.session.id, action: '/SET@' + b + '/ns', channel: '/SET@' + b + '/*',
    }, 'noStore event _meta');
  });

  it('scalar set event carries {value}', async () => {
    const b = '/ps/' + h.uid('scalar');
    const ev = h.collector();
    await h.on(c, b + '/*', { event_type: 'set' }, ev.handler);
    await h.set(c, b + '/s', 'just a string');
    await ev.wait(1);
    h.deq(ev.items[0].data, { value: 'just a string' });
  });

  it('remove events: {removed:n} on the request path; wildcard remove publishes once on the pattern', async () => {
    const b = '/ps/' + h.uid('rm');
    for (const i of [1, 2, 3]) await h.set(c, b + '/' + i, { i });
    const wild = h.collector();
    const exact2 = h.collector();
    await h.on(c, b + '/*', { event_type: 'remove' }, wild.handler);
    await h.on(c, b + '/2', { event_type: 'remove' }, exact2.handler);

    const r1 = await h.remove(c, b + '/1');
    await wild.wait(1);
    h.deq(wild.items[0].data, { removed: 1 });
    h.assertShape(wild.items[0].meta, {
      timestamp: r1._meta.timestamp, path: b + '/1', type: 'data', sessionId: c.session.id,
      action: '/REMOVE@' + b + '/1', channel: '/REMOVE@' + b + '/*',
    }, 'remove event _meta');

    const r2 = await h.remove(c, b + '/*');
    assert.equal(r2.removed, 2);
    await wild.wait(2);
    h.deq(wild.items[1].data, { removed: 2 });
    h.assertShape(wild.items[1].meta, {
      timestamp: h.m.ts, path: b + '/*', type: 'data', sessionId: c.session.id,
      action: '/REMOVE@' + b + '/*', channel: '/REMOVE@' + b + '/*',
    }, 'wildcard remove event _meta');
    await h.sleep(150);
    assert.equal(wild.items.length, 2, 'one event for the wildcard remove: ' + h.safeJson(wild.items));
    assert.equal(exact2.items.length, 0, 'per-path subscribers are not told about a wildcard remove');

    const r3 = await h.remove(c, b + '/9');
    assert.equal(r3.removed, 0);
    await wild.wait(3);
    h.deq(wild.items[2].data, { removed: 0 });
  });

  it('one event per matching subscription channel', async () => {
    const b = '/ps/' + h.uid('multi');
    const got = [];
    const rec = tag => (data, meta) => got.push(tag + ' ' + meta.channel);
    await h.on(c, b + '/*', { event_type: 'set' }, rec('wildSet'));
    await h.on(c, b + '/a', { event_type: 'set' }, rec('exactSet'));
    await h.on(c, b + '/a', { event_type: 'all' }, rec('exactAll'));
    await h.on(c, b + '*', { event_type: 'all' }, rec('wildAll'));
    await h.on(c, b + '/a', { event_type: 'remove' }, rec('exactRemove'));
    await h.set(c, b + '/a', { v: 1 });
    await h.sleep(150);
    h.deq(got.slice().sort(), [
      'exactAll /ALL@' + b + '/a',
      'exactSet /SET@' + b + '/a',
      'wildAll /ALL@' + b + '*',
      'wildSet /SET@' + b + '/*',
    ]);
  });

  it('subscription patterns are anchored (no /x/… match, end-anchored, literal regex chars)', async () => {
    const b = '/ps/' + h.uid('anc');
    const ev = h.collector();
    await h.on(c, b + '/m/*/c', { event_type: 'set' }, ev.handler);
    await h.on(c, b + '/dot.*', { event_type: 'set' }, ev.handler);
    await h.set(c, b + '/m/x/cde', { no: 1 });
    await h.set(c, '/x' + b + '/m/x/c', { no: 2 });
    await h.set(c, b + '/dotX', { no: 3 });
    await h.set(c, b + '/m/x/c', { yes: 1 });
    await h.set(c, b + '/dot.y', { yes: 2 });
    await ev.wait(2);
    await h.sleep(150);
    h.deq(ev.items.map(i => i.meta.path).sort(), [b + '/dot.y', b + '/m/x/c']);
  });

  it('another client receives the event with its own sessionId', async () => {
    const b = '/ps/' + h.uid('two');
    const ev = h.collector();
    await h.on(other, b + '/*', { event_type: 'all' }, ev.handler);
    await h.set(c, b + '/k', { from: 'c' });
    await h.remove(c, b + '/k');
    await ev.wait(2);
    assert.equal(ev.items[0].meta.sessionId, other.session.id);
    assert.equal(ev.items[0].meta.channel, '/ALL@' + b + '/*');
    assert.equal(ev.items[0].meta.action, '/SET@' + b + '/k');
    assert.equal(ev.items[1].meta.action, '/REMOVE@' + b + '/k');
    h.deq(ev.items[1].data, { removed: 1 });
  });

  it('off(listenerId) and offPath stop delivery to the client', async () => {
    const b = '/ps/' + h.uid('off');
    const ev1 = h.collector();
    const ev2 = h.collector();
    const s1 = await h.on(c, b + '/one/*', { event_type: 'set' }, ev1.handler);
    await h.on(c, b + '/two/*', { event_type: 'set' }, ev2.handler);
    await h.off(c, s1.id);
    await h.offPath(c, b + '/two/*');
    await h.set(c, b + '/one/x', { v: 1 });
    await h.set(c, b + '/two/x', { v: 1 });
    await h.sleep(200);
    assert.equal(ev1.items.length, 0);
    assert.equal(ev2.items.length, 0);
  });
});
