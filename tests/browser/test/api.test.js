'use strict';
// Every API item of the browser client, in Chromium, against an insecure happn-rs: callbacks
// and promises, data calls, subscriptions (event types, count, initialCallback, initialEmit),
// unsubscribes, errors, client events and disconnect.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, openBrowser, inPage } = require('./helpers');

let srv;
let browser;
let page;

test.before(async () => {
  srv = await startServer();
  browser = await openBrowser();
  page = await browser.page(srv.url + '/index.html');
});
test.after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.stop();
});

/** Creates `window.client` (callback form of create) in the page. */
async function createClient(options) {
  return inPage(page, (options) => new Promise((resolve) => {
    HappnClient.create(options, (e, client) => {
      if (e) return resolve({ error: e.message || String(e) });
      window.client = client;
      resolve({
        initialized: client.initialized,
        session: client.session,
        serverInfo: client.serverInfo,
        primusLoaded: typeof Primus === 'function',
        cryptoLoaded: typeof window.Crypto === 'function' && 'createKeyPair' in window.Crypto.prototype,
        info: client.options.info,
        url: client.options.config.url,
        reconnect: client.options.config.pubsub.options.reconnect,
      });
    });
  }), options);
}

test('the page defines HappnClient only; create() loads Primus and logs in', async () => {
  const globals = await inPage(page, () => ({
    HappnClient: typeof HappnClient,
    Primus: typeof window.Primus,
    create: typeof HappnClient.create,
    instance: typeof HappnClient.__instance,
  }));
  assert.deepEqual(globals, { HappnClient: 'function', Primus: 'undefined', create: 'function', instance: 'function' });
  const r = await createClient({ config: { host: '127.0.0.1', port: srv.port } });
  assert.equal(r.error, undefined);
  assert.equal(r.initialized, true);
  assert.equal(r.primusLoaded, true);
  assert.equal(r.cryptoLoaded, false, 'the crypto library is only fetched when needed');
  assert.equal(r.info._browser, true);
  assert.equal(r.url, 'http://127.0.0.1:' + srv.port);
  assert.equal(r.reconnect.max, 180000);
  assert.equal(typeof r.session.id, 'string');
  assert.equal(r.serverInfo.secure, false);
});

test('set, setSibling, get, getPaths, remove with callbacks', async () => {
  const r = await inPage(page, () => new Promise((resolve, reject) => {
    const out = {};
    client.set('/api/cb/a', { x: 1, nested: { y: 'é' } }, (e, set) => {
      if (e) return reject(e);
      out.set = set;
      client.set('/api/cb/a', { z: 2 }, { merge: true }, (e, merged) => {
        if (e) return reject(e);
        out.merged = merged;
        client.setSibling('/api/cb/list', { s: 1 }, (e, sib) => {
          if (e) return reject(e);
          out.sibling = sib;
          client.get('/api/cb/a', (e, got) => {
            if (e) return reject(e);
            out.get = got;
            client.get('/api/cb/missing', (e, missing) => {
              if (e) return reject(e);
              out.missing = missing;
              client.get('/api/cb/*', {}, (e, all) => {
                if (e) return reject(e);
                out.all = all;
                client.getPaths('/api/cb/*', (e, paths) => {
                  if (e) return reject(e);
                  out.paths = paths;
                  client.remove('/api/cb/a', (e, removed) => {
                    if (e) return reject(e);
                    out.removed = removed;
                    resolve(out);
                  });
                });
              });
            });
          });
        });
      });
    });
  }));
  assert.equal(r.set.x, 1);
  assert.equal(r.set.nested.y, 'é');
  assert.equal(r.set._meta.path, '/api/cb/a');
  assert.equal(typeof r.set._meta.created, 'number');
  assert.deepEqual([r.merged.x, r.merged.z], [1, 2]);
  assert.match(r.sibling._meta.path, /^\/api\/cb\/list\/.+/);
  assert.deepEqual([r.get.x, r.get.z, r.get._meta.path], [1, 2, '/api/cb/a']);
  assert.equal(r.missing, null);
  assert.equal(r.all.length, 2);
  assert.ok(r.all.every((i) => i._meta && i._meta.path.startsWith('/api/cb/')));
  assert.equal(r.paths.length, 2);
  assert.ok(r.paths.every((p) => p._meta.path && Object.keys(p).join() === '_meta'));
  assert.equal(r.removed.removed, 1);
});

