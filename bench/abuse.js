'use strict';

// What hostile clients cost the server, measured on a velocy server in a child process (so the
// RSS is its own): 10,000 connection attempts aborted midway through the handshake, 1,000
// silent TCP connections left to the handshake timeout, and a 10-second ping flood from a
// client that never reads (plus one that does). After each phase the server's RSS and its
// count of handshakes and connections in progress (`pendingConnections`) are taken again once
// it has settled. A normal client does echo round trips throughout; its worst round trip is
// reported. Prints a Markdown table.
//   node bench/abuse.js [--flood-seconds 10] [--aborts 10000] [--silent 1000]

const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const net = require('node:net');
const { performance } = require('node:perf_hooks');

const HOST = '127.0.0.1';
const HANDSHAKE_TIMEOUT = 2000;
const MAX_BACKPRESSURE = 4 * 1024 * 1024; // the default, stated for the table

if (process.argv[2] === '--server') runServer();
else main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// ---------------------------------------------------------------------------------------
// The server (child process)

function runServer() {
  const { Router, createServer } = require('..');
  const router = new Router({
    websocket: { handshakeTimeout: HANDSHAKE_TIMEOUT, maxBackpressure: MAX_BACKPRESSURE, heartbeatInterval: 0 },
  });
  let pings = 0;
  const flooders = new Set();
  router.ws('/ws/echo', (ws) => ws.on('message', (data) => ws.send(data)));
  router.ws('/ws/flood', (ws) => {
    flooders.add(ws);
    ws.on('ping', () => pings++);
    ws.on('close', () => flooders.delete(ws));
  });
  const server = createServer(router);
  const stats = () => {
    global.gc();
    const mem = process.memoryUsage();
    let buffered = 0;
    for (const ws of flooders) buffered = Math.max(buffered, ws.bufferedAmount);
    return {
      rss: mem.rss,
      heap: mem.heapUsed,
      pending: server._native.pendingConnections(),
      connections: router.getWebSocketRouter().getStats().connections,
      pings,
      buffered,
    };
  };
  process.on('message', (m) => process.send({ id: m.id, result: stats() }));
  process.on('disconnect', () => process.exit(0));
  server.listen(0, HOST, () => process.send({ port: server.address().port }));
}

// ---------------------------------------------------------------------------------------
// The driver

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}

