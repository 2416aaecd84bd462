'use strict';

// WebSocket options: `new Router({ websocket })` and `router.configureWebSocket(opts)`.
// Invalid values (negative, NaN, wrong type, unknown names) throw a TypeError or RangeError
// naming the option, in both places, and a failed configure changes nothing. At run time new
// connections use the new options, and heartbeat changes reach open connections too.
// (Defaults are checked where they show: queue.test.js for enableQueue/maxQueueSize,
// limits.test.js for maxPayloadSize.)

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { Router, createServer } = require('..');
const { listen, collect, rawClient, clientFrame, closeInfo, nextClose, once } = require('./helpers');

const OP = { TEXT: 0x1, CLOSE: 0x8, PING: 0x9 };

const NUMBERS = {
  heartbeatInterval: 0,
  heartbeatTimeout: 1,
  maxPayloadSize: 1,
  maxQueueSize: 0,
  queueTTL: 1,
  maxQueuedMessages: 0,
};
const FUNCTIONS = ['identify', 'handleProtocols'];

/** [option, value, error class] for every invalid value tried. */
const INVALID = [];
for (const [name, min] of Object.entries(NUMBERS)) {
  for (const v of ['10', null, true, {}, [], () => 1]) INVALID.push([name, v, TypeError]);
  for (const v of new Set([min - 1, -1, -Infinity, NaN, Infinity, 1.5, min + 0.25])) INVALID.push([name, v, RangeError]);
}
for (const v of ['true', 1, 0, null, {}]) INVALID.push(['enableQueue', v, TypeError]);
for (const name of FUNCTIONS) for (const v of ['fn', 1, true, {}]) INVALID.push([name, v, TypeError]);

function label(v) {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return JSON.stringify(v);
}

/** Asserts `fn` throws `Ctor` with code ERR_INVALID_OPTION and a message naming `name`. */
function assertOptionError(fn, Ctor, name) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Ctor, `expected a ${Ctor.name}, got ${err && err.constructor.name}: ${err && err.message}`);
    assert.equal(err.code, 'ERR_INVALID_OPTION');
    assert.ok(err.message.includes(`"${name}"`), `the message does not name "${name}": ${err.message}`);
    return true;
  });
}

