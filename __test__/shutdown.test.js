'use strict';

// Graceful shutdown (README, "Graceful shutdown"): `server.shutdown({ timeout, code, reason })`
// stops accepting at once, sends the close frame to every peer after whatever is already
// queued for it (so a peer that keeps reading loses nothing), waits for the close handshakes
// up to `timeout`, terminates the rest and resolves once the server emitted `close`. Also:
// its validation, a second call, a handshake that completes while shutting down, and the
// documented SIGTERM handler in a child process.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { Router } = require('..');
const {
  HOST,
  once,
  listen,
  connect,
  connectWithInbox,
  named,
  nextClose,
  rawUpgrade,
  rawHttp,
  upgradeRequest,
  withTimeout,
} = require('./helpers');

/** Message `i` of a stream: 1 KiB of text that says its index. */
const message = (i) => `${i}:`.padEnd(1024, 'x');
/** Raised so that queueing megabytes for one peer is never refused (send returns true). */
const BIG_BACKPRESSURE = 256 * 1024 * 1024;

/** A router whose '/s' route files server-side connections by `?name=`. */
function shutdownRouter(websocket = {}) {
  const router = new Router({ websocket: { maxBackpressure: BIG_BACKPRESSURE, ...websocket } });
  const conns = named();
  let handled = 0;
  router.ws('/s', (ws, req) => {
    handled++;
    conns.handler(ws, req);
  });
  return { router, conns, handled: () => handled };
}

/** Resolves with the error of a TCP connection attempt to `port` (it must fail). */
function connectError(port) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = net.connect(port, HOST);
      socket.once('connect', () => {
        socket.destroy();
        reject(new Error('the connection was accepted'));
      });
      socket.once('error', resolve);
    }),
    5000,
    'a refused connection'
  );
}

/** Asserts that `texts` are messages 0..n-1 in order (reports the first difference only). */
function assertStream(texts, n, who) {
  assert.equal(texts.length, n, `${who}: message count`);
  for (let i = 0; i < n; i++) {
    if (texts[i] !== message(i)) assert.fail(`${who}: message ${i} is ${JSON.stringify(texts[i].slice(0, 16))}...`);
  }
}

test('shutdown: peers that keep reading get everything queued, in order, then 1001 "Server shutdown"', async (t) => {
  const N = 10000;
  const names = ['a', 'b', 'c'];
  const { router, conns } = shutdownRouter();
  const { server, url, port } = await listen(router, t);
  const clients = [];
  for (const name of names) clients.push(await connectWithInbox(`${url}/s?name=${name}`, t));
  const peers = await Promise.all(names.map((name) => conns.get(name)));
  const clientCloses = clients.map(({ client }) => nextClose(client, 15000));
  const serverCloses = peers.map(({ ws }) => nextClose(ws, 15000));
  let serverClosed = 0;
  server.on('close', () => serverClosed++);

  // 10 MiB for each peer, sent while this thread gives the clients no chance to read: much of
  // it is still queued in the engine (socket buffers on loopback take about 3 MiB) when
  // shutdown starts.
  for (const { ws } of peers) {
    for (let i = 0; i < N; i++) assert.equal(ws.send(message(i)), true, `send ${i} refused`);
  }
  for (const { ws } of peers) assert.ok(ws.bufferedAmount > 0, 'messages are still queued when shutdown starts');
  const done = server.shutdown();
  assert.ok(done instanceof Promise);

  // Stops accepting at once.
  assert.equal(server.listening, false);
  assert.equal(server.address(), null);
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');

  for (let k = 0; k < clients.length; k++) {
    assertStream(await clients[k].got.texts(N, 15000), N, names[k]);
    assert.deepEqual(await clientCloses[k], { code: 1001, reason: 'Server shutdown' });
    assert.equal(clients[k].got.pending(), 0, 'nothing after the close');
  }
  assert.equal(await withTimeout(done, 15000, 'shutdown to resolve'), undefined);
  for (const closed of await Promise.all(serverCloses)) assert.equal(closed.code, 1001);
  assert.equal(serverClosed, 1, "the server emitted 'close' before shutdown resolved");
  assert.equal(server.listening, false);
  assert.equal(router.getWebSocketRouter().getStats().connections, 0);
  assert.equal((await connectError(port)).code, 'ECONNREFUSED');
});

