'use strict';

// Routing through real connections: which route a path reaches, the `req` a handler gets,
// routes added late, and the argument checks of `router.ws`.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { Router, createServer } = require('..');
const { listen, connect, withTimeout, rawClient, clientFrame } = require('./helpers');

/** A handler that answers every connection with `name` and what it learned from `req`. */
function reply(name) {
  return (ws, req) => {
    ws.send(JSON.stringify({ name, params: req.params, query: req.query }));
  };
}

/**
 * Connects to `path` and resolves with the first `count` messages as strings. The listener is
 * added before the handshake, since handlers here send as soon as the connection opens.
 */
async function messages(t, url, path, count, options) {
  const ws = new WebSocket(url + path, options);
  t.after(() => ws.terminate());
  const got = [];
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.on('error', reject);
      ws.on('message', (data) => {
        got.push(data.toString());
        if (got.length === count) resolve();
      });
    }),
    5000,
    `${count} message(s) from ${path} (got ${got.length})`
  );
  ws.close();
  return { ws, got };
}

/** Connects to `path` and resolves with the first message, parsed as JSON. */
async function ask(t, url, path, options) {
  const { got } = await messages(t, url, path, 1, options);
  return JSON.parse(got[0]);
}

/** A server for `router` that is never started; it only attaches the router. */
function newServerFor(t, router) {
  const server = createServer(router);
  t.after(() => {
    if (server.listening) server.close();
  });
  return server;
}

/** Resolves with the HTTP status a connection attempt to `path` was refused with. */
async function refusedWith(t, url, path) {
  const err = await connect(url + path, t).then(
    () => assert.fail(`${path} was accepted`),
    (e) => e
  );
  assert.equal(typeof err.statusCode, 'number', `expected an HTTP refusal, got ${err.message}`);
  return err.statusCode;
}

test('exact paths reach their own route, and nothing else does', async (t) => {
  const router = new Router();
  router.ws('/ws/a', reply('a'));
  router.ws('/ws/b', reply('b'));
  router.ws('/', reply('root'));
  const { url } = await listen(router, t);

  assert.equal((await ask(t, url, '/ws/a')).name, 'a');
  assert.equal((await ask(t, url, '/ws/b')).name, 'b');
  assert.equal((await ask(t, url, '/')).name, 'root');
  assert.equal(await refusedWith(t, url, '/ws/c'), 404);
  assert.equal(await refusedWith(t, url, '/ws/a/more'), 404);
  assert.equal(await refusedWith(t, url, '/ws'), 404);
});

test(':param segments are captured and percent-decoded', async (t) => {
  const router = new Router();
  router.ws('/ws/user/:userId', reply('user'));
  router.ws('/ws/room/:room/member/:member', reply('member'));
  const { url } = await listen(router, t);

  assert.deepEqual(await ask(t, url, '/ws/user/a%20b'), { name: 'user', params: { userId: 'a b' }, query: {} });
  assert.deepEqual((await ask(t, url, '/ws/user/%E2%82%AC')).params, { userId: '€' });
  assert.deepEqual((await ask(t, url, '/ws/user/42?x=1')).params, { userId: '42' });
  assert.deepEqual((await ask(t, url, '/ws/room/lobby/member/ann')).params, { room: 'lobby', member: 'ann' });
  // A parameter is exactly one non-empty segment.
  assert.equal(await refusedWith(t, url, '/ws/user'), 404);
  assert.equal(await refusedWith(t, url, '/ws/user/1/extra'), 404);
});

test('* matches exactly one segment and ** matches the rest', async (t) => {
  const router = new Router();
  router.ws('/ws/star/*', reply('star'));
  router.ws('/ws/star/*/end', reply('star-end'));
  router.ws('/files/**', reply('rest'));
  const { url } = await listen(router, t);

  assert.equal((await ask(t, url, '/ws/star/anything')).name, 'star');
  assert.equal((await ask(t, url, '/ws/star/x/end')).name, 'star-end');
  assert.equal(await refusedWith(t, url, '/ws/star'), 404);
  assert.equal(await refusedWith(t, url, '/ws/star/x/y'), 404);

  assert.equal((await ask(t, url, '/files/a')).name, 'rest');
  assert.equal((await ask(t, url, '/files/a/b/c')).name, 'rest');
  assert.equal(await refusedWith(t, url, '/other/a'), 404);
});

