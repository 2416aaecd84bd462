'use strict';

// Broadcasting: router.room(name), router.broadcast and router.to(routePath), with `except`
// (one id or an array), data handled as by send, and delivery that is complete and in order
// for every member, while members come and go and when a member's socket dies
// (docs/WEBSOCKET.md, "Broadcasting to Rooms" and "Broadcasting").

const test = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const { listen, connectWithInbox, named, nextClose, rawUpgrade } = require('./helpers');

const ROUTES = ['/ws/chat', '/ws/user/:userId', '/ws/game'];

/**
 * A router serving ROUTES; every connection is filed by `?name=`. `open(path, name)` gives
 * `{ client, ws, got }` (got: the client's inbox), and joins the rooms in `rooms`.
 */
async function setup(t) {
  const router = new Router();
  const conns = named();
  for (const route of ROUTES) router.ws(route, conns.handler);
  const { url, port } = await listen(router, t);
  async function open(path, name, rooms = []) {
    const { client, got } = await connectWithInbox(`${url}${path}?name=${encodeURIComponent(name)}`, t);
    const { ws, req } = await conns.get(name);
    for (const room of rooms) ws.join(room);
    return { client, ws, req, got, name };
  }
  return { router, open, port, conns };
}

/**
 * Proves a client received nothing more: sends it a marker directly and expects the marker
 * to be the next message (a connection's messages arrive in the order they were produced).
 */
async function assertNothingElse(peer, label = 'marker') {
  peer.ws.send(`--${label}--`);
  assert.deepEqual(await peer.got.texts(1), [`--${label}--`], `${peer.name} received something unexpected`);
}

test('router.room(name).broadcast reaches the members and no one else', async (t) => {
  const { router, open } = await setup(t);
  const a = await open('/ws/chat', 'a', ['general']);
  const b = await open('/ws/user/7', 'b', ['general', 'other']);
  const outsider = await open('/ws/chat', 'outsider', ['other']);
  router.room('general').broadcast('hello general');
  assert.deepEqual(await a.got.texts(1), ['hello general']);
  assert.deepEqual(await b.got.texts(1), ['hello general']);
  await assertNothingElse(outsider);
});

test('except as one id leaves out that connection; as an array, each listed one', async (t) => {
  const { router, open } = await setup(t);
  const peers = [];
  for (const name of ['a', 'b', 'c', 'd']) peers.push(await open('/ws/chat', name, ['general']));
  const [a, b, c, d] = peers;

  router.room('general').broadcast('not to a', { except: a.ws.id });
  router.room('general').broadcast('not to b, c', { except: [b.ws.id, c.ws.id] });
  router.room('general').broadcast('to all: empty list', { except: [] });
  router.room('general').broadcast('to all: unknown id', { except: 'no-such-id' });
  router.room('general').broadcast('to all: except null', { except: null });
  router.room('general').broadcast('not to d, a', { except: [d.ws.id, 'unknown', a.ws.id] });
  const all = ['to all: empty list', 'to all: unknown id', 'to all: except null'];
  assert.deepEqual(await a.got.texts(4), ['not to b, c', ...all]);
  assert.deepEqual(await b.got.texts(5), ['not to a', ...all, 'not to d, a']);
  assert.deepEqual(await c.got.texts(5), ['not to a', ...all, 'not to d, a']);
  assert.deepEqual(await d.got.texts(5), ['not to a', 'not to b, c', ...all]);
  for (const p of peers) await assertNothingElse(p);
});

test('router.broadcast reaches every open connection on every route, but except', async (t) => {
  const { router, open } = await setup(t);
  const a = await open('/ws/chat', 'a');
  const b = await open('/ws/user/1', 'b', ['r']);
  const c = await open('/ws/game', 'c');
  const d = await open('/ws/user/2', 'd');
  router.broadcast({ type: 'system', message: 'Server announcement' });
  for (const p of [a, b, c, d]) {
    assert.deepEqual(JSON.parse(await p.got.texts(1)), { type: 'system', message: 'Server announcement' });
  }
  router.broadcast('data', { except: [a.ws.id, c.ws.id] });
  router.broadcast('one left out', { except: d.ws.id });
  assert.deepEqual(await a.got.texts(1), ['one left out']);
  assert.deepEqual(await b.got.texts(2), ['data', 'one left out']);
  assert.deepEqual(await c.got.texts(1), ['one left out']);
  assert.deepEqual(await d.got.texts(1), ['data']);
  for (const p of [a, b, c, d]) await assertNothingElse(p);
});

