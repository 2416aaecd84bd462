'use strict';

// WebSocket options: defaults, validation and normalisation. Times are milliseconds, sizes
// bytes. Every error names the option.

const { typeError } = require('./validation');

const DEFAULTS = Object.freeze({
  /** Ping every 30 s; 0 turns heartbeats off. */
  heartbeatInterval: 30000,
  /** Close a peer silent (no pong, no data) for 60 s. */
  heartbeatTimeout: 60000,
  /** Largest message, all fragments together: 100 MiB. */
  maxPayloadSize: 100 * 1024 * 1024,
  /** Keep messages sent with `wsServer.sendTo` to clients that are not connected. */
  enableQueue: false,
  /** Messages kept per absent client; when full, the oldest is dropped. */
  maxQueueSize: 100,
  /** How long a queued message is kept, in ms (5 minutes). */
  queueTTL: 5 * 60 * 1000,
  /** Messages kept for all absent clients together; beyond it sendTo refuses (returns false). */
  maxQueuedMessages: 100000,
  /** `(req) => string | null`: a stable id for the connection (becomes `ws.id`), from the app's own authentication. */
  identify: null,
  /** `(protocols: string[]) => string | null`: picks the subprotocol. */
  handleProtocols: null,
  /** How long a handshake may take, from accept to the 101 response, in ms. */
  handshakeTimeout: 10000,
  /** Bytes queued for one peer above which send returns false (then 'drain'), broadcasts skip it, and its input is not read. */
  maxBackpressure: 4 * 1024 * 1024,
  /** A broadcast to a peer over maxBackpressure closes it with 1008 'Slow consumer' instead of skipping it. */
  closeOnBackpressureLimit: false,
  /** `(req) => boolean | { status, message } | Promise<...>`: accepts or refuses a handshake before the upgrade. */
  verifyClient: null,
  /** Origins allowed to connect (exact, case-insensitive; '*' allows any); others get 403. null: no check. */
  allowedOrigins: null,
  /** Open connections above which new handshakes get 503; 0: no limit. */
  maxConnections: 0,
  /** `{ messages, interval }`: a connection sending more messages (pings included) per interval ms is closed with 1008. null: no limit. */
  rateLimit: null,
});

function optionError(Ctor, name, message, value) {
  const err = new Ctor(`Invalid WebSocket option "${name}": ${message}. Received ${show(value)}`);
  err.code = 'ERR_INVALID_OPTION';
  return err;
}

/** A short description of any value; never throws (BigInt, circular objects, Proxies). */
function show(value) {
  try {
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'symbol' || typeof value === 'function') return String(value);
    const json = JSON.stringify(value);
    return json === undefined ? String(value) : json.length > 60 ? `${json.slice(0, 57)}...` : json;
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return 'a value that cannot be shown';
    }
  }
}

function number(name, value, { min, integer = true }) {
  if (typeof value !== 'number') throw optionError(TypeError, name, 'must be a number', value);
  if (Number.isNaN(value) || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw optionError(RangeError, name, `must be ${integer ? 'an integer' : 'a number'} >= ${min}`, value);
  }
  return value;
}

const CHECKS = {
  heartbeatInterval: (v) => number('heartbeatInterval', v, { min: 0 }),
  heartbeatTimeout: (v) => number('heartbeatTimeout', v, { min: 1 }),
  maxPayloadSize: (v) => number('maxPayloadSize', v, { min: 1 }),
  enableQueue: (v) => {
    if (typeof v !== 'boolean') throw optionError(TypeError, 'enableQueue', 'must be a boolean', v);
    return v;
  },
  maxQueueSize: (v) => number('maxQueueSize', v, { min: 0 }),
  queueTTL: (v) => number('queueTTL', v, { min: 1 }),
  maxQueuedMessages: (v) => number('maxQueuedMessages', v, { min: 0 }),
  handshakeTimeout: (v) => number('handshakeTimeout', v, { min: 1 }),
  maxBackpressure: (v) => number('maxBackpressure', v, { min: 0 }),
  closeOnBackpressureLimit: (v) => {
    if (typeof v !== 'boolean') throw optionError(TypeError, 'closeOnBackpressureLimit', 'must be a boolean', v);
    return v;
  },
  verifyClient: (v) => {
    if (v !== null && typeof v !== 'function') throw optionError(TypeError, 'verifyClient', 'must be a function or null', v);
    return v;
  },
  allowedOrigins: (v) => {
    if (v === null) return v;
    if (!Array.isArray(v) || v.some((o) => typeof o !== 'string' || o.length === 0)) {
      throw optionError(TypeError, 'allowedOrigins', 'must be an array of non-empty strings or null', v);
    }
    return v.slice();
  },
  maxConnections: (v) => number('maxConnections', v, { min: 0 }),
  rateLimit: (v) => {
    if (v === null) return v;
    if (typeof v !== 'object') throw optionError(TypeError, 'rateLimit', 'must be { messages, interval } or null', v);
    for (const key of Object.keys(v)) {
      if (key !== 'messages' && key !== 'interval') throw optionError(TypeError, `rateLimit.${key}`, 'is not an option', v[key]);
    }
    return {
      messages: number('rateLimit.messages', v.messages, { min: 1 }),
      interval: v.interval === undefined ? 1000 : number('rateLimit.interval', v.interval, { min: 1 }),
    };
  },
  identify: (v) => {
    if (v !== null && typeof v !== 'function') throw optionError(TypeError, 'identify', 'must be a function or null', v);
    return v;
  },
  handleProtocols: (v) => {
    if (v !== null && typeof v !== 'function') throw optionError(TypeError, 'handleProtocols', 'must be a function or null', v);
    return v;
  },
};

/** Validates `opts` (all optional) and returns only the options it sets. */
function validateWebSocketOptions(opts, argName = 'options.websocket') {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object') throw typeError(argName, 'an object', opts);
  const out = {};
  for (const key of Object.keys(opts)) {
    const check = Object.hasOwn(CHECKS, key) ? CHECKS[key] : undefined;
    if (check === undefined) {
      const err = new TypeError(`Unknown WebSocket option "${key}" (known: ${Object.keys(CHECKS).join(', ')})`);
      err.code = 'ERR_INVALID_OPTION';
      throw err;
    }
    if (opts[key] !== undefined) out[key] = check(opts[key]);
  }
  return out;
}

module.exports = { DEFAULTS, validateWebSocketOptions, show };
