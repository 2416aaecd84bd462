'use strict';

// Subprotocol negotiation (README, "Subprotocols"): `handleProtocols(protocols)` gets the
// offered names as an array, in the client's order, and returns the one to use, which is
// echoed in `Sec-WebSocket-Protocol` and is `ws.protocol`. A falsy result accepts without a
// subprotocol; a throw refuses the handshake with 400, a name the client did not offer with
// 500. Cases where the server sends no subprotocol use raw HTTP: the `ws` client refuses them.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Router } = require('..');
const { listen, connect, collect, rawClient, rawHttp, upgradeRequest, parseResponse } = require('./helpers');

/** A router with `handleProtocols` (when given) whose '/p' route collects connections. */
async function protocolServer(t, handleProtocols) {
  const router = new Router(handleProtocols === undefined ? undefined : { websocket: { handleProtocols } });
  const conns = collect();
  let opened = 0;
  router.ws('/p', (ws, req) => {
    opened++;
    conns.handler(ws, req);
  });
  const { port, url } = await listen(router, t);
  return { router, conns, port, url, opened: () => opened };
}

/** A handshake on raw TCP offering `offered` (a header value, or an array of header lines). */
function offer(port, offered, t) {
  const headers = offered === undefined ? {} : { 'Sec-WebSocket-Protocol': offered };
  return rawClient(port, '/p', { headers, t });
}

/** Sends an upgrade request and returns the parsed response once the server ends it. */
async function refused(port, offered) {
  return parseResponse(await rawHttp(port, upgradeRequest('/p', { 'Sec-WebSocket-Protocol': offered })));
}

test('the chosen subprotocol is echoed and is ws.protocol; handleProtocols gets an array in the client order', async (t) => {
  const calls = [];
  const { conns, url } = await protocolServer(t, (protocols) => {
    calls.push(protocols);
    return protocols.includes('chat.v2') ? 'chat.v2' : null;
  });
  const client = await connect(`${url}/p`, t, ['chat.v1', 'chat.v2', 'json']);
  const { ws } = await conns.next();
  assert.equal(client.protocol, 'chat.v2');
  assert.equal(ws.protocol, 'chat.v2');
  assert.equal(calls.length, 1);
  assert.ok(Array.isArray(calls[0]), 'protocols is not an array');
  assert.deepEqual(calls[0], ['chat.v1', 'chat.v2', 'json']);
});

test('offers spread over several header lines arrive as one list, in order', async (t) => {
  const calls = [];
  const { conns, port } = await protocolServer(t, (protocols) => {
    calls.push(protocols);
    return protocols[2];
  });
  // Two Sec-WebSocket-Protocol lines (upgradeRequest takes header names verbatim).
  const client = await rawClient(port, '/p', {
    t,
    headers: { 'Sec-WebSocket-Protocol': 'a, b', 'sec-websocket-protocol': 'c' },
  });
  assert.equal(client.response.status, 101);
  assert.equal(client.response.headers['sec-websocket-protocol'], 'c');
  assert.deepEqual(calls, [['a', 'b', 'c']]);
  assert.equal((await conns.next()).ws.protocol, 'c');
});

for (const falsy of [null, undefined, false, '', 0]) {
  test(`a falsy result (${JSON.stringify(falsy) ?? 'undefined'}) accepts without a subprotocol`, async (t) => {
    const { conns, port } = await protocolServer(t, () => falsy);
    const client = await offer(port, 'chat, json', t);
    assert.equal(client.response.status, 101);
    assert.equal(client.response.headers['sec-websocket-protocol'], undefined);
    assert.equal((await conns.next()).ws.protocol, '');
  });
}

test('a throwing handleProtocols refuses the handshake with 400 and logs the error', async (t) => {
  const logged = t.mock.method(console, 'error', () => {});
  const { conns, port, url, opened } = await protocolServer(t, (protocols) => {
    if (protocols.includes('evil')) throw new Error('no evil here');
    return protocols[0];
  });
  const res = await refused(port, 'evil');
  assert.equal(res.status, 400);
  assert.equal(res.headers['sec-websocket-accept'], undefined);
  assert.equal(logged.mock.callCount(), 1);
  assert.match(logged.mock.calls[0].arguments.map(String).join(' '), /no evil here/);
  // Nothing opened, and the server still negotiates for the next client.
  const client = await connect(`${url}/p`, t, ['good']);
  assert.equal(client.protocol, 'good');
  assert.equal((await conns.next()).ws.protocol, 'good');
  assert.equal(opened(), 1);
});

