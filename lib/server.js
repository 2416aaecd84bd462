'use strict';

const EventEmitter = require('node:events');
// Node's globals `Buffer` and `process` are accessors; module bindings are plain loads on hot paths.
const { Buffer } = require('node:buffer');
const process = require('node:process');
const dns = require('node:dns');
const net = require('node:net');
const os = require('node:os');
const { NativeServer } = require('./native');
const { WebSocketConnection } = require('./connection');
const { runHandlers } = require('./dispatch');
const { Router } = require('./router');
const { WS_STATES } = require('./constants');
const { typeError, rangeError, isValidCloseCode, normalizeRoutePath } = require('./validation');
const { show } = require('./options');

const { OPEN, CLOSED } = WS_STATES;
const { emit } = EventEmitter.prototype;

// Record kinds and flags of the event arena (src/event.rs).
const EV_OPEN = 0;
const EV_TEXT = 1;
const EV_BINARY = 2;
const EV_PING = 3;
const EV_PONG = 4;
const EV_CLOSE = 5;
const EV_DRAIN = 6;
const EV_VERIFY = 7;
const EV_IDLE = 8;
const FLAG_BESIDE = 1;
const FLAG_ASCII = 2;
// The engine copies a batch of event records into this buffer, which JS reads in place. It
// must hold the largest record (a 64 KiB payload and its header).
const ARENA_BYTES = 256 * 1024;
// `ws._held` while a connection's handlers have not run and nothing arrived for it yet.
const HOLDING = Object.freeze([]);

/**
 * A WebSocket server: behaves like Node's `http.Server` for listening and closing, while the
 * engine accepts connections, runs handshakes and does all socket I/O off the JS thread.
 * Events: `listening`, `error`, `close`.
 */
