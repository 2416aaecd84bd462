'use strict';

// maxPayloadSize bounds a whole message, all its fragments together: a message over it closes
// the connection with 1009 as soon as the declared lengths exceed the limit, before its payload
// is read, so a peer cannot make the server buffer more than the limit. (frames.test.js checks
// single frames against small and default limits; this file checks fragment totals, floods of
// connections and the server's memory while they happen.)

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { spawn } = require('node:child_process');
const WebSocket = require('ws');
const { Router } = require('..');
const { listen, connect, collect, nextClose, rawClient, closeInfo, withTimeout, once } = require('./helpers');

const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8 };
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A client frame header declaring `length` bytes (number or BigInt), masked with the all-zero
 * key (valid, and it leaves the payload as is, so large payloads need no masking loop).
 */
function header(opcode, length, { fin = true } = {}) {
  const len = BigInt(length);
  const b0 = (fin ? 0x80 : 0) | opcode;
  let head;
  if (len < 126n) head = Buffer.from([b0, 0x80 | Number(len)]);
  else if (len <= 0xffffn) {
    head = Buffer.from([b0, 0x80 | 126, 0, 0]);
    head.writeUInt16BE(Number(len), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(len, 2);
  }
  return Buffer.concat([head, Buffer.alloc(4)]);
}

/** A whole frame with the all-zero mask key. */
function frame(opcode, payload, options) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  return Buffer.concat([header(opcode, data.length, options), data]);
}

/** `data` as a message of `piece`-byte fragments (the first with `opcode`); `fin` on the last. */
function fragments(opcode, data, piece, { last = true } = {}) {
  const out = [];
  for (let off = 0; off < data.length; off += piece) {
    const end = Math.min(off + piece, data.length);
    out.push(frame(off === 0 ? opcode : OP.CONT, data.subarray(off, end), { fin: last && end === data.length }));
  }
  return Buffer.concat(out);
}

/**
 * A server whose '/in' route answers each message with `<text|binary> <bytes> <sha1>` and
 * whose server-side connections are collected.
 */
async function sizeServer(t, maxPayloadSize) {
  const router = new Router({ websocket: { maxPayloadSize, heartbeatInterval: 0 } });
  const conns = collect();
  router.ws('/in', (ws, req) => {
    ws.on('message', (data, isBinary) => {
      const bytes = Buffer.from(data);
      ws.send(`${isBinary ? 'binary' : 'text'} ${bytes.length} ${crypto.createHash('sha1').update(bytes).digest('hex')}`);
    });
    conns.handler(ws, req);
  });
  const { port, url } = await listen(router, t);
  return { router, conns, port, url };
}

const sha1 = (b) => crypto.createHash('sha1').update(b).digest('hex');

/** Asserts the next frame of a raw client is the server's summary of `data`. */
async function assertSummary(client, kind, data) {
  const f = await client.next();
  assert.equal(f.opcode, OP.TEXT, `expected the summary, got opcode ${f.opcode}`);
  assert.equal(String(f.payload), `${kind} ${data.length} ${sha1(data)}`);
}

/**
 * Asserts the server fails a raw client's connection with 1009: the close frame is the next
 * frame, the server-side connection reports 1009 and received no message, and the socket ends.
 */
async function assertTooBig(client, serverSide) {
  const f = await client.next();
  assert.equal(f.opcode, OP.CLOSE, `expected a close frame, got opcode ${f.opcode}`);
  assert.equal(closeInfo(f).code, 1009);
  assert.equal((await serverSide).code, 1009);
  assert.equal((await withTimeout(client.closed, 5000, 'the socket to end')).ended, true);
}

test('a message of exactly maxPayloadSize is delivered, in one frame or in 1 KiB fragments, and again after it', async (t) => {
  const { conns, port } = await sizeServer(t, 1 * MiB);
  const client = await rawClient(port, '/in', { t });
  await conns.next();
  const data = crypto.randomBytes(1 * MiB);
  await client.write(frame(OP.BINARY, data));
  await assertSummary(client, 'binary', data);
  // 1024 fragments of 1 KiB: the total is the limit exactly. The count starts again with each
  // message, so the same again is fine too.
  await client.write(fragments(OP.BINARY, data, KiB));
  await assertSummary(client, 'binary', data);
  const text = Buffer.from('v'.repeat(1 * MiB));
  await client.write(fragments(OP.TEXT, text, KiB));
  await assertSummary(client, 'text', text);
});

