'use strict';

// router.getWebSocketRouter(): error handlers `(error, ws, context)` for everything a route's
// code can throw or reject, getStats(), closeAll(), use/ws/route and the wsServer helpers
// (docs/WEBSOCKET.md, "Router-level Error Handling", "Statistics & Monitoring",
// "Mass Closure", "Queue Messages for Offline Clients").

const test = require('node:test');
const assert = require('node:assert/strict');
const { Router, WS_STATES } = require('..');
const { listen, connect, connectWithInbox, named, nextClose, withTimeout } = require('./helpers');

const QUERY = 'x=1&x=2&y=z';

/** Replaces console.error for the test; returns the mock for counting calls. */
function stubConsoleError(t) {
  return t.mock.method(console, 'error', () => {});
}

/**
 * Resolves with the arguments of the next call of the router's error handler; the handler
 * answers on the connection when it is still open, and so deals with the error.
 */
function recordErrors(router) {
  const calls = [];
  let wake = null;
  router.getWebSocketRouter().error((error, ws, context) => {
    calls.push({ error, ws, context });
    if (ws.readyState === WS_STATES.OPEN) ws.send(`handled:${error && error.message}`);
    if (wake) wake();
  });
  return {
    calls,
    async next(what) {
      if (calls.length === 0) {
        const called = new Promise((resolve) => (wake = resolve));
        await withTimeout(called, 3000, `the error handler to be called for ${what}`);
      }
      return calls.shift();
    },
  };
}

test('getWebSocketRouter() returns the one WebSocket router of the router', () => {
  const router = new Router();
  const wsRouter = router.getWebSocketRouter();
  assert.equal(router.getWebSocketRouter(), wsRouter);
  assert.notEqual(new Router().getWebSocketRouter(), wsRouter);
  for (const name of ['error', 'getStats', 'closeAll', 'use', 'ws', 'route']) {
    assert.equal(typeof wsRouter[name], 'function', name);
  }
  for (const name of ['sendTo', 'getConnection', 'getRoom', 'broadcast', 'broadcastToRoom']) {
    assert.equal(typeof wsRouter.wsServer[name], 'function', `wsServer.${name}`);
  }
  assert.throws(() => wsRouter.error('not a function'), TypeError);
});

// Where an error can come from. `trigger` is what the client does to cause it: nothing (it
// happens on connect), send "go", or close.
const sources = {
  'a route handler that throws': (boom) => ({
    handlers: [
      () => {
        throw boom;
      },
    ],
  }),
  'an async route handler that rejects': (boom) => ({
    handlers: [
      async () => {
        await null;
        throw boom;
      },
    ],
  }),
  'middleware that throws': (boom) => ({
    handlers: [
      (ws, req, next) => {
        throw boom;
      },
      () => assert.fail('the chain must stop'),
    ],
  }),
  'middleware that calls next(err)': (boom) => ({
    handlers: [(ws, req, next) => next(boom), () => assert.fail('the chain must stop')],
  }),
  'async middleware that rejects': (boom) => ({
    handlers: [
      async (ws, req, next) => {
        await null;
        throw boom;
      },
      () => assert.fail('the chain must stop'),
    ],
  }),
  'router.use() middleware that throws': (boom) => ({
    use: (ws, req, next) => {
      throw boom;
    },
    handlers: [() => assert.fail('the chain must stop')],
  }),
  'a message listener that throws': (boom) => ({
    trigger: 'message',
    handlers: [
      (ws) =>
        ws.on('message', (data) => {
          if (String(data) === 'go') throw boom;
          ws.send(`echo:${data}`);
        }),
    ],
  }),
  'an async message listener that rejects': (boom) => ({
    trigger: 'message',
    handlers: [
      (ws) =>
        ws.on('message', async (data) => {
          await null;
          if (String(data) === 'go') throw boom;
          ws.send(`echo:${data}`);
        }),
    ],
  }),
  'a close listener that throws': (boom) => ({
    trigger: 'close',
    handlers: [
      (ws) =>
        ws.on('close', () => {
          throw boom;
        }),
    ],
  }),
  'an async close listener that rejects': (boom) => ({
    trigger: 'close',
    handlers: [
      (ws) =>
        ws.on('close', async () => {
          await null;
          throw boom;
        }),
    ],
  }),
};

