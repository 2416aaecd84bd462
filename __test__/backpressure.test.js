'use strict';

// Backpressure: `ws.bufferedAmount` (bytes queued for a peer and not yet written to its socket)
// and the `maxBackpressure` policy. Direct sends still queue but return false above the
// limit, and `drain` follows once the queue is back at or under it; broadcasts skip a peer
// over the limit (or close it with 1008 with `closeOnBackpressureLimit`); a peer over the
// limit is not read from. Readers are never slowed down by a peer that stops reading, and
// the server's memory stays bounded (the last test, with the server in a child process).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const {
  listen,
  once,
  withTimeout,
  connectWithInbox,
  named,
  rawUpgrade,
  rawClient,
  clientFrame,
  closeInfo,
  nextClose,
  childServer,
} = require('./helpers');

const KiB = 1024;
const MiB = 1024 * 1024;

/** A router whose '/bp' route files connections by ?name= and, with `room`, joins it. */
function bpRouter(websocket, { room } = {}) {
  const router = new Router({ websocket });
  const conns = named();
  router.ws('/bp', (ws, req) => {
    if (room) ws.join(room);
    conns.handler(ws, req);
  });
  return { router, conns };
}

/** A binary message of `size` bytes whose first 4 bytes are `seq`. */
function numbered(seq, size) {
  const buf = Buffer.alloc(size, 0x2a);
  buf.writeUInt32BE(seq, 0);
  return buf;
}

/**
 * Sends `size`-byte messages to `ws` until `send` returns false (the peer does not read, so
 * its kernel buffers fill and then its queue). Returns how many were sent, the last one
 * included (it is queued too).
 */
function sendUntilRefused(ws, size, maxBytes = 256 * MiB) {
  for (let i = 0; i * size < maxBytes; i++) {
    if (!ws.send(numbered(i, size))) return i + 1;
  }
  throw new Error(`send never returned false in ${maxBytes} bytes to a peer that does not read`);
}

/** Reads frames from a `rawClient` until `count` data frames arrived; returns their seqs. */
async function readSeqs(raw, count) {
  const seqs = [];
  while (seqs.length < count) {
    const f = await raw.next();
    assert.equal(f.opcode, 0x2, `expected a binary frame, got opcode ${f.opcode}`);
    seqs.push(f.payload.readUInt32BE(0));
  }
  return seqs;
}

test('bufferedAmount is 0 when idle, counts frame bytes a stalled peer has not taken, and is 0 once closed', async (t) => {
  const { router, conns } = bpRouter({ maxBackpressure: 64 * KiB });
  const { port } = await listen(router, t);
  const raw = await rawClient(port, '/bp?name=a', { t });
  const { ws } = await conns.get('a');
  assert.equal(ws.bufferedAmount, 0);
  assert.equal(ws.send('small'), true);
  assert.equal((await raw.next()).payload.toString(), 'small');
  assert.equal(ws.bufferedAmount, 0, 'a frame the socket took at once is not counted');

  raw.socket.pause();
  sendUntilRefused(ws, 16 * KiB);
  const before = ws.bufferedAmount;
  assert.ok(before > 64 * KiB, `${before} bytes queued`);
  // The peer's window is closed: nothing leaves, so the count grows by exactly one frame
  // (a 1000-byte payload has a 4-byte header).
  ws.send('x'.repeat(1000));
  assert.equal(ws.bufferedAmount, before + 1004);

  const closed = nextClose(ws);
  raw.socket.destroy();
  await closed;
  assert.equal(ws.bufferedAmount, 0);
});

