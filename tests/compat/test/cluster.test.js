'use strict';
// Cluster mode (docs/CLUSTER.md) with the real happn 2.21 client: three happn-rs nodes on one
// PostgreSQL. scripts/pg.sh starts a private PostgreSQL and sets HAPPN_PG_URL/HAPPN_PG_DIR:
//   scripts/pg.sh run npm test            (in tests/compat; scripts/test.sh does this)
// Without them these tests fail (HAPPN_PG_SKIP=1 skips them), so a missing database cannot pass.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const net = require('net');
const { execFileSync } = require('child_process');
const h = require('./helpers');

const PG = process.env.HAPPN_PG_URL;
const PG_DIR = process.env.HAPPN_PG_DIR;
const SKIP = !PG && process.env.HAPPN_PG_SKIP === '1';
if (!PG && !SKIP) {
  throw new Error('HAPPN_PG_URL is not set: run the compat suite through scripts/pg.sh ' +
    '(`../../scripts/pg.sh run npm test`), or set HAPPN_PG_SKIP=1 to skip the cluster tests');
}
const PG_SH = path.resolve(__dirname, '../../../scripts/pg.sh');

let schemas = 0;
const freshSchema = () => 'cl_' + process.pid + '_' + (++schemas) + '_' + Date.now().toString(36);
const psql = sql => execFileSync('psql', [PG, '-Atqc', sql], { encoding: 'utf8' }).trim();

const servers = [];
after(() => h.cleanup(...servers));

/** `n` nodes on a fresh schema, named n0, n1, … (started one after another) */
async function startNodes(n, opts) {
  opts = opts || {};
  const schema = freshSchema();
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const srv = await h.startServer({
      secure: opts.secure,
      args: ['--name', 'n' + i],
      config: { cluster: { url: PG, schema } },
    });
    servers.push(srv);
    nodes.push(srv);
  }
  nodes.schema = schema;
  return nodes;
}

/** what subscribers can compare across nodes: the event, not the recipient's session */
const eventKey = e => JSON.stringify([e.meta.action, e.meta.path, e.data, e.meta.created, e.meta.modified]);

async function waitFor(pred, ms, label) {
  const deadline = Date.now() + (ms || 10000);
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + label);
    await h.sleep(20);
  }
}

/**
 * A TCP load balancer as HAProxy or nginx `stream` does it for happn (docs/CLUSTER.md): each new
 * client connection goes to the first backend that accepts it; a backend that refuses is skipped.
 */
