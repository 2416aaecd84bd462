'use strict';

// wss://: createServer(router, { key, cert }) serves TLS (rustls) with the same API.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { Router, createServer } = require('..');
const { once, nextClose, parked } = require('./helpers');

const fixture = (name) => fs.readFileSync(path.join(__dirname, 'fixtures', name));
const key = fixture('server-key.pem');
const cert = fixture('server-cert.pem');

function echoRouter() {
  const router = new Router();
  router.ws('/echo', (ws) => ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data}`)));
  return router;
}

async function listenTls(t, options = { key, cert }) {
  const server = createServer(echoRouter(), options);
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `wss://localhost:${server.address().port}/echo` };
}

function open(url, options, t) {
  const client = new WebSocket(url, options);
  t.after(() => client.terminate());
  const messages = [];
  client.on('message', (data, isBinary) => messages.push({ data, isBinary }));
  return { client, messages, opened: once(client, 'open') };
}

test('a client that trusts the test CA connects over wss and round-trips text and binary', async (t) => {
  const { server, url } = await listenTls(t);
  assert.equal(server.secure, true);
  const { client, messages, opened } = open(url, { ca: fixture('ca.pem') }, t);
  await opened;
  const big = crypto.randomBytes(3 * 1024 * 1024 + 7);
  client.send('hello');
  client.send(big);
  for (let i = 0; i < 100; i++) client.send(`n${i}`);
  while (messages.length < 102) await once(client, 'message');
  assert.equal(messages[0].data.toString(), 'echo:hello');
  assert.equal(messages[1].isBinary, true);
  assert.ok(messages[1].data.equals(big), 'the 3 MiB binary message arrives intact');
  assert.deepEqual(messages.slice(2).map((m) => m.data.toString()), Array.from({ length: 100 }, (_, i) => `echo:n${i}`));
  client.close(4000, 'done');
  assert.equal((await nextClose(client)).code, 4000, 'the server echoes the close code');
});

test('a client with another CA refuses the certificate; the server keeps serving', async (t) => {
  const { url } = await listenTls(t);
  const bad = new WebSocket(url, { ca: fixture('other-ca.pem') });
  const [err] = await once(bad, 'error').catch((e) => [e]);
  assert.match(String(err && (err.code || err.message)), /UNABLE_TO_VERIFY|self.signed|certificate/i);
  const { client, messages, opened } = open(url, { ca: fixture('ca.pem') }, t);
  await opened;
  client.send('still here');
  await once(client, 'message');
  assert.equal(messages[0].data.toString(), 'echo:still here');
});

test('a plain ws:// client on a wss server does not get a WebSocket', async (t) => {
  const { url } = await listenTls(t);
  const plain = new WebSocket(url.replace('wss:', 'ws:'));
  t.after(() => plain.terminate());
  const outcome = await Promise.race([
    once(plain, 'open').then(() => 'open'),
    once(plain, 'error').then(() => 'error', () => 'error'),
    once(plain, 'close').then(() => 'close'),
  ]).catch(() => 'error');
  assert.notEqual(outcome, 'open');
});

test('a server created without TLS options still serves ws://', async (t) => {
  const server = createServer(echoRouter());
  t.after(() => server.close());
  assert.equal(server.secure, false);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { client, messages, opened } = open(`ws://127.0.0.1:${server.address().port}/echo`, {}, t);
  await opened;
  client.send('plain');
  await once(client, 'message');
  assert.equal(messages[0].data.toString(), 'echo:plain');
});

test('an invalid key or certificate fails at createServer with a clear error', () => {
  const router = new Router();
  assert.throws(() => createServer(router, { key: 'not a key', cert }), { code: 'ERR_TLS_INVALID_KEY', message: /key/ });
  assert.throws(() => createServer(router, { key, cert: 'not a certificate' }), { code: 'ERR_TLS_INVALID_CERT', message: /cert/ });
  // A key that does not belong to the certificate.
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const otherKey = privateKey.export({ type: 'pkcs8', format: 'pem' });
  assert.throws(() => createServer(router, { key: otherKey, cert }), { code: 'ERR_TLS_INVALID_KEY' });
  assert.throws(() => createServer(router, { key: 42, cert }), { name: 'TypeError', message: /"options.key"/ });
  assert.throws(() => createServer(router, { key }), { name: 'TypeError', message: /"options.cert"/ });
  assert.throws(() => createServer(router, 'tls please'), { name: 'TypeError', message: /"options"/ });
});

test('a TLS client that never finishes its handshake is dropped by the handshake timeout', async (t) => {
  const router = echoRouter();
  router.configureWebSocket({ handshakeTimeout: 150 });
  const server = createServer(router, { key, cert });
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const net = require('node:net');
  const socket = net.connect(server.address().port, '127.0.0.1');
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  socket.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello, then silence
  await once(socket, 'close', 5000);
});

test('a quiet wss connection parks and wakes for the peer, for sends and for a large send', async (t) => {
  const router = new Router({ websocket: { heartbeatInterval: 0 } });
  const sides = [];
  router.ws('/echo', (ws) => {
    sides.push(ws);
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data}`));
  });
  const server = createServer(router, { key, cert });
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { client, messages, opened } = open(`wss://localhost:${server.address().port}/echo`, { ca: fixture('ca.pem') }, t);
  await opened;
  await parked(server, 1);

  client.send('first');
  await once(client, 'message');
  assert.equal(messages.shift().data.toString(), 'echo:first');
  await parked(server, 1);

  assert.equal(sides[0].send('from the server'), true);
  await once(client, 'message');
  assert.equal(messages.shift().data.toString(), 'from the server');
  await parked(server, 1);

  // More than the socket takes at once: the woken task finishes it through TLS.
  const big = crypto.randomBytes(8 * 1024 * 1024);
  sides[0].send(big);
  await once(client, 'message');
  assert.ok(messages.shift().data.equals(big));
  await parked(server, 1);

  client.close(4000, 'done');
  assert.equal((await nextClose(client)).code, 4000);
  assert.equal(server._native.parkedCount(), 0);
});