test('returning a name the client did not offer refuses with 500 and is logged', async (t) => {
  const logged = t.mock.method(console, 'error', () => {});
  const { port, opened } = await protocolServer(t, (protocols) => (protocols[0] === 'a' ? 'zzz' : 42));
  const res = await refused(port, 'a, b');
  assert.equal(res.status, 500);
  assert.equal(res.headers['sec-websocket-protocol'], undefined);
  // A result that is not a string at all is refused the same way.
  assert.equal((await refused(port, 'b')).status, 500);
  assert.equal(logged.mock.callCount(), 2);
  assert.equal(opened(), 0);
});

test('a result JSON cannot show (a BigInt, a circular object) is refused with 500 too, and nothing throws', async (t) => {
  const logged = t.mock.method(console, 'error', () => {});
  const circular = {};
  circular.self = circular;
  // An exception escaping the event dispatch would be uncaught (node:test reports it as this
  // test's failure), and the handshake left waiting for an answer.
  const { port } = await protocolServer(t, (protocols) => (protocols[0] === 'big' ? 10n : circular));
  for (const offered of ['big', 'loop']) {
    const text = await rawHttp(port, upgradeRequest('/p', { 'Sec-WebSocket-Protocol': offered }), { timeoutMs: 3000 }).catch(
      (err) => `no answer: ${err.message}`
    );
    assert.equal(parseResponse(text).status, 500, `${offered}: ${text.split('\r\n')[0]}`);
  }
  assert.equal(logged.mock.callCount(), 2);
});

test('a name differing from the offer in case only is not offered: 500', async (t) => {
  t.mock.method(console, 'error', () => {});
  const { port } = await protocolServer(t, () => 'CHAT');
  assert.equal((await refused(port, 'chat')).status, 500);
});

test('without handleProtocols, offered subprotocols are ignored and the connection accepted without one', async (t) => {
  const { conns, port } = await protocolServer(t);
  const client = await offer(port, 'chat, json', t);
  assert.equal(client.response.status, 101);
  assert.equal(client.response.headers['sec-websocket-protocol'], undefined);
  assert.equal((await conns.next()).ws.protocol, '');
});

test('handleProtocols is not called when the client offers none', async (t) => {
  let calls = 0;
  const { conns, url } = await protocolServer(t, () => {
    calls++;
    return 'x';
  });
  const client = await connect(`${url}/p`, t);
  assert.equal(client.protocol, '');
  assert.equal((await conns.next()).ws.protocol, '');
  assert.equal(calls, 0);
});

test('a malformed Sec-WebSocket-Protocol header gets 400 without asking handleProtocols', async (t) => {
  let calls = 0;
  const { port } = await protocolServer(t, (p) => {
    calls++;
    return p[0];
  });
  for (const bad of ['a, , b', 'a, a', 'a b', 'chat/1']) {
    assert.equal((await refused(port, bad)).status, 400, JSON.stringify(bad));
  }
  assert.equal(calls, 0);
});

test('concurrent handshakes each get their own answer', async (t) => {
  const { conns, url } = await protocolServer(t, (protocols) => protocols[1]);
  const n = 20;
  const clients = await Promise.all(Array.from({ length: n }, (_, i) => connect(`${url}/p`, t, [`x${i}`, `p${i}`])));
  clients.forEach((c, i) => assert.equal(c.protocol, `p${i}`));
  const seen = new Set();
  for (let i = 0; i < n; i++) seen.add((await conns.next()).ws.protocol);
  assert.equal(seen.size, n);
});

test('configureWebSocket sets and removes handleProtocols for new handshakes', async (t) => {
  const { router, conns, port, url } = await protocolServer(t);
  router.configureWebSocket({ handleProtocols: (p) => p[p.length - 1] });
  const client = await connect(`${url}/p`, t, ['one', 'two']);
  assert.equal(client.protocol, 'two');
  assert.equal((await conns.next()).ws.protocol, 'two');
  router.configureWebSocket({ handleProtocols: null });
  const raw = await offer(port, 'one, two', t);
  assert.equal(raw.response.status, 101);
  assert.equal(raw.response.headers['sec-websocket-protocol'], undefined);
  assert.equal((await conns.next()).ws.protocol, '');
});