test('every method returns a Promise without a callback', async () => {
  const r = await inPage(page, async () => {
    const out = {};
    out.set = await client.set('/api/p/a', { v: 1 });
    out.setOpts = await client.set('/api/p/b', { v: 2 }, {});
    out.sibling = await client.setSibling('/api/p/s', { v: 3 });
    out.get = await client.get('/api/p/a');
    out.getOpts = await client.get('/api/p/*', { options: { sort: { v: -1 } } });
    out.paths = await client.getPaths('/api/p/*');
    const events = [];
    const handle = await client.on('/api/p/a', (data, meta) => events.push([data.v, meta.path]));
    const handle2 = await client.on('/api/p/b', { event_type: 'set' }, (data) => events.push([data.v]));
    const all = await client.onAll(() => {});
    await client.set('/api/p/a', { v: 10 });
    await new Promise((r) => setTimeout(r, 100));
    await client.off(handle);
    await client.offPath('/api/p/b');
    await client.off(all);
    await client.set('/api/p/a', { v: 11 });
    await new Promise((r) => setTimeout(r, 100));
    out.events = events;
    out.handles = [handle, handle2, all];
    out.remove = await client.remove('/api/p/a', {});
    out.removeNoOpts = await client.remove('/api/p/b');
    await client.offAll();
    out.login = await client.login().then(() => 'ok');
    try {
      await client.set('/api/p/bad', { v: 1 }, { set_type: 'nonsense', merge: 'x', tag: 5 });
      out.badOptions = 'no error';
    } catch (e) {
      out.badOptions = { isError: e instanceof Error, name: e.name };
    }
    return out;
  });
  assert.equal(r.set.v, 1);
  assert.equal(r.setOpts.v, 2);
  assert.equal(r.get.v, 1);
  assert.deepEqual(r.getOpts.map((i) => i.v), [3, 2, 1]);
  assert.equal(r.paths.length, 3);
  assert.deepEqual(r.events, [[10, '/api/p/a']]);
  assert.deepEqual(r.handles.map((h) => typeof h), ['number', 'number', 'number']);
  assert.equal(r.remove.removed, 1);
  assert.equal(r.removeNoOpts.removed, 1);
  assert.equal(r.login, 'ok');
});

test('on: event types, count, initialCallback, initialEmit; off, offPath, offAll', async () => {
  const r = await inPage(page, async () => {
    const ev = { set: [], remove: [], all: [], count: [], emitted: [], onAll: [] };
    // the callback form: cb(e, handle, response)
    const on = (...args) => new Promise((resolve, reject) => client.on(...args, (e, handle, response) => (e ? reject(e) : resolve([handle, response]))));
    const wait = (ms) => new Promise((r) => setTimeout(r, ms));
    const out = {};
    await client.set('/api/on/1', { n: 1 });
    await client.set('/api/on/2', { n: 2 });
    const [h1] = await on('/api/on/*', { event_type: 'set' }, (d, m) => ev.set.push([d.n, m.path, m.channel]));
    const [h2] = await on('/api/on/*', { event_type: 'remove' }, (d, m) => ev.remove.push([d.removed, m.path]));
    const [h3] = await on('/api/on/*', { event_type: 'all' }, (d, m) => ev.all.push(m.action));
    const [h4] = await on('/api/on/1', { event_type: 'set', count: 2 }, (d) => ev.count.push(d.n));
    const [h5, initial] = await on('/api/on/*', { event_type: 'set', initialCallback: true }, () => {});
    // its own channel: initial values arrive as data frames on the channel, for every listener on it
    const [h6] = await on('/api/on*', { event_type: 'set', initialEmit: true }, (d) => ev.emitted.push(d.n));
    const h7 = await new Promise((resolve, reject) => client.onAll((d, m) => ev.onAll.push(m.path), (e, h) => (e ? reject(e) : resolve(h))));
    out.handles = [h1, h2, h3, h4, h5, h6, h7];
    out.initial = initial.map((i) => [i.n, i._meta.path]).sort();
    await wait(100);
    out.emittedInitially = ev.emitted.slice().sort();
    ev.emitted.length = 0;
    await client.set('/api/on/1', { n: 11 });
    await client.set('/api/on/1', { n: 12 });
    await client.set('/api/on/1', { n: 13 });
    await client.remove('/api/on/2');
    await wait(150);
    out.afterWrites = JSON.parse(JSON.stringify(ev));
    await new Promise((resolve, reject) => client.off(h1, (e) => (e ? reject(e) : resolve())));
    await new Promise((resolve, reject) => client.offPath('/api/on', (e) => (e ? reject(e) : resolve())));
    out.eventsLeft = Object.keys(client.events);
    await client.set('/api/on/1', { n: 14 });
    await wait(100);
    out.onAllAfterOffPath = ev.onAll.length;
    await new Promise((resolve, reject) => client.offAll((e) => (e ? reject(e) : resolve())));
    out.eventsAfterOffAll = Object.keys(client.events);
    try {
      client.on('/bad path with ü', () => {}, () => {});
      out.badPath = 'no throw';
    } catch (e) {
      out.badPath = typeof e;
    }
    return out;
  });
  assert.deepEqual(r.handles, [0, 1, 2, 3, 4, 5, 6].map((i) => r.handles[0] + i));
  assert.deepEqual(r.initial, [[1, '/api/on/1'], [2, '/api/on/2']]);
  assert.deepEqual(r.emittedInitially, [1, 2]);
  const a = r.afterWrites;
  assert.deepEqual(a.set.map((e) => e[0]), [11, 12, 13]);
  assert.equal(a.set[0][2], '/SET@/api/on/*');
  assert.deepEqual(a.remove, [[1, '/api/on/2']]);
  assert.deepEqual(a.all, ['/SET@/api/on/1', '/SET@/api/on/1', '/SET@/api/on/1', '/REMOVE@/api/on/2']);
  assert.deepEqual(a.count, [11, 12], 'count: 2 stops after two events');
  assert.deepEqual(a.emitted, [11, 12, 13]);
  assert.deepEqual(a.onAll, ['/api/on/1', '/api/on/1', '/api/on/1', '/api/on/2']);
  assert.deepEqual(r.eventsLeft, ['/ALL@*'], 'offPath dropped every /api/on channel, onAll stays');
  assert.equal(r.onAllAfterOffPath, 5);
  assert.deepEqual(r.eventsAfterOffAll, []);
  assert.equal(r.badPath, 'string', 'a bad path makes on() throw a string');
});

