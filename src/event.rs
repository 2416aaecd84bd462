//! Events from connections to the JS thread, and the log that carries them in batches.
//!
//! Producers (connection tasks) append records to one byte log: a message costs a copy into
//! the log, no allocation of its own. The first record into an idle log asks the bridge to
//! wake JS once; JS then takes the whole log in one swap and reads it in place (see
//! `bridge::drain`). Events that carry structured data (a new connection's request) or a
//! payload too large to copy twice travel beside the log as `Event`s, in order, with a
//! record that marks their place. Per-connection order is the push order. The bytes waiting
//! are counted so that readers can stop reading (TCP backpressure) while JS is behind,
//! instead of buffering without limit.
//!
//! Record layout (all little-endian, every record 8-byte aligned; kept in step with
//! `lib/server.js`):
//!
//! ```text
//! u32  kind | flags << 8 | close code << 16
//! u32  payload length (0 for a record whose data travels beside the log)
//! f64  connection id (or ticket)
//! [u8] payload, padded to a multiple of 8
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use crate::conn::ConnId;
use crate::protocol::handshake::Request;
use crate::protocol::route::RouteId;

/// What JS learns about a new connection: the request borrowed from the bytes read, and
/// what the handshake made of it.
#[derive(Debug)]
pub struct OpenInfo<'a> {
    pub route: RouteId,
    pub request: &'a Request<'a>,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub remote: SocketAddr,
    pub protocol: Option<String>,
}

/// Record kinds.
pub mod kind {
    /// payload: the request (see `encode_request`)
    pub const OPEN: u8 = 0;
    /// payload: UTF-8 text (flag `ASCII` when it is all ASCII); beside when large
    pub const TEXT: u8 = 1;
    /// payload: bytes; beside when large
    pub const BINARY: u8 = 2;
    pub const PING: u8 = 3;
    pub const PONG: u8 = 4;
    /// payload: the reason; the code in the high 16 bits of the first word
    pub const CLOSE: u8 = 5;
    pub const DRAIN: u8 = 6;
    /// payload: the request, then the offered subprotocols; the id is the ticket to answer
    pub const VERIFY: u8 = 7;
    /// the id is 0
    pub const IDLE: u8 = 8;
}

/// Record flags.
pub mod flag {
    /// The data travels beside the log.
    pub const BESIDE: u8 = 1;
    /// A text payload that is all ASCII (JS can decode it as Latin-1, which is cheaper).
    pub const ASCII: u8 = 2;
}

pub const HEADER: usize = 16;
/// Payloads larger than this travel beside the log (owned, handed to JS without a copy).
pub const INLINE_MAX: usize = 64 * 1024;

/// Bytes a record takes in the log.
pub fn record_len(payload: usize) -> usize {
    HEADER + ((payload + 7) & !7)
}

/// Bytes a text or binary message of `len` bytes counts for in the budgets.
pub fn message_weight(len: usize) -> usize {
    if len > INLINE_MAX {
        HEADER + len
    } else {
        record_len(len)
    }
}

/// Messages too large to copy twice travel beside the log.
#[derive(Debug)]
pub enum Event {
    /// A text message larger than `INLINE_MAX`.
    Text(ConnId, String),
    /// A binary message larger than `INLINE_MAX`.
    Binary(ConnId, Vec<u8>),
}

impl Event {
    fn kind_and_id(&self) -> (u8, u64) {
        match self {
            Event::Text(c, _) => (kind::TEXT, c.0),
            Event::Binary(c, _) => (kind::BINARY, c.0),
        }
    }

    /// Bytes this event holds, for the budget (its record included).
    pub fn weight(&self) -> usize {
        message_weight(match self {
            Event::Text(_, s) => s.len(),
            Event::Binary(_, b) => b.len(),
        })
    }
}

