'use strict';

// The offline message queue (README, "Offline message queue"): with `enableQueue`,
// `wsServer.sendTo(id, data)` to an id with no open connection keeps the message, and a
// connection that `identify(req)` gives that id receives the queued messages first, in order.
// Bounds: `maxQueueSize` per id (oldest dropped), `maxQueuedMessages` in all (sendTo refuses),
// `queueTTL` (messages expire). Ids come from `identify`, never from the client.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { Router, createServer } = require('..');
const { listen, connectWithInbox, named, nextClose, withTimeout, once, rawClient, clientFrame } = require('./helpers');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * A router whose '/q' route says 'welcome' at once and files connections by `?name=`; by
 * default `identify` takes the id from the `x-user` header (standing in for a verified token).
 */
function queueRouter(websocket, { identify = (req) => req.headers['x-user'] || null } = {}) {
  const router = new Router({ websocket: { enableQueue: true, identify, ...websocket } });
  const conns = named();
  router.ws('/q', (ws, req) => {
    ws.send('welcome');
    conns.handler(ws, req);
  });
  const wsRouter = router.getWebSocketRouter();
  return { router, conns, wsServer: wsRouter.wsServer, stats: () => wsRouter.getStats() };
}

/** Connects as `user` (the `x-user` header), filed as `name`. */
function connectAs(url, t, user, name = user) {
  return connectWithInbox(`${url}/q?name=${encodeURIComponent(name)}`, t, user ? { headers: { 'x-user': user } } : {});
}

test('without enableQueue, sendTo to an absent id returns false and keeps nothing', async (t) => {
  const router = new Router({ websocket: { identify: (req) => req.headers['x-user'] } });
  const conns = named();
  router.ws('/q', (ws, req) => {
    ws.send('welcome');
    conns.handler(ws, req);
  });
  const { url } = await listen(router, t);
  const { wsServer } = router.getWebSocketRouter();
  assert.equal(wsServer.sendTo('alice', 'lost'), false);
  assert.equal(router.getWebSocketRouter().getStats().queuedMessages, 0);
  // Invalid data still throws, queue or not.
  assert.throws(() => wsServer.sendTo('alice', undefined), TypeError);
  assert.throws(() => wsServer.sendTo(42, 'x'), TypeError);
  const { got } = await connectAs(url, t, 'alice');
  assert.deepEqual(await got.texts(1), ['welcome']);
  // Connected: sendTo reaches it.
  assert.equal(wsServer.sendTo('alice', 'now'), true);
  assert.deepEqual(await got.texts(1), ['now']);
});

test('queued messages are delivered in order, before anything the handlers send, with their type', async (t) => {
  const { router, wsServer, stats } = queueRouter();
  const { url } = await listen(router, t);
  const bytes = Buffer.from([0, 1, 2, 255]);
  assert.equal(wsServer.sendTo('alice', 'one'), true);
  assert.equal(wsServer.sendTo('alice', bytes), true);
  assert.equal(wsServer.sendTo('alice', { n: 3 }), true);
  assert.equal(wsServer.sendTo('alice', 'four', { binary: true }), true);
  assert.equal(wsServer.sendTo('bob', 'for bob'), true);
  assert.equal(stats().queuedMessages, 5);

  const { got } = await connectAs(url, t, 'alice');
  const msgs = await got.take(5);
  assert.deepEqual(
    msgs.map((m) => [m.isBinary, m.isBinary ? m.data.toString('hex') : String(m.data)]),
    [
      [false, 'one'],
      [true, '000102ff'],
      [false, '{"n":3}'],
      [true, Buffer.from('four').toString('hex')],
      [false, 'welcome'],
    ]
  );
  // Alice's queue is gone, Bob's is still there.
  assert.equal(stats().queuedMessages, 1);
  const bob = await connectAs(url, t, 'bob');
  assert.deepEqual(await bob.got.texts(2), ['for bob', 'welcome']);
  assert.equal(stats().queuedMessages, 0);
});

