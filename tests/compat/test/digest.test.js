'use strict';
// Key-pair (digest) login and request-nonce (semantics §3.9, §6.4, §6.4.2): the real 2.21 client
// with a keyPair and no password, and raw frames for the exact reply shapes.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Crypto = require('happn-util-crypto');
const h = require('./helpers');

const crypto = new Crypto();
const userKey = crypto.createKeyPair();
const otherKey = crypto.createKeyPair();
const unusedKey = crypto.createKeyPair();
const lockKey = crypto.createKeyPair();
const NONCE = /^[A-Za-z0-9+/]{43}=$/;

const CONFIG = {
  secure: true,
  groups: [{ name: 'digesters', permissions: { '/digest/*': { actions: ['*'] } } }],
  users: [
    { username: 'digest_user', publicKey: userKey.publicKey, groups: ['digesters'] },
    { username: 'unused_key_user', publicKey: unusedKey.publicKey, groups: ['digesters'] },
    { username: 'lock_user', publicKey: lockKey.publicKey, groups: ['digesters'] },
    { username: 'password_user', password: 'pw', groups: ['digesters'] },
  ],
};

const mine = [];
/** happn.client.create with exactly this config (no default _ADMIN password) */
function client(srv, config) {
  return h.createClient(srv, config).then(c => { mine.push(c); return c; });
}

/** request-nonce, sign, login on a raw socket; returns the login reply */
async function rawDigestLogin(r, username, key, signingKey) {
  await r.request({ action: 'describe', protocol: '1.1.0' });
  const n = await r.request({ action: 'request-nonce', data: { publicKey: key.publicKey }, protocol: '1.1.0' });
  assert.equal(n._meta.status, 'ok', JSON.stringify(n));
  const digest = crypto.sign(n.data.nonce, (signingKey || key).privateKey);
  return r.request({
    action: 'login',
    data: { username, info: {}, publicKey: key.publicKey, loginType: 'digest', digest },
    protocol: '1.1.0',
  });
}

