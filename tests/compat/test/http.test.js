'use strict';
// The HTTP side of secure mode (semantics §8): /auth/login with the original's parameter aliases
// and exact bodies, the happn_token cookie / ?happn_token= on guarded routes checked against
// /@HTTP<pathname> with the lower-case method, exclusions, and the static folder (--static), with
// the real client logging in over the websocket with a token minted over HTTP.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./helpers');

const LOGIN_FAILED = '{"message":"login failed", "data":null, "error":{"name":"AccessDenied","message":"Invalid credentials"}}';
const LOCKED_OUT = '{"message":"login failed", "data":null, "error":{"name":"AccessDenied","message":"Account locked out"}}';
const LOGIN_OK = /^\{"message":"login successful", "data":"([^"]+)", "error":null\}$/;

const CONFIG = {
  secure: true,
  name: 'compat-http',
  middleware: { security: { exclusions: ['/public/*', '/open.html'] } },
  groups: [
    {
      name: 'webGroup',
      permissions: {
        '/@HTTP/pages/*': { actions: ['get'] },
        '/@HTTP/api/item': { actions: ['post'] },
        '/data/*': { actions: ['get', 'set'] },
      },
    },
  ],
  users: [
    { username: 'web', password: 'web_pw', groups: ['webGroup'] },
    { username: 'lockme', password: 'lock_pw', groups: ['webGroup'] },
  ],
};

/** a site folder with a secret next to it and a symlink pointing at the secret */
function makeSite() {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-http-'));
  const root = path.join(base, 'site');
  fs.mkdirSync(path.join(root, 'pages'), { recursive: true });
  fs.mkdirSync(path.join(root, 'public'));
  fs.writeFileSync(path.join(root, 'index.html'), '<h1>home</h1>');
  fs.writeFileSync(path.join(root, 'open.html'), 'open page');
  fs.writeFileSync(path.join(root, 'pages', 'a.html'), '<p>page a</p>');
  fs.writeFileSync(path.join(root, 'pages', 'style.css'), 'body { color: red }');
  fs.writeFileSync(path.join(root, 'pages', 'app.js'), 'console.log(1)');
  fs.writeFileSync(path.join(root, 'public', 'p.txt'), 'public text');
  fs.writeFileSync(path.join(root, '.hidden'), 'dotfile');
  fs.writeFileSync(path.join(base, 'secret.txt'), 'TOP SECRET');
  fs.symlinkSync(path.join(base, 'secret.txt'), path.join(root, 'pages', 'link.txt'));
  return { base, root };
}

const cookie = token => ({ Cookie: 'other=1; happn_token=' + token });

async function login(srv, query) {
  return h.httpRequest(srv.port, '/auth/login?' + query);
}

async function tokenFor(srv, username, password) {
  const res = await login(srv, 'username=' + encodeURIComponent(username) + '&password=' + encodeURIComponent(password));
  const m = LOGIN_OK.exec(res.body);
  assert.ok(m, 'login of ' + username + ' failed: ' + res.status + ' ' + res.body);
  return m[1];
}

function assertRefused(res, body, label) {
  assert.equal(res.status, 403, (label || '') + ' status, body: ' + res.body);
  assert.equal(res.statusMessage, 'unauthorized access', label);
  assert.match(res.headers['content-type'] || '', /^text\/plain/, label);
  assert.equal(res.body, body, label);
}