describe('validation', () => {
  for (const [name, value, Ctor] of INVALID) {
    test(`${name}: ${label(value)} is a ${Ctor.name}, in the constructor and in configureWebSocket`, () => {
      assertOptionError(() => new Router({ websocket: { [name]: value } }), Ctor, name);
      const router = new Router();
      assertOptionError(() => router.configureWebSocket({ [name]: value }), Ctor, name);
    });
  }

  test('unknown option names are a TypeError naming them', () => {
    for (const name of ['heartbeatIntervall', 'maxPayload', 'pingInterval', 'HeartbeatInterval']) {
      assertOptionError(() => new Router({ websocket: { [name]: 1 } }), TypeError, name);
      assertOptionError(() => new Router().configureWebSocket({ [name]: 1 }), TypeError, name);
    }
  });

  test('names that Object.prototype has are unknown options too', () => {
    // Options often come from JSON config files, where "__proto__" is an ordinary key.
    for (const name of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__']) {
      const opts = JSON.parse(`{${JSON.stringify(name)}: 1}`);
      assertOptionError(() => new Router({ websocket: opts }), TypeError, name);
      assertOptionError(() => new Router().configureWebSocket(opts), TypeError, name);
    }
  });

  test('values that JSON cannot show (BigInt, circular objects) still give the option error', () => {
    const circular = {};
    circular.self = circular;
    for (const [name, value] of [
      ['heartbeatInterval', 10n],
      ['maxPayloadSize', circular],
      ['enableQueue', 1n],
      ['identify', circular],
    ]) {
      assertOptionError(() => new Router({ websocket: { [name]: value } }), TypeError, name);
      assertOptionError(() => new Router().configureWebSocket({ [name]: value }), TypeError, name);
    }
  });

  test('the options themselves must be an object', () => {
    for (const bad of [null, 5, 'x', true]) {
      assert.throws(() => new Router({ websocket: bad }), TypeError, `websocket: ${label(bad)}`);
      assert.throws(() => new Router().configureWebSocket(bad), TypeError, `configureWebSocket(${label(bad)})`);
    }
    assert.throws(() => new Router(5), TypeError);
  });

  test('the smallest and very large values are accepted', () => {
    const smallest = { ...NUMBERS, enableQueue: false, identify: null, handleProtocols: null };
    assert.doesNotThrow(() => new Router({ websocket: smallest }));
    assert.doesNotThrow(() => new Router().configureWebSocket(smallest));
    const large = {};
    for (const name of Object.keys(NUMBERS)) large[name] = Number.MAX_SAFE_INTEGER;
    assert.doesNotThrow(() => new Router({ websocket: large }));
    assert.doesNotThrow(() => new Router().configureWebSocket(large));
  });

  test('all documented options together, and options left undefined, are accepted', () => {
    const router = new Router({
      websocket: {
        heartbeatInterval: 30000,
        heartbeatTimeout: 60000,
        maxPayloadSize: 100 * 1024 * 1024,
        enableQueue: true,
        maxQueueSize: 100,
        queueTTL: 300000,
        maxQueuedMessages: 100000,
        identify: () => null,
        handleProtocols: (p) => p[0],
      },
    });
    assert.equal(router.configureWebSocket({ heartbeatInterval: undefined }), router);
    assert.equal(router.configureWebSocket({}), router);
  });

  test('a configureWebSocket that throws changes nothing, even for the valid options beside the bad one', async (t) => {
    const router = new Router({ websocket: { maxPayloadSize: 1000 } });
    router.ws('/e', (ws) => ws.on('message', (d) => ws.send(`got ${d.length}`)));
    const { port } = await listen(router, t);
    const { wsServer } = router.getWebSocketRouter();
    assert.throws(() => router.configureWebSocket({ maxPayloadSize: 10, enableQueue: 'yes' }), TypeError);
    assert.throws(() => router.configureWebSocket({ enableQueue: true, maxQueueSize: -1 }), RangeError);
    assert.throws(() => router.configureWebSocket({ maxPayloadSize: 10, nope: true }), TypeError);
    // The queue is still off and the limit still 1000 bytes, for new connections too.
    assert.equal(wsServer.sendTo('someone', 'x'), false);
    const client = await rawClient(port, '/e', { t });
    await client.write(clientFrame(OP.TEXT, 'x'.repeat(1000)));
    const f = await client.next();
    assert.deepEqual([f.opcode, String(f.payload)], [OP.TEXT, 'got 1000']);
  });
});

// ---- run time -------------------------------------------------------------------------------

/** A router with `websocket` options whose '/c' route echoes sizes and collects connections. */
async function runtimeServer(t, websocket) {
  const router = new Router({ websocket });
  const conns = collect();
  router.ws('/c', (ws, req) => {
    ws.on('message', (d) => ws.send(`got ${d.length}`));
    conns.handler(ws, req);
  });
  const { port } = await listen(router, t);
  return { router, conns, port };
}

/** Sends a text message of `size` bytes and expects `got <size>`, or a 1009 close when `tooBig`. */
async function sendSized(client, size, tooBig = false) {
  await client.write(clientFrame(OP.TEXT, 'y'.repeat(size)));
  const f = await client.next();
  if (tooBig) {
    assert.equal(f.opcode, OP.CLOSE, `a ${size}-byte message was accepted`);
    assert.equal(closeInfo(f).code, 1009);
  } else {
    assert.deepEqual([f.opcode, String(f.payload)], [OP.TEXT, `got ${size}`], `a ${size}-byte message was refused`);
  }
}

