'use strict';
// Replays every example of shared/spec/protocol-1.1.0.md that a server can reproduce, frame by frame,
// over a raw websocket, and checks each server frame against the documented one ({{…}} placeholders
// become type checks; objects must have exactly the documented keys). Skipped: the "TestError"
// examples (injected server faults) and the access-denied ones (covered in secure.test.js).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const { m } = h;
const HEXID = '[0-9a-f]{32}';

describe('protocol-1.1.0.md examples', () => {
  let srv;
  let r;
  let sid;
  const ids = { next: 0 };
  const req = (action, extra) => Object.assign({ action, eventId: ++ids.next }, extra, { protocol: '1.1.0' });
  const withSession = o => Object.assign(o, { sessionId: sid });

  /** send a request, return [frames up to and including the reply] */
  async function exchange(msg) {
    const before = r.frames.length;
    const reply = await r.request(msg);
    await h.sleep(20);
    const frames = r.frames.slice(before).map(f => f.json);
    return { reply, frames };
  }

  const response = (eventId, action, extra) => Object.assign({
    type: 'response', status: 'ok', published: false, eventId, sessionId: sid, action,
  }, extra || {});
  const onOff = (eventId, action) => ({
    data: {},
    _meta: { status: 'ok', type: 'response', published: false, eventId, sessionId: sid, action },
    protocol: '1.1.0',
  });

  before(async () => {
    srv = await h.startServer({ config: { secure: true } });
    r = await h.RawSocket.open(srv.port);
  });
  after(() => h.cleanup(srv));

  it('describe', async () => {
    const { reply } = await exchange(req('describe'));
    h.assertShape(reply, {
      data: { name: m.nonEmpty, secure: true, encryptPayloads: false, publicKey: m.re(/^A[A-Za-z0-9+/]{43}$/) },
      _meta: { type: 'response', status: 'ok', published: false, eventId: ids.next, action: 'describe' },
      protocol: '1.1.0',
    }, 'describe');
  });

  it('login', async () => {
    const { reply } = await exchange(req('login', { data: { username: '_ADMIN', info: { _browser: false }, password: 'happn' } }));
    h.assertShape(reply, {
      data: {
        id: m.id, token: m.nonEmpty, timestamp: m.ts,
        info: { _browser: false, _local: false, happn: { name: m.nonEmpty } },
        index: m.num, type: 1, user: { username: '_ADMIN' },
      },
      _meta: { type: 'response', status: 'ok', published: false, eventId: ids.next, action: 'login' },
      protocol: '1.1.0',
    }, 'login');
    sid = reply.data.id;
  });

  it('set a piece of data using a key value pair', async () => {
    const { reply } = await exchange(withSession(req('set', { path: '/set/some/data', data: { data: { was: 'set' } }, options: { timeout: 20000 } })));
    h.assertShape(reply, {
      data: { data: { was: 'set' } },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: '/set/some/data' }, response(ids.next, '/SET@/set/some/data', { published: true })),
      protocol: '1.1.0',
    }, 'set');
  });

  it('merge some new values with an existing record (one level deep)', async () => {
    const { reply } = await exchange(withSession(req('set', { path: '/set/some/data', data: { an: { additional: 'field' } }, options: { merge: true, timeout: 20000 } })));
    h.assertShape(reply, {
      data: { an: { additional: 'field' }, data: { was: 'set' } },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: '/set/some/data' }, response(ids.next, '/SET@/set/some/data', { published: true })),
      protocol: '1.1.0',
    }, 'merge');
    assert.deepEqual(Object.keys(reply.data), ['an', 'data'], 'new keys first');
  });

  it('tag some existing data', async () => {
    const { reply } = await exchange(withSession(req('set', { path: '/set/some/data', options: { tag: 'MYTAG', timeout: 20000 } })));
    h.assertShape(reply, {
      data: {
        data: { an: { additional: 'field' }, data: { was: 'set' } },
        _meta: { path: '/set/some/data' },
        created: m.ts, modified: m.ts, _id: '/set/some/data',
      },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: m.re(new RegExp('^/_TAGS/set/some/data/' + HEXID + '$')), tag: 'MYTAG' },
        response(ids.next, '/SET@/set/some/data', { published: true })),
      protocol: '1.1.0',
    }, 'tag');
  });

  it('tag failure (tag a path that does not exist)', async () => {
    const { reply } = await exchange(withSession(req('set', { path: 'tag/non-existent', options: { tag: 'MYTAG', timeout: 20000 } })));
    h.assertShape(reply, {
      data: { data: {}, _meta: { path: 'tag/non-existent' } },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: m.re(new RegExp('^/_TAGStag/non-existent/' + HEXID + '$')), tag: 'MYTAG' },
        response(ids.next, '/SET@tag/non-existent', { published: true })),
      protocol: '1.1.0',
    }, 'tag failure');
  });

  it('setSibling', async () => {
    const { reply } = await exchange(withSession(req('set', { path: 'set/sibling/data', data: { sibling: 'data' }, options: { set_type: 'sibling', timeout: 20000 } })));
    h.assertShape(reply, {
      data: { sibling: 'data' },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: m.re(new RegExp('^set/sibling/data/' + HEXID + '$')) },
        response(ids.next, '/SET@set/sibling/data', { published: true })),
      protocol: '1.1.0',
    }, 'sibling');
  });

  it('removes one data point', async () => {
    await r.request(withSession(req('set', { path: 'remove/one', data: { a: 1 } })));
    const { reply } = await exchange(withSession(req('remove', { path: 'remove/one', options: { timeout: 20000 } })));
    h.assertShape(reply, {
      data: { removed: 1 },
      _meta: Object.assign({ timestamp: m.ts, path: 'remove/one' }, response(ids.next, '/REMOVE@remove/one', { published: true })),
      protocol: '1.1.0',
    }, 'remove one');
  });

  it('removes multiple with a wildcard', async () => {
    await r.request(withSession(req('set', { path: 'remove/multiple/1', data: { a: 1 } })));
    await r.request(withSession(req('set', { path: 'remove/multiple/2', data: { a: 2 } })));
    const { reply } = await exchange(withSession(req('remove', { path: 'remove/multiple/*', options: { timeout: 20000 } })));
    h.assertShape(reply, {
      data: { removed: 2 },
      _meta: Object.assign({ timestamp: m.ts, path: 'remove/multiple/*' }, response(ids.next, '/REMOVE@remove/multiple/*', { published: true })),
      protocol: '1.1.0',
    }, 'remove multiple');
  });

  it('remove something that is not there', async () => {
    const { reply } = await exchange(withSession(req('remove', { path: 'remove/non_existant', options: { timeout: 20000 } })));
    h.assertShape(reply, {
      data: { removed: 0 },
      _meta: Object.assign({ timestamp: m.ts, path: 'remove/non_existant' }, response(ids.next, '/REMOVE@remove/non_existant', { published: true })),
      protocol: '1.1.0',
    }, 'remove non-existent');
  });

  it('subscribe to all changes on all data points; set → event then response; off *', async () => {
    await r.request(withSession(req('set', { path: '/subscribe/on/remove', data: { was: 'added' } })));
    let x = await exchange(withSession(req('on', { path: '/ALL@*', options: { event_type: 'all', count: 0, refCount: 0, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'on'), 'on /ALL@*');

    x = await exchange(withSession(req('set', { path: '/subscribe/on/all/events', data: { data: { was: 'set' } }, options: { timeout: 20000 } })));
    assert.equal(x.frames.length, 2, 'event + response: ' + JSON.stringify(x.frames));
    h.assertShape(x.frames[0], {
      data: { data: { was: 'set' } },
      _meta: { created: m.ts, modified: m.ts, path: '/subscribe/on/all/events', type: 'data', sessionId: sid, action: '/SET@/subscribe/on/all/events', channel: '/ALL@*' },
      protocol: '1.1.0',
    }, 'event');
    h.assertShape(x.frames[1], {
      data: { data: { was: 'set' } },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: '/subscribe/on/all/events' }, response(ids.next, '/SET@/subscribe/on/all/events', { published: true })),
      protocol: '1.1.0',
    }, 'response');

    x = await exchange(withSession(req('off', { path: '*', options: { refCount: 0, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'off'), 'off *');
  });

  it('subscribe to only set actions on a specific data point', async () => {
    let x = await exchange(withSession(req('on', { path: '/SET@/subscribe/on/specific', options: { event_type: 'set', count: 0, refCount: 1, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'on'), 'on specific');
    x = await exchange(withSession(req('set', { path: '/subscribe/on/specific', data: { data: { was: 'set' } }, options: { timeout: 20000 } })));
    assert.equal(x.frames.length, 2, 'event + response (the earlier off * dropped /ALL@*): ' + JSON.stringify(x.frames));
    h.assertShape(x.frames[0], {
      data: { data: { was: 'set' } },
      _meta: { created: m.ts, modified: m.ts, path: '/subscribe/on/specific', type: 'data', sessionId: sid, action: '/SET@/subscribe/on/specific', channel: '/SET@/subscribe/on/specific' },
      protocol: '1.1.0',
    }, 'event');
    assert.equal(x.frames[1]._meta.type, 'response');
  });

  it('subscribe to the removal of data at a specified point', async () => {
    let x = await exchange(withSession(req('on', { path: '/REMOVE@/subscribe/on/remove', options: { event_type: 'remove', count: 0, refCount: 2, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'on'), 'on remove');
    x = await exchange(withSession(req('remove', { path: '/subscribe/on/remove', options: { timeout: 20000 } })));
    assert.equal(x.frames.length, 2, 'event + response: ' + JSON.stringify(x.frames));
    h.assertShape(x.frames[0], {
      data: { removed: 1 },
      _meta: { timestamp: m.ts, path: '/subscribe/on/remove', type: 'data', sessionId: sid, action: '/REMOVE@/subscribe/on/remove', channel: '/REMOVE@/subscribe/on/remove' },
      protocol: '1.1.0',
    }, 'remove event');
    h.assertShape(x.frames[1], {
      data: { removed: 1 },
      _meta: Object.assign({ timestamp: m.ts, path: '/subscribe/on/remove' }, response(ids.next, '/REMOVE@/subscribe/on/remove', { published: true })),
      protocol: '1.1.0',
    }, 'remove response');
  });

  it('subscribe to a change only once (count handled by the client: off with refCount 1)', async () => {
    let x = await exchange(withSession(req('on', { path: '/ALL@/subscribe/once', options: { event_type: 'all', count: 1, refCount: 3, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'on'), 'on once');
    x = await exchange(withSession(req('set', { path: '/subscribe/once', data: { data: { was: 'set' } }, options: { timeout: 20000 } })));
    assert.equal(x.frames.length, 2, JSON.stringify(x.frames));
    assert.equal(x.frames[0]._meta.channel, '/ALL@/subscribe/once');
    x = await exchange(withSession(req('off', { path: '/ALL@/subscribe/once', options: { refCount: 1, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'off'), 'off once');
  });

  it('perform an action without publishing using the noPublish flag', async () => {
    let x = await exchange(withSession(req('on', { path: '/ALL@/subscribe/noPublish', options: { event_type: 'all', count: 0, refCount: 4, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'on'), 'on noPublish');
    x = await exchange(withSession(req('set', { path: '/subscribe/noPublish', data: { data: { was: 'set' } }, options: { noPublish: true, timeout: 20000 } })));
    assert.equal(x.frames.length, 1, 'only the response: ' + JSON.stringify(x.frames));
    h.assertShape(x.reply, {
      data: { data: { was: 'set' } },
      _meta: Object.assign({ created: m.ts, modified: m.ts, path: '/subscribe/noPublish' }, response(ids.next, 'set')),
      protocol: '1.1.0',
    }, 'noPublish response');
  });

  it('disconnection: off * then the client closes; no server message', async () => {
    const x = await exchange(withSession(req('off', { path: '*', options: { refCount: 0, timeout: 20000 } })));
    h.assertShape(x.reply, onOff(ids.next, 'off'), 'off *');
    const n = r.frames.length;
    await r.close();
    assert.equal(r.frames.length, n, 'no frames after the client close');
    assert.equal(r.closed.code, 1000);
  });
});