test('queued messages come before what middleware sends, even an async middleware', async (t) => {
  const router = new Router({ websocket: { enableQueue: true, identify: (req) => req.headers['x-user'] } });
  router.use((ws, req, next) => {
    ws.send('middleware 1');
    next();
  });
  router.use(async (ws, req, next) => {
    await null;
    ws.send('middleware 2');
    next();
  });
  router.ws('/q', (ws) => ws.send('welcome'));
  const { url } = await listen(router, t);
  const { wsServer } = router.getWebSocketRouter();
  wsServer.sendTo('rita', 'q1');
  wsServer.sendTo('rita', 'q2');
  const { got } = await connectAs(url, t, 'rita');
  assert.deepEqual(await got.texts(5), ['q1', 'q2', 'middleware 1', 'middleware 2', 'welcome']);
});

test('a message is queued as it was when sendTo was called', async (t) => {
  const { router, wsServer } = queueRouter();
  const { url } = await listen(router, t);
  const buf = Buffer.from('original');
  const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
  const view = backing.subarray(2, 5);
  const ab = new Uint8Array([4, 5, 6]).buffer;
  wsServer.sendTo('carol', buf);
  wsServer.sendTo('carol', view);
  wsServer.sendTo('carol', ab);
  buf.write('mutated!');
  backing.fill(0);
  new Uint8Array(ab).fill(0);
  const { got } = await connectAs(url, t, 'carol');
  const msgs = await got.take(3);
  assert.deepEqual(
    msgs.map((m) => [m.isBinary, Buffer.from(m.data).toString('hex')]),
    [
      [true, Buffer.from('original').toString('hex')],
      [true, '010203'],
      [true, '040506'],
    ]
  );
});

test('sendTo to a connected client sends at once and queues nothing', async (t) => {
  const { router, wsServer, stats } = queueRouter();
  const { url } = await listen(router, t);
  const { got } = await connectAs(url, t, 'dave');
  assert.deepEqual(await got.texts(1), ['welcome']);
  assert.equal(wsServer.sendTo('dave', 'direct'), true);
  assert.equal(stats().queuedMessages, 0);
  assert.deepEqual(await got.texts(1), ['direct']);
});

test('after a client disconnects, messages for it are queued again and delivered on its return', async (t) => {
  const { router, conns, wsServer, stats } = queueRouter();
  const { url } = await listen(router, t);
  const first = await connectAs(url, t, 'erin', 'erin-1');
  const { ws } = await conns.get('erin-1');
  const closed = nextClose(ws);
  first.client.close();
  await closed;
  assert.equal(wsServer.getConnection('erin'), null);
  assert.equal(wsServer.sendTo('erin', 'while away'), true);
  assert.equal(stats().queuedMessages, 1);
  const second = await connectAs(url, t, 'erin', 'erin-2');
  assert.deepEqual(await second.got.texts(2), ['while away', 'welcome']);
  assert.equal((await conns.get('erin-2')).ws, wsServer.getConnection('erin'));
});

test('maxQueueSize keeps the newest messages per id, dropping the oldest', async (t) => {
  const { router, wsServer, stats } = queueRouter({ maxQueueSize: 3 });
  const { url } = await listen(router, t);
  for (let i = 1; i <= 5; i++) assert.equal(wsServer.sendTo('frank', `m${i}`), true, `m${i}`);
  assert.equal(wsServer.sendTo('gina', 'g1'), true);
  assert.equal(stats().queuedMessages, 4);
  const { got } = await connectAs(url, t, 'frank');
  assert.deepEqual(await got.texts(4), ['m3', 'm4', 'm5', 'welcome']);
  assert.equal(stats().queuedMessages, 1);
});

test('maxQueueSize defaults to 100', async (t) => {
  const { router, wsServer, stats } = queueRouter();
  const { url } = await listen(router, t);
  for (let i = 1; i <= 105; i++) wsServer.sendTo('hank', `m${i}`);
  assert.equal(stats().queuedMessages, 100);
  const { got } = await connectAs(url, t, 'hank');
  const texts = await got.texts(101);
  assert.deepEqual(texts.slice(0, 2), ['m6', 'm7']);
  assert.deepEqual(texts.slice(-2), ['m105', 'welcome']);
});

