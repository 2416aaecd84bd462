//! Events from connections to the JS thread, and the queue that carries them in batches.
//!
//! Producers (connection tasks) push without blocking; the first push into an idle queue asks
//! the bridge to wake JS once, and JS then drains everything queued in one go. Per-connection
//! order is the push order. The bytes waiting here are counted so that readers can stop
//! reading (TCP backpressure) while JS is behind, instead of buffering without limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::Notify;

use crate::conn::ConnId;
use crate::protocol::route::RouteId;

/// What JS learns about a new connection.
#[derive(Debug, Clone)]
pub struct OpenInfo {
    pub conn: ConnId,
    pub route: RouteId,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub remote: SocketAddr,
    pub protocol: Option<String>,
}

#[derive(Debug)]
pub enum Event {
    /// A handshake waits for JS to accept it (verifyClient) and choose a subprotocol: the
    /// request (its `conn` is the ticket to answer with) and the offered subprotocols.
    Verify(Box<OpenInfo>, Vec<String>),
    Open(Box<OpenInfo>),
    Text(ConnId, String),
    Binary(ConnId, Vec<u8>),
    Ping(ConnId, Vec<u8>),
    Pong(ConnId, Vec<u8>),
    /// The connection is gone: the close code and reason it ended with. Always the last
    /// event of a connection, sent exactly once.
    Close(ConnId, u16, String),
    /// The connection's send buffer fell below the backpressure limit again.
    Drain(ConnId),
    /// The last handshake in progress ended while the server was not accepting.
    Idle,
}

impl Event {
    /// Bytes this event holds, for the queue's budget.
    pub fn weight(&self) -> usize {
        64 + match self {
            Event::Text(_, s) => s.len(),
            Event::Binary(_, b) | Event::Ping(_, b) | Event::Pong(_, b) => b.len(),
            Event::Close(_, _, r) => r.len(),
            Event::Open(_) => 512,
            Event::Verify(_, p) => 512 + p.iter().map(String::len).sum::<usize>(),
            Event::Drain(_) | Event::Idle => 0,
        }
    }
}

/// Bytes of undelivered events above which connections stop reading.
pub const DEFAULT_QUEUE_BUDGET: usize = 64 * 1024 * 1024;
/// Bytes of one connection's undelivered events above which that connection stops reading,
/// so that one busy peer cannot fill the queue ahead of everyone else.
pub const CONNECTION_QUEUE_BUDGET: usize = 1024 * 1024;

impl Event {
    /// The connection a message-like event belongs to (the ones counted per connection).
    pub fn message_conn(&self) -> Option<ConnId> {
        match self {
            Event::Text(c, _) | Event::Binary(c, _) | Event::Ping(c, _) | Event::Pong(c, _) => Some(*c),
            _ => None,
        }
    }
}

pub struct Events {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    scheduled: AtomicBool,
    pending: AtomicUsize,
    budget: usize,
    /// Signalled when JS has drained the queue below its budget.
    space: Notify,
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Events {
    pub fn new(budget: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Self {
            tx,
            rx,
            scheduled: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            budget,
            space: Notify::new(),
            wake: OnceLock::new(),
        }
    }

    /// Sets the function that wakes the consumer; called at most once per batch.
    pub fn set_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.wake.set(wake);
    }

    pub fn push(&self, ev: Event) {
        self.pending.fetch_add(ev.weight(), Ordering::Relaxed);
        // The receiver lives as long as `self`, so sending cannot fail.
        let _ = self.tx.send(ev);
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

    /// Waits until the queue has room again.
    pub async fn wait_for_space(&self) {
        loop {
            let notified = self.space.notified();
            if !self.is_full() {
                return;
            }
            notified.await;
        }
    }

    /// Takes up to `max` events in order, passing each to `f`. Called on the consumer thread
    /// once it was woken; `finish` must follow when the consumer is done with the batch.
    pub fn drain(&self, max: usize, mut f: impl FnMut(Event)) -> usize {
        let mut n = 0;
        let mut weight = 0;
        while n < max {
            match self.rx.try_recv() {
                Ok(ev) => {
                    weight += ev.weight();
                    n += 1;
                    f(ev);
                }
                Err(_) => break,
            }
        }
        let was_full = self.is_full();
        self.pending.fetch_sub(weight, Ordering::Relaxed);
        if was_full && !self.is_full() {
            self.space.notify_waiters();
        }
        n
    }

    /// Ends a batch. Returns true when events are already waiting: the consumer should come
    /// back for them after letting its other work run (timers, I/O), rather than be woken
    /// again at once — one busy server must not starve the rest of the consumer's work.
    /// Otherwise the next push wakes the consumer.
    pub fn finish(&self) -> bool {
        self.scheduled.store(false, Ordering::Release);
        // A push that saw `scheduled` still set did not wake anyone: take over its wake-up.
        !self.rx.is_empty() && !self.scheduled.swap(true, Ordering::AcqRel)
    }

    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_wake_per_batch_and_order_kept() {
        let events = Events::new(1 << 20);
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        events.set_waker(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        for i in 0..10 {
            events.push(Event::Text(ConnId(1), i.to_string()));
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        let mut got = Vec::new();
        events.drain(usize::MAX, |ev| {
            if let Event::Text(_, s) = ev {
                got.push(s)
            }
        });
        assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
        // Pushed while the batch is being handled: no wake-up, the consumer comes back itself.
        events.push(Event::Drain(ConnId(1)));
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(events.finish());
        events.drain(usize::MAX, |_| {});
        assert!(!events.finish());
        events.push(Event::Drain(ConnId(1)));
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn partial_drain_leaves_the_rest_and_budget_frees() {
        let events = Events::new(100);
        events.push(Event::Binary(ConnId(1), vec![0; 200]));
        events.push(Event::Drain(ConnId(1)));
        assert!(events.is_full());
        assert_eq!(events.drain(1, |_| {}), 1);
        assert!(!events.is_full());
        assert_eq!(events.len(), 1);
        assert!(events.finish(), "the consumer is told to come back for the rest");
    }
}