/// Writes a request for JS (kept in step with `readRequest` in `lib/server.js`); strings are
/// a u32 length and their bytes:
///
/// ```text
/// u32 route, u32 remote port, url, remote address, subprotocol,
/// headers: one string "name\0value\0name\0value" (names lower case, values Latin-1),
/// u32 count + that many (key, value) pairs of route params, same for the query,
/// then for a verify: u32 count + the offered subprotocols
/// ```
///
/// The method is not written: only a GET reaches JS (`handshake::check` refuses the others).
pub fn encode_request(out: &mut Vec<u8>, info: &OpenInfo, offered: Option<&[String]>) {
    fn u32le(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        u32le(out, s.len());
        out.extend_from_slice(s);
    }
    fn pairs(out: &mut Vec<u8>, pairs: &[(String, String)]) {
        u32le(out, pairs.len());
        for (k, v) in pairs {
            string(out, k.as_bytes());
            string(out, v.as_bytes());
        }
    }
    u32le(out, info.route.0 as usize);
    u32le(out, info.remote.port() as usize);
    string(out, info.request.target.as_bytes());
    let at = out.len();
    u32le(out, 0);
    write_ip(out, info.remote.ip());
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    string(out, info.protocol.as_deref().unwrap_or("").as_bytes());
    let at = out.len();
    u32le(out, 0);
    out.reserve(info.request.headers.iter().map(|h| h.name.len() + h.value.len() + 2).sum());
    for (n, h) in info.request.headers.iter().enumerate() {
        if n > 0 {
            out.push(0);
        }
        let name = out.len();
        out.extend_from_slice(h.name.as_bytes());
        out[name..].make_ascii_lowercase();
        out.push(0);
        // Header values are Latin-1 (as Node's http module reads them): one byte each.
        out.extend_from_slice(h.value);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    pairs(out, &info.params);
    pairs(out, &info.query);
    if let Some(offered) = offered {
        u32le(out, offered.len());
        for p in offered {
            string(out, p.as_bytes());
        }
    }
}

/// Writes an address as text (IPv4 by hand: formatting one through `Display` costs more than
/// the rest of the record).
fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Bytes of undelivered events above which connections stop reading.
pub const DEFAULT_QUEUE_BUDGET: usize = 64 * 1024 * 1024;
/// Bytes of one connection's undelivered events above which that connection stops reading,
/// so that one busy peer cannot fill the queue ahead of everyone else.
pub const CONNECTION_QUEUE_BUDGET: usize = 1024 * 1024;

/// Records and the events beside them, in order.
#[derive(Default)]
pub struct Log {
    pub bytes: Vec<u8>,
    pub beside: VecDeque<Event>,
}

impl Log {
    fn append(&mut self, word: u32, id: u64, payload: &[u8]) {
        let at = self.bytes.len();
        self.bytes.resize(at + record_len(payload.len()), 0);
        let rec = &mut self.bytes[at..];
        rec[0..4].copy_from_slice(&word.to_le_bytes());
        rec[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        rec[8..16].copy_from_slice(&(id as f64).to_le_bytes());
        rec[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.beside.clear();
    }
}

/// One record as the consumer reads it.
pub struct Record<'a> {
    pub kind: u8,
    pub flags: u8,
    pub id: ConnId,
    /// The record as stored (header and padded payload), to copy to JS as is.
    pub raw: &'a [u8],
    pub payload_len: usize,
}

impl Record<'_> {
    /// Bytes it was counted for (see `Events::push_record`).
    pub fn weight(&self) -> usize {
        self.raw.len()
    }
}

/// Reads the record at `at` of a log written by `Log::append`.
pub fn record_at(bytes: &[u8], at: usize) -> Record<'_> {
    let word = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default()) as usize;
    let id = f64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap_or_default());
    Record { kind: word as u8, flags: (word >> 8) as u8, id: ConnId(id as u64), raw: &bytes[at..at + record_len(len)], payload_len: len }
}

/// Announcing records to JS from an I/O thread is deferred while the thread has other work:
/// JS is woken once the thread is about to park (nothing left to do), or after
/// `ANNOUNCE_AFTER_TURNS` connection turns on it, or once `ANNOUNCE_AFTER_RECORDS` records
/// wait. So one wake-up carries what the thread did in that stretch, and the JS thread does
/// not preempt the I/O thread for every event (on a shared core that was several context
/// switches per connection). The turn bound keeps an event from waiting behind a connection
/// that keeps its thread busy without producing events (a ping flood).
const ANNOUNCE_AFTER_TURNS: u32 = 16;
const ANNOUNCE_AFTER_RECORDS: usize = 128;

