'use strict';

// `createServer(router)` as an http.Server look-alike: listen/address/close, the listening,
// error and close events, argument checks, ref/unref, and what a server does to the lifetime
// of the process (checked in child processes).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Router, createServer } = require('..');
const {
  HOST,
  listen,
  connect,
  nextMessage,
  once,
  withTimeout,
  wsKey,
  acceptKey,
  upgradeRequest,
  parseResponse,
  clientFrame,
  parseFrames,
} = require('./helpers');

const ROOT = path.join(__dirname, '..');

function echoRouter() {
  const router = new Router();
  router.ws('/echo', (ws) => ws.on('message', (data) => ws.send(String(data))));
  return router;
}

/** A new, not yet listening server; stopped after the test if it is listening then. */
function newServer(t, router = echoRouter()) {
  const server = createServer(router);
  t.after(() => {
    if (server.listening) server.close();
  });
  return server;
}

/** One echo round trip on a new client; the client is closed afterwards. */
async function roundTrip(t, port, host = HOST) {
  const where = net.isIPv6(host) ? `[${host}]` : host;
  const client = await connect(`ws://${where}:${port}/echo`, t);
  client.send('hello');
  const { data } = await nextMessage(client);
  assert.equal(data.toString(), 'hello');
  client.close();
  await once(client, 'close');
}

