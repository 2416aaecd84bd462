//! The napi boundary: the `NativeServer` class the JS facade drives. It owns nothing but
//! handles into the core; all networking runs on the shared tokio runtime. Events reach JS
//! in batches: one threadsafe-function wake-up, then `drain(arena)` copies the waiting records
//! into the arena JS reads (see `crate::event` and `local`).

mod convert;
mod fast;
mod local;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use bytes::BytesMut;

use crate::conn::{Conn, ConnId};
use crate::hub::Target;
use crate::error::Error as CoreError;
use crate::hub::Hub;
use crate::protocol::{close, frame};
use crate::server::{self, Listening};

static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();

pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        // One I/O thread per core this process may run on (taskset and cgroups respected).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("velocy-io")
            .on_thread_start(batch_scheduling)
            .on_thread_park(crate::event::worker_parking)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref().map_err(|e| Error::from_reason(format!("cannot start the I/O runtime: {e}")))
}

/// Linux: I/O threads run as SCHED_BATCH, which keeps them from preempting the JS thread
/// whenever a packet arrives (the I/O thread then runs when JS waits or its time slice ends,
/// and finds more to read at once). Fairness is unchanged; where the threads have cores of
/// their own it makes no difference. On a single core it cut context switches tenfold under
/// load (echo benchmark, server pinned to one core).
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct SchedParam {
            priority: i32,
        }
        const SCHED_BATCH: i32 = 3;
        extern "C" {
            fn sched_setscheduler(pid: i32, policy: i32, param: *const SchedParam) -> i32;
        }
        // pid 0: the calling thread. Best effort: on failure the thread keeps its policy.
        unsafe { sched_setscheduler(0, SCHED_BATCH, &SchedParam { priority: 0 }) };
    }
}

/// A JS error whose `code` property is the given string.
type CodedError = Error<String>;

/// The one conversion point from core errors to JS errors: `code` is the stable string.
fn to_js(e: CoreError) -> CodedError {
    Error::new(e.code().to_owned(), e.to_string())
}

fn coded(e: Error) -> CodedError {
    Error::new(e.status.as_ref().to_owned(), e.reason.clone())
}

type Waker = ThreadsafeFunction<(), (), (), Status, false, true>;

#[napi]
pub struct NativeServer {
    hub: Arc<Hub>,
    listening: Option<Listening>,
    waker: Arc<Waker>,
    /// State only the JS thread touches (shared with the functions of `fast`).
    local: Rc<RefCell<local::Local>>,
    /// Set for a wss:// server.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

#[napi]
impl NativeServer {
    /// `on_events` is called (with no arguments) when events are waiting; it calls `drain()`.
    #[napi(constructor, catch_unwind)]
    pub fn new(on_events: Function<(), ()>) -> Result<Self> {
        let waker: Arc<Waker> = Arc::new(on_events.build_threadsafe_function().weak::<true>().build_callback(|_| Ok(()))?);
        let hub = Arc::new(Hub::default());
        let w = waker.clone();
        hub.events.set_waker(Box::new(move || {
            w.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }));
        let local = Rc::new(RefCell::new(local::Local::new(hub.clone())));
        Ok(Self { hub, listening: None, waker, local, tls: None })
    }

    /// Keeps the Node event loop alive (true) or not (false) while this server exists.
    #[napi(catch_unwind)]
    pub fn set_ref(&self, env: Env, on: bool) -> Result<()> {
        let status = unsafe {
            if on {
                napi::sys::napi_ref_threadsafe_function(env.raw(), self.waker.raw())
            } else {
                napi::sys::napi_unref_threadsafe_function(env.raw(), self.waker.raw())
            }
        };
        if status == napi::sys::Status::napi_ok {
            Ok(())
        } else {
            Err(Error::from_reason("cannot change the event loop reference"))
        }
    }