for (const order of ['specific first', 'specific last']) {
  test(`exact beats :param beats * beats ** (registered ${order})`, async (t) => {
    const routes = [
      ['/p/exact', 'exact'],
      ['/p/:id', 'param'],
      ['/p/*', 'star'],
      ['/p/**', 'rest'],
      ['/q/*', 'star'],
      ['/q/**', 'rest'],
    ];
    if (order === 'specific last') routes.reverse();
    const router = new Router();
    for (const [path, name] of routes) router.ws(path, reply(name));
    const { url } = await listen(router, t);

    assert.equal((await ask(t, url, '/p/exact')).name, 'exact');
    assert.deepEqual(await ask(t, url, '/p/other'), { name: 'param', params: { id: 'other' }, query: {} });
    assert.equal((await ask(t, url, '/p/x/y')).name, 'rest');
    assert.equal((await ask(t, url, '/q/x')).name, 'star');
    assert.equal((await ask(t, url, '/q/x/y')).name, 'rest');
  });
}

test('req.query decodes the query string and a repeated key becomes an array', async (t) => {
  const router = new Router();
  router.ws('/ws/q', reply('q'));
  const { url } = await listen(router, t);

  const { query } = await ask(t, url, '/ws/q?tag=a&tag=b&tag=c&name=x%20y&one=1');
  assert.deepEqual(query, { tag: ['a', 'b', 'c'], name: 'x y', one: '1' });
  assert.deepEqual((await ask(t, url, '/ws/q')).query, {});
});

test('req has method, url, path, headers, params, query, remoteAddress and remotePort', async (t) => {
  const router = new Router();
  let seen;
  router.ws('/ws/info/:id', (ws, req) => {
    seen = req;
    ws.send('ok');
  });
  const { url, port } = await listen(router, t);

  const { ws, got } = await messages(t, url, '/ws/info/42?x=1&y=two', 1, {
    headers: { 'X-Custom-Header': 'Hello World' },
  });
  assert.deepEqual(got, ['ok']);

  assert.equal(seen.method, 'GET');
  assert.equal(seen.url, '/ws/info/42?x=1&y=two');
  assert.equal(seen.path, '/ws/info/42');
  assert.deepEqual({ ...seen.params }, { id: '42' });
  assert.deepEqual({ ...seen.query }, { x: '1', y: 'two' });
  for (const name of Object.keys(seen.headers)) assert.equal(name, name.toLowerCase(), `header ${name}`);
  assert.equal(seen.headers['x-custom-header'], 'Hello World');
  assert.equal(seen.headers.host, `127.0.0.1:${port}`);
  assert.equal(seen.headers['sec-websocket-version'], '13');
  assert.equal(seen.remoteAddress, '127.0.0.1');
  assert.equal(seen.remotePort, ws._socket.localPort);
});

test('req.url and req.remoteAddress are read right whether or not they repeat the route or the last peer', async (t) => {
  const router = new Router();
  router.ws('/p/*', (ws, req) => {
    ws.send(JSON.stringify({ url: req.url, path: req.path, remoteAddress: req.remoteAddress, remote: ws.remoteAddress }));
  });
  const { url } = await listen(router, t);
  const seen = [];
  // The pattern itself, a URL of its length that differs, and the pattern again, from
  // alternating loopback addresses.
  for (const [path, from] of [['/p/*', '127.0.0.2'], ['/p/x', '127.0.0.2'], ['/p/*', '127.0.0.1'], ['/p/*?a=1', '127.0.0.3']]) {
    const { got } = await messages(t, url, path, 1, { localAddress: from });
    seen.push(JSON.parse(got[0]));
  }
  assert.deepEqual(seen, [
    { url: '/p/*', path: '/p/*', remoteAddress: '127.0.0.2', remote: '127.0.0.2' },
    { url: '/p/x', path: '/p/x', remoteAddress: '127.0.0.2', remote: '127.0.0.2' },
    { url: '/p/*', path: '/p/*', remoteAddress: '127.0.0.1', remote: '127.0.0.1' },
    { url: '/p/*?a=1', path: '/p/*', remoteAddress: '127.0.0.3', remote: '127.0.0.3' },
  ]);
});

