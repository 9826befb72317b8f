'use strict';
// secure mode: _ADMIN login, bad credentials, configured users/groups and their permissions,
// requests before login, adminUser.password (semantics §6.2–6.5; decisions.md security fixes).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const GROUP_PERMS = {
  '/allowed/*': { actions: ['get', 'on'] },
  '/allowed/writable/*': { actions: ['set', 'get'] },
  '/exact/only': { actions: ['get'] },
  '/full/*': { actions: ['*'] },
};

const CONFIG = {
  secure: true,
  name: 'compat-secure',
  groups: [
    { name: 'limitedGroup', permissions: GROUP_PERMS },
    { name: 'otherGroup', permissions: { '/other/*': { actions: ['get', 'set'] } } },
  ],
  users: [
    { username: 'limited', password: 'limited_pw', groups: ['limitedGroup'] },
    { username: 'u', password: 'u_pw', groups: ['otherGroup'] },
    { username: 'u1', password: 'u1_pw', groups: ['limitedGroup'] },
    { username: 'lockme', password: 'lock_pw', groups: ['otherGroup'] },
  ],
};

const isAccessDenied = (e, message) => {
  assert.equal(e.name, 'AccessDenied', 'error name: ' + h.safeJson(e) + ' ' + e.name);
  if (message) assert.equal(e.message, message);
};

