//! A connection as the rest of the core sees it: its id and its outbound queue. No I/O loop
//! lives here (that is `task.rs`).
//!
//! Writes need no hop to the connection's task: whoever queues a frame may write it straight to
//! the socket with a non-blocking call while holding the queue's lock, which keeps frames in
//! order. Only what the socket does not take at once stays queued, and the task is woken to
//! finish it when the socket becomes writable. Several frames queued together leave in one
//! vectored write.

pub mod parking;
pub mod socket;
pub mod task;
pub mod timer;
pub mod tls;

use std::collections::VecDeque;
use std::hash::Hasher;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::frame;
use crate::protocol::route::RouteId;
use socket::{Io, Socket};

/// A connection id: unique for the life of the process, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Connection ids are sequential: a multiplicative mix spreads them over the table.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Hashing for maps keyed by `ConnId` (cheaper than the default SipHash; ids are not chosen
/// by peers, so there is nothing to defend against).
pub type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// Frames waiting to be written, in order.
#[derive(Default)]
pub struct Outbox {
    /// Frames shared with other connections (broadcasts), or earlier owned frames.
    chunks: VecDeque<Bytes>,
    /// Owned frames appended after the last shared one; coalesced into one buffer.
    tail: BytesMut,
    /// Bytes queued and not yet written.
    buffered: usize,
    /// A close frame is queued: nothing may follow it (RFC 6455 §5.5.1).
    closing: bool,
    /// Writing failed or the connection ended; further frames are dropped.
    dead: bool,
    /// `send` reported backpressure: once `buffered` falls to this, a drain is due.
    drain_at: Option<usize>,
    /// A drain is due: the task reports it to JS.
    drained: bool,
    /// The socket refused a write: until the task, waiting for it to become writable, has
    /// written again, other writers only queue (no system call that would fail the same way).
    blocked: bool,
}

/// At most this many buffers go into one vectored write.
const MAX_IOV: usize = 64;

impl Outbox {
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether new frames are accepted.
    pub fn is_open(&self) -> bool {
        !self.closing && !self.dead
    }

    /// Whether the connection has ended (or failed): nothing is written any more.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Remembers that a sender was told to wait until `buffered` is at most `limit`.
    pub fn want_drain(&mut self, limit: usize) {
        self.drain_at = Some(limit);
    }

    /// True once after the queue fell back under the limit a sender was told about.
    pub fn take_drained(&mut self) -> bool {
        std::mem::take(&mut self.drained)
    }

    /// Queues one frame, encoded here. Returns false (and queues nothing) once closing.
    pub fn push(&mut self, opcode: u8, payload: &[u8]) -> bool {
        if !self.is_open() {
            return false;
        }
        let before = self.tail.len();
        frame::encode_into(&mut self.tail, opcode, payload);
        self.buffered += self.tail.len() - before;
        if opcode == frame::OP_CLOSE {
            self.closing = true;
        }
        true
    }

    /// Queues an already encoded frame, shared with other connections.
    pub fn push_shared(&mut self, frame: Bytes) -> bool {
        if !self.is_open() {
            return false;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.buffered += frame.len();
        self.chunks.push_back(frame);
        true
    }

    /// Writes as much as the socket takes without blocking. `Ok(true)` when everything
    /// queued is written. `io`: the connection's task, with the socket's registration (see
    /// `blocked`).
    pub fn flush(&mut self, socket: &Socket, io: Option<&Io>) -> io::Result<bool> {
        if self.blocked && io.is_none() {
            return Ok(self.buffered == 0);
        }
        while self.buffered > 0 {
            let res = match io {
                Some(io) => self.write_some(|iov| io.write(iov)),
                None => self.write_some(|iov| socket.send(iov)),
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => self.blocked = false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.kill();
                    return Err(e);
                }
            }
        }
        self.release_memory();
        Ok(true)
    }

    /// Hands the queued bytes, as one vectored write, to `write` and drops what it took.
    fn write_some(&mut self, write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>) -> io::Result<usize> {
        // Only the slots used are written: setting up all of the 1 KiB array cost more than the
        // rest of a one-frame write.
        let mut iov = [MaybeUninit::<IoSlice<'_>>::uninit(); MAX_IOV];
        let mut n = 0;
        for c in self.chunks.iter().take(MAX_IOV - 1) {
            iov[n].write(IoSlice::new(c));
            n += 1;
        }
        if n < MAX_IOV - 1 && !self.tail.is_empty() {
            iov[n].write(IoSlice::new(&self.tail));
            n += 1;
        }
        // SAFETY: the first `n` slots were written above, and `MaybeUninit<T>` has `T`'s layout.
        let iov = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), n) };
        let written = write(iov)?;
        self.consume(written);
        Ok(written)
    }

    /// Gives memory back once idle: a connection holds no write buffer between bursts.
    fn release_memory(&mut self) {
        if self.tail.capacity() > 0 {
            self.tail = BytesMut::new();
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.buffered -= n;
        if self.drain_at.is_some_and(|limit| self.buffered <= limit) {
            self.drain_at = None;
            self.drained = true;
        }
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n);
                    return;
                }
            }
        }
    }

    /// Drops everything queued and refuses more.
    pub fn kill(&mut self) {
        self.dead = true;
        self.chunks = VecDeque::new();
        self.tail = BytesMut::new();
        self.buffered = 0;
    }
}

