'use strict';

// Argument checks shared by the facade. Each throws a TypeError or RangeError whose message
// names the argument and whose `code` follows Node's conventions.

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
  if (Buffer.isBuffer(data)) return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && data instanceof SharedArrayBuffer)) {
    return Buffer.from(data);
  }
  throw typeError(name, 'a string, Buffer, TypedArray or ArrayBuffer', data);
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
    return [JSON.stringify(data), forceBinary === true];
  }
  if (typeof data === 'function' || typeof data === 'symbol') {
    throw typeError(name, 'a string, Buffer, TypedArray, ArrayBuffer or object', data);
  }
  return [String(data), forceBinary === true];
}

function isArrayBuffer(v) {
  return v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer);
}

function validateRoomName(value, name) {
  validateString(value, name);
  if (value.length === 0) {
    const err = new TypeError(`The "${name}" argument must be a non-empty string`);
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
}

module.exports = {
  typeError,
  rangeError,
  validateFunction,
  validateString,
  validateRoutePath,
  isValidCloseCode,
  toBytes,
  toMessage,
  validateRoomName,
};