describe('secure mode', () => {
  let srv;
  let admin;
  before(async () => {
    srv = await h.startServer({ config: CONFIG });
    admin = await h.connect(srv);
    await h.set(admin, '/allowed/thing', { seeded: true });
    await h.set(admin, '/exact/only', { exact: true });
    await h.set(admin, '/exact/only/below', { below: true });
    await h.set(admin, '/forbidden/thing', { secret: true });
    await h.set(admin, '/x/allowed/y', { outside: true });
  });
  after(() => h.cleanup(srv));

  it('_ADMIN/happn logs in: session has id, token, user, type 1, happn name', async () => {
    const s = admin.session;
    assert.equal(typeof s.id, 'string');
    assert.ok(s.id.length >= 8, 'session id ' + s.id);
    assert.equal(typeof s.token, 'string');
    assert.ok(s.token.length > 10, 'token ' + s.token);
    assert.equal(s.user.username, '_ADMIN');
    assert.equal(s.user.password, undefined, 'no password in the session');
    assert.equal(s.type, 1);
    assert.equal(typeof s.index, 'number');
    assert.equal(typeof s.timestamp, 'number');
    assert.equal(s.info.happn.name, 'compat-secure');
    assert.equal(s.info._browser, false);
    assert.equal(admin.serverInfo.secure, true);
    assert.equal(admin.serverInfo.name, 'compat-secure');
  });

  it('login reply frame (raw) has no _meta.sessionId', async () => {
    const r = await h.RawSocket.open(srv.port);
    const reply = await r.login({ username: '_ADMIN', password: 'happn', info: { _browser: false } });
    h.assertShape(reply, {
      data: {
        id: h.m.id, token: h.m.nonEmpty, timestamp: h.m.ts,
        info: { _browser: false, _local: false, happn: { name: 'compat-secure' } },
        index: h.m.num, type: 1, user: { username: '_ADMIN' },
      },
      _meta: { type: 'response', status: 'ok', published: false, eventId: reply._meta.eventId, action: 'login' },
      protocol: '1.1.0',
    }, 'login reply');
    await r.close();
  });

  it('wrong password → AccessDenied "Invalid credentials"', async () => {
    const e = await h.expectError(h.connect(srv, { username: 'limited', password: 'wrong' }), 'bad password');
    isAccessDenied(e, 'Invalid credentials');
  });

  it('unknown user → AccessDenied "Invalid credentials"', async () => {
    const e = await h.expectError(h.connect(srv, { username: 'nobody', password: 'x' }), 'unknown user');
    isAccessDenied(e, 'Invalid credentials');
  });

  it('no credentials → AccessDenied "Invalid credentials"', async () => {
    const e = await h.expectError(h.connect(srv, { anonymous: true }), 'anonymous');
    isAccessDenied(e, 'Invalid credentials');
  });

  describe('configured user with group permissions', () => {
    let u;
    before(async () => { u = await h.connect(srv, { username: 'limited', password: 'limited_pw' }); });

    it('logs in as itself', () => {
      assert.equal(u.session.user.username, 'limited');
      assert.equal(typeof u.session.token, 'string');
    });

    it('get on a permitted wildcard path works', async () => {
      assert.equal((await h.get(u, '/allowed/thing')).seeded, true);
      const list = await h.get(u, '/allowed/*');
      assert.ok(h.paths(list).includes('/allowed/thing'));
    });

    it('set / remove without the action → AccessDenied "unauthorized"', async () => {
      isAccessDenied(await h.expectError(h.set(u, '/allowed/thing', { hacked: true }), 'set'), 'unauthorized');
      isAccessDenied(await h.expectError(h.remove(u, '/allowed/thing'), 'remove'), 'unauthorized');
      assert.equal((await h.get(admin, '/allowed/thing')).seeded, true, 'data untouched');
      assert.equal((await h.get(admin, '/allowed/thing')).hacked, undefined);
    });

    it('paths outside the permissions → AccessDenied "unauthorized"', async () => {
      isAccessDenied(await h.expectError(h.get(u, '/forbidden/thing'), 'get forbidden'), 'unauthorized');
      isAccessDenied(await h.expectError(h.set(u, '/forbidden/new', { a: 1 }), 'set forbidden'), 'unauthorized');
      isAccessDenied(await h.expectError(h.get(u, '/forbidden/*'), 'get forbidden/*'), 'unauthorized');
    });

    it('permission patterns are anchored: /allowed/* does not grant /x/allowed/y', async () => {
      isAccessDenied(await h.expectError(h.get(u, '/x/allowed/y'), 'get /x/allowed/y'), 'unauthorized');
    });

    it('an exact permission grants only that path', async () => {
      assert.equal((await h.get(u, '/exact/only')).exact, true);
      isAccessDenied(await h.expectError(h.get(u, '/exact/only/below'), 'below exact'), 'unauthorized');
    });

    it('a narrower permission is not discarded by a broader one (actions combine)', async () => {
      const r = await h.set(u, '/allowed/writable/x', { ok: true });
      assert.equal(r.ok, true);
      assert.equal((await h.get(u, '/allowed/writable/x')).ok, true);
    });

    it('"*" action grants everything on the path', async () => {
      await h.set(u, '/full/a', { v: 1 });
      assert.equal((await h.get(u, '/full/a')).v, 1);
      assert.equal((await h.remove(u, '/full/a')).removed, 1);
    });

    it('on a permitted path delivers events; on elsewhere is refused', async () => {
      const ev = h.collector();
      await h.on(u, '/allowed/*', { event_type: 'set' }, ev.handler);
      isAccessDenied(await h.expectError(h.on(u, '/forbidden/*', { event_type: 'set' }, () => {}), 'on forbidden'), 'unauthorized');
      await h.set(admin, '/allowed/thing', { changed: 1 });
      await ev.wait(1);
      h.deq(ev.items[0].data, { changed: 1 });
      assert.equal(ev.items[0].meta.sessionId, u.session.id);
      assert.equal(ev.items[0].meta.channel, '/SET@/allowed/*');
    });

    it('access denied error frame is exactly {name:AccessDenied, message:unauthorized}', async () => {
      const r = await h.RawSocket.open(srv.port);
      await r.login({ username: 'limited', password: 'limited_pw', info: {} });
      const reply = await r.request({ action: 'set', path: '/forbidden/raw', data: { a: 1 }, options: { timeout: 20000 }, protocol: '1.1.0' });
      h.assertShape(reply, {
        data: null,
        _meta: { type: 'response', status: 'error', published: false, eventId: reply._meta.eventId, action: 'set', error: { name: 'AccessDenied', message: 'unauthorized' } },
        protocol: '1.1.0',
      }, 'access denied reply');
      await r.close();
    });
  });

  it('token login: the session token logs in again and gets a new session', async () => {
    const c = await h.connect(srv, { token: admin.session.token });
    assert.equal(c.session.user.username, '_ADMIN');
    assert.notEqual(c.session.id, admin.session.id);
    assert.equal((await h.get(c, '/exact/only')).exact, true);
    const e = await h.expectError(h.connect(srv, { token: 'not.a.token' }), 'bad token');
    isAccessDenied(e, 'Invalid credentials');
  });

  it('forged tokens are refused: alg "none", another secret, an edited payload', async () => {
    const nodeCrypto = require('crypto');
    const b64url = v => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
    const [header, payload] = admin.session.token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const sign = (h64, p64, secret) => nodeCrypto.createHmac('sha256', secret).update(h64 + '.' + p64).digest('base64url');
    const none = b64url({ alg: 'none', typ: 'JWT' }) + '.' + payload + '.';
    const otherSecret = header + '.' + payload + '.' + sign(header, payload, 'not the server secret');
    const edited = b64url(Object.assign({}, claims, { username: 'limited' }));
    const editedPayload = header + '.' + edited + '.' + admin.session.token.split('.')[2];
    for (const token of [none, otherSecret, editedPayload]) {
      const e = await h.expectError(h.connect(srv, { token }), 'login with a forged token');
      isAccessDenied(e, 'Invalid credentials');
      const res = await h.httpRequest(srv.port, '/some/route', { headers: { Cookie: 'happn_token=' + token } });
      assert.equal(res.status, 403);
      assert.equal(res.body, 'invalid token format or null token');
    }
  });

  it('login info is echoed in the session with _local:false and happn.name', async () => {
    const c = await h.connect(srv, { username: 'limited', password: 'limited_pw', info: { app: 'compat', n: 1 } });
    assert.equal(c.session.info.app, 'compat');
    assert.equal(c.session.info.n, 1);
    assert.equal(c.session.info._browser, false);
    assert.equal(c.session.info._local, false);
    assert.equal(c.session.info.happn.name, 'compat-secure');
  });

  it('account lockout after 4 failed attempts, even with the right password', async () => {
    for (let i = 0; i < 4; i++) {
      const e = await h.expectError(h.connect(srv, { username: 'lockme', password: 'wrong' + i }), 'attempt ' + i);
      isAccessDenied(e, 'Invalid credentials');
    }
    const locked = await h.expectError(h.connect(srv, { username: 'lockme', password: 'lock_pw' }), 'locked');
    isAccessDenied(locked, 'Account locked out');
    const other = await h.connect(srv, { username: 'u', password: 'u_pw' });
    assert.equal(other.session.user.username, 'u', 'other users are not locked');
  });

  it('users are looked up by exact name (u is not u1)', async () => {
    const u = await h.connect(srv, { username: 'u', password: 'u_pw' });
    assert.equal(u.session.user.username, 'u');
    await h.set(u, '/other/1', { mine: true });
    isAccessDenied(await h.expectError(h.get(u, '/allowed/thing'), 'u must not have u1 groups'), 'unauthorized');
    const e = await h.expectError(h.connect(srv, { username: 'u', password: 'u1_pw' }), 'u with u1 password');
    isAccessDenied(e, 'Invalid credentials');
  });

  it('request before login: error reply, socket stays usable (describe, login, get)', async () => {
    const r = await h.RawSocket.open(srv.port);
    const early = await r.request({ action: 'get', path: '/allowed/thing', options: {}, protocol: '1.1.0' });
    assert.equal(early.data, null);
    assert.equal(early._meta.status, 'error', JSON.stringify(early));
    assert.equal(early._meta.type, 'response');
    assert.equal(early._meta.action, 'get');
    assert.equal(early._meta.error.name, 'AccessDenied', 'decisions.md: AccessDenied with a clear message before login: ' + JSON.stringify(early));
    assert.equal(typeof early._meta.error.message, 'string');
    assert.ok(early._meta.error.message.length > 0);
    for (const action of ['set', 'remove', 'on']) {
      const path = action === 'on' ? '/SET@/allowed/*' : '/allowed/thing';
      const rep = await r.request({ action, path, data: action === 'set' ? { x: 1 } : undefined, options: {}, protocol: '1.1.0' });
      assert.equal(rep._meta.status, 'error', action + ': ' + JSON.stringify(rep));
    }
    assert.equal(r.closed, null, 'socket still open');
    const login = await r.login({ username: '_ADMIN', password: 'happn', info: {} });
    assert.equal(login._meta.status, 'ok', JSON.stringify(login));
    const g = await r.request({ action: 'get', path: '/exact/only', protocol: '1.1.0' });
    assert.equal(g._meta.status, 'ok', JSON.stringify(g));
    assert.equal(g.data.exact, true);
    await r.close();
  });

  it('login without data / with garbage data is an error reply, not a crash', async () => {
    const r = await h.RawSocket.open(srv.port);
    const a = await r.request({ action: 'login', protocol: '1.1.0' });
    assert.equal(a._meta.status, 'error', JSON.stringify(a));
    const b = await r.request({ action: 'login', data: 'x', protocol: '1.1.0' });
    assert.equal(b._meta.status, 'error', JSON.stringify(b));
    const c = await r.request({ action: 'login', data: { username: '_ADMIN' }, protocol: '1.1.0' });
    assert.equal(c._meta.status, 'error', JSON.stringify(c));
    assert.equal(c._meta.error.name, 'AccessDenied');
    assert.equal(c._meta.error.message, 'Invalid credentials');
    const d = await r.request({ action: 'describe', protocol: '1.1.0' });
    assert.equal(d._meta.status, 'ok');
    assert.ok(srv.running, 'server still running');
    await r.close();
  });

  it('password hashes and the server private key are not readable, even by _ADMIN', async () => {
    let user = null;
    try { user = await h.get(admin, '/_SYSTEM/_SECURITY/_USER/limited'); } catch (e) { user = null; }
    if (user) {
      assert.equal(user.password, undefined, 'password hash leaked: ' + h.safeJson(user));
      assert.equal(user.username, 'limited');
    }
    let all = [];
    try { all = await h.get(admin, '/_SYSTEM/*'); } catch (e) { all = []; }
    const text = JSON.stringify(all);
    assert.ok(!/pbkdf2\$/.test(text), 'hash visible in /_SYSTEM/*');
    assert.ok(!/privateKey/.test(text), 'private key visible in /_SYSTEM/*');
    let kp = null;
    try { kp = await h.get(admin, '/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR'); } catch (e) { kp = null; }
    assert.ok(!/privateKey/.test(JSON.stringify(kp)), 'KEYPAIR readable: ' + h.safeJson(kp));
  });
});