/// A wake-up for a connection's task that any thread can give. A wake-up given while the task
/// is busy is kept for its next wait. The task's state holds nothing for it (a waiting
/// future would cost every idle connection its size): the task polls it, and its waker is
/// kept here.
#[derive(Default)]
pub struct Wake {
    pending: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Wake {
    pub fn notify(&self) {
        self.pending.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            w.wake_by_ref();
        }
    }

    /// Ready (and reset) once a wake-up was given since the last time it was ready.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        {
            let mut w = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        // A wake-up given before the waker was stored found none to call.
        if self.pending.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What became of a frame JS sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The connection is closing or gone: nothing was queued.
    Closed,
    Queued { start_write: bool, over_limit: bool },
}

/// What became of a frame offered to a connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued; `flush` when nothing was queued before (no write is under way).
    Yes { flush: bool },
    /// Not queued: the peer already has more than the limit waiting.
    OverLimit,
    /// Not queued: the connection is closing or gone.
    Closed,
}

/// What the rest of the core holds of a connection.
pub struct Conn {
    pub id: ConnId,
    /// The route that accepted the connection.
    pub route: RouteId,
    pub io: Socket,
    /// The TLS session of a wss:// connection (boxed: plain connections pay one pointer).
    /// Lock order: outbox, then TLS.
    pub tls: Option<Box<Mutex<rustls::ServerConnection>>>,
    out: Mutex<Outbox>,
    /// Wakes the connection's task: frames are left to write, or a close or terminate is asked.
    pub wake: Wake,
    terminate: AtomicBool,
    /// A deadline the task armed has passed (see `timer`).
    timer_due: AtomicBool,
    /// JS listens for `ping` events on this connection; otherwise pings are answered here
    /// and cost JS nothing (a ping flood cannot crowd out other connections' events).
    pub ping_events: AtomicBool,
    /// Bytes of this connection's events waiting for JS; above `CONNECTION_QUEUE_BUDGET` the
    /// task stops reading until JS has taken them (per-connection fairness).
    pub undelivered: AtomicUsize,
    /// A quiet connection's loop state while it has no task (see `task::park`).
    parked: Mutex<Option<task::Parked>>,
    /// The socket was added to the parked connections' poller (`parking`) once already.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    parks_polled: AtomicBool,
}

impl Conn {
    pub fn new(id: ConnId, route: RouteId, io: Socket, tls: Option<rustls::ServerConnection>) -> Self {
        Self { id, route, io, tls: tls.map(|t| Box::new(Mutex::new(t))), out: Mutex::new(Outbox::default()), wake: Wake::default(), terminate: AtomicBool::new(false), timer_due: AtomicBool::new(false), ping_events: AtomicBool::new(false), undelivered: AtomicUsize::new(0), parked: Mutex::new(None), parks_polled: AtomicBool::new(false) }
    }

    pub fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding the lock cannot leave the queue half-written in a way that
        // matters more than losing the connection, so a poisoned lock is used as is.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame and writes what the socket takes now. False if the connection no longer
    /// accepts frames.
    pub fn send(&self, opcode: u8, payload: &[u8]) -> bool {
        let mut out = self.outbox();
        if !out.push(opcode, payload) {
            return false;
        }
        self.flush_locked(&mut out, opcode == frame::OP_CLOSE);
        true
    }

    /// Queues a frame without writing; true if the caller must `flush` (nothing was queued
    /// before, so no write is under way).
    pub fn queue(&self, opcode: u8, payload: &[u8]) -> bool {
        let mut out = self.outbox();
        let idle = out.buffered() == 0;
        out.push(opcode, payload) && (idle || opcode == frame::OP_CLOSE)
    }

    /// Queues a frame from JS under one lock: whether it was taken, whether the caller must
    /// start a write (nothing was queued before, or it is a close the task must act on), and
    /// whether the queue is now over `limit` (then a `drain` is due once it falls back).
    /// With `write_now`, what the socket takes is written here, before the limit is checked,
    /// so `over_limit` counts only what the socket did not take.
    pub fn queue_within(&self, opcode: u8, payload: &[u8], limit: usize, write_now: bool) -> Sent {
        let mut out = self.outbox();
        let idle = out.buffered() == 0;
        if !out.push(opcode, payload) {
            return Sent::Closed;
        }
        let mut start_write = idle || opcode == frame::OP_CLOSE;
        if write_now {
            // Write what the socket takes now, even behind earlier frames: then the limit
            // counts only bytes the socket really refused.
            self.flush_locked(&mut out, opcode == frame::OP_CLOSE);
            start_write = false;
        }
        let over_limit = out.buffered() > limit;
        if over_limit {
            out.want_drain(limit);
        }
        Sent::Queued { start_write, over_limit }
    }

