'use strict';

// Runs a route's middleware and handlers for a new connection, and reports what they throw.

const { WS_STATES } = require('./constants');

const { OPEN } = WS_STATES;

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

/**
 * Runs `handlers` in order for `ws`. Middleware (3 or more parameters) continues with
 * `next()` and fails with `next(err)`; other handlers continue when they return (or, if they
 * return a promise, when it settles). Events that arrive before the handlers have had the
 * chance to add listeners are held and replayed afterwards, so nothing is lost.
 */
function runHandlers(server, ws, req, handlers) {
  let i = 0;
  const fail = (err) => {
    server._reportError(err, ws, ws._context);
    server._release(ws);
  };
  const step = () => {
    while (true) {
      if (ws.readyState !== OPEN || i >= handlers.length) return server._release(ws);
      const fn = handlers[i++];
      const last = i === handlers.length;
      let result;
      try {
        if (fn.length >= 3) {
          let called = false;
          const next = (err) => {
            if (called) return;
            called = true;
            if (err !== undefined && err !== null) fail(err);
            else step();
          };
          result = fn(ws, req, next);
          if (isThenable(result)) result.then(undefined, fail);
          // A middleware that closed the connection ended the chain.
          if (!called && ws.readyState !== OPEN) server._release(ws);
          return;
        }
        result = fn(ws, req);
      } catch (err) {
        return fail(err);
      }
      if (isThenable(result)) {
        if (last && ws.listenerCount('message') > 0) {
          // Listeners are in place: deliver now, and still report a later rejection.
          server._release(ws);
          result.then(undefined, (err) => server._reportError(err, ws, ws._context));
        } else {
          result.then(step, fail);
        }
        return;
      }
    }
  };
  step();
}

module.exports = { runHandlers };
