'use strict';

// Measures what one broadcast costs the JS thread: a room of N members (default 10,000 raw
// clients in a child process), B broadcasts of 1 KiB, timed around `room.broadcast()` only.
// Also reports when every member has received every message.
//   node bench/broadcast-cost.js [members=10000] [broadcasts=1000]

const { spawn } = require('node:child_process');
const { Router, createServer } = require('..');

const members = Number(process.argv[2] || 10000);
const broadcasts = Number(process.argv[3] || 1000);

if (process.argv[2] === '--client') {
  runClient(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
} else {
  runServer();
}

function runServer() {
  const router = new Router({ websocket: { heartbeatInterval: 0 } });
  let joined = 0;
  let onAllJoined;
  const allJoined = new Promise((r) => (onAllJoined = r));
  router.ws('/fanout', (ws) => {
    ws.join('bench');
    if (++joined === members) onAllJoined();
  });
  const server = createServer(router);
  server.listen(0, '127.0.0.1', async () => {
    const { port } = server.address();
    const frameBytes = 1024 + 4;
    const child = spawn(process.execPath, [__filename, '--client', port, members, frameBytes * broadcasts], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await allJoined;
    const room = router.room('bench');
    const payload = Buffer.alloc(1024, 'x').toString();
    const times = [];
    const start = process.hrtime.bigint();
    for (let i = 0; i < broadcasts; i++) {
      const t0 = process.hrtime.bigint();
      room.broadcast(payload);
      times.push(Number(process.hrtime.bigint() - t0) / 1000);
      // Yield now and then so the event loop runs as it would in an app.
      if (i % 50 === 49) await new Promise(setImmediate);
    }
    const jsTotal = Number(process.hrtime.bigint() - start) / 1e6;
    await new Promise((r) => child.on('exit', r));
    const deliveredMs = Number(out.trim().split(' ')[1]);
    times.sort((a, b) => a - b);
    const pct = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
    console.log(`room of ${members} members, ${broadcasts} broadcasts of 1 KiB`);
    console.log(`JS time per broadcast: median ${pct(0.5)} µs, p99 ${pct(0.99)} µs (all broadcasts issued in ${jsTotal.toFixed(0)} ms)`);
    console.log(`all ${members * broadcasts} deliveries received ${deliveredMs.toFixed(0)} ms after the client started counting`);
    server.close();
    router.getWebSocketRouter().closeAll();
  });
}

function runClient(port, n, expectedBytes) {
  const net = require('node:net');
  const req =
    'GET /fanout HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  let done = 0;
  let t0 = 0;
  let open = 0;
  const connectBatch = (from) => {
    for (let i = from; i < Math.min(n, from + 500); i++) {
      const s = net.connect(port, '127.0.0.1');
      let got = 0;
      let headDone = false;
      s.on('connect', () => s.write(req));
      s.on('data', (d) => {
        if (!headDone) {
          const end = d.indexOf('\r\n\r\n');
          if (end === -1) return;
          headDone = true;
          d = d.subarray(end + 4);
          if (++open === n) t0 = performance.now();
          else if (open % 500 === 0 || open === n) connectBatch(open);
        }
        got += d.length;
        if (got >= expectedBytes) {
          s.destroy();
          if (++done === n) {
            process.stdout.write(`done ${performance.now() - t0}\n`);
            process.exit(0);
          }
        }
      });
      s.on('error', () => {});
    }
  };
  connectBatch(0);
}