describe('digest (key-pair) login', () => {
  let srv;
  before(async () => { srv = await h.startServer({ config: CONFIG }); });
  after(async () => {
    await Promise.all(mine.splice(0).map(h.destroyClient));
    await h.cleanup(srv);
  });

  it('the real client logs in with keyPair + loginType digest and works within its permissions', async () => {
    const c = await client(srv, { username: 'digest_user', keyPair: userKey, loginType: 'digest' });
    assert.equal(c.session.user.username, 'digest_user');
    assert.equal(c.session.user.publicKey, userKey.publicKey);
    assert.equal(typeof c.session.secret, 'string', 'a session with a public key gets a secret');
    assert.ok(c.session.secret.length > 0);
    assert.equal(typeof c.session.token, 'string');
    await h.set(c, '/digest/x', { ok: true });
    assert.equal((await h.get(c, '/digest/x')).ok, true);
    const e = await h.expectError(h.set(c, '/elsewhere/x', { ok: true }), 'outside permissions');
    assert.equal(e.name, 'AccessDenied');
  });

  it('the client signs with a key that is not the user\'s: Invalid credentials', async () => {
    // The user's public key, somebody else's private key: the signature does not verify.
    const e = await h.expectError(
      client(srv, { username: 'digest_user', keyPair: { publicKey: userKey.publicKey, privateKey: otherKey.privateKey } }),
      'wrong private key');
    assert.equal(e.name, 'AccessDenied');
    assert.equal(e.message, 'Invalid credentials');
    // A whole other keypair is not the user's key either.
    const e2 = await h.expectError(client(srv, { username: 'digest_user', keyPair: otherKey }), 'other keypair');
    assert.equal(e2.name, 'AccessDenied');
    assert.equal(e2.message, 'Invalid credentials');
  });

  it('a user without a stored key cannot log in by digest; its password still works', async () => {
    const e = await h.expectError(client(srv, { username: 'password_user', keyPair: otherKey }), 'no stored key');
    assert.equal(e.message, 'Invalid credentials');
    const c = await client(srv, { username: 'password_user', password: 'pw' });
    assert.equal(c.session.user.username, 'password_user');
    assert.equal(c.session.secret, undefined, 'no public key, no secret');
  });

  it('request-nonce reply shape (raw frames)', async () => {
    const r = await h.RawSocket.open(srv.port);
    const reply = await r.request({ action: 'request-nonce', data: { publicKey: userKey.publicKey }, protocol: '1.1.0' });
    h.assertShape(reply, {
      data: { nonce: h.m.re(NONCE) },
      _meta: { type: 'response', status: 'ok', published: false, eventId: reply._meta.eventId, action: 'request-nonce' },
      protocol: '1.1.0',
    }, 'request-nonce reply');
    await r.close();
  });

  it('request-nonce without a public key: Error: no public key with request', async () => {
    const r = await h.RawSocket.open(srv.port);
    // Without any data the reference answered a TypeError text; happn-rs gives the same error as {}.
    for (const data of [{}, { publicKey: '' }, undefined]) {
      const msg = { action: 'request-nonce', protocol: '1.1.0' };
      if (data !== undefined) msg.data = data;
      const reply = await r.request(msg);
      h.assertShape(reply, {
        data: null,
        _meta: {
          type: 'response', status: 'error', published: false, eventId: reply._meta.eventId, action: 'request-nonce',
          error: { name: 'Error: no public key with request' },
        },
        protocol: '1.1.0',
      }, 'no public key (' + JSON.stringify(data) + ')');
    }
    assert.equal(r.closed, null, 'socket still open');
    await r.close();
  });

  it('raw digest login: reply carries user.publicKey and secret; the nonce is reusable', async () => {
    const a = await h.RawSocket.open(srv.port);
    const reply = await rawDigestLogin(a, 'digest_user', userKey);
    h.assertShape(reply, {
      data: {
        id: h.m.id, token: h.m.nonEmpty, timestamp: h.m.ts,
        info: { _local: false, happn: { name: h.m.str } },
        index: h.m.num, type: 1,
        user: { username: 'digest_user', publicKey: userKey.publicKey },
        secret: h.m.nonEmpty,
      },
      _meta: { type: 'response', status: 'ok', published: false, eventId: reply._meta.eventId, action: 'login' },
      protocol: '1.1.0',
    }, 'digest login reply');
    // The same nonce logs in again (not consumed), on another socket.
    const n = await a.request({ action: 'request-nonce', data: { publicKey: userKey.publicKey }, protocol: '1.1.0' });
    const digest = crypto.sign(n.data.nonce, userKey.privateKey);
    const login = { username: 'digest_user', info: {}, publicKey: userKey.publicKey, loginType: 'digest', digest };
    const b = await h.RawSocket.open(srv.port);
    const again1 = await b.request({ action: 'login', data: login, protocol: '1.1.0' });
    const again2 = await b.request({ action: 'login', data: login, protocol: '1.1.0' });
    assert.equal(again1._meta.status, 'ok', JSON.stringify(again1));
    assert.equal(again2._meta.status, 'ok', JSON.stringify(again2));
    assert.notEqual(again1.data.secret, again2.data.secret, 'each session has its own secret');
    await a.close();
    await b.close();
  });

  it('digest without a live nonce: Error: nonce expired or public key invalid', async () => {
    const r = await h.RawSocket.open(srv.port);
    // unusedKey never asked for a nonce; sign something nonce-shaped.
    const digest = crypto.sign(crypto.generateNonce('never issued'), unusedKey.privateKey);
    const reply = await r.request({
      action: 'login',
      data: { username: 'unused_key_user', info: {}, publicKey: unusedKey.publicKey, loginType: 'digest', digest },
      protocol: '1.1.0',
    });
    h.assertShape(reply, {
      data: null,
      _meta: {
        type: 'response', status: 'error', published: false, eventId: reply._meta.eventId, action: 'login',
        error: { name: 'Error: nonce expired or public key invalid' },
      },
      protocol: '1.1.0',
    }, 'no nonce');
    await r.close();
  });

  it('bad digests count towards the lockout', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await h.RawSocket.open(srv.port);
      const bad = await rawDigestLogin(r, 'lock_user', lockKey, otherKey);
      assert.equal(bad._meta.error.message, 'Invalid credentials', JSON.stringify(bad));
      await r.close();
    }
    const r = await h.RawSocket.open(srv.port);
    const locked = await rawDigestLogin(r, 'lock_user', lockKey);
    assert.equal(locked._meta.error.name, 'AccessDenied');
    assert.equal(locked._meta.error.message, 'Account locked out');
    await r.close();
  });
});