test('1 KiB fragments: the header of the fragment that takes the message over the limit gets 1009', async (t) => {
  const { conns, port } = await sizeServer(t, 1 * MiB);
  const client = await rawClient(port, '/in', { t });
  const { ws } = await conns.next();
  const serverSide = nextClose(ws);
  let messages = 0;
  ws.on('message', () => messages++);
  // 1 MiB in 1024 non-final fragments is still within the limit...
  await client.write(fragments(OP.BINARY, crypto.randomBytes(1 * MiB), KiB, { last: false }));
  // ...and one more byte, declared in a header with no payload yet, is not.
  await client.write(header(OP.CONT, 1, { fin: true }));
  await assertTooBig(client, serverSide);
  assert.equal(messages, 0);
});

test('many small fragments far beyond the limit are refused once their total crosses it', async (t) => {
  const { conns, port, url } = await sizeServer(t, 64 * KiB);
  const client = await rawClient(port, '/in', { t });
  const { ws } = await conns.next();
  const serverSide = nextClose(ws);
  // 16384 fragments of 100 bytes: 1.6 MB, 25 times the limit, written at once.
  client.write(fragments(OP.TEXT, Buffer.alloc(16384 * 100, 'x'), 100, { last: false })).catch(() => {});
  await assertTooBig(client, serverSide);
  // The server is still up.
  const other = await connect(`${url}/in`, t);
  other.send('fine');
  assert.equal(String((await once(other, 'message'))[0]), `text 4 ${sha1(Buffer.from('fine'))}`);
});

test('frames declaring huge lengths get 1009 at once, first frame or continuation', async (t) => {
  const { conns, port } = await sizeServer(t, 1 * MiB);
  for (const bytes of [
    header(OP.BINARY, 1n << 40n),
    header(OP.TEXT, (1n << 62n) + 5n, { fin: false }),
    Buffer.concat([frame(OP.BINARY, Buffer.alloc(10), { fin: false }), header(OP.CONT, 1n << 40n)]),
    Buffer.concat([frame(OP.TEXT, 'abc', { fin: false }), header(OP.CONT, 1 * MiB - 2, { fin: false })]),
  ]) {
    const client = await rawClient(port, '/in', { t });
    const { ws } = await conns.next();
    const serverSide = nextClose(ws);
    // Only the headers: the refusal cannot be waiting for the payload.
    await client.write(bytes);
    await assertTooBig(client, serverSide);
  }
});

test('the limit counts bytes, not characters, of a text message', async (t) => {
  const { conns, port } = await sizeServer(t, 1024);
  const ok = Buffer.from('€'.repeat(341) + 'a'); // 1024 bytes
  const over = Buffer.from('€'.repeat(342)); // 342 characters, 1026 bytes
  assert.equal(ok.length, 1024);
  const client = await rawClient(port, '/in', { t });
  const { ws } = await conns.next();
  await client.write(frame(OP.TEXT, ok));
  await assertSummary(client, 'text', ok);
  const serverSide = nextClose(ws);
  await client.write(frame(OP.TEXT, over));
  await assertTooBig(client, serverSide);
});

test('maxPayloadSize 1: an empty and a one-byte message pass, two bytes do not', async (t) => {
  const { conns, port } = await sizeServer(t, 1);
  const client = await rawClient(port, '/in', { t });
  const { ws } = await conns.next();
  await client.write(frame(OP.BINARY, Buffer.alloc(0)));
  await assertSummary(client, 'binary', Buffer.alloc(0));
  await client.write(frame(OP.BINARY, Buffer.from([7])));
  await assertSummary(client, 'binary', Buffer.from([7]));
  const serverSide = nextClose(ws);
  await client.write(frame(OP.BINARY, Buffer.from([7]), { fin: false }), frame(OP.CONT, Buffer.from([8])));
  await assertTooBig(client, serverSide);
});

test('the default limit (100 MiB) is checked at the header: exactly 100 MiB is read on, one byte more is refused', async (t) => {
  const router = new Router();
  const conns = collect();
  router.ws('/in', conns.handler);
  const { port } = await listen(router, t);
  // After the header the client ends its side. A header within the limit leaves the reader
  // waiting for the payload, so the end of input is a lost connection (1006); one over the
  // limit is failed with 1009 first.
  for (const [declared, code] of [
    [100 * MiB, 1006],
    [100 * MiB + 1, 1009],
  ]) {
    const client = await rawClient(port, '/in', { t });
    const { ws } = await conns.next();
    const serverSide = nextClose(ws);
    await client.write(header(OP.BINARY, declared), Buffer.alloc(1000));
    client.socket.end();
    assert.equal((await serverSide).code, code, `declared ${declared}`);
  }
});