/** Resolves with the error a TCP connection attempt fails with, or null if it connects. */
function tcpConnectError(port) {
  return withTimeout(
    new Promise((resolve) => {
      const s = net.connect(port, HOST);
      s.on('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.on('error', resolve);
    }),
    5000,
    'a TCP connection attempt'
  );
}

test('listen(0, host, callback) picks a free port; address() and listening follow', async (t) => {
  const server = newServer(t);
  assert.equal(server.listening, false);
  assert.equal(server.address(), null);

  const listening = once(server, 'listening');
  let calledBack = 0;
  assert.equal(
    server.listen(0, HOST, () => calledBack++),
    server
  );
  await listening;
  assert.equal(calledBack, 1);
  assert.equal(server.listening, true);
  const address = server.address();
  assert.deepEqual(Object.keys(address).sort(), ['address', 'family', 'port']);
  assert.equal(address.address, '127.0.0.1');
  assert.equal(address.family, 'IPv4');
  assert.equal(typeof address.port, 'number');
  assert.ok(address.port > 0 && address.port < 65536, `port ${address.port}`);
  await roundTrip(t, address.port);

  server.close();
  assert.equal(server.listening, false);
  assert.equal(server.address(), null);
});

test('two servers on port 0 get different ports', async (t) => {
  const a = await listen(echoRouter(), t);
  const b = await listen(echoRouter(), t);
  assert.notEqual(a.port, b.port);
  await roundTrip(t, a.port);
  await roundTrip(t, b.port);
});

test('listen({ port, host }, callback)', async (t) => {
  const server = newServer(t);
  await withTimeout(new Promise((resolve) => server.listen({ port: 0, host: HOST }, resolve)), 5000, 'listen callback');
  assert.equal(server.address().address, '127.0.0.1');
  await roundTrip(t, server.address().port);
});

test('listen(port, host, backlog, callback) and listen(port, backlog, callback)', async (t) => {
  const a = newServer(t);
  await withTimeout(new Promise((resolve) => a.listen(0, HOST, 16, resolve)), 5000, 'listen callback');
  assert.equal(a.address().address, '127.0.0.1');
  await roundTrip(t, a.address().port);

  const b = newServer(t);
  await withTimeout(new Promise((resolve) => b.listen(0, 16, resolve)), 5000, 'listen callback');
  await roundTrip(t, b.address().port);
});

test('listen(port) without a host accepts IPv4 clients', async (t) => {
  const server = newServer(t);
  server.listen(0);
  await once(server, 'listening');
  const { address, family, port } = server.address();
  assert.ok(['IPv4', 'IPv6'].includes(family), family);
  assert.ok(address === '::' || address === '0.0.0.0', address);
  await roundTrip(t, port, '127.0.0.1');
});

test('listen with a host name resolves it', async (t) => {
  const server = newServer(t);
  server.listen({ port: 0, host: 'localhost' });
  await once(server, 'listening');
  const { address, family, port } = server.address();
  assert.ok(['127.0.0.1', '::1'].includes(address), address);
  assert.equal(family, net.isIPv6(address) ? 'IPv6' : 'IPv4');
  await roundTrip(t, port, address);
});

test('listen twice throws ERR_SERVER_ALREADY_LISTEN', async (t) => {
  const server = newServer(t);
  server.listen(0, HOST);
  // Also while the first listen is still on its way to the `listening` event.
  assert.throws(() => server.listen(0, HOST), { code: 'ERR_SERVER_ALREADY_LISTEN' });
  await once(server, 'listening');
  const { port } = server.address();
  assert.throws(() => server.listen(0, HOST), { code: 'ERR_SERVER_ALREADY_LISTEN' });
  assert.equal(server.address().port, port);
  await roundTrip(t, port);
});

test('bad ports throw a RangeError with code ERR_SOCKET_BAD_PORT', (t) => {
  const server = newServer(t);
  for (const port of [-1, 65536, 1e6, 1.5, NaN, Infinity, '']) {
    assert.throws(() => server.listen(port, HOST), { name: 'RangeError', code: 'ERR_SOCKET_BAD_PORT' }, String(port));
    assert.throws(() => server.listen({ port, host: HOST }), { name: 'RangeError', code: 'ERR_SOCKET_BAD_PORT' }, String(port));
  }
  // As a positional argument a non-numeric string is a pipe path for Node; as `port` it is not.
  assert.throws(() => server.listen({ port: 'abc', host: HOST }), { name: 'RangeError', code: 'ERR_SOCKET_BAD_PORT' });
  assert.equal(server.listening, false);
});

test('a taken port emits a Node-style EADDRINUSE error, and listen can be retried', async (t) => {
  const blocker = net.createServer();
  t.after(() => blocker.close());
  blocker.listen(0, HOST);
  await once(blocker, 'listening');
  const { port } = blocker.address();

  const server = newServer(t);
  server.listen(port, HOST);
  const [err] = await once(server, 'error');
  assert.ok(err instanceof Error);
  assert.equal(err.code, 'EADDRINUSE');
  assert.equal(err.syscall, 'listen');
  assert.equal(err.port, port);
  assert.equal(err.address, HOST);
  assert.match(err.message, /EADDRINUSE/);
  assert.equal(server.listening, false);
  assert.equal(server.address(), null);

  server.listen(0, HOST);
  await once(server, 'listening');
  await roundTrip(t, server.address().port);
});

test('a port taken by another velocy server emits EADDRINUSE', async (t) => {
  const first = await listen(echoRouter(), t);
  const server = newServer(t);
  server.listen(first.port, HOST);
  const [err] = await once(server, 'error');
  assert.equal(err.code, 'EADDRINUSE');
  assert.equal(err.syscall, 'listen');
  await roundTrip(t, first.port);
});

test('close() stops accepting; open connections stay until they end, then close is emitted', async (t) => {
  const router = echoRouter();
  const handlerRan = new Promise((resolve) => {
    router.ws('/wait', (ws) => {
      ws.on('message', (data) => ws.send(String(data)));
      resolve(ws);
    });
  });
  const { server, port, url } = await listen(router, t);
  const open = await connect(`${url}/wait`, t);
  const serverSide = await withTimeout(handlerRan, 5000, 'the route handler');

  let closeEvents = 0;
  let callbackArgs = null;
  server.on('close', () => closeEvents++);
  const closed = once(server, 'close');
  assert.equal(
    server.close((...args) => {
      callbackArgs = args;
    }),
    server
  );
  assert.equal(server.listening, false);
  assert.equal(server.address(), null);

  const err = await tcpConnectError(port);
  assert.ok(err, 'a new TCP connection was accepted after close()');
  assert.equal(err.code, 'ECONNREFUSED');

  // The open connection still works both ways.
  open.send('still open');
  assert.equal((await nextMessage(open)).data.toString(), 'still open');
  assert.equal(serverSide.readyState, 1);
  assert.equal(closeEvents, 0, 'close was emitted while a connection was open');
  assert.equal(callbackArgs, null, 'the close callback ran while a connection was open');

  open.close();
  await closed;
  assert.equal(closeEvents, 1);
  assert.ok(callbackArgs !== null, 'the close callback did not run');
  assert.ok(callbackArgs[0] === undefined || callbackArgs[0] === null, `callback error: ${callbackArgs[0]}`);
});

test('close() waits for a connection whose handshake is done but whose handler has not run yet', async (t) => {
  const { server, port } = await listen(echoRouter(), t);
  const socket = net.connect(port, HOST);
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  const key = wsKey();
  socket.write(upgradeRequest('/echo', { 'Sec-WebSocket-Key': key }));
  // Hold the JS thread while the engine (on its own threads) completes the handshake, so the
  // connection exists when close() runs but its open event is still queued for JS. This pause
  // only widens that window; it does not order anything the assertions depend on.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);

  let closeEvents = 0;
  server.on('close', () => closeEvents++);
  const closed = once(server, 'close');
  server.close();

  let buf = Buffer.alloc(0);
  let head = null;
  const echoed = withTimeout(
    new Promise((resolve, reject) => {
      socket.on('error', reject);
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (head === null) {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          head = parseResponse(buf.subarray(0, end + 4).toString('latin1'));
          buf = buf.subarray(end + 4);
          socket.write(clientFrame(0x1, 'after close'));
        }
        const { frames } = parseFrames(buf);
        if (frames.length > 0) resolve(frames[0]);
      });
    }),
    5000,
    'the echo on the raw connection'
  );
  const frame = await echoed;
  assert.equal(head.statusLine, 'HTTP/1.1 101 Switching Protocols');
  assert.equal(head.headers['sec-websocket-accept'], acceptKey(key));
  assert.equal(frame.payload.toString(), 'after close');
  assert.equal(closeEvents, 0, 'close was emitted while a connection was open');

  socket.destroy();
  await closed;
  assert.equal(closeEvents, 1);
});

