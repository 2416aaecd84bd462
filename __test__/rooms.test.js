'use strict';

// Rooms: ws.join / leave / inRoom / rooms, kept in step with the engine's room index, and
// router.room(name).size() / getConnections() and getStats().rooms reading that index. A
// closed connection leaves all its rooms and an empty room disappears, however the
// connection ended (docs/WEBSOCKET.md, "Room Management").

const test = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const { listen, connectWithInbox, once, named, nextClose, rawUpgrade } = require('./helpers');

/** A router with one route, `/room`, whose connections are filed by `?name=`. */
async function setup(t) {
  const router = new Router();
  const conns = named();
  router.ws('/room', conns.handler);
  const { url, port, server } = await listen(router, t);
  /** A client and its server-side connection. */
  async function open(name) {
    const { client, got } = await connectWithInbox(`${url}/room?name=${encodeURIComponent(name)}`, t);
    const { ws } = await conns.get(name);
    return { client, ws, got };
  }
  return { router, open, port, server, stats: () => router.getWebSocketRouter().getStats() };
}

/** Sorted copy, for comparing membership regardless of order. */
const sorted = (items) => [...items].sort();

test('join, inRoom, rooms and leave agree with the room index', async (t) => {
  const { router, open, stats } = await setup(t);
  const { ws } = await open('a');

  assert.ok(ws.rooms instanceof Set);
  assert.equal(ws.rooms.size, 0);
  assert.equal(ws.inRoom('general'), false);
  assert.equal(stats().rooms, 0);

  assert.equal(ws.join('general'), true);
  assert.equal(ws.inRoom('general'), true);
  assert.deepEqual([...ws.rooms], ['general']);
  assert.equal(router.room('general').size(), 1);
  assert.deepEqual(router.room('general').getConnections(), [ws]);
  assert.equal(stats().rooms, 1);

  assert.equal(ws.join('general'), false, 'joining a room twice');
  assert.equal(router.room('general').size(), 1);
  assert.equal(ws.rooms.size, 1);

  assert.equal(ws.join('room1'), true);
  assert.equal(ws.join('room2'), true);
  assert.deepEqual(sorted(ws.rooms), ['general', 'room1', 'room2']);
  assert.deepEqual(sorted(ws.getInfo().rooms), ['general', 'room1', 'room2']);
  assert.equal(stats().rooms, 3);

  assert.equal(ws.leave('general'), true);
  assert.equal(ws.inRoom('general'), false);
  assert.equal(router.room('general').size(), 0);
  assert.deepEqual(router.room('general').getConnections(), []);
  assert.equal(stats().rooms, 2, 'an empty room disappears');
  assert.equal(ws.leave('general'), false, 'leaving a room twice');
  assert.equal(ws.leave('never-joined'), false);
  assert.deepEqual(sorted(ws.rooms), ['room1', 'room2']);
  assert.equal(stats().rooms, 2);
});

test('membership is what broadcasts see: a left room no longer reaches the client', async (t) => {
  const { router, open } = await setup(t);
  const { ws, got } = await open('a');
  ws.join('x');
  ws.join('y');
  ws.leave('x');
  router.room('x').broadcast('to x');
  router.room('y').broadcast('to y');
  ws.join('x');
  router.room('x').broadcast('to x again');
  assert.deepEqual(await got.texts(2), ['to y', 'to x again']);
});

test('a room shared by several connections: size, getConnections and the last leave', async (t) => {
  const { router, open, stats } = await setup(t);
  const members = [];
  for (const name of ['a', 'b', 'c']) members.push((await open(name)).ws);
  const [a, b, c] = members;
  for (const ws of members) assert.equal(ws.join('shared'), true);
  b.join('b-only');

  assert.equal(router.room('shared').size(), 3);
  const live = router.room('shared').getConnections();
  assert.equal(live.length, 3);
  for (const ws of members) assert.ok(live.includes(ws), 'getConnections gives the live ws objects');
  assert.equal(stats().rooms, 2);

  a.leave('shared');
  assert.equal(router.room('shared').size(), 2);
  assert.deepEqual(sorted(router.room('shared').getConnections().map((ws) => ws.id)), sorted([b.id, c.id]));
  c.leave('shared');
  b.leave('shared');
  assert.equal(router.room('shared').size(), 0);
  assert.deepEqual(router.room('shared').getConnections(), []);
  assert.equal(stats().rooms, 1, 'only b-only is left');
  assert.deepEqual([...b.rooms], ['b-only']);
});

