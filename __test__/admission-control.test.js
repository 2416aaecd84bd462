'use strict';

// Limits at the door and handshake-time admission (README, "Admission at the handshake"):
// `maxConnections` (503 beyond it), the per-connection `rateLimit` (1008 'Rate limit
// exceeded', pings included), `verifyClient(req)` (true / false / { status, message } / a
// promise of these; a throw or rejection is a 500), `allowedOrigins` (403), their validation
// and their changes through `configureWebSocket` at run time; and the in-handler style
// `ws.close(1008, ...)` in a middleware, alongside them. Refusals are read over raw TCP so
// that the status line and the body are checked exactly.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const { Router } = require('..');
const {
  listen,
  connect,
  connectWithInbox,
  named,
  nextClose,
  rawHttp,
  rawClient,
  upgradeRequest,
  parseResponse,
  clientFrame,
  closeInfo,
  withTimeout,
} = require('./helpers');

const OP = { TEXT: 0x1, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

/** Sends an upgrade request for `path` over raw TCP; resolves with the parsed response. */
async function handshake(port, path, headers = {}) {
  return parseResponse(await rawHttp(port, upgradeRequest(path, headers)));
}

/** Asserts that a handshake for `path` is refused with `status` and exactly `body`. */
async function assertRefused(port, path, status, body, headers = {}) {
  const res = await handshake(port, path, headers);
  assert.equal(res.status, status, `status line: ${res.statusLine}`);
  assert.match(res.statusLine, new RegExp(`^HTTP/1\\.1 ${status} `));
  assert.equal(res.headers.connection, 'close');
  assert.equal(res.headers['content-length'], String(Buffer.byteLength(body)));
  assert.equal(res.body, body);
  return res;
}

/** Asserts that a handshake for `path` is accepted (101) and closes that raw socket. */
async function assertAccepted(port, path, headers = {}) {
  const { text, socket } = await rawHttp(port, upgradeRequest(path, headers), { untilHead: true });
  socket.destroy();
  assert.match(text, /^HTTP\/1\.1 101 /, `response: ${text.split('\r\n')[0]}`);
}

/** A router whose '/c' route files connections by `?name=` and echoes text messages. */
function echoRouter(websocket) {
  const router = new Router({ websocket });
  const conns = named();
  const received = new Map(); // name -> texts delivered to JS
  router.ws('/c', (ws, req) => {
    const name = String(req.query.name);
    received.set(name, []);
    ws.on('message', (data) => {
      received.get(name).push(String(data));
      ws.send(String(data));
    });
    conns.handler(ws, req);
  });
  return { router, conns, received };
}

/** Asserts that `fn` throws `Ctor` with code ERR_INVALID_OPTION and a message naming `name`. */
function assertOptionError(fn, Ctor, name) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Ctor, `expected ${Ctor.name}, got ${err && err.name}: ${err && err.message}`);
    assert.equal(err.code, 'ERR_INVALID_OPTION');
    assert.ok(err.message.includes(`"${name}"`), `message names "${name}": ${err.message}`);
    return true;
  });
}

// ---------------------------------------------------------------------------------------
// maxConnections

test('maxConnections: the (N+1)th handshake gets 503, and a slot freed by a close is taken again', async (t) => {
  const { router, conns } = echoRouter({ maxConnections: 2 });
  const { url, port } = await listen(router, t);
  const a = await connect(`${url}/c?name=a`, t);
  await connect(`${url}/c?name=b`, t);
  await conns.get('a');
  await conns.get('b');

  await assertRefused(port, '/c?name=c', 503, 'Too many connections');
  const res = await handshake(port, '/c?name=c2');
  assert.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable');
  // A ws client sees the status too.
  await assert.rejects(connect(`${url}/c?name=c3`), { statusCode: 503 });

  // One closes: once the server has seen it go, there is room for one more, and only one.
  const { ws: serverA } = await conns.get('a');
  const gone = nextClose(serverA);
  a.close(1000);
  assert.equal((await gone).code, 1000);
  await connect(`${url}/c?name=d`, t);
  await conns.get('d');
  await assertRefused(port, '/c?name=e', 503, 'Too many connections');
  assert.equal(router.getWebSocketRouter().getStats().connections, 2);
});