test('router.broadcast skips connections that have closed or are closing', async (t) => {
  const { router, open } = await setup(t);
  const a = await open('/ws/chat', 'a');
  const gone = await open('/ws/chat', 'gone');
  const closing = await open('/ws/chat', 'closing');
  const closed = nextClose(gone.ws);
  gone.client.close();
  await closed;
  closing.ws.close(4001, 'going');
  router.broadcast('after');
  assert.deepEqual(await a.got.texts(1), ['after']);
  const end = await nextClose(closing.client);
  assert.equal(end.code, 4001);
  assert.equal(closing.got.pending(), 0, 'nothing follows a close frame');
});

test('router.to(routePath) reaches the connections accepted on that route pattern', async (t) => {
  const { router, open } = await setup(t);
  const chat1 = await open('/ws/chat', 'chat1');
  const chat2 = await open('/ws/chat', 'chat2');
  const user1 = await open('/ws/user/1', 'user1');
  const user2 = await open('/ws/user/2', 'user2');
  const game = await open('/ws/game', 'game');

  router.to('/ws/chat').broadcast({ type: 'route-message', data: 'Hello chat users' });
  for (const p of [chat1, chat2]) {
    assert.deepEqual(JSON.parse(await p.got.texts(1)), { type: 'route-message', data: 'Hello chat users' });
  }
  router.to('/ws/user/:userId').broadcast('users', { except: user2.ws.id });
  router.to('/ws/user/:userId').broadcast('users again', { except: [user1.ws.id] });
  assert.deepEqual(await user1.got.texts(1), ['users']);
  assert.deepEqual(await user2.got.texts(1), ['users again']);

  assert.deepEqual(new Set(router.to('/ws/chat').getConnections()), new Set([chat1.ws, chat2.ws]));
  assert.deepEqual(new Set(router.to('/ws/user/:userId').getConnections()), new Set([user1.ws, user2.ws]));
  assert.deepEqual(router.to('/ws/game').getConnections(), [game.ws]);
  // A concrete path is not the registered pattern, and an unknown route has no one.
  assert.deepEqual(router.to('/ws/user/1').getConnections(), []);
  assert.deepEqual(router.to('/ws/nowhere').getConnections(), []);
  router.to('/ws/user/1').broadcast('nobody');
  router.to('/ws/nowhere').broadcast('nobody');
  for (const p of [chat1, chat2, user1, user2, game]) await assertNothingElse(p);

  const closed = nextClose(chat1.ws);
  chat1.client.close();
  await closed;
  assert.deepEqual(router.to('/ws/chat').getConnections(), [chat2.ws]);
});

test('router.to() refuses a path that is not a string starting with "/"', () => {
  const router = new Router();
  assert.throws(() => router.to('ws/chat'), TypeError);
  assert.throws(() => router.to(1), TypeError);
});

// Data handled as by send: string -> text, object -> JSON text, binary -> binary, and
// { binary: true } forces a binary frame.
const targets = {
  'router.room(name).broadcast': (router) => router.room('r'),
  'router.broadcast': (router) => router,
  'router.to(routePath).broadcast': (router) => router.to('/ws/chat'),
};

for (const [label, target] of Object.entries(targets)) {
  test(`${label} sends data as send does`, async (t) => {
    const { router, open } = await setup(t);
    const p = await open('/ws/chat', 'p', ['r']);
    const b = target(router);
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    b.broadcast('plain text');
    b.broadcast({ type: 'obj', n: 1, nested: { ok: true } });
    b.broadcast([1, 'two']);
    b.broadcast(bytes);
    b.broadcast(new Uint8Array([9, 8, 7]));
    b.broadcast(new Uint16Array([0x0102]).buffer);
    b.broadcast('forced', { binary: true });
    b.broadcast({ forced: 'json' }, { binary: true });
    b.broadcast('');
    const got = await p.got.take(9);
    const view = got.map(({ data, isBinary }) => [isBinary, isBinary ? data.toString('hex') : data.toString()]);
    assert.deepEqual(view, [
      [false, 'plain text'],
      [false, '{"type":"obj","n":1,"nested":{"ok":true}}'],
      [false, '[1,"two"]'],
      [true, '000102fdfeff'],
      [true, '090807'],
      [true, Buffer.from(new Uint16Array([0x0102]).buffer).toString('hex')],
      [true, Buffer.from('forced').toString('hex')],
      [true, Buffer.from('{"forced":"json"}').toString('hex')],
      [false, ''],
    ]);
  });

  test(`${label} refuses data that send refuses`, () => {
    const router = new Router();
    const b = target(router);
    assert.throws(() => b.broadcast(undefined), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => b.broadcast(() => {}), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => b.broadcast(Symbol('s')), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });
}

test('a large binary broadcast arrives intact at every member', async (t) => {
  const { router, open } = await setup(t);
  const peers = [];
  for (let i = 0; i < 5; i++) peers.push(await open('/ws/chat', `p${i}`, ['big']));
  const payload = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
  router.room('big').broadcast(payload);
  for (const p of peers) {
    const { data, isBinary } = await p.got.next(10000);
    assert.equal(isBinary, true);
    assert.ok(payload.equals(data), `${p.name} got the exact bytes`);
  }
});

test('the simplest case: ws.send("a"); room.broadcast("b"); ws.send("c")', async (t) => {
  const { router, open } = await setup(t);
  const p = await open('/ws/chat', 'p', ['room']);
  p.ws.send('a');
  router.room('room').broadcast('b');
  p.ws.send('c');
  assert.deepEqual(await p.got.texts(3), ['a', 'b', 'c']);
});

test('send, broadcast, send: each client receives a, b, c in that order', async (t) => {
  const { router, open } = await setup(t);
  const peers = [];
  for (let i = 0; i < 5; i++) peers.push(await open(i % 2 ? '/ws/chat' : '/ws/game', `p${i}`, ['room']));
  const ROUNDS = 300;
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of peers) p.ws.send(`a${r}`);
    if (r % 3 === 0) router.room('room').broadcast(`b${r}`);
    else if (r % 3 === 1) router.broadcast(`b${r}`);
    else {
      router.to('/ws/chat').broadcast(`b${r}`);
      router.to('/ws/game').broadcast(`b${r}`);
    }
    for (const p of peers) p.ws.send(`c${r}`);
  }
  for (const p of peers) {
    const expected = [];
    for (let r = 0; r < ROUNDS; r++) expected.push(`a${r}`, `b${r}`, `c${r}`);
    assert.deepEqual(await p.got.texts(expected.length), expected, p.name);
  }
});

