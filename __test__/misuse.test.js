'use strict';

// API misuse. Every public function and method checks its arguments and throws, synchronously,
// a TypeError or RangeError whose message names the bad argument ("data", "room", "code"...).
// Values that run the caller's own code (a Proxy that throws on access, a throwing getter or
// toJSON) may propagate the caller's error unchanged, and leave nothing half done. Methods on
// a closed connection return false or do nothing (README, "Closed connections"). Finally a
// seeded fuzz loop: nothing a JS caller passes crashes the process or stops the server.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Router, createServer, Server } = require('..');
const { listen, connect, connectWithInbox, named, nextClose, once, withTimeout } = require('./helpers');

/** The caller's own error, thrown by the hostile values below. */
class CallerError extends Error {}
const boom = () => {
  throw new CallerError('thrown by the caller');
};

/** A Proxy that throws on every kind of access. */
const hostileProxy = new Proxy(
  {},
  {
    get: boom,
    has: boom,
    ownKeys: boom,
    getPrototypeOf: boom,
    getOwnPropertyDescriptor: boom,
  }
);
/** An object whose `key` property throws when read. */
const throwingGetter = (key) =>
  Object.defineProperty({}, key, { get: boom, enumerable: true });
const throwingToJSON = { toJSON: boom };

function circular() {
  const o = { name: 'loop' };
  o.self = o;
  return o;
}

/** A view whose ArrayBuffer was transferred away (to a worker, or by structuredClone). */
function detachedView() {
  const ab = new ArrayBuffer(8);
  const view = new Uint8Array(ab);
  structuredClone(ab, { transfer: [ab] });
  return view;
}

const detachedArrayBuffer = () => detachedView().buffer;

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * `fn` must throw, synchronously, an instance of `Class` whose message names `name` (in
 * double quotes, as Node does, unless `name` is a RegExp), with `code` if given.
 */
function assertRejects(fn, Class, name, { code, label = '' } = {}) {
  let thrown = false;
  let err;
  try {
    fn();
  } catch (e) {
    thrown = true;
    err = e;
  }
  const what = `${label}: expected a ${Class.name} naming ${name}`;
  assert.ok(thrown, `${what}, but nothing was thrown`);
  assert.ok(err instanceof Class, `${what}, got ${err && err.constructor ? err.constructor.name : typeof err}: ${err && err.message}`);
  assert.match(err.message, name instanceof RegExp ? name : new RegExp(`"${escapeRe(name)}"`), what);
  if (code !== undefined) assert.equal(err.code, code, what);
}

/** Runs a table of `[label, fn, Class, name, code?]` through `assertRejects`. */
function assertAllReject(cases) {
  for (const [label, fn, Class, name, code] of cases) assertRejects(fn, Class, name, { code, label });
}

/**
 * With a hostile value, `fn` must throw either the caller's own error or a TypeError naming
 * `name` (when the type is refused before the value is touched): nothing else.
 */
function assertCallerErrorOrNaming(fn, name, label) {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `${label}: nothing was thrown`);
  if (err instanceof CallerError) return;
  assert.ok(err instanceof TypeError, `${label}: ${err && err.constructor && err.constructor.name}: ${err && err.message}`);
  assert.match(err.message, new RegExp(`"${escapeRe(name)}"`), label);
}

/**
 * A listening server with an echo route '/ws/live' whose connections are filed by ?name=,
 * and one open connection: `{ router, server, url, conns, ws, client, got }`.
 */
