'use strict';

// Small shared helpers for the node:test suites: servers on an ephemeral port, `ws` clients,
// raw TCP requests for malformed handshakes, and event waits that cannot hang the run.

const crypto = require('node:crypto');
const net = require('node:net');
const WebSocket = require('ws');
const { createServer } = require('..');

const HOST = '127.0.0.1';
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const DEFAULT_TIMEOUT = 5000;

/**
 * Resolves with the arguments of the next `event` on `emitter`; rejects after `timeoutMs`,
 * or on an `error` event when waiting for something else.
 */
function once(emitter, event, timeoutMs = DEFAULT_TIMEOUT) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      cleanup();
      resolve(args);
    };
    const onError = (err) => {
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.removeListener(event, onEvent);
      if (event !== 'error') emitter.removeListener('error', onError);
    };
    emitter.on(event, onEvent);
    if (event !== 'error') emitter.on('error', onError);
  });
}

/** Rejects with a clear message if `promise` does not settle within `timeoutMs`. */
function withTimeout(promise, timeoutMs = DEFAULT_TIMEOUT, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Creates a server for `router` listening on 127.0.0.1 and an ephemeral port. With `t`
 * (a node:test context) the server is closed after the test.
 */
async function listen(router, t) {
  const server = createServer(router);
  if (t) t.after(() => closeQuietly(server));
  server.listen(0, HOST);
  await once(server, 'listening');
  const { port } = server.address();
  return { server, port, url: `ws://${HOST}:${port}` };
}

/** Stops a server accepting, ignoring "not running". Open connections are left to end. */
function closeQuietly(server) {
  if (server.listening) server.close();
}

/**
 * Opens a `ws` client and resolves once it is open; rejects on an error, an unexpected HTTP
 * response (the error says its status) or a timeout. With `t` the client is terminated after
 * the test.
 */
function connect(url, t, options) {
  const ws = new WebSocket(url, options);
  if (t) t.after(() => ws.terminate());
  // What `nextMessage` reads: every message, kept from the start. A server may send at once
  // when the connection opens, in the same TCP read as its 101 response; ws then emits the
  // message right after 'open', before the code awaiting this promise can listen for it.
  received.set(ws, inbox(ws));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`timed out connecting to ${url}`));
    }, DEFAULT_TIMEOUT);
    ws.once('open', () => {
      clearTimeout(timer);
      ws.removeListener('error', onError);
      resolve(ws);
    });
    const onError = (err) => {
      clearTimeout(timer);
      reject(err);
    };
    ws.once('error', onError);
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(timer);
      const err = new Error(`unexpected response ${res.statusCode}`);
      err.statusCode = res.statusCode;
      ws.terminate();
      reject(err);
    });
  });
}

/** Messages of the clients made by `connect`, in order (see there). */
const received = new WeakMap();

/**
 * Resolves with the next message of a `ws` client as `{ data, isBinary }`: of a client made by
 * `connect`, the oldest not yet taken (none is missed); of another, the next one emitted.
 */
async function nextMessage(ws, timeoutMs = DEFAULT_TIMEOUT) {
  const kept = received.get(ws);
  if (kept !== undefined) return kept.next(timeoutMs);
  const [data, isBinary] = await once(ws, 'message', timeoutMs);
  return { data, isBinary };
}

/** A random `Sec-WebSocket-Key`. */
function wsKey() {
  return crypto.randomBytes(16).toString('base64');
}

/** The `Sec-WebSocket-Accept` a server must answer for `key` (RFC 6455 §4.2.2). */
function acceptKey(key) {
  return crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
}

/**
 * A complete upgrade request for `path`. `headers` adds or replaces headers (by exact name);
 * a value of `null` removes the header. Returns the request string.
 */
function upgradeRequest(path, headers = {}, { method = 'GET', version = 'HTTP/1.1' } = {}) {
  const base = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': wsKey(),
    'Sec-WebSocket-Version': '13',
  };
  const all = { ...base, ...headers };
  let head = `${method} ${path} ${version}\r\n`;
  for (const [name, value] of Object.entries(all)) {
    if (value !== null && value !== undefined) head += `${name}: ${value}\r\n`;
  }
  return head + '\r\n';
}

