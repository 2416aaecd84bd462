'use strict';
// Benchmark server: the `ws` npm package (perMessageDeflate off).
//   /echo    echo every message with its type
//   /fanout  on open: join room "bench", send text "ready"
//   /publish broadcast every message to room "bench" — ws has no rooms, so
//            the room is a Set of sockets and publishing loops over it
//            (the idiomatic ws way).
const http = require('node:http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 9001);
const noop = () => {};

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const room = new Set();

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?', 1)[0];
  if (path !== '/echo' && path !== '/fanout' && path !== '/publish') {
    socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => onOpen(ws, path));
});

function onOpen(ws, path) {
  ws.on('error', noop);
  if (path === '/echo') {
    ws.on('message', (data, isBinary) => {
      ws.send(data, { binary: isBinary });
    });
  } else if (path === '/fanout') {
    room.add(ws);
    ws.on('close', () => room.delete(ws));
    ws.send('ready');
  } else {
    ws.on('message', (data, isBinary) => {
      const opts = { binary: isBinary };
      for (const peer of room) peer.send(data, opts);
    });
  }
}

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
