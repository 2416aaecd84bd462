'use strict';

// An echo server: every message on /echo comes back with the same type (text as text, binary
// as binary). It is the server the Autobahn|Testsuite runs against:
//
//   node examples/echo-server.js [port]        (or PORT=9001; default 9001)
//   /work/shared/tools/autobahn/run ws://127.0.0.1:9001/echo

const { Router, createServer } = require('..');

const HOST = '127.0.0.1';
const port = Number(process.argv[2] || process.env.PORT || 9001);

const router = new Router();

router.ws('/echo', (ws) => {
  ws.on('message', (data, isBinary) => (isBinary ? ws.sendBinary(data) : ws.send(data)));
});

const server = createServer(router);

server.on('error', (err) => {
  console.error(`echo-server: ${err.message}`);
  process.exit(1);
});

server.listen(port, HOST, () => {
  const { port: bound } = server.address();
  console.log(`echo server listening on ws://${HOST}:${bound}/echo`);
});

// Stop accepting and let open connections finish on Ctrl-C / SIGTERM.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => server.close(() => process.exit(0)));
}
