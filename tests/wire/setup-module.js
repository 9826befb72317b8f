'use strict';
// Security hooks for the wire recorder (`record.js --setup-module`), so its security scenarios
// run against happn-rs. Each hook logs in to the server under test as _ADMIN with the real
// happn 2.21 client — directly on the server port, not through the recording proxy, so the
// traces only show the scenario's own clients — and manages the directory with plain set/remove
// on the security paths (decisions.md, "Managing security over the wire").
//
// Environment: HAPPN_WIRE_SERVER_PORT (the server's port), HAPPN_REF_MODULES (node_modules with
// happn@2.21.0), HAPPN_WIRE_ADMIN_PASSWORD (default "happn").
const path = require('path');

const modules = process.env.HAPPN_REF_MODULES || path.resolve(__dirname, '../compat/node_modules');
const happn = require(path.join(modules, 'happn'));
const port = Number(process.env.HAPPN_WIRE_SERVER_PORT || 55000);
const password = process.env.HAPPN_WIRE_ADMIN_PASSWORD || 'happn';

const USER = name => '/_SYSTEM/_SECURITY/_USER/' + name;
const GROUP = name => '/_SYSTEM/_SECURITY/_GROUP/' + name;

function call(client, fn, ...args) {
  return new Promise((resolve, reject) => client[fn](...args, (e, r) => (e ? reject(e) : resolve(r))));
}

async function asAdmin(work) {
  const client = await new Promise((resolve, reject) => {
    happn.client.create({ config: { host: '127.0.0.1', port, username: '_ADMIN', password }, utils: { logLevel: 'off' } },
      (e, c) => (e ? reject(e) : resolve(c)));
  });
  try {
    return await work(client);
  } finally {
    await new Promise(resolve => client.disconnect(() => resolve()));
  }
}

// What happn's security service hands back: the stored record with its storage _meta, not a
// reply envelope (whose session ids would shift the normalised trace's numbering).
const stored = reply => {
  const out = JSON.parse(JSON.stringify(reply));
  const meta = out._meta || {};
  out._meta = { created: meta.created, modified: meta.modified, path: meta.path, _id: meta.path };
  return out;
};

module.exports = {
  // happn: security.upsertGroup(group, options, callback) → the stored group
  upsertGroup: (group, options) => asAdmin(async c => {
    const data = Object.assign({}, group);
    delete data.name;
    return stored(await call(c, 'set', GROUP(group.name), data, { merge: !!(options && options.overwrite === false) }));
  }),
  // happn: security.upsertUser(user, options, callback) → the stored user (without password)
  upsertUser: (user, options) => asAdmin(async c => {
    const data = Object.assign({}, user);
    delete data.username;
    return stored(await call(c, 'set', USER(user.username), data, { merge: !!(options && options.overwrite === false) }));
  }),
  // happn: security.linkGroup(group, user, options, callback)
  linkGroup: (group, user, options) => asAdmin(async c => {
    const link = stored(await call(c, 'set', USER(user.username) + '/_USER_GROUP/' + group.name, options || {}));
    // happn answers with the link's _meta only (its data is the link options).
    return { _meta: link._meta };
  }),
  // happn: security.deleteUser(user, options, callback) → {obj, tree}: the user record and the
  // records below it (memberships), which happn-rs removes with the user.
  deleteUser: user => asAdmin(async c => {
    const path = USER(user.username);
    const below = await call(c, 'get', path + '/*', null);
    const reply = await call(c, 'remove', path);
    const timestamp = reply._meta.timestamp;
    return {
      obj: { data: { removed: reply.removed }, _meta: { timestamp, path } },
      tree: { data: { removed: below.length }, _meta: { timestamp, path: path + '/*' } },
    };
  }),
};