describe('configureWebSocket at run time', () => {
  test('turning heartbeats on reaches an open connection: it is pinged, then timed out', async (t) => {
    const { router, port } = await runtimeServer(t, { heartbeatInterval: 0 });
    const client = await rawClient(port, '/c', { t });
    // Open and served with heartbeats off.
    await sendSized(client, 3);
    assert.equal(router.configureWebSocket({ heartbeatInterval: 30, heartbeatTimeout: 60 }), router);
    let f = await client.next();
    assert.equal(f.opcode, OP.PING);
    while (f.opcode === OP.PING) f = await client.next();
    assert.deepEqual(closeInfo(f), { code: 1001, reason: 'Heartbeat timeout' });
    assert.equal((await client.closed).ended, true);
  });

  test('a shorter heartbeatTimeout reaches an open connection at its next ping', async (t) => {
    const { router, conns, port } = await runtimeServer(t, { heartbeatInterval: 20, heartbeatTimeout: 60000 });
    const client = await rawClient(port, '/c', { t });
    const { ws } = await conns.next();
    // Pinged, never answering, but far from the timeout.
    for (let i = 0; i < 3; i++) assert.equal((await client.next()).opcode, OP.PING);
    router.configureWebSocket({ heartbeatTimeout: 30 });
    let f = await client.next();
    while (f.opcode === OP.PING) f = await client.next();
    assert.deepEqual(closeInfo(f), { code: 1001, reason: 'Heartbeat timeout' });
    assert.equal((await nextClose(ws)).code, 1006);
  });

  test('heartbeatInterval 0 stops the pings of open connections', async (t) => {
    const { router, conns, port } = await runtimeServer(t, { heartbeatInterval: 20, heartbeatTimeout: 60000 });
    const client = await rawClient(port, '/c', { t });
    const { ws } = await conns.next();
    assert.equal((await client.next()).opcode, OP.PING);
    router.configureWebSocket({ heartbeatInterval: 0, heartbeatTimeout: 1 });
    // Pings may be on their way from before the change; the echo of a message sent after it
    // marks the point from which none may follow.
    await client.write(clientFrame(OP.TEXT, 'x'));
    let f = await client.next();
    while (f.opcode === OP.PING) f = await client.next();
    assert.deepEqual([f.opcode, String(f.payload)], [OP.TEXT, 'got 1']);
    // Proving that no ping follows needs a bounded wait: five of the old intervals.
    await assert.rejects(client.next(5 * 20), /timed out/);
    assert.equal(ws.readyState, 1);
    await sendSized(client, 2);
  });

  test('maxPayloadSize applies to connections opened after the change, lowered or raised', async (t) => {
    const { router, port } = await runtimeServer(t, { maxPayloadSize: 1000 });
    const before = await rawClient(port, '/c', { t });
    await sendSized(before, 1000);
    router.configureWebSocket({ maxPayloadSize: 100 });
    const lowered = await rawClient(port, '/c', { t });
    await sendSized(lowered, 100);
    await sendSized(lowered, 101, true);
    router.configureWebSocket({ maxPayloadSize: 5000 });
    const raised = await rawClient(port, '/c', { t });
    await sendSized(raised, 5000);
    await sendSized(raised, 5001, true);
  });

  test('changes reach every server of the router, and servers created later start with them', async (t) => {
    const router = new Router({ websocket: { maxPayloadSize: 1000 } });
    router.ws('/c', (ws) => ws.on('message', (d) => ws.send(`got ${d.length}`)));
    const { port: port1 } = await listen(router, t);
    router.configureWebSocket({ maxPayloadSize: 10 });
    const { port: port2 } = await listen(router, t);
    for (const port of [port1, port2]) {
      const c = await rawClient(port, '/c', { t });
      await sendSized(c, 10);
      await sendSized(c, 11, true);
    }
    // The same for heartbeats: both servers' open connections get pinged.
    const c1 = await rawClient(port1, '/c', { t });
    const c2 = await rawClient(port2, '/c', { t });
    router.configureWebSocket({ heartbeatInterval: 20 });
    assert.equal((await c1.next()).opcode, OP.PING);
    assert.equal((await c2.next()).opcode, OP.PING);
  });

  test('identify set at run time applies to new connections', async (t) => {
    const router = new Router();
    const conns = collect();
    router.ws('/c', conns.handler);
    const server = createServer(router);
    t.after(() => server.listening && server.close());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address();
    await rawClient(port, '/c', { t, headers: { 'x-user': 'ann' } });
    assert.notEqual((await conns.next()).ws.id, 'ann');
    router.configureWebSocket({ identify: (req) => req.headers['x-user'] });
    await rawClient(port, '/c', { t, headers: { 'x-user': 'ann' } });
    assert.equal((await conns.next()).ws.id, 'ann');
  });
});
