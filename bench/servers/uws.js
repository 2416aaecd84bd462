'use strict';
// Benchmark server: uWebSockets.js (npm package `uws-pack`, prebuilt
// binaries), compression off, rooms via its built-in pub/sub
// (ws.subscribe / app.publish).
//   /echo    echo every message with its type
//   /fanout  on open: subscribe to "bench", send text "ready"
//   /publish app.publish("bench", message, isBinary) for every message
const port = Number(process.argv[2] || process.env.PORT || 9001);

import('uws-pack').then((uWS) => {
  const common = {
    compression: uWS.DISABLED,
    maxPayloadLength: 16 * 1024 * 1024,
    // Large enough that a subscriber is never skipped by publish() in these
    // scenarios (uWS drops messages for sockets above maxBackpressure).
    maxBackpressure: 16 * 1024 * 1024,
    idleTimeout: 0,
  };
  const app = uWS.App();
  app.ws('/echo', {
    ...common,
    message: (ws, message, isBinary) => {
      ws.send(message, isBinary);
    },
  });
  app.ws('/fanout', {
    ...common,
    open: (ws) => {
      ws.subscribe('bench');
      ws.send('ready', false);
    },
  });
  app.ws('/publish', {
    ...common,
    message: (ws, message, isBinary) => {
      app.publish('bench', message, isBinary);
    },
  });
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end();
  });
  app.listen('127.0.0.1', port, (token) => {
    if (!token) {
      console.error(`uws: failed to listen on 127.0.0.1:${port}`);
      process.exit(1);
    }
    process.stdout.write(`READY ${uWS.us_socket_local_port(token)}\n`);
  });
}).catch((err) => {
  console.error(`uws: cannot load uws-pack: ${err && err.message}`);
  process.exit(2);
});
