'use strict';
// The committed bundles (clients/browser/dist, embedded in the binary) are exactly what esbuild
// makes from the sources, and the server serves them as the original serves its scripts: public
// in secure mode, with content types, ETag, Last-Modified and 304 on revalidation.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const { ROOT, startServer, httpGet } = require('./helpers');

const CLIENT_DIR = path.join(ROOT, 'clients/browser');
const DIST = path.join(CLIENT_DIR, 'dist');
const FILES = {
  '/browser_client': ['browser_client.js', 'application/javascript'],
  '/browser_primus.js': ['browser_primus.js', 'application/javascript; charset=UTF-8'],
  '/browser_crypto.js': ['browser_crypto.js', 'application/javascript'],
};

test('committed bundles equal a fresh esbuild build of clients/browser/src', () => {
  assert.ok(fs.existsSync(path.join(CLIENT_DIR, 'node_modules/esbuild')), 'run npm ci in clients/browser first (scripts/browser-test.sh does)');
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-bundles-'));
  try {
    execFileSync(process.execPath, ['build.mjs', out], { cwd: CLIENT_DIR, stdio: 'pipe' });
    for (const [file] of Object.values(FILES)) {
      const fresh = fs.readFileSync(path.join(out, file));
      const committed = fs.readFileSync(path.join(DIST, file));
      assert.ok(fresh.equals(committed), file + ' differs from a fresh build: run `npm run build` in clients/browser and commit dist/');
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('the bundles stay small', (t) => {
  const sizes = Object.values(FILES).map(([file]) => fs.statSync(path.join(DIST, file)).size);
  const total = sizes.reduce((a, b) => a + b, 0);
  t.diagnostic('bundle sizes (client + primus + crypto): ' + sizes.join(' + ') + ' = ' + total + ' bytes');
  // the original ships 33 KB + 90 KB + 648 KB; the aim is the whole set under 60 KB
  assert.ok(total < 60 * 1024, 'bundles total ' + total + ' bytes');
});

test('served publicly in secure mode with validators; 304 on revalidation', async () => {
  const srv = await startServer({ secure: true });
  try {
    assert.equal((await httpGet(srv.url + '/foo')).status, 403, 'other routes need a token');
    for (const [url, [file, type]] of Object.entries(FILES)) {
      const r = await httpGet(srv.url + url);
      assert.equal(r.status, 200, url);
      assert.equal(r.headers['content-type'], type, url);
      assert.equal(r.body, fs.readFileSync(path.join(DIST, file), 'utf8'), url + ' serves the committed bundle');
      assert.match(r.headers.etag, /^"[0-9a-f]{16}-[0-9a-f]{16}"$/);
      assert.ok(!Number.isNaN(Date.parse(r.headers['last-modified'])), url + ' Last-Modified');
      assert.equal(r.headers['cache-control'], 'public, max-age=0');
      const again = await httpGet(srv.url + url, { 'If-None-Match': r.headers.etag });
      assert.equal(again.status, 304, url + ' revalidated');
      assert.equal(again.body, '');
      assert.equal((await httpGet(srv.url + url, { 'If-Modified-Since': r.headers['last-modified'] })).status, 304);
      assert.equal((await httpGet(srv.url + url, { 'If-None-Match': '"other"' })).status, 200);
    }
    const client = await httpGet(srv.url + '/browser_client');
    assert.ok(client.body.startsWith('//happn client v2.21.0\r\n//protocol v1.1.0\r\n'));
  } finally {
    await srv.stop();
  }
});