// ---- memory, measured in a separate server process --------------------------------------

/** The server process: a 1 MiB limit, RSS sampled every 5 ms, driven over IPC. */
const CHILD = `
const { Router, createServer } = require(${JSON.stringify(path.join(__dirname, '..'))});
const router = new Router({ websocket: { maxPayloadSize: ${1 * MiB}, heartbeatInterval: 0 } });
// 'idle' is answered once no connection is open (checked again after every close).
let idleAsked = false;
const connections = () => router.getWebSocketRouter().getStats().connections;
const report = () => {
  peak = Math.max(peak, process.memoryUsage.rss());
  process.send({ peak, rss: process.memoryUsage.rss(), connections: connections() });
};
const answerIdle = () => {
  if (idleAsked && connections() === 0) {
    idleAsked = false;
    report();
  }
};
router.ws('/in', (ws) => {
  ws.on('message', (d) => ws.send('got ' + d.length));
  ws.on('close', () => setImmediate(answerIdle));
});
const server = createServer(router);
let peak = 0;
setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 5);
process.on('message', (m) => {
  if (m === 'reset') peak = 0;
  if (m === 'reset' || m === 'report') report();
  if (m === 'idle') {
    idleAsked = true;
    answerIdle();
  }
  if (m === 'exit') process.exit(0);
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
`;

function startChild(t) {
  const child = spawn(process.execPath, ['-e', CHILD], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => child.kill());
  const ask = async (m) => {
    const reply = once(child, 'message', 10000);
    child.send(m);
    return (await reply)[0];
  };
  return { child, ask };
}

test('a flood of over-limit messages leaves the server up and its memory bounded', async (t) => {
  const { child, ask } = startChild(t);
  const [{ port }] = await once(child, 'message', 10000);
  const url = `ws://127.0.0.1:${port}/in`;
  // Warm up (runtime threads, buffers) before the baseline.
  const warm = await connect(url, t);
  warm.send(Buffer.alloc(512 * KiB));
  await once(warm, 'message');
  warm.close();
  await once(warm, 'close');

  /** Opens `n` raw connections, writes `bytes` on each and expects 1009 on every one. */
  async function flood(n, bytes) {
    const clients = await Promise.all(Array.from({ length: n }, () => rawClient(port, '/in', { t })));
    // Everything is written at once; how much of it the server reads is up to the server.
    for (const c of clients) c.write(bytes).catch(() => {});
    for (const c of clients) {
      const f = await c.next(10000);
      assert.equal(f.opcode, OP.CLOSE);
      assert.equal(closeInfo(f).code, 1009);
      c.socket.destroy();
    }
  }

  // 100 connections, each declaring 2^40 bytes and sending 1 MiB of it: 100 MiB offered, and
  // the server may keep none of it.
  let base = await ask('reset');
  await flood(100, Buffer.concat([header(OP.BINARY, 1n << 40n), Buffer.alloc(1 * MiB)]));
  let growth = (await ask('report')).peak - base.rss;
  assert.ok(growth < 16 * MiB, `huge frames: peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`);

  // 20 connections, each sending 4 MiB as 1 KiB fragments of one message: 80 MiB offered, of
  // which the server may hold at most the 1 MiB limit per connection (20 MiB, plus slack for
  // buffer growth); without a bound on the total it would hold all of it.
  base = await ask('reset');
  await flood(20, fragments(OP.BINARY, Buffer.alloc(4 * MiB), KiB, { last: false }));
  // Answered once every flooding connection is closed on the server too (or times out).
  const after = await ask('idle');
  growth = after.peak - base.rss;
  assert.ok(growth < 48 * MiB, `fragments: peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`);

  // Still serving.
  const client = await connect(url, t);
  client.send('hello');
  assert.equal(String((await once(client, 'message'))[0]), 'got 5');
  client.close();
  await once(client, 'close');
  assert.equal(client.readyState, WebSocket.CLOSED);
  child.send('exit');
});