/** Parses an HTTP response head (and body, if any) from a string. */
function parseResponse(text) {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const lines = head.split('\r\n');
  const statusLine = lines[0];
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  const headers = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return {
    statusLine,
    status: m ? Number(m[1]) : NaN,
    headers,
    body: end === -1 ? '' : text.slice(end + 4),
  };
}

/**
 * Writes `data` (string or Buffer) on a raw TCP connection and resolves with everything the
 * server sent (latin1) once it ends the connection. With `untilHead`, resolves as soon as a
 * full response head has arrived and leaves the socket open: `{ text, socket }`.
 */
function rawHttp(port, data, { timeoutMs = DEFAULT_TIMEOUT, untilHead = false } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    let text = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        socket.destroy();
        reject(err);
      } else if (untilHead) {
        resolve({ text, socket });
      } else {
        socket.destroy();
        resolve(text);
      }
    };
    const timer = setTimeout(
      () => finish(new Error(`timed out after ${timeoutMs} ms; received so far: ${JSON.stringify(text.slice(0, 200))}`)),
      timeoutMs
    );
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write(data));
    socket.on('data', (chunk) => {
      text += chunk;
      if (untilHead && text.includes('\r\n\r\n')) finish();
    });
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    // A reset after the response was received still counts as a response.
    socket.on('error', (err) => (text ? finish() : finish(err)));
  });
}

/** A masked client frame (RFC 6455 §5.2), as a client must send it. */
function clientFrame(opcode, payload = Buffer.alloc(0), { fin = true } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  let header;
  if (len < 126) {
    header = Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = (fin ? 0x80 : 0) | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = (fin ? 0x80 : 0) | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  const mask = crypto.randomBytes(4);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = data[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

/**
 * Parses the unmasked frames a server sends. Returns `{ frames, rest }`, each frame
 * `{ fin, opcode, payload }`; `rest` is an incomplete frame's bytes.
 */
function parseFrames(buf) {
  const frames = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const b0 = buf[off];
    const b1 = buf[off + 1];
    let len = b1 & 0x7f;
    let pos = off + 2;
    if (len === 126) {
      if (buf.length - pos < 2) break;
      len = buf.readUInt16BE(pos);
      pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) break;
      len = Number(buf.readBigUInt64BE(pos));
      pos += 8;
    }
    if (b1 & 0x80) pos += 4; // a server must not mask, but skip a mask rather than misparse
    if (buf.length - pos < len) break;
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: buf.subarray(pos, pos + len) });
    off = pos + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/**
 * A route handler that collects the server-side connections it is given, and `next()` to
 * await them in arrival order as `{ ws, req }`:
 *   const conns = collect(); router.ws('/x', conns.handler); ... const { ws } = await conns.next();
 */
function collect() {
  const ready = [];
  const waiting = [];
  return {
    handler(ws, req) {
      const item = { ws, req };
      const w = waiting.shift();
      if (w) w(item);
      else ready.push(item);
    },
    next(timeoutMs = DEFAULT_TIMEOUT) {
      if (ready.length > 0) return Promise.resolve(ready.shift());
      return withTimeout(new Promise((resolve) => waiting.push(resolve)), timeoutMs, 'a server-side connection');
    },
  };
}

/**
 * Resolves with `{ code, reason }` (reason as a string) of the next `close` event of a `ws`
 * client or a server-side connection. Unlike `once`, it adds no `error` listener, so it does
 * not change how the server reports errors on that connection.
 */
function nextClose(emitter, timeoutMs = DEFAULT_TIMEOUT) {
  let onClose;
  const closed = new Promise((resolve) => {
    onClose = (code, reason) => resolve({ code, reason: String(reason) });
    emitter.once('close', onClose);
  });
  return withTimeout(closed, timeoutMs, 'a close event').finally(() => emitter.removeListener('close', onClose));
}

module.exports = {
  HOST,
  once,
  withTimeout,
  listen,
  closeQuietly,
  connect,
  nextMessage,
  wsKey,
  acceptKey,
  upgradeRequest,
  parseResponse,
  rawHttp,
  clientFrame,
  parseFrames,
  collect,
  nextClose,
};

/** A wake-up for one waiter: `wait(ms)` resolves at the next `poke()`, or after `ms`. */
function signal() {
  let wake = null;
  return {
    poke() {
      if (wake !== null) {
        const w = wake;
        wake = null;
        w();
      }
    },
    async wait(ms) {
      let timer;
      await new Promise((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, ms);
      });
      clearTimeout(timer);
      wake = null;
    },
  };
}