test('maxQueueSize 0 queues nothing', async () => {
  const { wsServer, stats } = queueRouter({ maxQueueSize: 0 });
  assert.equal(wsServer.sendTo('ivy', 'x'), false);
  assert.equal(stats().queuedMessages, 0);
});

test('maxQueuedMessages caps the total: beyond it sendTo returns false', async (t) => {
  const { router, wsServer, stats } = queueRouter({ maxQueuedMessages: 3, maxQueueSize: 2 });
  const { url } = await listen(router, t);
  assert.equal(wsServer.sendTo('a', 'a1'), true);
  assert.equal(wsServer.sendTo('a', 'a2'), true);
  assert.equal(wsServer.sendTo('b', 'b1'), true);
  assert.equal(stats().queuedMessages, 3);
  // Full: a new message for another id is refused...
  assert.equal(wsServer.sendTo('c', 'c1'), false);
  assert.equal(wsServer.sendTo('b', 'b2'), false);
  // ...but a full per-id queue still takes the newest in place of its oldest (the total stays).
  assert.equal(wsServer.sendTo('a', 'a3'), true);
  assert.equal(stats().queuedMessages, 3);
  const a = await connectAs(url, t, 'a');
  assert.deepEqual(await a.got.texts(3), ['a2', 'a3', 'welcome']);
  // Delivering frees room.
  assert.equal(wsServer.sendTo('c', 'c1'), true);
  const c = await connectAs(url, t, 'c');
  assert.deepEqual(await c.got.texts(2), ['c1', 'welcome']);
  assert.equal(stats().queuedMessages, 1);
});

test('queued messages expire after queueTTL', async (t) => {
  const ttl = 40;
  const { router, wsServer, stats } = queueRouter({ queueTTL: ttl });
  const { url } = await listen(router, t);
  wsServer.sendTo('jack', 'stale');
  assert.equal(stats().queuedMessages, 1);
  // Expiry is the subject of this test: waiting past the TTL is unavoidable.
  await new Promise((resolve) => setTimeout(resolve, ttl * 3));
  wsServer.sendTo('jack', 'fresh');
  assert.equal(stats().queuedMessages, 1);
  const { got } = await connectAs(url, t, 'jack');
  assert.deepEqual(await got.texts(2), ['fresh', 'welcome']);
  assert.equal(stats().queuedMessages, 0);
});

test('ws.id is what identify(req) returns; with null it is a random UUID', async (t) => {
  const seen = [];
  const { router, conns } = queueRouter(
    {},
    {
      identify: (req) => {
        seen.push(req);
        return req.headers['x-user'] || null;
      },
    }
  );
  const { url } = await listen(router, t);
  await connectAs(url, t, 'kate');
  const { ws } = await conns.get('kate');
  assert.equal(ws.id, 'kate');
  assert.equal(ws.getInfo().id, 'kate');
  assert.equal(router.getWebSocketRouter().wsServer.getConnection('kate'), ws);
  // identify sees the request the handlers see.
  assert.equal(seen[0].path, '/q');
  assert.equal(seen[0].headers['x-user'], 'kate');

  await connectAs(url, t, null, 'anon-1');
  await connectAs(url, t, null, 'anon-2');
  const a1 = (await conns.get('anon-1')).ws;
  const a2 = (await conns.get('anon-2')).ws;
  assert.match(a1.id, UUID);
  assert.match(a2.id, UUID);
  assert.notEqual(a1.id, a2.id);
});

