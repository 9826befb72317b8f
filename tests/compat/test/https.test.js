'use strict';
// HTTPS / WSS (semantics §10.1 transport): a self-signed certificate generated where the original
// writes it (~/.happn-https-cert, ~/.happn-https-key, or certPath/keyPath) and reused on the next
// start, a provided PEM pair (files, or inline cert/key strings), and the real 2.21 client
// connecting with protocol 'https' + allowSelfSignedCerts.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./helpers');

// A test-only self-signed pair for localhost, RSA key in PKCS#1 form as the original's `pem`
// module writes it.
const FIXTURE_CERT = path.join(__dirname, 'fixtures', 'localhost-cert.pem');
const FIXTURE_KEY = path.join(__dirname, 'fixtures', 'localhost-key.pem');

const fingerprint = pem => new crypto.X509Certificate(pem).fingerprint256;
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-https-'));
const tlsClient = (srv, opts) => h.connect(srv, Object.assign({ protocol: 'https', allowSelfSignedCerts: true }, opts || {}));

async function versionOverHttps(srv) {
  const res = await h.httpRequest(srv.port, '/version', { https: true });
  assert.equal(res.status, 200);
  assert.equal(res.body, '{"version":"2.21.0"}');
  return res.peerCertificate.fingerprint256;
}

/** the real client over wss: set, get and an event */
async function roundTrip(c) {
  const ev = h.collector();
  await h.on(c, '/tls/*', { event_type: 'set' }, ev.handler);
  await h.set(c, '/tls/1', { secure: true });
  assert.equal((await h.get(c, '/tls/1')).secure, true);
  await ev.wait(1);
  assert.equal(ev.items[0].data.secure, true);
}

describe('https with a generated certificate', () => {
  let home;
  let srv;
  before(async () => {
    home = tmpDir();
    srv = await h.startServer({ config: { transport: { mode: 'https' } }, env: { HOME: home } });
  });
  after(async () => {
    await h.cleanup(srv);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('writes the pair to ~/.happn-https-cert and ~/.happn-https-key and serves it', async () => {
    const cert = fs.readFileSync(path.join(home, '.happn-https-cert'), 'utf8');
    const key = path.join(home, '.happn-https-key');
    assert.match(fs.readFileSync(key, 'utf8'), /PRIVATE KEY/);
    assert.equal(fs.statSync(key).mode & 0o777, 0o600, 'the key is private');
    assert.equal(await versionOverHttps(srv), fingerprint(cert));
    assert.match(srv.output, /listening on .*\(https,/);
  });

  it('the real client connects over wss (protocol https, allowSelfSignedCerts)', async () => {
    const c = await tlsClient(srv);
    await roundTrip(c);
    await h.disconnect(c);
  });

  it('plain HTTP is not served on the TLS port', async () => {
    await assert.rejects(h.httpRequest(srv.port, '/version'));
  });

  it('the next start reuses the saved pair', async () => {
    const before = fs.readFileSync(path.join(home, '.happn-https-cert'), 'utf8');
    const again = await h.startServer({ config: { transport: { mode: 'https' } }, env: { HOME: home } });
    try {
      assert.equal(await versionOverHttps(again), fingerprint(before));
    } finally {
      await again.kill();
    }
  });
});

describe('https with certPath/keyPath', () => {
  let dir;
  const servers = [];
  before(() => { dir = tmpDir(); });
  after(async () => {
    await h.cleanup(...servers);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a provided PEM pair (RSA PKCS#1 key) is served; secure login over wss', async () => {
    const srv = await h.startServer({
      config: { secure: true, transport: { mode: 'https', certPath: FIXTURE_CERT, keyPath: FIXTURE_KEY } },
    });
    servers.push(srv);
    assert.equal(await versionOverHttps(srv), fingerprint(fs.readFileSync(FIXTURE_CERT)));
    const c = await tlsClient(srv, { username: '_ADMIN', password: 'happn' });
    assert.equal(c.session.user.username, '_ADMIN');
    await roundTrip(c);
    // the HTTP security middleware works the same over TLS
    const res = await h.httpRequest(srv.port, '/auth/login?username=_ADMIN&password=happn', { https: true });
    assert.match(res.body, /^\{"message":"login successful", "data":"[^"]+", "error":null\}$/);
    await h.disconnect(c);
  });

  it('missing files are generated at the given paths', async () => {
    const certPath = path.join(dir, 'gen', 'cert.pem');
    const keyPath = path.join(dir, 'gen', 'key.pem');
    const srv = await h.startServer({ config: { transport: { mode: 'https', certPath, keyPath } } });
    servers.push(srv);
    assert.equal(await versionOverHttps(srv), fingerprint(fs.readFileSync(certPath)));
    assert.ok(fs.existsSync(keyPath));
  });

  it('inline cert/key strings', async () => {
    const srv = await h.startServer({
      configFile: { transport: { mode: 'https', cert: fs.readFileSync(FIXTURE_CERT, 'utf8'), key: fs.readFileSync(FIXTURE_KEY, 'utf8') } },
    });
    servers.push(srv);
    assert.equal(await versionOverHttps(srv), fingerprint(fs.readFileSync(FIXTURE_CERT)));
    const c = await tlsClient(srv);
    await roundTrip(c);
    await h.disconnect(c);
  });

  it('a key without its certificate (or the reverse) stops the start, as in the original', async () => {
    const keyOnly = path.join(dir, 'key-only');
    fs.mkdirSync(keyOnly);
    fs.copyFileSync(FIXTURE_KEY, path.join(keyOnly, 'key.pem'));
    const transport = { mode: 'https', certPath: path.join(keyOnly, 'cert.pem'), keyPath: path.join(keyOnly, 'key.pem') };
    const port = String(await h.freePort());
    let r = await h.runCli(['--memory', '--port', port], { env: { HAPPN_SERVER_CONFIG: JSON.stringify({ transport }) } });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /missing cert file: .*cert\.pem/);
    r = await h.runCli(['--memory', '--port', port],
      { env: { HAPPN_SERVER_CONFIG: JSON.stringify({ transport: { mode: 'https', cert: 'x' } }) } });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /transport\.key/);
    r = await h.runCli(['--memory', '--port', port],
      { env: { HAPPN_SERVER_CONFIG: JSON.stringify({ transport: { mode: 'spdy' } }) } });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /unknown transport mode/);
  });
});
