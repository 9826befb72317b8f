'use strict';
// Issue 13, finding 1: a user with `get`/`on` on `*` cannot read a secret through any side
// channel of a query — count, criteria, sort order, projection, skip/limit, initial values,
// events — with the real 2.21 client (the token secret, the server keypair, password hashes).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const TOKEN_SECRET = '/_SYSTEM/_SECURITY/_SETTINGS/SESSION_TOKEN_SECRET';
const KEYPAIR = '/_SYSTEM/_SECURITY/_SETTINGS/KEYPAIR';
const USERS = '/_SYSTEM/_SECURITY/_USER/*';
const HEX = '0123456789abcdef'.split('');

const CONFIG = {
  secure: true,
  groups: [{ name: 'readers', permissions: { '*': { actions: ['get', 'on'] } } }],
  users: [{ username: 'snoop', password: 'snoop_pw', groups: ['readers'] }],
};

const noSecrets = (v, label) => {
  const text = JSON.stringify(v);
  assert.ok(!/pbkdf2|"password"/.test(text), label + ': a password hash leaked: ' + text);
  assert.ok(!/_SECURITY\/_SETTINGS/.test(text), label + ': a hidden record leaked: ' + text);
  assert.ok(!/privateKey/.test(text), label + ': a private key leaked: ' + text);
};

describe('secrets stay secret under query side channels', () => {
  let srv;
  let admin;
  let snoop;
  const count = async (p, criteria) => (await h.get(snoop, p, { criteria, options: { count: true } })).value;

  before(async () => {
    srv = await h.startServer({ config: CONFIG });
    admin = await h.connect(srv);
    snoop = await h.connect(srv, { username: 'snoop', password: 'snoop_pw' });
    await h.set(admin, '/app/visible', { value: 'public' });
  });
  after(() => h.cleanup(srv));

  it('the token secret and keypair read as nothing, exactly or by wildcard', async () => {
    for (const p of [TOKEN_SECRET, KEYPAIR]) {
      assert.equal(await h.get(snoop, p), null, p);
      assert.equal(await h.get(admin, p), null, 'not even _ADMIN reads ' + p);
    }
    for (const p of ['/_SYSTEM/*', '/_SYSTEM/_SECURITY/_SETTINGS/*', '*']) {
      const all = await h.get(snoop, p);
      noSecrets(all, 'get ' + p);
      const paths = await h.getPaths(snoop, p);
      noSecrets(paths, 'getPaths ' + p);
    }
  });

  it('count with $regex on the secret answers the same for every guess (no prefix oracle)', async () => {
    for (const p of [TOKEN_SECRET, '/_SYSTEM/*', '/_SYSTEM/_SECURITY/_SETTINGS/*']) {
      // What the visible records alone would answer (e.g. the server's name record).
      const visible = p === TOKEN_SECRET ? [] : h.plain(await h.get(snoop, p));
      const answers = [];
      for (const c of HEX) answers.push(await count(p, { value: { $regex: '^' + c } }));
      const expected = HEX.map(c => visible.filter(r => typeof r.value === 'string' && r.value.startsWith(c)).length);
      assert.deepEqual(answers, expected, 'count answers for ' + p);
      assert.equal(await count(p, { value: { $exists: true } }), visible.filter(r => 'value' in r).length, '$exists on ' + p);
      assert.equal(await count(p, { privateKey: { $exists: true } }), 0, 'privateKey on ' + p);
    }
    assert.equal(await count('/_SYSTEM/_SECURITY/_SETTINGS/*', {}), 0, 'the settings do not even count');
  });

  it('password hashes cannot be matched, counted, sorted or projected', async () => {
    for (const criteria of [
      { password: { $exists: true } },
      { password: { $exists: false } },
      { password: { $regex: '^pbkdf2' } },
      { $or: [{ username: 'snoop' }, { password: { $regex: '^x' } }] },
    ]) {
      assert.equal(await count(USERS, criteria), 0, JSON.stringify(criteria));
    }
    const sorted = await h.get(snoop, USERS, { options: { sort: { password: 1 } } });
    assert.deepEqual(h.plain(sorted), [], 'sorting by the hash selects nothing');
    const users = await h.get(snoop, USERS);
    assert.ok(users.some(u => u.username === 'snoop'), 'users are listed: ' + h.safeJson(users));
    noSecrets(users, 'users');
    noSecrets(await h.get(snoop, USERS, { options: { fields: { password: 1, username: 1 } } }), 'projection');
    noSecrets(await h.get(snoop, '/_SYSTEM/_SECURITY/_USER/snoop'), 'exact user');
    for (let skip = 0; skip < 6; skip++) {
      noSecrets(await h.get(snoop, '/_SYSTEM/*', { options: { skip, limit: 1 } }), 'window ' + skip);
    }
    assert.equal(await count(USERS, { username: 'snoop' }), 1, 'ordinary fields still query');
  });

  it('initial values and events of the security directory carry no hash', async () => {
    const seen = [];
    const { response } = await h.on(snoop, '/_SYSTEM/*', { event_type: 'set', initialCallback: true }, data => seen.push(data));
    noSecrets(response, 'initialCallback');
    assert.ok(h.plain(response).length > 0, 'initial values are there');
    await h.set(admin, '/_SYSTEM/_SECURITY/_USER/newbie', { username: 'newbie', password: 'newbie_pw' });
    for (let i = 0; i < 50 && seen.length === 0; i++) await h.sleep(20);
    assert.ok(seen.length > 0, 'the user event arrived');
    noSecrets(seen, 'event');
    const emitted = [];
    await h.on(snoop, '/_SYSTEM/_SECURITY/*', { event_type: 'set', initialEmit: true }, data => emitted.push(data));
    for (let i = 0; i < 50 && emitted.length === 0; i++) await h.sleep(20);
    assert.ok(emitted.length > 0, 'initialEmit values arrived');
    noSecrets(emitted, 'initialEmit');
  });
});