describe('nonce TTL and insecure mode', () => {
  let srv;
  after(() => h.cleanup(srv));

  it('a nonce older than defaultNonceTTL no longer logs in', async () => {
    srv = await h.startServer({ config: Object.assign({}, CONFIG, { services: { security: { config: { defaultNonceTTL: 300 } } } }) });
    const r = await h.RawSocket.open(srv.port);
    const n = await r.request({ action: 'request-nonce', data: { publicKey: userKey.publicKey }, protocol: '1.1.0' });
    const digest = crypto.sign(n.data.nonce, userKey.privateKey);
    await h.sleep(450);
    const reply = await r.request({
      action: 'login',
      data: { username: 'digest_user', info: {}, publicKey: userKey.publicKey, loginType: 'digest', digest },
      protocol: '1.1.0',
    });
    assert.equal(reply._meta.status, 'error');
    assert.equal(reply._meta.error.name, 'Error: nonce expired or public key invalid');
    await r.close();
    await srv.stop('SIGKILL');
  });

  it('request-nonce works in insecure mode too', async () => {
    srv = await h.startServer({});
    const r = await h.RawSocket.open(srv.port);
    const reply = await r.request({ action: 'request-nonce', data: { publicKey: userKey.publicKey }, protocol: '1.1.0' });
    assert.equal(reply._meta.status, 'ok', JSON.stringify(reply));
    assert.match(reply.data.nonce, NONCE);
    await r.close();
  });
});

describe('digest login over HTTP (/auth/request-nonce, /auth/login)', () => {
  let srv;
  before(async () => { srv = await h.startServer({ config: CONFIG }); });
  after(async () => {
    await Promise.all(mine.splice(0).map(h.destroyClient));
    await h.cleanup(srv);
  });

  it('request-nonce answers the original envelope; a signed nonce logs in at /auth/login', async () => {
    const res = await h.httpRequest(srv.port, '/auth/request-nonce?publicKey=' + encodeURIComponent(userKey.publicKey));
    assert.equal(res.status, 200, res.body);
    assert.match(res.headers['content-type'], /application\/json/);
    const m = res.body.match(/^\{"message":"nonce generated", "data":"([^"]+)", "error":null\}$/);
    assert.ok(m, res.body);
    assert.match(m[1], NONCE);
    const digest = crypto.sign(m[1], userKey.privateKey);
    const login = await h.httpRequest(srv.port, '/auth/login?username=digest_user&publicKey=' + encodeURIComponent(userKey.publicKey) +
      '&digest=' + encodeURIComponent(digest));
    assert.equal(login.status, 200, login.body);
    const token = JSON.parse(login.body).data;
    const c = await client(srv, { token });
    assert.equal(c.session.user.username, 'digest_user');
    await h.set(c, '/digest/http', { ok: true });
  });

  it('a digest signed by another key is refused; a missing key is a 500 with the reason', async () => {
    const res = await h.httpRequest(srv.port, '/auth/request-nonce?public_key=' + encodeURIComponent(otherKey.publicKey));
    const nonce = JSON.parse(res.body).data;
    const digest = crypto.sign(nonce, otherKey.privateKey);
    const login = await h.httpRequest(srv.port, '/auth/login?username=digest_user&publicKey=' + encodeURIComponent(otherKey.publicKey) +
      '&digest=' + encodeURIComponent(digest));
    assert.equal(login.status, 403);
    assert.equal(login.body, '{"message":"login failed", "data":null, "error":{"name":"AccessDenied","message":"Invalid credentials"}}');
    const missing = await h.httpRequest(srv.port, '/auth/request-nonce');
    assert.equal(missing.status, 500);
    assert.match(missing.body, /no public key with request/);
  });
});
