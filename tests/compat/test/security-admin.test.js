'use strict';
// Managing users, groups and memberships over the wire with plain set/remove on the security
// paths (decisions.md, "Managing security over the wire"), and what those changes do to live
// sessions: grants and revocations apply at once, a deleted user's sockets are closed.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const USER = name => '/_SYSTEM/_SECURITY/_USER/' + name;
const GROUP = name => '/_SYSTEM/_SECURITY/_GROUP/' + name;
const LINK = (user, group) => USER(user) + '/_USER_GROUP/' + group;

const isUnauthorized = e => {
  assert.equal(e.name, 'AccessDenied', h.safeJson(e));
  assert.equal(e.message, 'unauthorized');
};

describe('security directory over the wire', () => {
  let srv;
  let admin;
  before(async () => {
    srv = await h.startServer({ config: { secure: true, name: 'compat-admin' } });
    admin = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  async function makeUser(name, password, groups, perms) {
    for (const g of groups) {
      await h.set(admin, GROUP(g), { permissions: perms || { ['/' + g + '/*']: { actions: ['*'] } } });
    }
    await h.set(admin, USER(name), { password, custom_data: { made: 'by admin' } });
    for (const g of groups) await h.set(admin, LINK(name, g), {});
  }

  it('_ADMIN creates a group, a user and a membership; the user logs in with that password', async () => {
    const g = h.uid('grp');
    const u = h.uid('usr');
    const groupReply = await h.set(admin, GROUP(g), { permissions: { ['/' + g + '/*']: { actions: ['get', 'set'] } }, custom_data: { d: 1 } });
    assert.equal(groupReply.name, g);
    h.deq(groupReply.permissions, { ['/' + g + '/*']: { actions: ['get', 'set'] } });
    const userReply = await h.set(admin, USER(u), { username: u, password: 'pw1', custom_data: { role: 'x' } });
    assert.equal(userReply.username, u);
    assert.equal(userReply.password, undefined, 'the hash is not echoed');
    h.deq(userReply.custom_data, { role: 'x' });
    await h.set(admin, LINK(u, g), {});

    const client = await h.connect(srv, { username: u, password: 'pw1' });
    assert.equal(client.session.user.username, u);
    await h.set(client, '/' + g + '/a', { v: 1 });
    assert.equal((await h.get(client, '/' + g + '/a')).v, 1);
    isUnauthorized(await h.expectError(h.get(client, '/elsewhere/a')));
    await h.disconnect(client);
  });

  it('user records read back without password hashes, exact or wildcard, and events carry none', async () => {
    const u = h.uid('usr');
    const events = h.collector();
    await h.on(admin, '/_SYSTEM/_SECURITY/_USER/*', { event_type: 'set' }, events.handler);
    await h.set(admin, USER(u), { password: 'secret-pw' });
    const exact = await h.get(admin, USER(u));
    assert.equal(exact.username, u);
    assert.equal(exact.password, undefined);
    const all = await h.get(admin, '/_SYSTEM/_SECURITY/_USER/*');
    assert.ok(all.length >= 2);
    for (const item of all) assert.equal(item.password, undefined, h.safeJson(item));
    const [ev] = await events.wait(1);
    assert.equal(ev.data.username, u);
    assert.equal(ev.data.password, undefined);
    assert.ok(!JSON.stringify(ev).includes('pbkdf2'), 'no hash in the event');
    await h.offPath(admin, '/_SYSTEM/_SECURITY/_USER/*');
  });

  it('a merge edit keeps the password; a new password replaces the old one', async () => {
    const u = h.uid('usr');
    await makeUser(u, 'first', []);
    await h.set(admin, USER(u), { custom_data: { edited: true } }, { merge: true });
    const c1 = await h.connect(srv, { username: u, password: 'first' });
    await h.disconnect(c1);
    await h.set(admin, USER(u), { password: 'second' }, { merge: true });
    const e = await h.expectError(h.connect(srv, { username: u, password: 'first' }));
    assert.equal(e.message, 'Invalid credentials');
    const c2 = await h.connect(srv, { username: u, password: 'second' });
    h.deq((await h.get(admin, USER(u))).custom_data, { edited: true });
    await h.disconnect(c2);
  });

  it('a grant reaches a live session at once, and so does its withdrawal', async () => {
    const u = h.uid('usr');
    const g = h.uid('grp');
    await makeUser(u, 'pw', [g], { ['/' + g + '/*']: { actions: ['get'] } });
    const client = await h.connect(srv, { username: u, password: 'pw' });
    isUnauthorized(await h.expectError(h.set(client, '/' + g + '/x', { a: 1 })));
    await h.set(admin, GROUP(g), { permissions: { ['/' + g + '/*']: { actions: ['get', 'set'] } } });
    await h.set(client, '/' + g + '/x', { a: 1 });
    await h.remove(admin, LINK(u, g));
    isUnauthorized(await h.expectError(h.get(client, '/' + g + '/x')));
    await h.set(admin, LINK(u, g), {});
    assert.equal((await h.get(client, '/' + g + '/x')).a, 1);
    await h.remove(admin, GROUP(g));
    isUnauthorized(await h.expectError(h.get(client, '/' + g + '/x')));
    await h.disconnect(client);
  });

  it('permission paths may contain dots, plain or in the original\'s \\u002e escape', async () => {
    const u = h.uid('usr');
    const g = h.uid('grp');
    await h.set(admin, GROUP(g), { permissions: { '/dots/a.b/*': { actions: ['get', 'set'] }, '/dots/c\\u002ed/*': { actions: ['set'] } } });
    await makeUser(u, 'pw', []);
    await h.set(admin, LINK(u, g), {});
    const client = await h.connect(srv, { username: u, password: 'pw' });
    await h.set(client, '/dots/a.b/1', { ok: 1 });
    await h.set(client, '/dots/c.d/1', { ok: 1 });
    isUnauthorized(await h.expectError(h.set(client, '/dots/axb/1', { ok: 1 })));
    const stored = await h.get(admin, GROUP(g));
    assert.ok(stored.permissions['/dots/c.d/*'], 'the escape is undone: ' + h.safeJson(stored));
    await h.disconnect(client);
  });

  it('deleting a user closes every session of that user with server-side-disconnect; they do not reconnect', async () => {
    const u = h.uid('usr');
    const g = h.uid('grp');
    await makeUser(u, 'pw', [g]);
    const a = await h.connect(srv, { username: u, password: 'pw' });
    const b = await h.connect(srv, { username: u, password: 'pw' });
    const token = a.session.token;
    const wa = h.watchClient(a);
    const wb = h.watchClient(b);
    const reply = await h.remove(admin, USER(u));
    assert.equal(reply.removed, 1);
    for (const w of [wa, wb]) {
      assert.equal(await w.wait('system:server-side-disconnect'), 'security directory update: user deleted');
      await w.wait('connection-ended');
    }
    await h.sleep(1500);
    assert.equal(wa.count('reconnect-scheduled') + wb.count('reconnect-scheduled'), 0, h.safeJson(wa.log));
    const e = await h.expectError(h.connect(srv, { token }));
    assert.equal(e.message, 'Invalid credentials', 'the deleted user\'s token is dead');
    assert.equal(await h.get(admin, LINK(u, g)), null, 'memberships go with the user');
    // Other users' sessions are untouched.
    assert.ok(await h.get(admin, '/_SYSTEM/_SECURITY/_USER/_ADMIN'));
  });

  it('a session without permission on the security paths cannot manage users', async () => {
    const u = h.uid('usr');
    const g = h.uid('grp');
    await makeUser(u, 'pw', [g]);
    const client = await h.connect(srv, { username: u, password: 'pw' });
    isUnauthorized(await h.expectError(h.set(client, USER(h.uid('x')), { password: 'p' })));
    isUnauthorized(await h.expectError(h.set(client, LINK(u, '_ADMIN'), {})));
    isUnauthorized(await h.expectError(h.remove(client, USER('_ADMIN'))));
    isUnauthorized(await h.expectError(h.get(client, USER('_ADMIN'))));
    await h.disconnect(client);
  });

  it('invalid security writes get a clear error and change nothing', async () => {
    const bad = async (promise, text) => {
      const e = await h.expectError(promise);
      assert.ok(String(e.message || e.name).includes(text), 'expected ' + text + ' in ' + h.safeJson(e) + ' ' + e.message);
    };
    await bad(h.set(admin, GROUP(h.uid('g')), { permissions: { '/x/*': { actions: 'get' } } }), 'must be a list');
    await bad(h.set(admin, USER(h.uid('u')), { custom_data: {} }), 'needs a password');
    await bad(h.set(admin, USER('a*b'), { password: 'p' }), 'wildcards');
    await bad(h.set(admin, USER(h.uid('u')), { username: 'someone-else', password: 'p' }), 'does not match');
    await bad(h.set(admin, LINK('nobody-' + h.uid('u'), '_ADMIN'), {}), 'no such user');
    await bad(h.remove(admin, USER('_ADMIN')), 'cannot be deleted');
    await bad(h.remove(admin, GROUP('_ADMIN')), 'cannot be deleted');
    await bad(h.set(admin, GROUP('_ADMIN'), { permissions: {} }), 'cannot be changed');
    await bad(h.set(admin, '/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR', { value: 'x' }), 'cannot be written');
    await bad(h.remove(admin, '/_SYSTEM/_SECURITY/_USER/*'), 'no wildcards');
    // _ADMIN still works.
    const again = await h.connect(srv);
    await h.disconnect(again);
  });

  it('wildcard removes of data never touch the security directory', async () => {
    const reply = await h.remove(admin, '/_SYSTEM/*');
    assert.equal(typeof reply.removed, 'number');
    const again = await h.connect(srv);
    assert.equal(again.session.user.username, '_ADMIN');
    await h.disconnect(again);
  });
});

describe('security directory survives a restart', () => {
  it('users made over the wire log in after a restart of a durable server', async () => {
    const dataDir = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'happn-admin-'));
    const config = { secure: true };
    let srv = await h.startServer({ config, dataDir });
    const admin = await h.connect(srv);
    await h.set(admin, GROUP('keepers'), { permissions: { '/kept/*': { actions: ['*'] } } });
    await h.set(admin, USER('keeper'), { password: 'kpw' });
    await h.set(admin, LINK('keeper', 'keepers'), {});
    const before = await h.connect(srv, { username: 'keeper', password: 'kpw' });
    const token = before.session.token;
    await h.disconnect(before);
    await h.disconnect(admin);
    await srv.stop();
    srv = await h.startServer({ config, dataDir, port: srv.port });
    try {
      const c = await h.connect(srv, { username: 'keeper', password: 'kpw' });
      await h.set(c, '/kept/x', { v: 1 });
      await h.disconnect(c);
      const byToken = await h.connect(srv, { token });
      assert.equal(byToken.session.user.username, 'keeper', 'tokens survive restarts (persisted secret)');
      await h.disconnect(byToken);
    } finally {
      await h.cleanup(srv);
    }
  });
});