for (const [label, make] of Object.entries(sources)) {
  test(`error handlers get (error, ws, context) from ${label}; a handler that returns deals with it`, async (t) => {
    const logged = stubConsoleError(t);
    // A rejection nobody handles would otherwise end the test process; record it instead.
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    t.after(() => process.removeListener('unhandledRejection', onUnhandled));

    const boom = new Error(`boom from ${label}`);
    const { use, handlers, trigger } = make(boom);
    const router = new Router();
    const seen = [];
    const requests = [];
    router.use((ws, req, next) => {
      seen.push(ws);
      requests.push(req);
      next();
    });
    if (use) router.use(use);
    router.ws('/r/:id', ...handlers);
    const errors = recordErrors(router);
    const { url } = await listen(router, t);
    const { client, got } = await connectWithInbox(`${url}/r/42?${QUERY}`, t);
    if (trigger === 'message') client.send('go');
    if (trigger === 'close') client.close(1000, 'client done');

    let call;
    try {
      call = await errors.next(label);
    } catch (err) {
      if (unhandled.length > 0) {
        assert.fail(`the error never reached the error handler; it became an unhandled rejection: ${unhandled[0]}`);
      }
      throw err;
    }
    assert.equal(call.error, boom);
    assert.equal(seen.length, 1);
    assert.equal(call.ws, seen[0], 'the server-side connection');
    const { context } = call;
    assert.equal(context.route, '/r/:id');
    assert.deepEqual({ ...context.params }, { id: '42' });
    assert.deepEqual({ ...context.query }, { x: ['1', '2'], y: 'z' });
    assert.equal(typeof context.req, 'object');
    assert.equal(context.req.url, `/r/42?${QUERY}`);
    assert.deepEqual({ ...context.req.params }, { id: '42' });
    assert.deepEqual({ ...context.req.query }, { x: ['1', '2'], y: 'z' });
    assert.equal(context.req.remotePort, call.ws.remotePort);
    assert.equal(context.req.remoteAddress, call.ws.remoteAddress);
    if (trigger === undefined) {
      // While the handlers run: the very request they got, headers included.
      assert.equal(context.req, requests[0]);
      assert.equal(context.req.headers.upgrade, 'websocket');
    } else {
      // Afterwards the connection keeps no headers (documented): the rest of the request.
      assert.deepEqual({ ...context.req.headers }, {});
    }

    if (trigger === 'close') {
      assert.equal((await nextClose(client)).code, 1000);
      assert.equal(call.ws.readyState, WS_STATES.CLOSED);
    } else {
      // Dealt with: not closed with 1011, and the connection still works.
      assert.deepEqual(await got.texts(1), [`handled:${boom.message}`]);
      if (trigger === 'message') {
        client.send('again');
        assert.deepEqual(await got.texts(1), ['echo:again']);
      }
      assert.equal(call.ws.readyState, WS_STATES.OPEN);
      client.close(4000, 'client done');
      assert.equal((await nextClose(client)).code, 4000, 'the client, not the server, closed it');
    }
    assert.equal(logged.mock.callCount(), 0, 'a handled error is not logged');
    assert.deepEqual(unhandled, []);
  });
}

