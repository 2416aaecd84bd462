'use strict';

// The `ws` object route handlers receive: identity, metadata, state, sending, control frames,
// closing, and the events it emits (docs/WEBSOCKET.md, "Connection Management", "Message
// Handling", "Manual Ping/Pong", "Closing Connections").

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const EventEmitter = require('node:events');
const { Router, WS_STATES } = require('..');
const {
  listen,
  connect,
  collect,
  nextMessage,
  nextClose,
  once,
  rawHttp,
  upgradeRequest,
  parseResponse,
  withTimeout,
} = require('./helpers');

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A server with a collecting route at `pattern` and an echo route at /echo. */
async function setup(t, pattern = '/c') {
  const router = new Router();
  const conns = collect();
  router.ws(pattern, conns.handler);
  router.ws('/echo', (ws) => ws.on('message', (data, isBinary) => ws.send(isBinary ? data : String(data))));
  const { url, port } = await listen(router, t);
  return { router, conns, url, port };
}

/** One client on `path` and its server-side connection. */
async function pair(t, path = '/c', pattern = path) {
  const s = await setup(t, pattern);
  const client = await connect(s.url + path, t);
  const { ws, req } = await s.conns.next();
  return { ...s, client, ws, req };
}

/**
 * A round trip on a fresh /echo client: once it is back, the server has handled every event
 * the engine queued before it.
 */
async function barrier(t, url) {
  const c = await connect(url + '/echo', t);
  c.send('sync');
  const { data } = await nextMessage(c);
  assert.equal(String(data), 'sync');
  c.close();
}

/** Counts `close` events on a server-side connection and records their arguments. */
function recordCloses(ws) {
  const calls = [];
  ws.on('close', (code, reason) => calls.push({ code, reason }));
  return calls;
}

test('is an EventEmitter with a stable UUID v4 id, unique per connection', async (t) => {
  const { conns, url } = await setup(t);
  await connect(url + '/c', t);
  await connect(url + '/c', t);
  const a = (await conns.next()).ws;
  const b = (await conns.next()).ws;
  assert.ok(a instanceof EventEmitter);
  assert.equal(typeof a.id, 'string');
  assert.match(a.id, UUID_V4);
  assert.match(b.id, UUID_V4);
  assert.equal(a.id, a.id);
  assert.notEqual(a.id, b.id);
});

test('listeners behave as on any EventEmitter, event names that are Object.prototype keys included', async (t) => {
  const { ws } = await pair(t);
  assert.deepEqual(ws.eventNames(), []);
  for (const name of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
    assert.equal(ws.listenerCount(name), 0, name);
    assert.equal(ws.emit(name), false, name);
  }
  const calls = [];
  const onString = (x) => calls.push(['toString', x]);
  ws.on('toString', onString);
  ws.on('__proto__', (x) => calls.push(['__proto__', x]));
  ws.once('custom', (x) => calls.push(['custom', x]));
  assert.deepEqual(ws.eventNames().sort(), ['__proto__', 'custom', 'toString']);
  assert.equal(ws.emit('toString', 1), true);
  assert.equal(ws.emit('__proto__', 2), true);
  ws.emit('custom', 3);
  ws.emit('custom', 4);
  assert.deepEqual(calls, [['toString', 1], ['__proto__', 2], ['custom', 3]]);
  ws.off('toString', onString);
  assert.equal(ws.listenerCount('toString'), 0);
  ws.removeAllListeners();
  assert.deepEqual(ws.eventNames(), []);
});