async function live(t, websocket) {
  const router = new Router(websocket === undefined ? undefined : { websocket });
  const conns = named();
  router.ws('/ws/live', (ws, req) => {
    conns.handler(ws, req);
    ws.on('message', (data, isBinary) => (isBinary ? ws.sendBinary(data) : ws.send(data)));
  });
  const { server, url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/ws/live?name=live`, t);
  const { ws } = await conns.get('live');
  return { router, server, url, conns, ws, client, got };
}

/** The connection is open and still echoes. */
async function assertServes({ ws, client, got }) {
  assert.equal(ws.readyState, 1);
  client.send('still there?');
  assert.deepEqual(await got.texts(1), ['still there?']);
}

// ---------------------------------------------------------------------------------------
// Router, options, createServer

test('new Router(options) checks options and every WebSocket option by name', () => {
  const cases = [
    ['null', () => new Router(null), TypeError, 'options'],
    ['number', () => new Router(42), TypeError, 'options'],
    ['string', () => new Router('x'), TypeError, 'options'],
    ['symbol', () => new Router(Symbol('x')), TypeError, 'options'],
    ['function', () => new Router(() => {}), TypeError, 'options'],
    ['websocket: number', () => new Router({ websocket: 5 }), TypeError, 'options.websocket'],
    ['websocket: null', () => new Router({ websocket: null }), TypeError, 'options.websocket'],
    ['unknown option', () => new Router({ websocket: { heartbeat: 1 } }), TypeError, 'heartbeat', 'ERR_INVALID_OPTION'],
    ['inherited name', () => new Router({ websocket: { toString: 1 } }), TypeError, 'toString', 'ERR_INVALID_OPTION'],
  ];
  const numeric = {
    heartbeatInterval: 0,
    heartbeatTimeout: 1,
    maxPayloadSize: 1,
    maxQueueSize: 0,
    queueTTL: 1,
    maxQueuedMessages: 0,
    handshakeTimeout: 1,
    maxBackpressure: 0,
    maxConnections: 0,
  };
  for (const [name, min] of Object.entries(numeric)) {
    for (const bad of ['10', null, true, {}, [], 10n, Symbol('n')]) {
      cases.push([`${name}: ${typeof bad}`, () => new Router({ websocket: { [name]: bad } }), TypeError, name, 'ERR_INVALID_OPTION']);
    }
    for (const bad of [NaN, Infinity, -Infinity, min - 1, 1.5, -0.5]) {
      cases.push([`${name}: ${bad}`, () => new Router({ websocket: { [name]: bad } }), RangeError, name, 'ERR_INVALID_OPTION']);
    }
  }
  for (const name of ['enableQueue', 'closeOnBackpressureLimit']) {
    for (const bad of ['true', 1, null, {}]) {
      cases.push([`${name}: ${String(bad)}`, () => new Router({ websocket: { [name]: bad } }), TypeError, name, 'ERR_INVALID_OPTION']);
    }
  }
  for (const name of ['identify', 'handleProtocols', 'verifyClient']) {
    for (const bad of ['fn', 1, {}, true]) {
      cases.push([`${name}: ${String(bad)}`, () => new Router({ websocket: { [name]: bad } }), TypeError, name, 'ERR_INVALID_OPTION']);
    }
  }
  for (const bad of ['https://a.example', [''], [1], {}, 5]) {
    cases.push([`allowedOrigins: ${JSON.stringify(bad)}`, () => new Router({ websocket: { allowedOrigins: bad } }), TypeError, 'allowedOrigins']);
  }
  cases.push(
    ['rateLimit: number', () => new Router({ websocket: { rateLimit: 5 } }), TypeError, 'rateLimit'],
    ['rateLimit without messages', () => new Router({ websocket: { rateLimit: {} } }), TypeError, 'rateLimit.messages'],
    ['rateLimit.messages: 0', () => new Router({ websocket: { rateLimit: { messages: 0 } } }), RangeError, 'rateLimit.messages'],
    ['rateLimit.interval: NaN', () => new Router({ websocket: { rateLimit: { messages: 1, interval: NaN } } }), RangeError, 'rateLimit.interval'],
    ['rateLimit.extra', () => new Router({ websocket: { rateLimit: { messages: 1, burst: 2 } } }), TypeError, 'rateLimit.burst']
  );
  assertAllReject(cases);
  // The messages describe any value without throwing themselves.
  assertRejects(() => new Router({ websocket: { maxBackpressure: circular() } }), TypeError, 'maxBackpressure');
  assertCallerErrorOrNaming(() => new Router({ websocket: { identify: hostileProxy } }), 'identify', 'identify: Proxy');
});

test('new Router: hostile option objects propagate the caller error', () => {
  assert.throws(() => new Router({ websocket: hostileProxy }), CallerError);
  assert.throws(() => new Router({ websocket: throwingGetter('maxBackpressure') }), CallerError);
  assert.throws(() => new Router({ get websocket() {
    return boom();
  } }), CallerError);
  assert.throws(() => new Router(hostileProxy), CallerError);
});

test('configureWebSocket checks its argument and changes nothing when it throws', async (t) => {
  const env = await live(t, { maxPayloadSize: 1024 });
  const { router } = env;
  assertAllReject([
    ['null', () => router.configureWebSocket(null), TypeError, 'options'],
    ['number', () => router.configureWebSocket(5), TypeError, 'options'],
    ['string', () => router.configureWebSocket('x'), TypeError, 'options'],
    ['unknown', () => router.configureWebSocket({ nope: true }), TypeError, 'nope', 'ERR_INVALID_OPTION'],
    ['bad value', () => router.configureWebSocket({ heartbeatInterval: -1 }), RangeError, 'heartbeatInterval'],
  ]);
  assert.throws(() => router.configureWebSocket(throwingGetter('heartbeatInterval')), CallerError);
  // Valid and invalid together: the valid one must not be applied either.
  assertRejects(() => router.configureWebSocket({ maxPayloadSize: 10, queueTTL: 0 }), RangeError, 'queueTTL');
  env.client.send('a message well over ten bytes');
  assert.deepEqual(await env.got.texts(1), ['a message well over ten bytes']);
  await assertServes(env);
});

test('configureWebSocket() without options throws like any missing argument', () => {
  // Declared `configureWebSocket(options: WebSocketOptions)`: a call without it is a mistake.
  assertRejects(() => new Router().configureWebSocket(), TypeError, 'options');
});

test('router.ws, use, room, to, broadcast check their arguments', () => {
  const router = new Router();
  const fn = () => {};
  assertAllReject([
    ['ws(undefined)', () => router.ws(undefined, fn), TypeError, 'path'],
    ['ws(number)', () => router.ws(5, fn), TypeError, 'path'],
    ['ws(symbol)', () => router.ws(Symbol('p'), fn), TypeError, 'path'],
    ['ws(object)', () => router.ws({ path: '/x' }, fn), TypeError, 'path'],
    ['ws(no slash)', () => router.ws('ws/x', fn), TypeError, 'path', 'ERR_INVALID_ROUTE'],
    ['ws(empty)', () => router.ws('', fn), TypeError, 'path', 'ERR_INVALID_ROUTE'],
    ['ws(bare colon)', () => router.ws('/a/:/b', fn), TypeError, 'path', 'ERR_INVALID_ROUTE'],
    ['ws(** inside)', () => router.ws('/a/**/b', fn), TypeError, 'path', 'ERR_INVALID_ROUTE'],
    ['ws(no handler)', () => router.ws('/a'), TypeError, 'handler'],
    ['ws(handler not a function)', () => router.ws('/a', 'fn'), TypeError, 'handlers[0]'],
    ['ws(second handler null)', () => router.ws('/a', fn, null), TypeError, 'handlers[1]'],
    ['use()', () => router.use(), TypeError, 'middleware'],
    ['use(object)', () => router.use({}), TypeError, 'middleware[0]'],
    ['use(fn, number)', () => router.use(fn, 1), TypeError, 'middleware[1]'],
    ['room()', () => router.room(), TypeError, 'name'],
    ['room(number)', () => router.room(1), TypeError, 'name'],
    ['room(empty)', () => router.room(''), TypeError, 'name'],
    ['room(object)', () => router.room({}), TypeError, 'name'],
    ['to()', () => router.to(), TypeError, 'path'],
    ['to(no slash)', () => router.to('x'), TypeError, 'path', 'ERR_INVALID_ROUTE'],
    ['broadcast()', () => router.broadcast(), TypeError, 'data'],
    ['broadcast(symbol)', () => router.broadcast(Symbol('d')), TypeError, 'data'],
    ['broadcast(function)', () => router.broadcast(fn), TypeError, 'data'],
    ['broadcast(data, number)', () => router.broadcast('x', 5), TypeError, 'options'],
    ['broadcast(data, null)', () => router.broadcast('x', null), TypeError, 'options'],
    ['broadcast(except: number)', () => router.broadcast('x', { except: 5 }), TypeError, 'options.except'],
    ['broadcast(except: object)', () => router.broadcast('x', { except: {} }), TypeError, 'options.except'],
  ]);
  // A refused registration registers nothing.
  assert.equal(router.getWebSocketRouter().getStats().routes, 0);
  assert.equal(router.getWebSocketRouter(), router.getWebSocketRouter());
});

test('broadcast data that has no JSON form is a TypeError naming "data"', () => {
  const router = new Router();
  assertAllReject([
    ['toJSON returns undefined', () => router.broadcast({ toJSON: () => undefined }), TypeError, 'data'],
    ['circular', () => router.broadcast(circular()), TypeError, 'data'],
    ['BigInt inside', () => router.broadcast({ n: 1n }), TypeError, 'data'],
    ['room: toJSON returns undefined', () => router.room('r').broadcast({ toJSON: () => undefined }), TypeError, 'data'],
    ['route: circular', () => router.to('/x').broadcast(circular()), TypeError, 'data'],
  ]);
  assert.throws(() => router.broadcast(throwingToJSON), CallerError);
});

test('broadcast options are checked: except items and binary', () => {
  const router = new Router();
  assertAllReject([
    ['except: [number]', () => router.broadcast('x', { except: [5] }), TypeError, 'options.except'],
    ['except: [null]', () => router.broadcast('x', { except: ['id', null] }), TypeError, 'options.except'],
    ['except: [object]', () => router.broadcast('x', { except: [{}] }), TypeError, 'options.except'],
    ['binary: string', () => router.broadcast('x', { binary: 'yes' }), TypeError, 'options.binary'],
  ]);
});

test('createServer and new Server require a Router', () => {
  for (const bad of [undefined, null, {}, 'router', 1, () => {}, { _attach() {} }]) {
    assertRejects(() => createServer(bad), TypeError, 'router', { label: String(typeof bad) });
    assertRejects(() => new Server(bad), TypeError, 'router', { label: String(typeof bad) });
  }
  assertCallerErrorOrNaming(() => createServer(hostileProxy), 'router', 'createServer(Proxy)');
});

test('createServer checks its options: key and cert must both be PEM strings or Buffers', async (t) => {
  const router = new Router();
  assertAllReject([
    ['null', () => createServer(router, null), TypeError, 'options'],
    ['number', () => createServer(router, 5), TypeError, 'options'],
    ['string', () => createServer(router, 'tls'), TypeError, 'options'],
    ['key: number', () => createServer(router, { key: 5, cert: 'c' }), TypeError, 'options.key'],
    ['key: object', () => createServer(router, { key: {}, cert: 'c' }), TypeError, 'options.key'],
    ['key without cert', () => createServer(router, { key: 'k' }), TypeError, 'options.cert'],
    ['cert without key', () => createServer(router, { cert: Buffer.from('c') }), TypeError, 'options.key'],
  ]);
  assertCallerErrorOrNaming(() => createServer(router, hostileProxy), 'options', 'createServer(router, Proxy)');
  // Not PEM at all: refused at once with a TLS error code, as https.createServer does.
  assert.throws(() => createServer(router, { key: 'not a key', cert: 'not a certificate' }), (err) => {
    assert.match(err.code, /^ERR_TLS_/);
    return true;
  });
  assert.throws(() => createServer(router, { key: Buffer.alloc(1 << 20, 0x41), cert: Buffer.alloc(1 << 20, 0x42) }), /./);
  // None of that left a half-made server behind: the router still serves.
  router.ws('/ws/live', (ws) => ws.on('message', (data) => ws.send(data)));
  const { url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/ws/live`, t);
  client.send('plain');
  assert.deepEqual(await got.texts(1), ['plain']);
  assert.equal(router.getWebSocketRouter().getStats().connections, 1);
});

