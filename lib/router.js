'use strict';

const { validateFunction, validateRoutePath, normalizeRoutePath, typeError } = require('./validation');
const { WebSocketRouter } = require('./ws-router');
const { DEFAULTS, validateWebSocketOptions } = require('./options');
const { MessageQueue } = require('./queue');

/**
 * Holds WebSocket routes and middleware. Routes may be added before or after the router is
 * given to `createServer`; every server created from it serves them.
 */
class Router {
  /**
   * @param {object} [options]
   * @param {object} [options.websocket] WebSocket options (see `lib/options.js` for defaults).
   */
  constructor(options) {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw typeError('options', 'an object', options);
    }
    this._wsOptions = { ...DEFAULTS, ...validateWebSocketOptions(options && options.websocket) };
    /** pattern -> { pattern, handlers } in registration order */
    this._routes = new Map();
    this._middleware = [];
    this._servers = new Set();
    this._wsRouter = new WebSocketRouter(this);
    this._queue = null;
    this._applyQueueOptions();
  }

  _applyQueueOptions() {
    const o = this._wsOptions;
    if (!o.enableQueue) {
      if (this._queue !== null) this._queue.clear();
      this._queue = null;
    } else if (this._queue === null) {
      this._queue = new MessageQueue(o);
    } else {
      this._queue.configure(o);
    }
  }

  /**
   * Changes WebSocket options at run time. New connections use them; heartbeat changes also
   * reach open connections. Invalid values throw and change nothing.
   */
  configureWebSocket(options) {
    if (options === undefined) throw typeError('options', 'an object', options);
    const changes = validateWebSocketOptions(options, 'options');
    Object.assign(this._wsOptions, changes);
    this._applyQueueOptions();
    for (const server of this._servers) server._applyOptions();
    return this;
  }

  /** The WebSocket router: error handlers, stats, closeAll and the `wsServer` helpers. */
  getWebSocketRouter() {
    return this._wsRouter;
  }

  /** A room by name, for `broadcast(data, { except })`, `size()` and `getConnections()`. */
  room(name) {
    return this._wsRouter.room(name);
  }

  /** The connections of one route pattern, for `broadcast` and `getConnections()`. */
  to(path) {
    return this._wsRouter.to(path);
  }

  /** Sends to every open connection (but `options.except`). */
  broadcast(data, options) {
    this._wsRouter.broadcast(data, options);
  }

  /**
   * Adds a WebSocket route. Handlers are `(ws, req)`; middleware is `(ws, req, next)`.
   * Handlers for the same path add up, in order.
   */
  ws(path, ...handlers) {
    validateRoutePath(path, 'path');
    if (handlers.length === 0) throw typeError('handler', 'of type function', undefined);
    handlers.forEach((h, i) => validateFunction(h, `handlers[${i}]`));
    // '/a/b' and '/a/b/' are one route: their handlers add up.
    const key = normalizeRoutePath(path);
    let entry = this._routes.get(key);
    if (entry === undefined) {
      entry = { pattern: path, handlers: [] };
      for (const server of this._servers) server._addRoute(entry);
      this._routes.set(key, entry);
    }
    entry.handlers.push(...handlers);
    return this;
  }

  /** Adds middleware `(ws, req, next)` that runs before the handlers of every route. */
  use(...middleware) {
    if (middleware.length === 0) throw typeError('middleware', 'of type function', undefined);
    middleware.forEach((m, i) => validateFunction(m, `middleware[${i}]`));
    this._middleware.push(...middleware);
    return this;
  }

  _attach(server) {
    this._servers.add(server);
    for (const entry of this._routes.values()) server._addRoute(entry);
  }

  _detach(server) {
    this._servers.delete(server);
  }
}

module.exports = { Router };
