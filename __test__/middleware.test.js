'use strict';

// Route handler chains: `router.ws(path, ...handlers)`, middleware `(ws, req, next)`,
// `next(err)`, async steps, and `router.use()` (docs/WEBSOCKET.md, "WebSocket Routes").

const test = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const { listen, connect, nextMessage, nextClose, once, withTimeout, collect } = require('./helpers');

/** An echo route for `barrier`. */
function addEcho(router) {
  router.ws('/echo', (ws) => ws.on('message', (data) => ws.send(String(data))));
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

/** A promise with its resolve function, for steps the test releases. */
function gate() {
  let open;
  const promise = new Promise((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

test('handlers get (ws, req) with the route params and query', async (t) => {
  const router = new Router();
  const conns = collect();
  router.ws('/ws/user/:userId', conns.handler);
  const { url } = await listen(router, t);
  await connect(url + '/ws/user/42?username=ann', t);
  const { ws, req } = await conns.next();
  assert.equal(typeof ws.send, 'function');
  assert.equal(req.params.userId, '42');
  assert.equal(req.query.username, 'ann');
});

test('middleware continues with next(); handlers run in order', async (t) => {
  const router = new Router();
  const order = [];
  const conns = collect();
  router.ws(
    '/m',
    (ws, req, next) => {
      order.push('mw1');
      next();
    },
    (ws, req, next) => {
      order.push('mw2');
      next();
    },
    (ws) => {
      order.push('h1');
    },
    (ws, req) => {
      order.push('h2');
      conns.handler(ws, req);
    }
  );
  const { url } = await listen(router, t);
  await connect(url + '/m', t);
  await conns.next();
  assert.deepEqual(order, ['mw1', 'mw2', 'h1', 'h2']);
});

test('next(err) reports the error, skips the rest of the chain and closes with 1011', async (t) => {
  const router = new Router();
  addEcho(router);
  const failure = new Error('denied by middleware');
  let reported;
  let handlerRan = false;
  router.ws(
    '/m',
    (ws, req, next) => {
      ws.on('error', (err) => {
        reported = err;
      });
      next(failure);
    },
    () => {
      handlerRan = true;
    }
  );
  const { url } = await listen(router, t);
  const client = await connect(url + '/m', t);
  const closed = await nextClose(client);
  assert.equal(closed.code, 1011);
  assert.equal(reported, failure);
  await barrier(t, url);
  assert.equal(handlerRan, false);
});

test('async middleware and handlers are awaited before the next step', async (t) => {
  const router = new Router();
  const conns = collect();
  const order = [];
  router.ws(
    '/a',
    async (ws, req, next) => {
      await Promise.resolve();
      await new Promise((resolve) => setImmediate(resolve));
      ws.metadata.user = 'ann';
      order.push('mw');
      next();
    },
    async (ws) => {
      await new Promise((resolve) => setImmediate(resolve));
      ws.metadata.loaded = true;
      order.push('h1');
    },
    (ws, req) => {
      order.push('h2');
      conns.handler(ws, req);
    }
  );
  const { url } = await listen(router, t);
  await connect(url + '/a', t);
  const { ws } = await conns.next();
  assert.deepEqual(order, ['mw', 'h1', 'h2']);
  assert.deepEqual(ws.metadata, { user: 'ann', loaded: true });
});

test('messages sent while an async middleware is pending reach the final handler, in order', async (t) => {
  const router = new Router();
  addEcho(router);
  const g = gate();
  let middlewareStarted;
  const started = new Promise((resolve) => {
    middlewareStarted = resolve;
  });
  router.ws(
    '/slow',
    async (ws, req, next) => {
      middlewareStarted();
      await g.promise;
      ws.metadata.user = 'ann';
      next();
    },
    (ws) => {
      ws.on('message', (data, isBinary) => {
        ws.send(`${ws.metadata.user}:${isBinary ? 'b' : 't'}:${data}`);
      });
    }
  );
  const { url } = await listen(router, t);
  const client = await connect(url + '/slow', t);
  await withTimeout(started, 5000, 'the middleware to start');
  const received = [];
  const all = new Promise((resolve) => {
    client.on('message', (data) => {
      received.push(String(data));
      if (received.length === 5) resolve();
    });
  });
  for (let i = 0; i < 4; i++) client.send(`m${i}`);
  client.send(Buffer.from('m4'));
  // The engine answers a ping after it has queued everything read before it; the barrier then
  // makes sure the JS side has taken those messages while the middleware was still waiting.
  const pong = once(client, 'pong');
  client.ping();
  await pong;
  await barrier(t, url);
  assert.equal(received.length, 0);
  g.open();
  await withTimeout(all, 5000, `5 echoes (got ${received.length})`);
  assert.deepEqual(received, ['ann:t:m0', 'ann:t:m1', 'ann:t:m2', 'ann:t:m3', 'ann:b:m4']);
});

test('auth middleware that closes with 1008 ends the chain', async (t) => {
  const router = new Router();
  addEcho(router);
  let handlerRan = false;
  router.ws(
    '/private',
    (ws, req, next) => {
      ws.close(1008, 'Unauthorized');
    },
    () => {
      handlerRan = true;
    }
  );
  const { url } = await listen(router, t);
  const client = await connect(url + '/private', t);
  assert.deepEqual(await nextClose(client), { code: 1008, reason: 'Unauthorized' });
  await barrier(t, url);
  assert.equal(handlerRan, false);
});

test('a connection whose middleware ended the chain still emits its close event', async (t) => {
  const router = new Router();
  addEcho(router);
  const closes = [];
  router.ws('/private', (ws, req, next) => {
    ws.on('close', (code, reason) => closes.push({ code, reason }));
    ws.close(1008, 'Unauthorized');
  });
  const { url } = await listen(router, t);
  const client = await connect(url + '/private', t);
  assert.equal((await nextClose(client)).code, 1008);
  // The client has seen the server's close frame echoed and the socket end; by the time a
  // later round trip is back, the server has handled this connection's close.
  await barrier(t, url);
  assert.deepEqual(closes, [{ code: 1008, reason: 'Unauthorized' }]);
});

test('router.use() middleware runs for every route, before the route handlers', async (t) => {
  const router = new Router();
  const order = [];
  const conns = collect();
  router.use((ws, req, next) => {
    order.push(`use:${req.path}`);
    ws.metadata.viaUse = true;
    next();
  });
  router.ws('/one', (ws, req) => {
    order.push('one');
    assert.equal(ws.metadata.viaUse, true);
    conns.handler(ws, req);
  });
  router.ws(
    '/two',
    (ws, req, next) => {
      order.push('two-mw');
      next();
    },
    (ws, req) => {
      order.push('two');
      conns.handler(ws, req);
    }
  );
  const { url } = await listen(router, t);
  await connect(url + '/one', t);
  await conns.next();
  await connect(url + '/two', t);
  await conns.next();
  assert.deepEqual(order, ['use:/one', 'one', 'use:/two', 'two-mw', 'two']);
});

test('the documented "Middleware Support" example works as written', async (t) => {
  const router = new Router();
  // From docs/WEBSOCKET.md, unchanged.
  router.ws('/ws/protected',
    // Authentication middleware
    (ws, req, next) => {
      const token = req.query.token;
      if (!token) {
        ws.close(1008, 'Unauthorized');
        return;
      }
      ws.metadata.authenticated = true;
      next();
    },
    // Main handler
    (ws, req) => {
      ws.send('Welcome to protected endpoint');
    }
  );
  const { url } = await listen(router, t);

  const anonymous = await connect(url + '/ws/protected', t);
  assert.deepEqual(await nextClose(anonymous), { code: 1008, reason: 'Unauthorized' });

  const member = await connect(url + '/ws/protected?token=abc', t);
  const { data, isBinary } = await nextMessage(member);
  assert.equal(isBinary, false);
  assert.equal(String(data), 'Welcome to protected endpoint');
});