// ---------------------------------------------------------------------------------------
// Server

test('server.listen checks port, host and backlog; a refused call leaves it able to listen', async (t) => {
  const server = createServer(new Router());
  t.after(() => server.listening && server.close());
  const cases = [];
  for (const port of [-1, 65536, NaN, Infinity, 1.5, 'abc', '', true, Symbol('p'), 10n]) {
    cases.push([`port ${String(port)}`, () => server.listen(port), RangeError, /port/, 'ERR_SOCKET_BAD_PORT']);
  }
  cases.push(
    ['options.port -1', () => server.listen({ port: -1 }), RangeError, /port/, 'ERR_SOCKET_BAD_PORT'],
    ['host object', () => server.listen(0, {}), TypeError, 'host'],
    ['host number with backlog', () => server.listen(0, 1, 2), TypeError, 'host'],
    ['backlog -1', () => server.listen(0, '127.0.0.1', -1), TypeError, 'backlog'],
    ['backlog 1.5', () => server.listen(0, '127.0.0.1', 1.5), TypeError, 'backlog'],
    ['backlog string', () => server.listen(0, '127.0.0.1', 'x'), TypeError, 'backlog']
  );
  assertAllReject(cases);
  assert.throws(() => server.listen(throwingGetter('port')), CallerError);
  assert.equal(server.listening, false);
  assert.equal(server.address(), null);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  assert.throws(() => server.listen(0, '127.0.0.1'), { code: 'ERR_SERVER_ALREADY_LISTEN' });
  assert.equal(typeof server.address().port, 'number');
});

