'use strict';
/*
 * Harness for the browser suite: the happn-rs binary (HAPPN_RS_BIN, default
 * ../../target/release/happn-rs) serving tests/browser/pages as its static folder, and Debian's
 * Chromium (CHROMIUM_BIN, default /usr/bin/chromium) driven by playwright-core in a fresh
 * profile. Pages load /browser_client from the server, as applications do.
 *
 *  startServer(opts)   {secure, config, port, dataDir, args, staticDir} -> handle (.url, .stop(), .restart());
 *                      `command: [program, ...args]` runs another server with the same command line
 *                      (the original happn 2.21 through tests/compat/tools/ref-server.js), and
 *                      `staticDir: false` leaves out --static
 *  openBrowser()       one headless Chromium per test file; .page(url) opens a page and logs its console
 *  inPage(page, fn, arg)  page.evaluate with a timeout and the page's console in the error
 *
 * HAPPN_TEST_VERBOSE=1 echoes the server's and the pages' output.
 */
if (require.main === module) process.exit(0);

const path = require('path');
const fs = require('fs');
const os = require('os');
const net = require('net');
const http = require('http');
const { spawn } = require('child_process');

const ROOT = path.resolve(__dirname, '../../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const BIN = process.env.HAPPN_RS_BIN || path.join(TARGET, 'release', 'happn-rs');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const PAGES = path.resolve(__dirname, '../pages');
const VERBOSE = !!process.env.HAPPN_TEST_VERBOSE;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const done = (ok) => {
      s.removeAllListeners();
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(500, () => done(false));
  });
}

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch (e) {
      /* gone */
    }
  }
});

/** The happn-rs binary on 127.0.0.1 with the test pages as its static folder. */
async function startServer(opts = {}) {
  if (!opts.command && !fs.existsSync(BIN)) throw new Error('happn-rs binary not found at ' + BIN + ' (cargo build --release, or set HAPPN_RS_BIN)');
  const port = opts.port || (await freePort());
  const handle = {
    port,
    url: 'http://127.0.0.1:' + port,
    output: '',
    proc: null,
    async start() {
      const [cmd, ...args] = opts.command || [BIN];
      args.push('--port', String(port), '--host', '127.0.0.1');
      if (opts.staticDir !== false) args.push('--static', opts.staticDir || PAGES);
      if (opts.secure) args.push('--secure');
      if (opts.dataDir) args.push('--data-dir', opts.dataDir);
      else args.push('--memory');
      if (opts.args) args.push(...opts.args);
      const env = Object.assign({}, process.env);
      delete env.HAPPN_SERVER_CONFIG;
      if (opts.config) env.HAPPN_SERVER_CONFIG = JSON.stringify(opts.config);
      const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      live.add(proc);
      this.proc = proc;
      this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
        live.delete(proc);
        resolve({ code, signal });
      }));
      const log = (d) => {
        this.output += d;
        if (VERBOSE) process.stderr.write('[happn-rs:' + port + '] ' + d);
      };
      proc.stdout.on('data', log);
      proc.stderr.on('data', log);
      const deadline = Date.now() + 15000;
      while (!(await portOpen(port))) {
        if (proc.exitCode !== null) throw new Error('happn-rs exited: ' + this.output);
        if (Date.now() > deadline) throw new Error('happn-rs not listening after 15 s: ' + this.output);
        await sleep(50);
      }
      return this;
    },
    /** SIGTERM: clients are told to come back (server-side-disconnect, then close 1000). */
    async stop(signal = 'SIGTERM') {
      const proc = this.proc;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 8000);
      await this.exited;
      clearTimeout(t);
    },
    async restart(pauseMs = 0) {
      await this.stop();
      if (pauseMs) await sleep(pauseMs);
      return this.start();
    },
  };
  return handle.start();
}

/** Debian's Chromium in a fresh profile, headless, no network chatter of its own. */
async function openBrowser() {
  const { chromium } = require('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error('Chromium not found at ' + CHROMIUM + ' (apt-get install chromium, or set CHROMIUM_BIN)');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'happn-rs-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const pages = [];
  return {
    context,
    /** Opens `url`; the page's console and errors are kept in page.logs. */
    async page(url) {
      const page = await context.newPage();
      page.logs = [];
      page.on('console', (m) => {
        page.logs.push(m.type() + ': ' + m.text());
        if (VERBOSE) process.stderr.write('[page] ' + m.type() + ': ' + m.text() + '\n');
      });
      page.on('pageerror', (e) => page.logs.push('pageerror: ' + e.message));
      pages.push(page);
      if (url) await page.goto(url);
      return page;
    },
    async close() {
      for (const p of pages) await p.close().catch(() => {});
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** page.evaluate with a bound in time; a failure carries the page's console. */
async function inPage(page, fn, arg, ms = 15000) {
  let timer;
  try {
    return await Promise.race([
      page.evaluate(fn, arg),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('page script took more than ' + ms + ' ms')), ms);
      }),
    ]);
  } catch (e) {
    e.message += '\npage console:\n' + page.logs.slice(-30).join('\n');
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` (sync or async) until it returns a truthy value; bounded by `ms`. */
async function waitFor(label, check, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + label);
    await sleep(50);
  }
}

/** Plain HTTP GET: {status, headers, body}. */
function httpGet(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout ' + url)));
    req.on('error', reject);
  });
}

module.exports = { ROOT, TARGET, BIN, PAGES, sleep, freePort, startServer, openBrowser, inPage, waitFor, httpGet };
