'use strict';
// /metrics scraped around what the real happn 2.21 client does (issue 18): the counters move as
// the actions say, and the levels (connections, sessions, subscriptions) follow the clients.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

/** the Prometheus text of /metrics as {"name{labels}": value} */
async function scrape(srv) {
  const r = await h.httpGet(srv.port, '/metrics');
  assert.equal(r.status, 200, 'GET /metrics on an insecure server\'s main port');
  const out = {};
  for (const line of r.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}
const val = (m, key) => m[key] || 0;
const requests = (m, action, outcome) => val(m, `happn_requests_total{action="${action}",outcome="${outcome}"}`);

describe('/metrics during real-client traffic', () => {
  let srv;
  before(async () => { srv = await h.startServer(); });
  after(() => h.cleanup(srv));

  it('requests, publishes, deliveries, subscriptions and connections move as the client acts', async () => {
    const before = await scrape(srv);
    const a = await h.connect(srv);
    const b = await h.connect(srv);
    const ev = h.collector();
    const base = '/metrics/' + h.uid('m');
    await h.on(b, base + '/*', { event_type: 'set' }, ev.handler);
    await h.on(b, base + '/x', { event_type: 'remove' }, () => {});
    for (let i = 0; i < 5; i++) await h.set(a, base + '/' + i, { i });
    await h.get(a, base + '/1');
    await h.get(a, base + '/*');
    await h.remove(a, base + '/3');
    await h.expectError(h.set(a, base + '/bad', 1, { tag: 5 }), 'a set the server refuses');
    await ev.wait(5);
    const mid = await scrape(srv);
    assert.equal(requests(mid, 'set', 'ok') - requests(before, 'set', 'ok'), 5, 'five sets answered ok');
    assert.ok(requests(mid, 'set', 'error') - requests(before, 'set', 'error') >= 1, 'the refused set counted as an error');
    assert.equal(requests(mid, 'get', 'ok') - requests(before, 'get', 'ok'), 2, 'two gets');
    assert.equal(requests(mid, 'remove', 'ok') - requests(before, 'remove', 'ok'), 1, 'one remove');
    assert.equal(requests(mid, 'on', 'ok') - requests(before, 'on', 'ok'), 2, 'two subscriptions made');
    assert.equal(val(mid, 'happn_publishes_total') - val(before, 'happn_publishes_total'), 6, 'five sets and a remove published');
    assert.equal(val(mid, 'happn_deliveries_total') - val(before, 'happn_deliveries_total'), 5, 'five events delivered (the remove matched no subscription of its kind)');
    assert.equal(val(mid, 'happn_subscriptions') - val(before, 'happn_subscriptions'), 2);
    assert.equal(val(mid, 'happn_connections') - val(before, 'happn_connections'), 2, 'two more connections');
    await h.destroyClient(a);
    await h.destroyClient(b);
    let after = await scrape(srv);
    for (let i = 0; i < 50 && val(after, 'happn_connections') !== val(before, 'happn_connections'); i++) {
      await h.sleep(50);
      after = await scrape(srv);
    }
    assert.equal(val(after, 'happn_connections'), val(before, 'happn_connections'), 'connections fall back when the clients leave');
    assert.equal(val(after, 'happn_subscriptions'), val(before, 'happn_subscriptions'), 'and their subscriptions go with them');
  });
});
