//! Broadcast fan-out, off the JS thread. Jobs run in submission order on one task; a batch of
//! jobs first queues every frame into the recipients' outboxes and then writes each touched
//! connection once, so several broadcasts to the same peer leave in one vectored write.
//!
//! Order with direct sends: while any job is pending, frames JS sends straight to a connection
//! are submitted here too (`is_busy`), so a peer always receives messages in the order JS
//! produced them. A slow peer never delays the others: its frames stay in its own outbox.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::conn::{Conn, ConnId, Queued};

/// The recipients of a broadcast: snapshots of one group, or of several (a global broadcast
/// goes to every route's group).
pub enum Members {
    One(Arc<Vec<Arc<Conn>>>),
    Groups(Vec<Arc<Vec<Arc<Conn>>>>),
}

impl Members {
    fn groups(&self) -> &[Arc<Vec<Arc<Conn>>>] {
        match self {
            Members::One(g) => std::slice::from_ref(g),
            Members::Groups(gs) => gs,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Conn>> {
        self.groups().iter().flat_map(|g| g.iter())
    }

    pub fn len(&self) -> usize {
        self.groups().iter().map(|g| g.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub enum Job {
    /// `except` is sorted.
    /// Peers with more than `limit` bytes queued miss the frame, or are closed with 1008
    /// when `close_slow` is set.
    Broadcast { members: Members, frame: Bytes, except: Vec<ConnId>, limit: usize, close_slow: bool },
    /// A frame for one connection, deferred behind earlier broadcasts.
    Frame { conn: Arc<Conn>, opcode: u8, payload: Bytes },
    Terminate(Arc<Conn>),
}

/// Jobs taken per batch at most.
const BATCH: usize = 256;

#[derive(Default)]
pub struct Fanout {
    tx: OnceLock<mpsc::UnboundedSender<Job>>,
    /// Jobs submitted and not yet queued into outboxes; shared with the task.
    pending: Arc<AtomicUsize>,
}

impl Fanout {
    /// True while submitted jobs have not reached the outboxes yet.
    pub fn is_busy(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// Queues a job; the task runs on the current tokio runtime, started on first use.
    /// Must be called within the I/O runtime's context (the bridge enters it).
    pub fn submit(&self, job: Job) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(rx, self.pending.clone()));
            tx
        });
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(job)) = tx.send(job) {
            // The runtime is gone: run the job here rather than lose it.
            self.pending.fetch_sub(1, Ordering::AcqRel);
            execute(vec![job]);
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Job>, pending: Arc<AtomicUsize>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len();
        let dirty = queue_all(std::mem::take(&mut batch));
        // Everything is in the outboxes now: direct sends may go straight there again.
        pending.fetch_sub(n, Ordering::AcqRel);
        for conn in dirty {
            conn.flush();
        }
        batch = Vec::with_capacity(BATCH);
    }
}

fn execute(batch: Vec<Job>) {
    for conn in queue_all(batch) {
        conn.flush();
    }
}

/// Queues every job's frames; returns the connections that need a write: those whose outbox
/// was empty, so each appears once (unless its own task emptied it meanwhile; a second
/// flush then finds little or nothing to write).
fn queue_all(batch: Vec<Job>) -> Vec<Arc<Conn>> {
    let mut dirty = Vec::new();
    for job in batch {
        crate::event::turn();
        match job {
            Job::Broadcast { members, frame, except, limit, close_slow } => {
                for m in members.iter() {
                    if !except.is_empty() && except.binary_search(&m.id).is_ok() {
                        continue;
                    }
                    match m.queue_shared_within(frame.clone(), limit) {
                        Queued::Yes { flush: true } => dirty.push(m.clone()),
                        Queued::Yes { flush: false } => {}
                        Queued::OverLimit if close_slow => {
                            m.close_slow_consumer();
                        }
                        Queued::OverLimit | Queued::Closed => {}
                    }
                }
            }
            Job::Frame { conn, opcode, payload } => {
                if conn.queue(opcode, &payload) {
                    dirty.push(conn);
                }
            }
            Job::Terminate(conn) => conn.terminate(),
        }
    }
    dirty
}