test('shutdown: a peer that never reads is terminated after `timeout`; the others close normally', async (t) => {
  const { router, conns } = shutdownRouter();
  const { server, url, port } = await listen(router, t);
  const stuck = await rawUpgrade(port, '/s?name=stuck'); // paused: never reads
  t.after(() => stuck.destroy());
  const reader = await connectWithInbox(`${url}/s?name=reader`, t);
  const { ws: stuckWs } = await conns.get('stuck');
  const { ws: readerWs } = await conns.get('reader');
  // Far more than the socket buffers hold: the close frame cannot get out behind it.
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  for (let i = 0; i < 32; i++) assert.equal(stuckWs.sendBinary(chunk), true);
  readerWs.send('before');
  const stuckClose = nextClose(stuckWs, 10000);
  const readerClose = nextClose(reader.client, 10000);

  const start = performance.now();
  await withTimeout(server.shutdown({ timeout: 300 }), 4000, 'shutdown with a peer that never reads');
  const elapsed = performance.now() - start;
  // Not at once (it waited for the timeout), and well before the engine's own 5 s close timeout.
  assert.ok(elapsed >= 250, `resolved after ${elapsed.toFixed(0)} ms`);
  assert.ok(elapsed < 4000, `resolved after ${elapsed.toFixed(0)} ms`);
  assert.equal((await stuckClose).code, 1006, 'terminated: no close handshake');
  assert.deepEqual(await reader.got.texts(1), ['before']);
  assert.deepEqual(await readerClose, { code: 1001, reason: 'Server shutdown' });
  assert.equal(router.getWebSocketRouter().getStats().connections, 0);
  // The stuck peer's socket is gone too.
  stuck.resume();
  await withTimeout(once(stuck, 'close').catch(() => {}), 5000, 'the stuck socket to close');
});

test('shutdown({ timeout }) is not held by a connection that never sends its request head', async (t) => {
  // A TCP connection in its handshake (a preconnect, a slow client) has no WebSocket to close;
  // it must not keep shutdown waiting for handshakeTimeout (10 s by default).
  const { router } = shutdownRouter();
  const { server, port } = await listen(router, t);
  const idle = net.connect(port, HOST);
  t.after(() => idle.destroy());
  idle.on('error', () => {});
  await once(idle, 'connect');
  // Accepts are in order: once a later request was answered, this one was accepted too.
  assert.match(await rawHttp(port, upgradeRequest('/no-such-route')), /^HTTP\/1\.1 404 /);
  const start = performance.now();
  await withTimeout(server.shutdown({ timeout: 300 }), 3000, 'shutdown with a connection in its handshake');
  assert.ok(performance.now() - start < 3000);
});

test('shutdown({ code, reason }) sends that code and reason', async (t) => {
  const { router, conns } = shutdownRouter();
  const { server, url } = await listen(router, t);
  const client = await connect(`${url}/s?name=a`, t);
  const { ws } = await conns.get('a');
  const clientClose = nextClose(client);
  const serverClose = nextClose(ws);
  await withTimeout(server.shutdown({ code: 4000, reason: 'Down for maintenance' }), 5000, 'shutdown');
  assert.deepEqual(await clientClose, { code: 4000, reason: 'Down for maintenance' });
  assert.equal((await serverClose).code, 4000);
});

test('shutdown({ code }) alone keeps the default reason; a reason may be empty', async (t) => {
  for (const [options, expected] of [
    [{ code: 1000 }, { code: 1000, reason: 'Server shutdown' }],
    [{ reason: '' }, { code: 1001, reason: '' }],
    [{ code: 1012, reason: 'é'.repeat(61) }, { code: 1012, reason: 'é'.repeat(61) }], // 122 bytes
  ]) {
    const { router, conns } = shutdownRouter();
    const { server, url } = await listen(router, t);
    const client = await connect(`${url}/s?name=a`, t);
    await conns.get('a');
    const closed = nextClose(client);
    await withTimeout(server.shutdown(options), 5000, 'shutdown');
    assert.deepEqual(await closed, expected, JSON.stringify(options));
  }
});