test('req.headers: repeats joined as Node does, values read as Latin-1, intact long after the handshake', async (t) => {
  const router = new Router();
  let req;
  router.ws('/h', (ws, r) => {
    req = r;
    ws.on('message', (data) => ws.send(data));
  });
  const { port } = await listen(router, t);
  const client = await rawClient(port, '/h', {
    t,
    // Each value adds a second header line of the same name.
    headers: { 'X-Dup': 'a\r\nX-Dup: b', Cookie: 'c=1\r\nCookie: d=2', 'Set-Cookie': 's=1\r\nSet-Cookie: s=2', 'X-Text': 'café' },
  });
  assert.equal(client.response.status, 101);
  // Many event batches later (the engine reuses the memory events reach JS through), the
  // request still reads as it arrived.
  for (let i = 0; i < 50; i++) {
    const text = `m${i};`.repeat(200);
    await client.write(clientFrame(0x1, text));
    assert.equal((await client.next()).payload.toString(), text);
  }
  const headers = req.headers;
  assert.equal(headers['x-dup'], 'a, b');
  assert.equal(headers.cookie, 'c=1; d=2');
  assert.deepEqual(headers['set-cookie'], ['s=1', 's=2']);
  // Sent as UTF-8, read byte by byte as Latin-1, like Node's http module does.
  assert.equal(headers['x-text'], Buffer.from('café').toString('latin1'));
  assert.equal(headers.host, 'localhost');
  assert.equal(req.headers, headers, 'the same object on every read');
  assert.ok(Object.keys(req).includes('headers'));
  req.headers = { replaced: 'yes' };
  assert.deepEqual(req.headers, { replaced: 'yes' });
  assert.deepEqual({ ...req.query }, {});
  req.query = { q: '1' };
  req.params = { p: '2' };
  assert.deepEqual([req.query, req.params], [{ q: '1' }, { p: '2' }]);
  assert.deepEqual(Object.keys(req).sort(), ['headers', 'method', 'params', 'path', 'query', 'remoteAddress', 'remotePort', 'route', 'url']);
});

test('routes added after createServer and listen are served', async (t) => {
  const router = new Router();
  router.ws('/early', reply('early'));
  const { url } = await listen(router, t);
  assert.equal(await refusedWith(t, url, '/late/1'), 404);

  router.ws('/late/:n', reply('late'));
  assert.deepEqual(await ask(t, url, '/late/1'), { name: 'late', params: { n: '1' }, query: {} });
  assert.equal((await ask(t, url, '/early')).name, 'early');
});

test('handlers for the same path add up, in order', async (t) => {
  const router = new Router();
  router.ws('/twice', (ws) => ws.send('one'));
  router.ws('/twice', (ws) => ws.send('two'));
  const { url } = await listen(router, t);

  const { got } = await messages(t, url, '/twice', 2);
  assert.deepEqual(got, ['one', 'two']);
});

test('router.ws refuses a path that is not a string starting with "/"', () => {
  const router = new Router();
  const handler = () => {};
  for (const bad of [undefined, null, 42, {}, ['/a']]) {
    assert.throws(() => router.ws(bad, handler), { name: 'TypeError', message: /"path"/ }, String(bad));
  }
  for (const bad of ['', 'ws/chat', ' /ws']) {
    assert.throws(() => router.ws(bad, handler), { name: 'TypeError', message: /"path"/ }, JSON.stringify(bad));
  }
});

test('router.ws refuses handlers that are not functions', () => {
  const router = new Router();
  assert.throws(() => router.ws('/a'), { name: 'TypeError', message: /handler/ });
  assert.throws(() => router.ws('/a', 'nope'), { name: 'TypeError', message: /handler/ });
  assert.throws(() => router.ws('/a', () => {}, null), { name: 'TypeError', message: /handler/ });
  assert.throws(() => router.ws('/a', {}), { name: 'TypeError', message: /handler/ });
});

test('router.ws refuses a malformed pattern at once, attached to a server or not', (t) => {
  const detached = new Router();
  const attached = new Router();
  newServerFor(t, attached);
  for (const bad of ['/**/a', '/a/:']) {
    for (const router of [detached, attached]) {
      assert.throws(() => router.ws(bad, () => {}), { code: 'ERR_INVALID_ROUTE' }, bad);
    }
  }
});

test('a refused pattern leaves the router usable for new servers', async (t) => {
  const router = new Router();
  router.ws('/ok', reply('ok'));
  newServerFor(t, router);
  assert.throws(() => router.ws('/**/a', () => {}), { code: 'ERR_INVALID_ROUTE' });
  // The refused pattern must not stay registered, or every later server would refuse it too.
  const { url } = await listen(router, t);
  assert.equal((await ask(t, url, '/ok')).name, 'ok');
});

test('a refused route registration leaves the router serving what it had', async (t) => {
  const router = new Router();
  router.ws('/ok', reply('ok'));
  const { url } = await listen(router, t);
  assert.throws(() => router.ws('/bad', 'not a function'), TypeError);
  assert.equal((await ask(t, url, '/ok')).name, 'ok');
  // The refused call must not have registered the path.
  assert.equal(await refusedWith(t, url, '/bad'), 404);
});
