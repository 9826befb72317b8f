// /browser_primus.js: a `Primus` client for the browser's native WebSocket that speaks what
// happn-primus 6.0.1 speaks (the server side is in docs/ARCHITECTURE.md and the wire spec):
// JSON text frames, `"primus::…"` control strings, client pings answered by server pongs, and
// the Recovery back-off (attempt 1 after `min`, then min·factor^(n-1)·(1+random), capped at
// `max`, each attempt bounded by the reconnect timeout). Events keep Primus' names, so pages
// that use the socket directly keep working: open, data, error, end, close, reconnect
// scheduled, reconnect, reconnected, reconnect timeout, reconnect failed, offline, online,
// timeout, outgoing::ping, incoming::pong, readyStateChange.

import Emitter from './emitter.js';

const CLOSED = 1;
const OPENING = 2;
const OPEN = 3;

let lastStamp = '';
let seed = 0;
/** A short cache-buster, different on every connect (yeast's idea: time in base 36 + a counter). */
function cacheBuster() {
  const now = Date.now().toString(36);
  if (now !== lastStamp) {
    lastStamp = now;
    seed = 0;
    return now;
  }
  return now + '.' + (seed++).toString(36);
}

function strategyList(strategy) {
  if (strategy === false) return [];
  let list = typeof strategy === 'string' ? strategy.split(/\s*,\s*/) : Array.isArray(strategy) ? strategy.slice() : [];
  list = list.filter(Boolean).map((s) => s.toLowerCase());
  return list.length ? list : ['disconnect', 'online', 'timeout'];
}

export default class Primus extends Emitter {
  constructor(url, options) {
    super();
    options = options || {};
    this.options = options;
    options.ping = 'ping' in options ? options.ping : 25000;
    options.pong = 'pong' in options ? options.pong : 10000;
    options.timeout = 'timeout' in options ? options.timeout : 10000;
    options.queueSize = 'queueSize' in options ? options.queueSize : Infinity;
    options.pathname = options.pathname || '/primus';
    this.strategy = strategyList(options.strategy);
    const r = options.reconnect || {};
    this.recovery = {
      retries: r.retries !== undefined ? r.retries : 10,
      min: r.min !== undefined ? r.min : 500,
      max: r.max !== undefined ? r.max : Infinity,
      factor: r.factor !== undefined ? r.factor : 2,
      timeout: r['reconnect timeout'] !== undefined ? r['reconnect timeout'] : r.timeout !== undefined ? r.timeout : 30000,
      attempt: 0,
      status: null,
    };
    this.url = url || (typeof location !== 'undefined' ? location.href : 'http://127.0.0.1');
    this.readyState = CLOSED;
    this.buffer = [];
    this.latency = 0;
    this.online = true;
    this.disconnect = false;
    this.socket = null;
    this.timers = {};
    this.transformers = { incoming: [], outgoing: [] };
    this.writable = true;
    this.readable = true;
    this._onOffline = () => this._offline();
    this._onOnline = () => this._backOnline();
    if (typeof window !== 'undefined' && window.addEventListener) {
      window.addEventListener('offline', this._onOffline, false);
      window.addEventListener('online', this._onOnline, false);
    }
    if (!options.manual) this._timer('open', () => this.open(), 0);
  }

  static connect(url, options) {
    return new Primus(url, options);
  }

  // --- timers ---
  _timer(name, fn, ms) {
    this._clear(name);
    this.timers[name] = setTimeout(() => {
      delete this.timers[name];
      fn();
    }, ms);
  }
  _clear(...names) {
    for (const name of names.length ? names : Object.keys(this.timers)) {
      clearTimeout(this.timers[name]);
      delete this.timers[name];
    }
  }
  _active(name) {
    return name in this.timers;
  }

  _setState(state, label) {
    if (this.readyState !== state) {
      this.readyState = state;
      this.emit('readyStateChange', label);
    }
  }

  /** The websocket URL: http→ws, https→wss, our pathname appended, the caller's query kept. */
  socketUrl() {
    const u = new URL(this.url, typeof location !== 'undefined' ? location.href : undefined);
    u.protocol = u.protocol === 'https:' || u.protocol === 'wss:' ? 'wss:' : 'ws:';
    u.pathname = u.pathname.replace(/\/+$/, '') + this.options.pathname;
    u.searchParams.set('_primuscb', cacheBuster());
    u.searchParams.set('ping', String(this.options.ping));
    u.searchParams.set('pong', String(this.options.pong));
    u.hash = '';
    return u.toString();
  }