class Server extends EventEmitter {
  /**
   * @param {Router} router
   * @param {{ key?: string | Buffer, cert?: string | Buffer }} [options] PEM private key and
   *   certificate chain: with both, the server speaks wss:// (TLS), like https.createServer.
   */
  constructor(router, options) {
    super();
    if (!(router instanceof Router)) throw typeError('router', 'an instance of Router', router);
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw typeError('options', 'an object', options);
    }
    const tls = tlsOptions(options);
    this._router = router;
    this._onEventsBound = () => this._onEvents();
    this._native = new NativeServer(this._onEventsBound);
    // The per-message sends, the admission of each connection and the two calls of every
    // event batch, as plain functions (cheaper to call than methods).
    const fast = this._native.fastPath();
    this._sendText = fast.sendText;
    this._sendBinary = fast.sendBinary;
    this._admit = fast.admit;
    this._drain = fast.drain;
    this._uncork = fast.uncork;
    this._arena = Buffer.allocUnsafeSlow(ARENA_BYTES);
    this._arenaU32 = new Uint32Array(this._arena.buffer, 0, ARENA_BYTES >> 2);
    this._arenaF64 = new Float64Array(this._arena.buffer, 0, ARENA_BYTES >> 3);
    // A plain byte view: a payload is copied out of a subarray of it (cheaper than Buffer#copy).
    this._arenaU8 = new Uint8Array(this._arena.buffer, 0, ARENA_BYTES);
    if (tls !== null) {
      try {
        this._native.setTls(tls.key, tls.cert);
      } catch (err) {
        const e = new Error(err.message);
        e.code = err.code;
        throw e;
      }
    }
    /** True when the server speaks wss://. */
    this.secure = tls !== null;
    this._routesById = [];
    // The ASCII bytes of each route's pattern (null if not ASCII), by route id: see readRequest.
    this._patternBytes = [];
    this._routeIds = new Map();
    this._conns = new Map();
    this._byUuid = new Map();
    this._address = null;
    this._listening = false;
    this._binding = false;
    this._closing = false;
    this._refed = true;
    this._alive = false;
    this._loggedErrors = new WeakSet();
    this._shutdown = null;
    router._attach(this);
    this._applyOptions();
  }

  _applyOptions() {
    const o = this._router._wsOptions;
    this._native.configure(o.maxPayloadSize, o.heartbeatInterval, o.heartbeatTimeout);
    this._native.setNegotiateProtocols(typeof o.handleProtocols === 'function');
    this._native.setLimits(o.handshakeTimeout, o.maxBackpressure, o.closeOnBackpressureLimit);
    this._native.setVerify(typeof o.verifyClient === 'function');
    this._native.setAllowedOrigins(o.allowedOrigins === null ? undefined : o.allowedOrigins);
    const rate = o.rateLimit;
    this._native.setAdmission(o.maxConnections, rate === null ? 0 : rate.messages, rate === null ? 1000 : rate.interval);
  }

  get listening() {
    return this._listening;
  }

  /**
   * `listen([port[, host[, backlog]]][, callback])` or `listen({ port, host, backlog }[, callback])`.
   * Port 0 (or none) picks a free port; no host listens on all interfaces (IPv6 and IPv4).
   */
  listen(...args) {
    const { port, host, backlog, callback } = normalizeListenArgs(args);
    if (this._listening || this._binding) {
      const err = new Error('Listen method has been called more than once without closing.');
      err.code = 'ERR_SERVER_ALREADY_LISTEN';
      throw err;
    }
    if (callback) this.once('listening', callback);
    this._binding = true;
    this._closing = false;
    if (host === undefined) {
      this._bind('::', port, backlog, true);
    } else if (net.isIP(host)) {
      this._bind(host, port, backlog, false);
    } else {
      dns.lookup(host, (err, address) => {
        if (err) {
          this._binding = false;
          return this.emit('error', err);
        }
        this._bind(address, port, backlog, false);
      });
    }
    return this;
  }

  _bind(host, port, backlog, anyHost) {
    let bound;
    try {
      bound = this._native.listen(host, port, backlog);
    } catch (err) {
      if (anyHost && host === '::' && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL')) {
        return this._bind('0.0.0.0', port, backlog, false);
      }
      this._binding = false;
      const e = listenError(err, host, port);
      process.nextTick(() => this.emit('error', e));
      return;
    }
    this._binding = false;
    this._listening = true;
    this._address = { address: bound[0], family: bound[1], port: Number(bound[2]) };
    this._updateRef();
    process.nextTick(() => {
      if (this._listening) this.emit('listening');
    });
  }

  /** `{ address, family, port }` while listening, else null. */
  address() {
    return this._listening ? { ...this._address } : null;
  }

  /**
   * Stops accepting connections. `close` is emitted (and `callback` called) once every open
   * connection has ended; open connections are not closed (see `closeAll`).
   */
  close(callback) {
    if (typeof callback === 'function') {
      if (!this._listening) {
        this.once('close', () => {
          const err = new Error('Server is not running.');
          err.code = 'ERR_SERVER_NOT_RUNNING';
          callback(err);
        });
      } else {
        this.once('close', callback);
      }
    } else if (callback !== undefined) {
      throw typeError('callback', 'of type function', callback);
    }
    this._native.stopAccepting();
    this._listening = false;
    this._closing = true;
    this._updateRef();
    this._emitCloseIfDrained();
    return this;
  }

  /**
   * Stops the server cleanly: stops accepting, sends a close frame (`code`, default 1001, and
   * `reason`, default 'Server shutdown') to every peer after whatever is already queued for
   * it, waits for the close handshakes up to `timeout` ms (default 10000), then terminates
   * the peers that have not finished. Resolves once the server has emitted `close`. Suits a
   * SIGTERM handler: `process.on('SIGTERM', () => server.shutdown())`.
   * @param {{ timeout?: number, code?: number, reason?: string }} [options]
   * @returns {Promise<void>}
   */
  shutdown(options) {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw typeError('options', 'an object', options);
    }
    const { timeout = 10000, code = 1001, reason = 'Server shutdown' } = options || {};
    if (typeof timeout !== 'number') throw typeError('options.timeout', 'of type number', timeout);
    if (!(timeout >= 0) || !Number.isFinite(timeout)) throw rangeError('options.timeout', 'a finite number >= 0', timeout);
    if (typeof code !== 'number') throw typeError('options.code', 'of type number', code);
    if (!isValidCloseCode(code)) throw rangeError('options.code', 'a valid close code', code);
    if (typeof reason !== 'string') throw typeError('options.reason', 'of type string', reason);
    if (Buffer.byteLength(reason) > 123) throw rangeError('options.reason', 'at most 123 bytes long', reason);
    if (this._shutdown) return this._shutdown.promise;
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    const timer = setTimeout(() => {
      for (const ws of this._conns.values()) ws.terminate();
      // Handshakes still in progress (no request yet, or a verifyClient that has not settled)
      // have no close handshake to wait for: end them too.
      this._native.abortHandshakes();
    }, timeout);
    this._shutdown = { promise, code, reason };
    this.once('close', () => {
      clearTimeout(timer);
      this._shutdown = null;
      resolve();
    });
    if (this._listening) this.close();
    else this._closing = true;
    for (const ws of this._conns.values()) ws.close(code, reason);
    this._emitCloseIfDrained();
    return promise;
  }

  /** Lets the process exit while the server is listening (open connections still hold it). */
  unref() {
    this._refed = false;
    this._updateRef();
    return this;
  }

  ref() {
    this._refed = true;
    this._updateRef();
    return this;
  }

  _updateRef() {
    const alive = (this._listening && this._refed) || this._conns.size > 0;
    if (alive !== this._alive) {
      this._alive = alive;
      this._native.setRef(alive);
    }
  }

  /** Emits `close` once closing and idle: no connection, none being set up. */
  _emitCloseIfDrained() {
    if (this._closing && this._isIdle() && !this._closeQueued) {
      this._closeQueued = true;
      process.nextTick(() => {
        this._closeQueued = false;
        if (this._closing && this._isIdle()) {
          this._closing = false;
          this.emit('close');
        }
      });
    }
  }

  _isIdle() {
    return this._conns.size === 0 && this._native.pendingConnections() === 0;
  }

  _addRoute(entry) {
    const id = this._native.addRoute(entry.pattern);
    this._routesById[id] = entry;
    this._patternBytes[id] = asciiBytes(entry.pattern);
    this._routeIds.set(normalizeRoutePath(entry.pattern), id);
  }

  /** Appends the ws objects of engine ids to `out`. */
  _collect(ids, out) {
    for (const nid of ids) {
      const ws = this._conns.get(nid);
      if (ws !== undefined) out.push(ws);
    }
  }

  _registerUuid(ws) {
    if (ws.readyState !== CLOSED) this._byUuid.set(ws._id, ws);
  }

  /** Called by the engine when events are waiting: one batch per call. */
  _onEvents() {
    let batch;
    try {
      batch = this._drain(this._arena);
    } catch (err) {
      if (this._uncork()) setImmediate(this._onEventsBound);
      process.emitWarning(`velocy: could not read engine events: ${err.message}`);
      return;
    }
    const before = this._conns.size;
    let more = false;
    try {
      this._dispatch(batch);
    } finally {
      // Replies sent while handling the batch leave now, one write per connection.
      more = this._uncork();
    }
    // More arrived meanwhile: take it on the next turn of the event loop, after timers and
    // other I/O, so a flood on one server cannot starve the rest of the process.
    if (more) setImmediate(this._onEventsBound);
    if (this._conns.size !== before) {
      this._updateRef();
      this._emitCloseIfDrained();
    }
  }

  /**
   * Handles one drained batch: `filled` bytes of records in the arena, or `[filled, ...]`
   * followed by the values of the records whose data travels beside the arena, in order.
   */
  _dispatch(batch) {
    let filled = batch;
    let beside = null;
    let b = 1;
    if (typeof batch !== 'number') {
      filled = batch[0];
      beside = batch;
    }
    const arena = this._arena;
    const u32 = this._arenaU32;
    const f64 = this._arenaF64;
    const u8 = this._arenaU8;
    for (let at = 0; at < filled; ) {
      const word = u32[at >> 2];
      const len = u32[(at >> 2) + 1];
      // Ids in int32 range are kept as small integers: a double would be boxed, once in the
      // ws object and once as the key of the connection map.
      let nid = f64[(at >> 3) + 1];
      if (nid <= 0x7fffffff) nid |= 0;
      const start = at + 16;
      at = start + ((len + 7) & ~7);
      const kind = word & 0xff;
      const flags = (word >> 8) & 0xff;
      if (kind === EV_TEXT || kind === EV_BINARY) {
        let data;
        if (flags & FLAG_BESIDE) data = beside[b++];
        else if (kind === EV_BINARY) data = copyOut(u8, start, len);
        else if (flags & FLAG_ASCII) data = arena.latin1Slice(start, start + len);
        else data = arena.utf8Slice(start, start + len);
        const ws = this._conns.get(nid);
        if (ws !== undefined) this._message(ws, data, kind === EV_BINARY);
      } else if (kind === EV_OPEN) {
        this._onOpen(nid, readRequest(arena, u8, start, this._routesById, this._patternBytes, false));
      } else if (kind === EV_CLOSE) {
        this._onClose(nid, word >>> 16, len === 0 ? '' : arena.utf8Slice(start, start + len));
      } else if (kind === EV_VERIFY) {
        const info = readRequest(arena, u8, start, this._routesById, this._patternBytes, true);
        this._verify(nid, info, info.offered);
      } else if (kind === EV_IDLE) {
        this._emitCloseIfDrained();
      } else {
        const ws = this._conns.get(nid);
        if (ws === undefined) continue;
        if (kind === EV_PING) this._deliver(ws, 'ping', copyOut(u8, start, len));
        else if (kind === EV_PONG) this._deliver(ws, 'pong', copyOut(u8, start, len));
        else if (kind === EV_DRAIN) this._deliver(ws, 'drain');
      }
    }
  }

  /**
   * Decides on a handshake before the upgrade: `verifyClient(req)` first (true accepts;
   * false, null or undefined refuse with 401; an object `{ status, message }` refuses with
   * that status; a promise is awaited; a throw or rejection refuses with 500 and is logged),
   * then `handleProtocols(offered)` when the client offered subprotocols (its answer is
   * echoed; a falsy one accepts without a subprotocol; a throw refuses with 400; a name the
   * client did not offer refuses with 500).
   */
  _verify(ticket, info, offered) {
    const o = this._router._wsOptions;
    const native = this._native;
    const entry = this._routesById[info.route];
    const req = buildRequest(info, entry);
    const failed = (err, what) => {
      this._log(err, { route: `${entry.pattern} (${what})` });
      native.decide(ticket, undefined, 500, 'Internal Server Error');
    };
    const settle = (verdict) => {
      if (verdict === false || verdict === null || verdict === undefined) {
        return native.decide(ticket, undefined, 401, 'Unauthorized');
      }
      if (typeof verdict === 'object') {
        const status = Number.isInteger(verdict.status) && verdict.status >= 400 && verdict.status <= 599 ? verdict.status : 401;
        // Without a message, the engine sends the status's reason phrase.
        const message = typeof verdict.message === 'string' ? verdict.message : '';
        return native.decide(ticket, undefined, status, message);
      }
      if (offered.length === 0 || typeof o.handleProtocols !== 'function') return native.decide(ticket, undefined, undefined);
      let chosen;
      try {
        chosen = o.handleProtocols(offered);
      } catch (err) {
        this._log(err, { route: `${entry.pattern} (handleProtocols)` });
        return native.decide(ticket, undefined, 400, 'Subprotocol rejected');
      }
      if (!chosen) return native.decide(ticket, undefined, undefined);
      if (typeof chosen === 'string' && offered.includes(chosen)) return native.decide(ticket, chosen, undefined);
      failed(new Error(`handleProtocols returned ${show(chosen)}, which the client did not offer`), 'handleProtocols');
    };
    if (typeof o.verifyClient !== 'function') return settle(true);
    let verdict;
    try {
      verdict = o.verifyClient(req);
    } catch (err) {
      return failed(err, 'verifyClient');
    }
    if (verdict !== null && typeof verdict === 'object' && typeof verdict.then === 'function') {
      verdict.then(settle, (err) => failed(err, 'verifyClient'));
    } else {
      settle(verdict);
    }
  }

  _onOpen(nid, info) {
    const entry = this._routesById[info.route];
    const req = buildRequest(info, entry);
    const ws = new WebSocketConnection(this, nid, info, entry.pattern);
    ws._held = HOLDING;
    this._conns.set(nid, ws);
    if (this._shutdown) {
      // Its handshake finished after shutdown began: close it like the others.
      ws.close(this._shutdown.code, this._shutdown.reason);
      this._release(ws);
      return;
    }
    const identify = this._router._wsOptions.identify;
    if (identify !== null) {
      try {
        this._identify(ws, identify(req));
      } catch (err) {
        this._reportError(err, ws, this._context(ws, req));
        this._release(ws);
        return;
      }
    }
    const mw = this._router._middleware;
    runHandlers(this, ws, req, mw.length === 0 ? entry.handlers : mw.concat(entry.handlers));
  }

  /**
   * Gives `ws` the app's stable id. An older connection with the same id, on any server of
   * the router, is closed with 1001 'Replaced by a newer connection'. Messages queued for the
   * id are sent first, before anything the handlers send.
   */
  _identify(ws, id) {
    if (id === undefined || id === null || id === false) return;
    if (typeof id !== 'string' || id.length === 0) {
      throw new TypeError(`identify(req) must return a non-empty string or null. Received ${typeof id}`);
    }
    for (const server of this._router._servers) {
      const older = server._byUuid.get(id);
      if (older !== undefined && older !== ws) {
        server._byUuid.delete(id);
        older.close(1001, 'Replaced by a newer connection');
      }
    }
    ws._id = id;
    this._byUuid.set(id, ws);
    const queue = this._router._queue;
    const queued = queue === null ? null : queue.take(id);
    if (queued !== null) {
      for (const m of queued) {
        if (typeof m.payload === 'string' && !m.binary) this._sendText(ws._nid, m.payload);
        else this._sendBinary(ws._nid, typeof m.payload === 'string' ? Buffer.from(m.payload) : m.payload);
      }
    }
  }

  _onClose(nid, code, reason) {
    const ws = this._conns.get(nid);
    if (ws === undefined) return;
    this._conns.delete(nid);
    if (ws._id !== undefined && this._byUuid.get(ws._id) === ws) this._byUuid.delete(ws._id);
    ws.readyState = CLOSED;
    // A chain that never finished (a middleware closed the connection without calling
    // next, or never settled) must not swallow the close: deliver what was held, then it.
    this._release(ws);
    this._deliver(ws, 'close', code, reason);
    // The engine forgot its rooms already; the Set stays readable until the close listeners ran.
    if (ws._rooms !== undefined) ws._rooms._clear();
  }

  /** Emits an event on `ws`, or holds it while the route's handlers have not run yet. */
  _deliver(ws, name, a, b) {
    if (ws._held !== null) {
      if (ws._held === HOLDING) ws._held = [];
      ws._held.push(name, a, b);
      return;
    }
    try {
      ws.emit(name, a, b);
    } catch (err) {
      this._reportError(err, ws, this._context(ws));
    }
  }

  /**
   * `_deliver` for a message, the hot path: a single listener is called directly, as `emit`
   * would (same `this`, arguments and rejection capture), without `emit`'s generic lookup.
   * Several listeners, none, held events or an `emit` of the app's own go through `_deliver`.
   */
  _message(ws, data, binary) {
    const events = ws._events;
    const listener = events === undefined ? undefined : events.message;
    if (typeof listener !== 'function' || ws._held !== null || ws.emit !== emit) {
      return this._deliver(ws, 'message', data, binary);
    }
    try {
      const result = listener.call(ws, data, binary);
      if (result !== undefined && result !== null) captureRejection(ws, result, data, binary);
    } catch (err) {
      this._reportError(err, ws, this._context(ws));
    }
  }

  /** Replays held events once the handlers have run. */
  _release(ws) {
    const held = ws._held;
    if (held === null) return;
    ws._held = null;
    // Admitted: broadcasts to everyone and to its route reach it from now on.
    if (ws.readyState === OPEN) this._admit(ws._nid);
    for (let i = 0; i < held.length; i += 3) this._deliver(ws, held[i], held[i + 1], held[i + 2]);
  }

  /**
   * What error handlers get as `context`: the route, its params and query, and the request.
   * While the handlers run, `req` is the request they got; afterwards (errors in listeners)
   * the connection no longer holds it, and `req` is rebuilt from what it keeps: everything
   * but the headers.
   */
  _context(ws, req) {
    if (req === undefined) {
      req = new Request(
        { url: ws._url, remoteAddress: ws._address, remotePort: ws._port, rawHeaders: '', params: ws._params, query: ws._query },
        { pattern: ws._route },
      );
    }
    return { route: req.route, params: req.params, query: req.query, req };
  }

  /**
   * An error thrown by a handler or listener goes to the router's error handlers, in order,
   * until one returns without throwing. If none does, it is emitted on the connection's
   * `error` event when that has listeners, otherwise logged once, and the connection is
   * closed with 1011.
   */
  _reportError(err, ws, context) {
    for (const handler of this._router._wsRouter._errorHandlers) {
      try {
        const r = handler(err, ws, context);
        if (r !== null && typeof r === 'object' && typeof r.then === 'function') {
          r.then(undefined, (e) => this._log(e, context));
        }
        return; // dealt with: the handler decides what happens to the connection
      } catch {
        // A throwing handler did not deal with the error: try the next one.
      }
    }
    if (ws.listenerCount('error') > 0) {
      try {
        ws.emit('error', err);
      } catch (inner) {
        this._log(inner, context);
      }
    } else {
      this._log(err, context);
    }
    if (ws.readyState === OPEN) ws.close(1011, 'Internal Server Error');
  }

  _log(err, context) {
    if (err !== null && typeof err === 'object') {
      if (this._loggedErrors.has(err)) return;
      this._loggedErrors.add(err);
    }
    console.error(`velocy: unhandled error in WebSocket route ${context ? context.route : '?'}:`, err);
  }
}