test('server.close, shutdown, ref and unref check their arguments', async () => {
  const server = createServer(new Router());
  assertAllReject([
    ['close(number)', () => server.close(5), TypeError, 'callback'],
    ['close(string)', () => server.close('cb'), TypeError, 'callback'],
    ['close(object)', () => server.close({}), TypeError, 'callback'],
    ['shutdown(number)', () => server.shutdown(5), TypeError, 'options'],
    ['shutdown(null)', () => server.shutdown(null), TypeError, 'options'],
    ['shutdown timeout -1', () => server.shutdown({ timeout: -1 }), RangeError, 'options.timeout'],
    ['shutdown timeout NaN', () => server.shutdown({ timeout: NaN }), RangeError, 'options.timeout'],
    ['shutdown timeout Infinity', () => server.shutdown({ timeout: Infinity }), RangeError, 'options.timeout'],
    ['shutdown code 1005', () => server.shutdown({ code: 1005 }), RangeError, 'options.code'],
    ['shutdown code 99999', () => server.shutdown({ code: 99999 }), RangeError, 'options.code'],
    ['shutdown reason number', () => server.shutdown({ reason: 5 }), TypeError, 'options.reason'],
    ['shutdown reason 124 bytes', () => server.shutdown({ reason: 'é'.repeat(62) }), RangeError, 'options.reason'],
  ]);
  // The wrong type is refused too, whichever class it gets.
  for (const [label, opts, name] of [
    ['timeout string', { timeout: '10' }, 'options.timeout'],
    ['code string', { code: '1000' }, 'options.code'],
  ]) {
    let err;
    try {
      server.shutdown(opts);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof TypeError || err instanceof RangeError, label);
    assert.match(err.message, new RegExp(`"${escapeRe(name)}"`), label);
  }
  assert.throws(() => server.shutdown(throwingGetter('timeout')), CallerError);
  assert.equal(server.ref(), server);
  assert.equal(server.unref('ignored'), server);
  // Closing a server that is not running reports it to the callback, like Node.
  const [err] = await withTimeout(new Promise((resolve) => server.close((...args) => resolve(args))));
  assert.equal(err.code, 'ERR_SERVER_NOT_RUNNING');
});

// ---------------------------------------------------------------------------------------
// Connections

test('ws.send, sendBinary, ping and pong check "data"', async (t) => {
  const env = await live(t);
  const { ws } = env;
  const cases = [];
  for (const [label, bad] of [
    ['undefined', undefined],
    ['symbol', Symbol('d')],
    ['function', () => {}],
    ['class', class {}],
  ]) {
    cases.push([`send(${label})`, () => ws.send(bad), TypeError, 'data']);
  }
  for (const [label, bad] of [
    ['undefined', undefined],
    ['null', null],
    ['number', 42],
    ['object', { a: 1 }],
    ['array', [1, 2]],
    ['symbol', Symbol('d')],
    ['bigint', 5n],
  ]) {
    cases.push([`sendBinary(${label})`, () => ws.sendBinary(bad), TypeError, 'data']);
  }
  for (const method of ['ping', 'pong']) {
    for (const [label, bad] of [
      ['null', null],
      ['number', 42],
      ['object', {}],
      ['symbol', Symbol('d')],
    ]) {
      cases.push([`${method}(${label})`, () => ws[method](bad), TypeError, 'data']);
    }
    cases.push(
      [`${method}(126-char string)`, () => ws[method]('x'.repeat(126)), RangeError, 'data'],
      [`${method}(126-byte Buffer)`, () => ws[method](Buffer.alloc(126)), RangeError, 'data'],
      [`${method}(64 multi-byte chars)`, () => ws[method]('é'.repeat(64)), RangeError, 'data'],
      [`${method}(1 MiB string)`, () => ws[method]('x'.repeat(1 << 20)), RangeError, 'data']
    );
  }
  assertAllReject(cases);
  assert.equal(env.got.pending(), 0, 'nothing was sent by the refused calls');
  await assertServes(env);
});

test('ws.send data that has no JSON form, or a detached buffer, is a TypeError naming "data"', async (t) => {
  const env = await live(t);
  const { ws } = env;
  assertAllReject([
    ['toJSON returns undefined', () => ws.send({ toJSON: () => undefined }), TypeError, 'data'],
    ['circular', () => ws.send(circular()), TypeError, 'data'],
    ['BigInt inside', () => ws.send({ n: 1n }), TypeError, 'data'],
    ['detached ArrayBuffer', () => ws.send(detachedArrayBuffer()), TypeError, 'data'],
    ['view of a detached ArrayBuffer', () => ws.sendBinary(detachedView()), TypeError, 'data'],
  ]);
  assert.throws(() => ws.send(throwingToJSON), CallerError);
  await assertServes(env);
});

test('ws.send checks its options', async (t) => {
  const env = await live(t);
  const { ws } = env;
  assertAllReject([
    ['options: number', () => ws.send('x', 5), TypeError, 'options'],
    ['options: string', () => ws.send('x', 'binary'), TypeError, 'options'],
    ['binary: string', () => ws.send('x', { binary: 'yes' }), TypeError, 'options.binary'],
  ]);
  assert.equal(env.got.pending(), 0, 'nothing was sent by the refused calls');
  await assertServes(env);
});

test('ws.close checks "code" and "reason"; a refused call does not close', async (t) => {
  const env = await live(t);
  const { ws } = env;
  const cases = [];
  for (const bad of ['1000', null, {}, true, 1000n, Symbol('c')]) {
    cases.push([`code ${typeof bad}`, () => ws.close(bad), TypeError, 'code']);
  }
  for (const bad of [NaN, -1, 0, Infinity, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5, 2 ** 32 + 1000, 65536 + 1000]) {
    cases.push([`code ${bad}`, () => ws.close(bad), RangeError, 'code']);
  }
  for (const bad of [5, null, {}, Buffer.from('r'), Symbol('r')]) {
    cases.push([`reason ${typeof bad}`, () => ws.close(1000, bad), TypeError, 'reason']);
  }
  cases.push(
    ['reason 124 bytes', () => ws.close(1000, 'é'.repeat(62)), RangeError, 'reason'],
    ['reason 1 MiB', () => ws.close(4000, 'r'.repeat(1 << 20)), RangeError, 'reason']
  );
  assertAllReject(cases);
  await assertServes(env);
});