  reconnecting() {
    return this.recovery.status !== null;
  }

  open() {
    this._clear('open');
    if (!this.reconnecting() && this.options.timeout) this._connectTimeout();
    this._setState(OPENING, 'opening');
    this._started = Date.now();
    this._closeSocket();
    let ws;
    try {
      ws = new WebSocket(this.socketUrl());
    } catch (e) {
      this._incomingError(e);
      this._incomingEnd();
      return this;
    }
    this.socket = ws;
    ws.onopen = () => this._incomingOpen();
    ws.onerror = () => this._incomingError(new Error('WebSocket connection to ' + this.url + ' failed'));
    ws.onclose = () => {
      if (this.socket === ws) {
        this.socket = null;
        this._incomingEnd();
      }
    };
    ws.onmessage = (ev) => this._incomingData(ev.data);
    return this;
  }

  _closeSocket() {
    const ws = this.socket;
    if (!ws) return;
    this.socket = null;
    ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
    try {
      ws.close(1000);
    } catch (e) {
      /* already closed */
    }
  }

  _connectTimeout() {
    this._timer('connect', () => {
      if (this.readyState === OPEN || this.reconnecting()) return;
      this.emit('timeout');
      if (this.strategy.includes('timeout')) this._reconnect();
      else this.end();
    }, this.options.timeout);
  }

  _incomingOpen() {
    this._clear('connect');
    const wasReconnecting = this.reconnecting();
    const status = this.recovery.status;
    if (wasReconnecting) {
      this._clear('reconnect', 'reconnect timeout');
      status.duration = Date.now() - status.start;
      this.recovery.status = null;
      this.recovery.attempt = 0;
    }
    this.writable = this.readable = true;
    if (!this.online) {
      this.online = true;
      this.emit('online');
    }
    this._setState(OPEN, 'open');
    this.latency = Date.now() - this._started;
    this._heartbeat();
    const queued = this.buffer.splice(0);
    for (const data of queued) this._write(data);
    if (wasReconnecting) this.emit('reconnected', status);
    this.emit('open');
  }

  _incomingError(err) {
    if (this.reconnecting()) return this._attemptFailed(err);
    if (this.listeners('error').length) this.emit('error', err);
    if (this._active('connect')) {
      this._clear('connect');
      if (this.strategy.includes('timeout')) this._reconnect();
      else this.end();
    }
  }

  _incomingData(raw) {
    let data;
    try {
      data = JSON.parse(raw);
    } catch (e) {
      if (this.listeners('error').length) this.emit('error', e);
      return;
    }
    if (typeof data === 'string' && data.startsWith('primus::') && this._protocol(data)) return;
    const packet = { data };
    for (const fn of this.transformers.incoming) if (fn.call(this, packet) === false) return;
    this.emit('data', packet.data, raw);
  }

  _protocol(msg) {
    const last = msg.indexOf(':', 8);
    const kind = msg.slice(8, last);
    const value = msg.slice(last + 2);
    if (kind === 'pong') {
      this.online = true;
      this._clear('pong');
      this._heartbeat();
      this.latency = Date.now() - Number(value);
      this.emit('incoming::pong', Number(value));
    } else if (kind === 'ping') {
      // newer Primus servers ping; answer so either generation keeps us alive
      this._write('primus::pong::' + value);
      this.emit('incoming::ping', Number(value));
    } else if (kind === 'server') {
      if (value === 'close') this.disconnect = true;
    } else if (kind === 'id') {
      this.emit('incoming::id', value);
    } else {
      return false;
    }
    return true;
  }

  _incomingEnd() {
    const was = this.readyState;
    if (this.disconnect) {
      this.disconnect = false;
      return this.end();
    }
    this._setState(CLOSED, 'end');
    if (this._active('connect')) {
      // the first connection failed before it opened
      this._clear('connect');
      if (this.strategy.includes('timeout')) return this._reconnect();
      return this.end();
    }
    if (was !== OPEN) {
      if (this.reconnecting()) this._attemptFailed(new Error('connection closed before it opened'));
      return;
    }
    this.writable = this.readable = false;
    this._clear('ping', 'pong');
    this.emit('close');
    if (this.strategy.includes('disconnect')) return this._reconnect();
    this.emit('end');
  }