/** A copy of `len` bytes of the arena (`u8`) from `start`: the arena is reused by the next batch. */
function copyOut(u8, start, len) {
  if (len === 0) return Buffer.alloc(0);
  const out = Buffer.allocUnsafe(len);
  out.set(u8.subarray(start, start + len));
  return out;
}

/**
 * What `emit` does with a listener's result: a promise's rejection goes to the connection's
 * rejection handler on the next tick (EventEmitter's `captureRejections`).
 */
function captureRejection(ws, result, data, binary) {
  try {
    const then = result.then;
    if (typeof then === 'function') {
      then.call(result, undefined, (err) => process.nextTick(() => ws[EventEmitter.captureRejectionSymbol](err, 'message', data, binary)));
    }
  } catch (err) {
    ws.emit('error', err);
  }
}

/**
 * Reads a request record (`encode_request` in src/event.rs) from the arena (`arena` to make
 * strings, its byte view `u8` for the rest): numbers, strings, the header block as one string
 * (parsed when `req.headers` is first read), params and query as flat [key, value, ...]
 * arrays, and with `offered` the offered subprotocols. A URL that is its route's pattern
 * (`patterns[route]` holds its bytes), and an address equal to the previous one, are not made
 * into new strings.
 */
function readRequest(arena, u8, at, routes, patterns, offered) {
  const route = u32At(u8, at);
  const remotePort = u32At(u8, at + 4);
  cursor = at + 8;
  const entry = routes[route];
  const info = {
    route,
    remotePort,
    url: skipIfEqual(u8, patterns[route]) ? entry.pattern : readString(arena, u8, false),
    remoteAddress: skipIfEqual(u8, lastAddress.bytes) ? lastAddress.text : newAddress(arena, u8),
    protocol: readString(arena, u8, true),
    rawHeaders: readString(arena, u8, true),
    params: readPairs(arena, u8),
    query: readPairs(arena, u8),
    offered: undefined,
  };
  if (offered) {
    const n = u32At(u8, cursor);
    cursor += 4;
    info.offered = new Array(n);
    for (let i = 0; i < n; i++) info.offered[i] = readString(arena, u8, true);
  }
  return info;
}