test('join, leave and inRoom check "room"; metadata must be an object; rooms is read-only', async (t) => {
  const env = await live(t);
  const { ws, router } = env;
  const cases = [];
  for (const method of ['join', 'leave', 'inRoom']) {
    for (const [label, bad] of [
      ['undefined', undefined],
      ['null', null],
      ['number', 7],
      ['object', {}],
      ['array', ['r']],
      ['symbol', Symbol('r')],
      ['empty', ''],
    ]) {
      cases.push([`${method}(${label})`, () => ws[method](bad), TypeError, 'room']);
    }
  }
  for (const bad of [null, undefined, 5, 'meta', true, Symbol('m')]) {
    cases.push([`metadata = ${String(bad)}`, () => (ws.metadata = bad), TypeError, 'metadata']);
  }
  assertAllReject(cases);
  assert.throws(() => ws.rooms.add('r'), { name: 'TypeError', code: 'ERR_INVALID_STATE' });
  assert.throws(() => ws.rooms.delete('r'), { name: 'TypeError', code: 'ERR_INVALID_STATE' });
  assert.throws(() => ws.rooms.clear(), { name: 'TypeError', code: 'ERR_INVALID_STATE' });
  assert.deepEqual(ws.getInfo().rooms, []);
  assert.equal(router.getWebSocketRouter().getStats().rooms, 0);
  // Huge but valid names are fine.
  const big = 'r'.repeat(1 << 20);
  assert.equal(ws.join(big), true);
  assert.equal(router.room(big).size(), 1);
  assert.equal(ws.leave(big), true);
  assert.equal(router.getWebSocketRouter().getStats().rooms, 0);
  await assertServes(env);
});

test('room names that are not well-formed UTF-16 are refused (in UTF-8 two of them would be one room)', async (t) => {
  const env = await live(t);
  const { ws, router } = env;
  // Lone surrogates cannot be encoded in UTF-8: the engine would see both as "a\uFFFD".
  assertRejects(() => ws.join('a\uD800'), TypeError, 'room', { code: 'ERR_INVALID_ARG_VALUE' });
  assertRejects(() => ws.join('a\uDFFF'), TypeError, 'room', { code: 'ERR_INVALID_ARG_VALUE' });
  assertRejects(() => router.room('a\uDFFF'), TypeError, 'name', { code: 'ERR_INVALID_ARG_VALUE' });
  // A well-formed pair is fine.
  assert.equal(ws.join('a\uD83D\uDE00'), true);
  assert.equal(router.room('a\uD83D\uDE00').size(), 1);
  await assertServes(env);
});

test('hostile values (throwing Proxy, getters, toJSON) throw the caller error or a TypeError, and leave nothing half done', async (t) => {
  const env = await live(t);
  const { ws, router } = env;
  const wsRouter = router.getWebSocketRouter();
  // Data is serialised (as JSON), options are read: both may run the caller's code.
  const asData = { proxy: hostileProxy, getter: throwingGetter('field'), toJSON: throwingToJSON };
  const asOptions = { proxy: hostileProxy, binary: throwingGetter('binary'), except: throwingGetter('except') };
  // Names, codes, ids and functions are refused by type before anything is read (the error
  // message may still touch a Proxy while describing it: then the caller's error wins).
  const asOther = { proxy: hostileProxy, getter: throwingGetter('length'), toJSON: throwingToJSON };
  const calls = [
    ['ws.send', asData, (v) => ws.send(v), 'data'],
    ['ws.send options', { proxy: hostileProxy, binary: throwingGetter('binary') }, (v) => ws.send('x', v), 'options'],
    ['ws.sendBinary', asOther, (v) => ws.sendBinary(v), 'data'],
    ['ws.ping', asOther, (v) => ws.ping(v), 'data'],
    ['ws.close', asOther, (v) => ws.close(v), 'code'],
    ['ws.close reason', asOther, (v) => ws.close(1000, v), 'reason'],
    ['ws.join', asOther, (v) => ws.join(v), 'room'],
    ['ws.metadata', { proxy: hostileProxy }, (v) => ws.send(Object.assign(ws.metadata, { v })), 'data'],
    ['router.room', asOther, (v) => router.room(v), 'name'],
    ['router.to', asOther, (v) => router.to(v), 'path'],
    ['router.broadcast', asData, (v) => router.broadcast(v), 'data'],
    ['router.broadcast options', asOptions, (v) => router.broadcast('x', v), 'options'],
    ['room.broadcast options', asOptions, (v) => router.room('r').broadcast('x', v), 'options'],
    ['wsServer.sendTo', asOther, (v) => wsRouter.wsServer.sendTo(v, 'x'), 'id'],
    ['wsServer.sendTo data', asData, (v) => wsRouter.wsServer.sendTo('nobody', v), 'data'],
    ['wsServer.broadcastToRoom', asOther, (v) => wsRouter.wsServer.broadcastToRoom(v, 'x'), 'room'],
    ['router.ws', asOther, (v) => router.ws(v, () => {}), 'path'],
    ['router.use', asOther, (v) => router.use(v), 'middleware[0]'],
    ['wsRouter.error', asOther, (v) => wsRouter.error(v), 'handler'],
  ];
  for (const [label, values, fn, name] of calls) {
    for (const [kind, v] of Object.entries(values)) assertCallerErrorOrNaming(() => fn(v), name, `${label}(${kind})`);
  }
  ws.metadata = {};
  // Nothing was sent, joined, registered or closed.
  assert.equal(env.got.pending(), 0);
  assert.deepEqual(wsRouter.getStats(), { connections: 1, rooms: 0, routes: 1, queuedMessages: 0 });
  assert.deepEqual(ws.getInfo().rooms, []);
  await assertServes(env);
});