test('the rest of the EventEmitter API: max listeners, prepend, raw listeners, events.once and getEventListeners', async (t) => {
  const { ws } = await pair(t);
  assert.equal(ws.getMaxListeners(), EventEmitter.defaultMaxListeners);
  ws.setMaxListeners(1);
  assert.equal(ws.getMaxListeners(), 1);
  const warnings = [];
  const onWarning = (w) => warnings.push(w.name);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const order = [];
  const first = () => order.push('first');
  ws.on('tick', () => order.push('second'));
  ws.prependListener('tick', first);
  ws.prependOnceListener('tick', () => order.push('once'));
  ws.emit('tick');
  ws.emit('tick');
  assert.deepEqual(order, ['once', 'first', 'second', 'first', 'second']);
  assert.deepEqual(EventEmitter.getEventListeners(ws, 'tick').length, 2);
  assert.equal(ws.rawListeners('tick')[0], first);
  await new Promise(setImmediate);
  assert.deepEqual(warnings, ['MaxListenersExceededWarning']);
  // events.once resolves with the arguments of the next emit.
  const next = EventEmitter.once(ws, 'custom');
  ws.emit('custom', 'a', 2);
  assert.deepEqual(await next, ['a', 2]);
  // A listener removing itself while its event is emitted does not disturb the others.
  const seen = [];
  const self = () => {
    seen.push('self');
    ws.off('both', self);
  };
  ws.on('both', self);
  ws.on('both', () => seen.push('other'));
  ws.emit('both');
  ws.emit('both');
  assert.deepEqual(seen, ['self', 'other', 'other']);
});

test('metadata is an object that persists and can be replaced by an object only', async (t) => {
  const { ws } = await pair(t);
  assert.equal(typeof ws.metadata, 'object');
  assert.notEqual(ws.metadata, null);
  ws.metadata.userId = 'u1';
  assert.equal(ws.metadata.userId, 'u1');

  const joinedAt = new Date();
  ws.metadata = { username: 'ann', joinedAt, score: 0 };
  assert.deepEqual(ws.metadata, { username: 'ann', joinedAt, score: 0 });

  for (const bad of [null, undefined, 'x', 42, true]) {
    assert.throws(() => {
      ws.metadata = bad;
    }, TypeError, String(bad));
  }
  assert.deepEqual(ws.metadata, { username: 'ann', joinedAt, score: 0 });
});

test('readyState and state: OPEN in the handler, CLOSING after close(), CLOSED in the close event', async (t) => {
  const router = new Router();
  const seen = [];
  const conns = collect();
  router.ws('/s', (ws, req) => {
    seen.push(ws.readyState, ws.state);
    conns.handler(ws, req);
  });
  const { url } = await listen(router, t);
  await connect(url + '/s', t);
  const { ws } = await conns.next();
  assert.deepEqual(seen, [WS_STATES.OPEN, WS_STATES.OPEN]);

  const closed = once(ws, 'close');
  let inClose;
  ws.on('close', () => {
    inClose = [ws.readyState, ws.state];
  });
  ws.close();
  assert.equal(ws.readyState, WS_STATES.CLOSING);
  assert.equal(ws.state, WS_STATES.CLOSING);
  await closed;
  assert.deepEqual(inClose, [WS_STATES.CLOSED, WS_STATES.CLOSED]);
});

test('protocol, remoteAddress, remotePort and route describe the connection', async (t) => {
  const router = new Router();
  const conns = collect();
  router.ws('/rooms/:id', conns.handler);
  const { port } = await listen(router, t);
  const { text, socket } = await rawHttp(port, upgradeRequest('/rooms/42'), { untilHead: true });
  t.after(() => socket.destroy());
  assert.equal(parseResponse(text).status, 101);
  const { ws } = await conns.next();
  assert.equal(ws.protocol, '');
  assert.equal(ws.remoteAddress, '127.0.0.1');
  assert.equal(ws.remotePort, socket.localPort);
  assert.equal(ws.route, '/rooms/:id');
});

test('send(string) sends a text frame', async (t) => {
  const { client, ws } = await pair(t);
  const got = nextMessage(client);
  assert.equal(ws.send('héllo €'), true);
  const { data, isBinary } = await got;
  assert.equal(isBinary, false);
  assert.equal(String(data), 'héllo €');
});