/** Where `readRequest` is in the arena. */
let cursor = 0;

/** The little-endian u32 at `at` (records are packed: not every one is 4-aligned). */
function u32At(u8, at) {
  return (u8[at] | (u8[at + 1] << 8) | (u8[at + 2] << 16) | (u8[at + 3] << 24)) >>> 0;
}

function readString(arena, u8, latin1) {
  const len = u32At(u8, cursor);
  const from = cursor + 4;
  cursor = from + len;
  return len === 0 ? '' : latin1 ? arena.latin1Slice(from, cursor) : arena.utf8Slice(from, cursor);
}

/** True, and the string skipped, if the next string's bytes are `bytes` (a non-empty array, or none); else false. */
function skipIfEqual(u8, bytes) {
  if (bytes == null) return false;
  const len = u32At(u8, cursor);
  if (len !== bytes.length) return false;
  const from = cursor + 4;
  for (let i = 0; i < len; i++) if (u8[from + i] !== bytes[i]) return false;
  cursor = from + len;
  return true;
}

/** Reads an address that differs from the previous one, and keeps it as the previous one. */
function newAddress(arena, u8) {
  const len = u32At(u8, cursor);
  const text = readString(arena, u8, true);
  if (len > 0 && len <= ADDRESS_BYTES) {
    lastAddress.text = text;
    lastAddress.bytes = lastAddress.buffer.subarray(0, len);
    lastAddress.bytes.set(u8.subarray(cursor - len, cursor));
  }
  return text;
}

