// /browser_client: `window.HappnClient`, happn-rs' own browser client for happn 2.x pages.
// The API, option names, defaults, field names, events and callback shapes are the ones pages
// written for the happn 2.21 browser client use (the contract is in the project's spec,
// browser-client.md); this file is written from that contract, not from the original's code.
// Two additions: every method returns a Promise when it is given no callback, and after the
// socket comes back the client logs in again, re-subscribes, sends the requests made while it
// was away, and fires `reconnect-successful`.
/* global Primus */

export {}; // an ES module: `module` below is the page's global (NW.js), not a bundler's shim

const PROTOCOL = '1.1.0';
const AUTH_ACTIONS = ['login', 'describe', 'request-nonce'];
const browser = typeof window !== 'undefined' && typeof document !== 'undefined';

let crypto = null; // the happn Crypto instance, loaded on first need (digest login, encryptPayloads)

/**
 * Wraps `fn(...args, callback)`: called with a callback (its last argument is a function), it
 * behaves as the original; without one it returns a Promise of the callback's result.
 * `callbacks` is how many trailing function arguments the method takes besides its callback
 * (1 for `on`/`onAll`, whose handler is a function too).
 */
function promising(fn, handlers = 0) {
  return function (...args) {
    let fns = 0;
    for (let i = args.length - 1; i >= 0 && typeof args[i] === 'function'; i--) fns++;
    if (fns > handlers) return fn.apply(this, args);
    return new Promise((resolve, reject) => {
      args.push((e, result) => (e ? reject(e) : resolve(result)));
      fn.apply(this, args);
    });
  };
}

function makeError(error) {
  const e = new Error();
  if (error && typeof error === 'object') {
    e.name = error.name || error.message || String(error);
    for (const key of Object.keys(error)) if (!e[key]) e[key] = error[key];
  } else {
    e.name = String(error);
    e.message = String(error);
  }
  return e;
}

function consoleLogger() {
  const out = (method) => (msg, obj) =>
    obj !== undefined ? console[method]('HappnClient', msg, obj) : console[method]('HappnClient', msg);
  const none = () => {};
  return { $$TRACE: none, $$DEBUG: none, trace: none, debug: none, info: out('info'), warn: out('warn'), error: out('error'), fatal: out('error') };
}