test('maxConnections 0 means no limit; configureWebSocket changes the limit at run time', async (t) => {
  const { router, conns } = echoRouter({ maxConnections: 0 });
  const { url, port } = await listen(router, t);
  const clients = [];
  for (const name of ['a', 'b', 'c', 'd']) {
    clients.push(await connectWithInbox(`${url}/c?name=${name}`, t));
    await conns.get(name);
  }
  // Lowered below the open count: open connections stay, new handshakes are refused.
  router.configureWebSocket({ maxConnections: 3 });
  await assertRefused(port, '/c?name=x', 503, 'Too many connections');
  for (const { client, got } of clients) {
    client.send('still here');
    assert.deepEqual(await got.texts(1), ['still here']);
  }
  // Raised: accepted again.
  router.configureWebSocket({ maxConnections: 5 });
  await connect(`${url}/c?name=e`, t);
  await conns.get('e');
  await assertRefused(port, '/c?name=y', 503, 'Too many connections');
  // Back to 0: no limit.
  router.configureWebSocket({ maxConnections: 0 });
  await connect(`${url}/c?name=f`, t);
  await connect(`${url}/c?name=g`, t);
  await conns.get('g');
});

test('maxConnections holds when handshakes overlap: a slow verifyClient cannot let two through one slot', async (t) => {
  // Both handshakes are held in verifyClient until either both were asked (then both would
  // pass the connection count before either is registered) or one was answered already.
  const router = new Router({ websocket: { maxConnections: 1 } });
  const held = [];
  let released = false;
  const release = () => {
    released = true;
    for (const resolve of held.splice(0)) resolve(true);
  };
  let asked = 0;
  router.configureWebSocket({
    verifyClient: () =>
      new Promise((resolve) => {
        held.push(resolve);
        if (++asked === 2 || released) release();
      }),
  });
  const conns = named();
  router.ws('/c', conns.handler);
  const { port } = await listen(router, t);
  const responses = await Promise.all(
    ['a', 'b'].map((name) =>
      rawHttp(port, upgradeRequest(`/c?name=${name}`), { untilHead: true }).then((r) => {
        t.after(() => r.socket.destroy());
        release();
        return { name, ...parseResponse(r.text), socket: r.socket };
      })
    )
  );
  const statuses = responses.map((r) => r.status).sort();
  assert.deepEqual(statuses, [101, 503], 'one accepted, one refused');
  assert.equal(responses.find((r) => r.status === 503).body, 'Too many connections');
  assert.equal(asked, 1, 'the refused one was not put to verifyClient');

  // The slot is the accepted connection's: freed when it closes.
  const accepted = responses.find((r) => r.status === 101);
  const { ws } = await conns.get(accepted.name);
  const gone = nextClose(ws);
  accepted.socket.destroy();
  await gone;
  await assertAccepted(port, '/c?name=next');
});

test('maxConnections: handshakes refused by verifyClient, or timed out in it, give their slot back', async (t) => {
  const { router, counts, conns } = verifyRouter(
    (req) => (req.query.v === 'slow' ? new Promise(() => {}) : req.query.v === 'yes'),
    { maxConnections: 1, handshakeTimeout: 200 }
  );
  const { port, url } = await listen(router, t);
  // The refused clients keep their sockets open after the response (as a client may): the
  // answer is final, so the slot must be free at once, not when they get round to closing.
  const refused = async (query, statusLine) => {
    const { text, socket } = await rawHttp(port, upgradeRequest(`/v/r?${query}`), { untilHead: true });
    t.after(() => socket.destroy());
    assert.equal(text.split('\r\n')[0], statusLine);
  };
  for (let i = 0; i < 3; i++) await refused('v=no', 'HTTP/1.1 401 Unauthorized');
  await refused('v=slow', 'HTTP/1.1 503 Service Unavailable');
  await connect(`${url}/v/r?v=yes&name=ok`, t);
  await conns.get('ok');
  assert.deepEqual(counts, { middleware: 1, route: 1, handler: 1 });
  await assertRefused(port, '/v/r?v=yes&name=over', 503, 'Too many connections');
});

