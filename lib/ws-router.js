'use strict';

// The WebSocket side of a Router: rooms, broadcasts, statistics, error handlers and the
// `wsServer` helpers. Everything here spans every server created from the router; the
// fan-out itself happens in the engine.

const { WebSocketConnection } = require('./connection');
const { normalizeRoutePath, validateClose, sendOptions, toMessage, typeError, validateFunction, validateRoomName, validateRoutePath } = require('./validation');

function broadcastArgs(data, options) {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw typeError('options', 'an object', options);
  }
  const except = options === undefined ? undefined : options.except;
  const isId = (v) => typeof v === 'string' || v instanceof WebSocketConnection;
  if (except !== undefined && except !== null && !isId(except) && !(Array.isArray(except) && except.every(isId))) {
    throw typeError('options.except', 'a connection id, a connection, or an array of them', except);
  }
  const [payload, binary] = toMessage(data, sendOptions(options), 'data');
  return { payload, binary, except };
}

/** Engine ids of the connections named by `except` (ids, or ws objects) on one server. */
function exceptIds(server, except) {
  if (except === undefined || except === null) return [];
  const list = Array.isArray(except) ? except : [except];
  const out = [];
  for (const item of list) {
    const ws = typeof item === 'string' ? server._byUuid.get(item) : item && item._server === server ? item : undefined;
    if (ws !== undefined) out.push(ws._nid);
  }
  return out;
}

class WebSocketRouter {
  constructor(router) {
    this._router = router;
    this._errorHandlers = [];
    this.wsServer = new WsServer(this);
  }

  /** Adds an error handler `(error, ws, context)`; see Router-level Error Handling. */
  error(handler) {
    validateFunction(handler, 'handler');
    this._errorHandlers.push(handler);
    return this;
  }

  use(...middleware) {
    this._router.use(...middleware);
    return this;
  }

  ws(path, ...handlers) {
    this._router.ws(path, ...handlers);
    return this;
  }

  route(path, ...handlers) {
    return this.ws(path, ...handlers);
  }

  /** `{ connections, rooms, routes, queuedMessages }`, exact at the moment of the call. */
  getStats() {
    let connections = 0;
    let rooms = 0;
    const servers = this._router._servers;
    if (servers.size === 1) {
      for (const server of servers) {
        connections = server._conns.size;
        rooms = server._native.roomCount();
      }
    } else {
      // A room name used on several servers of this router is one room.
      const names = new Set();
      for (const server of servers) {
        connections += server._conns.size;
        for (const name of server._native.roomNames()) names.add(name);
      }
      rooms = names.size;
    }
    return {
      connections,
      rooms,
      routes: this._router._routes.size,
      queuedMessages: this._router._queue ? this._router._queue.size : 0,
    };
  }

  /** Closes every open connection with `code` and `reason`. */
  closeAll(code = 1001, reason = 'Server shutdown') {
    validateClose(code, reason);
    for (const server of this._router._servers) {
      for (const ws of Array.from(server._conns.values())) ws.close(code, reason);
    }
  }

  room(name) {
    validateRoomName(name, 'name');
    return new Room(this._router, name);
  }

  to(path) {
    validateRoutePath(path, 'path');
    return new RouteGroup(this._router, path);
  }

  broadcast(data, options) {
    const { payload, binary, except } = broadcastArgs(data, options);
    for (const server of this._router._servers) {
      server._native.broadcast(undefined, undefined, payload, binary, exceptIds(server, except));
    }
  }
}

/** A room by name: broadcast to it, count it, list it. Cheap to create. */
class Room {
  constructor(router, name) {
    this._router = router;
    this.name = name;
  }

  broadcast(data, options) {
    const { payload, binary, except } = broadcastArgs(data, options);
    for (const server of this._router._servers) {
      server._native.broadcast(this.name, undefined, payload, binary, exceptIds(server, except));
    }
  }

  size() {
    let n = 0;
    for (const server of this._router._servers) n += server._native.roomSize(this.name);
    return n;
  }

  /** The open connections in the room. */
  getConnections() {
    const out = [];
    for (const server of this._router._servers) server._collect(server._native.members(this.name, undefined), out);
    return out;
  }
}

/** The connections accepted on one route pattern, e.g. '/ws/user/:userId'. */
class RouteGroup {
  constructor(router, pattern) {
    this._router = router;
    this.pattern = pattern;
  }

  broadcast(data, options) {
    const { payload, binary, except } = broadcastArgs(data, options);
    for (const server of this._router._servers) {
      const id = server._routeIds.get(normalizeRoutePath(this.pattern));
      if (id !== undefined) server._native.broadcast(undefined, id, payload, binary, exceptIds(server, except));
    }
  }

  getConnections() {
    const out = [];
    for (const server of this._router._servers) {
      const id = server._routeIds.get(normalizeRoutePath(this.pattern));
      if (id !== undefined) server._collect(server._native.members(undefined, id), out);
    }
    return out;
  }
}

/** Connection-level helpers, as `getWebSocketRouter().wsServer`. */
class WsServer {
  constructor(wsRouter) {
    this._wsRouter = wsRouter;
  }

  _find(id) {
    for (const server of this._wsRouter._router._servers) {
      const ws = server._byUuid.get(id);
      if (ws !== undefined) return ws;
    }
    return null;
  }

  /**
   * Sends to the connection with this id. When it is not connected and the queue is enabled,
   * the message is queued for it. Returns true if sent (or queued).
   */
  sendTo(id, data, options) {
    if (typeof id !== 'string') throw typeError('id', 'of type string', id);
    sendOptions(options);
    const ws = this._find(id);
    const queue = this._wsRouter._router._queue;
    if (ws !== null && ws.readyState === 1) {
      // false is backpressure (the message is queued for the peer) unless the engine no
      // longer accepts frames for it: the peer is closing, so keep it for its return.
      if (ws.send(data, options)) return true;
      if (queue === null || ws._server._native.accepts(ws._nid)) return false;
    }
    if (queue) return queue.push(id, data, options);
    toMessage(data, false, 'data');
    return false;
  }

  getConnection(id) {
    if (typeof id !== 'string') throw typeError('id', 'of type string', id);
    return this._find(id);
  }

  /** The open connections in `room`, as an array. */
  getRoom(name) {
    validateRoomName(name, 'name');
    return new Room(this._wsRouter._router, name).getConnections();
  }

  broadcast(data, options) {
    this._wsRouter.broadcast(data, options);
  }

  broadcastToRoom(room, data, options) {
    validateRoomName(room, 'room');
    new Room(this._wsRouter._router, room).broadcast(data, options);
  }

  getStats() {
    return this._wsRouter.getStats();
  }

  closeAll(code, reason) {
    this._wsRouter.closeAll(code, reason);
  }
}

module.exports = { WebSocketRouter };
