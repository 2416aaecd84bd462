//! The hub: the one place that knows which connections exist, which route accepted them and
//! which rooms they are in. It holds `Conn` handles, never sockets' I/O loops. Broadcasts
//! snapshot a group here and fan out on the I/O runtime (`fanout.rs`).

pub mod fanout;
pub mod rooms;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::conn::parking::Parking;
use crate::conn::socket::Socket;
use crate::conn::timer::Timers;
use crate::conn::{Conn, ConnId};
use crate::event::{Events, DEFAULT_QUEUE_BUDGET};
use crate::protocol::route::{Match, PatternError, RouteId, Routes};
use fanout::{Fanout, Job, Members};
use rooms::{Group, Member, Rooms};

impl Member for Arc<Conn> {
    fn id(&self) -> ConnId {
        self.id
    }
}

/// A connection slot held by a handshake in progress.
pub struct SlotGuard(Option<Arc<Hub>>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(hub) = self.0.take() {
            hub.reserved.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Who a broadcast goes to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    All,
    Route(RouteId),
    Room(&'a str),
}

#[derive(Default)]
struct Registry {
    /// Every connection, admitted or not: lookups by id.
    all: Group<Arc<Conn>>,
    /// Connections JS has admitted (their handlers ran), by route: targets of route
    /// broadcasts, and together of global ones (no group of its own: a connection costs one
    /// membership less).
    by_route: Vec<Group<Arc<Conn>>>,
    rooms: Rooms<Arc<Conn>>,
}

pub struct Hub {
    pub events: Arc<Events>,
    pub config: Config,
    pub fanout: Fanout,
    /// The connections' deadlines.
    pub timers: Timers,
    registry: Mutex<Registry>,
    routes: RwLock<Routes>,
    next_id: AtomicU64,
    /// Handshakes in progress (accepted, not yet a connection or refused).
    handshakes: AtomicUsize,
    /// Handshakes past the connection cap check and not yet registered.
    reserved: AtomicUsize,
    /// Bumped to end every handshake in progress (a shutdown that timed out).
    pub abort_handshakes: tokio::sync::watch::Sender<u64>,
    accepting: AtomicBool,
    /// Handshakes waiting for JS to pick a subprotocol, by ticket.
    decisions: Mutex<HashMap<u64, oneshot::Sender<Decision>>>,
    /// The runtime the connections run on: a parked connection's task is spawned again there
    /// by whoever wakes it (see `conn::task`).
    pub runtime: OnceLock<tokio::runtime::Handle>,
    /// Connections parked now.
    pub parked: AtomicUsize,
    /// Where parked connections' sockets wait for their peers.
    pub parking: Parking,
}

/// JS's answer for a handshake it was asked about.
#[derive(Debug)]
pub enum Decision {
    /// Accept, with this subprotocol or none.
    Accept(Option<String>),
    /// Refuse the handshake with this HTTP status and body.
    Reject(u16, String),
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            events: Events::new(DEFAULT_QUEUE_BUDGET),
            config: Config::default(),
            fanout: Fanout::default(),
            timers: Timers::default(),
            registry: Mutex::new(Registry::default()),
            routes: RwLock::new(Routes::default()),
            next_id: AtomicU64::new(1),
            decisions: Mutex::new(HashMap::new()),
            handshakes: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            abort_handshakes: tokio::sync::watch::channel(0).0,
            accepting: AtomicBool::new(false),
            runtime: OnceLock::new(),
            parked: AtomicUsize::new(0),
            parking: Parking::default(),
        }
    }
}

