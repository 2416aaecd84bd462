//! What the JS thread keeps of a server: its own map of open connections (sends from JS find
//! their connection without the hub's lock), the batch of events being handed to JS, and the
//! connections written to while a batch is handled (corked: one write each when it ends).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::conn::{Conn, ConnId, IdHash, Sent};
use crate::event::{self, flag, kind, Event, Log};
use crate::hub::fanout::Job;
use crate::hub::Hub;

pub struct Local {
    pub hub: Arc<Hub>,
    /// Connections JS knows as open: added when their open event is handed over, removed
    /// with their close event.
    conns: HashMap<ConnId, Arc<Conn>, IdHash>,
    /// While JS handles a batch, sends are queued and written together by `uncork`, so the
    /// replies to a batch leave in one write per connection.
    corked: bool,
    dirty: Vec<Arc<Conn>>,
    /// Events taken from the hub and not all handed to JS yet, and where the next one starts.
    batch: Log,
    pos: usize,
    /// Bytes of message events handed over per connection in the current drain.
    taken: Vec<(ConnId, usize)>,
    /// UTF-8 of the string being sent (reused; see `fast::send_text`).
    pub scratch: Vec<u8>,
}

/// What one drain handed to JS.
pub struct Drained {
    /// Bytes of records written to the arena.
    pub filled: usize,
    /// Events that travel beside the log, in record order.
    pub beside: Vec<Event>,
}

impl Local {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub, conns: HashMap::default(), corked: false, dirty: Vec::new(), batch: Log::default(), pos: 0, taken: Vec::new(), scratch: Vec::new() }
    }

    pub fn conn(&self, id: ConnId) -> Option<&Arc<Conn>> {
        self.conns.get(&id)
    }

    /// Copies whole records into `arena` until it is full or no event waits; corks sends
    /// until `uncork`. The arena must hold the largest record (`record_len(INLINE_MAX)`).
    pub fn drain(&mut self, arena: &mut [u8]) -> Drained {
        self.corked = true;
        if self.pos >= self.batch.bytes.len() {
            self.hub.events.take(&mut self.batch);
            self.pos = 0;
        }
        let mut filled = 0;
        let mut weight = 0;
        let mut beside = Vec::new();
        self.taken.clear();
        while self.pos < self.batch.bytes.len() {
            let rec = event::record_at(&self.batch.bytes, self.pos);
            let len = rec.raw.len();
            if filled + len > arena.len() {
                break;
            }
            arena[filled..filled + len].copy_from_slice(rec.raw);
            filled += len;
            self.pos += len;
            let (kind, id) = (rec.kind, rec.id);
            let mut w = rec.weight();
            if rec.flags & flag::BESIDE != 0 {
                // Records beside the log and their events are pushed together, in order.
                let Some(ev) = self.batch.beside.pop_front() else { continue };
                w = ev.weight();
                beside.push(ev);
            }
            weight += w;
            match kind {
                kind::OPEN => {
                    if let Some(c) = self.hub.get(id) {
                        self.conns.insert(id, c);
                    }
                }
                kind::CLOSE => {
                    // JS learns of the close in this batch: the hub forgets it now, in step.
                    self.hub.forget(id);
                    self.conns.remove(&id);
                }
                kind::TEXT | kind::BINARY | kind::PING | kind::PONG => match self.taken.last_mut() {
                    Some((last, t)) if *last == id => *t += w,
                    _ => self.taken.push((id, w)),
                },
                _ => {}
            }
        }
        self.hub.events.delivered(weight);
        self.settle_taken();
        Drained { filled, beside }
    }

    /// Tells each connection how much of its events JS took, once per connection.
    fn settle_taken(&mut self) {
        let taken = &mut self.taken;
        taken.sort_unstable_by_key(|(id, _)| *id);
        let mut i = 0;
        while i < taken.len() {
            let (id, mut w) = taken[i];
            i += 1;
            while i < taken.len() && taken[i].0 == id {
                w += taken[i].1;
                i += 1;
            }
            if let Some(conn) = self.conns.get(&id) {
                conn.delivered(w);
            }
        }
    }

    /// Ends a batch: writes what was sent while it was handled. True when more events wait.
    pub fn uncork(&mut self) -> bool {
        self.corked = false;
        for conn in self.dirty.drain(..) {
            conn.flush();
        }
        self.hub.events.finish()
    }

    /// Sends a frame to one connection: straight to its socket, or behind pending broadcasts
    /// so that the peer sees messages in the order JS produced them.
    /// Returns false when the connection is closed, or (like a Node stream's `write`) when
    /// the peer's queue is now over `maxBackpressure`: the frame is queued all the same and
    /// a `drain` event follows once the queue is back under the limit.
    pub fn send(&mut self, id: ConnId, opcode: u8, payload: &[u8]) -> bool {
        let Some(conn) = self.conns.get(&id) else { return false };
        let limit = self.hub.config.max_backpressure();
        if !self.hub.fanout.is_busy() {
            // One lock: queue, and learn whether a write must start and the limit is passed.
            return match conn.queue_within(opcode, payload, limit, !self.corked) {
                Sent::Closed => false,
                Sent::Queued { start_write, over_limit } => {
                    // Corked: the write starts when the batch ends (uncork).
                    if start_write {
                        self.dirty.push(conn.clone());
                    }
                    !over_limit
                }
            };
        }
        let conn = conn.clone();
        let mut out = conn.outbox();
        if !out.is_open() {
            return false;
        }
        // Deferred frames are not in the outbox yet: count this one too.
        let over_limit = out.buffered() + payload.len() > limit;
        if over_limit {
            out.want_drain(limit);
        }
        drop(out);
        let Ok(rt) = super::runtime() else { return false };
        let _rt = rt.enter();
        self.hub.fanout.submit(Job::Frame { conn, opcode, payload: Bytes::copy_from_slice(payload) });
        !over_limit
    }
}