test('send returns false above maxBackpressure but still queues; drain follows once under it, and nothing is lost', async (t) => {
  const limit = 256 * KiB;
  const { router, conns } = bpRouter({ maxBackpressure: limit });
  const { port } = await listen(router, t);
  const raw = await rawClient(port, '/bp?name=a', { t });
  const { ws } = await conns.get('a');
  let drains = 0;
  ws.on('drain', () => drains++);
  ws.on('message', (data) => ws.send(data)); // echo, to know when earlier events were delivered
  raw.socket.pause();

  const size = 32 * KiB;
  const sent = sendUntilRefused(ws, size);
  assert.ok(ws.bufferedAmount > limit, `${ws.bufferedAmount} bytes queued`);
  assert.ok(ws.bufferedAmount <= limit + size + 4, 'the previous send was under the limit');
  // Still over the limit: every further send is queued and reports false.
  assert.equal(ws.send(numbered(sent, size)), false);
  assert.equal(drains, 0);

  const drained = once(ws, 'drain');
  raw.socket.resume();
  await drained;
  assert.ok(ws.bufferedAmount <= limit, `drain with ${ws.bufferedAmount} bytes still queued`);
  assert.equal(ws.send(numbered(sent + 1, size)), true);

  const seqs = await readSeqs(raw, sent + 2);
  assert.deepEqual(
    seqs,
    Array.from({ length: sent + 2 }, (_, i) => i)
  );
  // Every event the connection had emitted before its echo was delivered: one drain only.
  await raw.write(clientFrame(0x1, 'ping-through'));
  assert.equal((await raw.next()).payload.toString(), 'ping-through');
  assert.equal(drains, 1);
});

test('the default maxBackpressure is 4 MiB', async (t) => {
  const { router, conns } = bpRouter(undefined);
  const { port } = await listen(router, t);
  const stalled = await rawUpgrade(port, '/bp?name=a');
  t.after(() => stalled.destroy());
  const { ws } = await conns.get('a');
  const size = 64 * KiB;
  const sent = sendUntilRefused(ws, size);
  assert.ok(sent * size > 4 * MiB);
  // The window of a peer that does not read stays closed: what is queued stays queued.
  assert.ok(ws.bufferedAmount > 4 * MiB, `${ws.bufferedAmount} bytes queued`);
  assert.ok(ws.bufferedAmount <= 4 * MiB + size + 10, `${ws.bufferedAmount} bytes queued`);
});

/**
 * Listens, then connects a raw peer that does not read ('stalled', paused) and a client that
 * reads everything ('reader'); resolves once the server has both.
 */
async function stalledAndReader(t, router, conns) {
  const { url, port } = await listen(router, t);
  const raw = await rawClient(port, '/bp?name=stalled', { t });
  raw.socket.pause();
  const { ws: stalled } = await conns.get('stalled');
  const reader = await connectWithInbox(`${url}/bp?name=reader`, t);
  await conns.get('reader');
  return { raw, stalled, reader };
}

test('broadcasts skip a peer over the limit; readers get everything and the peer stays open', async (t) => {
  const limit = 256 * KiB;
  const { router, conns } = bpRouter({ maxBackpressure: limit }, { room: 'r' });
  const { raw, stalled, reader } = await stalledAndReader(t, router, conns);

  // 16 MB in rounds of 256 KiB; the next round only once the reader has the previous one, so
  // the reader is never over the limit itself.
  const size = 64 * KiB;
  const total = 256;
  let maxStalled = 0;
  for (let seq = 0; seq < total; ) {
    for (let k = 0; k < 4; k++, seq++) {
      router.room('r').broadcast(numbered(seq, size));
      maxStalled = Math.max(maxStalled, stalled.bufferedAmount);
    }
    const got = await reader.got.take(4);
    got.forEach((m, k) => assert.equal(m.data.readUInt32BE(0), seq - 4 + k));
  }
  maxStalled = Math.max(maxStalled, stalled.bufferedAmount);
  assert.ok(maxStalled > 0);
  assert.ok(maxStalled <= limit + size + 10, `the stalled peer had ${maxStalled} bytes queued (limit ${limit})`);

  // A direct send is queued whatever the limit: it marks the end of what the peer will get.
  stalled.send(numbered(0xffffffff, 8));
  raw.socket.resume();
  const seqs = [];
  for (;;) {
    const f = await raw.next();
    assert.equal(f.opcode, 0x2);
    const seq = f.payload.readUInt32BE(0);
    if (seq === 0xffffffff) break;
    seqs.push(seq);
  }
  assert.equal(seqs[0], 0);
  assert.ok(
    seqs.every((s, i) => i === 0 || s > seqs[i - 1]),
    'in order'
  );
  assert.ok(seqs.length < total, `the stalled peer got all ${total} messages: nothing was skipped`);
  assert.equal(stalled.readyState, 1, 'skipped, not closed');
  // Caught up, it receives broadcasts again.
  router.room('r').broadcast('after');
  assert.equal((await raw.next()).payload.toString(), 'after');
  assert.equal((await reader.got.texts(1))[0], 'after');
});