impl Hub {
    pub fn add_route(&self, pattern: &str) -> Result<RouteId, PatternError> {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).add(pattern)
    }

    pub fn find_route(&self, path: &str) -> Option<Match> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).find(path)
    }

    pub fn route_count(&self) -> usize {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of `max` connection slots (0: no cap) for a handshake in progress, counting
    /// open connections and other reservations, so overlapping handshakes cannot exceed it.
    /// The slot is released when the returned guard drops (after the connection registered).
    pub fn reserve_slot(self: &Arc<Self>, max: usize) -> Option<SlotGuard> {
        if max == 0 {
            return Some(SlotGuard(None));
        }
        let reg = self.registry();
        if reg.all.len() + self.reserved.load(Ordering::Acquire) >= max {
            return None;
        }
        self.reserved.fetch_add(1, Ordering::AcqRel);
        drop(reg);
        Some(SlotGuard(Some(self.clone())))
    }

    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Release);
    }

    pub fn handshake_started(&self) {
        self.handshakes.fetch_add(1, Ordering::AcqRel);
    }

    /// A handshake ended (as a connection or not). When the server no longer accepts, JS is
    /// told, so that a closing server can see it became idle.
    pub fn handshake_ended(&self) {
        if self.handshakes.fetch_sub(1, Ordering::AcqRel) == 1 && !self.accepting.load(Ordering::Acquire) {
            self.events.push_record(crate::event::kind::IDLE, 0, 0, ConnId(0), &[]);
        }
    }

    /// Connections JS has not seen close yet, plus handshakes in progress.
    pub fn pending(&self) -> usize {
        self.registry().all.len() + self.handshakes.load(Ordering::Acquire)
    }

    /// Asks JS to decide on a handshake; the answer comes through `decide`.
    pub fn ask(&self, info: &crate::event::OpenInfo, offered: &[String]) -> (u64, oneshot::Receiver<Decision>) {
        let ticket = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.decisions.lock().unwrap_or_else(|e| e.into_inner()).insert(ticket, tx);
        self.events.push_request(crate::event::kind::VERIFY, ticket, info, Some(offered));
        (ticket, rx)
    }

    /// Drops the question of a handshake that gave up (timeout, peer gone).
    pub fn forget_ticket(&self, ticket: u64) {
        self.decisions.lock().unwrap_or_else(|e| e.into_inner()).remove(&ticket);
    }

    /// Delivers JS's answer for a ticket; a handshake that gave up meanwhile is ignored.
    pub fn decide(&self, ticket: u64, decision: Decision) {
        if let Some(tx) = self.decisions.lock().unwrap_or_else(|e| e.into_inner()).remove(&ticket) {
            let _ = tx.send(decision);
        }
    }

    /// Registers the connection of an upgraded socket on `route`.
    pub fn register(&self, io: Socket, tls: Option<rustls::ServerConnection>, route: RouteId) -> Arc<Conn> {
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let conn = Arc::new(Conn::new(id, route, io, tls));
        self.registry().all.insert(conn.clone());
        conn
    }

    /// Admits a connection whose handlers ran: from now on global and route broadcasts reach
    /// it. Until then (e.g. while an authentication middleware is pending) they do not.
    pub fn admit(&self, id: ConnId) -> bool {
        let mut reg = self.registry();
        let Some(conn) = reg.all.get(id).cloned() else { return false };
        let r = conn.route.0 as usize;
        if reg.by_route.len() <= r {
            reg.by_route.resize_with(r + 1, Group::default);
        }
        reg.by_route[r].insert(conn)
    }

    /// Forgets a closed connection: removes it from every group and room. Called when JS has
    /// been told of the close, so what JS sees and what the hub knows stay in step.
    pub fn forget(&self, id: ConnId) {
        let mut reg = self.registry();
        if let Some(conn) = reg.all.get(id).cloned() {
            reg.all.remove(id);
            if let Some(g) = reg.by_route.get_mut(conn.route.0 as usize) {
                g.remove(id);
            }
            reg.rooms.leave_all(id);
        }
    }

    pub fn get(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.registry().all.get(id).cloned()
    }

    pub fn connection_count(&self) -> usize {
        self.registry().all.len()
    }

    /// Every connection, for mass operations.
    pub fn all(&self) -> Arc<Vec<Arc<Conn>>> {
        self.registry().all.snapshot()
    }

    pub fn join(&self, id: ConnId, room: &str) -> bool {
        let mut reg = self.registry();
        match reg.all.get(id).cloned() {
            Some(conn) if conn.outbox().is_open() => reg.rooms.join(room, conn),
            _ => false,
        }
    }

    pub fn leave(&self, id: ConnId, room: &str) -> bool {
        self.registry().rooms.leave(room, id)
    }

    pub fn room_size(&self, room: &str) -> usize {
        self.registry().rooms.get(room).map_or(0, Group::len)
    }

    pub fn room_count(&self) -> usize {
        self.registry().rooms.len()
    }

    pub fn room_names(&self) -> Vec<String> {
        self.registry().rooms.names().map(str::to_owned).collect()
    }

    /// Ids of the members of `target`.
    pub fn members(&self, target: Target) -> Vec<ConnId> {
        let reg = self.registry();
        match target {
            Target::All => reg.by_route.iter().flat_map(Group::ids).collect(),
            Target::Route(r) => reg.by_route.get(r.0 as usize).map_or_else(Vec::new, |g| g.ids().collect()),
            Target::Room(name) => reg.rooms.get(name).map_or_else(Vec::new, |g| g.ids().collect()),
        }
    }

    /// Sends one encoded frame to every member of `target` but `except`. The caller's work
    /// is constant: the members are snapshotted and the fan-out runs on the I/O runtime.
    /// Returns the number of members at the time of the call (before exclusions).
    pub fn broadcast(&self, target: Target, frame: Bytes, mut except: Vec<ConnId>) -> usize {
        except.sort_unstable();
        let members = {
            let reg = self.registry();
            match target {
                Target::All => Members::Groups(reg.by_route.iter().filter(|g| !g.is_empty()).map(Group::snapshot).collect()),
                Target::Route(r) => match reg.by_route.get(r.0 as usize) {
                    Some(g) => Members::One(g.snapshot()),
                    None => return 0,
                },
                Target::Room(name) => match reg.rooms.get(name) {
                    Some(g) => Members::One(g.snapshot()),
                    None => return 0,
                },
            }
        };
        let n = members.len();
        if n > 0 {
            let limit = self.config.max_backpressure();
            let close_slow = self.config.closes_on_backpressure();
            self.fanout.submit(Job::Broadcast { members, frame, except, limit, close_slow });
        }
        n
    }
}