#[derive(Default)]
struct Deferred {
    /// Logs with records pushed by this thread and not announced.
    logs: Vec<Weak<Events>>,
    turns: u32,
}

thread_local! {
    /// None on threads that are not runtime workers (or before a worker first parks): there
    /// every push is announced at once.
    static DEFERRED: RefCell<Option<Deferred>> = const { RefCell::new(None) };
}

/// Runtime hook: the current worker is about to park. Announces what it deferred.
pub fn worker_parking() {
    let logs = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        let d = d.get_or_insert_with(Deferred::default);
        d.turns = 0;
        std::mem::take(&mut d.logs)
    });
    for events in logs {
        if let Some(events) = events.upgrade() {
            events.announce();
        }
    }
}

/// A task takes a turn on this thread (a connection's loop or linger, an accepted socket, a
/// handshake, a fan-out job): after enough turns, what the thread deferred is announced even
/// though it is still busy.
pub fn turn() {
    let due = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(d) if !d.logs.is_empty() => {
            d.turns += 1;
            d.turns >= ANNOUNCE_AFTER_TURNS
        }
        _ => false,
    });
    if due {
        worker_parking();
    }
}

/// Tasks waiting for room in the queue, and the round of waiting they registered in.
struct Waiting {
    round: u64,
    wakers: Vec<Waker>,
}

