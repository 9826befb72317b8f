'use strict';
// encryptPayloads (semantics §7; decisions.md: array replies are encrypted too): the real 2.21
// client over an encrypting server, the frames it sees on the wire, and raw frames for the login
// envelope, tampered frames and clear requests.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Crypto = require('happn-util-crypto');
const h = require('./helpers');

// node warns about createCipher on every frame the client encrypts; keep the test output readable.
process.removeAllListeners('warning');

const crypto = new Crypto();
const digestKey = crypto.createKeyPair();

const CONFIG = {
  secure: true,
  encryptPayloads: true,
  groups: [{ name: 'encgroup', permissions: { '/enc/*': { actions: ['*'] } } }],
  users: [
    { username: 'enc_user', password: 'enc_pw', groups: ['encgroup'] },
    { username: 'enc_digest', publicKey: digestKey.publicKey, groups: ['encgroup'] },
  ],
};

const mine = [];
function client(srv, config) {
  return h.createClient(srv, config).then(c => { mine.push(c); return c; });
}

const isEncryptedFrame = json => !!json && !Array.isArray(json) && typeof json === 'object' &&
  h.keys(json).join(',') === 'encrypted,protocol' && json.protocol === '1.1.0' && /^[0-9a-f]+$/.test(json.encrypted);
const open = (json, secret) => crypto.symmetricDecryptObject(json.encrypted, secret);

/** A raw socket that logs in the way the 2.21 client does under encryptPayloads. */
async function rawEncryptedLogin(port, credentials, opts) {
  opts = opts || {};
  const r = await h.RawSocket.open(port);
  const d = await r.request({ action: 'describe', protocol: '1.1.0' });
  const key = opts.key || crypto.createKeyPair();
  const creds = Object.assign({ info: {}, publicKey: key.publicKey }, credentials);
  const sealed = crypto.asymmetricEncrypt(d.data.publicKey, (opts.signingKey || key).privateKey, JSON.stringify(creds));
  const eventId = r.nextEventId();
  r.send({
    action: 'login', eventId,
    data: { encrypted: sealed.toJSON(), publicKey: opts.presentKey || key.publicKey, loginType: 'password' },
    protocol: '1.1.0',
  });
  const f = await r.waitFrame(fr => fr.isJson && fr.json._meta && (fr.json._meta.type === 'login' || fr.json._meta.eventId === eventId),
    3000, 'login reply');
  const reply = f.json;
  if (reply._meta.type !== 'login') return { r, reply, describe: d.data };
  const inner = JSON.parse(crypto.asymmetricDecrypt(reply.publicKey, key.privateKey, Buffer.from(reply.encrypted.data)).toString());
  const session = inner.data;
  const raw = {
    r, reply, inner, session, describe: d.data, key,
    /** send an encrypted request and return the decrypted reply */
    async request(msg) {
      msg.eventId = r.nextEventId();
      msg.sessionId = session.id;
      msg.protocol = '1.1.0';
      r.send({ sessionId: session.id, encrypted: crypto.symmetricEncryptObject(msg, session.secret) });
      const frame = await r.waitFrame(fr => {
        if (!fr.isJson || !isEncryptedFrame(fr.json)) return false;
        const m = open(fr.json, session.secret);
        const meta = Array.isArray(m) ? m[m.length - 1] : m._meta;
        return meta && meta.eventId === msg.eventId;
      }, 3000, 'encrypted reply to ' + msg.action);
      return open(frame.json, session.secret);
    },
  };
  return raw;
}

