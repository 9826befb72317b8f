'use strict';
// Durable storage: data survives restarts, and databases move between happn 2.21 and happn-rs
// (`happn-rs import --nedb FILE`, `happn-rs export`). The 2.21 database files are made here by
// the real happn 2.21.0 server from node_modules, so the test reads exactly what users have.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./helpers');

const happn = require('happn');

function tmpDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-' + name + '-'));
}

const cb = fn => new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))));

/** Run the real happn 2.21 server on a nedb file, let `work(instance, client)` fill it, stop it. */
async function withReferenceServer(file, work) {
  const port = await h.freePort();
  const inst = await cb(done => happn.service.create({
    port, host: '127.0.0.1', secure: true, utils: { logLevel: 'error' },
    services: { data: { config: { filename: file } } },
  }, done));
  const client = await cb(done => happn.client.create({ config: { host: '127.0.0.1', port, username: '_ADMIN', password: 'happn' } }, done));
  try {
    return await work(inst, client);
  } finally {
    await cb(done => client.disconnect(done)).catch(() => {});
    await cb(done => inst.stop({ reconnect: false }, done));
  }
}

describe('durable: restart keeps data', () => {
  let dir;
  before(() => { dir = tmpDir('restart'); });
  after(() => h.cleanup());

  it('everything acknowledged is back after a restart (SIGTERM and SIGKILL)', async () => {
    let srv = await h.startServer({ secure: true, dataDir: dir });
    let c = await h.connect(srv);
    await h.set(c, '/keep/1', { a: 1 });
    await h.set(c, '/keep/2', { b: [1, 2] });
    await h.set(c, '/keep/1', { extra: true }, { merge: true });
    await h.set(c, '/keep/1', null, { tag: 'T' });
    await h.remove(c, '/keep/2');
    const describeName = c.serverInfo && c.serverInfo.name;
    await srv.stop('SIGKILL');
    srv = await h.startServer({ secure: true, dataDir: dir });
    c = await h.connect(srv);
    const one = await h.get(c, '/keep/1');
    assert.equal(one.a, 1);
    assert.equal(one.extra, true);
    assert.equal(await h.get(c, '/keep/2'), null);
    const tags = await h.get(c, '/_TAGS/keep/1/*');
    assert.equal(tags.length, 1);
    assert.equal(tags[0]._meta.tag, 'T');
    if (describeName) assert.equal(c.serverInfo.name, describeName, 'system name persisted');
    await srv.stop('SIGTERM');
  });

  it('the durable store is the default: no flag keeps data in ./happn-data', async () => {
    const cwd = tmpDir('cwd');
    const r1 = await h.startServer({ durableDefault: true, cwd });
    const c = await h.connect(r1);
    await h.set(c, '/default/durable', { yes: 1 });
    await r1.stop('SIGKILL');
    assert.ok(fs.existsSync(path.join(cwd, 'happn-data')), 'data directory created in the working directory');
    const r2 = await h.startServer({ durableDefault: true, cwd });
    const c2 = await h.connect(r2);
    assert.equal((await h.get(c2, '/default/durable')).yes, 1);
    await r2.stop('SIGKILL');
  });

  it('--memory keeps nothing', async () => {
    const cwd = tmpDir('mem');
    const r1 = await h.startServer({ cwd });
    const c = await h.connect(r1);
    await h.set(c, '/volatile', { x: 1 });
    await r1.stop('SIGKILL');
    const r2 = await h.startServer({ cwd });
    const c2 = await h.connect(r2);
    assert.equal(await h.get(c2, '/volatile'), null);
    assert.ok(!fs.existsSync(path.join(cwd, 'happn-data')));
    await r2.stop('SIGKILL');
  });

  it('datastores route paths: /sensors/live/* in memory, the rest durable', async () => {
    const d = tmpDir('routes');
    const config = { services: { data: { config: { datastores: [
      { name: 'live', patterns: ['/sensors/live/*'], settings: { memory: true } },
      { name: 'main', isDefault: true, settings: { filename: 'main.redb' } },
    ] } } } };
    let srv = await h.startServer({ dataDir: d, config });
    let c = await h.connect(srv);
    await h.set(c, '/sensors/live/1', { t: 20 });
    await h.set(c, '/sensors/config', { unit: 'C' });
    assert.equal((await h.get(c, '/sensors/live/*')).length, 1);
    await srv.stop('SIGKILL');
    assert.ok(fs.existsSync(path.join(d, 'main.redb')));
    srv = await h.startServer({ dataDir: d, config });
    c = await h.connect(srv);
    assert.equal(await h.get(c, '/sensors/live/1'), null, 'the memory store starts empty');
    assert.equal((await h.get(c, '/sensors/config')).unit, 'C', 'the durable store kept its data');
    await srv.stop('SIGKILL');
  });
});