test('errors carry name and message; onEvent/offEvent; system messages; disconnect', async () => {
  const r = await inPage(page, async () => {
    const out = {};
    try {
      await client.get('/api/x/*', { criteria: { $bogus: 1 } });
      out.queryError = 'none';
    } catch (e) {
      out.queryError = { isError: e instanceof Error, name: e.name, message: e.message };
    }
    const fired = [];
    const id = client.onEvent('connection-ended', function () {
      fired.push(['ended', this === undefined || this === window ? null : this]);
    });
    const id2 = client.onEvent('connection-ended', () => fired.push(['second']));
    client.offEvent(id2);
    out.eventIds = [id, id2];
    const seen = [];
    const i0 = client.onSystemMessage((key, data) => {
      seen.push(key);
      return true;
    });
    const i1 = client.onSystemMessage(() => true);
    client.offSystemMessage(i1);
    out.systemIndexes = [i0, i1];
    await client.disconnect();
    out.afterDisconnect = { session: client.session, initialized: client.initialized, pubsub: 'pubsub' in client };
    out.fired = fired.map((f) => f[0]);
    try {
      await client.get('/api/x');
      out.afterDisconnectGet = 'ok';
    } catch (e) {
      out.afterDisconnectGet = e.message;
    }
    return out;
  });
  assert.equal(r.queryError.isError, true, JSON.stringify(r.queryError));
  assert.match(r.queryError.name + ' ' + r.queryError.message, /\$bogus/);
  assert.deepEqual(r.eventIds, ['connection-ended|0', 'connection-ended|1']);
  assert.deepEqual(r.systemIndexes, [0, 1]);
  assert.deepEqual(r.afterDisconnect, { session: null, initialized: false, pubsub: false });
  assert.deepEqual(r.fired, ['ended']);
  assert.equal(r.afterDisconnectGet, 'client not initialized yet.');
});

test('create(cb) uses the defaults; create() returns a promise; __instance and testMode', async () => {
  const r = await inPage(page, async (port) => {
    const out = {};
    const inst = HappnClient.__instance({ config: { port } });
    out.instance = { initialized: inst.initialized, url: inst.options.config.url, host: inst.options.config.host };
    const c = await HappnClient.create({ config: { port }, testMode: true });
    out.lastClient = HappnClient.lastClient === c;
    out.promiseInitialized = c.initialized;
    await c.disconnect();
    const failed = await new Promise((resolve) =>
      HappnClient.create({ config: { port: 1 }, connectTimeout: 3000 }, (e, client) => resolve(e ? e.message || String(e) : 'connected'))
    );
    out.unreachable = failed;
    out.defaultUrl = HappnClient.__instance({}).options.config.url;
    out.https443 = HappnClient.__instance({ config: { protocol: 'https', host: 'h', port: 443 } }).options.config.url;
    return out;
  }, srv.port);
  assert.deepEqual(r.instance, { initialized: false, url: 'http://127.0.0.1:' + srv.port, host: '127.0.0.1' });
  assert.equal(r.lastClient, true);
  assert.equal(r.promiseInitialized, true);
  assert.notEqual(r.unreachable, 'connected');
  assert.equal(r.defaultUrl, 'http://127.0.0.1:55000');
  assert.equal(r.https443, 'https://h');
});
