'use strict';

// The package's exports and the documented WebSocket constants (docs/WEBSOCKET.md,
// "WebSocket Constants").

const test = require('node:test');
const assert = require('node:assert/strict');
const velocy = require('..');

test('exports Router, createServer and the three constant tables', () => {
  const { Router, createServer, WS_OPCODES, WS_CLOSE_CODES, WS_STATES } = velocy;
  assert.equal(typeof Router, 'function');
  assert.equal(typeof createServer, 'function');
  for (const table of [WS_OPCODES, WS_CLOSE_CODES, WS_STATES]) {
    assert.equal(typeof table, 'object');
    assert.notEqual(table, null);
  }
  const router = new Router();
  const server = createServer(router);
  assert.equal(typeof server.listen, 'function');
  assert.equal(typeof server.close, 'function');
});

test('WS_OPCODES has the RFC 6455 opcodes', () => {
  assert.deepEqual({ ...velocy.WS_OPCODES }, {
    CONTINUATION: 0x0,
    TEXT: 0x1,
    BINARY: 0x2,
    CLOSE: 0x8,
    PING: 0x9,
    PONG: 0xa,
  });
});

test('WS_STATES has the four ready states', () => {
  assert.deepEqual({ ...velocy.WS_STATES }, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
});

test('WS_CLOSE_CODES has the documented codes and the reserved ones', () => {
  const expected = {
    NORMAL: 1000,
    GOING_AWAY: 1001,
    PROTOCOL_ERROR: 1002,
    UNSUPPORTED_DATA: 1003,
    NO_STATUS_RECEIVED: 1005,
    ABNORMAL_CLOSURE: 1006,
    INVALID_FRAME_PAYLOAD: 1007,
    POLICY_VIOLATION: 1008,
    MESSAGE_TOO_BIG: 1009,
    MANDATORY_EXTENSION: 1010,
    INTERNAL_ERROR: 1011,
    SERVICE_RESTART: 1012,
    TRY_AGAIN_LATER: 1013,
  };
  for (const [name, code] of Object.entries(expected)) {
    assert.equal(velocy.WS_CLOSE_CODES[name], code, name);
  }
  for (const [name, code] of Object.entries(velocy.WS_CLOSE_CODES)) {
    assert.ok(Number.isInteger(code) && code >= 1000 && code <= 4999, `${name} = ${code}`);
  }
});