// ---------------------------------------------------------------------------------------
// rateLimit

test('rateLimit: exactly `messages` per interval pass; one more closes with 1008 "Rate limit exceeded"', async (t) => {
  const { router, conns, received } = echoRouter({ rateLimit: { messages: 5, interval: 60000 } });
  const { url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/c?name=a`, t);
  const { ws } = await conns.get('a');
  for (let i = 0; i < 5; i++) client.send(`m${i}`);
  assert.deepEqual(await got.texts(5), ['m0', 'm1', 'm2', 'm3', 'm4']);
  assert.equal(client.readyState, client.OPEN, 'at the limit, not over it');

  const serverClose = nextClose(ws);
  const clientClose = nextClose(client);
  client.send('m5');
  assert.deepEqual(await clientClose, { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(await serverClose, { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(received.get('a'), ['m0', 'm1', 'm2', 'm3', 'm4'], 'the message over the limit never reached JS');
});

test('rateLimit: a burst far over the limit delivers only the first `messages` to JS', async (t) => {
  const { router, conns, received } = echoRouter({ rateLimit: { messages: 5, interval: 60000 } });
  const { port } = await listen(router, t);
  const raw = await rawClient(port, '/c?name=burst', { t });
  assert.equal(raw.response.status, 101);
  const { ws } = await conns.get('burst');
  const serverClose = nextClose(ws);
  const frames = [];
  for (let i = 0; i < 50; i++) frames.push(clientFrame(OP.TEXT, `b${i}`));
  await raw.write(...frames);

  // Echoes sent by JS may or may not beat the engine's close frame; nothing follows it.
  let f;
  while ((f = await raw.next()).opcode === OP.TEXT);
  assert.equal(f.opcode, OP.CLOSE);
  assert.deepEqual(closeInfo(f), { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(await serverClose, { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(received.get('burst'), ['b0', 'b1', 'b2', 'b3', 'b4'], 'JS saw the first 5 only');
  await withTimeout(raw.closed, 5000, 'the server to end the connection');
  assert.equal(ws.send('late'), false, 'the connection is closed for JS too');
});

test('rateLimit: a client that stays under the limit window after window stays open', async (t) => {
  // The window is fixed: it starts at the first input after the previous one expired. To
  // keep each round of 4 messages in a window of its own, the next round is sent at least
  // `interval` after the last echo of the previous one arrived (that echo was sent after the
  // server had read the round, so the window the round fell in started before it). This is
  // a deliberate wait for the rate window to pass, the behaviour under test; 3 x ~110 ms.
  const INTERVAL = 100;
  const { router, conns, received } = echoRouter({ heartbeatInterval: 0, rateLimit: { messages: 5, interval: INTERVAL } });
  const { url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/c?name=steady`, t);
  await conns.get('steady');
  const sent = [];
  for (let round = 0; round < 4; round++) {
    const batch = [0, 1, 2, 3].map((i) => `r${round}-${i}`);
    for (const m of batch) client.send(m);
    sent.push(...batch);
    assert.deepEqual(await got.texts(4), batch);
    if (round < 3) await windowPassed(performance.now(), INTERVAL + 10);
  }
  assert.equal(client.readyState, client.OPEN);
  assert.deepEqual(received.get('steady'), sent, '16 messages in 4 windows of 5: all delivered');
});

/** Resolves once `ms` have passed since `since` (performance.now()), checked on the clock. */
async function windowPassed(since, ms) {
  while (performance.now() - since < ms) {
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(ms - (performance.now() - since)))));
  }
}

