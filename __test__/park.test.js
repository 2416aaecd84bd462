'use strict';

// Quiet connections: a connection with nothing to do gives up its engine task ("parks": 50 ms
// after the handshake, or after about a second without reading or writing) and gets one
// back on anything that needs it — the peer's data or close, a send, close or terminate from
// JS, a heartbeat. These tests wait until the engine reports the connection parked (an
// internal count, `parkedCount`), then check through the wire that everything still works.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const { listen, connect, collect, nextMessage, nextClose, once, parked } = require('./helpers');

function echoRouter(websocket) {
  const router = new Router({ websocket });
  const conns = collect();
  router.ws('/echo', (ws, req) => {
    conns.handler(ws, req);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  return { router, conns };
}

test('a connection parks once quiet and wakes for the peer, for sends and for a close from JS', async (t) => {
  const { router, conns } = echoRouter({ heartbeatInterval: 0 });
  const { server, url } = await listen(router, t);
  const client = await connect(`${url}/echo`, t);
  const { ws } = await conns.next();
  // Parked soon after the handshake: nothing was read.
  await parked(server, 1);

  client.send('first');
  assert.equal(String((await nextMessage(client)).data), 'first');
  // Active now; parked again after a quiet second.
  await parked(server, 1);

  const got = nextMessage(client);
  assert.equal(ws.send('from the server'), true);
  assert.equal(String((await got).data), 'from the server');
  await parked(server, 1);

  // A large send the socket does not take at once is finished by the woken task.
  const big = Buffer.alloc(8 * 1024 * 1024, 7);
  const gotBig = nextMessage(client, 10000);
  ws.send(big);
  const { data } = await gotBig;
  assert.equal(data.length, big.length);
  assert.ok(data.equals(big));
  await parked(server, 1);

  const closed = once(client, 'close');
  const serverClosed = nextClose(ws);
  ws.close(4000, 'bye');
  const [code, reason] = await closed;
  assert.equal(code, 4000);
  assert.equal(String(reason), 'bye');
  assert.equal((await serverClosed).code, 4000);
  assert.equal(server._native.parkedCount(), 0);
});

test('a parked connection reports the peer closing, and is terminated at once', async (t) => {
  const { router, conns } = echoRouter({ heartbeatInterval: 0 });
  const { server, url } = await listen(router, t);
  const a = await connect(`${url}/echo`, t);
  const { ws: wsA } = await conns.next();
  await connect(`${url}/echo`, t);
  const { ws: wsB } = await conns.next();
  await parked(server, 2);

  const closedA = nextClose(wsA);
  a.close(4001, 'leaving');
  const { code, reason } = await closedA;
  assert.equal(code, 4001);
  assert.equal(String(reason), 'leaving');
  await parked(server, 1);

  const closedB = nextClose(wsB);
  wsB.terminate();
  assert.equal((await closedB).code, 1006);
  await parked(server, 0);
});

test('heartbeats wake a parked connection: pings keep coming, the connection stays open', async (t) => {
  const { router, conns } = echoRouter({ heartbeatInterval: 400, heartbeatTimeout: 5000 });
  const { server, url } = await listen(router, t);
  const client = await connect(`${url}/echo`, t);
  const { ws } = await conns.next();
  let closes = 0;
  ws.on('close', () => closes++);
  await parked(server, 1);
  // Each ping wakes it; it parks again a second or two after the pong.
  for (let i = 0; i < 2; i++) {
    await once(client, 'ping', 5000);
    await parked(server, 1);
  }
  await once(client, 'ping', 5000);
  client.send('still here');
  assert.equal(String((await nextMessage(client)).data), 'still here');
  assert.equal(closes, 0);
});

test('a connection does not park while its rate limit window runs: the limit holds across a quiet spell', async (t) => {
  const { router, conns } = echoRouter({ heartbeatInterval: 0, rateLimit: { messages: 3, interval: 60000 } });
  const { server, url } = await listen(router, t);
  const client = await connect(`${url}/echo`, t);
  const { ws } = await conns.next();
  for (const m of ['1', '2', '3']) {
    client.send(m);
    assert.equal(String((await nextMessage(client)).data), m);
  }
  // Longer than a quiet check or two: no event marks that nothing happened.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.equal(server._native.parkedCount(), 0);
  const serverClosed = nextClose(ws);
  client.send('4');
  const [code] = await once(client, 'close');
  assert.equal(code, 1008);
  assert.equal((await serverClosed).code, 1008);
});
