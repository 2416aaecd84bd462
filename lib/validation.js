'use strict';

// Argument checks shared by the facade. Each throws a TypeError or RangeError whose message
// names the argument and whose `code` follows Node's conventions.

// Node's global `Buffer` is an accessor; a module binding is a plain load on hot paths.
const { Buffer } = require('node:buffer');

function typeError(name, expected, value) {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(value)}`);
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

function rangeError(name, expected, value) {
  const err = new RangeError(`The value of "${name}" is out of range. It must be ${expected}. Received ${describe(value)}`);
  err.code = 'ERR_OUT_OF_RANGE';
  return err;
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') return `an instance of ${value.constructor ? value.constructor.name : 'Object'}`;
  if (typeof value === 'string') return `type string (${JSON.stringify(value.length > 28 ? value.slice(0, 25) + '...' : value)})`;
  return `type ${typeof value} (${String(value)})`;
}

function validateFunction(value, name) {
  if (typeof value !== 'function') throw typeError(name, 'of type function', value);
}

function validateString(value, name) {
  if (typeof value !== 'string') throw typeError(name, 'of type string', value);
}

function validateRoutePath(value, name) {
  validateString(value, name);
  let why = null;
  if (value[0] !== '/') why = 'must start with "/"';
  else if (LONE_SURROGATE.test(value)) why = 'must be well-formed Unicode';
  else {
    const segments = value.split('/').filter(Boolean);
    if (segments.some((s) => s === ':')) why = 'has a parameter segment without a name';
    else if (segments.slice(0, -1).includes('**')) why = 'may use "**" only as its last segment';
  }
  if (why !== null) {
    const err = new TypeError(`The "${name}" argument ${why}. Received ${describe(value)}`);
    err.code = 'ERR_INVALID_ROUTE';
    throw err;
  }
}

/** Close codes an application may send (RFC 6455 §7.4). */
function isValidCloseCode(code) {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}

/** Binary data as a Buffer view over the same memory (no copy). */
function toBytes(data, name) {
  if (ArrayBuffer.isView(data) || isArrayBuffer(data)) {
    // Only an empty view or buffer can be a detached one.
    if (data.byteLength === 0 && isDetached(ArrayBuffer.isView(data) ? data.buffer : data)) {
      const err = new TypeError(`The "${name}" argument is backed by a detached ArrayBuffer`);
      err.code = 'ERR_INVALID_ARG_VALUE';
      throw err;
    }
    if (Buffer.isBuffer(data)) return data;
    return ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
  }
  throw typeError(name, 'a string, Buffer, TypedArray or ArrayBuffer', data);
}

/** A transferred (detached) buffer: no view can be made over it. */
function isDetached(buffer) {
  if (typeof buffer.detached === 'boolean') return buffer.detached;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/** JSON text of `data`, or a TypeError naming the argument when it has none. */
function toJson(data, name) {
  let text;
  try {
    text = JSON.stringify(data);
  } catch (cause) {
    // A toJSON or getter of the caller's that throws: that error is the caller's to see.
    if (!(cause instanceof TypeError)) throw cause;
    const err = new TypeError(`The "${name}" argument cannot be sent as JSON: ${cause.message}`);
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  if (typeof text !== 'string') {
    const err = new TypeError(`The "${name}" argument has no JSON form`);
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  return text;
}

/** `options` of send/broadcast: undefined or an object whose `binary` is a boolean. */
function sendOptions(options, name = 'options') {
  if (options === undefined || options === null) return false;
  if (typeof options !== 'object') throw typeError(name, 'an object', options);
  const binary = options.binary;
  if (binary !== undefined && typeof binary !== 'boolean') throw typeError(`${name}.binary`, 'of type boolean', binary);
  return binary === true;
}

/** A close code and reason as `close()` takes them (both optional). */
function validateClose(code, reason) {
  if (code !== undefined && !isValidCloseCode(code)) {
    if (typeof code !== 'number') throw typeError('code', 'of type number', code);
    throw rangeError('code', '1000-1003, 1007-1014 or 3000-4999', code);
  }
  if (reason !== undefined && typeof reason !== 'string') throw typeError('reason', 'of type string', reason);
  if (reason !== undefined && Buffer.byteLength(reason) > 123) {
    throw rangeError('reason', 'at most 123 bytes long', reason);
  }
}

/**
 * Message data as sent on the wire: `[payload, binary]` where payload is a string or Buffer.
 * Strings are text, binary data is binary, anything else is JSON text; `binary` forces a
 * binary frame.
 */
function toMessage(data, forceBinary, name) {
  if (typeof data === 'string') return [data, forceBinary === true];
  if (data === undefined) throw typeError(name, 'a string, Buffer, TypedArray, ArrayBuffer or object', data);
  if (data !== null && typeof data === 'object') {
    if (ArrayBuffer.isView(data) || isArrayBuffer(data)) return [toBytes(data, name), true];
    return [toJson(data, name), forceBinary === true];
  }
  if (typeof data === 'function' || typeof data === 'symbol') {
    throw typeError(name, 'a string, Buffer, TypedArray, ArrayBuffer or object', data);
  }
  return [String(data), forceBinary === true];
}

function isArrayBuffer(v) {
  return v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer);
}

// A lone surrogate (not well-formed UTF-16); String.prototype.isWellFormed needs Node 20.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function validateRoomName(value, name) {
  validateString(value, name);
  // Lone surrogates would become U+FFFD in the engine: two such names would be one room.
  if (value.length === 0 || LONE_SURROGATE.test(value)) {
    const err = new TypeError(`The "${name}" argument must be a non-empty, well-formed string`);
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
}

/** The canonical form of a route path: empty segments dropped ('/a//b/' is '/a/b'). */
function normalizeRoutePath(path) {
  return '/' + path.split('/').filter(Boolean).join('/');
}

module.exports = {
  normalizeRoutePath,
  typeError,
  rangeError,
  validateFunction,
  validateString,
  validateRoutePath,
  isValidCloseCode,
  toBytes,
  toMessage,
  toJson,
  sendOptions,
  validateClose,
  validateRoomName,
};
