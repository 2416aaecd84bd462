'use strict';

// Heartbeats: the engine pings every `heartbeatInterval` ms and closes a peer that sent nothing
// (no pong, no data) for `heartbeatTimeout` ms with 1001 'Heartbeat timeout', dropping the
// socket if the close handshake does not finish soon after. Intervals here are tens of ms;
// time bounds are generous (CI is noisy) but each test checks that the thing really happened.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const WebSocket = require('ws');
const { Router } = require('..');
const { listen, connect, collect, nextClose, rawClient, clientFrame, closeInfo, withTimeout } = require('./helpers');

const OP = { TEXT: 0x1, CLOSE: 0x8, PING: 0x9, PONG: 0xa };
/** Added to every upper time bound: scheduling noise on a loaded CI machine. */
const SLACK = 2000;
/**
 * Timeout for tests where a peer must survive: the engine measures silence from the last
 * bytes read, so a stall of its timers longer than (timeout - interval) on a loaded machine
 * would close a healthy peer. 250 ms leaves room for that; intervals stay at 20 ms.
 */
const SURVIVE_TIMEOUT = 500;

/** A router whose '/hb' route collects server-side connections. */
function heartbeatRouter(websocket) {
  const router = new Router({ websocket });
  const conns = collect();
  router.ws('/hb', conns.handler);
  return { router, conns };
}

/**
 * Reads frames from a raw client until the close frame; returns the pings seen before it
 * and the close frame.
 */
async function readUntilClose(client, timeoutMs = 5000) {
  const pings = [];
  for (;;) {
    const f = await client.next(timeoutMs);
    if (f.opcode === OP.CLOSE) return { pings, close: f };
    assert.equal(f.opcode, OP.PING, `unexpected frame with opcode ${f.opcode}`);
    pings.push(f);
  }
}

/** Resolves once a `ws` client has received `n` pings; rejects if it closes first. */
function pings(client, n, timeoutMs = 5000) {
  return withTimeout(
    new Promise((resolve, reject) => {
      let count = 0;
      const onPing = () => {
        if (++count === n) {
          client.removeListener('ping', onPing);
          client.removeListener('close', onClose);
          resolve(count);
        }
      };
      const onClose = (code, reason) => reject(new Error(`closed (${code} ${reason}) after ${count} of ${n} pings`));
      client.on('ping', onPing);
      client.on('close', onClose);
    }),
    timeoutMs,
    `${n} pings`
  );
}

test('a raw client that goes silent after the handshake is closed with 1001 and dropped within interval + timeout', async (t) => {
  const interval = 30;
  const timeout = 60;
  const { router, conns } = heartbeatRouter({ heartbeatInterval: interval, heartbeatTimeout: timeout });
  const { port } = await listen(router, t);
  const client = await rawClient(port, '/hb', { t });
  const start = performance.now();
  assert.equal(client.response.status, 101);
  const { ws } = await conns.next();
  let closes = 0;
  ws.on('close', () => closes++);
  const serverClose = nextClose(ws);

  const { pings: seen, close } = await readUntilClose(client);
  // Pinged once at least (the interval is shorter than the timeout), all with the same small
  // payload, by which the engine recognises the pongs to its own pings.
  assert.ok(seen.length >= 1, 'no ping before the close');
  for (const p of seen) assert.equal(p.payload.toString(), seen[0].payload.toString());
  assert.ok(seen[0].payload.length <= 125);
  assert.deepEqual(closeInfo(close), { code: 1001, reason: 'Heartbeat timeout' });
  assert.ok(close.at - start >= timeout * 0.75, `closed after ${close.at - start} ms, before the ${timeout} ms timeout`);

  // The client never answers: the socket is ended (FIN) a short time later, nothing after the close frame.
  const { ended, at } = await withTimeout(client.closed, 5000, 'the server to drop the socket');
  assert.equal(ended, true, 'the socket was reset instead of ended');
  assert.ok(at - start <= interval + timeout + SLACK, `dropped after ${at - start} ms`);
  await assert.rejects(client.next(50), /ended/);

  // JS saw exactly one close; no close frame came from the peer, so the code is 1006.
  assert.equal((await serverClose).code, 1006);
  assert.equal(closes, 1);
  assert.equal(ws.readyState, WebSocket.CLOSED);
  assert.equal(router.getWebSocketRouter().getStats().connections, 0);
});

