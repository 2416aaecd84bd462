'use strict';

const EventEmitter = require('node:events');
// Node's global `Buffer` is an accessor; a module binding is a plain load on hot paths.
const { Buffer } = require('node:buffer');
const { randomUUID } = require('node:crypto');
const { WS_STATES } = require('./constants');
const { rangeError, typeError, toBytes, toMessage, sendOptions, validateClose, validateRoomName } = require('./validation');

const { OPEN, CLOSING, CLOSED } = WS_STATES;
const EMPTY = Buffer.alloc(0);

function ListenerTable() {}
ListenerTable.prototype = Object.create(null);

// Async listeners' rejections are captured (EventEmitter's `captureRejections`) for every
// connection: set once on the prototype when Node's symbol for it can be found, rather than
// as a field of each connection.
const kCapture = Object.getOwnPropertySymbols(EventEmitter.prototype).find((s) => s.description === 'kCapture');

/**
 * One WebSocket connection, as handed to route handlers. An EventEmitter with the events
 * `message (data, isBinary)`, `close (code, reason)`, `error (err)`, `ping (data)`,
 * `pong (data)` and `drain`. Methods on a closed connection do nothing and return false.
 *
 * It inherits from EventEmitter.prototype without running EventEmitter's constructor, which
 * would give every connection three more fields and a dictionary-mode listener table that is
 * replaced at once: it holds only the fields listeners need (`_events`, `_eventsCount`).
 */
class WebSocketConnection {
  /**
   * `info` is the upgrade request as read from the engine (see server.js `readRequest`),
   * `route` the pattern that accepted it. The connection keeps its peer address, URL, params
   * and query; the request object, with its headers, is the handlers' alone (see
   * `Server#_context`).
   */
  constructor(server, nid, info, route) {
    if (kCapture === undefined) EventEmitter.init.call(this, { captureRejections: true });
    // Listener table: a fast-mode object with no inherited keys, less than half the size of
    // EventEmitter's default (a dictionary-mode null-prototype object).
    this._events = new ListenerTable();
    this._eventsCount = 0;
    this._server = server;
    this._nid = nid;
    this._id = undefined;
    this._metadata = undefined;
    this._rooms = undefined;
    // Events that arrive while the route's handlers have not yet run, replayed after.
    this._held = null;
    this._route = route;
    this._address = info.remoteAddress;
    this._port = info.remotePort;
    this._url = info.url;
    // As read: [key, value, ...] (shared when empty); objects are built only for an error.
    this._params = info.params;
    this._query = info.query;
    this.readyState = OPEN;
    this.protocol = info.protocol;
  }

  /** The route pattern that accepted the connection. */
  get route() {
    return this._route;
  }

  get remoteAddress() {
    return this._address;
  }

  get remotePort() {
    return this._port;
  }

  /** A UUID v4, created on first use. */
  get id() {
    if (this._id === undefined) {
      this._id = randomUUID();
      this._server._registerUuid(this);
    }
    return this._id;
  }

  /** Application data attached to the connection. */
  get metadata() {
    if (this._metadata === undefined) this._metadata = {};
    return this._metadata;
  }

  set metadata(value) {
    if (value === null || typeof value !== 'object') throw typeError('metadata', 'an object', value);
    this._metadata = value;
  }

  /** Same as `readyState`. */
  get state() {
    return this.readyState;
  }

  /** Bytes queued for this peer and not yet written to its socket. */
  get bufferedAmount() {
    return this.readyState === CLOSED ? 0 : this._server._native.bufferedAmount(this._nid);
  }

  /**
   * Sends a message: a string as text; a Buffer, TypedArray or ArrayBuffer as binary; any
   * other object as JSON text. `{ binary: true }` sends a string as a binary frame.
   * Returns false when the connection is not open.
   */
  send(data, options) {
    if (typeof data === 'string' && options === undefined) {
      // The common case, without the general path's checks and allocations.
      return this.readyState === OPEN && this._server._sendText(this._nid, data);
    }
    const [payload, binary] = toMessage(data, sendOptions(options), 'data');
    if (this.readyState !== OPEN) return false;
    const server = this._server;
    if (typeof payload === 'string') {
      return binary ? server._sendBinary(this._nid, Buffer.from(payload)) : server._sendText(this._nid, payload);
    }
    return server._sendBinary(this._nid, payload);
  }

  /** Sends `data` as a binary message. */
  sendBinary(data) {
    const bytes = typeof data === 'string' ? Buffer.from(data) : toBytes(data, 'data');
    if (this.readyState !== OPEN) return false;
    return this._server._sendBinary(this._nid, bytes);
  }

