'use strict';
// `happn-rs user …` / `happn-rs group …`: the security directory from the command line, in a data
// directory (server stopped) and against a running server (--url), checked with the real client.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./helpers');

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'happn-cli-'));

async function cli(args, opts) {
  const r = await h.runCli(args, Object.assign({ timeout: 15000 }, opts || {}));
  return r;
}

async function ok(args, opts) {
  const r = await cli(args, opts);
  assert.equal(r.code, 0, args.join(' ') + ' → ' + r.output);
  return r.stdout;
}

describe('admin CLI on a data directory', () => {
  it('users and groups made offline log in with their permissions', async () => {
    const dir = tmpDir();
    const d = ['--data-dir', dir];
    await ok(['group', 'add', 'ops', '--permission', '/ops/*=get,set', ...d]);
    await ok(['user', 'add', 'alice', '--password', 'alice-pw', '--group', 'ops', '--custom-data', '{"team":"blue"}', ...d]);
    await ok(['group', 'grant', 'ops', '/shared/*', 'get,on', ...d]);
    await ok(['group', 'revoke', 'ops', '/ops/*', 'set', ...d]);
    const users = await ok(['user', 'list', ...d]);
    assert.match(users, /alice\tgroups: ops\tcustom_data: \{"team":"blue"\}/);
    assert.ok(!users.includes('pbkdf2'), 'no hashes listed');
    const groups = await ok(['group', 'list', ...d]);
    assert.match(groups, /ops\tpermissions: \{"\/ops\/\*":\{"actions":\["get"\]\},"\/shared\/\*":\{"actions":\["get","on"\]\}\}/);

    const srv = await h.startServer({ config: { secure: true }, dataDir: dir });
    try {
      const alice = await h.connect(srv, { username: 'alice', password: 'alice-pw' });
      assert.equal(await h.get(alice, '/ops/x'), null);
      const e = await h.expectError(h.set(alice, '/ops/x', { v: 1 }));
      assert.equal(e.message, 'unauthorized', 'set was revoked');
      await h.disconnect(alice);
    } finally {
      await h.cleanup(srv);
    }

    await ok(['user', 'passwd', 'alice', '--password-stdin', ...d], { stdin: 'second-pw\n' });
    const again = await h.startServer({ config: { secure: true }, dataDir: dir });
    try {
      const e = await h.expectError(h.connect(again, { username: 'alice', password: 'alice-pw' }));
      assert.equal(e.message, 'Invalid credentials');
      const alice = await h.connect(again, { username: 'alice', password: 'second-pw' });
      await h.disconnect(alice);
    } finally {
      await h.cleanup(again);
    }
    await ok(['user', 'unlink', 'alice', 'ops', ...d]);
    await ok(['group', 'rm', 'ops', ...d]);
    await ok(['user', 'rm', 'alice', ...d]);
    assert.ok(!(await ok(['user', 'list', ...d])).includes('alice'));
  });

  it('mistakes are reported with exit codes 1 (not found) and 2 (bad arguments)', async () => {
    const d = ['--data-dir', tmpDir()];
    let r = await cli(['user', 'rm', 'nobody', ...d]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such user "nobody"/);
    r = await cli(['user', 'add', 'bob', ...d]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--password/);
    r = await cli(['group', 'add', 'g', '--permission', '/no-actions', ...d]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PATH=ACTION/);
    r = await cli(['user', 'add', 'a/b', '--password', 'p', ...d]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /'\/'/);
    r = await cli(['user', 'rm', '_ADMIN', ...d]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot be deleted/);
  });

  it('refuses a data directory a running server holds, and says to use --url', async () => {
    const dir = tmpDir();
    const srv = await h.startServer({ config: { secure: true }, dataDir: dir });
    try {
      const r = await cli(['user', 'list', '--data-dir', dir]);
      assert.equal(r.code, 1, r.output);
      assert.match(r.stderr, /--url/);
    } finally {
      await h.cleanup(srv);
    }
  });
});

describe('admin CLI against a running server (--url)', () => {
  it('adds, links and deletes users live; a deleted user\'s session is closed', async () => {
    const srv = await h.startServer({ config: { secure: true } });
    try {
      const remote = ['--url', 'ws://127.0.0.1:' + srv.port, '--admin-password', 'happn'];
      await ok(['group', 'add', 'live', '--permission', '/live/*=*', ...remote]);
      await ok(['user', 'add', 'carol', '--password', 'carol-pw', '--group', 'live', ...remote]);
      const carol = await h.connect(srv, { username: 'carol', password: 'carol-pw' });
      await h.set(carol, '/live/1', { v: 1 });
      await ok(['group', 'revoke', 'live', '/live/*', ...remote]);
      const e = await h.expectError(h.set(carol, '/live/2', { v: 2 }));
      assert.equal(e.message, 'unauthorized', 'the revocation reached the live session');
      assert.match(await ok(['user', 'list', ...remote]), /carol\tgroups: live/);
      const watch = h.watchClient(carol);
      await ok(['user', 'rm', 'carol', ...remote]);
      await watch.wait('system:server-side-disconnect');
      await watch.wait('connection-ended');
      const wrong = await cli(['user', 'list', '--url', 'ws://127.0.0.1:' + srv.port, '--admin-password', 'wrong']);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /Invalid credentials/);
    } finally {
      await h.cleanup(srv);
    }
  });
});
