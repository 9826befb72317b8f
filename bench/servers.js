#!/usr/bin/env node
'use strict';
/*
 * Starts one of the Node.js happn servers that happn-rs is compared with, in this process, so
 * that the process id bench/compare.sh records (and passes to happn-bench --pid) is the server's.
 *
 *   node bench/servers.js happn-2.21 --port 55101 [--host 127.0.0.1]
 *   node bench/servers.js happn-3    --port 55102 [--host 127.0.0.1]
 *
 * Both run secure (login required, _ADMIN / happn) with their default in-memory store (nedb for
 * happn 2.21.0, loki for happn-3) and logging at "error". Prints one line "ready <name> <version>
 * <pid> <host>:<port>" once listening; SIGTERM / SIGINT stop the server and exit.
 */
const path = require('path');

const args = process.argv.slice(2);
const which = args[0];
let port = 55000;
let host = '127.0.0.1';
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--port') port = parseInt(args[++i], 10);
  else if (args[i] === '--host') host = args[++i];
  else {
    console.error('unknown argument ' + args[i]);
    process.exit(2);
  }
}

const PACKAGES = { 'happn-2.21': 'happn', 'happn-3': 'happn-3' };
if (!PACKAGES[which]) {
  console.error('usage: node servers.js happn-2.21|happn-3 --port N [--host H]');
  process.exit(2);
}
const pkgName = PACKAGES[which];
const pkgDir = path.join(__dirname, 'node_modules', pkgName);
const version = require(path.join(pkgDir, 'package.json')).version;
process.env.LOG_LEVEL = process.env.LOG_LEVEL || 'error';
const happn = require(pkgDir);

const config = {
  port,
  host,
  secure: true,
  utils: { logLevel: process.env.LOG_LEVEL },
};

happn.service.create(config, (e, instance) => {
  if (e) {
    console.error(which + ': failed to start: ' + (e.stack || e));
    process.exit(1);
  }
  console.log(`ready ${which} ${version} ${process.pid} ${host}:${port}`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const done = () => process.exit(0);
    setTimeout(done, 3000).unref();
    try {
      instance.stop({ reconnect: false }, done);
    } catch (_) {
      done();
    }
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
