'use strict';

// Hostile handshakes and abuse: oversized request lines and heads, thousands of headers,
// random bytes instead of HTTP, TCP connections that never send anything (or trickle), many
// handshakes aborted midway, and clients that flood pings or messages (reading what comes
// back or not). Throughout, a normal client keeps being served and the server's event loop
// keeps turning; afterwards the server is idle again (no connection and no handshake left).
// CI-sized; bench/abuse.js gives the figures at full size.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const { Router } = require('..');
const {
  HOST,
  listen,
  once,
  withTimeout,
  connectWithInbox,
  named,
  rawUpgrade,
  rawHttp,
  parseResponse,
  upgradeRequest,
  clientFrame,
  nextClose,
  childServer,
} = require('./helpers');

const HANDSHAKE_TIMEOUT = 200;

/** A router with an echo route and a short handshake timeout; `conns` files connections by ?name=. */
function echoRouter(websocket = {}) {
  const router = new Router({ websocket: { handshakeTimeout: HANDSHAKE_TIMEOUT, ...websocket } });
  const conns = named();
  router.ws('/ws/echo', (ws, req) => {
    conns.handler(ws, req);
    ws.on('message', (data, isBinary) => (isBinary ? ws.sendBinary(data) : ws.send(data)));
  });
  return { router, conns };
}

/**
 * Keeps a `ws` client doing echo round trips, one at a time, until `stop()`, which resolves
 * with the number of round trips done (and rejects if one failed or took over 3 s).
 * `count()` is the number so far.
 */
function keepEchoing({ client, got }) {
  let n = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const text = `round trip ${n}`;
      client.send(text);
      assert.deepEqual(await got.texts(1, 3000), [text]);
      n++;
    }
  })();
  loop.catch(() => {}); // reported by stop()
  return {
    count: () => n,
    async stop() {
      stopped = true;
      await loop;
      return n;
    },
  };
}