test('rateLimit: pings count, so a ping flood is closed with 1008 after `messages` pongs', async (t) => {
  const router = new Router({ websocket: { rateLimit: { messages: 5, interval: 60000 } } });
  const conns = named();
  const pings = [];
  router.ws('/c', (ws, req) => {
    ws.on('ping', (data) => pings.push(String(data)));
    conns.handler(ws, req);
  });
  const { port } = await listen(router, t);
  const raw = await rawClient(port, '/c?name=p', { t });
  const { ws } = await conns.get('p');
  const serverClose = nextClose(ws);
  const frames = [];
  for (let i = 0; i < 1000; i++) frames.push(clientFrame(OP.PING, `p${i}`));
  await raw.write(...frames);

  const pongs = [];
  let f;
  while ((f = await raw.next()).opcode === OP.PONG) pongs.push(f.payload.toString());
  assert.deepEqual(closeInfo(f), { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(pongs, ['p0', 'p1', 'p2', 'p3', 'p4']);
  assert.deepEqual(await serverClose, { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(pings, ['p0', 'p1', 'p2', 'p3', 'p4']);
  // The server ends the connection after its close frame.
  await withTimeout(raw.closed, 5000, 'the server to end the connection');
});

test('rateLimit: pings and messages share one budget', async (t) => {
  const { router, conns, received } = echoRouter({ rateLimit: { messages: 4, interval: 60000 } });
  const { port } = await listen(router, t);
  const raw = await rawClient(port, '/c?name=mix', { t });
  const { ws } = await conns.get('mix');
  const serverClose = nextClose(ws);
  await raw.write(
    clientFrame(OP.PING, 'p0'),
    clientFrame(OP.TEXT, 't0'),
    clientFrame(OP.PING, 'p1'),
    clientFrame(OP.TEXT, 't1'),
    clientFrame(OP.TEXT, 't2') // the fifth
  );
  assert.deepEqual(await serverClose, { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(received.get('mix'), ['t0', 't1']);
  // The engine answers pings at once; the echoes from JS may or may not beat its close.
  const pongs = [];
  let f;
  while ((f = await raw.next()).opcode !== OP.CLOSE) if (f.opcode === OP.PONG) pongs.push(String(f.payload));
  assert.deepEqual(pongs, ['p0', 'p1']);
  assert.deepEqual(closeInfo(f), { code: 1008, reason: 'Rate limit exceeded' });
});

test('rateLimit set by configureWebSocket reaches open connections; null removes it', async (t) => {
  const { router, conns, received } = echoRouter({});
  const { url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/c?name=a`, t);
  const { ws } = await conns.get('a');
  for (let i = 0; i < 20; i++) client.send(`free${i}`);
  assert.equal((await got.texts(20)).length, 20, 'no limit by default');

  router.configureWebSocket({ rateLimit: null });
  for (let i = 0; i < 20; i++) client.send(`null${i}`);
  assert.equal((await got.texts(20)).length, 20, 'null: no limit');

  router.configureWebSocket({ rateLimit: { messages: 3, interval: 60000 } });
  const serverClose = nextClose(ws);
  for (let i = 0; i < 10; i++) client.send(`lim${i}`);
  assert.deepEqual(await nextClose(client), { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(await serverClose, { code: 1008, reason: 'Rate limit exceeded' });
  assert.deepEqual(received.get('a').slice(40), ['lim0', 'lim1', 'lim2']);
});

test('rateLimit.interval defaults to 1000 ms', async (t) => {
  const router = new Router({ websocket: { rateLimit: { messages: 2 } } });
  const conns = named();
  router.ws('/c', conns.handler);
  const { url } = await listen(router, t);
  const client = await connect(`${url}/c?name=a`, t);
  await conns.get('a');
  const closed = nextClose(client);
  for (let i = 0; i < 3; i++) client.send(`x${i}`);
  assert.deepEqual(await closed, { code: 1008, reason: 'Rate limit exceeded' });
});

// ---------------------------------------------------------------------------------------
// Validation of the admission options

test('maxConnections, rateLimit, verifyClient and allowedOrigins are validated (constructor and configureWebSocket)', () => {
  const bad = [
    [{ maxConnections: -1 }, RangeError, 'maxConnections'],
    [{ maxConnections: 1.5 }, RangeError, 'maxConnections'],
    [{ maxConnections: Infinity }, RangeError, 'maxConnections'],
    [{ maxConnections: '2' }, TypeError, 'maxConnections'],
    [{ rateLimit: 10 }, TypeError, 'rateLimit'],
    [{ rateLimit: 'fast' }, TypeError, 'rateLimit'],
    [{ rateLimit: {} }, TypeError, 'rateLimit.messages'],
    [{ rateLimit: { messages: 0, interval: 100 } }, RangeError, 'rateLimit.messages'],
    [{ rateLimit: { messages: 1.5, interval: 100 } }, RangeError, 'rateLimit.messages'],
    [{ rateLimit: { messages: '5', interval: 100 } }, TypeError, 'rateLimit.messages'],
    [{ rateLimit: { messages: 5, interval: 0 } }, RangeError, 'rateLimit.interval'],
    [{ rateLimit: { messages: 5, interval: -100 } }, RangeError, 'rateLimit.interval'],
    [{ rateLimit: { messages: 5, interval: '100' } }, TypeError, 'rateLimit.interval'],
    [{ rateLimit: { messages: 5, interval: 100, x: 1 } }, TypeError, 'rateLimit.x'],
    [{ rateLimit: { messages: 5, windowMs: 100 } }, TypeError, 'rateLimit.windowMs'],
    [{ verifyClient: true }, TypeError, 'verifyClient'],
    [{ verifyClient: 'yes' }, TypeError, 'verifyClient'],
    [{ allowedOrigins: 'https://app.example' }, TypeError, 'allowedOrigins'],
    [{ allowedOrigins: [''] }, TypeError, 'allowedOrigins'],
    [{ allowedOrigins: ['https://a.example', ''] }, TypeError, 'allowedOrigins'],
    [{ allowedOrigins: ['https://a.example', 42] }, TypeError, 'allowedOrigins'],
    [{ allowedOrigins: {} }, TypeError, 'allowedOrigins'],
  ];
  const router = new Router();
  for (const [websocket, Ctor, name] of bad) {
    assertOptionError(() => new Router({ websocket }), Ctor, name);
    assertOptionError(() => router.configureWebSocket(websocket), Ctor, name);
  }
  // Valid values, including the "off" ones.
  for (const websocket of [
    { maxConnections: 0 },
    { maxConnections: 10 },
    { rateLimit: null },
    { rateLimit: { messages: 1, interval: 1 } },
    { verifyClient: null },
    { verifyClient: () => true },
    { allowedOrigins: null },
    { allowedOrigins: ['*'] },
    { allowedOrigins: ['https://a.example', 'http://localhost:3000'] },
  ]) {
    assert.doesNotThrow(() => new Router({ websocket }));
    assert.doesNotThrow(() => router.configureWebSocket(websocket));
  }
});

test('an invalid configureWebSocket call changes nothing, not even its valid options', async (t) => {
  const { router, conns } = echoRouter({ maxConnections: 0 });
  const { url, port } = await listen(router, t);
  assertOptionError(
    () => router.configureWebSocket({ maxConnections: 1, rateLimit: { messages: 1, burst: 2 } }),
    TypeError,
    'rateLimit.burst'
  );
  await connect(`${url}/c?name=a`, t);
  await connect(`${url}/c?name=b`, t);
  await conns.get('b');
  await assertAccepted(port, '/c?name=c');
  // The options object given is copied: editing it later changes nothing.
  const origins = ['https://app.example'];
  router.configureWebSocket({ allowedOrigins: origins });
  origins.push('https://evil.example');
  await assertRefused(port, '/c?name=d', 403, 'Origin not allowed', { Origin: 'https://evil.example' });
});

// ---------------------------------------------------------------------------------------
// verifyClient

/**
 * A router with `verifyClient`, middleware and a handler on '/v/:room' that count their
 * calls, so a test can show a refused client never reaches them.
 */
function verifyRouter(verifyClient, extra = {}) {
  const router = new Router({ websocket: { verifyClient, ...extra } });
  const counts = { middleware: 0, route: 0, handler: 0 };
  const conns = named();
  router.use((ws, req, next) => {
    counts.middleware++;
    next();
  });
  router.ws(
    '/v/:room',
    (ws, req, next) => {
      counts.route++;
      next();
    },
    (ws, req) => {
      counts.handler++;
      conns.handler(ws, req);
    }
  );
  return { router, counts, conns };
}

const later = (value) => new Promise((resolve) => setImmediate(() => resolve(value)));
const laterReject = (err) => new Promise((resolve, reject) => setImmediate(() => reject(err)));

test('verifyClient: true accepts; false refuses with 401; { status, message } with that status and body', async (t) => {
  const verdicts = { yes: true, no: false, forbidden: { status: 403, message: 'No' }, teapot: { status: 429, message: 'Slow down' } };
  const seen = [];
  const { router, counts, conns } = verifyRouter((req) => {
    seen.push(req.query.v);
    return verdicts[req.query.v];
  });
  const { port, url } = await listen(router, t);

  await assertRefused(port, '/v/r?v=no', 401, 'Unauthorized');
  const res = await assertRefused(port, '/v/r?v=forbidden', 403, 'No');
  assert.equal(res.statusLine, 'HTTP/1.1 403 Forbidden');
  await assertRefused(port, '/v/r?v=teapot', 429, 'Slow down');
  await assert.rejects(connect(`${url}/v/r?v=no`), { statusCode: 401 });
  assert.deepEqual(counts, { middleware: 0, route: 0, handler: 0 }, 'a refused client reaches no handler');

  await connect(`${url}/v/r?v=yes&name=ok`, t);
  await conns.get('ok');
  assert.deepEqual(counts, { middleware: 1, route: 1, handler: 1 });
  assert.deepEqual(seen, ['no', 'forbidden', 'teapot', 'no', 'yes']);
});

test('verifyClient: a promise of each verdict, settled after a tick, is awaited', async (t) => {
  const verdicts = { yes: true, no: false, forbidden: { status: 403, message: 'No' } };
  const { router, counts, conns } = verifyRouter((req) => later(verdicts[req.query.v]));
  const { port, url } = await listen(router, t);
  await assertRefused(port, '/v/r?v=no', 401, 'Unauthorized');
  await assertRefused(port, '/v/r?v=forbidden', 403, 'No');
  assert.deepEqual(counts, { middleware: 0, route: 0, handler: 0 });
  await connect(`${url}/v/r?v=yes&name=ok`, t);
  await conns.get('ok');
  assert.deepEqual(counts, { middleware: 1, route: 1, handler: 1 });
});

test('verifyClient: a throw or a rejection refuses with 500 and is logged', async (t) => {
  const logged = t.mock.method(console, 'error', () => {});
  const thrown = new Error('verifier exploded');
  const rejected = new Error('verifier rejected');
  const { router, counts } = verifyRouter((req) => {
    if (req.query.v === 'throw') throw thrown;
    return laterReject(rejected);
  });
  const { port } = await listen(router, t);
  await assertRefused(port, '/v/r?v=throw', 500, 'Internal Server Error');
  await assertRefused(port, '/v/r?v=reject', 500, 'Internal Server Error');
  assert.deepEqual(counts, { middleware: 0, route: 0, handler: 0 });
  assert.equal(logged.mock.callCount(), 2);
  assert.ok(logged.mock.calls[0].arguments.includes(thrown), 'the thrown error is logged');
  assert.ok(logged.mock.calls[1].arguments.includes(rejected), 'the rejection is logged');
  assert.match(String(logged.mock.calls[0].arguments[0]), /\/v\/:room/, 'the log names the route');
});

test('verifyClient: null/undefined or a status outside 400-599 refuses with 401', async (t) => {
  const verdicts = {
    null: null,
    undef: undefined,
    ok200: { status: 200, message: 'fine?' },
    big: { status: 999 },
    str: { status: '403' },
    frac: { status: 403.5 },
    empty: {},
  };
  const { router, counts } = verifyRouter((req) => verdicts[req.query.v]);
  const { port } = await listen(router, t);
  await assertRefused(port, '/v/r?v=null', 401, 'Unauthorized');
  await assertRefused(port, '/v/r?v=undef', 401, 'Unauthorized');
  await assertRefused(port, '/v/r?v=ok200', 401, 'fine?');
  await assertRefused(port, '/v/r?v=big', 401, 'Unauthorized');
  await assertRefused(port, '/v/r?v=str', 401, 'Unauthorized');
  await assertRefused(port, '/v/r?v=frac', 401, 'Unauthorized');
  await assertRefused(port, '/v/r?v=empty', 401, 'Unauthorized');
  assert.deepEqual(counts, { middleware: 0, route: 0, handler: 0 });
});

test('verifyClient gets the request: headers, url, path, query, params, remoteAddress', async (t) => {
  let got = null;
  const { router, conns } = verifyRouter((req) => {
    got = req;
    return true;
  });
  const { url } = await listen(router, t);
  await connect(`${url}/v/caf%C3%A9?token=abc&x=1&x=2&name=n`, t, { headers: { 'X-Custom': 'hello', Origin: 'https://app.example' } });
  const { req: handlerReq } = await conns.get('n');
  assert.ok(got !== null);
  assert.equal(got.url, '/v/caf%C3%A9?token=abc&x=1&x=2&name=n');
  assert.equal(got.path, '/v/caf%C3%A9');
  assert.equal(got.method, 'GET');
  assert.deepEqual({ ...got.query }, { token: 'abc', x: ['1', '2'], name: 'n' });
  assert.deepEqual({ ...got.params }, { room: 'café' });
  assert.equal(got.headers['x-custom'], 'hello');
  assert.equal(got.headers.origin, 'https://app.example');
  assert.equal(got.headers.upgrade, 'websocket');
  assert.equal(typeof got.headers['sec-websocket-key'], 'string');
  assert.equal(got.remoteAddress, '127.0.0.1');
  assert.equal(typeof got.remotePort, 'number');
  // The handler sees the same request data.
  assert.equal(handlerReq.url, got.url);
  assert.deepEqual({ ...handlerReq.params }, { ...got.params });
  assert.equal(handlerReq.remotePort, got.remotePort);
});

test('verifyClient that never settles: the handshake gets 503 once handshakeTimeout has passed', async (t) => {
  let asked = 0;
  const { router, counts } = verifyRouter(
    () => {
      asked++;
      return new Promise(() => {});
    },
    { handshakeTimeout: 200 }
  );
  const { port } = await listen(router, t);
  const start = performance.now();
  await assertRefused(port, '/v/r?v=slow', 503, 'Service Unavailable');
  const elapsed = performance.now() - start;
  assert.equal(asked, 1);
  assert.ok(elapsed >= 150, `refused after ${elapsed.toFixed(0)} ms, before the timeout`);
  assert.ok(elapsed < 3000, `refused after ${elapsed.toFixed(0)} ms`);
  assert.deepEqual(counts, { middleware: 0, route: 0, handler: 0 });
});

test('verifyClient deciding after the handshake timed out changes nothing', async (t) => {
  let settle;
  const { router, counts, conns } = verifyRouter(
    (req) => (req.query.v === 'late' ? new Promise((resolve) => (settle = resolve)) : true),
    { handshakeTimeout: 200 }
  );
  const { port, url } = await listen(router, t);
  await assertRefused(port, '/v/r?v=late', 503, 'Service Unavailable');
  settle(true);
  // The server goes on serving.
  await connect(`${url}/v/r?v=now&name=after`, t);
  await conns.get('after');
  assert.deepEqual(counts, { middleware: 1, route: 1, handler: 1 });
});

test('verifyClient set and removed with configureWebSocket at run time', async (t) => {
  const { router, counts, conns } = verifyRouter(null);
  const { port, url } = await listen(router, t);
  await connect(`${url}/v/r?name=a`, t);
  await conns.get('a');
  router.configureWebSocket({ verifyClient: () => ({ status: 403, message: 'Closed for maintenance' }) });
  await assertRefused(port, '/v/r?name=b', 403, 'Closed for maintenance');
  router.configureWebSocket({ verifyClient: null });
  await connect(`${url}/v/r?name=c`, t);
  await conns.get('c');
  assert.deepEqual(counts, { middleware: 2, route: 2, handler: 2 });
});

// ---------------------------------------------------------------------------------------
// allowedOrigins

test('allowedOrigins: the listed origin is accepted (case-insensitive); others and none get 403', async (t) => {
  let verified = 0;
  const { router, counts, conns } = verifyRouter(
    () => {
      verified++;
      return true;
    },
    { allowedOrigins: ['https://App.Example', 'http://localhost:3000'] }
  );
  const { port, url } = await listen(router, t);
  await connect(`${url}/v/r?name=a`, t, { headers: { Origin: 'https://app.example' } });
  await connect(`${url}/v/r?name=b`, t, { headers: { Origin: 'HTTPS://APP.EXAMPLE' } });
  await connect(`${url}/v/r?name=c`, t, { headers: { Origin: 'http://localhost:3000' } });
  await conns.get('c');

  await assertRefused(port, '/v/r?name=x', 403, 'Origin not allowed', { Origin: 'https://evil.example' });
  await assertRefused(port, '/v/r?name=x', 403, 'Origin not allowed', { Origin: 'https://app.example.evil' });
  await assertRefused(port, '/v/r?name=x', 403, 'Origin not allowed', { Origin: 'http://app.example' });
  await assertRefused(port, '/v/r?name=x', 403, 'Origin not allowed', { Origin: 'http://localhost:3001' });
  await assertRefused(port, '/v/r?name=x', 403, 'Origin not allowed'); // no Origin header
  await assert.rejects(connect(`${url}/v/r?name=y`), { statusCode: 403 });
  assert.equal(verified, 3, 'a refused origin never reaches verifyClient');
  assert.deepEqual(counts, { middleware: 3, route: 3, handler: 3 });
});

test("allowedOrigins: '*' allows any origin; null turns the check off; changes apply at run time", async (t) => {
  const { router, conns } = verifyRouter(null, { allowedOrigins: ['*'] });
  const { port } = await listen(router, t);
  await assertAccepted(port, '/v/r?name=a', { Origin: 'https://anything.example' });
  await assertAccepted(port, '/v/r?name=b', { Origin: 'null' });

  router.configureWebSocket({ allowedOrigins: ['https://only.example'] });
  await assertRefused(port, '/v/r?name=x', 403, 'Origin not allowed', { Origin: 'https://anything.example' });
  await assertAccepted(port, '/v/r?name=c', { Origin: 'https://only.example' });

  router.configureWebSocket({ allowedOrigins: null });
  await assertAccepted(port, '/v/r?name=d', { Origin: 'https://anything.example' });
  await assertAccepted(port, '/v/r?name=e'); // and without one
  await conns.get('e');
});

// ---------------------------------------------------------------------------------------
// The in-handler style

test('the documented middleware style ws.close(1008, ...) keeps working alongside verifyClient', async (t) => {
  let verified = 0;
  const router = new Router({
    websocket: {
      verifyClient: (req) => {
        verified++;
        return req.query.banned === undefined;
      },
    },
  });
  let handled = 0;
  const conns = named();
  router.use((ws, req, next) => {
    if (!req.query.token) {
      ws.close(1008, 'Unauthorized');
      return;
    }
    next();
  });
  router.ws('/ws', (ws, req) => {
    handled++;
    conns.handler(ws, req);
  });
  const { url, port } = await listen(router, t);

  // verifyClient refuses at the door...
  await assertRefused(port, '/ws?banned=1&token=t', 401, 'Unauthorized');
  // ...the middleware closes after the upgrade...
  const noToken = await connect(`${url}/ws?name=anon`, t);
  assert.deepEqual(await nextClose(noToken), { code: 1008, reason: 'Unauthorized' });
  // ...and a client with a token reaches the handler.
  const { client, got } = await connectWithInbox(`${url}/ws?token=secret&name=user`, t);
  const { ws } = await conns.get('user');
  ws.send('welcome');
  assert.deepEqual(await got.texts(1), ['welcome']);
  assert.equal(client.readyState, client.OPEN);
  assert.equal(handled, 1);
  assert.equal(verified, 3);
});