test('an id the client claims is never trusted: only identify decides', async (t) => {
  // identify here ignores the client's claims and returns null.
  const { router, conns, wsServer, stats } = queueRouter({}, { identify: () => null });
  const { url } = await listen(router, t);
  wsServer.sendTo('victim', 'secret');
  const claims = { headers: { 'x-user': 'victim', 'x-client-id': 'victim' } };
  const { got } = await connectWithInbox(`${url}/q?name=mallory&id=victim&clientId=victim`, t, claims);
  const { ws } = await conns.get('mallory');
  assert.notEqual(ws.id, 'victim');
  assert.match(ws.id, UUID);
  assert.deepEqual(await got.texts(1), ['welcome']);
  // Still queued for the real owner; the impostor got nothing of it.
  assert.equal(stats().queuedMessages, 1);
  assert.equal(got.pending(), 0);

  // The same holds without an identify option at all.
  const plain = new Router({ websocket: { enableQueue: true } });
  const plainConns = named();
  plain.ws('/q', (w, req) => {
    w.send('welcome');
    plainConns.handler(w, req);
  });
  const { url: plainUrl } = await listen(plain, t);
  plain.getWebSocketRouter().wsServer.sendTo('victim', 'secret');
  const other = await connectWithInbox(`${plainUrl}/q?name=m&id=victim`, t, claims);
  assert.match((await plainConns.get('m')).ws.id, UUID);
  assert.deepEqual(await other.got.texts(1), ['welcome']);
  assert.equal(plain.getWebSocketRouter().getStats().queuedMessages, 1);
});

test('a newer connection with the same id replaces the older: 1001 "Replaced by a newer connection"', async (t) => {
  const { router, conns, wsServer, stats } = queueRouter();
  const { url } = await listen(router, t);
  const older = await connectAs(url, t, 'liam', 'liam-1');
  const olderSide = (await conns.get('liam-1')).ws;
  const olderClosed = nextClose(older.client);
  const olderServerClosed = nextClose(olderSide);
  const newer = await connectAs(url, t, 'liam', 'liam-2');
  const newerSide = (await conns.get('liam-2')).ws;
  assert.deepEqual(await olderClosed, { code: 1001, reason: 'Replaced by a newer connection' });
  assert.equal((await olderServerClosed).code, 1001);
  // The id now names the newer connection, which stays open and gets what is sent to the id.
  assert.equal(wsServer.getConnection('liam'), newerSide);
  assert.equal(newerSide.readyState, WebSocket.OPEN);
  assert.equal(wsServer.sendTo('liam', 'to the newer one'), true);
  assert.deepEqual(await newer.got.texts(2), ['welcome', 'to the newer one']);
  assert.equal(stats().queuedMessages, 0);
  assert.equal(stats().connections, 1);
});

test('replacement works across servers of the same router', async (t) => {
  const { router, conns, wsServer } = queueRouter();
  const { url: url1 } = await listen(router, t);
  const { url: url2 } = await listen(router, t);
  const older = await connectAs(url1, t, 'mia', 'mia-1');
  const closed = nextClose(older.client);
  await connectAs(url2, t, 'mia', 'mia-2');
  assert.deepEqual(await closed, { code: 1001, reason: 'Replaced by a newer connection' });
  assert.equal(wsServer.getConnection('mia'), (await conns.get('mia-2')).ws);
});

test('a throwing identify closes the connection with 1011 (logged) and leaves the queue alone', async (t) => {
  const logged = t.mock.method(console, 'error', () => {});
  const { router, wsServer, stats } = queueRouter(
    {},
    {
      identify: (req) => {
        if (req.headers['x-user'] === 'boom') throw new Error('bad token');
        return req.headers['x-user'] || null;
      },
    }
  );
  const { url } = await listen(router, t);
  wsServer.sendTo('boom', 'kept');
  const { client, got } = await connectWithInbox(`${url}/q?name=x`, t, { headers: { 'x-user': 'boom' } });
  assert.equal((await nextClose(client)).code, 1011);
  // The route's handler never ran: no welcome.
  assert.equal(got.pending(), 0);
  assert.equal(logged.mock.callCount(), 1);
  assert.match(String(logged.mock.calls[0].arguments.at(-1)), /bad token/);
  assert.equal(stats().queuedMessages, 1);
});