test('a silent peer that does answer the close frame completes the close handshake: JS sees 1001', async (t) => {
  // The engine waits one interval for a silent peer's close: long enough that a stall of this
  // process between reading the close and answering it does not end the wait.
  const { router, conns } = heartbeatRouter({ heartbeatInterval: 150, heartbeatTimeout: 300 });
  const { port } = await listen(router, t);
  const client = await rawClient(port, '/hb', { t });
  const { ws } = await conns.next();
  const serverClose = nextClose(ws);
  const { close } = await readUntilClose(client);
  assert.deepEqual(closeInfo(close), { code: 1001, reason: 'Heartbeat timeout' });
  await client.write(clientFrame(OP.CLOSE, close.payload.subarray(0, 2)));
  assert.deepEqual(await serverClose, { code: 1001, reason: '' });
  assert.equal((await withTimeout(client.closed, 5000, 'the socket to close')).ended, true);
});

test('a ws client (answering pings) stays connected across many intervals and timeouts', async (t) => {
  const interval = 20;
  const timeout = SURVIVE_TIMEOUT;
  const { router, conns } = heartbeatRouter({ heartbeatInterval: interval, heartbeatTimeout: timeout });
  const { url } = await listen(router, t);
  const client = await connect(`${url}/hb`, t);
  const { ws } = await conns.next();
  let serverClosed = false;
  ws.on('close', () => (serverClosed = true));
  ws.on('message', (data) => ws.send(`echo ${data}`));

  const start = performance.now();
  await pings(client, 60);
  // 60 intervals are 1.2 s, more than twice the timeout.
  assert.ok(performance.now() - start >= 2 * timeout, `60 pings in ${performance.now() - start} ms`);
  assert.equal(serverClosed, false);
  assert.equal(ws.readyState, WebSocket.OPEN);
  assert.equal(client.readyState, WebSocket.OPEN);
  const reply = new Promise((resolve) => client.once('message', (d) => resolve(String(d))));
  client.send('still here');
  assert.equal(await withTimeout(reply, 5000, 'the echo'), 'echo still here');
});

test('data from the peer counts as a sign of life even without pongs', async (t) => {
  const { router, conns } = heartbeatRouter({ heartbeatInterval: 20, heartbeatTimeout: SURVIVE_TIMEOUT });
  const { port } = await listen(router, t);
  const client = await rawClient(port, '/hb', { t });
  const { ws } = await conns.next();
  const received = [];
  let allArrived;
  const arrived = new Promise((resolve) => (allArrived = resolve));
  ws.on('message', (data) => {
    if (received.push(String(data)) === 60) allArrived();
  });
  // Answer each ping with a text message instead of a pong, for 60 pings (1.2 s, more than
  // twice the timeout).
  const start = performance.now();
  for (let i = 0; i < 60; i++) {
    const f = await client.next();
    assert.equal(f.opcode, OP.PING, `frame ${i} has opcode ${f.opcode}, expected a ping`);
    await client.write(clientFrame(OP.TEXT, `alive ${i}`));
  }
  assert.ok(performance.now() - start >= 2 * SURVIVE_TIMEOUT);
  // Every message reaches JS, in order, and the connection is still open after them.
  await withTimeout(arrived, 5000, 'all 60 messages reaching JS');
  assert.deepEqual(received, Array.from({ length: 60 }, (_, i) => `alive ${i}`));
  assert.equal(ws.readyState, WebSocket.OPEN);
});

test('a silent peer is dropped while an answering one on the same server stays', async (t) => {
  const { router, conns } = heartbeatRouter({ heartbeatInterval: 20, heartbeatTimeout: SURVIVE_TIMEOUT });
  const { port, url } = await listen(router, t);
  const good = await connect(`${url}/hb`, t);
  const { ws: goodSide } = await conns.next();
  const silent = await rawClient(port, '/hb', { t });
  const { ws: silentSide } = await conns.next();
  const silentClose = nextClose(silentSide);

  const { close } = await readUntilClose(silent);
  assert.equal(closeInfo(close).code, 1001);
  await silentClose;
  // The answering client keeps being pinged, and stays open, after the other one is gone.
  await pings(good, 5);
  assert.equal(goodSide.readyState, WebSocket.OPEN);
  assert.equal(router.getWebSocketRouter().getStats().connections, 1);
});

// WEBSOCKET.md: "heartbeatTimeout: 60000 // Close if no pong within 60 seconds". A timeout
// shorter than the interval (ping every 30 s, give up 10 s after an unanswered ping) must not
// close a peer that was never asked, nor one that answers every ping.

