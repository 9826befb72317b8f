'use strict';
// `threads: 1` (docs/CONFIG.md): the server on a single-threaded runtime serves the real happn
// 2.21 client as the default runtime does: secure logins (hashing off that thread), a durable
// store's group commits, wildcard subscriptions and event-before-reply, with many clients at once.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

describe('a single-threaded server (--threads 1 / threads: 1)', () => {
  let srv;
  after(() => h.cleanup(srv));

  for (const how of ['flag', 'config']) {
    it(`serves many secure clients on a durable store (${how})`, async () => {
      if (srv) await h.cleanup(srv);
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-threads-'));
      srv = await h.startServer(how === 'flag'
        ? { secure: true, dataDir, args: ['--threads', '1'] }
        : { secure: true, dataDir, config: { threads: 1 } });
      const base = '/threads/' + h.uid(how);
      const clients = await Promise.all(Array.from({ length: 12 }, () => h.connect(srv)));
      const heard = clients.map(() => h.collector());
      await Promise.all(clients.map((c, i) => h.on(c, base + '/*', { event_type: 'set' }, heard[i].handler)));
      // Every client writes at once; each write's own event arrives before its reply.
      await Promise.all(clients.map(async (c, i) => {
        for (let k = 0; k < 15; k++) {
          const p = `${base}/${i}-${k}`;
          await h.set(c, p, { i, k });
          assert.ok(heard[i].items.some(e => e.data.i === i && e.data.k === k), `event of ${p} before its reply`);
        }
      }));
      for (const ev of heard) await ev.wait(12 * 15, 5000);
      for (const ev of heard) assert.equal(ev.items.length, 12 * 15, 'every client heard every write once');
      const all = await h.get(clients[0], base + '/*');
      assert.equal(all.length, 12 * 15);
      await Promise.all(clients.map(c => h.disconnect(c)));
      // Durable: what was acknowledged is there after a restart.
      await h.cleanup(srv);
      srv = await h.startServer({ secure: true, dataDir, args: ['--threads', '1'] });
      const c = await h.connect(srv);
      assert.equal((await h.get(c, base + '/*')).length, 12 * 15, 'every acknowledged write survived the restart');
    });
  }
});
