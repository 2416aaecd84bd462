//! Where parked connections wait for their peers (Linux): one epoll instance per server holds
//! the socket of every parked connection, armed for one event. The instance itself waits in
//! tokio's reactor as a single registration, so a parked connection costs the reactor nothing
//! (see `socket`); its event resumes the connection (`task::unpark`).
//!
//! Elsewhere connections do not park (`Parking::arm` refuses).

use std::sync::Arc;

use super::Conn;
use crate::hub::Hub;

#[cfg(target_os = "linux")]
pub use linux::Parking;

#[cfg(not(target_os = "linux"))]
#[derive(Default)]
pub struct Parking;

#[cfg(not(target_os = "linux"))]
impl Parking {
    pub fn arm(&self, _hub: &Arc<Hub>, _conn: &Conn) -> bool {
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::Ordering;
    use std::sync::{OnceLock, Weak};

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    use tokio::task::AbortHandle;

    use super::*;
    use crate::conn::ConnId;

    /// Events taken per `epoll_wait`.
    const BATCH: usize = 256;

    /// The epoll instance (its descriptor belongs to the task that waits on it).
    struct Poller {
        epoll: RawFd,
        task: AbortHandle,
    }

    #[derive(Default)]
    pub struct Parking {
        /// Made on the first park; `None` if that failed (connections then stay unparked).
        poller: OnceLock<Option<Poller>>,
    }

    impl Parking {
        /// Arms `conn`'s socket for one event: data, the peer's close or an error, including
        /// any that came before (the instance is level-triggered). Must run on the runtime.
        /// False if the connection cannot park.
        pub fn arm(&self, hub: &Arc<Hub>, conn: &Conn) -> bool {
            let Some(poller) = self.poller.get_or_init(|| start(hub)) else { return false };
            let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32, u64: conn.id.0 };
            let op = if conn.parks_polled.swap(true, Ordering::AcqRel) { libc::EPOLL_CTL_MOD } else { libc::EPOLL_CTL_ADD };
            // SAFETY: both descriptors are open (the connection's socket lives as long as it).
            unsafe { libc::epoll_ctl(poller.epoll, op, conn.io.fd(), &mut event) == 0 }
        }
    }

    impl Drop for Parking {
        fn drop(&mut self) {
            if let Some(Some(poller)) = self.poller.get() {
                poller.task.abort();
            }
        }
    }

    fn start(hub: &Arc<Hub>) -> Option<Poller> {
        // SAFETY: plain system call; its result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `AsyncFd` owns the descriptor, which stays open for as long as it.
        let waiting = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }.ok()?;
        let task = tokio::spawn(run(Arc::downgrade(hub), waiting)).abort_handle();
        Some(Poller { epoll: fd, task })
    }

    /// Resumes the connections whose sockets have an event.
    async fn run(hub: Weak<Hub>, epoll: AsyncFd<OwnedFd>) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
        loop {
            let Ok(mut ready) = epoll.readable().await else { return };
            // SAFETY: `events` holds `BATCH` entries; the descriptor is open.
            let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), BATCH as i32, 0) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let n = n as usize;
            if n < BATCH {
                // Drained: wait for the next event (one that comes meanwhile raises a new one).
                ready.clear_ready();
            }
            let Some(hub) = hub.upgrade() else { return };
            for e in &events[..n] {
                if let Some(conn) = hub.get(ConnId(e.u64)) {
                    crate::conn::task::unpark(&conn);
                }
            }
        }
    }
}
