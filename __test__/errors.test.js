'use strict';

// What happens when application code throws: a route handler, an async handler that rejects,
// or a `message` listener. The error goes to the connection's `error` listeners (or is logged
// once when there are none), that connection closes with 1011, and everything else carries on
// (docs/WEBSOCKET.md, "Error Handling"; STYLE.md, "Errors").

const test = require('node:test');
const assert = require('node:assert/strict');
const { Router, WS_CLOSE_CODES } = require('..');
const { listen, connect, nextMessage, nextClose } = require('./helpers');

/**
 * A server with /echo and /fail routes. `failing` is the /fail handler. Returns the URL and
 * an echo client connected before anything fails.
 */
async function setup(t, ...failing) {
  const router = new Router();
  router.ws('/echo', (ws) => ws.on('message', (data) => ws.send(`echo:${data}`)));
  router.ws('/fail', ...failing);
  const { url } = await listen(router, t);
  const bystander = await connect(url + '/echo', t);
  return { url, bystander };
}

/** The echo client still works: one round trip. */
async function assertEchoes(client, text) {
  const got = nextMessage(client);
  client.send(text);
  const { data } = await got;
  assert.equal(String(data), `echo:${text}`);
}

/** Replaces console.error for the test; returns the mock for counting calls. */
function stubConsoleError(t) {
  return t.mock.method(console, 'error', () => {});
}

/** Asserts `value` was logged exactly once, as one of the arguments of one console.error call. */
function assertLoggedOnce(logged, value) {
  assert.equal(logged.mock.callCount(), 1, 'console.error calls');
  assert.ok(logged.mock.calls[0].arguments.includes(value), 'the error is among the logged arguments');
}

test('a throwing handler: logged once, 1011 for that client, others unaffected', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('handler failed');
  const { url, bystander } = await setup(t, () => {
    throw boom;
  });
  const client = await connect(url + '/fail', t);
  assert.equal((await nextClose(client)).code, WS_CLOSE_CODES.INTERNAL_ERROR);
  await assertEchoes(bystander, 'after handler error');
  assertLoggedOnce(logged, boom);
});

test('a throwing handler with an error listener: the Error goes to the listener, not the log', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('handler failed');
  const reported = [];
  const { url, bystander } = await setup(t, (ws) => {
    ws.on('error', (err) => reported.push(err));
    throw boom;
  });
  const client = await connect(url + '/fail', t);
  assert.equal((await nextClose(client)).code, 1011);
  await assertEchoes(bystander, 'after handler error');
  assert.deepEqual(reported, [boom]);
  assert.equal(reported[0], boom);
  assert.equal(logged.mock.callCount(), 0);
});

test('a rejected async handler: logged once, 1011, others unaffected', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('async handler failed');
  const { url, bystander } = await setup(t, async () => {
    await new Promise((resolve) => setImmediate(resolve));
    throw boom;
  });
  const client = await connect(url + '/fail', t);
  assert.equal((await nextClose(client)).code, 1011);
  await assertEchoes(bystander, 'after rejection');
  assertLoggedOnce(logged, boom);
});

test('an async handler that listens and then rejects: reported on the error event, 1011', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('async handler failed later');
  const reported = [];
  const { url, bystander } = await setup(t, async (ws) => {
    ws.on('error', (err) => reported.push(err));
    ws.on('message', (data) => ws.send(`got:${data}`));
    await new Promise((resolve) => setImmediate(resolve));
    throw boom;
  });
  const client = await connect(url + '/fail', t);
  assert.equal((await nextClose(client)).code, 1011);
  await assertEchoes(bystander, 'after rejection');
  assert.equal(reported.length, 1);
  assert.equal(reported[0], boom);
  assert.equal(logged.mock.callCount(), 0);
});

test('a throwing message listener: logged once, 1011, others unaffected', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('listener failed');
  const { url, bystander } = await setup(t, (ws) => {
    ws.on('message', () => {
      throw boom;
    });
  });
  const client = await connect(url + '/fail', t);
  const closed = nextClose(client);
  client.send('trigger');
  assert.equal((await closed).code, 1011);
  await assertEchoes(bystander, 'after listener error');
  assertLoggedOnce(logged, boom);
});

test('a throwing message listener with an error listener: the Error goes to the listener', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('listener failed');
  const reported = [];
  const { url, bystander } = await setup(t, (ws) => {
    ws.on('error', (err) => reported.push(err));
    ws.on('message', () => {
      throw boom;
    });
  });
  const client = await connect(url + '/fail', t);
  const closed = nextClose(client);
  client.send('trigger');
  assert.equal((await closed).code, 1011);
  await assertEchoes(bystander, 'after listener error');
  assert.equal(reported.length, 1);
  assert.equal(reported[0], boom);
  assert.equal(logged.mock.callCount(), 0);
});

test('next(err) from middleware without an error listener: logged once, 1011', async (t) => {
  const logged = stubConsoleError(t);
  const boom = new Error('middleware failed');
  let handlerRan = false;
  const { url, bystander } = await setup(
    t,
    (ws, req, next) => next(boom),
    () => {
      handlerRan = true;
    }
  );
  const client = await connect(url + '/fail', t);
  assert.equal((await nextClose(client)).code, 1011);
  await assertEchoes(bystander, 'after next(err)');
  assertLoggedOnce(logged, boom);
  assert.equal(handlerRan, false);
});

test('throwing a non-Error value does not crash the server', async (t) => {
  const logged = stubConsoleError(t);
  const { url, bystander } = await setup(t, () => {
    throw 'plain string'; // eslint-disable-line no-throw-literal
  });
  const client = await connect(url + '/fail', t);
  assert.equal((await nextClose(client)).code, 1011);
  await assertEchoes(bystander, 'after a thrown string');
  assertLoggedOnce(logged, 'plain string');

  // The route keeps serving new connections the same way.
  const again = await connect(url + '/fail', t);
  assert.equal((await nextClose(again)).code, 1011);
  await assertEchoes(bystander, 'still alive');
  assert.equal(logged.mock.callCount(), 2);
});

test('a listener throwing null or undefined still closes with 1011', async (t) => {
  stubConsoleError(t);
  const { url, bystander } = await setup(t, (ws) => {
    ws.on('message', (data) => {
      throw data === 'null' ? null : undefined;
    });
  });
  for (const value of ['null', 'undefined']) {
    const client = await connect(url + '/fail', t);
    const closed = nextClose(client);
    client.send(value);
    assert.equal((await closed).code, 1011, value);
  }
  await assertEchoes(bystander, 'after null and undefined');
});