test('once close() has returned, new connections are refused and none is served', async (t) => {
  // Node closes the listening socket inside close(), so a client that connects afterwards gets
  // ECONNREFUSED. Many short rounds, because a listener that lingers after close() is a race.
  let handlers = 0;
  const router = new Router();
  router.ws('/echo', () => handlers++);
  const outcomes = { refused: 0, connected: 0, other: 0 };
  for (let round = 0; round < 50; round++) {
    const { server, port } = await listen(router, t);
    server.close();
    const attempts = [];
    for (let i = 0; i < 10; i++) {
      attempts.push(
        tcpConnectError(port).then((err) => {
          if (err === null) outcomes.connected++;
          else if (err.code === 'ECONNREFUSED') outcomes.refused++;
          else outcomes.other++;
        })
      );
    }
    await Promise.all(attempts);
  }
  assert.deepEqual(outcomes, { refused: 500, connected: 0, other: 0 });
  assert.equal(handlers, 0, `${handlers} route handlers ran after close()`);
});

test('close() with no connections emits close and calls back without an error', async (t) => {
  const { server } = await listen(echoRouter(), t);
  const [err] = await withTimeout(new Promise((resolve) => server.close((...args) => resolve(args))), 5000, 'close callback');
  assert.ok(err === undefined || err === null, `callback error: ${err}`);
});

test('close(callback) on a server that is not listening gives ERR_SERVER_NOT_RUNNING', async (t) => {
  const server = newServer(t);
  const [err] = await withTimeout(new Promise((resolve) => server.close((...args) => resolve(args))), 5000, 'close callback');
  assert.ok(err instanceof Error);
  assert.equal(err.code, 'ERR_SERVER_NOT_RUNNING');

  // The same after a listen/close cycle.
  server.listen(0, HOST);
  await once(server, 'listening');
  await withTimeout(new Promise((resolve) => server.close(resolve)), 5000, 'first close');
  const [again] = await withTimeout(new Promise((resolve) => server.close((...args) => resolve(args))), 5000, 'second close');
  assert.equal(again && again.code, 'ERR_SERVER_NOT_RUNNING');
});

test('a closed server can listen again', async (t) => {
  const server = newServer(t);
  server.listen(0, HOST);
  await once(server, 'listening');
  await withTimeout(new Promise((resolve) => server.close(resolve)), 5000, 'close');
  server.listen(0, HOST);
  await once(server, 'listening');
  assert.equal(server.listening, true);
  await roundTrip(t, server.address().port);
});

test('ref() and unref() return the server', (t) => {
  const server = newServer(t);
  assert.equal(server.unref(), server);
  assert.equal(server.ref(), server);
});

// ---- process lifetime, in child processes --------------------------------------------------

const CHILD_TIMEOUT = 15000;

/**
 * Runs `body` in a child Node process with `velocy` (this repository), `echoRouter()` and
 * `print(line)` in scope. The child is killed after the test if it still runs.
 */