test('send(Buffer | TypedArray | ArrayBuffer) sends a binary frame with exactly those bytes', async (t) => {
  const { client, ws } = await pair(t);
  const u16 = new Uint16Array([1, 0x0203, 0xffff]);
  const view = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
  const ab = new Uint8Array([7, 8, 9]).buffer;
  const cases = [
    [Buffer.from([0, 1, 2, 255]), Buffer.from([0, 1, 2, 255])],
    [u16, Buffer.from(u16.buffer)],
    [view, Buffer.from([1, 2, 3])],
    [ab, Buffer.from([7, 8, 9])],
  ];
  for (const [input, bytes] of cases) {
    const got = nextMessage(client);
    assert.equal(ws.send(input), true);
    const { data, isBinary } = await got;
    assert.equal(isBinary, true, input.constructor.name);
    assert.deepEqual(Buffer.from(data), bytes, input.constructor.name);
  }
});

test('send(object | array) sends JSON text', async (t) => {
  const { client, ws } = await pair(t);
  for (const value of [{ type: 'chat', message: 'Hello', n: [1, 2] }, [1, 'x', { y: null }]]) {
    const got = nextMessage(client);
    assert.equal(ws.send(value), true);
    const { data, isBinary } = await got;
    assert.equal(isBinary, false);
    assert.deepEqual(JSON.parse(String(data)), value);
  }
});

test('sendBinary(Buffer | string) sends binary frames', async (t) => {
  const { client, ws } = await pair(t);
  for (const [input, bytes] of [
    [Buffer.from([1, 2, 3, 4]), Buffer.from([1, 2, 3, 4])],
    [Buffer.from('Hello', 'utf8'), Buffer.from('Hello')],
    ['Hé', Buffer.from('Hé')],
  ]) {
    const got = nextMessage(client);
    assert.equal(ws.sendBinary(input), true);
    const { data, isBinary } = await got;
    assert.equal(isBinary, true);
    assert.deepEqual(data, bytes);
  }
});

test('ping([data]) reaches the client, and its automatic pong is a server pong event', async (t) => {
  const { client, ws } = await pair(t);
  for (const [arg, bytes] of [
    ['optional-data', Buffer.from('optional-data')],
    [Buffer.from([1, 2, 3]), Buffer.from([1, 2, 3])],
    [undefined, Buffer.alloc(0)],
  ]) {
    const ping = once(client, 'ping');
    const pong = once(ws, 'pong');
    ws.ping(arg);
    const [pingData] = await ping;
    assert.deepEqual(pingData, bytes);
    const [pongData] = await pong;
    assert.ok(Buffer.isBuffer(pongData));
    assert.deepEqual(pongData, bytes);
  }
});

test('a client ping is a server ping event and is answered with a pong automatically', async (t) => {
  const { client, ws } = await pair(t);
  const ping = once(ws, 'ping');
  const pong = once(client, 'pong');
  client.ping('are you there');
  const [serverData] = await ping;
  assert.ok(Buffer.isBuffer(serverData));
  assert.equal(String(serverData), 'are you there');
  const [pongData] = await pong;
  assert.equal(String(pongData), 'are you there');
});

test('pong([data]) reaches the client; a client pong is a server pong event', async (t) => {
  const { client, ws } = await pair(t);
  let pong = once(client, 'pong');
  ws.pong('p1');
  assert.equal(String((await pong)[0]), 'p1');
  pong = once(client, 'pong');
  ws.pong();
  assert.equal((await pong)[0].length, 0);

  const serverPong = once(ws, 'pong');
  client.pong('unsolicited');
  assert.equal(String((await serverPong)[0]), 'unsolicited');
});

test('ping/pong data over 125 bytes is a RangeError; 125 bytes is fine', async (t) => {
  const { client, ws } = await pair(t);
  for (const big of ['x'.repeat(126), Buffer.alloc(126), '€'.repeat(42)]) {
    assert.throws(() => ws.ping(big), RangeError);
    assert.throws(() => ws.pong(big), RangeError);
  }
  const ping = once(client, 'ping');
  ws.ping('y'.repeat(125));
  assert.equal(String((await ping)[0]), 'y'.repeat(125));
  assert.equal(ws.readyState, WS_STATES.OPEN);
});