/** The ASCII bytes of `text`, or null if it is empty or not all ASCII. */
function asciiBytes(text) {
  if (text.length === 0) return null;
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return null;
    out[i] = c;
  }
  return out;
}

function readPairs(arena, u8) {
  const n = u32At(u8, cursor);
  cursor += 4;
  if (n === 0) return NO_PAIRS;
  const out = new Array(2 * n);
  for (let i = 0; i < 2 * n; i++) out[i] = readString(arena, u8, false);
  return out;
}

const NO_PAIRS = Object.freeze([]);

// Connections often come from one address (a proxy, a load balancer, a NAT): the address of
// the previous connection is kept (its text and bytes), and an equal one shares its string.
const ADDRESS_BYTES = 64;
const lastAddress = { text: '', bytes: null, buffer: new Uint8Array(ADDRESS_BYTES) };

const kRawHeaders = Symbol('rawHeaders');
const kParams = Symbol('params');
const kQuery = Symbol('query');

/**
 * The upgrade request handed to verifyClient, middleware and handlers. `headers`, `params`
 * and `query` are built the first time they are read (then they are plain own properties).
 */
class Request {
  constructor(info, entry) {
    const url = info.url;
    const q = url.indexOf('?');
    // Only a GET is upgraded.
    this.method = 'GET';
    this.url = url;
    this.path = q === -1 ? url : url.slice(0, q);
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.route = entry.pattern;
    this[kRawHeaders] = info.rawHeaders;
    this[kParams] = info.params;
    this[kQuery] = info.query;
  }

