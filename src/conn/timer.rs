//! Connection deadlines (next heartbeat ping, the wait for its answer, the close handshake's
//! limit) on one timer per server instead of one per connection: a connection's task keeps
//! only the millisecond it wants to be woken at, and an idle connection's state stays small.
//!
//! A task arms its earliest deadline with `Timers::arm` (replacing the one it armed before);
//! when it passes, the server's timer task marks the connection (`Conn::fire_timer`) and wakes
//! it, and the task compares its deadlines with the clock. Nothing fires early. Arming takes a
//! short lock and wakes the timer task only for a deadline earlier than all the others.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Conn, ConnId};

/// A point in time, in whole milliseconds since the engine's clock started (plus one, so that
/// `Option<Tick>` is 8 bytes like `Tick`): the connection's deadlines are kept in its state,
/// which is what an idle connection costs, and an `Option<Instant>` takes 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(NonZeroU64);

impl Tick {
    pub fn now() -> Self {
        let ms = Instant::now().saturating_duration_since(epoch()).as_millis();
        Tick(NonZeroU64::MIN.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)))
    }

    pub fn after(d: Duration) -> Self {
        Tick::now().plus(d)
    }

    pub fn plus(self, d: Duration) -> Self {
        Tick(self.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// The end of its millisecond: a timer set to it finds the deadline passed.
    fn instant(self) -> Instant {
        let end = Duration::from_millis(self.0.get());
        epoch().checked_add(end).unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400))
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The deadlines of a server's connections; one task sleeps until the earliest.
#[derive(Default)]
pub struct Timers {
    shared: Arc<Shared>,
    started: OnceLock<()>,
}

#[derive(Default)]
struct Shared {
    due: Mutex<Due>,
    /// Wakes the timer task: a deadline earlier than the one it sleeps until, or the end.
    changed: Notify,
}

#[derive(Default)]
struct Due {
    deadlines: BTreeMap<(Tick, ConnId), Weak<Conn>>,
    /// What the timer task sleeps until (None: no deadline, or not sleeping yet).
    sleeping_until: Option<Tick>,
    ended: bool,
}

impl Timers {
    /// Wakes `conn` once `at` has passed; the deadline it armed `before` no longer does.
    /// Must be called within the I/O runtime (the timer task starts on first use).
    pub fn arm(&self, conn: &Arc<Conn>, at: Tick, before: Option<Tick>) {
        self.started.get_or_init(|| {
            tokio::spawn(run(self.shared.clone()));
        });
        let mut due = self.shared.lock();
        if let Some(b) = before {
            due.deadlines.remove(&(b, conn.id));
        }
        due.deadlines.insert((at, conn.id), Arc::downgrade(conn));
        // Only a deadline earlier than what the task sleeps until needs it awake.
        if due.sleeping_until.is_none_or(|s| at < s) {
            due.sleeping_until = Some(at);
            drop(due);
            self.shared.changed.notify_one();
        }
    }

    /// Forgets the deadline a connection armed (it ended, or it has no deadline any more).
    pub fn disarm(&self, id: ConnId, at: Tick) {
        self.shared.lock().deadlines.remove(&(at, id));
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.shared.lock().ended = true;
        self.shared.changed.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Due> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The timer task: wakes the connections whose deadline passed, sleeps until the next one.
/// Ends with the server (its `Timers`).
async fn run(shared: Arc<Shared>) {
    let mut fired = Vec::new();
    loop {
        let next = {
            let mut due = shared.lock();
            if due.ended {
                return;
            }
            let now = Tick::now();
            while let Some(entry) = due.deadlines.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                fired.extend(entry.remove().upgrade());
            }
            due.sleeping_until = due.deadlines.first_key_value().map(|((at, _), _)| *at);
            due.sleeping_until
        };
        for conn in fired.drain(..) {
            conn.fire_timer();
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = shared.changed.notified() => {}
                    _ = tokio::time::sleep_until(at.instant()) => {}
                }
            }
            None => shared.changed.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use crate::protocol::route::RouteId;
    use std::future::poll_fn;

    /// Connections of a hub, on sockets connected to a local listener.
    async fn conns(hub: &Hub, n: usize) -> (Vec<Arc<Conn>>, Vec<std::net::TcpStream>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut conns, mut clients) = (Vec::new(), Vec::new());
        for _ in 0..n {
            clients.push(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap());
            let socket = crate::conn::socket::Socket::from_std(listener.accept().unwrap().0).unwrap();
            conns.push(hub.register(socket, None, RouteId(0)));
        }
        (conns, clients)
    }

    async fn woken(conn: &Conn) {
        tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| conn.wake.poll(cx))).await.expect("woken by the timer");
    }

    #[test]
    fn a_deadline_wakes_its_connection_once_passed_and_only_the_last_armed_counts() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let hub = Hub::default();
            let (c, _clients) = conns(&hub, 3).await;
            let start = Tick::now();
            // c[0]: armed for 10 ms, then moved to far away; c[1]: armed, then disarmed;
            // c[2]: armed for 30 ms, the clock of this test.
            hub.timers.arm(&c[0], start.plus(Duration::from_millis(10)), None);
            hub.timers.arm(&c[0], start.plus(Duration::from_secs(3600)), Some(start.plus(Duration::from_millis(10))));
            hub.timers.arm(&c[1], start.plus(Duration::from_millis(10)), None);
            hub.timers.disarm(c[1].id, start.plus(Duration::from_millis(10)));
            hub.timers.arm(&c[2], start.plus(Duration::from_millis(30)), None);
            woken(&c[2]).await;
            assert!(c[2].take_timer_due());
            assert!(Tick::now() > start.plus(Duration::from_millis(30)), "not before its deadline");
            assert!(!c[2].take_timer_due(), "reported once");
            assert!(!c[0].take_timer_due(), "a deadline moved later does not fire at the earlier time");
            assert!(!c[1].take_timer_due(), "a disarmed deadline does not fire");
            // Armed again after firing: fires again.
            hub.timers.arm(&c[2], Tick::now().plus(Duration::from_millis(5)), None);
            woken(&c[2]).await;
            assert!(c[2].take_timer_due());
        });
    }
}
