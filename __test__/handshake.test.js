'use strict';

// The HTTP/1.1 upgrade handshake (RFC 6455 §4.2) as seen on the wire: status lines and headers
// for valid and invalid requests, sent over raw TCP. After every refused request the server
// must still accept a real client.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const { Router } = require('..');
const {
  HOST,
  listen,
  connect,
  nextMessage,
  once,
  withTimeout,
  wsKey,
  acceptKey,
  upgradeRequest,
  parseResponse,
  rawHttp,
  clientFrame,
  parseFrames,
} = require('./helpers');

const STATUS = {
  400: 'HTTP/1.1 400 Bad Request',
  404: 'HTTP/1.1 404 Not Found',
  405: 'HTTP/1.1 405 Method Not Allowed',
  426: 'HTTP/1.1 426 Upgrade Required',
  431: 'HTTP/1.1 431 Request Header Fields Too Large',
};

describe('handshake', () => {
  let server;
  let port;
  let url;

  before(async () => {
    const router = new Router();
    router.ws('/ws/echo', (ws) => {
      ws.on('message', (data, isBinary) => (isBinary ? ws.sendBinary(data) : ws.send(data)));
    });
    ({ server, port, url } = await listen(router));
  });

  after(() => server.close());

  /** The server still completes a real handshake and echoes a message. */
  async function assertStillServes() {
    const ws = await connect(`${url}/ws/echo`);
    try {
      ws.send('still here');
      const { data, isBinary } = await nextMessage(ws);
      assert.equal(isBinary, false);
      assert.equal(data.toString(), 'still here');
    } finally {
      ws.terminate();
    }
  }

  /** Sends `request` and checks the exact status line of the answer. */
  async function expectStatus(request, status) {
    const res = parseResponse(await rawHttp(port, request));
    assert.equal(res.statusLine, STATUS[status], `full response: ${JSON.stringify(res)}`);
    await assertStillServes();
    return res;
  }

  test('a valid upgrade gets 101 with the right Sec-WebSocket-Accept', async () => {
    const key = wsKey();
    const { text, socket } = await rawHttp(port, upgradeRequest('/ws/echo', { 'Sec-WebSocket-Key': key }), {
      untilHead: true,
    });
    socket.destroy();
    const res = parseResponse(text);
    assert.equal(res.statusLine, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(res.headers.upgrade.toLowerCase(), 'websocket');
    assert.match(res.headers.connection, /(^|,)\s*upgrade\s*(,|$)/i);
    assert.equal(res.headers['sec-websocket-accept'], acceptKey(key));
  });

  test('the accept key matches the RFC 6455 example', async () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const { text, socket } = await rawHttp(port, upgradeRequest('/ws/echo', { 'Sec-WebSocket-Key': key }), {
      untilHead: true,
    });
    socket.destroy();
    assert.equal(parseResponse(text).headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  test('token lists and case-insensitive names and values are accepted', async () => {
    const key = wsKey();
    const request =
      'GET /ws/echo HTTP/1.1\r\n' +
      'host: localhost\r\n' +
      'upgrade: WebSocket\r\n' +
      'connection: keep-alive, UPGRADE\r\n' +
      `sec-websocket-key: ${key}\r\n` +
      'SEC-WEBSOCKET-VERSION: 13\r\n\r\n';
    const { text, socket } = await rawHttp(port, request, { untilHead: true });
    socket.destroy();
    const res = parseResponse(text);
    assert.equal(res.statusLine, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(res.headers['sec-websocket-accept'], acceptKey(key));
  });

  test('Connection: keep-alive, Upgrade is accepted', async () => {
    const { text, socket } = await rawHttp(port, upgradeRequest('/ws/echo', { Connection: 'keep-alive, Upgrade' }), {
      untilHead: true,
    });
    socket.destroy();
    assert.equal(parseResponse(text).statusLine, 'HTTP/1.1 101 Switching Protocols');
  });

  test('a valid upgrade to a path with no route gets 404', async () => {
    await expectStatus(upgradeRequest('/ws/nothing-here'), 404);
    await expectStatus(upgradeRequest('/ws/echo/extra'), 404);
  });

  test('a plain GET gets 426 on a WebSocket route and 404 elsewhere', async () => {
    const res = await expectStatus('GET /ws/echo HTTP/1.1\r\nHost: localhost\r\n\r\n', 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
    await expectStatus('GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n', 404);
  });

  test('an unsupported or missing Sec-WebSocket-Version gets 426 naming version 13', async () => {
    let res = await expectStatus(upgradeRequest('/ws/echo', { 'Sec-WebSocket-Version': '8' }), 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
    res = await expectStatus(upgradeRequest('/ws/echo', { 'Sec-WebSocket-Version': null }), 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
  });

  test('a missing, short or non-base64 Sec-WebSocket-Key gets 400', async () => {
    await expectStatus(upgradeRequest('/ws/echo', { 'Sec-WebSocket-Key': null }), 400);
    // Valid base64, but 5 bytes rather than 16.
    await expectStatus(upgradeRequest('/ws/echo', { 'Sec-WebSocket-Key': 'c2hvcnQ=' }), 400);
    await expectStatus(upgradeRequest('/ws/echo', { 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!!!' }), 400);
  });

  test('Upgrade: h2c gets 400', async () => {
    await expectStatus(upgradeRequest('/ws/echo', { Upgrade: 'h2c' }), 400);
  });

  test('a Connection header without the upgrade token gets 400', async () => {
    await expectStatus(upgradeRequest('/ws/echo', { Connection: 'keep-alive' }), 400);
    await expectStatus(upgradeRequest('/ws/echo', { Connection: null }), 400);
  });

  test('an upgrade with POST gets 405 with Allow: GET', async () => {
    const res = await expectStatus(upgradeRequest('/ws/echo', {}, { method: 'POST' }), 405);
    assert.equal(res.headers.allow, 'GET');
  });

  test('an upgrade over HTTP/1.0 gets 400', async () => {
    await expectStatus(upgradeRequest('/ws/echo', {}, { version: 'HTTP/1.0' }), 400);
  });

  test('bytes that are not HTTP, ending in a blank line, get 400', async () => {
    const garbage = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5]), crypto.randomBytes(64), Buffer.from('\r\n\r\n')]);
    await expectStatus(garbage, 400);
  });

  test('bytes that are not HTTP get 400 at once, without waiting for a blank line', async () => {
    // What a TLS client sends first. No HTTP request can start with byte 0x16, so a server
    // can answer at once, as Node's http server does, instead of holding the socket until
    // its handshake timeout.
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00]), crypto.randomBytes(64)]);
    const text = await rawHttp(port, hello, { timeoutMs: 3000 });
    assert.equal(parseResponse(text).statusLine, STATUS[400], `full response: ${JSON.stringify(text)}`);
    await assertStillServes();
  });

  test('a request head over 16 KiB gets 431', async () => {
    await expectStatus(upgradeRequest('/ws/echo', { 'X-Big': 'a'.repeat(17 * 1024) }), 431);
  });

  test('a request head just under 16 KiB is accepted', async () => {
    const filler = 'a'.repeat(15 * 1024);
    const key = wsKey();
    const { text, socket } = await rawHttp(
      port,
      upgradeRequest('/ws/echo', { 'X-Filler': filler, 'Sec-WebSocket-Key': key }),
      { untilHead: true }
    );
    socket.destroy();
    const res = parseResponse(text);
    assert.equal(res.statusLine, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(res.headers['sec-websocket-accept'], acceptKey(key));
  });

  test('more than 128 headers get 431', async () => {
    const many = {};
    for (let i = 0; i < 130; i++) many[`X-H${i}`] = 'v';
    await expectStatus(upgradeRequest('/ws/echo', many), 431);
  });

  test('frames written together with the request head are read', async (t) => {
    const socket = net.connect(port, HOST);
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const key = wsKey();
    socket.write(
      Buffer.concat([
        Buffer.from(upgradeRequest('/ws/echo', { 'Sec-WebSocket-Key': key })),
        clientFrame(0x1, 'first'),
        clientFrame(0x2, Buffer.from([1, 2, 3])),
        clientFrame(0x1, 'third'),
      ])
    );

    let buf = Buffer.alloc(0);
    let head = null;
    const frames = [];
    await withTimeout(
      new Promise((resolve, reject) => {
        socket.on('error', reject);
        socket.on('end', () => reject(new Error('the server ended the connection')));
        socket.on('data', (chunk) => {
          buf = Buffer.concat([buf, chunk]);
          if (head === null) {
            const end = buf.indexOf('\r\n\r\n');
            if (end === -1) return;
            head = parseResponse(buf.subarray(0, end + 4).toString('latin1'));
            buf = buf.subarray(end + 4);
          }
          const parsed = parseFrames(buf);
          frames.push(...parsed.frames);
          buf = Buffer.from(parsed.rest);
          if (frames.length >= 3) resolve();
        });
      }),
      5000,
      'three echoed frames'
    );

    assert.equal(head.statusLine, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(head.headers['sec-websocket-accept'], acceptKey(key));
    assert.deepEqual(
      frames.map((f) => [f.fin, f.opcode, f.opcode === 1 ? f.payload.toString() : [...f.payload]]),
      [
        [true, 0x1, 'first'],
        [true, 0x2, [1, 2, 3]],
        [true, 0x1, 'third'],
      ]
    );
  });
});