test('closeOnBackpressureLimit closes a peer over the limit with 1008 "Slow consumer"; readers get everything', async (t) => {
  const limit = 256 * KiB;
  const { router, conns } = bpRouter({ maxBackpressure: limit, closeOnBackpressureLimit: true }, { room: 'r' });
  const { raw, stalled, reader } = await stalledAndReader(t, router, conns);

  const size = 64 * KiB;
  const total = 256;
  for (let seq = 0; seq < total; ) {
    for (let k = 0; k < 4; k++, seq++) router.room('r').broadcast(numbered(seq, size));
    const got = await reader.got.take(4);
    got.forEach((m, k) => assert.equal(m.data.readUInt32BE(0), seq - 4 + k));
  }
  assert.equal(stalled.send('late'), false, 'a closing connection takes no more messages');

  const serverClosed = nextClose(stalled);
  raw.socket.resume();
  let f;
  const seqs = [];
  while ((f = await raw.next()).opcode === 0x2) seqs.push(f.payload.readUInt32BE(0));
  assert.equal(f.opcode, 0x8);
  assert.deepEqual(closeInfo(f), { code: 1008, reason: 'Slow consumer' });
  assert.ok(seqs.length < total);
  assert.deepEqual(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => i),
    'what was queued before the close, in order'
  );
  await raw.write(clientFrame(0x8, f.payload));
  assert.equal((await serverClosed).code, 1008);
  assert.equal((await raw.closed).ended, true);
  assert.equal(reader.client.readyState, 1, 'the reader was not closed');
});

test('a peer over the limit is not read from until it drains', async (t) => {
  const limit = 64 * KiB;
  const { router, conns } = bpRouter({ maxBackpressure: limit });
  const { port } = await listen(router, t);
  const raw = await rawClient(port, '/bp?name=a', { t });
  const { ws } = await conns.get('a');
  const messages = [];
  ws.on('message', (data) => messages.push(String(data)));
  raw.socket.pause();
  // Well over the limit: the kernel's buffers may still take some of what is queued (their
  // sizes are tuned as the connection runs), not a mebibyte more.
  let sent = sendUntilRefused(ws, 16 * KiB);
  for (let i = 0; i < 64; i++, sent++) assert.equal(ws.send(numbered(sent, 16 * KiB)), false);

  await raw.write(clientFrame(0x1, 'while over the limit'));
  // Bounded wait to show that something does not happen: the message stays unread.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(messages, []);

  const delivered = once(ws, 'message');
  raw.socket.resume();
  await delivered;
  assert.deepEqual(messages, ['while over the limit']);
  assert.equal((await readSeqs(raw, sent)).length, sent);
});

test('maxBackpressure changed at run time applies to open connections', async (t) => {
  const { router, conns } = bpRouter({ maxBackpressure: 64 * MiB });
  const { port } = await listen(router, t);
  const stalled = await rawUpgrade(port, '/bp?name=a');
  t.after(() => stalled.destroy());
  const { ws } = await conns.get('a');
  router.configureWebSocket({ maxBackpressure: 128 * KiB });
  const size = 16 * KiB;
  sendUntilRefused(ws, size);
  assert.ok(ws.bufferedAmount > 128 * KiB && ws.bufferedAmount <= 128 * KiB + size + 4, `${ws.bufferedAmount}`);
});