describe('secure mode options', () => {
  let srv;
  after(() => h.cleanup(srv));

  it('adminUser.password changes the _ADMIN password', async () => {
    srv = await h.startServer({ config: { secure: true, adminUser: { password: 's3cret-admin' } } });
    const e = await h.expectError(h.connect(srv, { username: '_ADMIN', password: 'happn' }), 'default password');
    isAccessDenied(e, 'Invalid credentials');
    const c = await h.connect(srv, { username: '_ADMIN', password: 's3cret-admin' });
    assert.equal(c.session.user.username, '_ADMIN');
    await h.set(c, '/admin/ok', { v: 1 });
    assert.equal((await h.get(c, '/admin/ok')).v, 1);
  });
});

describe('--secure flag', () => {
  let srv;
  after(() => h.cleanup(srv));

  it('turns security on without a config', async () => {
    srv = await h.startServer({ secure: true });
    const r = await h.RawSocket.open(srv.port);
    const d = await r.request({ action: 'describe', protocol: '1.1.0' });
    assert.equal(d.data.secure, true);
    await r.close();
    const e = await h.expectError(h.connect(srv, { anonymous: true }), 'anonymous');
    isAccessDenied(e, 'Invalid credentials');
    const c = await h.connect(srv);
    assert.equal(c.session.user.username, '_ADMIN');
  });
});