  get headers() {
    return (this.headers = headerObject(this[kRawHeaders]));
  }


  set headers(value) {
    own(this, 'headers', value);
    this[kRawHeaders] = '';
  }

  get params() {
    return (this.params = pairsObject(this[kParams], false));
  }

  set params(value) {
    own(this, 'params', value);
    this[kParams] = NO_PAIRS;
  }

  get query() {
    return (this.query = pairsObject(this[kQuery], true));
  }

  set query(value) {
    own(this, 'query', value);
    this[kQuery] = NO_PAIRS;
  }
}

/** Makes `value` the own, writable, enumerable property `name` of `obj`. */
function own(obj, name, value) {
  Object.defineProperty(obj, name, { value, writable: true, enumerable: true, configurable: true });
}

function buildRequest(info, entry) {
  return new Request(info, entry);
}

// Header names repeat on every connection: one string per name, not one per connection.
const headerNames = new Map();

function internName(name) {
  const known = headerNames.get(name);
  if (known !== undefined) return known;
  if (headerNames.size < 512) headerNames.set(name, name);
  return name;
}

/** The header block ("name\0value\0...", names lower case) to an object; repeated headers are joined like Node. */
function headerObject(raw) {
  const out = {};
  if (raw === '') return out;
  const flat = raw.split('\0');
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const k = internName(flat[i]);
    const v = flat[i + 1];
    if (k === '__proto__') continue;
    if (!Object.prototype.hasOwnProperty.call(out, k)) out[k] = v;
    else if (k === 'set-cookie') out[k] = [].concat(out[k], v);
    else out[k] += (k === 'cookie' ? '; ' : ', ') + v;
  }
  return out;
}