test('send, broadcast, send from inside message listeners keep their order too', async (t) => {
  const { router, open } = await setup(t);
  const peers = [];
  for (let i = 0; i < 4; i++) peers.push(await open('/ws/chat', `p${i}`, ['room']));
  const ROUNDS = 200;
  // Each "go" message makes the server send a, broadcast b and send c to every member; the
  // client sends them in bursts, so several arrive in one batch of events.
  peers[0].ws.on('message', (data) => {
    const r = String(data);
    for (const p of peers) p.ws.send(`a${r}`);
    router.room('room').broadcast(`b${r}`);
    for (const p of peers) p.ws.send(`c${r}`);
  });
  for (let r = 0; r < ROUNDS; r++) peers[0].client.send(String(r));
  const expected = [];
  for (let r = 0; r < ROUNDS; r++) expected.push(`a${r}`, `b${r}`, `c${r}`);
  for (const p of peers) assert.deepEqual(await p.got.texts(expected.length), expected, p.name);
});

test('1000 broadcasts arrive complete and in order at each of 20 members', async (t) => {
  const { router, open } = await setup(t);
  const peers = await Promise.all(Array.from({ length: 20 }, (_, i) => open('/ws/chat', `m${i}`, ['many'])));
  assert.equal(router.room('many').size(), 20);
  const N = 1000;
  for (let i = 0; i < N; i++) router.room('many').broadcast(i % 10 === 0 ? { seq: i } : `${i}`);
  const expected = Array.from({ length: N }, (_, i) => (i % 10 === 0 ? JSON.stringify({ seq: i }) : `${i}`));
  const results = await Promise.all(peers.map((p) => p.got.texts(N, 15000)));
  for (let k = 0; k < peers.length; k++) assert.deepEqual(results[k], expected, peers[k].name);
});

test('broadcasts while members join and leave reach exactly the members at the time of each call', async (t) => {
  const { router, open } = await setup(t);
  const peers = await Promise.all(Array.from({ length: 6 }, (_, i) => open('/ws/chat', `m${i}`)));
  const expected = peers.map(() => []);
  peers.forEach((p, k) => k % 2 === 0 && p.ws.join('flux'));
  const N = 600;
  for (let i = 0; i < N; i++) {
    router.room('flux').broadcast(`${i}`);
    peers.forEach((p, k) => p.ws.inRoom('flux') && expected[k].push(`${i}`));
    const p = peers[(i * 7) % peers.length];
    if (p.ws.inRoom('flux')) p.ws.leave('flux');
    else p.ws.join('flux');
    assert.equal(router.room('flux').size(), peers.filter((q) => q.ws.inRoom('flux')).length);
  }
  router.broadcast('end');
  for (let k = 0; k < peers.length; k++) {
    assert.deepEqual(await peers[k].got.texts(expected[k].length + 1), [...expected[k], 'end'], peers[k].name);
    await assertNothingElse(peers[k]);
  }
});

