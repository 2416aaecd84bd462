'use strict';

const { Router } = require('./lib/router');
const { Server, createServer } = require('./lib/server');
const { WebSocketConnection } = require('./lib/connection');
const { WS_OPCODES, WS_CLOSE_CODES, WS_STATES } = require('./lib/constants');

module.exports = {
  Router,
  createServer,
  Server,
  WebSocketConnection,
  WS_OPCODES,
  WS_CLOSE_CODES,
  WS_STATES,
};