test('close(code, reason) is what the client sees; the server close event follows', async (t) => {
  const { client, ws, url } = await pair(t);
  const closes = recordCloses(ws);
  const clientClosed = nextClose(client);
  const serverClosed = nextClose(ws);
  ws.close(4000, 'Room closed');
  assert.deepEqual(await clientClosed, { code: 4000, reason: 'Room closed' });
  assert.equal((await serverClosed).code, 4000);
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('close() with no arguments closes with 1000', async (t) => {
  const { client, ws } = await pair(t);
  const clientClosed = nextClose(client);
  const serverClosed = nextClose(ws);
  ws.close();
  assert.deepEqual(await clientClosed, { code: 1000, reason: '' });
  assert.equal((await serverClosed).code, 1000);
});

test('close() accepts a reason of exactly 123 UTF-8 bytes', async (t) => {
  const { client, ws } = await pair(t);
  const reason = '€'.repeat(41);
  assert.equal(Buffer.byteLength(reason), 123);
  const clientClosed = nextClose(client);
  ws.close(1001, reason);
  assert.deepEqual(await clientClosed, { code: 1001, reason });
});

test('close() refuses invalid codes and over-long reasons, and leaves the connection open', async (t) => {
  const { client, ws } = await pair(t);
  for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000, 1000.5, '1000', NaN]) {
    assert.throws(
      () => ws.close(code, 'x'),
      (err) => err instanceof RangeError || err instanceof TypeError,
      `code ${String(code)}`
    );
  }
  assert.throws(() => ws.close('1000'), TypeError);
  assert.throws(() => ws.close(1005), RangeError);
  const reason = '€'.repeat(62);
  assert.equal(Buffer.byteLength(reason), 186);
  assert.ok(reason.length <= 123, 'fewer characters than the limit: the limit is in bytes');
  assert.throws(() => ws.close(1000, reason), RangeError);
  assert.throws(() => ws.close(1000, 'a'.repeat(124)), RangeError);

  assert.equal(ws.readyState, WS_STATES.OPEN);
  const got = nextMessage(client);
  assert.equal(ws.send('still open'), true);
  assert.equal(String((await got).data), 'still open');
});

