'use strict';
// get: exact / wildcard / getPaths / criteria / options (decisions.md: wildcards are anchored
// patterns, queries mean what they say; semantics §3.4, §4.8–4.10).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

describe('get', () => {
  let srv;
  let c;
  before(async () => {
    srv = await h.startServer();
    c = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  describe('exact path', () => {
    it('found: data plus _meta {created, modified, path, type, status, published:false, eventId, sessionId, action:get}', async () => {
      const p = '/get/' + h.uid('exact');
      const s = await h.set(c, p, { name: 'x', rank: 3 });
      const g = await h.get(c, p);
      assert.equal(g.name, 'x');
      assert.equal(g.rank, 3);
      h.assertShape(g._meta, {
        created: s._meta.created, modified: s._meta.modified, path: p, type: 'response', status: 'ok',
        published: false, eventId: h.m.num, sessionId: c.session.id, action: 'get',
      }, 'get reply _meta');
    });

    it('missing: the client hands back null', async () => {
      assert.equal(await h.get(c, '/get/' + h.uid('missing')), null);
    });

    it('missing: raw reply is {data:null, _meta} without timestamps', async () => {
      const r = await h.RawSocket.open(srv.port);
      await r.login();
      const g = await r.request({ action: 'get', path: '/get/' + h.uid('nothing'), protocol: '1.1.0' });
      h.assertShape(g, {
        data: null,
        _meta: { type: 'response', status: 'ok', published: false, eventId: g._meta.eventId, action: 'get' },
        protocol: '1.1.0',
      });
      await r.close();
    });

    it('regex-looking characters in an exact path are literal', async () => {
      const p = '/get/' + h.uid('lit') + '/a.b+c(d)[e]^$|?';
      await h.set(c, p, { ok: 1 });
      assert.equal((await h.get(c, p)).ok, 1);
      assert.equal(await h.get(c, p.replace('a.b', 'aXb')), null);
    });
  });

  describe('wildcard', () => {
    let base;
    before(async () => {
      base = '/get/' + h.uid('w');
      for (const i of [3, 1, 2]) await h.set(c, base + '/' + i, { name: 'n' + i, i });
    });

    it('returns an array of items {…data, _meta:{created, modified, path, _id}}', async () => {
      const list = await h.get(c, base + '/*');
      assert.ok(Array.isArray(list), 'array reply');
      assert.equal(list.length, 3);
      for (const item of list) {
        h.assertShape(item, {
          name: h.m.str, i: h.m.num,
          _meta: { created: h.m.ts, modified: h.m.ts, path: h.m.str, _id: item._meta.path },
        }, 'wildcard item');
        assert.equal(item.name, 'n' + item.i);
        assert.equal(item._meta.path, base + '/' + item.i);
      }
    });

    it('raw reply is a bare array whose last element is the _meta trailer (no protocol key)', async () => {
      const r = await h.RawSocket.open(srv.port);
      await r.login();
      const reply = await r.request({ action: 'get', path: base + '/*', protocol: '1.1.0' });
      assert.ok(Array.isArray(reply));
      assert.equal(reply.length, 4);
      h.assertShape(reply[3], { type: 'response', status: 'ok', published: false, eventId: reply[3].eventId, action: 'get' }, 'trailer');
      const empty = await r.request({ action: 'get', path: base + '/nothing/*', protocol: '1.1.0' });
      assert.ok(Array.isArray(empty));
      assert.equal(empty.length, 1, 'empty result = trailer only: ' + JSON.stringify(empty));
      await r.close();
    });

    it('is sorted by path (byte order) by default', async () => {
      const b = '/get/' + h.uid('sort');
      const names = ['b', 'B', '_', 'a', '1', 'a/x', 'Z', 'a0', '~', '-'];
      for (const n of names) await h.set(c, b + '/' + n, { n });
      const list = await h.get(c, b + '/*');
      const expected = names.map(n => b + '/' + n).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      h.deq(h.paths(list), expected);
    });

    it('no match gives an empty array', async () => {
      h.deq(await h.get(c, '/get/' + h.uid('none') + '/*'), []);
    });

    it('`*` matches across `/`', async () => {
      const b = '/get/' + h.uid('deep');
      await h.set(c, b + '/a/b/c', { d: 3 });
      await h.set(c, b + '/a', { d: 1 });
      h.deq(h.paths(await h.get(c, b + '/*')).sort(), [b + '/a', b + '/a/b/c']);
      h.deq(h.paths(await h.get(c, b + '/*/c')), [b + '/a/b/c']);
    });
  });

  describe('wildcard anchoring (patterns, not regexes)', () => {
    let id;
    before(async () => {
      id = h.uid('anc');
      const all = [
        '/' + id + '/a/1', '/x/' + id + '/a/1',
        '/' + id + '/m/x/c', '/' + id + '/m/x/cde', '/q/' + id + '/m/x/c',
        '/' + id + '/dot/a.b/1', '/' + id + '/dot/aXb/1',
        '/' + id + '/plus/a+/1', '/' + id + '/plus/aa/1',
        '/' + id + '/paren/(x/1', '/' + id + '/br/[ab]/1', '/' + id + '/br/a/1',
        '/' + id + '/q/a?/1', '/' + id + '/q/a/1',
        'rel/' + id + '/lead/1', '/y/' + id + '/lead/1', '/y/' + id + '/lead/12',
      ];
      for (const p of all) await h.set(c, p, { p });
    });

    const cases = [
      ['/a/* does not match /x/a/1', () => ['/' + id + '/a/*', ['/' + id + '/a/1']]],
      ['/m/*/c is end-anchored (no /m/x/cde)', () => ['/' + id + '/m/*/c', ['/' + id + '/m/x/c']]],
      ['. is literal', () => ['/' + id + '/dot/a.b/*', ['/' + id + '/dot/a.b/1']]],
      ['+ is literal', () => ['/' + id + '/plus/a+/*', ['/' + id + '/plus/a+/1']]],
      ['( is literal (no regex syntax error)', () => ['/' + id + '/paren/(x/*', ['/' + id + '/paren/(x/1']]],
      ['[ ] are literal', () => ['/' + id + '/br/[ab]/*', ['/' + id + '/br/[ab]/1']]],
      ['? is literal', () => ['/' + id + '/q/a?/*', ['/' + id + '/q/a?/1']]],
      ['leading * is still end-anchored', () => ['*/' + id + '/lead/1', ['/y/' + id + '/lead/1', 'rel/' + id + '/lead/1']]],
    ];
    for (const [name, mk] of cases) {
      it(name, async () => {
        const [pattern, expected] = mk();
        const list = await h.get(c, pattern);
        assert.ok(Array.isArray(list), 'array for ' + pattern);
        h.deq(h.paths(list).sort(), expected.slice().sort(), 'get ' + pattern);
      });
    }
  });

  it('get * (insecure) does not leak the server private key or password hashes', async () => {
    const all = await h.get(c, '*');
    assert.ok(Array.isArray(all));
    const text = JSON.stringify(all);
    assert.ok(!/privateKey/.test(text), 'private key readable via get *');
    assert.ok(!/pbkdf2\$/.test(text), 'password hash readable via get *');
    const kp = await h.get(c, '/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR').catch(() => null);
    assert.ok(!/privateKey/.test(JSON.stringify(kp)), 'KEYPAIR readable: ' + h.safeJson(kp));
  });

  describe('getPaths', () => {
    it('returns [{_meta:{path,_id}}] for a wildcard', async () => {
      const b = '/get/' + h.uid('paths');
      for (const i of [2, 1]) await h.set(c, b + '/' + i, { big: 'x'.repeat(100), i });
      const list = await h.getPaths(c, b + '/*');
      h.deq(list, [1, 2].map(i => ({ _meta: { path: b + '/' + i, _id: b + '/' + i } })));
    });

    it('an exact path also gives an array', async () => {
      const p = '/get/' + h.uid('path1');
      await h.set(c, p, { a: 1 });
      const list = await h.getPaths(c, p);
      assert.ok(Array.isArray(list));
      h.deq(list, [{ _meta: { path: p, _id: p } }]);
      h.deq(await h.getPaths(c, p + '/nothing'), []);
    });
  });

  describe('criteria', () => {
    let b;
    const P = i => b + '/' + i;
    before(async () => {
      b = '/get/' + h.uid('q');
      await h.set(c, P(1), { name: 'alpha', n: 1, active: true, tags: ['a', 'b'], nested: { x: 1, y: 'p' }, items: [{ k: 1, v: 'a' }, { k: 2, v: 'b' }], s: 'Hello' });
      await h.set(c, P(2), { name: 'beta', n: 2, active: false, tags: ['b'], nested: { x: 2, y: 'q' }, items: [{ k: 3, v: 'c' }], zero: 0 });
      await h.set(c, P(3), { name: 'gamma', n: 3, active: true, tags: [], nested: { x: 3 }, opt: 'here', s: 'help' });
      await h.set(c, P(4), { name: 'delta', n: 0, active: false, tags: ['a', 'b', 'c'], nested: { x: 2, y: 'q' }, opt: null });
    });

    const q = async (criteria, options) => {
      const params = { criteria };
      if (options) params.options = options;
      const list = await h.get(c, b + '/*', params);
      assert.ok(Array.isArray(list), 'array reply for ' + JSON.stringify(criteria));
      return list;
    };
    const ids = list => h.paths(list).map(p => Number(p.slice(b.length + 1))).sort();

    const cases = [
      ['plain equality', { name: 'beta' }, [2]],
      ['$eq', { n: { $eq: 2 } }, [2]],
      ['$ne', { name: { $ne: 'beta' } }, [1, 3, 4]],
      ['$gt', { n: { $gt: 1 } }, [2, 3]],
      ['$gte', { n: { $gte: 1 } }, [1, 2, 3]],
      ['$lt', { n: { $lt: 2 } }, [1, 4]],
      ['$lte', { n: { $lte: 2 } }, [1, 2, 4]],
      ['range $gt + $lt', { n: { $gt: 0, $lt: 3 } }, [1, 2]],
      ['$gt on strings', { name: { $gt: 'c' } }, [3, 4]],
      ['$in', { name: { $in: ['alpha', 'gamma', 'nope'] } }, [1, 3]],
      ['$nin', { name: { $nin: ['alpha', 'gamma'] } }, [2, 4]],
      ['$exists true', { s: { $exists: true } }, [1, 3]],
      ['$exists false', { s: { $exists: false } }, [2, 4]],
      ['$size', { tags: { $size: 2 } }, [1]],
      ['$size 0', { tags: { $size: 0 } }, [3]],
      ['$all', { tags: { $all: ['a', 'b'] } }, [1, 4]],
      ['array field contains value', { tags: 'c' }, [4]],
      ['$elemMatch', { items: { $elemMatch: { k: 2, v: 'b' } } }, [1]],
      ['$elemMatch with operator', { items: { $elemMatch: { k: { $gt: 2 } } } }, [2]],
      ['$regex', { name: { $regex: '^(al|ga)' } }, [1, 3]],
      ['$regex case-sensitive by default', { s: { $regex: '^hel' } }, [3]],
      ['$regex with $options i', { s: { $regex: '^hel', $options: 'i' } }, [1, 3]],
      ['$or', { $or: [{ name: 'alpha' }, { n: 3 }] }, [1, 3]],
      ['$and', { $and: [{ active: true }, { n: { $gt: 1 } }] }, [3]],
      ['$nor', { $nor: [{ name: 'alpha' }, { n: { $gte: 3 } }] }, [2, 4]],
      ['$not', { n: { $not: { $gt: 1 } } }, [1, 4]],
      ['nested $or inside $and', { $and: [{ $or: [{ n: 1 }, { n: 2 }] }, { active: false }] }, [2]],
      ['dot path', { 'nested.x': 2 }, [2, 4]],
      ['dot path string', { 'nested.y': 'q' }, [2, 4]],
      ['dot path with operator', { 'nested.x': { $gte: 2 } }, [2, 3, 4]],
      ['dot path into array elements', { 'items.k': 3 }, [2]],
      ['false equality', { active: false }, [2, 4]],
      ['true equality', { active: true }, [1, 3]],
      ['0 equality', { n: 0 }, [4]],
      ['0 equality on a sparse field', { zero: 0 }, [2]],
      ['nested-object equality', { nested: { x: 2, y: 'q' } }, [2, 4]],
      ['nested-object equality single key', { nested: { x: 3 } }, [3]],
      ['several fields (implicit and)', { active: true, n: 3 }, [3]],
      ['empty criteria matches all', {}, [1, 2, 3, 4]],
    ];
    for (const [name, criteria, expected] of cases) {
      it(name + ' ' + JSON.stringify(criteria), async () => {
        h.deq(ids(await q(criteria)), expected);
      });
    }

    it('_meta.path and path criteria', async () => {
      h.deq(ids(await q({ '_meta.path': P(2) })), [2]);
      h.deq(ids(await q({ path: P(3) })), [3]);
      h.deq(ids(await q({ path: { $in: [P(1), P(4)] } })), [1, 4]);
    });

    it('_meta.created / _meta.modified criteria', async () => {
      const t = '/get/' + h.uid('time');
      const r1 = await h.set(c, t + '/1', { v: 1 });
      await h.sleep(15);
      const r2 = await h.set(c, t + '/2', { v: 2 });
      await h.sleep(15);
      const r3 = await h.set(c, t + '/3', { v: 3 });
      await h.sleep(15);
      const m1 = await h.set(c, t + '/1', { v: 10 }, { merge: true });
      const tq = async criteria => h.paths(await h.get(c, t + '/*', { criteria })).sort();
      h.deq(await tq({ '_meta.created': { $gte: r2._meta.created } }), [t + '/2', t + '/3']);
      h.deq(await tq({ '_meta.created': { $lt: r2._meta.created } }), [t + '/1']);
      h.deq(await tq({ '_meta.created': r3._meta.created }), [t + '/3']);
      h.deq(await tq({ '_meta.modified': { $gt: r3._meta.modified } }), [t + '/1']);
      h.deq(await tq({ '_meta.modified': { $gte: m1._meta.modified }, v: 10 }), [t + '/1']);
      h.deq(await tq({ $or: [{ '_meta.created': r1._meta.created }, { '_meta.created': r3._meta.created }] }), [t + '/1', t + '/3']);
    });

    it('criteria on an exact path still gives an array', async () => {
      const hit = await h.get(c, P(1), { criteria: { name: 'alpha' } });
      assert.ok(Array.isArray(hit), 'array');
      h.deq(h.paths(hit), [P(1)]);
      assert.equal(hit[0].name, 'alpha');
      const miss = await h.get(c, P(1), { criteria: { name: 'zzz' } });
      h.deq(miss, []);
    });

    it('unknown operator is an error naming it', async () => {
      const e = await h.expectError(h.get(c, b + '/*', { criteria: { n: { $foo: 1 } } }), '$foo');
      assert.match(String(e.name) + ' ' + String(e.message), /\$foo/);
    });

    it('an invalid $regex is an error, not a crash', async () => {
      const e = await h.expectError(h.get(c, b + '/*', { criteria: { name: { $regex: '(unclosed' } } }), 'bad regex');
      assert.equal(typeof e.name, 'string');
      h.deq(h.paths(await h.get(c, b + '/*', { criteria: { name: 'alpha' } })), [P(1)]);
    });

    it('comparison across types matches nothing', async () => {
      h.deq(await q({ name: { $gt: 1 } }), []);
      h.deq(await q({ n: { $lt: 'z' } }), []);
    });

    it('unknown top-level operator is an error', async () => {
      const e = await h.expectError(h.get(c, b + '/*', { criteria: { $bogus: [{ n: 1 }] } }), '$bogus');
      assert.match(String(e.name) + ' ' + String(e.message), /\$bogus/);
    });

    describe('options', () => {
      it('fields inclusion', async () => {
        const list = await q({ n: { $gte: 1 } }, { fields: { name: 1 } });
        h.deq(ids(list), [1, 2, 3]);
        for (const item of list) {
          assert.equal(typeof item.name, 'string');
          assert.equal(item.n, undefined, 'n not projected');
          assert.equal(item.tags, undefined, 'tags not projected');
          assert.equal(item._meta.path, item._meta._id);
          assert.ok(item._meta.path.startsWith(b + '/'));
        }
      });

      it('fields inclusion of a nested dot field', async () => {
        const list = await q({ name: 'beta' }, { fields: { 'nested.x': 1 } });
        assert.equal(list.length, 1);
        h.deq(list[0].nested, { x: 2 });
        assert.equal(list[0].name, undefined);
      });

      it('fields exclusion', async () => {
        const list = await q({ name: 'alpha' }, { fields: { tags: 0, items: 0 } });
        assert.equal(list.length, 1);
        assert.equal(list[0].name, 'alpha');
        assert.equal(list[0].n, 1);
        assert.equal(list[0].tags, undefined);
        assert.equal(list[0].items, undefined);
        assert.equal(list[0]._meta.path, P(1));
      });

      it('sort ascending / descending', async () => {
        h.deq(h.paths(await q({}, { sort: { n: 1 } })), [P(4), P(1), P(2), P(3)]);
        h.deq(h.paths(await q({}, { sort: { n: -1 } })), [P(3), P(2), P(1), P(4)]);
        h.deq(h.paths(await q({}, { sort: { name: 1 } })), [P(1), P(2), P(4), P(3)]);
      });

      it('sort on several keys', async () => {
        h.deq(h.paths(await q({}, { sort: { active: -1, n: 1 } })), [P(1), P(3), P(4), P(2)]);
        h.deq(h.paths(await q({}, { sort: { 'nested.x': -1, name: 1 } })), [P(3), P(2), P(4), P(1)]);
      });

      it('sort on _meta.modified / _meta.created', async () => {
        const t = '/get/' + h.uid('msort');
        await h.set(c, t + '/a', { v: 1 });
        await h.sleep(15);
        await h.set(c, t + '/b', { v: 2 });
        await h.sleep(15);
        await h.set(c, t + '/c', { v: 3 });
        await h.sleep(15);
        await h.set(c, t + '/a', { v: 4 });
        const byMod = await h.get(c, t + '/*', { options: { sort: { '_meta.modified': -1 } } });
        h.deq(h.paths(byMod), [t + '/a', t + '/c', t + '/b']);
        const byCreated = await h.get(c, t + '/*', { options: { sort: { '_meta.created': -1 } } });
        h.deq(h.paths(byCreated), [t + '/c', t + '/b', t + '/a']);
        const byModAsc = await h.get(c, t + '/*', { options: { sort: { '_meta.modified': 1 } } });
        h.deq(h.paths(byModAsc), [t + '/b', t + '/c', t + '/a']);
      });

      it('limit', async () => {
        h.deq(h.paths(await q({}, { sort: { n: 1 }, limit: 2 })), [P(4), P(1)]);
      });

      it('skip', async () => {
        h.deq(h.paths(await q({}, { sort: { n: 1 }, skip: 1 })), [P(1), P(2), P(3)]);
      });

      it('skip + limit', async () => {
        h.deq(h.paths(await q({}, { sort: { n: 1 }, skip: 1, limit: 2 })), [P(1), P(2)]);
        h.deq(h.paths(await q({}, { sort: { n: 1 }, skip: 10 })), []);
      });

      it('limit without criteria or sort (path order)', async () => {
        const list = await h.get(c, b + '/*', { options: { limit: 3 } });
        h.deq(h.paths(list), [P(1), P(2), P(3)]);
      });

      it('count: object reply whose value is the count (not an array)', async () => {
        const all = await h.get(c, b + '/*', { options: { count: true } });
        assert.ok(!Array.isArray(all), 'count reply must not be an array: ' + h.safeJson(all));
        assert.equal(all.value, 4);
        assert.equal(all._meta.status, 'ok');
        assert.equal(all._meta.action, 'get');
        const some = await h.get(c, b + '/*', { criteria: { active: true }, options: { count: true } });
        assert.equal(some.value, 2);
        const none = await h.get(c, '/get/' + h.uid('nocount') + '/*', { options: { count: true } });
        assert.equal(none.value, 0);
      });

      it('count: raw reply is {data:{value:n}, _meta, protocol}', async () => {
        const r = await h.RawSocket.open(srv.port);
        await r.login();
        const reply = await r.request({ action: 'get', path: b + '/*', options: { criteria: { n: { $gte: 2 } }, options: { count: true } }, protocol: '1.1.0' });
        h.assertShape(reply, {
          data: { value: 2 },
          _meta: { type: 'response', status: 'ok', published: false, eventId: reply._meta && reply._meta.eventId, action: 'get' },
          protocol: '1.1.0',
        }, 'count reply');
        await r.close();
      });

      it('criteria + fields + sort + limit together (trace 06 request)', async () => {
        const list = await q({ active: true }, { fields: { name: 1 }, sort: { n: -1 }, limit: 1 });
        assert.equal(list.length, 1);
        assert.equal(list[0].name, 'gamma');
        assert.equal(list[0].n, undefined);
        assert.equal(list[0]._meta.path, P(3));
      });
    });
  });
});