    /// Applies options (validated by the facade): bytes and milliseconds.
    #[napi(catch_unwind)]
    pub fn configure(&self, max_payload: f64, heartbeat_interval: f64, heartbeat_timeout: f64) {
        let cfg = &self.hub.config;
        cfg.set_max_payload(max_payload.max(1.0) as u64);
        let before = cfg.heartbeat_interval();
        cfg.set_heartbeat(heartbeat_interval.max(0.0) as u64, heartbeat_timeout.max(1.0) as u64);
        if cfg.heartbeat_interval() != before {
            // Open connections pick the new interval up when woken.
            for c in self.hub.all().iter() {
                c.wake.notify();
            }
        }
    }

    /// Applies limits (validated by the facade): handshake timeout in ms, backpressure in
    /// bytes, and whether broadcasts close peers over it instead of skipping them.
    #[napi(catch_unwind)]
    pub fn set_limits(&self, handshake_timeout: f64, max_backpressure: f64, close_on_backpressure: bool) {
        self.hub.config.set_limits(handshake_timeout.max(1.0) as u64, max_backpressure.max(0.0) as u64, close_on_backpressure);
    }

    /// Whether offered subprotocols are put to JS (a `handleProtocols` function exists).
    #[napi(catch_unwind)]
    pub fn set_negotiate_protocols(&self, on: bool) {
        self.hub.config.set_negotiate_protocols(on);
    }

    /// Answers a handshake question: accept with `protocol` (or none), or reject with
    /// `status` (400-599) and `message` when a status is given.
    #[napi(catch_unwind)]
    pub fn decide(&self, ticket: f64, protocol: Option<String>, status: Option<u32>, message: Option<String>) {
        let decision = match status {
            Some(s) => {
                let s = u16::try_from(s).ok().filter(|s| (400..600).contains(s)).unwrap_or(500);
                crate::hub::Decision::Reject(s, message.unwrap_or_default())
            }
            None => crate::hub::Decision::Accept(protocol.filter(|p| !p.is_empty())),
        };
        self.hub.decide(ticket as u64, decision);
    }

    /// Whether every handshake is put to JS (a `verifyClient` function exists).
    #[napi(catch_unwind)]
    pub fn set_verify(&self, on: bool) {
        self.hub.config.set_verify(on);
    }

    /// Origins allowed to connect; None: any.
    #[napi(catch_unwind)]
    pub fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        self.hub.config.set_allowed_origins(origins);
    }

    /// Connection cap (0: none) and per-connection message rate limit (0 messages: none).
    #[napi(catch_unwind)]
    pub fn set_admission(&self, max_connections: f64, rate_messages: f64, rate_interval: f64) {
        self.hub.config.set_admission(max_connections.max(0.0) as u64, rate_messages.max(0.0) as u64, rate_interval.max(1.0) as u64);
    }

    /// Serves wss:// with this PEM private key and certificate chain. Throws
    /// `ERR_TLS_INVALID_KEY` / `ERR_TLS_INVALID_CERT` when they cannot be used.
    #[napi(catch_unwind)]
    pub fn set_tls(&mut self, key: Buffer, cert: Buffer) -> std::result::Result<(), CodedError> {
        let config = crate::tls::server_config(&key, &cert).map_err(to_js)?;
        self.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        Ok(())
    }

    /// Registers a route pattern; returns its id.
    #[napi(catch_unwind)]
    pub fn add_route(&self, pattern: String) -> std::result::Result<u32, CodedError> {
        self.hub
            .add_route(&pattern)
            .map(|id| id.0)
            .map_err(|e| to_js(CoreError::InvalidRoute(pattern, e.0)))
    }

