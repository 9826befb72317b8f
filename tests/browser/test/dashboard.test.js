'use strict';
// examples/dashboard clicked through in Chromium against `happn-rs --static examples/dashboard`
// (secure): log in, add a device, see another client's write and remove arrive live, remove a
// device with its button. The screenshot is kept as a CI artefact: $CARGO_TARGET_DIR/browser/.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { ROOT, TARGET, startServer, openBrowser, inPage } = require('./helpers');

const DASHBOARD = path.join(ROOT, 'examples/dashboard');
const SHOTS = path.join(TARGET, 'browser');

test('dashboard: login, live table, set and remove', async () => {
  const secure = JSON.parse(fs.readFileSync(path.join(DASHBOARD, 'secure.json'), 'utf8'));
  const srv = await startServer({ staticDir: DASHBOARD, secure: true, config: secure });
  const browser = await openBrowser();
  try {
    const page = await browser.page(srv.url + '/');
    await page.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    await page.fill('#login input[name=password]', 'wrong');
    await page.click('#login button');
    await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0, null, { timeout: 10000 });
    assert.match(await page.textContent('#login-error'), /Invalid credentials|AccessDenied/);

    await page.fill('#login input[name=password]', 'happn');
    await page.click('#login button');
    await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
    assert.match(await page.textContent('#status'), /connected as _ADMIN/);

    await page.fill('#device-form input[name=id]', 'sensor-1');
    await page.fill('#device-form input[name=data]', '{"online": true, "temp": 21.5}');
    await page.click('#device-form button');
    await page.waitForSelector('tr[data-device="sensor-1"]', { timeout: 5000 });
    assert.equal(await page.textContent('tr[data-device="sensor-1"] .data'), '{"online":true,"temp":21.5}');

    // another client writes: the table follows live
    const other = await browser.page(srv.url + '/index.html');
    await inPage(other, async (port) => {
      const c = await HappnClient.create({ config: { host: '127.0.0.1', port, username: '_ADMIN', password: 'happn' } });
      await c.set('/devices/gateway', { online: true, clients: 12 });
      await c.set('/devices/pump-7', { online: false, pressure: 2.4 });
      await c.set('/devices/old', { online: false });
      await c.remove('/devices/old');
      await c.set('/devices/sensor-1', { online: true, temp: 22.1 });
      await c.disconnect();
    }, srv.port);
    await page.waitForFunction(() => document.querySelectorAll('#devices tr').length === 3
      && document.querySelector('tr[data-device="sensor-1"] .data').textContent.includes('22.1'), null, { timeout: 5000 });
    assert.deepEqual(await page.$$eval('#devices tr', (trs) => trs.map((tr) => tr.dataset.device)), ['gateway', 'pump-7', 'sensor-1']);

    fs.mkdirSync(SHOTS, { recursive: true });
    await page.waitForTimeout(1100); // let the highlight fade
    await page.screenshot({ path: path.join(SHOTS, 'dashboard.png'), fullPage: true });

    await page.click('tr[data-device="pump-7"] button.remove');
    await page.waitForSelector('tr[data-device="pump-7"]', { state: 'detached', timeout: 5000 });
    assert.deepEqual(await page.$$eval('#devices tr', (trs) => trs.map((tr) => tr.dataset.device)), ['gateway', 'sensor-1']);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-after-remove.png'), fullPage: true });
  } finally {
    await browser.close();
    await srv.stop();
  }
});

test('dashboard on an insecure server connects without a login', async () => {
  const srv = await startServer({ staticDir: DASHBOARD });
  const browser = await openBrowser();
  try {
    const page = await browser.page(srv.url + '/');
    await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
    assert.equal(await page.isHidden('#login'), true);
    assert.equal(await page.textContent('#status'), 'connected');
  } finally {
    await browser.close();
    await srv.stop();
  }
});