test('Room and RouteGroup check their arguments', async (t) => {
  const env = await live(t);
  const { router } = env;
  const room = router.room('r');
  const group = router.to('/ws/live');
  assertAllReject([
    ['room.broadcast()', () => room.broadcast(), TypeError, 'data'],
    ['room.broadcast(symbol)', () => room.broadcast(Symbol('d')), TypeError, 'data'],
    ['room.broadcast(x, 1)', () => room.broadcast('x', 1), TypeError, 'options'],
    ['room.broadcast(except)', () => room.broadcast('x', { except: 1 }), TypeError, 'options.except'],
    ['group.broadcast()', () => group.broadcast(), TypeError, 'data'],
    ['group.broadcast(x, "y")', () => group.broadcast('x', 'y'), TypeError, 'options'],
    ['group.broadcast(except)', () => group.broadcast('x', { except: true }), TypeError, 'options.except'],
  ]);
  assert.equal(room.size('ignored'), 0);
  assert.deepEqual(room.getConnections(), []);
  assert.equal(group.getConnections().length, 1);
  await assertServes(env);
});

test('the WebSocket router and wsServer check their arguments', async (t) => {
  const env = await live(t);
  const { router } = env;
  const wsRouter = router.getWebSocketRouter();
  const { wsServer } = wsRouter;
  assertAllReject([
    ['error()', () => wsRouter.error(), TypeError, 'handler'],
    ['error(object)', () => wsRouter.error({}), TypeError, 'handler'],
    ['use()', () => wsRouter.use(), TypeError, 'middleware'],
    ['ws(number)', () => wsRouter.ws(1, () => {}), TypeError, 'path'],
    ['route(no slash)', () => wsRouter.route('x', () => {}), TypeError, 'path', 'ERR_INVALID_ROUTE'],
    ['route(no handler)', () => wsRouter.route('/x'), TypeError, 'handler'],
    ['room(empty)', () => wsRouter.room(''), TypeError, 'name'],
    ['to(number)', () => wsRouter.to(1), TypeError, 'path'],
    ['broadcast()', () => wsRouter.broadcast(), TypeError, 'data'],
    ['closeAll("1000") with a connection', () => wsRouter.closeAll('1000'), TypeError, 'code'],
    ['closeAll(1005) with a connection', () => wsRouter.closeAll(1005), RangeError, 'code'],
    ['closeAll(1000, 5) with a connection', () => wsRouter.closeAll(1000, 5), TypeError, 'reason'],
    ['sendTo(number)', () => wsServer.sendTo(1, 'x'), TypeError, 'id'],
    ['sendTo(undefined)', () => wsServer.sendTo(undefined, 'x'), TypeError, 'id'],
    ['sendTo(id, undefined)', () => wsServer.sendTo('nobody', undefined), TypeError, 'data'],
    ['sendTo(id, symbol)', () => wsServer.sendTo('nobody', Symbol('d')), TypeError, 'data'],
    ['getConnection(number)', () => wsServer.getConnection(1), TypeError, 'id'],
    ['getConnection(object)', () => wsServer.getConnection({}), TypeError, 'id'],
    ['getRoom(empty)', () => wsServer.getRoom(''), TypeError, 'name'],
    ['getRoom(number)', () => wsServer.getRoom(3), TypeError, 'name'],
    ['broadcast(function)', () => wsServer.broadcast(() => {}), TypeError, 'data'],
    ['broadcastToRoom(number)', () => wsServer.broadcastToRoom(1, 'x'), TypeError, 'room'],
    ['broadcastToRoom(room, undefined)', () => wsServer.broadcastToRoom('r', undefined), TypeError, 'data'],
    ['broadcastToRoom(room, x, 1)', () => wsServer.broadcastToRoom('r', 'x', 1), TypeError, 'options'],
    ['wsServer.closeAll({})', () => wsServer.closeAll({}), TypeError, 'code'],
  ]);
  assert.equal(wsServer.getConnection('nobody'), null);
  assert.deepEqual(wsServer.getRoom('nobody'), []);
  assert.equal(wsServer.sendTo('nobody', 'x'), false);
  assert.deepEqual(wsRouter.getStats(), wsServer.getStats());
  // None of the refused closeAll calls closed anything.
  await assertServes(env);
});

test('closeAll and sendTo check their arguments even when no connection is open', () => {
  const wsRouter = new Router().getWebSocketRouter();
  assertAllReject([
    ['closeAll("bad")', () => wsRouter.closeAll('bad'), TypeError, 'code'],
    ['closeAll(1005)', () => wsRouter.closeAll(1005), RangeError, 'code'],
    ['closeAll(1000, 5)', () => wsRouter.closeAll(1000, 5), TypeError, 'reason'],
    ['closeAll(1000, 124 bytes)', () => wsRouter.closeAll(1000, 'é'.repeat(62)), RangeError, 'reason'],
    ['wsServer.closeAll(NaN)', () => wsRouter.wsServer.closeAll(NaN), RangeError, 'code'],
    ['sendTo options', () => wsRouter.wsServer.sendTo('nobody', 'x', 5), TypeError, 'options'],
  ]);
});

// ---------------------------------------------------------------------------------------
// Closed connections

