#!/usr/bin/env node
'use strict';
/*
 * Harness self-check only: runs the REFERENCE happn 2.21.0 server (from node_modules) behind the
 * happn-rs command line, so the suite can be pointed at it:
 *
 *   HAPPN_RS_BIN=$PWD/tools/ref-server.js npm test
 *
 * Tests that fail against this shim should be exactly the places where happn-rs deliberately
 * differs from the original (decisions.md "Fix" list) or happn-rs-only features (CLI validation,
 * maxFrameBytes, shutdown announcement). Anything else failing here is a harness bug.
 *
 * CLI: --port N --host H [--config FILE] [--secure] [--help]; env HAPPN_SERVER_CONFIG (JSON) merged
 * over the config file. happn-rs extras: users [{username,password,publicKey,groups}], groups [{name,permissions}],
 * adminUser {password}. SIGTERM = stop (clients reconnect), SIGINT = stop({reconnect:false}).
 */
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);
const opts = {};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--help' || a === '-h') {
    console.log('usage: ref-server [--port N] [--host H] [--config FILE] [--secure]\n' +
      '  --port N       listen port\n  --host H       listen address\n  --config FILE  JSON config\n  --secure       require login');
    process.exit(0);
  } else if (a === '--port') opts.port = args[++i];
  else if (a === '--host') opts.host = args[++i];
  else if (a === '--config') opts.config = args[++i];
  else if (a === '--secure') opts.secure = true;
  else if (a === '--memory') opts.memory = true; // the reference is in memory unless given a file
  else if (a === '--data-dir') opts.dataDir = args[++i];
  else { console.error('unknown argument ' + a); process.exit(2); }
}

let cfg = {};
try {
  if (opts.config) cfg = JSON.parse(fs.readFileSync(opts.config, 'utf8'));
  if (process.env.HAPPN_SERVER_CONFIG) Object.assign(cfg, JSON.parse(process.env.HAPPN_SERVER_CONFIG));
} catch (e) {
  console.error('bad config: ' + e.message);
  process.exit(2);
}
if (opts.port !== undefined) cfg.port = parseInt(opts.port, 10);
if (opts.host !== undefined) cfg.host = opts.host;
if (opts.secure) cfg.secure = true;

const KNOWN = ['port', 'host', 'name', 'secure', 'encryptPayloads', 'adminUser', 'users', 'groups', 'maxFrameBytes', 'services', 'utils', 'transport', 'middleware'];
const TYPES = { port: 'number', host: 'string', name: 'string', secure: 'boolean', encryptPayloads: 'boolean', maxFrameBytes: 'number' };
for (const k of Object.keys(cfg)) {
  if (!KNOWN.includes(k)) console.error('warning: unknown config key ' + k);
  if (TYPES[k] && typeof cfg[k] !== TYPES[k]) { console.error('config key ' + k + ' must be a ' + TYPES[k]); process.exit(2); }
}

const happn = require(path.join(__dirname, '..', 'node_modules', 'happn'));
const users = cfg.users || [];
const groups = cfg.groups || [];
const hcfg = {
  port: cfg.port === undefined ? 55000 : cfg.port,
  host: cfg.host || '0.0.0.0',
  secure: !!cfg.secure,
  encryptPayloads: !!cfg.encryptPayloads,
  utils: cfg.utils || { logLevel: 'error' },
  services: cfg.services || {},
};
if (cfg.name) hcfg.name = cfg.name;
if (opts.dataDir) {
  // happn 2.21 persists to one nedb file; put it inside the data directory.
  fs.mkdirSync(opts.dataDir, { recursive: true });
  hcfg.services.data = { config: Object.assign({}, (hcfg.services.data || {}).config, { filename: require('path').join(opts.dataDir, 'happn.nedb') }) };
}
if (cfg.adminUser) {
  hcfg.services.security = hcfg.services.security || {};
  hcfg.services.security.config = Object.assign({}, hcfg.services.security.config, { adminUser: cfg.adminUser });
}

const cb = fn => new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))));

happn.service.create(hcfg, async (e, inst) => {
  if (e) { console.error(e); process.exit(1); }
  try {
    const sec = inst.services.security;
    const made = {};
    for (const g of groups) made[g.name] = await cb(done => sec.upsertGroup({ name: g.name, permissions: g.permissions || {} }, {}, done));
    for (const u of users) {
      const spec = { username: u.username };
      if (u.password !== undefined) spec.password = u.password;
      if (u.publicKey !== undefined) spec.publicKey = u.publicKey;
      const user = await cb(done => sec.upsertUser(spec, {}, done));
      for (const gn of u.groups || []) await cb(done => sec.linkGroup(made[gn], user, {}, done));
    }
  } catch (err) {
    console.error('security setup failed: ' + err.message);
  }
  console.log('happn-rs listening on ' + hcfg.host + ':' + hcfg.port + ' (reference happn 2.21.0 shim)');
  let stopping = false;
  const stop = reconnect => {
    if (stopping) return;
    stopping = true;
    inst.stop({ reconnect }, () => process.exit(0));
  };
  process.on('SIGTERM', () => stop(true));
  process.on('SIGINT', () => stop(false));
});