describe('HTTP in secure mode', () => {
  let srv;
  let site;
  let webToken;
  let adminToken;
  before(async () => {
    site = makeSite();
    srv = await h.startServer({ configFile: CONFIG, args: ['--static', site.root] });
    webToken = await tokenFor(srv, 'web', 'web_pw');
    adminToken = await tokenFor(srv, '_ADMIN', 'happn');
  });
  after(async () => {
    await h.cleanup(srv);
    fs.rmSync(site.base, { recursive: true, force: true });
  });

  describe('/auth/login', () => {
    it('success: 200 application/json with the exact envelope', async () => {
      const res = await login(srv, 'username=web&password=web_pw');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.match(res.body, LOGIN_OK);
      assert.equal(typeof JSON.parse(res.body).data, 'string');
    });

    it('parameter aliases, case-insensitive', async () => {
      for (const q of ['u=web&p=web_pw', 'user=web&pass=web_pw', 'USERNAME=web&PWD=web_pw', 'User=web&Password=web_pw']) {
        const res = await login(srv, q);
        assert.equal(res.status, 200, q + ': ' + res.body);
        assert.match(res.body, LOGIN_OK, q);
      }
    });

    it('POST with the credentials in the query works too (only the query is read)', async () => {
      const res = await h.httpRequest(srv.port, '/auth/login?username=web&password=web_pw', { method: 'POST' });
      assert.match(res.body, LOGIN_OK);
    });

    it('failure: 403 with the exact body (wrong password, unknown user, no parameters)', async () => {
      for (const q of ['username=web&password=nope', 'username=nobody&password=x', '']) {
        const res = await login(srv, q);
        assert.equal(res.status, 403, q);
        assert.equal(res.statusMessage, 'Forbidden', q);
        assert.equal(res.headers['content-type'], 'application/json', q);
        assert.equal(res.body, LOGIN_FAILED, q);
      }
    });

    it('lockout after 4 failures applies to HTTP and websocket logins alike', async () => {
      for (let i = 0; i < 4; i++) assert.equal((await login(srv, 'username=lockme&password=bad')).body, LOGIN_FAILED);
      const res = await login(srv, 'username=lockme&password=lock_pw');
      assert.equal(res.status, 403);
      assert.equal(res.body, LOCKED_OUT);
      const e = await h.expectError(h.connect(srv, { username: 'lockme', password: 'lock_pw' }), 'locked socket login');
      assert.equal(e.name, 'AccessDenied');
      assert.equal(e.message, 'Account locked out');
    });

    it('the token logs the real client in over the websocket (login({token}))', async () => {
      const c = await h.connect(srv, { token: webToken });
      assert.equal(c.session.user.username, 'web');
      await h.set(c, '/data/x', { from: 'token' });
      assert.equal((await h.get(c, '/data/x')).from, 'token');
      const e = await h.expectError(h.get(c, '/elsewhere'), 'get outside the permissions');
      assert.equal(e.message, 'unauthorized');
      await h.disconnect(c);
    });
  });

  describe('guarded routes', () => {
    it('no token → 403 "happn_token cookie missing in request"', async () => {
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html'), 'happn_token cookie missing in request');
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html', { headers: { Cookie: 'happn_token=' } }),
        'happn_token cookie missing in request', 'empty cookie');
    });

    it('a token that does not decode → 403 "invalid token format or null token"', async () => {
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html', { headers: cookie('garbage') }),
        'invalid token format or null token', 'cookie');
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html?happn_token=abc.def.ghi'),
        'invalid token format or null token', 'query');
    });

    it('cookie or query token with a /@HTTP grant → served', async () => {
      let res = await h.httpRequest(srv.port, '/pages/a.html', { headers: cookie(webToken) });
      assert.equal(res.status, 200, res.body);
      assert.equal(res.body, '<p>page a</p>');
      assert.match(res.headers['content-type'], /^text\/html/);
      res = await h.httpRequest(srv.port, '/pages/style.css?happn_token=' + webToken);
      assert.equal(res.status, 200, res.body);
      assert.equal(res.body, 'body { color: red }');
      assert.match(res.headers['content-type'], /^text\/css/);
      res = await h.httpRequest(srv.port, '/pages/app.js', { headers: cookie(webToken) });
      assert.match(res.headers['content-type'], /javascript/);
    });

    it('without the grant → 403 "unauthorized access to path /@HTTP<path>" (path and method)', async () => {
      assertRefused(await h.httpRequest(srv.port, '/index.html', { headers: cookie(webToken) }),
        'unauthorized access to path /@HTTP/index.html');
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html', { method: 'POST', headers: cookie(webToken) }),
        'unauthorized access to path /@HTTP/pages/a.html', 'post needs its own grant');
      assertRefused(await h.httpRequest(srv.port, '/x/pages/a.html?happn_token=' + webToken),
        'unauthorized access to path /@HTTP/x/pages/a.html', 'grants are anchored');
    });

    it('a granted route with nothing behind it → 404 "Cannot POST /api/item"', async () => {
      const res = await h.httpRequest(srv.port, '/api/item', { method: 'POST', headers: cookie(webToken) });
      assert.equal(res.status, 404);
      assert.equal(res.body, 'Cannot POST /api/item');
    });

    it('_ADMIN passes everything', async () => {
      let res = await h.httpRequest(srv.port, '/index.html', { headers: cookie(adminToken) });
      assert.equal(res.status, 200);
      res = await h.httpRequest(srv.port, '/', { headers: cookie(adminToken) });
      assert.equal(res.body, '<h1>home</h1>', 'index.html for /');
      res = await h.httpRequest(srv.port, '/nothing/here', { method: 'DELETE', headers: cookie(adminToken) });
      assert.equal(res.status, 404);
      assert.equal(res.body, 'Cannot DELETE /nothing/here');
    });

    it('the token of a websocket session works on HTTP until the session is revoked', async () => {
      const c = await h.connect(srv, { username: 'web', password: 'web_pw' });
      const token = c.session.token;
      assert.equal((await h.httpRequest(srv.port, '/pages/a.html', { headers: cookie(token) })).status, 200);
      await h.cbCall('disconnect revoking', cb => c.disconnect({ revokeSession: true }, cb));
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html', { headers: cookie(token) }),
        'unauthorized access to path /@HTTP/pages/a.html', 'revoked');
      assert.equal((await h.httpRequest(srv.port, '/pages/a.html', { headers: cookie(webToken) })).status, 200,
        'other sessions are unaffected');
    });

    it('exclusions skip the token check (anchored on the pathname)', async () => {
      let res = await h.httpRequest(srv.port, '/public/p.txt');
      assert.equal(res.status, 200);
      assert.equal(res.body, 'public text');
      res = await h.httpRequest(srv.port, '/open.html?x=1');
      assert.equal(res.body, 'open page');
      assertRefused(await h.httpRequest(srv.port, '/pages/a.html?/public/x'), 'happn_token cookie missing in request',
        'the query string does not count');
      assertRefused(await h.httpRequest(srv.port, '/x/public/p.txt'), 'happn_token cookie missing in request', 'anchored');
    });

    it('/version, /ping, /primus/spec need no token', async () => {
      assert.equal((await h.httpRequest(srv.port, '/version')).body, '{"version":"2.21.0"}');
      assert.equal((await h.httpRequest(srv.port, '/ping')).body, 'pong');
      assert.equal((await h.httpRequest(srv.port, '/primus/spec')).status, 200);
    });
  });

  describe('static folder', () => {
    const get = p => h.httpRequest(srv.port, p, { headers: cookie(adminToken) });

    it('missing files → 404 "Cannot GET /x"', async () => {
      const res = await get('/missing.html');
      assert.equal(res.status, 404);
      assert.equal(res.body, 'Cannot GET /missing.html');
    });

    it('a directory without its slash redirects; with it, its index (or 404)', async () => {
      const res = await get('/pages');
      assert.equal(res.status, 301);
      assert.equal(res.headers.location, '/pages/');
      assert.equal((await get('/pages/')).status, 404, 'no index.html in pages/');
    });

    it('nothing outside the folder is served: .., encoded .., symlinks, dotfiles', async () => {
      for (const p of ['/../secret.txt', '/pages/../../secret.txt', '/%2e%2e/secret.txt', '/pages/%2E%2E/%2e%2e/secret.txt',
        '/pages%2f..%2f..%2fsecret.txt', '/..%5csecret.txt', '/pages/link.txt', '/.hidden', '/index.html%00.css']) {
        const res = await get(p);
        assert.equal(res.status, 404, p + ' → ' + res.status + ' ' + res.body);
        assert.ok(!res.body.includes('TOP SECRET') && !res.body.includes('dotfile'), p);
      }
    });
  });
});