/** Resolves once the echo loop has done `more` round trips beyond what it had done before. */
async function progresses(echo, more = 3) {
  const target = echo.count() + more;
  const deadline = Date.now() + 3000;
  while (echo.count() < target) {
    assert.ok(Date.now() < deadline, `the normal client stalled at ${echo.count()} round trips`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Closes the normal client and waits until the server forgot it. */
async function closeNormal(normal, conns, name) {
  const { ws } = await conns.get(name);
  const closed = nextClose(ws);
  normal.client.close();
  await closed;
}

/** `server.close()`, then `close` must be emitted: no connection and no handshake is left. */
async function assertIdleAfterClose(server, router) {
  const closed = once(server, 'close', 5000);
  server.close();
  await closed;
  assert.equal(server._native.pendingConnections(), 0, 'no handshake or connection left in the engine');
  assert.equal(router.getWebSocketRouter().getStats().connections, 0);
}

/** Opens a TCP connection; resolves with the socket once connected. */
async function tcp(port) {
  const socket = net.connect(port, HOST);
  socket.on('error', () => {}); // resets are expected here
  await once(socket, 'connect');
  return socket;
}

/** Resolves with the ms from now until the server ends `socket` (FIN or reset). */
function endedWithin(socket, timeoutMs) {
  const start = Date.now();
  return withTimeout(
    new Promise((resolve) => {
      const done = () => resolve(Date.now() - start);
      socket.once('end', done);
      socket.once('close', done);
    }),
    timeoutMs,
    'the server to close a connection that did not complete its handshake'
  );
}

test('silent TCP connections are closed by the handshake timeout while a client is served', async (t) => {
  const { router, conns } = echoRouter();
  const { server, port, url } = await listen(router, t);
  const normal = await connectWithInbox(`${url}/ws/echo?name=normal`, t);
  const echo = keepEchoing(normal);

  const silent = await Promise.all(Array.from({ length: 100 }, () => tcp(port)));
  t.after(() => silent.forEach((s) => s.destroy()));
  const waited = await Promise.all(silent.map((s) => endedWithin(s, 2000)));
  // Not refused at once: the server waited for a request, then gave up at its timeout.
  assert.ok(Math.min(...waited) >= HANDSHAKE_TIMEOUT * 0.75, `closed after ${Math.min(...waited)} ms`);
  await progresses(echo);
  assert.ok((await echo.stop()) > 0);

  await closeNormal(normal, conns, 'normal');
  await assertIdleAfterClose(server, router);
});

test('a client trickling its request head is cut off at the handshake timeout', async (t) => {
  const { router } = echoRouter();
  const { server, port } = await listen(router, t);
  const socket = await tcp(port);
  t.after(() => socket.destroy());
  const request = upgradeRequest('/ws/echo', { 'X-Padding': 'p'.repeat(200) });
  let sent = 0;
  // One byte every 20 ms: each byte is news, but the whole head would take seconds.
  const drip = setInterval(() => {
    if (sent < request.length && socket.writable) socket.write(request[sent++]);
  }, 20);
  t.after(() => clearInterval(drip));
  const ms = await endedWithin(socket, 2000);
  assert.ok(sent < request.length, 'the head was not complete when the server gave up');
  assert.ok(ms >= HANDSHAKE_TIMEOUT * 0.75, `closed after ${ms} ms`);
  await assertIdleAfterClose(server, router);
});

test('oversized request lines and heads, thousands of headers and random bytes are refused while a client is served', async (t) => {
  const { router, conns } = echoRouter({ handshakeTimeout: 5000 });
  const { server, port, url } = await listen(router, t);
  const normal = await connectWithInbox(`${url}/ws/echo?name=normal`, t);
  const echo = keepEchoing(normal);

  const longLine = upgradeRequest(`/ws/echo?q=${'a'.repeat(17 * 1024)}`);
  const bigHead = upgradeRequest('/ws/echo', { 'X-Big': 'b'.repeat(64 * 1024) });
  const headers = {};
  for (let i = 0; i < 5000; i++) headers[`X-H${i}`] = String(i);
  const manyHeaders = upgradeRequest('/ws/echo', headers);
  const junk = () => {
    const bytes = crypto.randomBytes(4096);
    bytes[0] &= 0x1f; // a control byte: no HTTP method starts like this
    return Buffer.concat([bytes, Buffer.from('\r\n\r\n')]);
  };

  const cases = [];
  for (let i = 0; i < 20; i++) {
    cases.push([longLine, 431], [bigHead, 431], [manyHeaders, 431], [junk(), 400]);
  }
  const statuses = await Promise.all(cases.map(([request]) => rawHttp(port, request).then((text) => parseResponse(text).status)));
  assert.deepEqual(
    statuses,
    cases.map(([, status]) => status)
  );
  await progresses(echo);
  assert.ok((await echo.stop()) > 0);

  await closeNormal(normal, conns, 'normal');
  await assertIdleAfterClose(server, router);
});

test('2,000 handshakes aborted midway leave the server idle, and a client is served throughout', async (t) => {
  const { router, conns } = echoRouter({ handshakeTimeout: 5000 });
  const { server, port, url } = await listen(router, t);
  const normal = await connectWithInbox(`${url}/ws/echo?name=normal`, t);
  const echo = keepEchoing(normal);

  const request = Buffer.from(upgradeRequest('/ws/echo'));
  const half = request.subarray(0, request.length >> 1);
  // Four ways to walk away: FIN after half a request, reset after half a request, reset
  // right after connecting, and before the connection is even established.
  const abort = (i) =>
    new Promise((resolve) => {
      const socket = net.connect(port, HOST);
      socket.on('error', () => {});
      socket.once('close', resolve);
      const way = i % 4;
      if (way === 3) return socket.destroy();
      socket.once('connect', () => {
        if (way === 2) return socket.resetAndDestroy();
        socket.write(half, () => (way === 0 ? socket.destroy() : socket.resetAndDestroy()));
      });
    });
  const total = 2000;
  const batch = 250;
  for (let i = 0; i < total; i += batch) {
    await withTimeout(
      Promise.all(Array.from({ length: batch }, (_, j) => abort(i + j))),
      10000,
      `aborted handshakes ${i}..${i + batch}`
    );
  }
  await progresses(echo);
  assert.ok((await echo.stop()) > 0);
  assert.equal(router.getWebSocketRouter().getStats().connections, 1, 'only the normal client is connected');

  await closeNormal(normal, conns, 'normal');
  await assertIdleAfterClose(server, router);
});

test('a client flooding pings without reading is throttled; others are served and its queue stays bounded', async (t) => {
  const limit = 256 * 1024;
  const { router, conns } = echoRouter({ maxBackpressure: limit });
  let pings = 0;
  let maxBuffered = 0;
  router.ws('/ws/flood', (ws, req) => {
    conns.handler(ws, req);
    ws.on('ping', () => {
      pings++;
      maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
    });
  });
  const { server, port, url } = await listen(router, t);
  const normal = await connectWithInbox(`${url}/ws/echo?name=normal`, t);
  const echo = keepEchoing(normal);

  const flooder = await rawUpgrade(port, '/ws/flood?name=flooder'); // paused: never reads
  t.after(() => flooder.destroy());
  flooder.on('error', () => {});
  const { ws } = await conns.get('flooder');

  // Pings of 125 bytes, 500 to a write. The server answers each with a pong into the
  // flooder's queue; once that is over the limit, the server stops reading the flooder, so
  // its writes stop draining. That stall is what this loop waits for (at most 200 MB).
  const ping = clientFrame(0x9, Buffer.alloc(125, 0x70));
  const chunk = Buffer.concat(Array.from({ length: 500 }, () => ping));
  let written = 0;
  let stalled = false;
  while (!stalled && written < 200 * 1024 * 1024) {
    if (flooder.write(chunk)) {
      written += chunk.length;
      continue;
    }
    written += chunk.length;
    // Not a sleep: if no drain comes within 1 s, the server has stopped reading.
    stalled = await once(flooder, 'drain', 1000).then(
      () => false,
      () => true
    );
  }
  assert.ok(stalled, `the server kept reading ${written} bytes of pings from a peer that takes no pongs`);
  const sent = written / ping.length;
  assert.ok(pings < sent, `${pings} of ${sent} pings were read`);
  await progresses(echo);

  const buffered = ws.bufferedAmount;
  assert.ok(buffered > 0, 'pongs wait in the flooder queue');
  assert.ok(maxBuffered < 1024 * 1024, `the flooder queue reached ${maxBuffered} bytes (limit ${limit})`);
  assert.ok(buffered < 1024 * 1024, `the flooder queue holds ${buffered} bytes (limit ${limit})`);

  const closed = nextClose(ws);
  flooder.destroy();
  assert.equal((await closed).code, 1006);
  assert.ok((await echo.stop()) > 0);
  await closeNormal(normal, conns, 'normal');
  assert.equal(router.getWebSocketRouter().getStats().connections, 0);
  await assertIdleAfterClose(server, router);
});

test("a flood of small messages does not stop the server process's event loop", async (t) => {
  // Timers, I/O and finalizers of the server's process must keep running while the engine
  // hands a flood of events to JS. A 50 ms interval in the server's process measures it.
  const srv = await childServer(
    (velocy, commands) => {
      const router = new velocy.Router({ websocket: { heartbeatInterval: 0 } });
      router.ws('/ws/flood', (ws) => ws.on('message', () => {}));
      let last = performance.now();
      let worst = 0;
      setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
      }, 50);
      commands.worstGap = () => {
        const w = worst;
        worst = 0;
        return Math.round(w);
      };
      return router;
    },
    { t, timeoutMs: 20000 }
  );
  const flooder = await rawUpgrade(srv.port, '/ws/flood');
  t.after(() => flooder.destroy());
  flooder.on('error', () => {});
  await srv.call('worstGap');
  const message = clientFrame(0x1, 'm'.repeat(100));
  const chunk = Buffer.concat(Array.from({ length: 500 }, () => message));
  const end = Date.now() + 1500;
  while (Date.now() < end) {
    if (!flooder.write(chunk)) await once(flooder, 'drain', 10000);
  }
  flooder.destroy();
  // Answered once the server's event loop turns again, after the backlog.
  const gap = await srv.call('worstGap');
  assert.ok(gap < 1000, `the server's 50 ms timer went ${gap} ms without firing`);
});

/**
 * Starts a flooder in its own process (so that it competes with the server, not with the
 * test's own clients): it completes a handshake for `path`, then writes `frame` (a masked
 * client frame) as fast as the server takes it for `ms`, reading whatever comes back.
 * Resolves once it is flooding, with `done`, a promise of the bytes it received.
 */
async function spawnFlooder(t, port, path, frame, ms) {
  const { spawn } = require('node:child_process');
  const source = `'use strict';
const net = require('node:net');
const [port, path, hex, ms] = process.argv.slice(1);
const frame = Buffer.from(hex, 'hex');
const chunk = Buffer.concat(Array.from({ length: Math.ceil(65536 / frame.length) }, () => frame));
const socket = net.connect(Number(port), ${JSON.stringify(HOST)});
let received = 0;
let head = '';
socket.on('error', () => process.exit(0));
socket.on('connect', () => socket.write('GET ' + path + ' HTTP/1.1\\r\\nHost: localhost\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n'));
const onHead = (data) => {
  head += data.toString('latin1');
  if (!head.includes('\\r\\n\\r\\n')) return;
  socket.removeListener('data', onHead);
  socket.on('data', (d) => (received += d.length));
  process.send('flooding');
  const end = Date.now() + Number(ms);
  const pump = () => {
    while (Date.now() < end) if (!socket.write(chunk)) return socket.once('drain', pump);
    process.send({ received });
    socket.destroy();
    process.disconnect();
  };
  pump();
};
socket.on('data', onHead);
`;
  const child = spawn(process.execPath, ['-e', source, String(port), path, frame.toString('hex'), String(ms)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  t.after(() => child.kill());
  const done = new Promise((resolve) => child.on('message', (m) => m.received !== undefined && resolve(m.received)));
  await withTimeout(
    new Promise((resolve) => child.on('message', (m) => m === 'flooding' && resolve())),
    5000,
    'the flooder to start'
  );
  return { done: withTimeout(done, ms + 10000, 'the flooder to finish') };
}

test('a client flooding pings or tiny messages, reading what comes back, does not hold up other clients', async (t) => {
  // The flooder takes its pongs, so its own queue never fills: what protects the others is
  // how much of an I/O thread, of the engine's event queue and of the JS thread one
  // connection may take. Server and flooder each run in their own process.
  const srv = await childServer(
    (velocy) => {
      const router = new velocy.Router({ websocket: { heartbeatInterval: 0 } });
      router.ws('/ws/echo', (ws) => ws.on('message', (data) => ws.send(data)));
      router.ws('/ws/quiet', () => {});
      router.ws('/ws/pings', (ws) => ws.on('ping', () => {}));
      router.ws('/ws/sink', (ws) => ws.on('message', () => {}));
      return router;
    },
    { t, timeoutMs: 20000 }
  );
  const normal = await connectWithInbox(`${srv.url}/ws/echo`, t);
  const floods = [
    ['empty pings', '/ws/quiet', clientFrame(0x9)],
    ['pings to a connection with a ping listener', '/ws/pings', clientFrame(0x9, 'p')],
    ['1-byte text messages', '/ws/sink', clientFrame(0x1, 't')],
    ['1-byte binary messages', '/ws/sink', clientFrame(0x2, Buffer.from([1]))],
  ];
  for (const [what, path, frame] of floods) {
    await t.test(what, async (t) => {
      const ms = 1500;
      const flooder = await spawnFlooder(t, srv.port, path, frame, ms);
      const end = Date.now() + ms;
      let worst = 0;
      let trips = 0;
      while (Date.now() < end) {
        const start = Date.now();
        normal.client.send(`trip ${trips}`);
        assert.deepEqual(await normal.got.texts(1, 15000), [`trip ${trips}`]);
        worst = Math.max(worst, Date.now() - start);
        trips++;
      }
      const received = await flooder.done;
      if (frame[0] === 0x89) assert.ok(received > 0, 'the flooder got pongs');
      assert.ok(worst < 1000, `during a flood of ${what}, an echo round trip took up to ${worst} ms (${trips} round trips in ${ms} ms)`);
    });
  }
});

test('nothing panics: a server in a child process takes all of it, stays silent, and returns to its baseline', async (t) => {
  const srv = await childServer(
    (velocy) => {
      const router = new velocy.Router({ websocket: { handshakeTimeout: 200, maxBackpressure: 256 * 1024 } });
      router.ws('/ws/echo', (ws) => ws.on('message', (data) => ws.send(data)));
      return router;
    },
    { t }
  );
  const normal = await connectWithInbox(`${srv.url}/ws/echo`, t);
  const echo = keepEchoing(normal);
  const baseline = await srv.call('stats');

  const headers = {};
  for (let i = 0; i < 5000; i++) headers[`X-H${i}`] = 'v';
  const refused = [
    upgradeRequest(`/ws/echo?q=${'a'.repeat(17 * 1024)}`),
    upgradeRequest('/ws/echo', headers),
    Buffer.concat([Buffer.from([0]), crypto.randomBytes(2048)]),
  ];
  await Promise.all(refused.map((r) => rawHttp(srv.port, r)));
  const silent = await Promise.all(Array.from({ length: 50 }, () => tcp(srv.port)));
  t.after(() => silent.forEach((s) => s.destroy()));
  await Promise.all(silent.map((s) => endedWithin(s, 2000)));
  const half = upgradeRequest('/ws/echo').slice(0, 60);
  for (let i = 0; i < 1000; i += 200) {
    await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise((resolve) => {
            const s = net.connect(srv.port, HOST, () => s.write(half, () => s.resetAndDestroy()));
            s.on('error', () => {});
            s.once('close', resolve);
          })
      )
    );
  }
  const flooder = await rawUpgrade(srv.port, '/ws/echo');
  flooder.on('error', () => {});
  t.after(() => flooder.destroy());
  const ping = clientFrame(0x9, Buffer.alloc(125));
  const chunk = Buffer.concat(Array.from({ length: 500 }, () => ping));
  for (let i = 0; i < 200; i++) flooder.write(chunk); // 13 MB of pings, left to the kernel
  await progresses(echo);
  flooder.destroy();
  assert.ok((await echo.stop()) > 0);
  normal.client.close();

  const after = await srv.call('close');
  assert.equal(after.pending, 0);
  assert.equal(after.connections, 0);
  // Loose on purpose (allocator and heap noise); bench/abuse.js has the measured figures.
  const growth = after.rss - baseline.rss;
  assert.ok(growth < 48 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
  assert.equal(srv.stderr(), '', 'the server wrote nothing to stderr (no panic, no error)');
  assert.equal(srv.child.exitCode, null, 'the server process is alive');
});
