'use strict';

// The offline message queue: messages sent with `wsServer.sendTo(id, data)` to a client that
// is not connected are kept for it and delivered, in order and before anything else, when a
// connection with that id opens again (ids come from the `identify(req)` option).
//
// Bounds: at most `maxQueueSize` messages per id (when full, the oldest is dropped to make
// room: the newest messages are kept); at most `maxQueuedMessages` in all (when full, new
// messages are refused and sendTo returns false); a message older than `queueTTL` ms expires.

const { toMessage } = require('./validation');

class MessageQueue {
  constructor(options) {
    this._options = options;
    /** id -> array of { payload, binary, at } in send order */
    this._queues = new Map();
    this._total = 0;
    this._sweeper = null;
  }

  /** Messages queued now (expired ones are discarded first). */
  get size() {
    this._expire(Date.now());
    return this._total;
  }

  /** Queues a message for `id`. Returns false if refused (total cap reached). */
  push(id, data, options) {
    const { maxQueueSize, maxQueuedMessages } = this._options;
    let [payload, binary] = toMessage(data, options != null && options.binary, 'data');
    if (typeof payload !== 'string') payload = Buffer.from(payload); // the caller may reuse its buffer
    const now = Date.now();
    this._expire(now);
    if (maxQueueSize === 0) return false;
    let q = this._queues.get(id);
    if (q !== undefined && q.length >= maxQueueSize) {
      q.shift();
      this._total--;
    } else if (this._total >= maxQueuedMessages) {
      return false;
    }
    if (q === undefined) {
      q = [];
      this._queues.set(id, q);
    }
    q.push({ payload, binary, at: now });
    this._total++;
    this._startSweeper();
    return true;
  }

  /** Removes and returns the messages queued for `id`, oldest first. */
  take(id) {
    const q = this._queues.get(id);
    if (q === undefined) return null;
    this._queues.delete(id);
    this._total -= q.length;
    const cutoff = Date.now() - this._options.queueTTL;
    return q.filter((m) => m.at > cutoff);
  }

  /** Applies new limits (trimming queues that are now over them). */
  configure(options) {
    this._options = options;
    for (const [id, q] of this._queues) {
      while (q.length > options.maxQueueSize) {
        q.shift();
        this._total--;
      }
      if (q.length === 0) this._queues.delete(id);
    }
  }

  clear() {
    this._queues.clear();
    this._total = 0;
    this._stopSweeper();
  }

  _expire(now) {
    const cutoff = now - this._options.queueTTL;
    for (const [id, q] of this._queues) {
      let n = 0;
      while (n < q.length && q[n].at <= cutoff) n++;
      if (n === 0) continue;
      q.splice(0, n);
      this._total -= n;
      if (q.length === 0) this._queues.delete(id);
    }
    if (this._total === 0) this._stopSweeper();
  }

  // Expired messages are freed even if nobody calls us: one timer per queue, not per message,
  // and it never keeps the process alive.
  _startSweeper() {
    if (this._sweeper !== null) return;
    const every = Math.max(1000, Math.min(this._options.queueTTL, 60000));
    this._sweeper = setInterval(() => this._expire(Date.now()), every);
    this._sweeper.unref();
  }

  _stopSweeper() {
    if (this._sweeper !== null) {
      clearInterval(this._sweeper);
      this._sweeper = null;
    }
  }
}

module.exports = { MessageQueue };
