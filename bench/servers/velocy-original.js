'use strict';
// Benchmark server: the original pure-JS velocy@0.3.0 from npm (installed
// under the alias `velocy-original`).
//   /echo    echo every message with its type
//   /fanout  on open: join room "bench", send text "ready"
//   /publish broadcast every message to room "bench"
// In 0.3.0 the Router has no room() helper; the working broadcast path is
// router.wsRouter.room(name).broadcast(data, { binary }) (WebSocketRouter →
// WebSocketServer.broadcastToRoom, which calls sendBinary when binary is set).
const { Router, createServer } = require('velocy-original');

const port = Number(process.argv[2] || process.env.PORT || 9001);
const noop = () => {};

const router = new Router();

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
  ws.on('message', (data, isBinary) => {
    router.wsRouter.room('bench').broadcast(data, { binary: isBinary });
  });
});

const server = createServer(router);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