describe('encryptPayloads with the real client', () => {
  let srv;
  let a;
  let b;
  let spyA;
  let spyB;
  before(async () => {
    srv = await h.startServer({ config: CONFIG });
    a = await client(srv, { username: '_ADMIN', password: 'happn' });
    b = await client(srv, { username: 'enc_user', password: 'enc_pw' });
    spyA = h.spyClient(a);
    spyB = h.spyClient(b);
  });
  after(async () => {
    await Promise.all(mine.splice(0).map(h.destroyClient));
    await h.cleanup(srv);
  });

  it('describe announces encryptPayloads; the client got a secret and its generated key back', () => {
    assert.equal(a.serverInfo.encryptPayloads, true);
    assert.match(a.serverInfo.publicKey, /^[AB][A-Za-z0-9+/]{43}$/);
    assert.equal(typeof a.session.secret, 'string');
    assert.equal(a.session.user.username, '_ADMIN');
    assert.equal(a.session.user.publicKey, a.options.config.publicKey, 'the key the client generated');
    assert.notEqual(a.session.secret, b.session.secret);
  });

  it('set / get / wildcard get / remove work, and every frame is encrypted both ways', async () => {
    const mark = spyB.mark();
    const set = await h.set(b, '/enc/1', { secret: 42, text: 'héllo ✓' });
    assert.equal(set.secret, 42);
    assert.equal(set._meta.path, '/enc/1');
    const got = await h.get(b, '/enc/1');
    h.deq({ secret: got.secret, text: got.text }, { secret: 42, text: 'héllo ✓' });
    await h.set(b, '/enc/2', { n: 2 });
    const list = await h.get(b, '/enc/*');
    assert.deepEqual(h.paths(list), ['/enc/1', '/enc/2']);
    assert.equal(list[1].n, 2);
    assert.equal((await h.get(b, '/enc/missing')), null);
    assert.equal((await h.remove(b, '/enc/2')).removed, 1);

    const outs = spyB.since(mark, 'out');
    const ins = spyB.since(mark, 'in').filter(f => f.json !== undefined && typeof f.json !== 'string');
    assert.ok(outs.length >= 6 && ins.length >= 6, 'frames seen: ' + outs.length + '/' + ins.length);
    for (const f of outs) {
      assert.deepEqual(h.keys(f.json), ['encrypted', 'sessionId'], 'client frame ' + f.raw.slice(0, 200));
    }
    for (const f of ins) assert.ok(isEncryptedFrame(f.json), 'server frame in clear: ' + f.raw.slice(0, 200));
    // The wildcard get's array reply was encrypted too (decisions.md), with the array inside.
    const arrays = ins.map(f => open(f.json, b.session.secret)).filter(Array.isArray);
    assert.equal(arrays.length, 1, 'one array reply');
    assert.equal(arrays[0][arrays[0].length - 1].action, 'get');
  });

  it('events between two encrypted clients, each encrypted with the recipient\'s secret', async () => {
    const evA = h.collector();
    const evB = h.collector();
    await h.on(a, '/enc/ev/*', { event_type: 'set' }, evA.handler);
    await h.on(b, '/enc/ev/*', { event_type: 'set' }, evB.handler);
    const markA = spyA.mark();
    const markB = spyB.mark();
    await h.set(a, '/enc/ev/1', { from: 'a' });
    await h.set(b, '/enc/ev/2', { from: 'b' });
    await evA.wait(2);
    await evB.wait(2);
    h.deq(evA.items.map(i => i.data.from).sort(), ['a', 'b']);
    h.deq(evB.items.map(i => i.data.from).sort(), ['a', 'b']);
    assert.equal(evB.items[0].meta.sessionId, b.session.id);
    assert.equal(evA.items[0].meta.sessionId, a.session.id);
    for (const [spy, mark, c] of [[spyA, markA, a], [spyB, markB, b]]) {
      const frames = spy.since(mark, 'in').filter(f => f.json && typeof f.json === 'object');
      const events = frames.map(f => {
        assert.ok(isEncryptedFrame(f.json), 'clear frame ' + f.raw.slice(0, 200));
        return open(f.json, c.session.secret);
      }).filter(m => m._meta && m._meta.type === 'data');
      assert.equal(events.length, 2, 'two events decrypt with the recipient\'s own secret');
      for (const e of events) assert.equal(e._meta.sessionId, c.session.id);
    }
  });

  it('a client with its own keyPair and a password logs in encrypted', async () => {
    const key = crypto.createKeyPair();
    const c = await client(srv, { username: 'enc_user', password: 'enc_pw', keyPair: key });
    assert.equal(c.session.user.publicKey, key.publicKey);
    await h.set(c, '/enc/own-key', { ok: 1 });
    assert.equal((await h.get(a, '/enc/own-key')).ok, 1);
  });

  it('digest login over an encrypting server', async () => {
    const c = await client(srv, { username: 'enc_digest', keyPair: digestKey });
    assert.equal(c.session.user.username, 'enc_digest');
    assert.equal(c.session.user.publicKey, digestKey.publicKey);
    await h.set(c, '/enc/digest', { ok: 1 });
    assert.equal((await h.get(c, '/enc/digest')).ok, 1);
  });

  it('wrong password: AccessDenied, in clear', async () => {
    const e = await h.expectError(client(srv, { username: 'enc_user', password: 'nope' }), 'bad password');
    assert.equal(e.name, 'AccessDenied');
    assert.equal(e.message, 'Invalid credentials');
  });
});