    /// Binds and starts accepting. Returns `[address, family, port]`.
    #[napi(catch_unwind)]
    pub fn listen(&mut self, host: String, port: u32, backlog: u32) -> std::result::Result<Vec<String>, CodedError> {
        if self.listening.is_some() {
            return Err(to_js(CoreError::AlreadyListening));
        }
        let ip: IpAddr = host.parse().map_err(|_| Error::new("ERR_INVALID_ARG_VALUE".to_owned(), format!("invalid host {host:?}")))?;
        let port = u16::try_from(port).map_err(|_| Error::new("ERR_SOCKET_BAD_PORT".to_owned(), "port out of range".to_owned()))?;
        let addr = SocketAddr::new(ip, port);
        let listen_err = |source| to_js(CoreError::Listen { source, address: host.clone(), port });
        let std_listener = server::bind(addr, backlog).map_err(listen_err)?;
        let rt = runtime().map_err(coded)?;
        let _guard = rt.enter();
        let listening = server::start(self.hub.clone(), std_listener, self.tls.clone()).map_err(listen_err)?;
        let local = listening.local;
        self.listening = Some(listening);
        let family = if local.is_ipv6() { "IPv6" } else { "IPv4" };
        Ok(vec![local.ip().to_string(), family.to_owned(), local.port().to_string()])
    }

    /// Stops accepting new connections. Open connections stay.
    #[napi(catch_unwind)]
    pub fn stop_accepting(&mut self) {
        if let Some(l) = self.listening.take() {
            // Before stopping, so a handshake ending from now on reports the server idle.
            self.hub.set_accepting(false);
            l.stop();
        }
    }

