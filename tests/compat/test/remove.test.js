'use strict';
// remove: exact, wildcard, missing, anchored patterns, noPublish (semantics §3.5, §4.11; decisions.md).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

describe('remove', () => {
  let srv;
  let c;
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  it('exact: {removed:1} with _meta {timestamp, path, type, status, published, eventId, sessionId, action}', async () => {
    const p = '/rm/' + h.uid('one');
    await h.set(c, p, { a: 1 });
    const before = Date.now();
    const r = await h.remove(c, p);
    assert.equal(r.removed, 1);
    h.assertShape(r._meta, {
      timestamp: h.m.ts, path: p, type: 'response', status: 'ok', published: true,
      eventId: h.m.num, sessionId: c.session.id, action: '/REMOVE@' + p,
    }, 'remove reply _meta');
    assert.ok(r._meta.timestamp >= before - 1000 && r._meta.timestamp <= Date.now() + 1000);
    assert.equal(await h.get(c, p), null);
  });

  it('exact: raw reply frame', async () => {
    const p = 'remove/' + h.uid('raw');
    const r = await h.RawSocket.open(srv.port);
    await r.login();
    await r.request({ action: 'set', path: p, data: { x: 1 }, protocol: '1.1.0' });
    const reply = await r.request({ action: 'remove', path: p, options: { timeout: 20000 }, protocol: '1.1.0' });
    h.assertShape(reply, {
      data: { removed: 1 },
      _meta: { timestamp: h.m.ts, path: p, type: 'response', status: 'ok', published: true, eventId: reply._meta.eventId, action: '/REMOVE@' + p },
      protocol: '1.1.0',
    }, 'remove reply');
    await r.close();
  });

  it('wildcard removes every match and reports the count on the pattern path', async () => {
    const b = '/rm/' + h.uid('multi');
    for (const i of [1, 2, 3]) await h.set(c, b + '/' + i, { i });
    await h.set(c, b + '/deeper/4', { i: 4 });
    const r = await h.remove(c, b + '/*');
    assert.equal(r.removed, 4);
    assert.equal(r._meta.path, b + '/*');
    assert.equal(r._meta.action, '/REMOVE@' + b + '/*');
    assert.equal(r._meta.published, true);
    h.deq(await h.get(c, b + '/*'), []);
  });

  it('missing path: removed 0, still published', async () => {
    const p = '/rm/' + h.uid('none');
    const r = await h.remove(c, p);
    assert.equal(r.removed, 0);
    assert.equal(r._meta.published, true);
    assert.equal(r._meta.action, '/REMOVE@' + p);
    assert.equal(r._meta.path, p);
    const w = await h.remove(c, p + '/*');
    assert.equal(w.removed, 0);
  });

  it('wildcard remove is anchored: /r/* leaves /x/r/3', async () => {
    const id = h.uid('ranc');
    await h.set(c, '/' + id + '/1', { v: 1 });
    await h.set(c, '/' + id + '/2', { v: 2 });
    await h.set(c, '/x/' + id + '/3', { v: 3 });
    const r = await h.remove(c, '/' + id + '/*');
    assert.equal(r.removed, 2);
    assert.equal((await h.get(c, '/x/' + id + '/3')).v, 3, '/x/…/3 must survive');
  });

  it('wildcard remove is end-anchored and treats regex characters literally', async () => {
    const id = h.uid('rend');
    await h.set(c, '/' + id + '/m/x/c', { v: 1 });
    await h.set(c, '/' + id + '/m/x/cde', { v: 2 });
    const r = await h.remove(c, '/' + id + '/m/*/c');
    assert.equal(r.removed, 1);
    assert.equal((await h.get(c, '/' + id + '/m/x/cde')).v, 2);

    await h.set(c, '/' + id + '/d/a.b/1', { v: 3 });
    await h.set(c, '/' + id + '/d/aXb/1', { v: 4 });
    const r2 = await h.remove(c, '/' + id + '/d/a.b/*');
    assert.equal(r2.removed, 1);
    assert.equal((await h.get(c, '/' + id + '/d/aXb/1')).v, 4);

    await h.set(c, '/' + id + '/p/(x/1', { v: 5 });
    const r3 = await h.remove(c, '/' + id + '/p/(x/*');
    assert.equal(r3.removed, 1, 'a ( in the pattern is literal, not a regex syntax error');
  });

  it('exact remove does not touch children or tags', async () => {
    const p = '/rm/' + h.uid('parent');
    await h.set(c, p, { parent: true });
    await h.set(c, p + '/child', { child: true });
    const tag = await h.set(c, p, null, { tag: 'KEEP' });
    const r = await h.remove(c, p);
    assert.equal(r.removed, 1);
    assert.equal((await h.get(c, p + '/child')).child, true);
    assert.notEqual(await h.get(c, tag._meta.path), null, 'tag snapshot survives');
  });

  it('noPublish: published:false, action "remove", no event', async () => {
    const b = '/rm/' + h.uid('np');
    await h.set(c, b + '/1', { v: 1 });
    const ev = h.collector();
    await h.on(c, b + '/*', { event_type: 'remove' }, ev.handler);
    const r = await h.remove(c, b + '/1', { noPublish: true });
    assert.equal(r.removed, 1);
    h.assertShape(r._meta, {
      timestamp: h.m.ts, path: b + '/1', type: 'response', status: 'ok', published: false,
      eventId: h.m.num, sessionId: c.session.id, action: 'remove',
    }, 'noPublish remove _meta');
    await h.sleep(250);
    assert.equal(ev.items.length, 0, 'no remove event: ' + h.safeJson(ev.items));
    assert.equal(await h.get(c, b + '/1'), null);
  });
});