pub struct Events {
    me: Weak<Events>,
    /// Records pushed and not announced yet.
    unannounced: AtomicUsize,
    log: Mutex<Log>,
    scheduled: AtomicBool,
    /// Bytes of records not yet handed to JS (in the log or in the consumer's batch).
    pending: AtomicUsize,
    budget: usize,
    /// Tasks that stopped reading because the queue is full, woken when JS drains it below its
    /// budget. Wakers are kept here rather than in the tasks: an idle connection carries no
    /// waiter for a condition that is rare.
    waiting: Mutex<Waiting>,
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Events {
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            unannounced: AtomicUsize::new(0),
            log: Mutex::new(Log::default()),
            scheduled: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            budget,
            waiting: Mutex::new(Waiting { round: 1, wakers: Vec::new() }),
            wake: OnceLock::new(),
        })
    }

    /// Sets the function that wakes the consumer; called at most once per batch.
    pub fn set_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.wake.set(wake);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record with `payload` copied into the log. Returns the bytes it counts for.
    pub fn push_record(&self, kind: u8, flags: u8, code: u16, id: ConnId, payload: &[u8]) -> usize {
        let weight = record_len(payload.len());
        let word = kind as u32 | (flags as u32) << 8 | (code as u32) << 16;
        // Counted before it can be taken, so that the consumer never subtracts first.
        self.pending.fetch_add(weight, Ordering::AcqRel);
        self.lock().append(word, id.0, payload);
        self.pushed();
        weight
    }

    /// Appends a text message. Returns the bytes it counts for.
    pub fn push_text(&self, id: ConnId, text: &str) -> usize {
        if text.len() > INLINE_MAX {
            return self.push(Event::Text(id, text.to_owned()));
        }
        let flags = if text.is_ascii() { flag::ASCII } else { 0 };
        self.push_record(kind::TEXT, flags, 0, id, text.as_bytes())
    }

    /// Appends a binary message. Returns the bytes it counts for.
    pub fn push_binary(&self, id: ConnId, data: &[u8]) -> usize {
        if data.len() > INLINE_MAX {
            return self.push(Event::Binary(id, data.to_vec()));
        }
        self.push_record(kind::BINARY, 0, 0, id, data)
    }

    /// Appends a new connection (`OPEN`, the id is the connection's) or a handshake to
    /// decide on (`VERIFY` with the offered subprotocols, the id is the ticket).
    pub fn push_request(&self, kind: u8, id: u64, info: &OpenInfo, offered: Option<&[String]>) {
        thread_local! {
            static REQUEST: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        REQUEST.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            encode_request(&mut buf, info, offered);
            self.push_record(kind, 0, 0, ConnId(id), &buf);
        });
    }

    /// Appends the last event of a connection.
    pub fn push_close(&self, id: ConnId, code: u16, reason: &str) {
        // A close reason is at most 123 bytes (RFC 6455 §5.5).
        let reason = &reason.as_bytes()[..reason.len().min(INLINE_MAX)];
        self.push_record(kind::CLOSE, 0, code, id, reason);
    }

    /// Appends an event that travels beside the log. Returns the bytes it counts for.
    pub fn push(&self, ev: Event) -> usize {
        let weight = ev.weight();
        let (kind, id) = ev.kind_and_id();
        self.pending.fetch_add(weight, Ordering::AcqRel);
        {
            let mut log = self.lock();
            log.append(kind as u32 | (flag::BESIDE as u32) << 8, id, &[]);
            log.beside.push_back(ev);
        }
        self.pushed();
        weight
    }

    /// Announces a push now, or defers it on a runtime worker (see `Deferred`).
    fn pushed(&self) {
        if self.unannounced.fetch_add(1, Ordering::AcqRel) + 1 >= ANNOUNCE_AFTER_RECORDS {
            return self.announce();
        }
        let deferred = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(d) => {
                if !d.logs.iter().any(|w| w.as_ptr() == self.me.as_ptr()) {
                    d.logs.push(self.me.clone());
                }
                true
            }
            None => false,
        });
        if !deferred {
            self.announce();
        }
    }

    fn announce(&self) {
        self.unannounced.store(0, Ordering::Release);
        self.schedule();
    }

    fn schedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Some(wake) = self.wake.get() {
                wake();
            }
        }
    }

    /// True while undelivered events exceed the budget: readers should pause.
    pub fn is_full(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > self.budget
    }

    /// Ready when the queue has room; otherwise the task is woken once JS has drained it below
    /// its budget. `round` is the caller's memory of where it registered (start with 0): a task
    /// polled again while full is not registered twice.
    pub fn poll_space(&self, cx: &mut Context<'_>, round: &mut u64) -> Poll<()> {
        if !self.is_full() {
            return Poll::Ready(());
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock `delivered` takes after lowering `pending`: no wake-up is lost.
        if !self.is_full() {
            return Poll::Ready(());
        }
        if *round != waiting.round {
            waiting.wakers.push(cx.waker().clone());
            *round = waiting.round;
        }
        Poll::Pending
    }

    /// Swaps everything logged so far into `batch`, which must have been read to its end
    /// (its allocations are kept for the producers' next records). Called on the consumer
    /// thread once it was woken; `finish` must follow when the consumer is done.
    pub fn take(&self, batch: &mut Log) {
        batch.clear();
        std::mem::swap(&mut *self.lock(), batch);
    }

    /// The consumer handed records worth `weight` bytes to JS.
    pub fn delivered(&self, weight: usize) {
        let before = self.pending.fetch_sub(weight, Ordering::AcqRel);
        if before > self.budget && before - weight <= self.budget {
            let wakers = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                waiting.round += 1;
                std::mem::take(&mut waiting.wakers)
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    /// Ends a batch. Returns true when events are already waiting (in the log, or in the
    /// consumer's batch): the consumer should come back for them after letting its other
    /// work run (timers, I/O), rather than be woken again at once — one busy server must not
    /// starve the rest of the consumer's work. Otherwise the next push wakes the consumer.
    pub fn finish(&self) -> bool {
        self.scheduled.store(false, Ordering::Release);
        // A push that saw `scheduled` still set did not wake anyone: take over its wake-up.
        self.pending.load(Ordering::Acquire) > 0 && !self.scheduled.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn addresses_as_text() {
        for ip in ["0.0.0.0", "10.200.3.255", "192.168.100.9", "::1", "::ffff:127.0.0.1", "2001:db8::8a2e:370:7334"] {
            let mut out = Vec::new();
            write_ip(&mut out, ip.parse().unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), ip);
        }
    }

    fn records(log: &Log) -> Vec<(u8, u8, u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < log.bytes.len() {
            let r = record_at(&log.bytes, at);
            out.push((r.kind, r.flags, r.id.0, r.raw[HEADER..HEADER + r.payload_len].to_vec()));
            at += r.raw.len();
        }
        out
    }

    #[test]
    fn one_wake_per_batch_and_order_kept() {
        let events = Events::new(1 << 20);
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        events.set_waker(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        let mut total = 0;
        for i in 0..10 {
            total += events.push_text(ConnId(1), &i.to_string());
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        let mut batch = Log::default();
        events.take(&mut batch);
        let got: Vec<_> = records(&batch).into_iter().map(|(k, f, id, p)| (k, f, id, String::from_utf8(p).unwrap())).collect();
        assert_eq!(got, (0..10).map(|i| (kind::TEXT, flag::ASCII, 1, i.to_string())).collect::<Vec<_>>());
        events.delivered(total);
        // Pushed while the batch is being handled: no wake-up, the consumer comes back itself.
        let w = events.push_record(kind::DRAIN, 0, 0, ConnId(1), &[]);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(events.finish());
        events.take(&mut batch);
        events.delivered(w);
        assert!(!events.finish());
        events.push_close(ConnId(1), 1000, "bye");
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        events.take(&mut batch);
        assert_eq!(records(&batch), vec![(kind::CLOSE, 0, 1, b"bye".to_vec())]);
        assert_eq!(record_at(&batch.bytes, 0).raw[2..4], 1000u16.to_le_bytes());
    }

    #[test]
    fn a_worker_announces_when_it_parks_or_after_enough_turns() {
        std::thread::spawn(|| {
            let events = Events::new(1 << 20);
            let wakes = Arc::new(AtomicUsize::new(0));
            let w = wakes.clone();
            events.set_waker(Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }));
            // The first park makes this thread a worker: from then on pushes are deferred.
            worker_parking();
            events.push_text(ConnId(1), "a");
            events.push_text(ConnId(2), "b");
            assert_eq!(wakes.load(Ordering::SeqCst), 0);
            worker_parking();
            assert_eq!(wakes.load(Ordering::SeqCst), 1, "announced at park");

            let mut batch = Log::default();
            events.take(&mut batch);
            events.delivered(batch.bytes.len());
            assert!(!events.finish());
            events.push_text(ConnId(1), "c");
            for _ in 0..ANNOUNCE_AFTER_TURNS - 1 {
                turn();
            }
            assert_eq!(wakes.load(Ordering::SeqCst), 1);
            turn();
            assert_eq!(wakes.load(Ordering::SeqCst), 2, "announced after enough turns while busy");

            events.take(&mut batch);
            events.delivered(batch.bytes.len());
            assert!(!events.finish());
            for i in 0..ANNOUNCE_AFTER_RECORDS {
                events.push_text(ConnId(1), &i.to_string());
            }
            assert_eq!(wakes.load(Ordering::SeqCst), 3, "announced once enough records wait");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_task_waiting_for_room_is_registered_once_and_woken_when_js_drains() {
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let events = Events::new(100);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut round = 0;
        assert!(events.poll_space(&mut cx, &mut round).is_ready());
        let w = events.push_binary(ConnId(1), &[0; 200]);
        assert!(events.poll_space(&mut cx, &mut round).is_pending());
        assert!(events.poll_space(&mut cx, &mut round).is_pending());
        assert_eq!(events.waiting.lock().unwrap().wakers.len(), 1, "polled twice, registered once");
        let mut batch = Log::default();
        events.take(&mut batch);
        events.delivered(w);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(events.poll_space(&mut cx, &mut round).is_ready());
        // Full again in a later round: the task registers anew.
        let w = events.push_binary(ConnId(1), &[0; 200]);
        assert!(events.poll_space(&mut cx, &mut round).is_pending());
        events.take(&mut batch);
        events.delivered(w);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn large_payloads_travel_beside_and_budget_frees() {
        let events = Events::new(100);
        let big = vec![7u8; INLINE_MAX + 1];
        let w = events.push_binary(ConnId(3), &big);
        let text = "é".repeat(3);
        let t = events.push_text(ConnId(3), &text);
        assert!(events.is_full());
        let mut batch = Log::default();
        events.take(&mut batch);
        assert_eq!(records(&batch), vec![(kind::BINARY, flag::BESIDE, 3, vec![]), (kind::TEXT, 0, 3, text.into_bytes())]);
        assert!(matches!(batch.beside.front(), Some(Event::Binary(ConnId(3), b)) if b.len() == INLINE_MAX + 1));
        events.delivered(w);
        assert!(!events.is_full());
        assert!(events.finish(), "the consumer is told to come back for the rest");
        events.delivered(t);
        assert!(!events.finish());
    }
}