  /** Sends a ping with optional data (at most 125 bytes). */
  ping(data) {
    const bytes = controlPayload(data);
    if (this.readyState !== OPEN) return false;
    return this._server._native.ping(this._nid, bytes);
  }

  /** Sends a pong with optional data (at most 125 bytes). Pings are answered automatically. */
  pong(data) {
    const bytes = controlPayload(data);
    if (this.readyState !== OPEN) return false;
    return this._server._native.pong(this._nid, bytes);
  }

  /**
   * Starts the closing handshake. `code` defaults to 1000; `reason` is at most 123 bytes of
   * UTF-8. The `close` event follows once the peer answers (or the connection is lost).
   */
  close(code, reason) {
    validateClose(code, reason);
    if (this.readyState !== OPEN) return;
    this.readyState = CLOSING;
    this._server._native.close(this._nid, code === undefined ? 1000 : code, reason || '');
  }

  /** Destroys the connection at once, without a closing handshake (close code 1006). */
  terminate() {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSING;
    this._server._native.terminate(this._nid);
  }

  /** The rooms this connection is in (a Set; change it with join and leave). */
  get rooms() {
    if (this._rooms === undefined) this._rooms = new RoomSet();
    return this._rooms;
  }

  /** Joins `room` (created on first join). Returns false if already in it or closed. */
  join(room) {
    validateRoomName(room, 'room');
    if (this.readyState !== OPEN || !this._server._native.join(this._nid, room)) return false;
    this.rooms._add(room);
    return true;
  }

  /** Leaves `room` (deleted when it empties). Returns false if not in it. */
  leave(room) {
    validateRoomName(room, 'room');
    if (this._rooms === undefined || !this._rooms.has(room)) return false;
    this._rooms._delete(room);
    this._server._native.leave(this._nid, room);
    return true;
  }

  inRoom(room) {
    validateRoomName(room, 'room');
    return this._rooms !== undefined && this._rooms.has(room);
  }

  // Pings are answered by the engine; only a connection with a `ping` listener has them
  // reported to JS, so pings (a flood of them included) cost JS nothing otherwise.
  on(event, listener) {
    if (event === 'ping') this._wantPings();
    return super.on(event, listener);
  }

  addListener(event, listener) {
    return this.on(event, listener);
  }

  once(event, listener) {
    if (event === 'ping') this._wantPings();
    return super.once(event, listener);
  }

  prependListener(event, listener) {
    if (event === 'ping') this._wantPings();
    return super.prependListener(event, listener);
  }

  prependOnceListener(event, listener) {
    if (event === 'ping') this._wantPings();
    return super.prependOnceListener(event, listener);
  }

  _wantPings() {
    if (this._pings !== true && this.readyState !== CLOSED) {
      this._pings = true;
      this._server._native.wantPings(this._nid);
    }
  }

  /** An async listener's rejection: reported like an exception thrown by a listener. */
  [EventEmitter.captureRejectionSymbol](err) {
    this._server._reportError(err, this, this._server._context(this));
  }

  /** A snapshot of the connection's state. */
  getInfo() {
    return {
      id: this.id,
      state: this.readyState,
      rooms: this._rooms ? Array.from(this._rooms) : [],
      metadata: this.metadata,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
    };
  }
}

Object.setPrototypeOf(WebSocketConnection.prototype, EventEmitter.prototype);
Object.setPrototypeOf(WebSocketConnection, EventEmitter);
if (kCapture !== undefined) WebSocketConnection.prototype[kCapture] = true;

/**
 * `ws.rooms`: a Set that follows the core. It is read-only to applications (use `join` and
 * `leave`), so it cannot drift from what the engine knows.
 */
class RoomSet extends Set {
  add(room) {
    throw readOnly('add', room);
  }

  delete(room) {
    throw readOnly('delete', room);
  }

  clear() {
    throw readOnly('clear');
  }

  _add(room) {
    return Set.prototype.add.call(this, room);
  }

  _delete(room) {
    return Set.prototype.delete.call(this, room);
  }

  _clear() {
    Set.prototype.clear.call(this);
  }
}

function readOnly(method) {
  const err = new TypeError(`ws.rooms is read-only: ${method}() is not allowed; use ws.join(room) and ws.leave(room)`);
  err.code = 'ERR_INVALID_STATE';
  return err;
}

function controlPayload(data) {
  if (data === undefined) return EMPTY;
  const bytes = typeof data === 'string' ? Buffer.from(data) : toBytes(data, 'data');
  if (bytes.byteLength > 125) throw rangeError('data', 'at most 125 bytes long', data);
  return bytes;
}

module.exports = { WebSocketConnection };