  // --- heartbeat: we ping, the server pongs ---
  _heartbeat() {
    if (!this.options.ping) return;
    this._timer('ping', () => {
      const value = Date.now();
      this._write('primus::ping::' + value);
      this.emit('outgoing::ping', value);
      this._timer('pong', () => {
        if (!this.online) return;
        this.online = false;
        this.emit('offline');
        this._closeSocket();
        this._incomingEnd();
      }, this.options.pong);
    }, this.options.ping);
  }

  // --- recovery ---
  _reconnect() {
    const rec = this.recovery;
    if (rec.status && this._active('reconnect')) return; // an attempt is already scheduled
    rec.attempt++;
    if (rec.attempt > rec.retries) {
      const status = rec.status || { attempt: rec.attempt };
      rec.status = null;
      rec.attempt = 0;
      this.emit('reconnect failed', new Error('Unable to recover'), status);
      this.emit('end');
      return;
    }
    const delay =
      rec.attempt === 1
        ? rec.min
        : Math.min(Math.round((Math.random() + 1) * rec.min * Math.pow(rec.factor, rec.attempt - 1)), rec.max);
    const start = rec.status ? rec.status.start : Date.now();
    rec.status = {
      start,
      duration: Date.now() - start,
      attempt: rec.attempt,
      retries: rec.retries,
      max: rec.max,
      min: rec.min,
      factor: rec.factor,
      timeout: rec.timeout,
      scheduled: delay,
    };
    this.emit('reconnect scheduled', rec.status);
    this._timer('reconnect', () => {
      this.emit('reconnect', rec.status);
      this._timer('reconnect timeout', () => {
        this.emit('reconnect timeout', new Error('Failed to reconnect in a timely manner'), rec.status);
        this._closeSocket();
        this._attemptFailed();
      }, rec.timeout);
      this.open();
    }, delay);
  }

  _attemptFailed() {
    this._clear('reconnect timeout');
    this._setState(CLOSED, 'end');
    this._reconnect();
  }

  _offline() {
    if (!this.online) return;
    this.online = false;
    this.emit('offline');
    const reconnecting = this.reconnecting();
    this.end();
    this.recovery.status = null;
    this.recovery.attempt = 0;
    if (reconnecting) this._clear('reconnect', 'reconnect timeout');
  }

  _backOnline() {
    if (this.online) return;
    this.online = true;
    this.emit('online');
    if (this.strategy.includes('online')) this._reconnect();
  }

  // --- writing ---
  write(data) {
    const packet = { data };
    for (const fn of this.transformers.outgoing) if (fn.call(this, packet) === false) return true;
    this._write(packet.data);
    return true;
  }

  _write(data) {
    if (this.readyState !== OPEN || !this.socket) {
      if (this.buffer.length === this.options.queueSize) this.buffer.shift();
      this.buffer.push(data);
      return false;
    }
    let text = JSON.stringify(data);
    if (text.includes('\u2028')) text = text.replace(/\u2028/g, '\\u2028');
    if (text.includes('\u2029')) text = text.replace(/\u2029/g, '\\u2029');
    this.socket.send(text);
    this.emit('outgoing::data', text);
    return true;
  }

  /** Message transformers, as Primus has them (`fn(packet)` returning false swallows it). */
  transform(type, fn) {
    if (this.transformers[type]) this.transformers[type].push(fn);
    return this;
  }

  id(fn) {
    this._write('primus::id::');
    return this.once('incoming::id', fn);
  }

  end(data) {
    if (this.readyState === CLOSED && !this._active('connect') && !this._active('open')) {
      if (this.reconnecting()) {
        this._clear();
        this.recovery.status = null;
        this.recovery.attempt = 0;
        this.emit('end');
      }
      return this;
    }
    if (data !== undefined) this.write(data);
    this.writable = this.readable = false;
    this._setState(CLOSED, 'end');
    this._clear();
    this.recovery.status = null;
    this.recovery.attempt = 0;
    this._closeSocket();
    this.emit('close');
    this.emit('end');
    return this;
  }

  destroy() {
    this.end();
    this.emit('destroy');
    this.removeAllListeners();
    if (typeof window !== 'undefined' && window.removeEventListener) {
      window.removeEventListener('offline', this._onOffline);
      window.removeEventListener('online', this._onOnline);
    }
    this.buffer = [];
    return true;
  }
}

Primus.CLOSED = CLOSED;
Primus.OPENING = OPENING;
Primus.OPEN = OPEN;
Primus.version = '6.0.1';