describe('encryptPayloads on raw frames', () => {
  let srv;
  before(async () => { srv = await h.startServer({ config: CONFIG }); });
  after(() => h.cleanup(srv));

  it('login envelope: ECIES reply with the server key; decrypted it is the normal login reply', async () => {
    const s = await rawEncryptedLogin(srv.port, { username: 'enc_user', password: 'enc_pw' });
    h.assertShape(s.reply, {
      _meta: { type: 'login' },
      protocol: '1.1.0',
      encrypted: { type: 'Buffer', data: v => Array.isArray(v) && v.length > 100 && v.every(x => Number.isInteger(x) && x >= 0 && x < 256) },
      publicKey: s.describe.publicKey,
    }, 'sealed login reply');
    h.assertShape(s.inner, {
      data: {
        id: h.m.id, token: h.m.nonEmpty, timestamp: h.m.ts,
        info: { _local: false, happn: { name: h.m.str } },
        index: h.m.num, type: 1,
        user: { username: 'enc_user', publicKey: s.key.publicKey },
        secret: h.m.nonEmpty,
      },
      _meta: { type: 'response', status: 'ok', published: false, eventId: h.m.num, action: 'login' },
      protocol: '1.1.0',
    }, 'decrypted login reply');
    await s.r.close();
  });

  it('a tampered frame gets a clear error; the connection and other clients carry on', async () => {
    const s = await rawEncryptedLogin(srv.port, { username: 'enc_user', password: 'enc_pw' });
    const other = await client(srv, { username: '_ADMIN', password: 'happn' });
    const ok = await s.request({ action: 'set', path: '/enc/raw', data: { v: 1 }, options: {} });
    assert.equal(ok._meta.status, 'ok', JSON.stringify(ok));

    const good = crypto.symmetricEncryptObject({ action: 'get', eventId: 99, path: '/enc/raw', sessionId: s.session.id, protocol: '1.1.0' }, s.session.secret);
    const tampered = (parseInt(good.slice(0, 2), 16) ^ 0x5a).toString(16).padStart(2, '0') + good.slice(2);
    for (const bad of [tampered, 'zz-not-hex', crypto.symmetricEncryptObject({ action: 'get' }, 'another secret')]) {
      s.r.send({ sessionId: s.session.id, encrypted: bad });
      const f = await s.r.waitFrame(fr => fr.isJson && fr.json._meta && fr.json._meta.status === 'error', 3000, 'decrypt error');
      h.assertShape(f.json, {
        data: null,
        _meta: { type: 'response', status: 'error', published: false, error: { name: h.m.re(/^Error: cannot decrypt the message/) } },
        protocol: '1.1.0',
      }, 'clear error for ' + bad.slice(0, 10));
    }
    assert.equal(s.r.closed, null, 'connection still open');
    const after = await s.request({ action: 'get', path: '/enc/raw', options: {} });
    assert.equal(after.data.v, 1, 'the session still works');
    assert.equal((await h.get(other, '/enc/raw')).v, 1, 'other clients unaffected');
    mine.splice(mine.indexOf(other), 1);
    await h.destroyClient(other);
    await s.r.close();
  });

  it('a clear request after an encrypted login is refused in clear, with its eventId', async () => {
    const s = await rawEncryptedLogin(srv.port, { username: 'enc_user', password: 'enc_pw' });
    const reply = await s.r.request({ action: 'get', path: '/enc/raw', sessionId: s.session.id, protocol: '1.1.0' });
    h.assertShape(reply, {
      data: null,
      _meta: {
        type: 'response', status: 'error', published: false, eventId: reply._meta.eventId, sessionId: s.session.id, action: 'get',
        error: { name: h.m.re(/encrypts payloads/) },
      },
      protocol: '1.1.0',
    }, 'clear request refused');
    // describe stays allowed, and in clear.
    const d = await s.r.request({ action: 'describe', protocol: '1.1.0' });
    assert.equal(d.data.encryptPayloads, true);
    await s.r.close();
  });

  it('an unencrypted login gets a clear error reply (the original stays silent)', async () => {
    const r = await h.RawSocket.open(srv.port);
    const reply = await r.request({ action: 'login', data: { username: '_ADMIN', password: 'happn', info: {} }, protocol: '1.1.0' });
    assert.equal(reply._meta.status, 'error');
    assert.equal(reply._meta.action, 'login');
    assert.match(reply._meta.error.name, /must be encrypted/);
    await r.close();
  });

  it('an encrypted login must present the key that encrypted it', async () => {
    const other = crypto.createKeyPair();
    const s = await rawEncryptedLogin(srv.port, { username: 'enc_user', password: 'enc_pw' }, { presentKey: other.publicKey });
    assert.equal(s.reply._meta.status, 'error', JSON.stringify(s.reply));
    assert.match(s.reply._meta.error.name, /not encrypted with the private key/);
    await s.r.close();
  });

  it('wrong password in an encrypted login: AccessDenied in clear', async () => {
    const s = await rawEncryptedLogin(srv.port, { username: 'enc_user', password: 'nope' });
    h.assertShape(s.reply._meta.error, { name: 'AccessDenied', message: 'Invalid credentials' }, 'bad password');
    await s.r.close();
  });
});