test('methods on a closed connection return false or do nothing, and never throw for that', async (t) => {
  const env = await live(t);
  const { ws, router, url, conns } = env;
  let closes = 0;
  ws.on('close', () => closes++);
  const id = ws.id;
  assert.equal(ws.join('before'), true);
  const closed = nextClose(ws);
  env.client.close(4000, 'bye');
  assert.equal((await closed).code, 4000);
  assert.equal(ws.readyState, 3);

  assert.equal(ws.send('x'), false);
  assert.equal(ws.send({ json: true }), false);
  assert.equal(ws.send(Buffer.from('x')), false);
  assert.equal(ws.sendBinary('x'), false);
  assert.equal(ws.ping(), false);
  assert.equal(ws.ping('p'), false);
  assert.equal(ws.pong(), false);
  assert.equal(ws.close(), undefined);
  assert.equal(ws.close(4001, 'again'), undefined);
  assert.equal(ws.terminate(), undefined);
  assert.equal(ws.join('after'), false);
  assert.equal(ws.leave('before'), false);
  assert.equal(ws.inRoom('before'), false);
  assert.equal(ws.bufferedAmount, 0);
  ws.metadata = { still: 'settable' };
  assert.deepEqual(ws.getInfo(), {
    id,
    state: 3,
    rooms: [],
    metadata: { still: 'settable' },
    remoteAddress: ws.remoteAddress,
    remotePort: ws.remotePort,
  });
  assert.equal(router.room('after').size(), 0);
  assert.equal(router.getWebSocketRouter().getStats().rooms, 0);
  assert.equal(router.getWebSocketRouter().wsServer.sendTo(id, 'x'), false);
  assert.equal(router.getWebSocketRouter().wsServer.getConnection(id), null);
  // Misuse is still misuse on a closed connection.
  assertRejects(() => ws.send(undefined), TypeError, 'data');
  assertRejects(() => ws.close(1005), RangeError, 'code');
  assertRejects(() => ws.join(''), TypeError, 'room');

  // A later connection's round trip: any event for the closed one would have come first.
  const { client, got } = await connectWithInbox(`${url}/ws/live?name=later`, t);
  await conns.get('later');
  client.send('later');
  assert.deepEqual(await got.texts(1), ['later']);
  assert.equal(closes, 1, 'close is emitted once');
});

test('a closing connection refuses sends with false', async (t) => {
  const env = await live(t);
  const { ws } = env;
  const closed = nextClose(ws);
  ws.close(1000, 'done');
  assert.equal(ws.readyState, 2);
  assert.equal(ws.send('late'), false);
  assert.equal(ws.sendBinary(Buffer.from('late')), false);
  assert.equal(ws.ping(), false);
  assert.equal(ws.join('late'), false);
  assert.equal(ws.close(4000), undefined);
  assert.equal((await closed).code, 1000);
});

// ---------------------------------------------------------------------------------------
// Fuzz

/** A small seeded PRNG (mulberry32), so that a failure can be replayed with its seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Names of the objects in the garbage pool, for failure messages. */
const labels = new WeakMap();

function garbage(victim) {
  const huge = 'h'.repeat(1 << 20);
  const named = (label, v) => {
    labels.set(v, label);
    return v;
  };
  return [
    undefined, null, true, false, 0, -0, 1, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53),
    1000, 1001, 1005, 1006, 1015, 3000, 4999, 5000, 65535, 65536, 10n, -1n,
    '', 'x', 'r', 'room', '/', '/ws/live', '/fuzz', '/:p', '/a/**', 'ws', '\u0000', 'a\uD800', '\uDFFF', 'é'.repeat(70),
    'a'.repeat(126), huge,
    Symbol('s'), Symbol.iterator, () => {}, function named() {}, async () => {}, Math.max, Object,
    {}, [], [1, 'a', null], ['r', 'room'], Object.create(null), new Date(), /re/g, new Map(), new Set(['r']),
    new Error('e'), Promise.resolve(1), new WeakMap(),
    Buffer.alloc(0), Buffer.alloc(10, 1), Buffer.alloc(200), new Uint8Array(3), new Float64Array(2), new DataView(new ArrayBuffer(4)),
    new ArrayBuffer(8), new SharedArrayBuffer(4), new ArrayBuffer(8, { maxByteLength: 16 }), named('detached ArrayBuffer', detachedArrayBuffer()), named('detached view', detachedView()),
    named('{ binary: true }', { binary: true }),
    named("{ binary: 'yes' }", { binary: 'yes' }),
    named('{ except: 5 }', { except: 5 }),
    named("{ except: 'x' }", { except: 'x' }),
    named("{ except: [victim, 'id', 1] }", { except: [victim, 'id', 1] }),
    named('{ except: victim }', { except: victim }),
    named('{ timeout: 0 }', { timeout: 0 }),
    named('{ timeout: -1 }', { timeout: -1 }),
    named("{ code: 4000, reason: 'r' }", { code: 4000, reason: 'r' }),
    named('{ port: 0 }', { port: 0 }),
    named('{ websocket: {} }', { websocket: {} }),
    named('{ maxBackpressure: -1 }', { maxBackpressure: -1 }),
    named('{ toJSON: () => undefined }', { toJSON: () => undefined }),
    named("{ toJSON: () => 'json' }", { toJSON: () => 'json' }),
    named('{ a: 1n }', { a: 1n }),
    named('circular', circular()),
    named('{ valueOf: boom, toString: boom }', { valueOf: boom, toString: boom }),
    hostileProxy,
    named('throwing getter binary', throwingGetter('binary')),
    named('throwing getter except', throwingGetter('except')),
    named('throwing getter timeout', throwingGetter('timeout')),
    named('throwing toJSON', throwingToJSON),
    named('victim', victim),
  ];
}