test('heartbeatTimeout shorter than the interval: a silent peer is pinged first, then closed within interval + timeout', async (t) => {
  // Long enough that a stall of this process when the ping arrives (which shortens the gap
  // measured here) stays within the lower bound's 25 %.
  const interval = 240;
  const timeout = 120;
  const { router, conns } = heartbeatRouter({ heartbeatInterval: interval, heartbeatTimeout: timeout });
  const { port } = await listen(router, t);
  const client = await rawClient(port, '/hb', { t });
  const start = performance.now();
  await conns.next();
  const { pings: seen, close } = await readUntilClose(client);
  assert.ok(seen.length >= 1, 'closed for silence without ever being pinged');
  assert.deepEqual(closeInfo(close), { code: 1001, reason: 'Heartbeat timeout' });
  assert.ok(close.at - seen[0].at >= timeout * 0.75, `closed ${close.at - seen[0].at} ms after the first ping`);
  assert.ok(close.at - start <= interval + timeout + SLACK, `closed after ${close.at - start} ms`);
});

test('heartbeatTimeout shorter than the interval: a peer answering every ping stays connected', async (t) => {
  // As above: a stall of this process shorter than the timeout must not look like silence.
  const { router, conns } = heartbeatRouter({ heartbeatInterval: 240, heartbeatTimeout: 120 });
  const { url } = await listen(router, t);
  const client = await connect(`${url}/hb`, t);
  const { ws } = await conns.next();
  await pings(client, 4);
  assert.equal(ws.readyState, WebSocket.OPEN);
  assert.equal(client.readyState, WebSocket.OPEN);
});

test('many silent connections are all dropped, each with one close event', async (t) => {
  const n = 50;
  const { router, conns } = heartbeatRouter({ heartbeatInterval: 20, heartbeatTimeout: 40 });
  const { port } = await listen(router, t);
  const clients = await Promise.all(Array.from({ length: n }, () => rawClient(port, '/hb', { t })));
  const sides = [];
  for (let i = 0; i < n; i++) sides.push((await conns.next()).ws);
  let closes = 0;
  for (const ws of sides) ws.on('close', () => closes++);
  const start = performance.now();

  const results = await Promise.all(clients.map((c) => readUntilClose(c)));
  for (const { close } of results) assert.deepEqual(closeInfo(close), { code: 1001, reason: 'Heartbeat timeout' });
  const ends = await Promise.all(clients.map((c) => withTimeout(c.closed, 5000, 'a socket to be dropped')));
  for (const e of ends) assert.equal(e.ended, true);
  assert.ok(Math.max(...ends.map((e) => e.at)) - start <= 20 + 40 + SLACK);
  await Promise.all(sides.map((ws) => (ws.readyState === WebSocket.CLOSED ? null : nextClose(ws))));
  assert.equal(closes, n);
  assert.equal(router.getWebSocketRouter().getStats().connections, 0);
});

test('with heartbeatInterval 0 no ping is sent and a silent peer is never timed out', async (t) => {
  // Positive control: with heartbeats on, a ping arrives well within the window used below.
  const on = heartbeatRouter({ heartbeatInterval: 30, heartbeatTimeout: 60000 });
  const { port: onPort } = await listen(on.router, t);
  const pinged = await rawClient(onPort, '/hb', { t });
  const start = performance.now();
  assert.equal((await pinged.next()).opcode, OP.PING);
  assert.ok(performance.now() - start < 5 * 30 + SLACK);

  // Heartbeats off, with the smallest timeout: nothing may ever time the peer out.
  const { router, conns } = heartbeatRouter({ heartbeatInterval: 0, heartbeatTimeout: 1 });
  router.ws('/echo', (ws) => ws.on('message', (d) => ws.send(d)));
  const { port } = await listen(router, t);
  const client = await rawClient(port, '/hb', { t });
  const { ws } = await conns.next();
  // A configureWebSocket that fails validation must not turn heartbeats on either.
  assert.throws(() => router.configureWebSocket({ heartbeatInterval: 30, heartbeatTimeout: -1 }), RangeError);
  // Proving that nothing is sent needs a bounded wait: five times what would have been the
  // interval (the control above shows one interval is enough to see a ping).
  await assert.rejects(client.next(5 * 30), /timed out/);
  assert.equal(ws.readyState, WebSocket.OPEN);
  // Still alive and served.
  const echo = await rawClient(port, '/echo', { t });
  await echo.write(clientFrame(OP.TEXT, 'ok'));
  const f = await echo.next();
  assert.deepEqual([f.opcode, String(f.payload)], [OP.TEXT, 'ok']);
});
