// The small EventEmitter the Primus client exposes (on/once/off/emit and friends, as in
// eventemitter3), so pages that listen on the socket keep working.

export default class Emitter {
  constructor() {
    this._events = Object.create(null);
  }

  on(name, fn, context) {
    (this._events[name] || (this._events[name] = [])).push({ fn, context, once: false });
    return this;
  }

  once(name, fn, context) {
    (this._events[name] || (this._events[name] = [])).push({ fn, context, once: true });
    return this;
  }

  removeListener(name, fn) {
    const list = this._events[name];
    if (!list) return this;
    if (!fn) {
      delete this._events[name];
      return this;
    }
    const kept = list.filter((l) => l.fn !== fn);
    if (kept.length) this._events[name] = kept;
    else delete this._events[name];
    return this;
  }

  removeAllListeners(name) {
    if (name === undefined) this._events = Object.create(null);
    else delete this._events[name];
    return this;
  }

  listeners(name) {
    return (this._events[name] || []).map((l) => l.fn);
  }

  emit(name, ...args) {
    const list = this._events[name];
    if (!list) return false;
    for (const l of list.slice()) {
      if (l.once) this.removeListener(name, l.fn);
      l.fn.apply(l.context === undefined ? this : l.context, args);
    }
    return true;
  }
}

Emitter.prototype.addListener = Emitter.prototype.on;
Emitter.prototype.off = Emitter.prototype.removeListener;
