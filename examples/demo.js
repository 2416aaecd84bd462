'use strict';

// The demo: the documented chat application on ws://localhost:3000/ws/chat and the Quick
// Start echo route on ws://localhost:3001/ws/echo. Stop with Ctrl-C.

require('./chat');

const { Router, createServer } = require('velocy');

const router = new Router();

router.ws('/ws/echo', (ws, req) => {
  ws.on('message', (data) => {
    ws.send(`Echo: ${data}`);
  });
});

const port = Number(process.env.ECHO_PORT || 3001);
createServer(router).listen(port, () => {
  console.log(`Echo server running on ws://localhost:${port}/ws/echo`);
});
