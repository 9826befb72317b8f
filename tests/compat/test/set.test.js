'use strict';
// set / merge / tag / sibling / noPublish / noStore / data wrapping, driven by the real happn 2.21 client
// (decisions.md "Copy exactly" + semantics §3.3, §4.1–4.7).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const HEX32 = /^[0-9a-f]{32}$/;

describe('set', () => {
  let srv;
  let c;
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  it('plain set: reply carries the data and the full _meta envelope', async () => {
    const p = '/set/' + h.uid('plain');
    const before = Date.now();
    const r = await h.set(c, p, { name: 'one', num: 1, nested: { a: [1, 2, 3] } });
    assert.equal(r.name, 'one');
    assert.equal(r.num, 1);
    h.deq(r.nested, { a: [1, 2, 3] });
    h.assertShape(r._meta, {
      created: h.m.ts,
      modified: h.m.ts,
      path: p,
      type: 'response',
      status: 'ok',
      published: true,
      eventId: h.m.num,
      sessionId: c.session.id,
      action: '/SET@' + p,
    }, 'set reply _meta');
    assert.equal(r._meta.created, r._meta.modified, 'created == modified on insert');
    assert.ok(r._meta.created >= before - 1000 && r._meta.created <= Date.now() + 1000, 'created is epoch ms now');
  });

  it('overwrite keeps created, bumps modified and replaces the whole data', async () => {
    const p = '/set/' + h.uid('over');
    const first = await h.set(c, p, { a: 1, b: 2 });
    await h.sleep(15);
    const second = await h.set(c, p, { c: 3 });
    assert.equal(second._meta.created, first._meta.created, 'created kept');
    assert.ok(second._meta.modified > first._meta.modified, 'modified bumped: ' + first._meta.modified + ' -> ' + second._meta.modified);
    const g = await h.get(c, p);
    assert.equal(g.c, 3);
    assert.equal(g.a, undefined, 'old keys are gone after a plain set');
    assert.equal(g.b, undefined);
    assert.equal(g._meta.created, first._meta.created);
    assert.equal(g._meta.modified, second._meta.modified);
  });

  describe('merge', () => {
    it('is one level deep, new keys first, null keeps the old value', async () => {
      const p = '/set/' + h.uid('merge');
      const first = await h.set(c, p, { a: 1, b: { x: 1 }, c: 3 });
      await h.sleep(15);
      const r = await h.set(c, p, { d: 4, b: { y: 2 }, c: null }, { merge: true });
      const data = Object.assign({}, r);
      delete data._meta;
      h.deq(data, { d: 4, b: { y: 2 }, c: 3, a: 1 });
      h.deq(Object.keys(data), ['d', 'b', 'c', 'a'], 'key order: update keys first, then old keys');
      assert.equal(r._meta.created, first._meta.created, 'merge keeps created');
      assert.ok(r._meta.modified > first._meta.modified, 'merge bumps modified');
      assert.equal(r._meta.action, '/SET@' + p);
      assert.equal(r._meta.published, true);
      const g = await h.get(c, p);
      h.deq(g.b, { y: 2 }, 'nested objects are replaced, not merged');
      assert.equal(g.c, 3);
      assert.equal(g.a, 1);
      assert.equal(g.d, 4);
    });

    it('nested object replaced as a whole', async () => {
      const p = '/set/' + h.uid('mergedeep');
      await h.set(c, p, { a: { b: { c: 1 } }, keep: true });
      const r = await h.set(c, p, { a: { z: 1 } }, { merge: true });
      h.deq(r.a, { z: 1 });
      assert.equal(r.keep, true);
    });

    it('merge on a missing record behaves like an insert', async () => {
      const p = '/set/' + h.uid('mergenew');
      const r = await h.set(c, p, { only: 1 }, { merge: true });
      assert.equal(r.only, 1);
      assert.equal(r._meta.created, r._meta.modified);
      assert.equal(r._meta.path, p);
      const g = await h.get(c, p);
      assert.equal(g.only, 1);
    });

    it('non-object merge data is wrapped as {value} first', async () => {
      const p = '/set/' + h.uid('mergescalar');
      await h.set(c, p, { a: 1 });
      const r = await h.set(c, p, 'str', { merge: true });
      assert.equal(r.value, 'str');
      assert.equal(r.a, 1);
      const g = await h.get(c, p);
      assert.equal(g.value, 'str');
      assert.equal(g.a, 1);
    });
  });

  describe('tag', () => {
    it('snapshots an existing record under /_TAGS<path>/<32hex> and bumps the source modified', async () => {
      const p = '/set/' + h.uid('tag');
      const orig = await h.set(c, p, { v: 1, w: 'x' });
      await h.sleep(15);
      const r = await h.set(c, p, null, { tag: 'T1' });
      // the client puts the envelope _meta on top of the snapshot; the snapshot's own keys remain
      h.deq(r.data, { v: 1, w: 'x' }, 'snapshot data');
      assert.equal(r.created, orig._meta.created, 'snapshot created = source created');
      assert.ok(r.modified > orig._meta.modified, 'snapshot modified = bumped source modified');
      assert.equal(r._id, p, 'snapshot _id = source path');
      const tagPath = r._meta.path;
      assert.ok(tagPath.startsWith('/_TAGS' + p + '/'), 'tag path ' + tagPath);
      assert.match(tagPath.slice(('/_TAGS' + p + '/').length), HEX32);
      assert.equal(r._meta.tag, 'T1');
      assert.equal(r._meta.action, '/SET@' + p);
      assert.equal(r._meta.published, true);
      assert.equal(r._meta.type, 'response');
      assert.ok(h.m.ts(r._meta.created) && h.m.ts(r._meta.modified), 'tag doc timestamps');

      const src = await h.get(c, p);
      h.deq({ v: src.v, w: src.w }, { v: 1, w: 'x' }, 'source data unchanged');
      assert.equal(src._meta.created, orig._meta.created);
      assert.equal(src._meta.modified, r.modified, 'source modified bumped to the snapshot modified');

      const exact = await h.get(c, tagPath);
      h.deq(exact.data, { v: 1, w: 'x' });
      assert.equal(exact._id, p);
      assert.equal(exact._meta.tag, 'T1');
      assert.equal(exact._meta.path, tagPath);

      const list = await h.get(c, '/_TAGS' + p + '/*');
      assert.ok(Array.isArray(list));
      assert.equal(list.length, 1);
      h.deq(list[0].data, { v: 1, w: 'x' });
      assert.equal(list[0]._id, p);
      assert.equal(list[0].created, orig._meta.created);
      assert.equal(list[0]._meta.path, tagPath);
      assert.equal(list[0]._meta._id, tagPath);
      assert.equal(list[0]._meta.tag, 'T1');
    });

    it('snapshot on the wire is {data, _meta:{path}, created, modified, _id} (raw frame)', async () => {
      const p = '/set/' + h.uid('tagraw');
      const r = await h.RawSocket.open(srv.port);
      await r.login();
      const s = await r.request({ action: 'set', path: p, data: { k: 'v' }, options: {}, protocol: '1.1.0' });
      const t = await r.request({ action: 'set', path: p, options: { tag: 'RAW' }, protocol: '1.1.0' });
      h.assertShape(t, {
        data: {
          data: { k: 'v' },
          _meta: { path: p },
          created: s._meta.created,
          modified: h.m.ts,
          _id: p,
        },
        _meta: {
          created: h.m.ts,
          modified: h.m.ts,
          path: h.m.re(new RegExp('^/_TAGS' + p + '/[0-9a-f]{32}$')),
          tag: 'RAW',
          type: 'response',
          status: 'ok',
          published: true,
          eventId: t._meta.eventId,
          action: '/SET@' + p,
        },
        protocol: '1.1.0',
      }, 'tag reply frame');
      await r.close();
    });

    it('tag of a missing record creates an empty source and a /_TAGS + path snapshot (no separator)', async () => {
      const p = 'tag/' + h.uid('none');
      const r = await h.set(c, p, null, { tag: 'MYTAG' });
      h.deq(r.data, {}, 'snapshot data is {}');
      assert.equal(r._meta.tag, 'MYTAG');
      assert.ok(r._meta.path.startsWith('/_TAGS' + p + '/'), 'path ' + r._meta.path);
      assert.match(r._meta.path.slice(('/_TAGS' + p + '/').length), HEX32);
      assert.equal(r._meta.action, '/SET@' + p);
      const src = await h.get(c, p);
      assert.notEqual(src, null, 'an empty source record was created');
      const srcData = Object.assign({}, src);
      delete srcData._meta;
      h.deq(srcData, {});
    });

    it('tag with data is rejected', async () => {
      const p = '/set/' + h.uid('tagdata');
      await h.set(c, p, { a: 1 });
      const e = await h.expectError(h.set(c, p, { b: 2 }, { tag: 'NOPE' }), 'tag with data');
      assert.equal(e.name, 'Error: Cannot set tag with new data.');
      const e2 = await h.expectError(h.set(c, p, {}, { tag: 'NOPE' }), 'tag with {}');
      assert.equal(e2.name, 'Error: Cannot set tag with new data.');
      const tags = await h.get(c, '/_TAGS' + p + '/*');
      h.deq(tags, [], 'no snapshot stored');
    });
  });

  describe('setSibling', () => {
    it('stores under <path>/<32hex>, action uses the base path', async () => {
      const base = '/set/' + h.uid('sib');
      const r1 = await h.setSibling(c, base, { s: 1 });
      const r2 = await h.setSibling(c, base, { s: 2 });
      for (const r of [r1, r2]) {
        assert.ok(r._meta.path.startsWith(base + '/'), r._meta.path);
        assert.match(r._meta.path.slice(base.length + 1), HEX32);
        assert.equal(r._meta.action, '/SET@' + base);
        assert.equal(r._meta.published, true);
        assert.equal(r._meta.created, r._meta.modified);
      }
      assert.equal(r1.s, 1);
      assert.notEqual(r1._meta.path, r2._meta.path);
      const list = await h.get(c, base + '/*');
      h.deq(h.paths(list).sort(), [r1._meta.path, r2._meta.path].sort());
      assert.equal(await h.get(c, base), null, 'nothing stored at the base path');
    });

    it('a base path ending in / gets no extra separator', async () => {
      const base = '/set/' + h.uid('sibslash') + '/';
      const r = await h.setSibling(c, base, { s: 1 });
      assert.ok(r._meta.path.startsWith(base), r._meta.path);
      assert.match(r._meta.path.slice(base.length), HEX32);
    });
  });

  it('noPublish: stored, published:false, action "set"', async () => {
    const p = '/set/' + h.uid('nopub');
    const r = await h.set(c, p, { quiet: true }, { noPublish: true });
    h.assertShape(r._meta, {
      created: h.m.ts, modified: h.m.ts, path: p, type: 'response', status: 'ok',
      published: false, eventId: h.m.num, sessionId: c.session.id, action: 'set',
    }, 'noPublish reply _meta');
    const g = await h.get(c, p);
    assert.equal(g.quiet, true);
  });

  it('noStore: nothing stored, reply without created/modified, still published', async () => {
    const p = '/set/' + h.uid('nostore');
    const r = await h.set(c, p, { transient: true }, { noStore: true });
    assert.equal(r.transient, true);
    h.assertShape(r._meta, {
      path: p, type: 'response', status: 'ok', published: true, eventId: h.m.num,
      sessionId: c.session.id, action: '/SET@' + p,
    }, 'noStore reply _meta');
    assert.equal(await h.get(c, p), null, 'nothing stored');
  });

  describe('scalar wrapping', () => {
    const cases = [
      ['string', 'hello'],
      ['number', 42],
      ['zero', 0],
      ['boolean', false],
      ['array', [1, 'two', { three: 3 }]],
      ['empty string', ''],
    ];
    for (const [name, value] of cases) {
      it(name + ' is stored as {value: …}', async () => {
        const p = '/set/scalar/' + h.uid(name.replace(/ /g, ''));
        const r = await h.set(c, p, value);
        h.deq(r.value, value, 'set reply');
        const g = await h.get(c, p);
        const data = Object.assign({}, g);
        delete data._meta;
        h.deq(data, { value }, 'stored as {value}');
      });
    }

    it('null data frame is stored as {value:null}; no data at all as {}', async () => {
      const r = await h.RawSocket.open(srv.port);
      await r.login();
      const p1 = '/set/scalar/' + h.uid('null');
      const s1 = await r.request({ action: 'set', path: p1, data: null, protocol: '1.1.0' });
      assert.equal(s1._meta.status, 'ok', JSON.stringify(s1));
      h.deq(s1.data, { value: null });
      const g1 = await r.request({ action: 'get', path: p1, protocol: '1.1.0' });
      h.deq(g1.data, { value: null });
      const p2 = '/set/scalar/' + h.uid('missing');
      const s2 = await r.request({ action: 'set', path: p2, protocol: '1.1.0' });
      assert.equal(s2._meta.status, 'ok', JSON.stringify(s2));
      const g2 = await r.request({ action: 'get', path: p2, protocol: '1.1.0' });
      h.deq(g2.data, {});
      await r.close();
    });

    it('client set(path, null) sends no data and stores {}', async () => {
      const p = '/set/scalar/' + h.uid('clientnull');
      await h.set(c, p, null);
      const g = await h.get(c, p);
      assert.notEqual(g, null);
      h.deq(h.keys(g), ['_meta']);
    });
  });

  describe('field names', () => {
    const dot = 'Error: Field names cannot contain a .';
    const dollar = 'Error: Field names cannot begin with the $ character';
    const cases = [
      ['top-level dot', { 'a.b': 1 }, dot],
      ['nested dot', { x: { y: { 'a.b': 1 } } }, dot],
      ['dot inside an array element', { arr: [1, { 'a.b': 1 }] }, dot],
      ['top-level $', { $x: 1 }, dollar],
      ['nested $', { x: { $y: 1 } }, dollar],
    ];
    for (const [name, data, message] of cases) {
      it(name + ' is rejected and nothing is stored', async () => {
        const p = '/set/fields/' + h.uid('f');
        const e = await h.expectError(h.set(c, p, data), name);
        assert.equal(e.name, message);
        assert.equal(await h.get(c, p), null);
      });
    }

    it('a $ or . inside a key (not leading) / inside values is fine', async () => {
      const p = '/set/fields/' + h.uid('ok');
      const r = await h.set(c, p, { a$b: 1, s: 'a.b', t: '$x' });
      assert.equal(r.a$b, 1);
      const g = await h.get(c, p);
      assert.equal(g.s, 'a.b');
      assert.equal(g.t, '$x');
    });

    it('a top-level _meta key in set data is dropped', async () => {
      const p = '/set/fields/' + h.uid('meta');
      const r = await h.RawSocket.open(srv.port);
      await r.login();
      const s = await r.request({ action: 'set', path: p, data: { a: 1, _meta: { evil: true, path: '/elsewhere' } }, protocol: '1.1.0' });
      assert.equal(s._meta.status, 'ok', JSON.stringify(s));
      assert.equal(s._meta.path, p);
      const g = await r.request({ action: 'get', path: p, protocol: '1.1.0' });
      h.deq(g.data, { a: 1 }, 'stored data has no _meta');
      assert.equal(g._meta.path, p);
      assert.equal(g._meta.evil, undefined);
      const list = await r.request({ action: 'get', path: p + '*', protocol: '1.1.0' });
      h.deq(list[0], { a: 1, _meta: { created: g._meta.created, modified: g._meta.modified, path: p, _id: p } });
      await r.close();
    });
  });

  it('no path normalisation: a/b, /a/b and /a/b/ are different records', async () => {
    const id = h.uid('norm');
    await h.set(c, 'norm/' + id, { v: 'relative' });
    await h.set(c, '/norm/' + id, { v: 'absolute' });
    await h.set(c, '/norm/' + id + '/', { v: 'trailing' });
    assert.equal((await h.get(c, 'norm/' + id)).v, 'relative');
    assert.equal((await h.get(c, '/norm/' + id)).v, 'absolute');
    assert.equal((await h.get(c, '/norm/' + id + '/')).v, 'trailing');
    assert.equal(await h.get(c, '//norm/' + id), null);
    const r = await h.set(c, 'norm/' + id, { v: 'again' });
    assert.equal(r._meta.path, 'norm/' + id);
    assert.equal(r._meta.action, '/SET@norm/' + id);
  });

  it('unicode, U+2028/U+2029 and astral characters round-trip (data and path)', async () => {
    const p = '/set/unicode/' + h.uid('u') + '/é✓😀';
    const s = 'line\u2028sep\u2029end é ✓ 😀 \u0000 "quoted" \\ back';
    const r = await h.set(c, p, { s, 'ключ': 'значение' });
    assert.equal(r.s, s);
    assert.equal(r._meta.path, p);
    const g = await h.get(c, p);
    assert.equal(g.s, s);
    assert.equal(g['ключ'], 'значение');
    assert.equal(g._meta.path, p);
  });

  it('a ~1 MB payload round-trips', async () => {
    const p = '/set/big/' + h.uid('blob');
    const blob = 'x'.repeat(1024 * 1024 - 300) + 'END';
    const r = await h.cbCall('set 1MB', cb => c.set(p, { blob, n: 7 }, cb), 15000);
    assert.equal(r.blob.length, blob.length);
    const g = await h.cbCall('get 1MB', cb => c.get(p, cb), 15000);
    assert.equal(g.blob, blob);
    assert.equal(g.n, 7);
  });

  it('numbers keep their JSON values (floats, negatives, large ints)', async () => {
    const p = '/set/' + h.uid('nums');
    const data = { f: 1.5, neg: -3, big: 9007199254740991, tiny: 1e-7, exp: 1e21 };
    await h.set(c, p, data);
    const g = await h.get(c, p);
    for (const k of Object.keys(data)) assert.equal(g[k], data[k], k);
  });
});