test('100 MB broadcast with a peer that stopped reading: readers get everything, server memory stays bounded', async (t) => {
  const limit = 8 * MiB;
  const srv = await childServer(
    (velocy, commands) => {
      const router = new velocy.Router({ websocket: { maxBackpressure: 8 * 1024 * 1024 } });
      const byName = new Map();
      router.ws('/bp', (ws, req) => {
        ws.join('all');
        byName.set(req.query.name, ws);
      });
      const buf = Buffer.alloc(64 * 1024, 0x2a);
      // Broadcasts `count` messages numbered from `first`; then the server's RSS and the
      // stalled peer's queue.
      commands.broadcast = (first, count) => {
        for (let i = 0; i < count; i++) {
          buf.writeUInt32BE(first + i, 0);
          router.room('all').broadcast(buf);
        }
        return { rss: process.memoryUsage.rss(), stalled: byName.get('stalled').bufferedAmount };
      };
      commands.stalled = () => {
        const ws = byName.get('stalled');
        return { buffered: ws.bufferedAmount, readyState: ws.readyState };
      };
      return router;
    },
    { t, timeoutMs: 10000 }
  );

  const stalled = await rawUpgrade(srv.port, '/bp?name=stalled');
  t.after(() => stalled.destroy());
  const readers = [];
  for (let i = 0; i < 3; i++) {
    const { client } = await connectWithInbox(`${srv.url}/bp?name=r${i}`, t);
    readers.push(sequenceReader(client));
  }
  await withTimeout(
    (async () => {
      while ((await srv.call('stats')).connections < 4) await new Promise((resolve) => setImmediate(resolve));
    })(),
    5000,
    'four connections in the child'
  );

  const size = 64 * KiB;
  const perRound = 16; // 1 MiB: readers take each round before the next, so never exceed the limit
  const rounds = 100;
  const baseline = (await srv.call('stats')).rss;
  let maxRss = baseline;
  let maxStalled = 0;
  for (let r = 0; r < rounds; r++) {
    const { rss, stalled: queued } = await srv.call('broadcast', r * perRound, perRound);
    maxRss = Math.max(maxRss, rss);
    maxStalled = Math.max(maxStalled, queued);
    await Promise.all(readers.map((reader) => reader.reach((r + 1) * perRound)));
  }
  for (const reader of readers) {
    assert.equal(reader.count(), rounds * perRound);
    assert.equal(reader.bytes(), rounds * perRound * size);
  }
  const end = await srv.call('stalled');
  maxStalled = Math.max(maxStalled, end.buffered);
  assert.equal(end.readyState, 1);
  assert.ok(maxStalled > 0);
  assert.ok(maxStalled <= limit + size + 10, `the stalled peer had ${maxStalled} bytes queued`);
  maxRss = Math.max(maxRss, (await srv.call('stats')).rss);
  const growth = maxRss - baseline;
  assert.ok(growth < 64 * MiB, `server RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
  assert.equal(srv.stderr(), '');
});

/**
 * Checks the numbered messages a `ws` client receives as they come (in order, 64 KiB each),
 * without keeping them. `reach(n)` resolves once `n` have arrived.
 */
function sequenceReader(client) {
  let count = 0;
  let bytes = 0;
  let error = null;
  let waiter = null;
  client.on('message', (data, isBinary) => {
    if (error === null && (!isBinary || data.readUInt32BE(0) !== count)) {
      error = new Error(`message ${count}: got ${isBinary ? `seq ${data.readUInt32BE(0)}` : 'text'}`);
    }
    count++;
    bytes += data.length;
    if (waiter !== null && (error !== null || count >= waiter.n)) waiter.resolve();
  });
  return {
    count: () => count,
    bytes: () => bytes,
    async reach(n) {
      if (count < n && error === null) {
        await withTimeout(
          new Promise((resolve) => (waiter = { n, resolve })),
          10000,
          `a reader to receive ${n} messages (has ${count})`
        );
        waiter = null;
      }
      if (error !== null) throw error;
    },
  };
}