async function main() {
  const floodSeconds = option('flood-seconds', 10);
  const aborts = option('aborts', 10000);
  const silentCount = option('silent', 1000);

  const child = fork(__filename, ['--server'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const port = await new Promise((resolve) => child.once('message', (m) => resolve(m.port)));
  let nextId = 1;
  const waiting = new Map();
  child.on('message', (m) => {
    const w = waiting.get(m.id);
    if (w) {
      waiting.delete(m.id);
      w(m.result);
    }
  });
  const stats = () =>
    new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      child.send({ id });
    });

  /**
   * Samples the server every 50 ms while `work()` runs; returns the peaks and the result. RSS
   * is read from /proc where there is one, so that it is sampled even while the server's
   * event loop is too busy to answer.
   */
  async function sampled(work) {
    const peak = { rss: 0, pending: 0, buffered: 0 };
    let running = true;
    const procRss = setInterval(() => {
      const rss = rssFromProc(child.pid);
      if (rss !== null) peak.rss = Math.max(peak.rss, rss);
    }, 50);
    const sampler = (async () => {
      while (running) {
        const s = await stats();
        peak.rss = Math.max(peak.rss, s.rss);
        peak.pending = Math.max(peak.pending, s.pending);
        peak.buffered = Math.max(peak.buffered, s.buffered);
        await delay(50);
      }
    })();
    const result = await work();
    running = false;
    clearInterval(procRss);
    await sampler;
    return { peak, result };
  }

  /** Waits until the server has no handshake in progress and only `connections` open. */
  async function settled(connections) {
    const deadline = Date.now() + 30000;
    for (;;) {
      const s = await stats();
      if (s.pending === connections && s.connections === connections) {
        await delay(1000); // let the allocator and the heap settle before the figure is taken
        return stats();
      }
      if (Date.now() > deadline) throw new Error(`the server did not settle: ${JSON.stringify(s)}`);
      await delay(50);
    }
  }

  const echo = await echoClient(port);
  const baseline = await settled(1);
  const rows = [];
  const row = (phase, peak, after, extra) => {
    rows.push({ phase, peak, after, rtt: echo.takeMaxRtt(), extra });
  };
  echo.takeMaxRtt();

  // 1. Connection attempts aborted midway: half a request, then FIN or RST (or a reset right
  //    after connecting), 500 at a time.
  {
    const half = Buffer.from(upgradeRequest('/ws/echo')).subarray(0, 80);
    const t0 = performance.now();
    const { peak } = await sampled(async () => {
      for (let i = 0; i < aborts; i += 500) {
        await Promise.all(Array.from({ length: Math.min(500, aborts - i) }, (_, j) => abortOne(port, half, (i + j) % 3)));
      }
    });
    const ms = performance.now() - t0;
    row(`${aborts.toLocaleString('en')} handshakes aborted midway`, peak, await settled(1), `${((aborts / ms) * 1000).toFixed(0)} attempts/s`);
  }

  // 2. Silent connections, closed by the server at its handshake timeout.
  {
    const { peak, result } = await sampled(async () => {
      const t0 = performance.now();
      const sockets = [];
      for (let i = 0; i < silentCount; i += 250) {
        sockets.push(...(await Promise.all(Array.from({ length: Math.min(250, silentCount - i) }, () => silentOne(port)))));
      }
      const lifetimes = await Promise.all(sockets.map((s) => s.closedAfter));
      return { all: performance.now() - t0, longest: Math.max(...lifetimes) };
    });
    row(
      `${silentCount.toLocaleString('en')} silent TCP connections (handshakeTimeout ${HANDSHAKE_TIMEOUT} ms)`,
      peak,
      await settled(1),
      `all closed by the server; longest lived ${result.longest.toFixed(0)} ms`
    );
  }

  // 3. A ping flood from a client that never reads: the server answers with pongs into its
  //    queue until that is over maxBackpressure, then stops reading it.
  {
    const before = (await stats()).pings;
    const { peak, result } = await sampled(() => flood(port, floodSeconds * 1000, false));
    const pings = (await stats()).pings - before;
    result.socket.destroy();
    row(
      `${floodSeconds} s ping flood, client not reading`,
      peak,
      await settled(1),
      `${mb(result.written)} MB of pings written, ${pings.toLocaleString('en')} read by the server; flooder queue peak ${mb(peak.buffered)} MB`
    );
  }

  // 4. The same flood from a client that reads its pongs: every ping is handled.
  {
    const before = (await stats()).pings;
    const { peak, result } = await sampled(() => flood(port, floodSeconds * 1000, true));
    const pings = (await stats()).pings - before;
    result.socket.destroy();
    row(
      `${floodSeconds} s ping flood, client reading its pongs`,
      peak,
      await settled(1),
      `${pings.toLocaleString('en')} pings handled (${Math.round(pings / floodSeconds).toLocaleString('en')}/s), ${mb(result.received)} MB of pongs`
    );
  }

  echo.close();
  child.disconnect();

  const cpus = require('node:os').cpus();
  console.log(`velocy server in a child process; ${cpus.length} × ${cpus[0].model.trim()}; node ${process.version}`);
  console.log(`baseline: RSS ${mb(baseline.rss)} MB, pendingConnections ${baseline.pending} (one echo client connected)\n`);
  console.log('| Phase | Peak RSS | RSS after | Δ vs baseline | pendingConnections after | Echo client, worst round trip | Notes |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    const delta = r.after.rss - baseline.rss;
    console.log(
      `| ${r.phase} | ${mb(r.peak.rss)} MB | ${mb(r.after.rss)} MB | ${delta >= 0 ? '+' : ''}${mb(delta)} MB | ${r.after.pending - 1} (peak ${r.peak.pending - 1}) | ${r.rtt.toFixed(1)} ms | ${r.extra} |`
    );
  }
  console.log(`\n(pendingConnections counts the echo client's connection; the table shows it minus that one.`);
  console.log(`The echo client runs in the driver process next to the hostile clients, so its round trips`);
  console.log(`include the driver's own delays. The flooding route has a 'ping' listener, so every ping`);
  console.log(`read is also an event for JS. RSS "after" is taken once the server is idle again.)`);
  if (stderr) console.log(`\nserver stderr:\n${stderr}`);
  else console.log('server stderr: empty (no panic, no error)');
}

