'use strict';
// Benchmark server: velocy — this repository's package (Rust engine via a
// napi-rs addon), loaded from the repository root. Uses only the public API
// documented in docs/WEBSOCKET.md.
//   /echo    echo every message with its type (through the JS 'message'
//            callback, the pattern apps use)
//   /fanout  on open: join room "bench", send text "ready"
//   /publish router.room("bench").broadcast(message) for every message
//            (a string is broadcast as text, a Buffer as binary)
const path = require('node:path');

const port = Number(process.argv[2] || process.env.PORT || 9001);
const root = path.resolve(__dirname, '..', '..');

let velocy;
try {
  velocy = require(root);
} catch (err) {
  console.error(`velocy: cannot load the package at ${root} (is the addon built?): ${err && err.message}`);
  process.exit(2);
}
const { Router, createServer } = velocy;

const router = new Router();
const noop = () => {};

router.ws('/echo', (ws) => {
  ws.on('error', noop);
  ws.on('message', (data, isBinary) => {
    if (isBinary) ws.sendBinary(data);
    else ws.send(data);
  });
});

router.ws('/fanout', (ws) => {
  ws.on('error', noop);
  ws.join('bench');
  ws.send('ready');
});

router.ws('/publish', (ws) => {
  ws.on('error', noop);
  ws.on('message', (data) => {
    router.room('bench').broadcast(data);
  });
});

const server = createServer(router);
let announced = false;
const ready = (err) => {
  if (announced) return;
  if (err instanceof Error) {
    console.error(`velocy: listen failed: ${err.message}`);
    process.exit(1);
  }
  announced = true;
  let actual = port;
  try {
    const a = typeof server.address === 'function' ? server.address() : null;
    if (a && a.port) actual = a.port;
  } catch (_) { /* keep the requested port */ }
  process.stdout.write(`READY ${actual}\n`);
};
try {
  // Node-style (port, host, callback): bind loopback only.
  server.listen(port, '127.0.0.1', ready);
} catch (_) {
  // The documented minimal form is listen(port, callback).
  server.listen(port, ready);
}