test('terminate() drops the connection: 1006 on both sides, one server close event', async (t) => {
  const { client, ws, url } = await pair(t);
  const closes = recordCloses(ws);
  const clientClosed = nextClose(client);
  const serverClosed = nextClose(ws);
  ws.terminate();
  assert.equal((await clientClosed).code, 1006);
  assert.equal((await serverClosed).code, 1006);
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('getInfo() returns id, state, rooms, metadata, remoteAddress and remotePort', async (t) => {
  const { ws } = await pair(t);
  ws.metadata = { userId: 7 };
  const info = ws.getInfo();
  assert.deepEqual(info, {
    id: ws.id,
    state: WS_STATES.OPEN,
    rooms: [],
    metadata: { userId: 7 },
    remoteAddress: '127.0.0.1',
    remotePort: ws.remotePort,
  });
  assert.equal(typeof info.remotePort, 'number');
  assert.ok(info.remotePort > 0);
  assert.match(info.id, UUID_V4);
  const closed = nextClose(ws);
  ws.close();
  await closed;
  assert.equal(ws.getInfo().state, WS_STATES.CLOSED);
  assert.equal(ws.getInfo().id, info.id);
});

test('message events: text as a string, binary as a Buffer', async (t) => {
  const { client, ws } = await pair(t);
  client.send('hi €');
  let [data, isBinary] = await once(ws, 'message');
  assert.equal(data, 'hi €');
  assert.equal(isBinary, false);
  client.send(Buffer.from([0, 159, 146, 150]));
  [data, isBinary] = await once(ws, 'message');
  assert.ok(Buffer.isBuffer(data));
  assert.deepEqual(data, Buffer.from([0, 159, 146, 150]));
  assert.equal(isBinary, true);
  client.send('');
  [data, isBinary] = await once(ws, 'message');
  assert.equal(data, '');
  assert.equal(isBinary, false);
});

test('message listeners are called as emit calls them: this, order, once, removal, an emit of the app', async (t) => {
  const { client, ws } = await pair(t);
  // Listeners record their calls; no other listener is added (a single one is called directly).
  const calls = [];
  let wake = () => {};
  const record = (call) => {
    calls.push(call);
    wake();
  };
  const until = async (n) => {
    while (calls.length < n) await new Promise((resolve) => (wake = resolve));
  };
  const single = function (data, isBinary) {
    record(['single', this === ws, String(data), isBinary]);
  };
  ws.on('message', single);
  client.send('one');
  await until(1);
  // Several, a once among them, in the order they were added.
  ws.once('message', (data) => record(['once', String(data)]));
  ws.prependListener('message', (data) => record(['first', String(data)]));
  client.send(Buffer.from('two'));
  client.send('three');
  await until(6);
  // None: a message nobody listens to is dropped without an error.
  ws.removeAllListeners('message');
  ws.on('message', single);
  ws.removeListener('message', single);
  // The ping is handled after the message before it.
  const pinged = once(ws, 'ping');
  client.send('unheard');
  client.ping('after');
  await pinged;
  // An app that wraps its connection's emit sees messages go through it.
  const seen = [];
  const emit = ws.emit;
  ws.emit = function (name, ...args) {
    if (name === 'message') seen.push(String(args[0]));
    return emit.call(this, name, ...args);
  };
  ws.on('message', single);
  client.send('four');
  await until(7);
  assert.deepEqual(calls, [
    ['single', true, 'one', false],
    ['first', 'two'],
    ['single', true, 'two', true],
    ['once', 'two'],
    ['first', 'three'],
    ['single', true, 'three', false],
    ['single', true, 'four', false],
  ]);
  assert.deepEqual(seen, ['four']);
});

test('1000 messages sent quickly arrive in order, both ways', async (t) => {
  const { client, ws } = await pair(t);
  const N = 1000;
  const received = [];
  const all = new Promise((resolve) => {
    ws.on('message', (data, isBinary) => {
      received.push(isBinary ? `b:${data.toString()}` : `t:${data}`);
      if (received.length === N) resolve();
    });
  });
  const expected = [];
  for (let i = 0; i < N; i++) {
    if (i % 2) {
      client.send(Buffer.from(String(i)));
      expected.push(`b:${i}`);
    } else {
      client.send(String(i));
      expected.push(`t:${i}`);
    }
  }
  await withTimeout(all, 5000, `${N} messages on the server (got ${received.length})`);
  assert.deepEqual(received, expected);

  const back = [];
  const allBack = new Promise((resolve) => {
    client.on('message', (data) => {
      back.push(String(data));
      if (back.length === N) resolve();
    });
  });
  for (let i = 0; i < N; i++) assert.equal(ws.send(String(i)), true);
  await withTimeout(allBack, 5000, `${N} messages on the client (got ${back.length})`);
  assert.deepEqual(back, Array.from({ length: N }, (_, i) => String(i)));
});

test('a 5 MB binary and a 1 MB text message round-trip intact', async (t) => {
  const { client, ws } = await pair(t);
  // A string goes back as text and a Buffer as binary.
  ws.on('message', (data) => ws.send(data));

  const bin = crypto.randomBytes(5 * 1024 * 1024);
  let got = nextMessage(client, 10000);
  client.send(bin);
  let { data, isBinary } = await got;
  assert.equal(isBinary, true);
  assert.equal(data.length, bin.length);
  assert.ok(data.equals(bin), 'binary payload differs');

  const text = 'ab€😀'.repeat(Math.ceil((1024 * 1024) / 9)); // 9 UTF-8 bytes each
  assert.ok(Buffer.byteLength(text) >= 1024 * 1024);
  got = nextMessage(client, 10000);
  client.send(text);
  ({ data, isBinary } = await got);
  assert.equal(isBinary, false);
  assert.ok(String(data) === text, 'text payload differs');
});

test('messages just under and over 64 KiB, mixed with small ones in one burst, arrive whole and in order', async (t) => {
  const { client, ws } = await pair(t);
  const seen = [];
  let allIn;
  const all = new Promise((resolve) => (allIn = resolve));
  // Messages up to 64 KiB and larger ones reach JS by different paths; one burst mixes them.
  const big = (n, fill) => Buffer.alloc(n, fill);
  const sent = [
    [false, 'small'],
    [true, big(65536, 1)],
    [false, 'é'.repeat(32768)], // 65,536 bytes of UTF-8
    [false, 'x'.repeat(65537)],
    [true, big(3, 2)],
    [true, big(65537, 3)],
    [false, '€'.repeat(30000)],
    [false, 'last'],
  ];
  ws.on('message', (data, isBinary) => {
    seen.push([isBinary, data]);
    if (seen.length === sent.length) allIn();
  });
  for (const [binary, data] of sent) client.send(data, { binary });
  await withTimeout(all, 5000, `${sent.length} messages`);
  seen.forEach(([isBinary, data], i) => {
    const [binary, expected] = sent[i];
    assert.equal(isBinary, binary, `message ${i}: type`);
    if (binary) assert.ok(Buffer.isBuffer(data) && data.equals(expected), `message ${i}: bytes`);
    else assert.ok(data === expected, `message ${i}: text`);
  });
});

test('close event when the client closes with a code and reason', async (t) => {
  const { client, ws, url } = await pair(t);
  const closes = recordCloses(ws);
  const closed = nextClose(ws);
  client.close(4001, 'bye now');
  assert.deepEqual(await closed, { code: 4001, reason: 'bye now' });
  assert.equal((await nextClose(client)).code, 4001);
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('close event with 1005 when the client closes without a code', async (t) => {
  const { client, ws, url } = await pair(t);
  const closes = recordCloses(ws);
  const closed = nextClose(ws);
  client.close();
  assert.deepEqual(await closed, { code: 1005, reason: '' });
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('close event with 1006 when the client terminates', async (t) => {
  const { client, ws, url } = await pair(t);
  const closes = recordCloses(ws);
  const closed = nextClose(ws);
  client.terminate();
  assert.equal((await closed).code, 1006);
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('close event with 1006 when the raw socket is destroyed', async (t) => {
  const { conns, port, url } = await setup(t);
  const { text, socket } = await rawHttp(port, upgradeRequest('/c'), { untilHead: true });
  assert.equal(parseResponse(text).status, 101);
  const { ws } = await conns.next();
  const closes = recordCloses(ws);
  const closed = nextClose(ws);
  socket.destroy();
  assert.equal((await closed).code, 1006);
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('on a closed connection, send returns false and nothing throws', async (t) => {
  const { ws, client, url } = await pair(t);
  const closes = recordCloses(ws);
  const closed = nextClose(ws);
  client.close(1000);
  await closed;
  assert.equal(ws.readyState, WS_STATES.CLOSED);
  assert.equal(ws.send('late'), false);
  assert.equal(ws.send(Buffer.from('late')), false);
  assert.equal(ws.send({ late: true }), false);
  assert.equal(ws.sendBinary(Buffer.from('late')), false);
  ws.ping();
  ws.ping('x');
  ws.pong();
  ws.close();
  ws.close(1000, 'again');
  ws.terminate();
  assert.equal(ws.readyState, WS_STATES.CLOSED);
  await barrier(t, url);
  assert.equal(closes.length, 1);
});

test('bufferedAmount is a number', async (t) => {
  const { ws } = await pair(t);
  assert.equal(typeof ws.bufferedAmount, 'number');
  assert.ok(ws.bufferedAmount >= 0);
  const closed = nextClose(ws);
  ws.terminate();
  await closed;
  assert.equal(typeof ws.bufferedAmount, 'number');
});
