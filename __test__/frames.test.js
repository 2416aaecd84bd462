'use strict';

// Framing (RFC 6455 §5) as seen on the wire: frames built and masked here by hand, written on a
// raw TCP socket after a hand-made upgrade, and the server's frames parsed here too. Every way
// of breaking the protocol must fail the connection with the right close code (§7.4.1), report
// that code to JS, and end the TCP connection.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const { Router } = require('..');
const { HOST, listen, withTimeout, wsKey, acceptKey } = require('./helpers');

const TIMEOUT = 5000;
const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };
/** `maxPayloadSize` default (src/config.rs). */
const DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024;

// ---- frame builder and parser -------------------------------------------------------------

/**
 * A client frame. `payload` is a Buffer, string or byte array. Options: `fin` (default true),
 * `rsv` (the three RSV bits as 0-7), `mask` (default true; false sends it unmasked, which
 * clients must not do) and `length`, a declared payload length (number or BigInt) that may
 * differ from the bytes actually appended.
 */
function frame(opcode, payload = [], { fin = true, rsv = 0, mask = true, length } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = BigInt(length === undefined ? data.length : length);
  const b0 = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | opcode;
  const m = mask ? 0x80 : 0;
  let head;
  if (len < 126n) {
    head = Buffer.from([b0, m | Number(len)]);
  } else if (len <= 0xffffn) {
    head = Buffer.from([b0, m | 126, 0, 0]);
    head.writeUInt16BE(Number(len), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    head.writeBigUInt64BE(len, 2);
  }
  if (!mask) return Buffer.concat([head, data]);
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

/** A close frame payload: the code (2 bytes, big-endian) and then the reason. */
function closePayload(code, reason = Buffer.alloc(0)) {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(code);
  return Buffer.concat([p, Buffer.isBuffer(reason) ? reason : Buffer.from(reason)]);
}

/**
 * Parses server frames incrementally. Server frames must be unmasked and carry no RSV bits;
 * anything else is a parse error, reported to the waiting reader.
 */
class FrameParser {
  constructor() {
    this.buf = Buffer.alloc(0);
  }

  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
  }

  /** The next whole frame `{ fin, opcode, payload }`, or null when more bytes are needed. */
  shift() {
    const buf = this.buf;
    if (buf.length < 2) return null;
    if (buf[0] & 0x70) throw new Error(`server frame with RSV bits: 0x${buf[0].toString(16)}`);
    if (buf[1] & 0x80) throw new Error('server frame is masked (RFC 6455 §5.1)');
    let len = buf[1] & 0x7f;
    let pos = 2;
    if (len === 126) {
      if (buf.length < 4) return null;
      len = buf.readUInt16BE(2);
      pos = 4;
    } else if (len === 127) {
      if (buf.length < 10) return null;
      len = Number(buf.readBigUInt64BE(2));
      pos = 10;
    }
    if (buf.length < pos + len) return null;
    const f = { fin: (buf[0] & 0x80) !== 0, opcode: buf[0] & 0x0f, payload: buf.subarray(pos, pos + len) };
    this.buf = buf.subarray(pos + len);
    return f;
  }
}

// ---- raw client ---------------------------------------------------------------------------

/** A WebSocket client on a bare `net.Socket`: the upgrade by hand, then raw frames. */
class RawClient {
  constructor(socket) {
    this.socket = socket;
    this.parser = new FrameParser();
    this.frames = [];
    this.waiters = [];
    this.failure = null;
    this.ended = false;
    this.closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('end', () => {
      this.ended = true;
      this._wake();
    });
    socket.on('close', () => this._wake());
    // A reset shows as 'close' without 'end', which the failure assertions then report.
    socket.on('error', () => {});
  }

  /**
   * Opens a socket and completes the upgrade to `path`; bytes after the 101 are frames.
   * `onConnect(localPort)` runs once the TCP connection exists, before the upgrade request.
   */
  static async connect(port, path, t, onConnect = () => {}) {
    const socket = net.connect(port, HOST);
    socket.setNoDelay(true);
    t.after(() => socket.destroy());
    const key = wsKey();
    const head = await withTimeout(
      new Promise((resolve, reject) => {
        let text = Buffer.alloc(0);
        const onData = (chunk) => {
          text = Buffer.concat([text, chunk]);
          const end = text.indexOf('\r\n\r\n');
          if (end === -1) return;
          socket.removeListener('data', onData);
          socket.removeListener('close', onClose);
          resolve({ head: text.subarray(0, end).toString('latin1'), rest: text.subarray(end + 4) });
        };
        const onClose = () => reject(new Error('connection closed during the handshake'));
        socket.on('data', onData);
        socket.once('close', onClose);
        socket.once('connect', () => {
          onConnect(socket.localPort);
          socket.write(
            `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
          );
        });
      }),
      TIMEOUT,
      'the upgrade response'
    );
    assert.match(head.head, /^HTTP\/1\.1 101 /);
    assert.match(head.head, new RegExp(`\\r\\nsec-websocket-accept: ${escapeRegExp(acceptKey(key))}(\\r\\n|$)`, 'i'));
    const client = new RawClient(socket);
    socket.on('data', (chunk) => client._data(chunk));
    if (head.rest.length) client._data(head.rest);
    return client;
  }

  get localPort() {
    return this.socket.localPort;
  }

  get remotePort() {
    return this.socket.remotePort;
  }

  _data(chunk) {
    this.parser.push(chunk);
    try {
      for (let f = this.parser.shift(); f !== null; f = this.parser.shift()) this.frames.push(f);
    } catch (err) {
      this.failure = err;
    }
    this._wake();
  }

  _wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Writes bytes and resolves once they are handed to the kernel. */
  write(...bufs) {
    return new Promise((resolve, reject) =>
      this.socket.write(Buffer.concat(bufs), (err) => (err ? reject(err) : resolve()))
    );
  }

  /** Writes `buf` one byte per write call, each flushed before the next (no Nagle). */
  async writeBytewise(buf) {
    for (let i = 0; i < buf.length; i++) await this.write(buf.subarray(i, i + 1));
  }

  /** The next server frame; rejects if the connection ends first or on timeout. */
  nextFrame(what = 'a frame') {
    return withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          if (this.failure) return reject(this.failure);
          if (this.frames.length) return resolve(this.frames.shift());
          if (this.ended || this.socket.destroyed) return reject(new Error(`connection ended while waiting for ${what}`));
          this.waiters.push(check);
        };
        check();
      }),
      TIMEOUT,
      what
    );
  }

  /** Waits for the server's close frame; returns `{ code, reason }` (code null if empty). */
  async nextClose() {
    const f = await this.nextFrame('a close frame');
    assert.equal(f.opcode, OP.CLOSE, `expected a close frame, got opcode ${f.opcode}`);
    assert.equal(f.fin, true);
    if (f.payload.length === 0) return { code: null, reason: '' };
    assert.ok(f.payload.length >= 2, 'close payload of one byte');
    return { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString() };
  }

  /**
   * Asserts the server closes the TCP connection gracefully: FIN ('end'), then 'close', and
   * that it sent nothing after its close frame.
   */
  async assertTcpClosed() {
    await withTimeout(this.closed, TIMEOUT, 'the server to close the TCP connection');
    assert.equal(this.ended, true, 'the connection was reset instead of ended');
    assert.equal(this.failure, null);
    assert.deepEqual(this.frames, [], 'frames after the close frame');
  }
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---- suite --------------------------------------------------------------------------------

describe('frames', () => {
  let port;
  let server;
  // "serverPort:clientPort" -> { closed: Promise<{ code, reason }>, resolve }: server-side
  // close events. Client ports are reused (the same port may even serve connections to two
  // servers at once), so the key names the server too, and a client's entry is cleared as its
  // TCP connection opens, before the server can have run its handler for it.
  const serverSide = new Map();

  function sideOf(serverPort, clientPort) {
    const key = `${serverPort}:${clientPort}`;
    let s = serverSide.get(key);
    if (s === undefined) {
      let resolve;
      const closed = new Promise((r) => (resolve = r));
      s = { closed, resolve };
      serverSide.set(key, s);
    }
    return s;
  }

  /** The close event the route's `ws` emitted for `client`. */
  function serverClose(client) {
    return withTimeout(sideOf(client.remotePort, client.localPort).closed, TIMEOUT, 'the server-side close event');
  }

  /** An echo server at /echo whose connections report their close events to `serverSide`. */
  async function echoServer(options) {
    const router = new Router(options);
    let serverPort;
    router.ws('/echo', (ws) => {
      const side = sideOf(serverPort, ws.remotePort);
      ws.on('message', (data, isBinary) => (isBinary ? ws.sendBinary(data) : ws.send(data)));
      ws.on('close', (code, reason) => side.resolve({ code, reason: String(reason) }));
    });
    const listening = await listen(router);
    serverPort = listening.port;
    return listening;
  }

  before(async () => {
    ({ server, port } = await echoServer());
  });

  after(() => server.close());

  const open = (t, toPort = port) =>
    RawClient.connect(toPort, '/echo', t, (localPort) => serverSide.delete(`${toPort}:${localPort}`));

  /**
   * Writes `bytes` (a Buffer or an array of Buffers, written separately) and asserts the
   * server fails the connection: its first frame is a close with `code`, the route's `ws`
   * gets a close event with that code, and the TCP connection ends.
   */
  async function assertFails(t, bytes, code, toPort = port) {
    const c = await open(t, toPort);
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) await c.write(b);
    const got = await c.nextClose();
    assert.equal(got.code, code, `close code (reason: ${JSON.stringify(got.reason)})`);
    assert.equal((await serverClose(c)).code, code);
    await c.assertTcpClosed();
    return c;
  }

  /** Sends `frames` and expects one echoed message. */
  async function assertEcho(c, frames, opcode, payload) {
    await c.write(...frames);
    const f = await c.nextFrame('the echo');
    assert.equal(f.opcode, opcode);
    assert.equal(f.fin, true);
    assert.deepEqual(f.payload, Buffer.from(payload));
  }

  describe('valid traffic', () => {
    test('text and binary frames are echoed with their type', async (t) => {
      const c = await open(t);
      await assertEcho(c, [frame(OP.TEXT, 'héllo')], OP.TEXT, 'héllo');
      await assertEcho(c, [frame(OP.BINARY, [0, 1, 2, 255])], OP.BINARY, [0, 1, 2, 255]);
      await assertEcho(c, [frame(OP.TEXT, '')], OP.TEXT, '');
      const big = crypto.randomBytes(70000); // 64-bit extended length
      await assertEcho(c, [frame(OP.BINARY, big)], OP.BINARY, big);
    });

    test('a fragmented message is reassembled', async (t) => {
      const c = await open(t);
      await assertEcho(
        c,
        [frame(OP.TEXT, 'frag', { fin: false }), frame(OP.CONT, '', { fin: false }), frame(OP.CONT, 'ments')],
        OP.TEXT,
        'fragments'
      );
    });

    test('a frame delivered one byte at a time is read correctly', async (t) => {
      const c = await open(t);
      await c.writeBytewise(frame(OP.TEXT, 'one byte at a time'));
      let f = await c.nextFrame('the echo');
      assert.deepEqual([f.opcode, f.payload.toString()], [OP.TEXT, 'one byte at a time']);

      const medium = crypto.randomBytes(300); // 16-bit extended length
      await c.writeBytewise(frame(OP.BINARY, medium));
      f = await c.nextFrame('the echo');
      assert.deepEqual([f.opcode, f.payload], [OP.BINARY, medium]);

      // 64-bit extended length: the 14 header bytes one by one, then the payload at once.
      const large = crypto.randomBytes(70000);
      const bytes = frame(OP.BINARY, large);
      await c.writeBytewise(bytes.subarray(0, 14));
      await c.write(bytes.subarray(14));
      f = await c.nextFrame('the echo');
      assert.deepEqual([f.opcode, f.payload], [OP.BINARY, large]);

      // A fragmented message with a ping in between, all byte by byte.
      await c.writeBytewise(
        Buffer.concat([frame(OP.TEXT, 'ab', { fin: false }), frame(OP.PING, 'p'), frame(OP.CONT, 'cd')])
      );
      f = await c.nextFrame('the pong');
      assert.deepEqual([f.opcode, f.payload.toString()], [OP.PONG, 'p']);
      f = await c.nextFrame('the echo');
      assert.deepEqual([f.opcode, f.payload.toString()], [OP.TEXT, 'abcd']);
    });

    test('a code point split across fragments is echoed intact', async (t) => {
      const c = await open(t);
      // "€" (e2 82 ac) split after its first and after its second byte.
      const euro = Buffer.from('€');
      await assertEcho(c, [frame(OP.TEXT, euro.subarray(0, 1), { fin: false }), frame(OP.CONT, euro.subarray(1))], OP.TEXT, '€');
      await assertEcho(c, [frame(OP.TEXT, euro.subarray(0, 2), { fin: false }), frame(OP.CONT, euro.subarray(2))], OP.TEXT, '€');
      // "a𝄞b": the 4-byte code point spread over four fragments, one byte each.
      const text = Buffer.from('a𝄞b');
      const parts = [frame(OP.TEXT, text.subarray(0, 2), { fin: false })];
      for (let i = 2; i < 5; i++) parts.push(frame(OP.CONT, text.subarray(i, i + 1), { fin: false }));
      parts.push(frame(OP.CONT, text.subarray(5), { fin: true }));
      await assertEcho(c, parts, OP.TEXT, 'a𝄞b');
    });

    test('a ping between the fragments of a message is answered at once', async (t) => {
      const c = await open(t);
      await c.write(frame(OP.TEXT, 'Hel', { fin: false }), frame(OP.PING, 'are you there?'));
      // The pong comes before the message is finished: the final fragment is not sent yet.
      const pong = await c.nextFrame('the pong');
      assert.equal(pong.opcode, OP.PONG);
      assert.equal(pong.payload.toString(), 'are you there?');
      await c.write(frame(OP.CONT, 'lo'));
      const f = await c.nextFrame('the echo');
      assert.deepEqual([f.opcode, f.payload.toString()], [OP.TEXT, 'Hello']);
    });

    test('a ping is answered with a pong carrying the same payload', async (t) => {
      const c = await open(t);
      const data = crypto.randomBytes(125);
      await c.write(frame(OP.PING, data));
      const f = await c.nextFrame('the pong');
      assert.deepEqual([f.opcode, f.fin, f.payload], [OP.PONG, true, data]);
    });
  });

  describe('closing handshake', () => {
    test("the server echoes the peer's close code and reports it to JS", async (t) => {
      const c = await open(t);
      await c.write(frame(OP.CLOSE, closePayload(4001, 'bye')));
      const got = await c.nextClose();
      assert.equal(got.code, 4001);
      assert.deepEqual(await serverClose(c), { code: 4001, reason: 'bye' });
      await c.assertTcpClosed();
    });

    test('an empty close frame is answered with an empty close frame (JS sees 1005)', async (t) => {
      const c = await open(t);
      await c.write(frame(OP.CLOSE));
      assert.deepEqual(await c.nextClose(), { code: null, reason: '' });
      assert.equal((await serverClose(c)).code, 1005);
      await c.assertTcpClosed();
    });

    test('a close code the registry allows (1000-1003, 1007-1014, 3000-4999) is echoed', async (t) => {
      for (const code of [1000, 1003, 1007, 1014, 3000, 4999]) {
        const c = await open(t);
        await c.write(frame(OP.CLOSE, closePayload(code, 'ok')));
        assert.equal((await c.nextClose()).code, code);
        await c.assertTcpClosed();
      }
    });

    test('frames after the close frame are ignored', async (t) => {
      const c = await open(t);
      await c.write(frame(OP.CLOSE, closePayload(1000)), frame(OP.TEXT, 'late'), frame(OP.PING, 'late'));
      assert.equal((await c.nextClose()).code, 1000);
      await c.assertTcpClosed();
    });
  });

  describe('protocol errors fail the connection', () => {
    test('an unmasked client frame gets 1002', async (t) => {
      await assertFails(t, frame(OP.TEXT, 'hi', { mask: false }), 1002);
    });

    for (const rsv of [4, 2, 1]) {
      test(`RSV bits 0b${rsv.toString(2).padStart(3, '0')} get 1002`, async (t) => {
        await assertFails(t, frame(OP.TEXT, 'hi', { rsv }), 1002);
      });
    }

    for (const opcode of [0x3, 0x7, 0xb, 0xf]) {
      test(`unknown opcode 0x${opcode.toString(16)} gets 1002`, async (t) => {
        await assertFails(t, frame(opcode, 'x'), 1002);
      });
    }

    test('a fragmented control frame (ping without FIN) gets 1002', async (t) => {
      await assertFails(t, frame(OP.PING, 'p', { fin: false }), 1002);
    });

    test('a control frame with more than 125 bytes of payload gets 1002', async (t) => {
      await assertFails(t, frame(OP.PING, Buffer.alloc(126, 0x61)), 1002);
    });

    test('a close frame with more than 125 bytes of payload gets 1002', async (t) => {
      await assertFails(t, frame(OP.CLOSE, closePayload(1000, 'x'.repeat(124))), 1002);
    });

    test('a continuation frame with no message started gets 1002', async (t) => {
      await assertFails(t, frame(OP.CONT, 'x'), 1002);
    });

    test('a non-final continuation frame with no message started gets 1002', async (t) => {
      await assertFails(t, frame(OP.CONT, 'x', { fin: false }), 1002);
    });

    test('a continuation after a finished message gets 1002', async (t) => {
      const c = await open(t);
      await assertEcho(c, [frame(OP.TEXT, 'done')], OP.TEXT, 'done');
      await c.write(frame(OP.CONT, 'more'));
      assert.equal((await c.nextClose()).code, 1002);
      assert.equal((await serverClose(c)).code, 1002);
      await c.assertTcpClosed();
    });

    for (const [first, second] of [
      [OP.TEXT, OP.TEXT],
      [OP.TEXT, OP.BINARY],
      [OP.BINARY, OP.TEXT],
    ]) {
      test(`a new message (opcode ${second}) inside a fragmented one (opcode ${first}) gets 1002`, async (t) => {
        await assertFails(t, [frame(first, 'a', { fin: false }), frame(second, 'b')], 1002);
      });
    }

    test('a declared length with the high bit set (2^63) gets 1002', async (t) => {
      await assertFails(t, frame(OP.BINARY, [], { length: 1n << 63n }), 1002);
    });

    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
      test(`close code ${code} gets 1002`, async (t) => {
        await assertFails(t, frame(OP.CLOSE, closePayload(code)), 1002);
      });
    }

    test('a close frame with a one-byte payload gets 1002', async (t) => {
      await assertFails(t, frame(OP.CLOSE, [0x03]), 1002);
    });

    test('a close reason that is not UTF-8 gets 1002', async (t) => {
      await assertFails(t, frame(OP.CLOSE, closePayload(1000, Buffer.from([0x6f, 0x6b, 0xff]))), 1002);
    });

    test('after a protocol error, later frames get no answer', async (t) => {
      const c = await assertFails(t, Buffer.concat([frame(OP.TEXT, 'x', { rsv: 4 }), frame(OP.PING, 'p')]), 1002);
      assert.deepEqual(c.frames, []);
    });
  });

  describe('invalid UTF-8 fails the connection with 1007', () => {
    test('in a one-frame text message', async (t) => {
      await assertFails(t, frame(OP.TEXT, [0x68, 0x69, 0xff]), 1007);
    });

    test('in the first fragment, without waiting for the rest of the message', async (t) => {
      // No final fragment is ever sent: the server must not wait for it.
      await assertFails(t, frame(OP.TEXT, [0x61, 0xff], { fin: false }), 1007);
    });

    test('a sequence that can never complete (a UTF-16 surrogate) fails at the first fragment', async (t) => {
      await assertFails(t, frame(OP.TEXT, [0x61, 0xed, 0xa0], { fin: false }), 1007);
    });

    test('in a later fragment, before the message is finished', async (t) => {
      await assertFails(t, [frame(OP.TEXT, 'ok', { fin: false }), frame(OP.CONT, [0xc0, 0xaf], { fin: false })], 1007);
    });

    test('in the part of a single frame that has arrived, before the rest of its payload', async (t) => {
      // The frame declares 1000 bytes; only 4 are sent.
      const whole = frame(OP.TEXT, Buffer.concat([Buffer.from([0x61, 0xff, 0x62, 0x63]), Buffer.alloc(996, 0x61)]));
      await assertFails(t, whole.subarray(0, 4 + 4 + 4), 1007);
    });

    test('a message that ends inside a code point', async (t) => {
      await assertFails(t, [frame(OP.TEXT, [0x61, 0xe2], { fin: false }), frame(OP.CONT, [0x82])], 1007);
    });
  });

  describe('maxPayloadSize: 1024 gives 1009 over the limit, counting all fragments', () => {
    let small;
    let smallPort;

    before(async () => {
      ({ server: small, port: smallPort } = await echoServer({ websocket: { maxPayloadSize: 1024 } }));
    });

    after(() => small.close());

    test('a message of exactly 1024 bytes is echoed, in one frame or in fragments', async (t) => {
      const c = await open(t, smallPort);
      const data = crypto.randomBytes(1024);
      await assertEcho(c, [frame(OP.BINARY, data)], OP.BINARY, data);
      await assertEcho(
        c,
        [frame(OP.BINARY, data.subarray(0, 1000), { fin: false }), frame(OP.CONT, data.subarray(1000))],
        OP.BINARY,
        data
      );
    });

    test('a frame declaring 1025 bytes is refused at its header, without waiting for the payload', async (t) => {
      await assertFails(t, frame(OP.TEXT, [], { length: 1025 }), 1009, smallPort);
    });

    test('a continuation that takes the message over 1024 bytes is refused at its header', async (t) => {
      await assertFails(
        t,
        [frame(OP.BINARY, Buffer.alloc(1000), { fin: false }), frame(OP.CONT, [], { length: 25, fin: false })],
        1009,
        smallPort
      );
    });

    test('control frames do not count towards the limit of the message they interrupt', async (t) => {
      const c = await open(t, smallPort);
      const data = crypto.randomBytes(1024);
      await c.write(frame(OP.BINARY, data.subarray(0, 1000), { fin: false }), frame(OP.PING, Buffer.alloc(125)));
      assert.equal((await c.nextFrame('the pong')).opcode, OP.PONG);
      await c.write(frame(OP.CONT, data.subarray(1000)));
      const f = await c.nextFrame('the echo');
      assert.deepEqual([f.opcode, f.payload], [OP.BINARY, data]);
    });
  });

  describe('message size limit (maxPayloadSize, default 100 MiB) gives 1009', () => {
    test('a frame declaring 2^40 bytes is refused at its header, without waiting for the payload', async (t) => {
      await assertFails(t, frame(OP.BINARY, [], { length: 1n << 40n }), 1009);
    });

    test('a frame declaring one byte over the default limit is refused at its header', async (t) => {
      await assertFails(t, frame(OP.TEXT, [], { length: DEFAULT_MAX_PAYLOAD + 1 }), 1009);
    });

    test('fragments whose declared total exceeds the limit are refused at the header that crosses it', async (t) => {
      await assertFails(
        t,
        [frame(OP.BINARY, Buffer.alloc(10), { fin: false }), frame(OP.CONT, [], { length: DEFAULT_MAX_PAYLOAD - 9 })],
        1009
      );
    });
  });
});