/** Pairs to an object; with `multi`, a repeated key becomes an array of its values. */
function pairsObject(flat, multi) {
  if (flat.length === 0) return {};
  const out = Object.create(null);
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i];
    const v = flat[i + 1];
    if (multi && out[k] !== undefined) out[k] = [].concat(out[k], v);
    else out[k] = v;
  }
  return Object.assign({}, out);
}

function normalizeListenArgs(args) {
  let callback;
  if (args.length > 0 && typeof args[args.length - 1] === 'function') callback = args.pop();
  let [port, host, backlog] = args;
  if (port !== null && typeof port === 'object') {
    ({ port, host, backlog } = port);
  } else if (typeof host === 'number' && backlog === undefined) {
    backlog = host;
    host = undefined;
  }
  if (port === undefined || port === null) port = 0;
  if (typeof port === 'string' && /^[0-9]+$/.test(port.trim())) port = Number(port);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    const err = new RangeError(`options.port should be >= 0 and < 65536. Received ${typeof port} (${String(port)}).`);
    err.code = 'ERR_SOCKET_BAD_PORT';
    throw err;
  }
  if (host !== undefined && host !== null && typeof host !== 'string') throw typeError('host', 'of type string', host);
  if (host === null || host === '') host = undefined;
  if (backlog === undefined || backlog === null) backlog = 511;
  if (typeof backlog !== 'number' || !Number.isInteger(backlog) || backlog < 0) {
    throw typeError('backlog', 'a non-negative integer', backlog);
  }
  return { port, host, backlog, callback };
}

function listenError(err, host, port) {
  const code = err.code;
  const e = new Error(err.message);
  e.code = code;
  const errno = os.constants.errno[code];
  if (errno !== undefined) e.errno = -errno;
  e.syscall = 'listen';
  e.address = host;
  e.port = port;
  return e;
}

/** `{ key, cert }` as Buffers, or null for a plain ws:// server. */
function tlsOptions(options) {
  if (options === undefined || (options.key === undefined && options.cert === undefined)) return null;
  const pem = (value, name) => {
    if (typeof value === 'string') return Buffer.from(value);
    if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value);
    throw typeError(name, 'a PEM string or Buffer', value);
  };
  return { key: pem(options.key, 'options.key'), cert: pem(options.cert, 'options.cert') };
}

/**
 * Creates a server for `router`; with `{ key, cert }` (PEM, as for https.createServer) it
 * serves wss://.
 */
function createServer(router, options) {
  return new Server(router, options);
}

module.exports = { Server, createServer };