test('room names are exact strings: case, spaces and non-ASCII make different rooms', async (t) => {
  const { router, open, stats } = await setup(t);
  const { ws, got } = await open('a');
  const names = ['Room', 'room', ' room', 'room ', 'sala-ñ', '部屋', '🎲'];
  for (const name of names) assert.equal(ws.join(name), true, name);
  assert.equal(stats().rooms, names.length);
  for (const name of names) assert.equal(router.room(name).size(), 1, name);
  ws.leave('room');
  assert.equal(ws.inRoom('Room'), true);
  router.room('room').broadcast('lower');
  router.room('🎲').broadcast('dice');
  router.room('部屋').broadcast('heya');
  assert.deepEqual(await got.texts(2), ['dice', 'heya']);
});

test('invalid room names throw a TypeError and change nothing', async (t) => {
  const { router, open, stats } = await setup(t);
  const { ws } = await open('a');
  ws.join('kept');
  const wsServer = router.getWebSocketRouter().wsServer;
  const notStrings = [undefined, null, 1, {}, ['a'], Symbol('r'), () => 'r', new String('r')];
  for (const bad of notStrings) {
    const expected = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
    assert.throws(() => ws.join(bad), expected, `join(${String(bad)})`);
    assert.throws(() => ws.leave(bad), expected, `leave(${String(bad)})`);
    assert.throws(() => router.room(bad), expected, `router.room(${String(bad)})`);
    assert.throws(() => wsServer.getRoom(bad), expected, `getRoom(${String(bad)})`);
    assert.throws(() => wsServer.broadcastToRoom(bad, 'x'), expected, `broadcastToRoom(${String(bad)})`);
  }
  const empty = { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' };
  assert.throws(() => ws.join(''), empty);
  assert.throws(() => ws.leave(''), empty);
  assert.throws(() => router.room(''), empty);
  assert.throws(() => wsServer.getRoom(''), empty);
  assert.throws(() => wsServer.broadcastToRoom('', 'x'), empty);
  assert.deepEqual([...ws.rooms], ['kept']);
  assert.equal(stats().rooms, 1);
});

// Every way a connection can end: each must leave every room and delete the rooms it emptied.
const endings = {
  'the client closes': ({ client }) => client.close(1000),
  'the client terminates': ({ client }) => client.terminate(),
  'the server closes': ({ ws }) => ws.close(4000, 'bye'),
  'the server terminates': ({ ws }) => ws.terminate(),
  'closeAll()': ({ router }) => router.getWebSocketRouter().closeAll(),
};

for (const [how, end] of Object.entries(endings)) {
  test(`when ${how}, the connection leaves all its rooms and emptied rooms disappear`, async (t) => {
    const { router, open, stats } = await setup(t);
    const leaving = await open('leaving');
    const staying = await open('staying');
    for (const room of ['a', 'b', 'c']) leaving.ws.join(room);
    staying.ws.join('b');
    assert.equal(stats().rooms, 3);

    const closed = nextClose(leaving.ws);
    if (how === 'closeAll()') {
      // closeAll closes everyone, the bystander included.
      const stayingClosed = nextClose(staying.ws);
      end({ ...leaving, router });
      await Promise.all([closed, stayingClosed]);
      assert.equal(stats().connections, 0);
      assert.equal(stats().rooms, 0);
      assert.equal(router.room('b').size(), 0);
      assert.equal(staying.ws.rooms.size, 0);
    } else {
      end({ ...leaving, router });
      await closed;
      assert.equal(stats().connections, 1);
      assert.equal(stats().rooms, 1, 'only b, which still has a member, remains');
      assert.equal(router.room('a').size(), 0);
      assert.equal(router.room('b').size(), 1);
      assert.deepEqual(router.room('b').getConnections(), [staying.ws]);
      assert.equal(router.room('c').size(), 0);
      assert.equal(staying.ws.inRoom('b'), true);
    }
    assert.equal(leaving.ws.rooms.size, 0);
    for (const room of ['a', 'b', 'c']) assert.equal(leaving.ws.inRoom(room), false);
    assert.deepEqual(leaving.ws.getInfo().rooms, []);
  });
}

test('inside a close listener the room index has already dropped the connection', async (t) => {
  const { router, open, stats } = await setup(t);
  const leaving = await open('leaving');
  const staying = await open('staying');
  leaving.ws.join('lobby');
  leaving.ws.join('solo');
  staying.ws.join('lobby');
  const seen = new Promise((resolve) => {
    leaving.ws.on('close', () =>
      resolve({
        lobby: router.room('lobby').getConnections(),
        lobbySize: router.room('lobby').size(),
        solo: router.room('solo').size(),
        stats: stats(),
      })
    );
  });
  const got = staying.got;
  leaving.ws.on('close', () => router.room('lobby').broadcast('user-left'));
  leaving.client.close();
  const s = await seen;
  assert.deepEqual(s.lobby, [staying.ws]);
  assert.equal(s.lobbySize, 1);
  assert.equal(s.solo, 0);
  assert.equal(s.stats.connections, 1);
  assert.equal(s.stats.rooms, 1);
  assert.deepEqual(await got.texts(1), ['user-left']);
});

test('a closed connection cannot join or leave, and creates no room', async (t) => {
  const { router, open, stats } = await setup(t);
  const { client, ws } = await open('a');
  ws.join('before');
  const closed = nextClose(ws);
  client.close();
  await closed;
  assert.equal(ws.join('after'), false);
  assert.equal(ws.inRoom('after'), false);
  assert.equal(ws.leave('before'), false);
  assert.equal(ws.rooms.size, 0);
  assert.equal(router.room('after').size(), 0);
  assert.equal(stats().rooms, 0);
});

test('joining in a close listener does nothing', async (t) => {
  const { router, open, stats } = await setup(t);
  const { client, ws } = await open('a');
  const results = new Promise((resolve) => ws.on('close', () => resolve(ws.join('ghost'))));
  client.terminate();
  assert.equal(await results, false);
  assert.equal(router.room('ghost').size(), 0);
  assert.equal(stats().rooms, 0);
});

/** Resolves once `condition()` holds, checking on every turn of the event loop. */
async function until(condition, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('a connection that ends while its middleware is pending still leaves its rooms', async (t) => {
  const router = new Router();
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  t.after(() => release());
  const entered = [];
  let handlerRan = false;
  router.ws(
    '/slow',
    async (ws, req, next) => {
      ws.join('waiting-room');
      ws.join('other');
      entered.push(ws);
      await gate;
      next();
    },
    () => {
      handlerRan = true;
    }
  );
  const { url } = await listen(router, t);
  const client = await connectWithInbox(`${url}/slow`, t);
  await until(() => entered.length === 1, 'the middleware to run');
  const [ws] = entered;
  assert.equal(router.room('waiting-room').size(), 1);
  const closed = nextClose(ws);
  client.client.terminate();
  // The rooms empty when the close reaches JS, whether or not the middleware has finished.
  await until(() => router.getWebSocketRouter().getStats().rooms === 0, 'the rooms to empty');
  release();
  assert.equal((await closed).code, 1006);
  assert.equal(handlerRan, false, 'the chain stops at a closed connection');
  assert.equal(ws.rooms.size, 0);
  assert.equal(ws.inRoom('waiting-room'), false);
  assert.deepEqual(router.getWebSocketRouter().getStats(), { connections: 0, rooms: 0, routes: 1, queuedMessages: 0 });
});

test('a room spans every server created from the router', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/room', conns.handler);
  const one = await listen(router, t);
  const two = await listen(router, t);
  const { client: c1, got: in1 } = await connectWithInbox(`${one.url}/room?name=one`, t);
  const { got: in2 } = await connectWithInbox(`${two.url}/room?name=two`, t);
  const { ws: ws1 } = await conns.get('one');
  const { ws: ws2 } = await conns.get('two');
  ws1.join('both');
  ws2.join('both');
  assert.equal(router.room('both').size(), 2);
  assert.deepEqual(sorted(router.room('both').getConnections().map((w) => w.id)), sorted([ws1.id, ws2.id]));
  router.room('both').broadcast('hello both');
  assert.deepEqual(await in1.texts(1), ['hello both']);
  assert.deepEqual(await in2.texts(1), ['hello both']);
  const closed = nextClose(ws1);
  c1.close();
  await closed;
  assert.equal(router.room('both').size(), 1);
});

test('200 raw sockets destroyed at once: zero connections and zero rooms afterwards', async (t) => {
  const { router, port, server, stats } = await setup(t);
  const N = 200;
  const sockets = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  // A route of its own whose handler joins a shared room and a private one.
  const conns = named();
  router.ws('/joiner', (ws, req) => {
    ws.join('everyone');
    ws.join(`own-${req.query.name}`);
    if (Number(req.query.name) % 2 === 0) ws.join('even');
    conns.handler(ws, req);
  });
  for (let i = 0; i < N; i += 50) {
    const batch = [];
    for (let j = i; j < i + 50; j++) batch.push(rawUpgrade(port, `/joiner?name=${j}`));
    sockets.push(...(await Promise.all(batch)));
  }
  const serverSide = await Promise.all(sockets.map((_, i) => conns.get(String(i))));
  const ids = serverSide.map(({ ws }) => ws.id);
  assert.equal(new Set(ids).size, N);
  assert.equal(stats().connections, N);
  assert.equal(stats().rooms, N + 2);
  assert.equal(router.room('everyone').size(), N);
  assert.equal(router.room('even').size(), N / 2);

  const closes = serverSide.map(({ ws }) => nextClose(ws, 10000));
  // Broadcasts in flight while the sockets vanish must not disturb the clean-up.
  router.room('everyone').broadcast('before');
  for (const s of sockets) s.destroy();
  router.room('everyone').broadcast(Buffer.alloc(64 * 1024));
  router.broadcast('to all');
  const codes = await Promise.all(closes);
  assert.ok(codes.every((c) => c.code === 1006), 'an abrupt end is 1006');

  assert.deepEqual(stats(), { connections: 0, rooms: 0, routes: 2, queuedMessages: 0 });
  assert.equal(router.room('everyone').size(), 0);
  assert.equal(router.room('even').size(), 0);
  assert.deepEqual(router.to('/joiner').getConnections(), []);
  // Nothing is left behind: the engine's own registries (not the JS view of them), and the
  // JS lookup by id.
  assert.equal(server._native.connectionCount(), 0);
  assert.deepEqual(server._native.members(undefined, undefined), []);
  assert.deepEqual(server._native.members(undefined, server._routeIds.get('/joiner')), []);
  assert.equal(server._byUuid.size, 0);
  const { wsServer } = router.getWebSocketRouter();
  for (const id of ids) assert.equal(wsServer.getConnection(id), null);
  for (const { ws } of serverSide) assert.equal(ws.rooms.size, 0);

  // The server is still healthy: a new connection joins and receives a room broadcast.
  const fresh = await rawUpgrade(port, '/joiner?name=fresh');
  sockets.push(fresh);
  await conns.get('fresh');
  assert.equal(stats().connections, 1);
  assert.equal(router.room('everyone').size(), 1);
  const data = once(fresh, 'data');
  fresh.resume();
  router.room('everyone').broadcast('ok');
  const [chunk] = await data;
  assert.equal(chunk.subarray(0, 4).toString('latin1'), '\x81\x02ok');
});
