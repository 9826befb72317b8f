'use strict';
// Session profiles and policies (semantics §6.7, §6.5): time to live, inactivity threshold, usage
// limit and policy permissions, for socket sessions (type 1) and tokens (type 0); profiles chosen
// by a query on the session. A policy denial answers once and the action does not run
// (decisions.md: the original answered twice and ran the action).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const ALL = { '/*': { actions: ['*'] }, '*': { actions: ['*'] } };

const CONFIG = {
  secure: true,
  groups: [{ name: 'everything', permissions: ALL }],
  users: ['short', 'idle', 'counted', 'narrow', 'tok', 'free'].map(username => ({ username, password: 'pw', groups: ['everything'] })),
  services: {
    security: {
      config: {
        profiles: [
          { name: 'short-lived', session: { 'user.username': { $eq: 'short' }, type: { $eq: 1 } }, policy: { ttl: '1 second' } },
          { name: 'idle-out', session: { 'user.username': 'idle', type: 1 }, policy: { inactivity_threshold: 700 } },
          { name: 'three-uses', session: { $and: [{ 'user.username': 'counted' }, { type: { $eq: 1 } }] }, policy: { usage_limit: 3 } },
          { name: 'narrow', session: { 'user.username': 'narrow', type: 1 }, policy: { permissions: { '/policy/*': { actions: ['get'] } } } },
          { name: 'sensors', session: { 'info.device': 'sensor', type: 1 }, policy: { usage_limit: 1 } },
          { name: 'short-tokens', session: { 'user.username': 'tok', type: 0 }, policy: { ttl: 1000 } },
        ],
      },
    },
  },
};

const denied = (e, reason) => {
  assert.equal(e.name, 'AccessDenied', h.safeJson(e));
  assert.equal(e.message, 'unauthorized');
  assert.equal(e.reason, reason, h.safeJson(e));
};

describe('session policies', () => {
  let srv;
  let admin;
  before(async () => {
    srv = await h.startServer({ config: CONFIG });
    admin = await h.connect(srv);
  });
  after(() => h.cleanup(srv));

  it('ttl: a session is refused with "expired session token" once its time is up', async () => {
    const c = await h.connect(srv, { username: 'short', password: 'pw' });
    await h.set(c, '/ttl/a', { v: 1 });
    await h.sleep(1200);
    denied(await h.expectError(h.get(c, '/ttl/a')), 'expired session token');
    // Other users are not affected.
    assert.equal((await h.get(admin, '/ttl/a')).v, 1);
    await h.disconnect(c);
  });

  it('inactivity_threshold: activity keeps the session alive, silence ends it', async () => {
    const c = await h.connect(srv, { username: 'idle', password: 'pw' });
    for (let i = 0; i < 3; i++) {
      await h.sleep(400);
      await h.set(c, '/idle/a', { i });
    }
    await h.sleep(900);
    denied(await h.expectError(h.get(c, '/idle/a')), 'session inactivity threshold reached');
    await h.disconnect(c);
  });

  it('usage_limit: the request beyond the limit is refused once, and does not run', async () => {
    const c = await h.connect(srv, { username: 'counted', password: 'pw' });
    const spy = h.spyClient(c);
    await h.set(c, '/usage/1', { n: 1 });
    await h.get(c, '/usage/1');
    await h.set(c, '/usage/2', { n: 2 });
    const mark = spy.mark();
    denied(await h.expectError(h.set(c, '/usage/3', { n: 3 })), 'session usage limit reached');
    await h.sleep(300);
    const replies = spy.since(mark, 'in').filter(f => f.json && f.json._meta && f.json._meta.type === 'response');
    assert.equal(replies.length, 1, 'one reply to the denied request: ' + spy.dump());
    assert.equal(await h.get(admin, '/usage/3'), null, 'the denied set did not run');
    // off needs no permission and is not limited.
    await h.disconnect(c);
  });

  it('policy permissions replace the user\'s: "token permissions limited"', async () => {
    const c = await h.connect(srv, { username: 'narrow', password: 'pw' });
    await h.set(admin, '/policy/x', { v: 1 });
    assert.equal((await h.get(c, '/policy/x')).v, 1);
    denied(await h.expectError(h.set(c, '/policy/x', { v: 2 })), 'token permissions limited');
    denied(await h.expectError(h.get(c, '/elsewhere')), 'token permissions limited');
    await h.disconnect(c);
  });

  it('profiles match on the login info: a sensor session gets one request', async () => {
    const sensor = await h.connect(srv, { username: 'free', password: 'pw', info: { device: 'sensor' } });
    const desk = await h.connect(srv, { username: 'free', password: 'pw', info: { device: 'desk' } });
    await h.set(sensor, '/sensor/1', { v: 1 });
    denied(await h.expectError(h.set(sensor, '/sensor/2', { v: 2 })), 'session usage limit reached');
    for (let i = 0; i < 3; i++) await h.set(desk, '/desk/' + i, { i });
    await h.disconnect(sensor);
    await h.disconnect(desk);
  });

  it('stateless (token) profile: a token past its ttl no longer logs in; the socket session is unaffected', async () => {
    const c = await h.connect(srv, { username: 'tok', password: 'pw' });
    const again = await h.connect(srv, { token: c.session.token });
    assert.equal(again.session.user.username, 'tok');
    await h.disconnect(again);
    await h.sleep(1200);
    const e = await h.expectError(h.connect(srv, { token: c.session.token }));
    assert.equal(e.message, 'Invalid credentials');
    await h.set(c, '/tok/a', { still: 'fine' });
    await h.disconnect(c);
  });

  it('revoke-session: the revoked session is refused with its reason, and its token is dead', async () => {
    const c = await h.connect(srv, { username: 'free', password: 'pw' });
    const token = c.session.token;
    const id = c.session.id;
    await h.cbCall('revoke', cb => c.performRequest(null, 'revoke-session', null, null, cb));
    denied(await h.expectError(h.get(c, '/x')), 'session with id ' + id + ' has been revoked');
    const e = await h.expectError(h.connect(srv, { token }));
    assert.equal(e.message, 'Invalid credentials');
    await h.destroyClient(c);
  });
});

describe('profile configuration', () => {
  it('a bad profile stops the server at start with a message naming it', async () => {
    const config = { secure: true, services: { security: { config: { profiles: [{ name: 'x', session: { $bogus: 1 } }] } } } };
    const r = await h.runCli(['--port', String(await h.freePort()), '--memory'], { env: { HAPPN_SERVER_CONFIG: JSON.stringify(config) } });
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /profiles/);
    assert.match(r.output, /\$bogus/);
  });
});