    /// Queues a shared frame unless more than `limit` bytes are already waiting.
    pub fn queue_shared_within(&self, frame: Bytes, limit: usize) -> Queued {
        let mut out = self.outbox();
        if !out.is_open() {
            return Queued::Closed;
        }
        if out.buffered() > limit {
            return Queued::OverLimit;
        }
        let idle = out.buffered() == 0;
        out.push_shared(frame);
        Queued::Yes { flush: idle }
    }

    /// Closes a peer that does not keep up: close frame 1008, after what is already queued.
    pub fn close_slow_consumer(&self) {
        self.send(frame::OP_CLOSE, &frame::close_payload(Some(1008), b"Slow consumer"));
    }

    /// Writes what the socket takes now; the task finishes the rest.
    pub fn flush(&self) {
        let mut out = self.outbox();
        let closing = out.is_closing();
        self.flush_locked(&mut out, closing);
    }

    /// The TLS session, when there is one.
    pub fn tls(&self) -> Option<MutexGuard<'_, rustls::ServerConnection>> {
        self.tls.as_ref().map(|t| t.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether bytes are waiting to be written: queued frames, or TLS records not yet sent.
    pub fn wants_write(&self, out: &Outbox) -> bool {
        out.buffered() > 0 || self.tls().is_some_and(|t| t.wants_write())
    }

    /// Writes what the socket takes now, through TLS when the connection has it. `io`: the
    /// connection's task, with the socket's registration.
    pub fn write_out(&self, out: &mut Outbox, io: Option<&Io>) -> io::Result<bool> {
        let Some(mut tls) = self.tls() else { return out.flush(&self.io, io) };
        let res = tls::flush(&mut tls, out, &self.io, io);
        if res.is_err() {
            out.kill();
        }
        res
    }

    fn flush_locked(&self, out: &mut Outbox, always_wake: bool) {
        match self.write_out(out, None) {
            Ok(true) if !always_wake && !out.drained => {}
            // Partly written, failed, or a close the task must act on: the task takes over.
            _ => self.wake.notify(),
        }
    }

    /// Asks the task to drop the connection at once, without a close handshake.
    pub fn terminate(&self) {
        self.terminate.store(true, Ordering::Release);
        self.outbox().kill();
        self.wake.notify();
    }

    /// JS took `bytes` of this connection's events: wake the task if that lets it read again.
    pub fn delivered(&self, bytes: usize) {
        let before = self.undelivered.fetch_sub(bytes, Ordering::AcqRel);
        if before > crate::event::CONNECTION_QUEUE_BUDGET && before - bytes <= crate::event::CONNECTION_QUEUE_BUDGET {
            self.wake.notify();
        }
    }

    /// A deadline the task armed has passed: wake it to act on it.
    pub fn fire_timer(&self) {
        self.timer_due.store(true, Ordering::Release);
        self.wake.notify();
    }

    /// True once after `fire_timer`. Asked on every turn of the connection's loop and rarely
    /// true: a plain load first, the swap only when set (a flag set meanwhile comes with a
    /// wake-up, so the next turn sees it).
    pub fn take_timer_due(&self) -> bool {
        self.timer_due.load(Ordering::Acquire) && self.timer_due.swap(false, Ordering::AcqRel)
    }

    pub fn is_terminated(&self) -> bool {
        self.terminate.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked connection costs its state and its timer entry: the state (with Arc's two
    /// counts) is kept within jemalloc's 224-byte size class.
    #[test]
    fn a_connection_fits_a_224_byte_allocation() {
        assert!(std::mem::size_of::<Conn>() + 16 <= 224, "Conn is {} bytes", std::mem::size_of::<Conn>());
    }

    #[test]
    fn wake_is_kept_until_polled_and_calls_the_waker() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        use std::task::Wake as TaskWake;
        struct Count(AtomicUsize);
        impl TaskWake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let w = super::Wake::default();
        // Given before anyone waits: kept for the first poll.
        w.notify();
        assert!(w.poll(&mut cx).is_ready());
        assert!(w.poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // Given while waiting: the waker is called, the next poll is ready, once.
        w.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(w.poll(&mut cx).is_ready());
        assert!(w.poll(&mut cx).is_pending());
    }

    #[test]
    fn push_and_consume_keep_order_and_counts() {
        let mut o = Outbox::default();
        assert!(o.push(frame::OP_TEXT, b"ab"));
        assert!(o.push_shared(Bytes::from_static(&[0x82, 1, 9])));
        assert!(o.push(frame::OP_TEXT, b"c"));
        assert_eq!(o.buffered(), 4 + 3 + 3);
        o.consume(5);
        assert_eq!(o.buffered(), 5);
        assert_eq!(&o.chunks[0][..], &[1, 9]);
        o.consume(2);
        assert_eq!(&o.tail[..], &[0x81, 1, b'c']);
        assert!(o.push(frame::OP_CLOSE, &[3, 232]));
        assert!(!o.push(frame::OP_TEXT, b"late"));
        assert!(!o.push_shared(Bytes::from_static(b"x")));
        o.kill();
        assert_eq!(o.buffered(), 0);
    }
}