test('an identify that returns a non-string fails like a throwing handler: the router error handlers decide', async (t) => {
  const { router } = queueRouter({}, { identify: () => 42 });
  const errors = [];
  router.getWebSocketRouter().error((err, ws) => {
    errors.push(err);
    ws.close(4000, 'handled');
  });
  const { url } = await listen(router, t);
  const { client } = await connectWithInbox(`${url}/q?name=x`, t);
  assert.deepEqual(await nextClose(client), { code: 4000, reason: 'handled' });
  assert.equal(errors.length, 1);
  // Returning something that is not a string or null is an error too.
  assert.ok(errors[0] instanceof TypeError);
});

test('a message sent to an id whose peer is already closing is queued, not lost', async (t) => {
  // The client sends a message and its close frame in one write: the server reads both before
  // JS hears of either, so the message listener runs while readyState is still OPEN but the
  // connection can no longer send. A reply to that id must then be queued for its return.
  const { router, wsServer, stats } = queueRouter();
  const replies = [];
  let replied;
  const reply = new Promise((resolve) => (replied = resolve));
  router.ws('/bye', (ws) =>
    ws.on('message', (d) => {
      replies.push(wsServer.sendTo(ws.id, `reply to ${d}`));
      replied();
    })
  );
  const { port, url } = await listen(router, t);
  const c = await rawClient(port, '/bye', { t, headers: { 'x-user': 'quinn' } });
  await c.write(clientFrame(0x1, 'bye'), clientFrame(0x8, Buffer.from([0x03, 0xe8])));
  // The engine completes the close handshake on its own; JS may hear of the message after.
  await withTimeout(c.closed, 5000, 'the close handshake');
  await withTimeout(reply, 5000, 'the message listener');
  assert.deepEqual(replies, [true], 'sendTo reported the reply as neither sent nor queued');
  assert.equal(stats().queuedMessages, 1);
  const back = await connectAs(url, t, 'quinn');
  assert.deepEqual(await back.got.texts(2), ['reply to bye', 'welcome']);
});

test('getStats().queuedMessages counts queued messages across ids; a router without servers still queues', async () => {
  const { wsServer, stats } = queueRouter();
  assert.equal(stats().queuedMessages, 0);
  wsServer.sendTo('x', '1');
  wsServer.sendTo('y', '2');
  wsServer.sendTo('y', '3');
  assert.equal(stats().queuedMessages, 3);
});

test('configureWebSocket: enableQueue off drops the queue, maxQueueSize lowered trims it to the newest', async (t) => {
  const { router, wsServer, stats } = queueRouter({ maxQueueSize: 10 });
  const { url } = await listen(router, t);
  for (let i = 1; i <= 5; i++) wsServer.sendTo('nora', `m${i}`);
  router.configureWebSocket({ maxQueueSize: 2 });
  assert.equal(stats().queuedMessages, 2);
  const { got } = await connectAs(url, t, 'nora');
  assert.deepEqual(await got.texts(3), ['m4', 'm5', 'welcome']);

  wsServer.sendTo('olga', 'o1');
  assert.equal(stats().queuedMessages, 1);
  router.configureWebSocket({ enableQueue: false });
  assert.equal(stats().queuedMessages, 0);
  assert.equal(wsServer.sendTo('olga', 'o2'), false);
  router.configureWebSocket({ enableQueue: true });
  assert.equal(wsServer.sendTo('olga', 'o3'), true);
  const olga = await connectAs(url, t, 'olga');
  assert.deepEqual(await olga.got.texts(2), ['o3', 'welcome']);
});

test('a queue enabled at run time works for a server created before', async (t) => {
  const router = new Router({ websocket: { identify: (req) => req.headers['x-user'] } });
  const conns = named();
  router.ws('/q', (ws, req) => {
    ws.send('welcome');
    conns.handler(ws, req);
  });
  const server = createServer(router);
  t.after(() => server.listening && server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { wsServer } = router.getWebSocketRouter();
  assert.equal(wsServer.sendTo('pia', 'before'), false);
  router.configureWebSocket({ enableQueue: true });
  assert.equal(wsServer.sendTo('pia', 'after'), true);
  const { got } = await connectAs(`ws://127.0.0.1:${server.address().port}`, t, 'pia');
  assert.deepEqual(await withTimeout(got.texts(2), 5000, 'messages'), ['after', 'welcome']);
});