/**
 * Buffers every message of a `ws` client from now on, so that none is lost between awaits
 * (ws emits a burst of messages synchronously). `take(n)` resolves with the next `n` as
 * `{ data, isBinary }`, `next()` with the next one, `texts(n)` with the next `n` as strings;
 * each rejects if the client closes first or on a timeout, saying how many had arrived.
 * `pending()` is the number received and not taken yet.
 */
function inbox(ws) {
  const items = [];
  let closed = null;
  const { poke, wait } = signal();
  ws.on('message', (data, isBinary) => {
    items.push({ data, isBinary });
    poke();
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: String(reason) };
    poke();
  });
  async function take(n, timeoutMs = DEFAULT_TIMEOUT) {
    const deadline = Date.now() + timeoutMs;
    while (items.length < n) {
      if (closed !== null) {
        throw new Error(`closed (${closed.code} ${closed.reason}) after ${items.length} of ${n} messages`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms with ${items.length} of ${n} messages`);
      await wait(left);
    }
    return items.splice(0, n);
  }
  return {
    take,
    async next(timeoutMs) {
      return (await take(1, timeoutMs))[0];
    },
    async texts(n, timeoutMs) {
      return (await take(n, timeoutMs)).map((m) => {
        if (m.isBinary) throw new Error(`expected a text message, got binary ${m.data.toString('hex')}`);
        return m.data.toString();
      });
    },
    pending: () => items.length,
  };
}

/**
 * A route handler that files each server-side connection under its `?name=` query value, and
 * `get(name)` to await it as `{ ws, req }`:
 *   const conns = named(); router.ws('/x', conns.handler); ... const { ws } = await conns.get('a');
 */
function named() {
  const ready = new Map();
  const waiting = new Map();
  return {
    handler(ws, req) {
      const name = String(req.query.name);
      const item = { ws, req };
      ready.set(name, item);
      const w = waiting.get(name);
      if (w) {
        waiting.delete(name);
        w(item);
      }
    },
    get(name, timeoutMs = DEFAULT_TIMEOUT) {
      if (ready.has(name)) return Promise.resolve(ready.get(name));
      return withTimeout(new Promise((resolve) => waiting.set(name, resolve)), timeoutMs, `server-side connection "${name}"`);
    },
  };
}

/**
 * Completes a WebSocket handshake for `path` on a raw TCP socket and resolves with the socket
 * once the 101 response has arrived (its data listener removed, any further bytes left
 * unread). Rejects on any other response, an error or a timeout.
 */
function rawUpgrade(port, path, timeoutMs = DEFAULT_TIMEOUT) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    let head = '';
    const timer = setTimeout(() => fail(new Error(`timed out upgrading ${path}`)), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const onData = (chunk) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.removeListener('data', onData);
      socket.removeListener('error', fail);
      socket.pause();
      clearTimeout(timer);
      if (!head.startsWith('HTTP/1.1 101')) return fail(new Error(`expected 101, got ${head.split('\r\n')[0]}`));
      resolve(socket);
    };
    socket.on('data', onData);
    socket.on('error', fail);
    socket.on('connect', () => socket.write(upgradeRequest(path)));
  });
}

/**
 * Like `connect`, but the client's `inbox` is attached before the handshake completes, so a
 * message the server sends at once (from the route handler) cannot be missed. Resolves with
 * `{ client, got }`.
 */
function connectWithInbox(url, t, options) {
  const client = new WebSocket(url, options);
  if (t) t.after(() => client.terminate());
  const got = inbox(client);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`timed out connecting to ${url}`)), DEFAULT_TIMEOUT);
    const fail = (err) => {
      clearTimeout(timer);
      client.terminate();
      reject(err);
    };
    client.once('open', () => {
      clearTimeout(timer);
      client.removeListener('error', fail);
      resolve({ client, got });
    });
    client.once('error', fail);
    client.once('unexpected-response', (req, res) => fail(new Error(`unexpected response ${res.statusCode}`)));
  });
}

/**
 * Resolves once `n` of the server's connections are parked (an internal count the engine
 * keeps, `parkedCount`; there is no event for it, so it is looked at every 10 ms).
 */
function parked(server, n, timeoutMs = 5000) {
  return withTimeout(
    new Promise((resolve) => {
      const look = () => (server._native.parkedCount() === n ? resolve() : setTimeout(look, 10));
      look();
    }),
    timeoutMs,
    `${n} parked connection(s), have ${server._native.parkedCount()}`
  );
}

module.exports.parked = parked;
module.exports.inbox = inbox;
module.exports.named = named;
module.exports.rawUpgrade = rawUpgrade;
module.exports.connectWithInbox = connectWithInbox;

/**
 * A WebSocket client on a bare TCP socket: sends an upgrade request for `path` (`headers` as in
 * `upgradeRequest`) and resolves once the response head has arrived, whatever its status, with
 * `{ socket, response, next, closed, write }`. `response` is `parseResponse` of the head.
 * Bytes after a 101 are parsed as server frames (nothing is lost between the head and them);
 * `next(timeoutMs)` resolves with the next frame `{ fin, opcode, payload, at }` (`at`:
 * `performance.now()` on arrival) and rejects if the connection ends first or on a timeout.
 * `closed` resolves with `{ ended, at }` when the socket closes; `ended` is true when the
 * server ended it with a FIN (not a reset). The socket is destroyed after the test with `t`.
 */
function rawClient(port, path, { headers = {}, t, timeoutMs = DEFAULT_TIMEOUT } = {}) {
  const { performance } = require('node:perf_hooks');
  const socket = net.connect(port, HOST);
  socket.setNoDelay(true);
  if (t) t.after(() => socket.destroy());
  let ended = false;
  let buf = Buffer.alloc(0);
  let headDone = false;
  const frames = [];
  const { poke, wait } = signal();
  const closed = new Promise((resolve) => {
    socket.once('close', () => {
      resolve({ ended, at: performance.now() });
      poke();
    });
  });
  socket.on('end', () => {
    ended = true;
    poke();
  });
  socket.on('error', () => {}); // a reset shows as `closed` with `ended: false`
  const client = {
    socket,
    response: null,
    closed,
    write: (...bufs) =>
      new Promise((resolve, reject) => socket.write(Buffer.concat(bufs), (err) => (err ? reject(err) : resolve()))),
    async next(ms = DEFAULT_TIMEOUT) {
      const deadline = Date.now() + ms;
      while (frames.length === 0) {
        if (socket.destroyed || ended) throw new Error('the connection ended while waiting for a frame');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for a frame`);
        await wait(left);
      }
      return frames.shift();
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`timed out waiting for the response to ${path}`)), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!headDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        headDone = true;
        client.response = parseResponse(buf.subarray(0, end + 4).toString('latin1'));
        buf = buf.subarray(end + 4);
        clearTimeout(timer);
        resolve(client);
        if (client.response.status !== 101) return;
      }
      if (client.response.status !== 101) return;
      const at = performance.now();
      const parsed = parseFrames(buf);
      for (const f of parsed.frames) frames.push({ ...f, at });
      buf = Buffer.from(parsed.rest);
      if (parsed.frames.length) poke();
    });
    socket.once('close', () => {
      if (!headDone) fail(new Error(`connection closed before the response to ${path}`));
    });
    socket.on('connect', () => socket.write(upgradeRequest(path, headers)));
  });
}