test('fuzz: thousands of garbage calls throw only TypeError, RangeError or the caller error; the server keeps serving', async (t) => {
  const seed = Number(process.env.VELOCY_FUZZ_SEED) || (Date.now() & 0xffffffff);
  const random = prng(seed);
  const { router, server, url, conns, client: bystander } = await live(t);
  const wsRouter = router.getWebSocketRouter();
  const { wsServer } = wsRouter;
  // Registration, error handlers, closeAll and configuration are fuzzed on a second router
  // (attached to a server that does not listen), so that a random handler that throws, or a
  // random valid closeAll, cannot change what the live server does.
  const scratch = new Router();
  const scratchServer = createServer(scratch);
  scratchServer.setMaxListeners(0); // close(cb) adds a listener per call
  const scratchWs = scratch.getWebSocketRouter();
  let n = 0;
  const connectVictim = async () => {
    const name = `victim${n++}`;
    const client = await connect(`${url}/ws/live?name=${name}`, t);
    client.on('error', () => {});
    return (await conns.get(name)).ws;
  };
  let victim = await connectVictim();
  const targets = [
    ['ws.send', (a) => victim.send(...a)],
    ['ws.sendBinary', (a) => victim.sendBinary(...a)],
    ['ws.ping', (a) => victim.ping(...a)],
    ['ws.pong', (a) => victim.pong(...a)],
    ['ws.close', (a) => victim.close(...a)],
    ['ws.terminate', (a) => victim.terminate(...a)],
    ['ws.join', (a) => victim.join(...a)],
    ['ws.leave', (a) => victim.leave(...a)],
    ['ws.inRoom', (a) => victim.inRoom(...a)],
    ['ws.getInfo', (a) => victim.getInfo(...a)],
    ['ws.metadata=', (a) => (victim.metadata = a[0])],
    ['ws.bufferedAmount', () => victim.bufferedAmount],
    ['router.room', (a) => router.room(...a)],
    ['router.room().broadcast', (a) => router.room(a[0]).broadcast(...a.slice(1))],
    ['router.room().size', (a) => router.room(a[0]).size(...a.slice(1))],
    ['router.room().getConnections', (a) => router.room(a[0]).getConnections()],
    ['router.to', (a) => router.to(...a)],
    ['router.to().broadcast', (a) => router.to(a[0]).broadcast(...a.slice(1))],
    ['router.to().getConnections', (a) => router.to(a[0]).getConnections()],
    ['router.broadcast', (a) => router.broadcast(...a)],
    ['router.getWebSocketRouter', (a) => router.getWebSocketRouter(...a)],
    ['wsRouter.getStats', (a) => wsRouter.getStats(...a)],
    ['wsRouter.room', (a) => wsRouter.room(...a)],
    ['wsRouter.to', (a) => wsRouter.to(...a)],
    ['wsRouter.broadcast', (a) => wsRouter.broadcast(...a)],
    ['wsServer.sendTo', (a) => wsServer.sendTo(...a)],
    ['wsServer.getConnection', (a) => wsServer.getConnection(...a)],
    ['wsServer.getRoom', (a) => wsServer.getRoom(...a)],
    ['wsServer.broadcast', (a) => wsServer.broadcast(...a)],
    ['wsServer.broadcastToRoom', (a) => wsServer.broadcastToRoom(...a)],
    ['wsServer.getStats', (a) => wsServer.getStats(...a)],
    ['server.address', (a) => server.address(...a)],
    ['new Router', (a) => new Router(...a)],
    ['createServer', (a) => createServer(...a)],
    ['createServer(scratch, options)', (a) => createServer(scratch, a[0])],
    ['scratch.ws', (a) => scratch.ws(...a)],
    ['scratch.use', (a) => scratch.use(...a)],
    ['scratch.configureWebSocket', (a) => scratch.configureWebSocket(...a)],
    ['scratchWs.error', (a) => scratchWs.error(...a)],
    ['scratchWs.closeAll', (a) => scratchWs.closeAll(...a)],
    ['scratchWs.route', (a) => scratchWs.route(...a)],
    ['scratchWs.use', (a) => scratchWs.use(...a)],
    ['scratchWs.wsServer.closeAll', (a) => scratchWs.wsServer.closeAll(...a)],
    ['scratchServer.close', (a) => scratchServer.close(...a)],
    ['scratchServer.shutdown', (a) => scratchServer.shutdown(...a)],
    ['scratchServer.address', (a) => scratchServer.address(...a)],
  ];
  const unexpected = new Map();
  let calls = 0;
  let threw = 0;
  for (let round = 0; round < 20; round++) {
    if (victim.readyState !== 1) victim = await connectVictim();
    const pool = garbage(victim);
    const pick = () => pool[Math.floor(random() * pool.length)];
    for (let i = 0; i < 1000; i++) {
      const [label, call] = targets[Math.floor(random() * targets.length)];
      const args = Array.from({ length: Math.floor(random() * 4) }, pick);
      calls++;
      try {
        const r = call(args);
        if (r instanceof Promise) r.catch(() => {});
      } catch (err) {
        threw++;
        if (!(err instanceof TypeError || err instanceof RangeError || err instanceof CallerError)) {
          const key = `${label}: ${err && err.constructor ? err.constructor.name : typeof err} ${err && err.code} ${String(err && err.message).slice(0, 80)}`;
          if (!unexpected.has(key)) unexpected.set(key, args.map((v) => describe(v)).join(', '));
        }
      }
    }
    // Let the engine's events (closes, echoes) reach JS between rounds.
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.ok(threw > 0 && threw < calls, `${threw} of ${calls} calls threw`);
  assert.deepEqual(
    [...unexpected].map(([k, v]) => `${k} <- (${v})`),
    [],
    `errors other than TypeError/RangeError (replay with VELOCY_FUZZ_SEED=${seed})`
  );

  // The process is alive, the live server still accepts, echoes and counts right.
  assert.equal(server.listening, true);
  const fresh = await connectWithInbox(`${url}/ws/live?name=fresh`, t);
  await conns.get('fresh');
  fresh.client.send('after the fuzz');
  assert.deepEqual(await fresh.got.texts(1), ['after the fuzz']);
  // The bystander got broadcasts meanwhile; its own echo still comes back.
  const echoed = withTimeout(
    new Promise((resolve) => bystander.on('message', (data) => String(data) === 'bystander' && resolve())),
    5000,
    "the bystander's echo"
  );
  bystander.send('bystander');
  await echoed;
  const stats = wsRouter.getStats();
  assert.equal(stats.connections, server._conns.size);
  assert.ok(stats.connections >= 2);
});

function describe(v) {
  try {
    if (typeof v === 'string') return v.length > 20 ? `'${v.slice(0, 10)}…' (${v.length})` : JSON.stringify(v);
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'symbol' || typeof v === 'function') return String(v).slice(0, 30);
    if (v === hostileProxy) return 'hostileProxy';
    if (v !== null && typeof v === 'object' && labels.has(v)) return labels.get(v);
    if (v !== null && typeof v === 'object') return Object.prototype.toString.call(v);
    return String(v);
  } catch {
    return '?';
  }
}