describe('encryptPayloads: system messages and configuration', () => {
  let srv;
  after(async () => {
    await Promise.all(mine.splice(0).map(h.destroyClient));
    await h.cleanup(srv);
  });

  it('the shutdown system message reaches an encrypted client, encrypted', async () => {
    srv = await h.startServer({ config: CONFIG });
    const c = await client(srv, { username: '_ADMIN', password: 'happn' });
    const spy = h.spyClient(c);
    const watch = h.watchClient(c);
    const mark = spy.mark();
    const stopping = srv.stop('SIGINT');
    await watch.wait('system:server-side-disconnect', 5000);
    await stopping;
    const frames = spy.since(mark, 'in').filter(f => f.json && typeof f.json === 'object');
    assert.ok(frames.length >= 1);
    assert.ok(isEncryptedFrame(frames[0].json), 'system message in clear: ' + frames[0].raw.slice(0, 200));
    assert.equal(open(frames[0].json, c.session.secret).eventKey, 'server-side-disconnect');
    assert.ok(spy.since(mark, 'in').some(f => f.json === 'primus::server::close'), 'the primus close stays a clear control string');
  });

  it('encryptPayloads without secure is refused at startup with a clear message', async () => {
    const port = await h.freePort();
    const res = await h.runCli(['--port', String(port), '--host', '127.0.0.1', '--memory'], {
      env: { HAPPN_SERVER_CONFIG: JSON.stringify({ encryptPayloads: true }) },
      timeout: 8000,
    });
    assert.equal(res.timedOut, false, 'the server must not start: ' + res.output);
    assert.notEqual(res.code, 0);
    assert.match(res.output, /encryptPayloads/);
    assert.match(res.output, /secure/);
  });
});