function runChild(t, body) {
  const script = `
    'use strict';
    const { Router, createServer } = require(${JSON.stringify(ROOT)});
    const HOST = ${JSON.stringify(HOST)};
    const print = (line) => process.stdout.write(line + '\\n');
    function echoRouter() {
      const router = new Router();
      router.ws('/echo', (ws) => ws.on('message', (data) => ws.send(String(data))));
      return router;
    }
    process.on('beforeExit', () => print('beforeExit'));
    ${body}
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let killedByTest = false;
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) {
      killedByTest = true;
      child.kill('SIGKILL');
    }
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  const lines = [];
  const waiters = [];
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    pending += d;
    let i;
    while ((i = pending.indexOf('\n')) !== -1) {
      lines.push(pending.slice(0, i));
      pending = pending.slice(i + 1);
      for (const w of waiters.slice()) w();
    }
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      for (const w of waiters.slice()) w();
      resolve({ code, signal });
    });
  });
  return {
    child,
    lines,
    stderr: () => stderr,
    /** Resolves with the first line matching `re` (searching lines already printed too). */
    waitFor(re, timeoutMs = CHILD_TIMEOUT) {
      return withTimeout(
        new Promise((resolve, reject) => {
          const check = () => {
            const line = lines.find((l) => re.test(l));
            if (line !== undefined) {
              waiters.splice(waiters.indexOf(check), 1);
              resolve(line);
            } else if (child.exitCode !== null || child.signalCode !== null) {
              waiters.splice(waiters.indexOf(check), 1);
              reject(new Error(`child exited before printing ${re}; stdout: ${lines.join('|')}; stderr: ${stderr}`));
            }
          };
          waiters.push(check);
          check();
        }),
        timeoutMs,
        `child to print ${re} (stdout so far: ${lines.join('|')}; stderr: ${stderr})`
      );
    },
    /** Resolves with `{ code, signal }` once the child exits by itself. */
    async exit(timeoutMs = CHILD_TIMEOUT) {
      const result = await withTimeout(exited, timeoutMs, `child to exit by itself (stdout: ${lines.join('|')}; stderr: ${stderr})`);
      assert.equal(killedByTest, false);
      return result;
    },
  };
}

/** The port a child printed as `port <n>`. */
async function childPort(proc) {
  const line = await proc.waitFor(/^port \d+$/);
  return Number(line.split(' ')[1]);
}

test('process: close() after the last client left lets the process exit with code 0', async (t) => {
  const proc = runChild(
    t,
    `
    const router = new Router();
    const server = createServer(router);
    router.ws('/echo', (ws) => {
      ws.on('message', (data) => ws.send(String(data)));
      ws.on('close', () => server.close(() => print('closed')));
    });
    server.listen(0, HOST, () => print('port ' + server.address().port));
    `
  );
  const port = await childPort(proc);
  await roundTrip(t, port);
  const { code, signal } = await proc.exit();
  assert.equal(signal, null);
  assert.equal(code, 0, proc.stderr());
  assert.ok(proc.lines.includes('closed'), proc.lines.join('|'));
});

test('process: close() with a client connected exits once that client leaves', async (t) => {
  const proc = runChild(
    t,
    `
    const router = new Router();
    const server = createServer(router);
    router.ws('/echo', (ws) => {
      ws.on('message', (data) => ws.send(String(data)));
      server.close(() => print('closed'));
      print('close called');
    });
    server.listen(0, HOST, () => print('port ' + server.address().port));
    `
  );
  const port = await childPort(proc);
  const client = await connect(`ws://${HOST}:${port}/echo`, t);
  await proc.waitFor(/^close called$/);
  // Still served after close(): the process must not have let go of it.
  client.send('after close');
  assert.equal((await nextMessage(client)).data.toString(), 'after close');
  assert.equal(proc.child.exitCode, null, 'the child exited while a client was connected');
  assert.ok(!proc.lines.includes('closed'), 'close callback ran while a client was connected');
  client.close();
  const { code, signal } = await proc.exit();
  assert.equal(signal, null);
  assert.equal(code, 0, proc.stderr());
  assert.ok(proc.lines.includes('closed'), proc.lines.join('|'));
});

test('process: a listening server keeps the process alive', async (t) => {
  const proc = runChild(
    t,
    `
    const router = echoRouter();
    router.ws('/bye', (ws) => ws.on('close', () => print('client left')));
    const server = createServer(router);
    server.listen(0, HOST, () => print('port ' + server.address().port));
    `
  );
  const port = await childPort(proc);
  const client = await connect(`ws://${HOST}:${port}/bye`, t);
  client.close();
  await proc.waitFor(/^client left$/);
  // With no connection left, only the listening server holds the process; a second round
  // trip shows it is still there.
  await roundTrip(t, port);
  assert.equal(proc.child.exitCode, null);
  assert.ok(!proc.lines.includes('beforeExit'), 'the event loop ran empty while listening');
});

test('process: unref() lets a listening script exit; ref() holds it again', async (t) => {
  const unrefed = runChild(
    t,
    `
    const server = createServer(echoRouter());
    server.listen(0, HOST, () => print('port ' + server.address().port));
    server.unref();
    `
  );
  const reffed = runChild(
    t,
    `
    const server = createServer(echoRouter());
    server.listen(0, HOST, () => print('port ' + server.address().port));
    server.unref();
    server.ref();
    `
  );
  const { code, signal } = await unrefed.exit();
  assert.equal(signal, null);
  assert.equal(code, 0, unrefed.stderr());

  const port = await childPort(reffed);
  await roundTrip(t, port);
  assert.equal(reffed.child.exitCode, null);
  assert.ok(!reffed.lines.includes('beforeExit'), 'the event loop ran empty after ref()');
});

test('process: a server that never listens does not hold the process', async (t) => {
  const proc = runChild(t, `createServer(echoRouter()); print('created');`);
  const { code, signal } = await proc.exit();
  assert.equal(signal, null);
  assert.equal(code, 0, proc.stderr());
  assert.deepEqual(proc.lines, ['created', 'beforeExit']);
});