// ---------------------------------------------------------------------------------------
// Clients

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The RSS of `pid` in bytes from /proc (Linux), or null. */
function rssFromProc(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(require('node:fs').readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function mb(bytes) {
  return (bytes / (1024 * 1024)).toFixed(1);
}

function upgradeRequest(path) {
  return (
    `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

function clientFrame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** Connects, then walks away: 0 = half a request then FIN, 1 = half then RST, 2 = RST at once. */
function abortOne(port, half, way) {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST);
    socket.on('error', () => {});
    socket.once('close', resolve);
    socket.once('connect', () => {
      if (way === 2) return socket.resetAndDestroy();
      socket.write(half, () => (way === 0 ? socket.destroy() : socket.resetAndDestroy()));
    });
  });
}

/** A connection that sends nothing; `closedAfter` resolves with its lifetime in ms. */
function silentOne(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST);
    socket.on('error', () => {});
    socket.once('connect', () => {
      const t0 = performance.now();
      socket.closedAfter = new Promise((done) => socket.once('close', () => done(performance.now() - t0)));
      socket.on('end', () => socket.destroy());
      resolve(socket);
    });
  });
}

/** Completes a handshake on a raw socket; resolves with the socket once the 101 arrived. */
function rawUpgrade(port, path) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST, () => socket.write(upgradeRequest(path)));
    let head = '';
    const onData = (chunk) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.removeListener('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(head.split('\r\n')[0]));
      resolve(socket);
    };
    socket.on('data', onData);
    socket.on('error', reject);
  });
}

/** Floods 125-byte pings for `ms`; with `read`, the pongs are read (and counted). */
async function flood(port, ms, read) {
  const socket = await rawUpgrade(port, '/ws/flood');
  socket.on('error', () => {});
  let received = 0;
  if (read) socket.on('data', (d) => (received += d.length));
  else socket.pause();
  const ping = clientFrame(0x9, Buffer.alloc(125, 0x70));
  const chunk = Buffer.concat(Array.from({ length: 500 }, () => ping));
  const end = performance.now() + ms;
  let written = 0;
  while (performance.now() < end) {
    written += chunk.length;
    if (!socket.write(chunk)) {
      // Wait for room, but never past the end of the phase (a stalled write never drains).
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, end - performance.now()));
        socket.once('drain', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    } else if (written % (chunk.length * 64) === 0) {
      await new Promise(setImmediate); // let the echo client and the sampler run
    }
  }
  return { socket, written: written - socket.writableLength, received };
}

/** A `ws` client doing echo round trips all along; `takeMaxRtt()` returns and resets the worst. */
async function echoClient(port) {
  const WebSocket = require('ws');
  const ws = new WebSocket(`ws://${HOST}:${port}/ws/echo`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let maxRtt = 0;
  let sentAt = 0;
  let open = true;
  const next = () => {
    if (!open) return;
    sentAt = performance.now();
    ws.send('echo');
  };
  ws.on('message', () => {
    maxRtt = Math.max(maxRtt, performance.now() - sentAt);
    setTimeout(next, 10);
  });
  next();
  return {
    takeMaxRtt() {
      const m = maxRtt;
      maxRtt = 0;
      return m;
    },
    close() {
      open = false;
      ws.close();
    },
  };
}