test('shutdown validates its options and an invalid call starts nothing', async (t) => {
  const { router, conns } = shutdownRouter();
  const { server, url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/s?name=a`, t);
  const { ws } = await conns.get('a');
  const bad = [
    [null, TypeError, 'options'],
    ['fast', TypeError, 'options'],
    [1000, TypeError, 'options'],
    [{ timeout: -1 }, RangeError, 'options.timeout'],
    [{ timeout: NaN }, RangeError, 'options.timeout'],
    [{ timeout: Infinity }, RangeError, 'options.timeout'],
    [{ timeout: '100' }, Error, 'options.timeout'],
    [{ code: 1005 }, RangeError, 'options.code'],
    [{ code: 1006 }, RangeError, 'options.code'],
    [{ code: 999 }, RangeError, 'options.code'],
    [{ code: 5000 }, RangeError, 'options.code'],
    [{ code: 1001.5 }, RangeError, 'options.code'],
    [{ code: '1001' }, Error, 'options.code'],
    [{ reason: 42 }, TypeError, 'options.reason'],
    [{ reason: null }, TypeError, 'options.reason'],
    [{ reason: 'x'.repeat(124) }, RangeError, 'options.reason'],
    [{ reason: 'é'.repeat(62) }, RangeError, 'options.reason'], // 124 bytes
  ];
  for (const [options, Ctor, name] of bad) {
    assert.throws(
      () => server.shutdown(options),
      (err) => {
        assert.ok(err instanceof Ctor, `${JSON.stringify(options)}: ${err.name}`);
        assert.ok(err.message.includes(`"${name}"`), `${JSON.stringify(options)}: ${err.message}`);
        return true;
      }
    );
  }
  // Still serving: listening, and the connection is open.
  assert.equal(server.listening, true);
  ws.send('still open');
  assert.deepEqual(await got.texts(1), ['still open']);
  assert.equal(client.readyState, client.OPEN);
});

test('calling shutdown twice returns the same promise; the first call decides code and reason', async (t) => {
  const { router, conns } = shutdownRouter();
  const { server, url } = await listen(router, t);
  const client = await connect(`${url}/s?name=a`, t);
  await conns.get('a');
  const closed = nextClose(client);
  let closeEvents = 0;
  server.on('close', () => closeEvents++);
  const first = server.shutdown({ code: 4001, reason: 'first' });
  const second = server.shutdown({ code: 4002, reason: 'second' });
  assert.equal(second, first);
  assert.equal(server.shutdown(), first);
  await withTimeout(first, 5000, 'shutdown');
  assert.deepEqual(await closed, { code: 4001, reason: 'first' });
  assert.equal(closeEvents, 1);
  assert.equal(server.listening, false);
});

test('shutdown of a server with no connections, or one that is not listening, resolves', async (t) => {
  const { router } = shutdownRouter();
  const { server } = await listen(router, t);
  await withTimeout(server.shutdown(), 2000, 'shutdown of an idle server');
  assert.equal(server.listening, false);
  // Again, now that it is closed: still resolves.
  await withTimeout(server.shutdown(), 2000, 'shutdown of a closed server');
  const never = require('..').createServer(new Router());
  await withTimeout(never.shutdown({ timeout: 0 }), 2000, 'shutdown of a server that never listened');
});

test('a handshake that completes while shutting down is closed with the shutdown code and runs no handler', async (t) => {
  let admit;
  let asked;
  const verifying = new Promise((resolve) => (asked = resolve));
  const { router, handled } = shutdownRouter({
    verifyClient: () => {
      asked();
      return new Promise((resolve) => (admit = resolve));
    },
  });
  const { server, url } = await listen(router, t);
  const WebSocket = require('ws');
  const late = new WebSocket(`${url}/s?name=late`);
  t.after(() => late.terminate());
  const opened = once(late, 'open');
  const closed = nextClose(late);
  await withTimeout(verifying, 5000, 'verifyClient to be asked');
  const done = server.shutdown({ code: 4003, reason: 'closing' });
  assert.equal(server.listening, false);
  admit(true);
  await opened;
  assert.deepEqual(await closed, { code: 4003, reason: 'closing' });
  await withTimeout(done, 5000, 'shutdown');
  assert.equal(handled(), 0, 'the route handler never ran');
});

test('SIGTERM handler in a child process: queued messages, then 1001, then exit code 0', async (t) => {
  const N = 10000;
  const script = `
    const { Router, createServer } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const router = new Router({ websocket: { maxBackpressure: ${BIG_BACKPRESSURE} } });
    let peer = null;
    router.ws('/s', (ws) => {
      peer = ws;
      for (let i = 0; i < ${N}; i++) ws.send(String(i).concat(':').padEnd(1024, 'x'));
      process.stdout.write('queued\\n');
    });
    const server = createServer(router);
    server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));
    process.on('SIGTERM', () => {
      process.stdout.write('sigterm ' + (peer ? peer.bufferedAmount : -1) + '\\n');
      server.shutdown().then(() => process.exit(0));
    });
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = lineReader(child.stdout);

  const port = Number((await lines.next(/^port (\d+)$/))[1]);
  const { client, got } = await connectWithInbox(`ws://${HOST}:${port}/s`, t);
  // The client stops reading, so the messages are still queued in the child when the signal
  // arrives; it reads again once the child has started shutting down.
  client.pause();
  await lines.next(/^queued$/);
  const closed = nextClose(client, 15000);
  child.kill('SIGTERM');
  const buffered = Number((await lines.next(/^sigterm (-?\d+)$/))[1]);
  assert.ok(buffered > 0, `still queued in the child at SIGTERM: ${buffered} bytes`);
  client.resume();

  assertStream(await got.texts(N, 15000), N, 'client');
  assert.deepEqual(await closed, { code: 1001, reason: 'Server shutdown' });
  assert.deepEqual(await withTimeout(exited, 10000, 'the child to exit'), { code: 0, signal: null });
});

/** Reads lines from a stream; `next(re)` resolves with the match of the next line matching `re`. */
function lineReader(stream) {
  const lines = [];
  let partial = '';
  let wake = null;
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop();
    lines.push(...parts);
    if (wake) wake();
  });
  return {
    next(re, timeoutMs = 10000) {
      return withTimeout(
        (async () => {
          for (;;) {
            while (lines.length > 0) {
              const m = re.exec(lines.shift());
              if (m) return m;
            }
            await new Promise((resolve) => (wake = resolve));
          }
        })(),
        timeoutMs,
        `a line matching ${re}`
      );
    },
  };
}