    /// `{ sendText(id, string), sendBinary(id, bytes), admit(id), drain(arena), uncork() }`: the
    /// per-message sends, the admission of a connection whose handlers ran (broadcasts to
    /// everyone or to its route reach it from then on), and the two calls of every event batch
    /// (`drain` copies waiting events into the arena Buffer and corks sends; `uncork` writes
    /// what was sent meanwhile and says whether more events wait, so JS comes back on its next
    /// turn), as plain functions bound to this server (see `fast`).
    #[napi(catch_unwind)]
    pub fn fast_path(&self, env: &Env) -> Result<Unknown<'_>> {
        let raw = fast::functions(env.raw(), &self.local)?;
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
    }

    #[napi(catch_unwind)]
    pub fn ping(&mut self, id: f64, data: &[u8]) -> bool {
        self.send(id, frame::OP_PING, data)
    }

    #[napi(catch_unwind)]
    pub fn pong(&mut self, id: f64, data: &[u8]) -> bool {
        self.send(id, frame::OP_PONG, data)
    }

    /// Starts the close handshake. The facade has validated code and reason.
    #[napi(catch_unwind)]
    pub fn close(&mut self, id: f64, code: Option<u32>, reason: String) -> bool {
        let code = code.and_then(|c| u16::try_from(c).ok()).filter(|c| close::is_valid_wire_code(*c));
        let reason = if code.is_some() { reason.as_bytes() } else { b"" };
        self.send(id, frame::OP_CLOSE, &frame::close_payload(code, reason))
    }

    /// Adds a connection to a room. False if it is closed or already a member.
    #[napi(catch_unwind)]
    pub fn join(&self, id: f64, room: String) -> bool {
        self.hub.join(conn_id(id), &room)
    }

    /// Removes a connection from a room. False if it was not a member.
    #[napi(catch_unwind)]
    pub fn leave(&self, id: f64, room: String) -> bool {
        self.hub.leave(conn_id(id), &room)
    }

    #[napi(catch_unwind)]
    pub fn room_size(&self, room: String) -> u32 {
        self.hub.room_size(&room) as u32
    }

    #[napi(catch_unwind)]
    pub fn room_names(&self) -> Vec<String> {
        self.hub.room_names()
    }

    /// Connections that are quiet and hold no task now (see conn::task::park).
    #[napi(catch_unwind)]
    pub fn parked_count(&self) -> u32 {
        self.hub.parked.load(std::sync::atomic::Ordering::Relaxed) as u32
    }

    #[napi(catch_unwind)]
    pub fn room_count(&self) -> u32 {
        self.hub.room_count() as u32
    }

    /// Ids of a room's members (`room`), a route's connections (`route`), or all.
    #[napi(catch_unwind)]
    pub fn members(&self, room: Option<String>, route: Option<u32>) -> Vec<f64> {
        self.hub.members(target(&room, route)).into_iter().map(|c| c.0 as f64).collect()
    }

    /// Broadcasts one message to a room (`room`), a route (`route`) or everyone, except the
    /// listed ids. The frame is encoded once; the fan-out runs off this thread.
    #[napi(catch_unwind)]
    pub fn broadcast(
        &self,
        room: Option<String>,
        route: Option<u32>,
        data: Either<String, Buffer>,
        binary: bool,
        except: Vec<f64>,
    ) -> Result<u32> {
        let payload: &[u8] = match &data {
            Either::A(s) => s.as_bytes(),
            Either::B(b) => b,
        };
        let opcode = if binary { frame::OP_BINARY } else { frame::OP_TEXT };
        let mut buf = BytesMut::with_capacity(payload.len() + frame::MAX_HEADER_LEN);
        frame::encode_into(&mut buf, opcode, payload);
        let _rt = runtime()?.enter();
        let except = except.into_iter().map(conn_id).collect();
        Ok(self.hub.broadcast(target(&room, route), buf.freeze(), except) as u32)
    }

    /// Drops the connection without a close handshake.
    #[napi(catch_unwind)]
    pub fn terminate(&self, id: f64) -> bool {
        self.with_conn(id, |c| {
            c.terminate();
            true
        })
    }

    /// Turns `ping` events on for a connection (JS added a `ping` listener).
    #[napi(catch_unwind)]
    pub fn want_pings(&self, id: f64) {
        self.with_conn(id, |c| {
            c.ping_events.store(true, std::sync::atomic::Ordering::Relaxed);
            true
        });
    }

    /// Whether the connection still accepts frames (false once closing or gone).
    #[napi(catch_unwind)]
    pub fn accepts(&self, id: f64) -> bool {
        self.with_conn(id, |c| c.outbox().is_open())
    }

    /// Bytes queued for a connection and not yet written to its socket.
    #[napi(catch_unwind)]
    pub fn buffered_amount(&self, id: f64) -> f64 {
        self.local.borrow().conn(conn_id(id)).map_or(0.0, |c| c.outbox().buffered() as f64)
    }

    /// Ends every handshake in progress without an answer (a shutdown that timed out).
    #[napi(catch_unwind)]
    pub fn abort_handshakes(&self) {
        self.hub.abort_handshakes.send_modify(|n| *n += 1);
    }

    /// Connections JS has not seen close yet plus handshakes in progress: 0 when idle.
    #[napi(catch_unwind)]
    pub fn pending_connections(&self) -> u32 {
        self.hub.pending() as u32
    }

    #[napi(catch_unwind)]
    pub fn connection_count(&self) -> u32 {
        self.hub.connection_count() as u32
    }

    #[napi(catch_unwind)]
    pub fn route_count(&self) -> u32 {
        self.hub.route_count() as u32
    }
}

impl NativeServer {
    fn with_conn(&self, id: f64, f: impl FnOnce(&Conn) -> bool) -> bool {
        self.local.borrow().conn(conn_id(id)).is_some_and(|c| f(c))
    }

    fn send(&mut self, id: f64, opcode: u8, payload: &[u8]) -> bool {
        self.local.borrow_mut().send(conn_id(id), opcode, payload)
    }
}

fn target(room: &Option<String>, route: Option<u32>) -> Target<'_> {
    match (room, route) {
        (Some(r), _) => Target::Room(r),
        (None, Some(r)) => Target::Route(crate::protocol::route::RouteId(r)),
        (None, None) => Target::All,
    }
}

/// A connection id from JS (ids are never 0, so 0 stands for anything invalid).
fn conn_id(id: f64) -> ConnId {
    ConnId(if id.is_finite() && id >= 0.0 { id as u64 } else { 0 })
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        self.stop_accepting();
        for c in self.hub.all().iter() {
            c.terminate();
        }
    }
}