describe('durable: import and export of happn 2.21 databases', () => {
  let ref;
  let tagPath;
  let siblingPath;
  before(async () => {
    ref = path.join(tmpDir('nedb'), 'happn.nedb');
    await withReferenceServer(ref, async (inst, client) => {
      await cb(done => client.set('/import/plain', { n: 1, nested: { x: [1, 2] } }, done));
      const tag = await cb(done => client.set('/import/plain', null, { tag: 'v1' }, done));
      tagPath = tag._meta.path;
      const sib = await cb(done => client.setSibling('/import/sib', { s: 1 }, done));
      siblingPath = sib._meta.path;
      await cb(done => client.set('/dotted.path/a', { d: 1 }, done));
      await cb(done => client.set('/import/gone', { g: 1 }, done));
      await cb(done => client.remove('/import/gone', done));
      const sec = inst.services.security;
      const group = await cb(done => sec.upsertGroup({ name: 'migrated', permissions: { '/dotted.path/*': { actions: ['get', 'set'] }, '/import/*': { actions: ['get'] } } }, {}, done));
      const user = await cb(done => sec.upsertUser({ username: 'olduser', password: 'oldpass', custom_data: { since: 2017 } }, {}, done));
      await cb(done => sec.linkGroup(group, user, {}, done));
    });
    assert.ok(fs.readFileSync(ref, 'utf8').includes('\\\\u002e'), 'the 2.21 file escapes dots in permission keys');
  });
  after(() => h.cleanup());

  it('imports data, tags, siblings, users with their passwords, groups with dotted permissions', async () => {
    const dir = tmpDir('import');
    const r = await h.runCli(['import', '--nedb', ref, '--data-dir', dir], { timeout: 20000 });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /imported \d+ records \(2 users, 2 groups\)/);
    const srv = await h.startServer({ secure: true, dataDir: dir });
    const admin = await h.connect(srv);
    assert.deepEqual(h.plain(await h.get(admin, '/import/plain')).nested, { x: [1, 2] });
    assert.equal(await h.get(admin, '/import/gone'), null, 'deleted records stay deleted');
    const tag = await h.get(admin, tagPath);
    assert.equal(tag._meta.tag, 'v1');
    assert.equal(tag.data.n, 1);
    assert.equal((await h.get(admin, siblingPath)).s, 1);
    // The migrated user logs in with the password set on the old server.
    const old = await h.connect(srv, { username: 'olduser', password: 'oldpass' });
    assert.equal((await h.get(old, '/dotted.path/a')).d, 1, 'the dotted permission works');
    await h.set(old, '/dotted.path/b', { ok: true });
    await assert.rejects(h.set(old, '/import/x', { no: 1 }), e => e.message === 'unauthorized' || /unauthorized/.test(e.name + e.message));
    await assert.rejects(h.connect(srv, { username: 'olduser', password: 'wrong' }));
    await srv.stop('SIGKILL');
  });

  it('export → import → export is lossless, and the original server loads the export', async () => {
    const dir1 = tmpDir('rt1');
    const dir2 = tmpDir('rt2');
    const out1 = path.join(dir1, 'export.nedb');
    const out2 = path.join(dir2, 'export.nedb');
    assert.equal((await h.runCli(['import', '--nedb', ref, '--data-dir', dir1], { timeout: 20000 })).code, 0);
    const e1 = await h.runCli(['export', '--data-dir', dir1, '--out', out1], { timeout: 20000 });
    assert.equal(e1.code, 0, e1.output);
    assert.equal((await h.runCli(['import', '--nedb', out1, '--data-dir', dir2], { timeout: 20000 })).code, 0);
    assert.equal((await h.runCli(['export', '--data-dir', dir2, '--out', out2], { timeout: 20000 })).code, 0);
    assert.equal(fs.readFileSync(out2, 'utf8'), fs.readFileSync(out1, 'utf8'), 'second export identical to the first');
    // Export to standard output works too.
    const e3 = await h.runCli(['export', '--data-dir', dir2], { timeout: 20000 });
    assert.ok(e3.stdout.includes('"/import/plain"'));
    // The original server reads the exported file: data, and the migrated user's login.
    const copy = path.join(tmpDir('back'), 'happn.nedb');
    fs.copyFileSync(out1, copy);
    await withReferenceServer(copy, async (inst, client) => {
      const plain = await cb(done => client.get('/import/plain', done));
      assert.equal(plain.n, 1);
      const user = await cb(done => inst.services.security.getUser('olduser', done));
      assert.equal(user.username, 'olduser');
      const group = await cb(done => inst.services.security.getGroup('migrated', done));
      assert.ok(group.permissions['/dotted.path/*'], 'dotted permission keys come back for the original');
    });
  });

  it('a corrupt file is refused with a clear message', async () => {
    const bad = path.join(tmpDir('bad'), 'bad.nedb');
    fs.writeFileSync(bad, 'not json\nalso not json\n');
    const r = await h.runCli(['import', '--nedb', bad, '--data-dir', tmpDir('bad-out')]);
    assert.equal(r.code, 1);
    assert.match(r.output, /not valid nedb records/);
  });
});
