'use strict';
// Secure mode in Chromium: password, token and key-pair (digest) logins, the error objects of a
// refused login, the happn_token cookie, revokeSession, server-side-disconnect as a system
// message; and a server with encryptPayloads (ECIES login, AES payloads, events, arrays).
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, openBrowser, inPage, ROOT } = require('./helpers');
const path = require('path');

const COMPAT_MODULES = path.join(ROOT, 'tests/compat/node_modules');
const Crypto = require(require.resolve('happn-util-crypto', { paths: [COMPAT_MODULES] }));
const KEYS = new Crypto().createKeyPair();

const CONFIG = {
  middleware: { security: { exclusions: ['/index.html'] } },
  groups: [{ name: 'sec', permissions: { '/sec/*': { actions: ['*'] } } }],
  users: [
    { username: 'bob', password: 'pw', groups: ['sec'] },
    { username: 'carol', password: 'pw', groups: ['sec'] },
    { username: 'keyuser', publicKey: KEYS.publicKey, groups: ['sec'] },
  ],
};

let browser;
test.before(async () => {
  browser = await openBrowser();
});
test.after(async () => {
  if (browser) await browser.close();
});

test('secure: logins, errors, cookie, token, key pair, revokeSession, system messages', async () => {
  const srv = await startServer({ secure: true, config: CONFIG });
  try {
    const page = await browser.page(srv.url + '/index.html');
    const r = await inPage(page, async ({ port, keys }) => {
      const out = {};
      const config = (extra) => ({ config: Object.assign({ host: '127.0.0.1', port }, extra) });
      out.privateBefore = (await fetch('/private.html')).status;
      // a refused login: an Error with the server's name and message
      out.badLogin = await new Promise((resolve) =>
        HappnClient.create(config({ username: 'bob', password: 'wrong' }), (e) => resolve(e && { isError: e instanceof Error, name: e.name, message: e.message }))
      );
      const admin = await HappnClient.create(config({ username: '_ADMIN', password: 'happn' }));
      out.session = { id: typeof admin.session.id, token: typeof admin.session.token, user: admin.session.user.username, type: admin.session.type };
      out.cookie = document.cookie.includes('happn_token=' + admin.session.token);
      out.privateAfter = (await fetch('/private.html')).status;
      // token login
      const byToken = await HappnClient.create(config({ token: admin.session.token }));
      out.tokenUser = byToken.session.user.username;
      await byToken.disconnect();
      // key-pair (digest) login fetches /browser_crypto.js
      const byKey = await HappnClient.create({ config: { host: '127.0.0.1', port, username: 'keyuser', keyPair: keys } });
      out.keyUser = byKey.session.user.username;
      out.cryptoLoaded = typeof window.Crypto.prototype.sign === 'function';
      await byKey.set('/sec/key', { by: 'key' });
      out.keyGet = (await byKey.get('/sec/key')).by;
      try {
        await byKey.get('/elsewhere');
        out.denied = 'allowed';
      } catch (e) {
        out.denied = { name: e.name, message: e.message };
      }
      await byKey.disconnect();
      // revokeSession: the token no longer logs in
      const bob = await HappnClient.create(config({ username: 'bob', password: 'pw' }));
      const bobToken = bob.session.token;
      await bob.disconnect({ revokeSession: true });
      out.revoked = await HappnClient.create(config({ token: bobToken })).then(() => 'logged in', (e) => e.name);
      // deleting a user: server-side-disconnect reaches onSystemMessage, the client ends
      const carol = await HappnClient.create(config({ username: 'carol', password: 'pw' }));
      const system = [];
      const ended = new Promise((resolve) => carol.onEvent('connection-ended', resolve));
      carol.onSystemMessage((key, data) => system.push([key, data]));
      await admin.remove('/_SYSTEM/_SECURITY/_USER/carol');
      await Promise.race([ended, new Promise((r) => setTimeout(r, 3000))]);
      out.system = system;
      await admin.disconnect();
      return out;
    }, { port: srv.port, keys: KEYS });
    assert.equal(r.privateBefore, 403);
    assert.deepEqual(r.badLogin, { isError: true, name: 'AccessDenied', message: 'Invalid credentials' });
    assert.deepEqual(r.session, { id: 'string', token: 'string', user: '_ADMIN', type: 1 });
    assert.equal(r.cookie, true, 'happn_token cookie written after login');
    assert.equal(r.privateAfter, 200, 'the cookie opens guarded routes');
    assert.equal(r.tokenUser, '_ADMIN');
    assert.equal(r.keyUser, 'keyuser');
    assert.equal(r.cryptoLoaded, true);
    assert.equal(r.keyGet, 'key');
    assert.equal(r.denied.name, 'AccessDenied');
    assert.notEqual(r.revoked, 'logged in');
    assert.equal(r.system.length, 1);
    assert.equal(r.system[0][0], 'server-side-disconnect');
  } finally {
    await srv.stop();
  }
});

test('encryptPayloads: ECIES login, encrypted requests, events and arrays; key pair too', async () => {
  const srv = await startServer({ secure: true, config: Object.assign({ encryptPayloads: true }, CONFIG) });
  try {
    const page = await browser.page(srv.url + '/index.html');
    const r = await inPage(page, async ({ port, keys }) => {
      const out = {};
      const client = await HappnClient.create({ config: { host: '127.0.0.1', port, username: '_ADMIN', password: 'happn' } });
      out.serverInfo = client.serverInfo.encryptPayloads;
      out.secret = typeof client.session.secret;
      out.generatedKeys = typeof client.options.config.publicKey;
      const frames = [];
      client.pubsub.on('outgoing::data', (raw) => frames.push(raw));
      const events = [];
      await client.on('/sec/enc/*', (d, m) => events.push([d.v, m.path]));
      await client.set('/sec/enc/1', { v: 'ünï' });
      await client.set('/sec/enc/2', { v: 2 });
      out.get = (await client.get('/sec/enc/1')).v;
      out.all = (await client.get('/sec/enc/*')).map((i) => i.v).sort();
      await new Promise((r) => setTimeout(r, 100));
      out.events = events;
      out.framesEncrypted = frames.filter((f) => f.startsWith('{')).every((f) => 'encrypted' in JSON.parse(f) && !f.includes('sec/enc'));
      await client.disconnect();
      const byKey = await HappnClient.create({ config: { host: '127.0.0.1', port, username: 'keyuser', keyPair: keys } });
      out.keyUser = byKey.session.user.username;
      out.keyGet = (await byKey.get('/sec/enc/2')).v;
      await byKey.disconnect();
      return out;
    }, { port: srv.port, keys: KEYS });
    assert.deepEqual(r, {
      serverInfo: true,
      secret: 'string',
      generatedKeys: 'string',
      get: 'ünï',
      all: [2, 'ünï'],
      events: [['ünï', '/sec/enc/1'], [2, '/sec/enc/2']],
      framesEncrypted: true,
      keyUser: 'keyuser',
      keyGet: 2,
    });
  } finally {
    await srv.stop();
  }
});