function escapeRegex(text) {
  return text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

function once(fn) {
  let called = false;
  return (...args) => {
    if (called) return;
    called = true;
    fn(...args);
  };
}

export default function HappnClient() {
  this.initialized = false;
  this.events = {};
  this.messageEvents = {};
  this.requestEvents = {};
  this.currentEventId = 0;
  this.currentListenerId = 0;
  this.errors = [];
  this.clientType = 'socket';
  this.eventHandlers = {};
  this.__systemMessageHandlers = [];
  this.__queued = []; // requests made while the socket was away, sent after the next login
  this.__awaitingLogin = false;
  this.__loginGeneration = 0;
}

// (an alias: minified, `X.prototype.` before each of the ~60 methods would cost a kilobyte)
const proto = HappnClient.prototype;

proto.utils = {
  /** The original's substring match (`*` = any run of characters), used by `offPath`. */
  wildcardMatch(pattern, matchTo) {
    return new RegExp(escapeRegex(pattern).replace(/\*/g, '.*')).test(matchTo);
  },
  clone(obj) {
    return JSON.parse(JSON.stringify(obj));
  },
};

HappnClient.__instance = function (options) {
  return new HappnClient().client(options);
};

HappnClient.create = promising(function (options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  options = options || {};
  const client = new HappnClient().client(options);
  if (options.testMode) HappnClient.lastClient = client;
  client.initialize((err, created) => {
    if (!err) return callback(null, created);
    client.disconnect(() => callback(err));
  });
});

proto.__prepareOptions = function (options) {
  const config = options.config || (options.config = {});
  if (options.username) config.username = options.username;
  if (options.password) config.password = options.password;
  if (options.publicKey) config.publicKey = options.publicKey;
  if (options.privateKey) config.privateKey = options.privateKey;
  for (const pair of [options.keyPair, config.keyPair]) {
    if (pair && pair.publicKey) config.publicKey = pair.publicKey;
    if (pair && pair.privateKey) config.privateKey = pair.privateKey;
  }
  if (!config.host) config.host = '127.0.0.1';
  if (!config.port) config.port = 55000;
  if (!config.pubsub) config.pubsub = {};
  if (!config.pubsub.options) config.pubsub.options = {};
  if (!config.pubsub.options.reconnect) config.pubsub.options.reconnect = {};
  if (options.reconnect) config.pubsub.options.reconnect = options.reconnect;
  const reconnect = config.pubsub.options.reconnect;
  if (!reconnect.retries) reconnect.retries = Infinity;
  if (!reconnect.max) reconnect.max = 180000;
  if (!options.info) options.info = {};
  options.info._browser = browser;
};

proto.client = function (options) {
  options = options || {};
  if (options.Logger && options.Logger.createLogger) this.log = options.Logger.createLogger('HappnClient');
  else this.log = consoleLogger();
  this.__prepareOptions(options);
  if (options.context) this.context = options.context;
  if (options.plugin) {
    for (const name of Object.keys(options.plugin)) {
      const value = options.plugin[name];
      this[name] = typeof value === 'function' && value.bind ? value.bind(this) : value;
    }
  }
  const config = options.config;
  if (!config.url) {
    config.protocol = config.protocol || 'http';
    const port = parseInt(config.port, 10);
    const defaultPort = (config.protocol === 'http' && port === 80) || (config.protocol === 'https' && port === 443);
    config.url = config.protocol + '://' + config.host + (defaultPort ? '' : ':' + config.port);
  }
  this.options = options;
  return this;
};

/** Loads a script from the server into the page (Primus, the crypto library). */
proto.getScript = function (url, callback) {
  if (!browser) return callback(new Error('only for browser'));
  const script = document.createElement('script');
  const parent = document.head || document.getElementsByTagName('head')[0] || document.documentElement;
  const done = once((e) => {
    script.onload = script.onerror = null;
    if (script.parentNode) script.parentNode.removeChild(script);
    callback(e);
  });
  script.onload = () => done();
  script.onerror = () => done(new Error('failed to load ' + url));
  script.src = url;
  parent.appendChild(script);
};

proto.getResources = function (callback) {
  if (typeof Primus === 'undefined') return this.getScript(this.options.config.url + '/browser_primus.js', callback);
  callback();
};

proto.initialize = promising(function (callback) {
  const start = () =>
    this.authenticate((e) => {
      if (e) return callback(e);
      this.initialized = true;
      callback(null, this);
    });
  if (!browser) return start();
  this.getResources((e) => (e ? callback(e) : start()));
});

proto.stop = promising(function (callback) {
  this.pubsub.once('end', () => callback());
  this.pubsub.end();
});

// --- crypto ---

proto.__ensureCryptoLibrary = promising(function (callback) {
  if (crypto) return callback();
  const adopt = () => {
    try {
      const candidate = new window.Crypto();
      if (typeof candidate.createKeyPair === 'function') {
        crypto = candidate;
        return true;
      }
    } catch (e) {
      // the DOM's own Crypto interface: not constructible
    }
    return false;
  };
  if (!browser) return callback(new Error('the crypto library is only loaded in a browser'));
  if (adopt()) return callback();
  this.getScript(this.options.config.url + '/browser_crypto.js', (e) => {
    if (e) return callback(e);
    if (!adopt()) return callback(new Error('browser_crypto.js did not define window.Crypto'));
    callback();
  });
});

proto.__encryptLogin = function (parameters, publicKey) {
  return {
    encrypted: crypto.asymmetricEncrypt(publicKey, this.options.config.privateKey, JSON.stringify(parameters)),
    publicKey: parameters.publicKey,
    loginType: parameters.loginType != null ? parameters.loginType : 'password',
  };
};

proto.__decryptLogin = function (loginResult) {
  return JSON.parse(crypto.asymmetricDecrypt(loginResult.publicKey, this.options.config.privateKey, loginResult.encrypted).toString());
};

proto.__encryptPayload = function (message) {
  return { sessionId: message.sessionId, encrypted: crypto.symmetricEncryptObject(message, this.session.secret) };
};

proto.__decryptPayload = function (encrypted) {
  return crypto.symmetricDecryptObject(encrypted, this.session.secret);
};

proto.__signNonce = function (nonce) {
  return crypto.sign(nonce, this.options.config.privateKey);
};

// --- login ---

proto.__attachSession = function (result) {
  delete result._meta;
  this.session = result;
  if (browser) {
    let cookie = (result.cookieName || 'happn_token') + '=' + result.token + '; path=/;';
    if (result.cookieDomain) cookie += ' domain=' + result.cookieDomain + ';';
    document.cookie = cookie;
  }
};

proto.__doLogin = function (loginParameters, callback) {
  this.performRequest(null, 'login', loginParameters, null, (e, result) => {
    if (e) return callback(e);
    if (result && result._meta && result._meta.status === 'ok') {
      this.__attachSession(result);
      return callback();
    }
    callback(makeError((result && result._meta && result._meta.error) || 'login failed'));
  });
};

proto.__prepareLogin = function (loginParameters, callback) {
  const prepared = (parameters) => {
    if (this.serverInfo.encryptPayloads && this.clientType === 'socket') {
      try {
        parameters = this.__encryptLogin(parameters, this.serverInfo.publicKey);
      } catch (e) {
        return callback(e);
      }
    }
    callback(null, parameters);
  };
  if (loginParameters.loginType !== 'digest') return prepared(loginParameters);
  this.performRequest(null, 'request-nonce', { publicKey: loginParameters.publicKey }, null, (e, response) => {
    if (e) return callback(e);
    try {
      loginParameters.digest = this.__signNonce(response.nonce);
    } catch (err) {
      return callback(err);
    }
    prepared(loginParameters);
  });
};

proto.login = promising(function (callback) {
  const config = this.options.config;
  const loginParameters = { username: config.username, info: this.options.info };
  if (config.password) loginParameters.password = config.password;
  if (config.publicKey) loginParameters.publicKey = config.publicKey;
  if (config.token) loginParameters.token = config.token;
  if (loginParameters.publicKey && !loginParameters.password) loginParameters.loginType = 'digest';

  this.performRequest(null, 'describe', null, null, (e, serverInfo) => {
    if (e) return callback(e);
    this.serverInfo = serverInfo;
    if (!serverInfo.encryptPayloads && loginParameters.loginType !== 'digest') return this.__doLogin(loginParameters, callback);
    this.__ensureCryptoLibrary((e) => {
      if (e) return callback(e);
      if (!config.privateKey || !config.publicKey) {
        if (loginParameters.loginType === 'digest') return callback(new Error('login type is digest, but no privateKey and publicKey specified'));
        const keyPair = crypto.createKeyPair();
        config.publicKey = keyPair.publicKey;
        config.privateKey = keyPair.privateKey;
      }
      loginParameters.publicKey = config.publicKey;
      this.__prepareLogin(loginParameters, (e, prepared) => {
        if (e) return callback(e);
        this.__doLogin(prepared, callback);
      });
    });
  });
});

// --- connection ---

proto.__getConnection = function () {
  return Primus.connect(this.options.config.url, this.options.config.pubsub.options);
};

proto.authenticate = promising(function (callback) {
  if (this.pubsub) return this.login(callback);
  callback = once(callback);
  this.__connecting = true;
  const connectTimeout = setTimeout(() => callback(new Error('Timed out waiting for connection')), this.options.connectTimeout || 10000);
  const pubsub = (this.pubsub = this.__getConnection());
  const opened = () => {
    clearTimeout(connectTimeout);
    this.__connecting = false;
    pubsub.removeListener('open', opened);
    this.login(callback);
  };
  pubsub.on('open', opened);
  pubsub.on('error', (e) => {
    if (this.__connecting) {
      this.__connecting = false;
      clearTimeout(connectTimeout);
      return callback(e);
    }
    this.handle_error(e);
  });
  pubsub.on('data', this.handle_publication.bind(this));
  pubsub.on('reconnected', this.reconnect.bind(this));
  pubsub.on('end', this.handle_end.bind(this));
  pubsub.on('close', () => {
    // the socket is gone: later requests wait for the next login instead of failing on it
    if (this.initialized) this.__awaitingLogin = true;
  });
  pubsub.on('reconnect timeout', this.handle_reconnect_timeout.bind(this));
  pubsub.on('reconnect scheduled', this.handle_reconnect_scheduled.bind(this));
});

// --- client events ---

proto.onEvent = function (eventName, eventHandler) {
  if (!eventName) throw new Error('event name cannot be blank or null');
  if (typeof eventHandler !== 'function') throw new Error('event handler must be a function');
  const handlers = this.eventHandlers[eventName] || (this.eventHandlers[eventName] = []);
  handlers.push(eventHandler);
  return eventName + '|' + (handlers.length - 1);
};

proto.offEvent = function (handlerId) {
  const [eventName, index] = String(handlerId).split('|');
  if (this.eventHandlers[eventName]) this.eventHandlers[eventName][parseInt(index, 10)] = null;
};

/** Handlers get the event's data as `this` and no arguments, as in the original. */
proto.emit = function (eventName, eventData) {
  for (const handler of (this.eventHandlers[eventName] || []).slice()) if (handler) handler.call(eventData);
};

proto.handle_end = function () {
  this.emit('connection-ended');
};

proto.handle_reconnect_timeout = function (err, opts) {
  this.emit('reconnect-timeout', { err, opts });
};

proto.handle_reconnect_scheduled = function (opts) {
  if (this.initialized) this.__awaitingLogin = true;
  this.emit('reconnect-scheduled', opts);
};

/** The socket is back: log in again, re-subscribe, send what waited, tell the page. */
proto.reconnect = function (options) {
  if (!this.initialized) return;
  this.__awaitingLogin = true;
  const generation = ++this.__loginGeneration;
  this.emit('reconnect', options);
  this.login((e) => {
    if (generation !== this.__loginGeneration || !this.initialized) return;
    if (e) {
      if (e.message && e.message.indexOf('api request timed out action') === 0) return this.reconnect(options);
      this.__flushQueued(e);
      return this.handle_error(e, 3);
    }
    for (const channel of Object.keys(this.events)) {
      const listeners = this.events[channel];
      if (!listeners.length) {
        delete this.events[channel];
        continue;
      }
      this.__send(channel, 'on', null, { refCount: listeners.length }, (e) => {
        if (e) this.handle_error(e, 3);
      });
    }
    this.__flushQueued(null);
    this.emit('reconnect-successful', options);
  });
};

proto.__flushQueued = function (error) {
  this.__awaitingLogin = false;
  const queued = this.__queued.splice(0);
  for (const item of queued) {
    const handler = this.requestEvents[item.eventId];
    if (!handler && item.callback) continue; // it timed out while it waited
    if (error) {
      if (handler) handler.handleResponse(error);
      continue;
    }
    this.__write(item);
  }
};

proto.handle_error = function (err, severity) {
  if (this.errors.length >= 100) this.errors.shift();
  this.errors.push(err);
  this.log.error('unhandled error', err);
};

// --- requests ---

proto.getEventId = function () {
  return (this.currentEventId += 1);
};

proto.performRequest = function (path, action, data, options, callback) {
  if (!this.initialized && AUTH_ACTIONS.indexOf(action) === -1) {
    if (callback) callback(new Error('client not initialized yet.'));
    return;
  }
  this.__send(path, action, data, options, callback, this.__awaitingLogin && AUTH_ACTIONS.indexOf(action) === -1);
};

/** Sends (or, while the socket is away, queues) one request; `callback(e, response)` once. */
proto.__send = function (path, action, data, options, callback, queue) {
  const eventId = this.getEventId();
  if (options) options = Object.assign({}, options, { timeout: options.timeout || 20000 });
  const item = { eventId, path, action, data, options, callback };
  if (callback) {
    const timeoutMs = (options && options.timeout) || 20000;
    const handler = {
      eventId,
      handleResponse: (e, response) => {
        clearTimeout(handler.timedout);
        delete this.requestEvents[eventId];
        callback(e, response);
      },
    };
    handler.timedout = setTimeout(() => {
      delete this.requestEvents[eventId];
      let message = 'api request timed out';
      if (path) message += ' path: ' + path;
      if (action) message += ' action: ' + action;
      callback(new Error(message));
    }, timeoutMs);
    this.requestEvents[eventId] = handler;
  }
  if (queue) this.__queued.push(item);
  else this.__write(item);
};

proto.__write = function (item) {
  let message = { action: item.action, eventId: item.eventId };
  if (item.path) message.path = item.path;
  if (item.data != null) message.data = item.data;
  if (this.session) message.sessionId = this.session.id;
  if (item.options) message.options = item.options;
  message.protocol = PROTOCOL;
  if (AUTH_ACTIONS.indexOf(item.action) === -1 && this.serverInfo && this.serverInfo.encryptPayloads) {
    message = this.__encryptPayload(message);
  }
  if (this.pubsub) this.pubsub.write(message);
};

proto.checkPath = function (path) {
  if (typeof path !== 'string' || !/^[a-zA-Z0-9@.//_*/\-\s]+$/.test(path)) {
    throw 'Bad path, can only contain alphanumeric characters, forward slashes, underscores @ and minus signs, and the * wildcard character ie: /this/is/an/example/of/1/with/an/_*-12hello';
  }
};

proto.getChannel = function (path, action) {
  this.checkPath(path);
  return '/' + action.toUpperCase() + '@' + path;
};

proto.get = promising(function (path, parameters, handler) {
  if (typeof parameters === 'function') {
    handler = parameters;
    parameters = {};
  }
  this.performRequest(path, 'get', null, parameters || {}, handler);
});

proto.getPaths = promising(function (path, handler) {
  this.get(path, { options: { path_only: true } }, handler);
});

proto.set = promising(function (path, data, parameters, handler) {
  if (typeof parameters === 'function') {
    handler = parameters;
    parameters = {};
  }
  this.performRequest(path, 'set', data, parameters || {}, handler);
});

proto.setSibling = promising(function (path, data, handler) {
  this.set(path, data, { set_type: 'sibling' }, handler);
});

proto.remove = promising(function (path, parameters, handler) {
  if (typeof parameters === 'function') {
    handler = parameters;
    parameters = {};
  }
  this.performRequest(path, 'remove', null, parameters || {}, handler);
});

// --- incoming ---

proto.handle_publication = function (message) {
  try {
    if (message && message.encrypted && message._meta && message._meta.type === 'login') message = this.__decryptLogin(message);
    if (message && message.encrypted) message = this.__decryptPayload(message.encrypted);
  } catch (e) {
    return this.handle_error(e);
  }
  if (!message || typeof message !== 'object') return;
  if (message._meta && message._meta.type === 'system') return this.__handleSystemMessage(message);
  if (message._meta && message._meta.type === 'data') return this.handle_data(message._meta.channel, message);
  if (Array.isArray(message)) {
    const meta = message.pop();
    return this.handle_response_array(null, message, meta);
  }
  if (!message._meta) return;
  if (message._meta.status === 'error') return this.handle_response(makeError(message._meta.error), message);
  if (message.data === null) {
    message._meta.nullData = true;
    message.data = {};
  }
  const decoded = message.data;
  decoded._meta = message._meta;
  this.handle_response(null, decoded);
};

proto.handle_response_array = function (e, response, meta) {
  const handler = meta && this.requestEvents[meta.eventId];
  if (handler) handler.handleResponse(e, response);
};

proto.handle_response = function (e, response) {
  const handler = this.requestEvents[response._meta.eventId];
  if (!handler) return;
  if (response._meta.nullData) return handler.handleResponse(e, null);
  handler.handleResponse(e, response);
};

proto.delegate_handover = function (message, delegate) {
  delegate.runcount++;
  if (delegate.count > 0 && delegate.count === delegate.runcount) {
    return this._offListener(delegate.id, (e) => {
      if (e) return this.handle_error(e);
      delegate.handler.call(this, message.data, message._meta);
    });
  }
  delegate.handler.call(this, message.data, message._meta);
};

proto.handle_data = function (channel, message) {
  const listeners = this.events[channel];
  if (!listeners || !listeners.length) return;
  if (listeners.length === 1) return this.delegate_handover(message, listeners[0]);
  const serialized = JSON.stringify(message);
  for (const delegate of listeners.slice()) this.delegate_handover(JSON.parse(serialized), delegate);
};

proto.__handleSystemMessage = function (message) {
  this.__systemMessageHandlers.every((handler) => handler.apply(handler, [message.eventKey, message.data]));
};

proto.onSystemMessage = function (handler) {
  this.__systemMessageHandlers.push(handler);
  return this.__systemMessageHandlers.length - 1;
};

proto.offSystemMessage = function (index) {
  this.__systemMessageHandlers.splice(index, 1);
};

// --- subscriptions ---

proto._remoteOn = function (path, parameters, callback) {
  this.performRequest(path, 'on', null, parameters, callback);
};

proto.on = promising(function (path, parameters, handler, callback) {
  if (typeof parameters === 'function') {
    callback = handler;
    handler = parameters;
    parameters = {};
  }
  parameters = Object.assign({}, parameters || {});
  if (!parameters.event_type) parameters.event_type = 'all';
  if (!parameters.count) parameters.count = 0;
  const channel = this.getChannel(path, parameters.event_type);
  parameters.refCount = this.currentListenerId++;
  const listeners = this.events[channel] || (this.events[channel] = []);
  const listener = { handler, count: parameters.count, id: parameters.refCount, runcount: 0 };
  listeners.push(listener);
  this._remoteOn(channel, parameters, (e, response) => {
    if (e) {
      const current = this.events[channel];
      if (current) {
        const at = current.indexOf(listener);
        if (at >= 0) current.splice(at, 1);
        if (!current.length) delete this.events[channel];
      }
      return callback(e);
    }
    callback(null, parameters.refCount, response);
  });
}, 1);

proto.onAll = promising(function (handler, callback) {
  this.on('*', null, handler, callback);
}, 1);

proto._remoteOff = function (channel, refCount, callback) {
  this.performRequest(channel, 'off', null, { refCount }, (e) => callback(e || undefined));
};

proto._offListener = function (listenerId, callback) {
  for (const channel of Object.keys(this.events)) {
    const listeners = this.events[channel];
    const listener = listeners.find((l) => l.id === listenerId);
    if (!listener) continue;
    return this._remoteOff(channel, 1, (e) => {
      if (e) return callback(e);
      const at = listeners.indexOf(listener);
      if (at >= 0) listeners.splice(at, 1);
      if (!listeners.length && this.events[channel] === listeners) delete this.events[channel];
      callback();
    });
  }
  callback();
};

proto._offPath = function (path, callback) {
  const channels = Object.keys(this.events).filter((channel) =>
    this.utils.wildcardMatch(path, channel.split('@').slice(1).join('@'))
  );
  const next = (i) => {
    if (i >= channels.length) return callback();
    const channel = channels[i];
    if (!this.events[channel]) return next(i + 1);
    this._remoteOff(channel, this.events[channel].length, (e) => {
      if (e) return callback(e);
      delete this.events[channel];
      next(i + 1);
    });
  };
  next(0);
};

proto.offAll = promising(function (callback) {
  this._remoteOff('*', 0, (e) => {
    if (e) return callback(e);
    this.events = {};
    callback();
  });
});

proto.off = promising(function (handle, callback) {
  if (handle === null || handle === undefined) return callback(new Error('handle or callback cannot be null'));
  if (typeof handle === 'function') return this._offPath('*', handle);
  if (typeof handle === 'number') return this._offListener(handle, callback);
  console.warn('.off with a path is deprecated, please use the offPath method for a path based unsubscribe');
  this._offPath(handle, callback);
});

proto.offPath = promising(function (path, callback) {
  if (typeof path === 'function') {
    callback = path;
    path = '*';
  }
  this._offPath(path === undefined ? '*' : path, callback);
});

// --- leaving ---

proto.__revokeSession = function (callback) {
  this.performRequest(null, 'revoke-session', null, null, callback);
};

proto.disconnect = promising(function (opts, callback) {
  if (typeof opts === 'function') {
    callback = opts;
    opts = null;
  }
  const away = this.__awaitingLogin;
  this.__flushQueued(new Error('client disconnected'));
  // not logged in (never, or not again since the socket dropped): nothing to unsubscribe
  if (!this.initialized || away) return setTimeout(() => this.__destroyPubSub(callback), 0);
  this.offAll((e) => {
    if (e) console.warn('failed ending subscriptions on disconnect', e);
    if (!(opts && opts.revokeSession)) return this.__destroyPubSub(callback);
    this.__revokeSession((e) => {
      if (e) return callback(new Error('error revoking session: ' + e.toString()));
      this.__destroyPubSub(callback);
    });
  });
});

proto.__destroyPubSub = function (callback) {
  const pubsub = this.pubsub;
  if (!pubsub) return callback && callback();
  pubsub.removeAllListeners('destroy');
  pubsub.on('destroy', () => {
    this.session = null;
    this.initialized = false;
    delete this.pubsub;
    if (callback) callback();
  });
  pubsub.destroy();
};

if (browser) window.HappnClient = HappnClient;
// eslint-disable-next-line no-undef
if (typeof module !== 'undefined' && module) module.exports = HappnClient;
