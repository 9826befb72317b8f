'use strict';
// Restart the server under a page: the client is told (server-side-disconnect), schedules
// reconnects with Primus' back-off, logs in again, re-subscribes, sends the request made while
// the server was away, and fires reconnect-successful (the 2.21 client stalls here in Chromium).
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, openBrowser, inPage, waitFor, sleep } = require('./helpers');

test('a secure page survives a server restart', async () => {
  const srv = await startServer({ secure: true, config: { middleware: { security: { exclusions: ['/index.html'] } } } });
  const browser = await openBrowser();
  try {
    const page = await browser.page(srv.url + '/index.html');
    const before = await inPage(page, async (port) => {
      const log = (window.log = { events: [], client: [], system: [] });
      const client = (window.client = await HappnClient.create({
        config: { host: '127.0.0.1', port, username: '_ADMIN', password: 'happn' },
      }));
      for (const name of ['reconnect-scheduled', 'reconnect', 'reconnect-successful', 'reconnect-timeout', 'connection-ended']) {
        client.onEvent(name, function () {
          log.client.push([name, this && this.attempt]);
        });
      }
      client.onSystemMessage((key) => log.system.push(key));
      await client.on('/rc/*', { event_type: 'set' }, (data, meta) => log.events.push(meta.path));
      return client.session.id;
    }, srv.port);

    await srv.stop('SIGTERM');
    await waitFor('reconnect-scheduled in the page', () =>
      inPage(page, () => log.client.some((e) => e[0] === 'reconnect-scheduled'))
    );
    // a request while the server is away waits for the next login
    await inPage(page, () => {
      window.during = client.set('/rc/during', { v: 1 }).then((r) => r.v, (e) => 'error: ' + e.message);
    });
    await sleep(1000);
    await srv.start();

    await waitFor('reconnect-successful in the page', () =>
      inPage(page, () => log.client.some((e) => e[0] === 'reconnect-successful')), 20000
    );
    const after = await inPage(page, async (port) => {
      const out = {};
      out.during = await window.during;
      out.sessionId = client.session.id;
      const other = await HappnClient.create({ config: { host: '127.0.0.1', port, username: '_ADMIN', password: 'happn' } });
      await other.set('/rc/other', { v: 2 });
      await new Promise((r) => setTimeout(r, 200));
      await other.disconnect();
      out.log = log;
      out.get = (await client.get('/rc/other')).v;
      return out;
    }, srv.port);

    assert.equal(after.during, 1, 'the request made during the outage succeeded');
    assert.notEqual(after.sessionId, before, 'a new session after the re-login');
    assert.deepEqual(after.log.system, ['server-side-disconnect']);
    const names = after.log.client.map((e) => e[0]);
    assert.ok(names.indexOf('reconnect-scheduled') < names.indexOf('reconnect'), names.join());
    assert.ok(names.indexOf('reconnect') < names.indexOf('reconnect-successful'), names.join());
    assert.equal(after.log.client.find((e) => e[0] === 'reconnect-scheduled')[1], 1, 'Primus status: attempt 1');
    assert.ok(!names.includes('connection-ended'));
    assert.deepEqual(after.log.events, ['/rc/during', '/rc/other'], 're-subscribed: events flow again');
    assert.equal(after.get, 2);
  } finally {
    await browser.close();
    await srv.stop();
  }
});

test('a server stop with primus::server::close ends the page client without reconnecting', async () => {
  const srv = await startServer();
  const browser = await openBrowser();
  try {
    const page = await browser.page(srv.url + '/index.html');
    await inPage(page, async (port) => {
      window.log = [];
      window.client = await HappnClient.create({ config: { host: '127.0.0.1', port } });
      client.onEvent('connection-ended', () => log.push('connection-ended'));
      client.onEvent('reconnect-scheduled', () => log.push('reconnect-scheduled'));
    }, srv.port);
    await srv.stop('SIGINT');
    await waitFor('connection-ended', () => inPage(page, () => log.includes('connection-ended')));
    await sleep(1000);
    assert.deepEqual(await inPage(page, () => log), ['connection-ended']);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