test('a member whose socket dies mid-broadcast does not disturb the others', async (t) => {
  const { router, open, port, conns } = await setup(t);
  const healthy = [];
  for (let i = 0; i < 4; i++) healthy.push(await open('/ws/chat', `h${i}`, ['live']));
  // A raw client that never reads, so frames back up towards it, and whose socket is then
  // destroyed in the middle of the run; and one the server terminates in the middle.
  const raw = await rawUpgrade(port, '/ws/chat?name=raw');
  t.after(() => raw.destroy());
  const { ws: rawWs } = await conns.get('raw');
  rawWs.join('live');
  const doomed = await open('/ws/game', 'doomed', ['live']);
  const rawClosed = nextClose(rawWs);
  const doomedClosed = nextClose(doomed.ws);
  assert.equal(router.room('live').size(), 6);

  const N = 200;
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  const expected = [];
  for (let i = 0; i < N; i++) {
    if (i === 60) raw.destroy();
    if (i === 120) doomed.ws.terminate();
    const payload = Buffer.concat([Buffer.from(`${i}:`), chunk]);
    expected.push(payload.toString());
    router.room('live').broadcast(payload.toString());
  }
  for (const p of healthy) {
    const got = await p.got.texts(N, 15000);
    assert.equal(got.length, N);
    for (let i = 0; i < N; i++) assert.ok(got[i] === expected[i], `${p.name}: message ${i} intact and in order`);
  }
  assert.equal((await rawClosed).code, 1006);
  assert.equal((await doomedClosed).code, 1006);
  assert.equal(router.room('live').size(), 4);
  assert.deepEqual(new Set(router.room('live').getConnections()), new Set(healthy.map((p) => p.ws)));
  const stats = router.getWebSocketRouter().getStats();
  assert.equal(stats.connections, 4);
  assert.equal(stats.rooms, 1);
  router.room('live').broadcast('still fine');
  for (const p of healthy) assert.deepEqual(await p.got.texts(1), ['still fine']);
});

test('a broadcast to an empty or unknown room does nothing and creates no room', async (t) => {
  const { router, open } = await setup(t);
  const p = await open('/ws/chat', 'p', ['elsewhere']);
  router.room('nobody-here').broadcast('x');
  router.room('nobody-here').broadcast('x', { except: p.ws.id });
  assert.equal(router.room('nobody-here').size(), 0);
  assert.deepEqual(router.room('nobody-here').getConnections(), []);
  assert.equal(router.getWebSocketRouter().getStats().rooms, 1);
  await assertNothingElse(p);
});

test('broadcasts reach members on every server of the router; except works across servers', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/ws/chat', conns.handler);
  const one = await listen(router, t);
  const two = await listen(router, t);
  const peers = [];
  for (const [name, srv] of [['x1', one], ['x2', one], ['y1', two], ['y2', two]]) {
    const { client, got } = await connectWithInbox(`${srv.url}/ws/chat?name=${name}`, t);
    const { ws } = await conns.get(name);
    ws.join('span');
    peers.push({ name, client, ws, got });
  }
  const [x1, x2, y1, y2] = peers;
  router.room('span').broadcast('room', { except: y1.ws.id });
  router.broadcast('all', { except: [x1.ws.id, y2.ws.id] });
  router.to('/ws/chat').broadcast('route', { except: x2.ws.id });
  assert.deepEqual(await x1.got.texts(2), ['room', 'route']);
  assert.deepEqual(await x2.got.texts(2), ['room', 'all']);
  assert.deepEqual(await y1.got.texts(2), ['all', 'route']);
  assert.deepEqual(await y2.got.texts(2), ['room', 'route']);
  for (const p of peers) await assertNothingElse(p);
});

test('a member that stops reading does not hold back the others', async (t) => {
  // A limit above the burst, so that no message is skipped for the member that reads.
  const router = new Router({ websocket: { maxBackpressure: 64 * 1024 * 1024 } });
  const conns = named();
  router.ws('/room', (ws, req) => {
    ws.join('r');
    conns.handler(ws, req);
  });
  const { url, port } = await listen(router, t);
  // The stalled member completes its handshake, then never reads again.
  const stalled = await rawUpgrade(port, '/room?name=stalled');
  t.after(() => stalled.destroy());
  await conns.get('stalled');
  const reader = await connectWithInbox(`${url}/room?name=reader`, t);
  await conns.get('reader');
  const chunk = Buffer.alloc(100 * 1024, 7);
  const count = 200; // 20 MB: far more than the stalled socket's kernel buffers hold
  for (let i = 0; i < count; i++) {
    chunk.writeUInt32BE(i, 0);
    router.room('r').broadcast(chunk);
  }
  const got = await reader.got.take(count, 20000);
  got.forEach((m, i) => {
    assert.equal(m.isBinary, true);
    assert.equal(m.data.length, chunk.length);
    assert.equal(m.data.readUInt32BE(0), i);
  });
  const { ws } = await conns.get('stalled');
  assert.ok(ws.bufferedAmount > 0, 'the stalled member has frames waiting in its own queue');
});