/** `{ code, reason }` of a close frame's payload (code null when empty). */
function closeInfo(frame) {
  if (frame.payload.length < 2) return { code: null, reason: '' };
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString() };
}

module.exports.rawClient = rawClient;
module.exports.closeInfo = closeInfo;

/**
 * Runs a velocy server in a child process, so that its memory (RSS) is its own and whatever
 * the engine prints (a Rust panic goes to stderr) can be checked. `setup(velocy, commands)` is
 * serialised and run in the child (it may use only its arguments and `require`); it returns
 * the Router (or a promise of it), and may add functions to `commands`, which the parent
 * calls with `call(name, ...args)` (arguments and results go through IPC, as JSON). Built-in
 * commands: `rss()` (bytes), `stats()` (`getStats()` plus `pending`, the engine's handshakes
 * and connections not yet closed, and `rss`) and `close()` (closes the server and resolves
 * with `stats()` once its `close` event was emitted). Resolves with `{ child, port, url, call, stderr }`;
 * `stderr()` is everything the child wrote there. With `t` the child is killed after the test.
 */
async function childServer(setup, { t, timeoutMs = DEFAULT_TIMEOUT } = {}) {
  const { spawn } = require('node:child_process');
  const path = require('node:path');
  const source = `'use strict';
const velocy = require(${JSON.stringify(path.join(__dirname, '..'))});
const commands = {};
(async () => {
  const router = await (${setup.toString()})(velocy, commands);
  const server = velocy.createServer(router);
  const stats = () => ({ ...router.getWebSocketRouter().getStats(), pending: server._native.pendingConnections(), rss: process.memoryUsage.rss() });
  commands.rss = () => process.memoryUsage.rss();
  commands.stats = stats;
  commands.close = () => new Promise((resolve) => server.close(() => resolve(stats())));
  process.on('message', async ({ id, name, args }) => {
    try {
      const result = await commands[name](...args);
      process.send({ id, result });
    } catch (err) {
      process.send({ id, error: String((err && err.stack) || err) });
    }
  });
  process.on('disconnect', () => process.exit(0));
  server.listen(0, ${JSON.stringify(HOST)}, () => process.send({ port: server.address().port }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
`;
  const child = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
  if (t) t.after(() => child.kill());
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => (stderr += s));
  const replies = new Map();
  let nextId = 1;
  child.on('message', (m) => {
    const reply = replies.get(m.id);
    if (reply === undefined) return;
    replies.delete(m.id);
    if (m.error !== undefined) reply.reject(new Error(`in the child: ${m.error}`));
    else reply.resolve(m.result);
  });
  child.on('exit', (code, signal) => {
    for (const reply of replies.values()) reply.reject(new Error(`the child exited (${code ?? signal}): ${stderr}`));
    replies.clear();
  });
  const call = (name, ...args) => {
    const id = nextId++;
    const reply = new Promise((resolve, reject) => {
      replies.set(id, { resolve, reject });
      child.send({ id, name, args });
    });
    return withTimeout(reply, timeoutMs, `child command ${name}`);
  };
  const started = new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m.port === undefined) return;
      child.removeListener('message', onMessage);
      resolve(m.port);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`the child exited (${code}) before listening: ${stderr}`)));
  });
  const port = await withTimeout(started, timeoutMs, 'the child server to listen');
  return { child, port, url: `ws://${HOST}:${port}`, call, stderr: () => stderr };
}

/**
 * Resolves once `predicate()` (sync or async) is truthy, checking every `intervalMs`; rejects
 * after `timeoutMs` saying `what`. For state that has no event, like a count in another
 * process.
 */
async function waitFor(predicate, what, { timeoutMs = DEFAULT_TIMEOUT, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

module.exports.childServer = childServer;
module.exports.waitFor = waitFor;
