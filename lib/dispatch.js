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
 *
 * Plain handlers that return synchronously (the common case) run in a loop that creates
 * nothing per connection; the first middleware or promise hands over to `runFrom`.
 */
function runHandlers(server, ws, req, handlers) {
  for (let i = 0; i < handlers.length; i++) {
    if (ws.readyState !== OPEN) break;
    const fn = handlers[i];
    if (fn.length >= 3) return runFrom(server, ws, req, handlers, i);
    let result;
    try {
      result = fn(ws, req);
    } catch (err) {
      return failed(server, ws, req, err);
    }
    if (isThenable(result)) return settled(server, ws, req, handlers, i + 1, result);
  }
  server._release(ws);
}

/** `runHandlers` from handler `start` on, with `next` callbacks and promises. */
function runFrom(server, ws, req, handlers, start) {
  let i = start;
  const fail = (err) => failed(server, ws, req, err);
  const step = () => {
    while (true) {
      if (ws.readyState !== OPEN || i >= handlers.length) return server._release(ws);
      const fn = handlers[i++];
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
      if (isThenable(result)) return settled(server, ws, req, handlers, i, result);
    }
  };
  step();
}

/**
 * A handler returned the promise `result`; `next` is the index of the handler after it. The
 * chain goes on when it settles, except after the last handler once `message` listeners are
 * in place: held events are delivered at once, and a later rejection is still reported.
 */
function settled(server, ws, req, handlers, next, result) {
  if (next === handlers.length && ws.listenerCount('message') > 0) {
    server._release(ws);
    result.then(undefined, (err) => server._reportError(err, ws, server._context(ws, req)));
    return;
  }
  result.then(
    () => runFrom(server, ws, req, handlers, next),
    (err) => failed(server, ws, req, err),
  );
}

/** A handler failed: the error is reported and the events held for `ws` are delivered. */
function failed(server, ws, req, err) {
  server._reportError(err, ws, server._context(ws, req));
  server._release(ws);
}

module.exports = { runHandlers };