test('several error handlers run in order until one returns without throwing', async (t) => {
  const logged = stubConsoleError(t);
  const router = new Router();
  const order = [];
  const boom = new Error('boom');
  const wsRouter = router.getWebSocketRouter();
  wsRouter.error((err) => {
    order.push(['first', err]);
    throw new Error('first handler gives up');
  });
  wsRouter.error((err, ws) => {
    order.push(['second', err]);
    ws.send('second dealt with it');
  });
  wsRouter.error(() => order.push(['third']));
  router.ws('/r', (ws) => ws.on('message', () => {
    throw boom;
  }));
  const { url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/r`, t);
  client.send('x');
  assert.deepEqual(await got.texts(1), ['second dealt with it']);
  assert.deepEqual(order, [['first', boom], ['second', boom]]);
  client.send('y');
  assert.deepEqual(await got.texts(1), ['second dealt with it']);
  assert.equal(order.length, 4);
  assert.equal(logged.mock.callCount(), 0);
  client.close(4000);
  assert.equal((await nextClose(client)).code, 4000);
});

test('when every error handler throws, the error event gets the error and the connection gets 1011', async (t) => {
  const logged = stubConsoleError(t);
  const router = new Router();
  const boom = new Error('boom');
  let tried = 0;
  router.getWebSocketRouter().error(() => {
    tried++;
    throw new Error('nope');
  });
  router.getWebSocketRouter().error(() => {
    tried++;
    throw new Error('nope either');
  });
  const reported = [];
  router.ws('/r', (ws) => {
    ws.on('error', (err) => reported.push(err));
    throw boom;
  });
  const { url } = await listen(router, t);
  const client = await connect(`${url}/r`, t);
  const end = await nextClose(client);
  assert.equal(end.code, 1011);
  assert.equal(tried, 2);
  assert.deepEqual(reported, [boom]);
  assert.equal(logged.mock.callCount(), 0);
});

test('with no error handler, an error listener gets the error; 1011', async (t) => {
  const logged = stubConsoleError(t);
  const router = new Router();
  const boom = new Error('listened boom');
  const reported = [];
  router.ws('/r', (ws) => {
    ws.on('error', (err) => reported.push(err));
    ws.on('message', () => {
      throw boom;
    });
  });
  const { url } = await listen(router, t);
  const client = await connect(`${url}/r`, t);
  client.send('x');
  assert.equal((await nextClose(client)).code, 1011);
  assert.deepEqual(reported, [boom]);
  assert.equal(logged.mock.callCount(), 0);
});

test('with no error handler and no error listener the error is logged once; 1011', async (t) => {
  const logged = stubConsoleError(t);
  const router = new Router();
  const boom = new Error('unhandled boom');
  router.ws('/r', (ws) => ws.on('message', () => {
    throw boom;
  }));
  const { url } = await listen(router, t);
  const bystander = await connect(`${url}/r`, t);
  const client = await connect(`${url}/r`, t);
  client.send('x');
  assert.equal((await nextClose(client)).code, 1011);
  assert.equal(logged.mock.callCount(), 1);
  assert.ok(logged.mock.calls[0].arguments.includes(boom));
  assert.equal(bystander.readyState, bystander.OPEN);
});

test('the documented Router-level error handler sends the error to the client', async (t) => {
  const errorLog = stubConsoleError(t);
  const infoLog = t.mock.method(console, 'log', () => {});
  const router = new Router();
  router.ws('/ws/user/:userId', (ws, req) => {
    ws.metadata.userId = req.params.userId;
    ws.on('message', (data) => {
      const msg = JSON.parse(data);
      ws.send(`ok:${msg.n}`);
    });
  });

  // From docs/WEBSOCKET.md, "Router-level Error Handling", as written.
  const wsRouter = router.getWebSocketRouter();

  wsRouter.error((error, ws, context) => {
    console.error('WebSocket error:', error);
    
    // Send error to client
    ws.send(JSON.stringify({
      type: 'error',
      message: error.message
    }));
    
    // Log with context
    console.log('Error context:', {
      route: context.route,
      params: context.params,
      userId: ws.metadata.userId
    });
  });
  // End of the documented code.

  const { url } = await listen(router, t);
  const { client, got } = await connectWithInbox(`${url}/ws/user/u1`, t);
  client.send('{ not json');
  let parseError;
  try {
    JSON.parse('{ not json');
  } catch (err) {
    parseError = err;
  }
  assert.deepEqual(JSON.parse(await got.texts(1)), { type: 'error', message: parseError.message });
  assert.equal(errorLog.mock.callCount(), 1);
  assert.equal(errorLog.mock.calls[0].arguments[0], 'WebSocket error:');
  assert.ok(errorLog.mock.calls[0].arguments[1] instanceof SyntaxError);
  assert.equal(infoLog.mock.callCount(), 1);
  const [label, ctx] = infoLog.mock.calls[0].arguments;
  assert.equal(label, 'Error context:');
  assert.deepEqual(
    { ...ctx, params: { ...ctx.params } },
    { route: '/ws/user/:userId', params: { userId: 'u1' }, userId: 'u1' }
  );
  // The handler dealt with it: the connection is still open and working.
  client.send('{"n":2}');
  assert.deepEqual(await got.texts(1), ['ok:2']);
});

test('getStats() is exact at every moment: connections, rooms, routes, queuedMessages', async (t) => {
  const router = new Router();
  const wsRouter = router.getWebSocketRouter();
  const stats = () => wsRouter.getStats();
  assert.deepEqual(stats(), { connections: 0, rooms: 0, routes: 0, queuedMessages: 0 });
  const conns = named();
  const inHandler = [];
  router.ws('/a', (ws, req) => {
    inHandler.push(stats());
    conns.handler(ws, req);
  });
  assert.equal(stats().routes, 1);
  const { url } = await listen(router, t);
  wsRouter.ws('/b', conns.handler);
  assert.equal(stats().routes, 2);
  wsRouter.route('/c/:id', conns.handler);
  assert.equal(stats().routes, 3);
  router.ws('/a', () => {});
  assert.equal(stats().routes, 3, 'more handlers for a path are not another route');

  const peers = [];
  for (const [path, name] of [['/a', 'p0'], ['/a', 'p1'], ['/b', 'p2'], ['/c/9', 'p3']]) {
    const client = await connect(`${url}${path}?name=${name}`, t);
    const { ws } = await conns.get(name);
    peers.push({ client, ws });
    assert.equal(stats().connections, peers.length);
  }
  assert.deepEqual(inHandler.map((s) => s.connections), [1, 2], 'the new connection counts in its handler');

  const [p0, p1, p2, p3] = peers.map((p) => p.ws);
  p0.join('r1');
  assert.equal(stats().rooms, 1);
  p1.join('r1');
  assert.equal(stats().rooms, 1);
  p1.join('r2');
  p2.join('r3');
  assert.equal(stats().rooms, 3);
  p2.leave('r3');
  assert.equal(stats().rooms, 2);
  assert.equal(stats().queuedMessages, 0);

  const inClose = new Promise((resolve) => p1.on('close', () => resolve(stats())));
  peers[1].client.close();
  assert.deepEqual(await inClose, { connections: 3, rooms: 1, routes: 3, queuedMessages: 0 }, 'r2 went with p1');
  assert.deepEqual(stats(), { connections: 3, rooms: 1, routes: 3, queuedMessages: 0 });

  const closes = [p0, p2, p3].map((ws) => nextClose(ws));
  for (const i of [0, 2, 3]) peers[i].client.terminate();
  await Promise.all(closes);
  assert.deepEqual(stats(), { connections: 0, rooms: 0, routes: 3, queuedMessages: 0 });
});

test('getStats() adds up every server created from the router', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/a', conns.handler);
  const one = await listen(router, t);
  const two = await listen(router, t);
  await listen(router, t); // an idle third server adds nothing
  await connect(`${one.url}/a?name=1`, t);
  await connect(`${two.url}/a?name=2`, t);
  (await conns.get('1')).ws.join('x');
  (await conns.get('2')).ws.join('y');
  assert.deepEqual(router.getWebSocketRouter().getStats(), { connections: 2, rooms: 2, routes: 1, queuedMessages: 0 });
});

test('closeAll() closes every connection with 1001 "Server shutdown"; closeAll(code, reason) with those', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/a', conns.handler);
  router.ws('/b/:id', conns.handler);
  const { url } = await listen(router, t);
  const wsRouter = router.getWebSocketRouter();
  wsRouter.closeAll(); // nothing to close: no error

  async function openAll(prefix) {
    const out = [];
    for (const [i, path] of ['/a', '/b/1', '/a'].entries()) {
      const client = await connect(`${url}${path}?name=${prefix}${i}`, t);
      const { ws } = await conns.get(`${prefix}${i}`);
      ws.join('room');
      out.push({ client, ws });
    }
    return out;
  }

  let peers = await openAll('first');
  let clientCloses = peers.map((p) => nextClose(p.client));
  let serverCloses = peers.map((p) => nextClose(p.ws));
  wsRouter.closeAll();
  for (const end of await Promise.all(clientCloses)) assert.deepEqual(end, { code: 1001, reason: 'Server shutdown' });
  await Promise.all(serverCloses);
  assert.deepEqual(wsRouter.getStats(), { connections: 0, rooms: 0, routes: 2, queuedMessages: 0 });

  // The server still accepts connections afterwards.
  peers = await openAll('second');
  clientCloses = peers.map((p) => nextClose(p.client));
  serverCloses = peers.map((p) => nextClose(p.ws));
  wsRouter.closeAll(4000, 'maintenance');
  for (const end of await Promise.all(clientCloses)) assert.deepEqual(end, { code: 4000, reason: 'maintenance' });
  await Promise.all(serverCloses);
  assert.deepEqual(wsRouter.getStats(), { connections: 0, rooms: 0, routes: 2, queuedMessages: 0 });
});

test('use(), ws() and route() on the WebSocket router add middleware and routes', async (t) => {
  const router = new Router();
  const wsRouter = router.getWebSocketRouter();
  const conns = named();
  const { url } = await listen(router, t);
  wsRouter.use((ws, req, next) => {
    ws.metadata.seenBy = req.route;
    next();
  });
  wsRouter.ws('/one', conns.handler);
  wsRouter.route('/two/:id', (ws, req) => ws.send(`two:${req.params.id}`), conns.handler);
  const c1 = await connect(`${url}/one?name=one`, t);
  const { got: got2 } = await connectWithInbox(`${url}/two/5?name=two`, t);
  assert.equal((await conns.get('one')).ws.metadata.seenBy, '/one');
  assert.equal((await conns.get('two')).ws.metadata.seenBy, '/two/:id');
  assert.deepEqual(await got2.texts(1), ['two:5']);
  assert.equal(c1.readyState, c1.OPEN);
  assert.deepEqual(router.to('/two/:id').getConnections(), [(await conns.get('two')).ws]);
});

test('wsServer.sendTo(id, data[, { binary }]) sends as send does; unknown or closed ids get false', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/a', conns.handler);
  const { url } = await listen(router, t);
  const { wsServer } = router.getWebSocketRouter();
  const { client: target, got } = await connectWithInbox(`${url}/a?name=target`, t);
  const { got: gotOther } = await connectWithInbox(`${url}/a?name=other`, t);
  const { ws } = await conns.get('target');
  const { ws: otherWs } = await conns.get('other');

  assert.equal(wsServer.sendTo(ws.id, 'text'), true);
  assert.equal(wsServer.sendTo(ws.id, { type: 'notification', message: 'You have a new message' }), true);
  assert.equal(wsServer.sendTo(ws.id, Buffer.from([1, 2, 3])), true);
  assert.equal(wsServer.sendTo(ws.id, 'as binary', { binary: true }), true);
  const view = (await got.take(4)).map(({ data, isBinary }) => [
    isBinary,
    isBinary ? data.toString('hex') : data.toString(),
  ]);
  assert.deepEqual(view, [
    [false, 'text'],
    [false, '{"type":"notification","message":"You have a new message"}'],
    [true, '010203'],
    [true, Buffer.from('as binary').toString('hex')],
  ]);
  otherWs.send('only direct');
  assert.deepEqual(await gotOther.texts(1), ['only direct'], 'sendTo reached only its target');

  assert.equal(wsServer.sendTo('00000000-0000-4000-8000-000000000000', 'x'), false);
  assert.throws(() => wsServer.sendTo(42, 'x'), TypeError);
  assert.throws(() => wsServer.sendTo(ws.id, undefined), TypeError);

  const id = ws.id;
  const closed = nextClose(ws);
  target.close();
  await closed;
  assert.equal(wsServer.sendTo(id, 'too late'), false);
});

test('wsServer.getConnection(id) gives the live connection, then null once it closed', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/a', conns.handler);
  const { url } = await listen(router, t);
  const { wsServer } = router.getWebSocketRouter();
  const client = await connect(`${url}/a?name=a`, t);
  const { ws } = await conns.get('a');
  assert.equal(wsServer.getConnection(ws.id), ws);
  assert.equal(wsServer.getConnection('not-an-id'), null);
  assert.throws(() => wsServer.getConnection(undefined), TypeError);
  const id = ws.id;
  const closed = nextClose(ws);
  client.close();
  await closed;
  assert.equal(wsServer.getConnection(id), null);
});

test('wsServer.getRoom, broadcast and broadcastToRoom', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/a', conns.handler);
  const { url } = await listen(router, t);
  const { wsServer } = router.getWebSocketRouter();
  const peers = [];
  for (const name of ['a', 'b', 'c']) {
    const { client, got } = await connectWithInbox(`${url}/a?name=${name}`, t);
    const { ws } = await conns.get(name);
    peers.push({ client, got, ws });
  }
  const [a, b, c] = peers;
  a.ws.join('r');
  b.ws.join('r');
  assert.deepEqual(new Set(wsServer.getRoom('r')), new Set([a.ws, b.ws]));
  assert.deepEqual(wsServer.getRoom('empty'), []);

  wsServer.broadcastToRoom('r', 'room text');
  wsServer.broadcastToRoom('r', { n: 1 }, { except: a.ws.id });
  wsServer.broadcastToRoom('r', 'room bin', { binary: true, except: [b.ws.id] });
  wsServer.broadcast('everyone');
  wsServer.broadcast({ all: true }, { except: [a.ws.id, c.ws.id] });
  wsServer.broadcast('not c', { except: c.ws.id });
  const view = async (p, n) =>
    (await p.got.take(n)).map(({ data, isBinary }) => (isBinary ? `bin:${data}` : String(data)));
  assert.deepEqual(await view(a, 4), ['room text', 'bin:room bin', 'everyone', 'not c']);
  assert.deepEqual(await view(b, 5), ['room text', '{"n":1}', 'everyone', '{"all":true}', 'not c']);
  assert.deepEqual(await view(c, 1), ['everyone']);
  c.ws.send('end');
  assert.deepEqual(await view(c, 1), ['end']);
});

test('the documented "close all in a room" closes exactly the room members with 1000 "Room closed"', async (t) => {
  const router = new Router();
  const conns = named();
  router.ws('/ws/chat', conns.handler);
  const { url } = await listen(router, t);
  const peers = [];
  for (const name of ['a', 'b', 'c', 'outsider']) {
    const { client, got } = await connectWithInbox(`${url}/ws/chat?name=${name}`, t);
    const { ws } = await conns.get(name);
    if (name !== 'outsider') ws.join('general');
    ws.join('other');
    peers.push({ client, ws, got });
  }
  const members = peers.slice(0, 3);
  const clientCloses = members.map((p) => nextClose(p.client));
  const serverCloses = members.map((p) => nextClose(p.ws));

  // From docs/WEBSOCKET.md, "Mass Closure", as written.
  router.room('general').getConnections().forEach(ws => {
    ws.close(1000, 'Room closed');
  });

  for (const end of await Promise.all(clientCloses)) assert.deepEqual(end, { code: 1000, reason: 'Room closed' });
  await Promise.all(serverCloses);
  assert.equal(router.room('general').size(), 0);
  assert.deepEqual(router.room('other').getConnections(), [peers[3].ws]);
  assert.deepEqual(router.getWebSocketRouter().getStats(), { connections: 1, rooms: 1, routes: 1, queuedMessages: 0 });
  peers[3].ws.send('direct');
  router.room('other').broadcast('still here');
  assert.deepEqual(await peers[3].got.texts(2), ['direct', 'still here']);
});