describe('HTTP: cookieName and insecure mode', () => {
  let secureSrv;
  let plainSrv;
  let site;
  before(async () => {
    site = makeSite();
    secureSrv = await h.startServer({
      config: {
        secure: true,
        // happn 3 nests the middleware options under services.connect; accepted too
        services: { connect: { config: { middleware: { security: { cookieName: 'my_token' } } } } },
      },
      args: ['--static', site.root],
    });
    plainSrv = await h.startServer({ configFile: { static: site.root } });
  });
  after(async () => {
    await h.cleanup(secureSrv, plainSrv);
    fs.rmSync(site.base, { recursive: true, force: true });
  });

  it('middleware.security.cookieName renames the token cookie', async () => {
    const token = await tokenFor(secureSrv, '_ADMIN', 'happn');
    assertRefused(await h.httpRequest(secureSrv.port, '/index.html', { headers: { Cookie: 'happn_token=' + token } }),
      'happn_token cookie missing in request', 'the default name is not read');
    const res = await h.httpRequest(secureSrv.port, '/index.html', { headers: { Cookie: 'my_token=' + token } });
    assert.equal(res.status, 200);
    assert.equal((await h.httpRequest(secureSrv.port, '/index.html?happn_token=' + token)).status, 200, 'query name unchanged');
  });

  it('insecure: no auth routes, static files need no token', async () => {
    const res = await h.httpRequest(plainSrv.port, '/auth/login?username=_ADMIN&password=happn');
    assert.equal(res.status, 404);
    assert.equal(res.body, 'Cannot GET /auth/login');
    assert.equal((await h.httpRequest(plainSrv.port, '/pages/a.html')).body, '<p>page a</p>');
    assert.equal((await h.httpRequest(plainSrv.port, '/%2e%2e/secret.txt')).status, 404);
  });

  it('a static folder that does not exist stops the start with a clear message', async () => {
    const r = await h.runCli(['--memory', '--port', String(await h.freePort()), '--static', path.join(site.base, 'nope')]);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /static folder .*nope/);
  });
});