class FailoverProxy {
  constructor(ports) { this.ports = ports; this.pairs = new Set(); this.routed = []; }
  async start() {
    this.server = net.createServer(client => {
      const tryBackend = i => {
        if (i >= this.ports.length) { client.destroy(); return; }
        const upstream = net.connect(this.ports[i], '127.0.0.1');
        upstream.once('error', () => { if (!upstream.connected) tryBackend(i + 1); });
        upstream.once('connect', () => {
          this.routed.push(this.ports[i]);
          const pair = { client, upstream };
          this.pairs.add(pair);
          client.pipe(upstream);
          upstream.pipe(client);
          const kill = () => { client.destroy(); upstream.destroy(); this.pairs.delete(pair); };
          client.on('error', kill); upstream.on('error', kill);
          client.on('close', kill); upstream.on('close', kill);
        });
      };
      tryBackend(0);
    });
    await new Promise(resolve => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }
  close() {
    for (const p of this.pairs) { p.client.destroy(); p.upstream.destroy(); }
    return new Promise(resolve => this.server.close(() => resolve()));
  }
}

/** keep writing `/<base>/<n>` through `client` until stopped; records what was acknowledged */
function writer(client, base) {
  const w = { acked: [], errors: [], stopped: false };
  w.done = (async () => {
    for (let i = 0; !w.stopped; i++) {
      const p = base + '/' + i;
      try {
        await h.set(client, p, { i });
        w.acked.push(p);
      } catch (e) {
        // The 2.21 client puts a server error's text in `name`.
        w.errors.push(String((e && (e.message || e.name)) || e));
        await h.sleep(20);
      }
    }
  })();
  w.stop = async () => { w.stopped = true; await w.done; return w; };
  return w;
}

describe('cluster (3 nodes on PostgreSQL, real happn 2.21 client)', { skip: SKIP }, () => {
  it('writes through every node reach the subscribers of every node in one order', async () => {
    const nodes = await startNodes(3);
    const base = '/cl/' + h.uid('order');
    const subs = [];
    for (const n of nodes) {
      const c = await h.connect(n);
      const ev = h.collector();
      await h.on(c, base + '/*', { event_type: 'all' }, ev.handler);
      subs.push(ev);
    }
    // Writers on every node at once, on shared paths: sets, merges and removes.
    const writers = await Promise.all(nodes.map(n => h.connect(n)));
    let writes = 0;
    await Promise.all(writers.map(async (c, wi) => {
      for (let round = 0; round < 20; round++) {
        const batch = [];
        for (let j = 0; j < 5; j++) {
          const p = base + '/k' + ((round + j) % 4);
          const k = (round * 5 + j) % 6;
          if (k === 4) batch.push(h.set(c, p, { m: wi }, { merge: true }));
          else if (k === 5) batch.push(h.remove(c, p));
          else batch.push(h.set(c, p, { w: wi, round, j }));
          writes++;
        }
        await Promise.all(batch);
      }
    }));
    for (const ev of subs) await ev.wait(writes, 15000);
    const seqs = subs.map(ev => ev.items.map(eventKey));
    assert.equal(seqs[0].length, writes, 'one event per write');
    assert.deepEqual(seqs[1], seqs[0], 'node n1 delivered the same events in the same order as n0');
    assert.deepEqual(seqs[2], seqs[0], 'node n2 delivered the same events in the same order as n0');
    // And every node reads the same records afterwards (the last event of each path is its value).
    const views = await Promise.all(writers.map(c => h.get(c, base + '/*')));
    const norm = v => JSON.stringify(v.map(i => [i._meta.path, h.plain(i)]).sort());
    assert.equal(norm(views[1]), norm(views[0]));
    assert.equal(norm(views[2]), norm(views[0]));
  });

  it('a write is read back on every node at once, and the writer sees its own event before its reply', async () => {
    const nodes = await startNodes(3);
    const clients = await Promise.all(nodes.map(n => h.connect(n)));
    const base = '/cl/' + h.uid('ryw');
    const ev = h.collector();
    await h.on(clients[1], base + '/*', { event_type: 'set' }, ev.handler);
    for (let i = 0; i < 30; i++) {
      const writerNode = i % 3;
      const p = base + '/' + i;
      const r = await h.set(clients[writerNode], p, { i });
      assert.equal(r.i, i);
      if (writerNode === 1) {
        // The writer's own subscription: the event came first (it is queued before the reply).
        assert.equal(ev.items.length > 0 && ev.items[ev.items.length - 1].meta.path, p, 'event before reply on the writer\'s node');
      }
      for (const c of clients) {
        const got = await h.get(c, p);
        assert.equal(got && got.i, i, 'read-your-writes on every node');
      }
    }
    await ev.wait(30);
    h.deq(ev.items.map(e => e.data.i), [...Array(30).keys()]);
  });

  it('security is cluster-wide: users, grants and revocations made on one node apply on the others; tokens travel; deleting a user closes its sessions everywhere', async () => {
    const nodes = await startNodes(3, { secure: true });
    const admin = await h.connect(nodes[0], { username: '_ADMIN', password: 'happn' });
    const g = h.uid('grp');
    const u = h.uid('usr');
    const USER = '/_SYSTEM/_SECURITY/_USER/' + u;
    const GROUP = '/_SYSTEM/_SECURITY/_GROUP/' + g;
    await h.set(admin, GROUP, { permissions: { ['/sec/' + g + '/*']: { actions: ['get', 'set'] } } });
    await h.set(admin, USER, { username: u, password: 'pw1' });
    await h.set(admin, USER + '/_USER_GROUP/' + g, {});
    // The user created on n0 logs in on n1 and n2, with the permissions granted on n0.
    const onB = await h.connect(nodes[1], { username: u, password: 'pw1' });
    const onC = await h.connect(nodes[2], { username: u, password: 'pw1' });
    await h.set(onB, '/sec/' + g + '/a', { v: 1 });
    assert.equal((await h.get(onC, '/sec/' + g + '/a')).v, 1);
    // A token issued by n1 logs in on n2.
    const token = onB.session.token;
    assert.ok(token, 'the session has a token');
    const byToken = await h.connect(nodes[2], { token });
    assert.equal((await h.get(byToken, '/sec/' + g + '/a')).v, 1);
    // A grant taken away on n0 applies on n1 (within the log's delivery time: milliseconds).
    await h.set(admin, GROUP, { permissions: { ['/sec/' + g + '/*']: { actions: ['get'] } } });
    const deadline = Date.now() + 3000;
    let denied = null;
    while (!denied && Date.now() < deadline) {
      denied = await h.set(onB, '/sec/' + g + '/b', { v: 2 }).then(() => null, e => e);
      if (!denied) await h.sleep(20);
    }
    assert.ok(denied, 'set refused on n1 after the grant was taken away on n0');
    assert.match(String(denied.message || denied), /unauthorized|AccessDenied/i);
    assert.equal((await h.get(onB, '/sec/' + g + '/a')).v, 1, 'get is still granted');
    // Deleting the user on n0 closes its sessions on n1 and n2.
    const watchB = h.watchClient(onB);
    const watchC = h.watchClient(onC);
    await h.remove(admin, USER);
    await watchB.wait('system:server-side-disconnect', 5000);
    await watchC.wait('system:server-side-disconnect', 5000);
    const refused = await h.expectError(h.connect(nodes[2], { username: u, password: 'pw1' }), 'login of a deleted user');
    assert.match(String(refused.message || refused), /Invalid credentials|does not exist|AccessDenied/i);
  });

  it('noCluster: only the clients of the node the write came through hear of it', async () => {
    const nodes = await startNodes(2);
    const base = '/cl/' + h.uid('nocl');
    const [a, b] = await Promise.all(nodes.map(n => h.connect(n)));
    const evA = h.collector();
    const evB = h.collector();
    await h.on(a, base + '/*', { event_type: 'set' }, evA.handler);
    await h.on(b, base + '/*', { event_type: 'set' }, evB.handler);
    await h.set(a, base + '/local', { n: 1 }, { noCluster: true });
    await h.set(a, base + '/everywhere', { n: 2 });
    await evB.wait(1, 5000);
    await evA.wait(2, 5000);
    await h.sleep(200);
    h.deq(evA.items.map(e => e.data.n), [1, 2]);
    h.deq(evB.items.map(e => e.data.n), [2], 'the other node skipped the noCluster event');
    assert.equal((await h.get(b, base + '/local')).n, 1, 'the record itself is shared');
  });

  it('kill -9 of a node under writes: the other nodes go on, and every acknowledged write is kept', async () => {
    const nodes = await startNodes(3);
    const base = '/cl/' + h.uid('kill');
    const clients = await Promise.all(nodes.map(n => h.connect(n)));
    const ev = h.collector();
    await h.on(clients[1], base + '/*', { event_type: 'set' }, ev.handler);
    const ws = clients.map((c, i) => writer(c, base + '/w' + i));
    await waitFor(() => ws.every(w => w.acked.length >= 50), 15000, 'writes on every node');
    await nodes[2].kill();
    const afterKill = ws.map(w => w.acked.length);
    await waitFor(() => ws[0].acked.length >= afterKill[0] + 100 && ws[1].acked.length >= afterKill[1] + 100, 15000, 'writes go on on n0 and n1');
    ws[2].stopped = true;
    await Promise.all([ws[0].stop(), ws[1].stop()]);
    assert.deepEqual(ws[0].errors, [], 'no failed write on n0');
    assert.deepEqual(ws[1].errors, [], 'no failed write on n1');
    const all = await h.get(clients[0], base + '/*');
    const stored = new Set(all.map(i => i._meta.path));
    for (const w of ws) for (const p of w.acked) assert.ok(stored.has(p), 'acknowledged write kept: ' + p);
    // The subscriber on n1 heard of every acknowledged write, once.
    const acked = ws.reduce((n, w) => n + w.acked.length, 0);
    await waitFor(() => ev.items.length >= acked, 10000, 'events of every acknowledged write');
    const heard = ev.items.map(e => e.meta.path);
    assert.equal(new Set(heard).size, heard.length, 'no event twice');
    const heardSet = new Set(heard);
    for (const w of ws) for (const p of w.acked) assert.ok(heardSet.has(p), 'event of ' + p);
  });

  it('the database connections of a node killed mid-stream (pg_terminate_backend): no acknowledged write or event lost, none repeated', async () => {
    const nodes = await startNodes(2);
    const base = '/cl/' + h.uid('term');
    const [a, b] = await Promise.all(nodes.map(n => h.connect(n)));
    const ev = h.collector();
    await h.on(b, base + '/*', { event_type: 'set' }, ev.handler);
    const wa = writer(a, base + '/a');
    const wb = writer(b, base + '/b');
    for (let round = 0; round < 3; round++) {
      const before = wa.acked.length + wb.acked.length;
      await waitFor(() => wa.acked.length + wb.acked.length >= before + 100, 15000, 'writes go on');
      const killed = psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'happn-rs n1'");
      assert.ok(Number(killed) >= 1, 'n1 had connections to kill');
    }
    const before = wa.acked.length + wb.acked.length;
    await waitFor(() => wa.acked.length + wb.acked.length >= before + 100, 15000, 'writes resume after the kills');
    await Promise.all([wa.stop(), wb.stop()]);
    for (const e of wb.errors) assert.match(e, /cluster store unavailable/, 'a failure says why');
    assert.deepEqual(wa.errors, [], 'n0 was not touched');
    const acked = [...wa.acked, ...wb.acked];
    await waitFor(() => ev.items.length >= acked.length, 15000, 'events of every acknowledged write');
    await h.sleep(200);
    const heard = ev.items.map(e => e.meta.path);
    assert.equal(new Set(heard).size, heard.length, 'no event twice');
    const heardSet = new Set(heard);
    for (const p of acked) assert.ok(heardSet.has(p), 'event of acknowledged write ' + p);
    const stored = new Set((await h.get(a, base + '/*')).map(i => i._meta.path));
    for (const p of acked) assert.ok(stored.has(p), 'acknowledged write kept: ' + p);
  });

  it('PostgreSQL restarted under writes: clear errors meanwhile, sockets stay open, writes resume by themselves, nothing acknowledged lost', async () => {
    assert.ok(PG_DIR, 'HAPPN_PG_DIR is set by scripts/pg.sh');
    const nodes = await startNodes(2);
    const base = '/cl/' + h.uid('restart');
    const [a, b] = await Promise.all(nodes.map(n => h.connect(n)));
    const watchA = h.watchClient(a);
    const ev = h.collector();
    await h.on(b, base + '/*', { event_type: 'set' }, ev.handler);
    const wa = writer(a, base + '/a');
    await waitFor(() => wa.acked.length >= 100, 15000, 'writes before the restart');
    execFileSync('bash', [PG_SH, 'restart', PG_DIR], { stdio: 'ignore' });
    const afterRestart = wa.acked.length;
    await waitFor(() => wa.acked.length >= afterRestart + 100, 20000, 'writes resume after the restart');
    await wa.stop();
    for (const e of wa.errors) assert.match(e, /cluster store unavailable/, 'a failure says why');
    assert.equal(watchA.count('connection-ended'), 0, 'the client stayed connected');
    await waitFor(() => ev.items.length >= wa.acked.length, 15000, 'events of every acknowledged write');
    await h.sleep(200);
    const heard = ev.items.map(e => e.meta.path);
    assert.equal(new Set(heard).size, heard.length, 'no event twice');
    const heardSet = new Set(heard);
    for (const p of wa.acked) assert.ok(heardSet.has(p), 'event of acknowledged write ' + p);
    const stored = new Set((await h.get(b, base + '/*')).map(i => i._meta.path));
    for (const p of wa.acked) assert.ok(stored.has(p), 'acknowledged write kept: ' + p);
  });

  it('a node dies behind a load balancer: its clients reconnect to the same URL, land on another node, re-subscribe and miss nothing written after', async () => {
    const nodes = await startNodes(2);
    const proxy = await new FailoverProxy([nodes[0].port, nodes[1].port]).start();
    try {
      const base = '/cl/' + h.uid('lb');
      const c = await h.connect(proxy.port, { pubsub: { reconnect: { min: 200, max: 1000 } } });
      const watch = h.watchClient(c);
      const ev = h.collector();
      await h.on(c, base + '/*', { event_type: 'set' }, ev.handler);
      const writer = await h.connect(nodes[1]);
      await h.set(writer, base + '/before', { n: 0 });
      await ev.wait(1);
      assert.deepEqual(proxy.routed, [nodes[0].port], 'the client went to n0 first');
      await nodes[0].kill();
      await watch.wait('reconnect-successful', 15000);
      assert.equal(proxy.routed[proxy.routed.length - 1], nodes[1].port, 'it reconnected through the balancer to n1');
      // Its subscription was renewed on n1: writes from now on reach it.
      await h.sleep(200);
      for (let i = 1; i <= 5; i++) await h.set(writer, base + '/after' + i, { n: i });
      await ev.wait(6, 5000);
      h.deq(ev.items.slice(1).map(e => e.data.n), [1, 2, 3, 4, 5]);
      // And its own writes work through the new node.
      assert.equal((await h.set(c, base + '/mine', { m: 1 })).m, 1);
    } finally {
      await proxy.close();
    }
  });

  it('a node held behind the trim horizon tells its clients (cluster-events-lost) and closes them so they reconnect', async () => {
    const schema = freshSchema();
    const cluster = { url: PG, schema, maxEvents: 1000 };
    const a = await h.startServer({ args: ['--name', 'h0'], config: { cluster } });
    const b = await h.startServer({ args: ['--name', 'h1'], config: { cluster } });
    servers.push(a, b);
    const base = '/cl/' + h.uid('horizon');
    const onB = await h.connect(b, { pubsub: { reconnect: { min: 200, max: 1000 } } });
    const watch = h.watchClient(onB);
    const ev = h.collector();
    await h.on(onB, base + '/*', { event_type: 'set' }, ev.handler);
    const writer = await h.connect(a);
    await h.set(writer, base + '/first', { n: 0 });
    await ev.wait(1);
    // Hold n1 behind: stop the process while 3,000 events are written and trimmed to 1,000.
    b.proc.kill('SIGSTOP');
    try {
      for (let i = 0; i < 60; i++) {
        await Promise.all([...Array(50).keys()].map(j => h.set(writer, base + '/k' + (i * 50 + j), { n: i * 50 + j })));
      }
      await waitFor(() => Number(psql(`SELECT trimmed_through FROM "${schema}".happn_log_state`)) > 0, 20000, 'the log trimmed');
    } finally {
      b.proc.kill('SIGCONT');
    }
    const message = await watch.wait('system:cluster-events-lost', 10000);
    assert.ok(message && message.after >= 1 && message.resumedAt > message.after, 'the message says which events: ' + JSON.stringify(message));
    await watch.wait('reconnect-successful', 15000);
    // After the reconnect the client is served again, its subscription renewed.
    const n = ev.items.length;
    await h.set(writer, base + '/later', { n: -1 });
    await ev.wait(n + 1, 5000);
    assert.equal(ev.items[ev.items.length - 1].data.n, -1);
  });

  it('happn-rs cluster status lists the live nodes', async () => {
    const nodes = await startNodes(2);
    const r = await h.runCli(['cluster', 'status', '--cluster', PG, '--schema', nodes.schema, '--json']);
    assert.equal(r.code, 0, r.output);
    const members = r.stdout.trim().split('\n').map(l => JSON.parse(l));
    h.deq(members.map(m => [m.name, m.alive]), [['n0', true], ['n1', true]]);
    await nodes[1].kill();
    const deadline = Date.now() + 10000;
    let down = false;
    while (!down && Date.now() < deadline) {
      const s = await h.runCli(['cluster', 'status', '--cluster', PG, '--schema', nodes.schema, '--json']);
      down = s.stdout.trim().split('\n').map(l => JSON.parse(l)).some(m => m.name === 'n1' && !m.alive);
      if (!down) await h.sleep(500);
    }
    assert.ok(down, 'a killed node is shown down once its heartbeat is older than the TTL');
  });
});
