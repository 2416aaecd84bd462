//! Server options: defaults, validation and the documented limits. Values that may change at
//! run time are atomics read by connection tasks when they need them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// `maxPayloadSize` default: 100 MiB.
pub const DEFAULT_MAX_PAYLOAD: u64 = 100 * 1024 * 1024;
/// `heartbeatInterval` default in ms.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 30_000;
/// `heartbeatTimeout` default in ms.
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 60_000;
/// `handshakeTimeout` default: how long a handshake may take, from accept to the 101, in ms.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// `maxBackpressure` default: bytes queued for one peer above which `send` returns false,
/// broadcasts skip (or close) the peer and the peer's input is no longer read.
pub const DEFAULT_MAX_BACKPRESSURE: u64 = 4 * 1024 * 1024;
/// Largest request head accepted (Node's default `maxHeaderSize`).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long to wait for the peer's close frame after sending ours.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed socket is read and discarded so the peer sees FIN, not RST.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Config {
    max_payload: AtomicU64,
    heartbeat_interval_ms: AtomicU64,
    heartbeat_timeout_ms: AtomicU64,
    /// JS has a `handleProtocols` function: offered subprotocols are put to it.
    negotiate: AtomicBool,
    handshake_timeout_ms: AtomicU64,
    max_backpressure: AtomicU64,
    /// A broadcast to a peer over `max_backpressure` closes it (1008) instead of skipping it.
    close_on_backpressure: AtomicBool,
    /// JS has a `verifyClient` function: every handshake is put to it.
    verify: AtomicBool,
    /// Origins allowed to connect (exact, case-insensitive); None: any.
    allowed_origins: RwLock<Option<Vec<String>>>,
    /// Open connections above which handshakes get 503; 0: no limit.
    max_connections: AtomicU64,
    /// Messages (data and pings) a connection may send per `rate_interval_ms`; 0: no limit.
    rate_messages: AtomicU64,
    rate_interval_ms: AtomicU64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_payload: AtomicU64::new(DEFAULT_MAX_PAYLOAD),
            heartbeat_interval_ms: AtomicU64::new(DEFAULT_HEARTBEAT_INTERVAL_MS),
            heartbeat_timeout_ms: AtomicU64::new(DEFAULT_HEARTBEAT_TIMEOUT_MS),
            negotiate: AtomicBool::new(false),
            handshake_timeout_ms: AtomicU64::new(DEFAULT_HANDSHAKE_TIMEOUT_MS),
            max_backpressure: AtomicU64::new(DEFAULT_MAX_BACKPRESSURE),
            close_on_backpressure: AtomicBool::new(false),
            verify: AtomicBool::new(false),
            allowed_origins: RwLock::new(None),
            max_connections: AtomicU64::new(0),
            rate_messages: AtomicU64::new(0),
            rate_interval_ms: AtomicU64::new(1000),
        }
    }
}

impl Config {
    pub fn max_payload(&self) -> u64 {
        self.max_payload.load(Ordering::Relaxed)
    }

    pub fn set_max_payload(&self, bytes: u64) {
        self.max_payload.store(bytes, Ordering::Relaxed);
    }

    /// Ping interval; None when heartbeats are off (interval 0).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        match self.heartbeat_interval_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Ping interval in milliseconds; 0 when heartbeats are off.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.heartbeat_interval_ms.load(Ordering::Relaxed)
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms.load(Ordering::Relaxed))
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.load(Ordering::Relaxed))
    }

    pub fn max_backpressure(&self) -> usize {
        self.max_backpressure.load(Ordering::Relaxed) as usize
    }

    pub fn closes_on_backpressure(&self) -> bool {
        self.close_on_backpressure.load(Ordering::Relaxed)
    }

    pub fn set_limits(&self, handshake_timeout_ms: u64, max_backpressure: u64, close_on_backpressure: bool) {
        self.handshake_timeout_ms.store(handshake_timeout_ms, Ordering::Relaxed);
        self.max_backpressure.store(max_backpressure, Ordering::Relaxed);
        self.close_on_backpressure.store(close_on_backpressure, Ordering::Relaxed);
    }

    pub fn verifies(&self) -> bool {
        self.verify.load(Ordering::Relaxed)
    }

    pub fn set_verify(&self, on: bool) {
        self.verify.store(on, Ordering::Relaxed);
    }

    pub fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        *self.allowed_origins.write().unwrap_or_else(|e| e.into_inner()) = origins;
    }

    /// Whether a request with this `Origin` header (None: absent) may connect.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match &*self.allowed_origins.read().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some(list) if list.iter().any(|a| a == "*") => true,
            Some(list) => origin.is_some_and(|o| list.iter().any(|a| a.eq_ignore_ascii_case(o.trim()))),
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed) as usize
    }

    /// Messages per window and the window; None when there is no rate limit.
    pub fn rate_limit(&self) -> Option<(u64, Duration)> {
        match self.rate_messages.load(Ordering::Relaxed) {
            0 => None,
            n => Some((n, Duration::from_millis(self.rate_interval_ms.load(Ordering::Relaxed).max(1)))),
        }
    }

    pub fn set_admission(&self, max_connections: u64, rate_messages: u64, rate_interval_ms: u64) {
        self.max_connections.store(max_connections, Ordering::Relaxed);
        self.rate_messages.store(rate_messages, Ordering::Relaxed);
        self.rate_interval_ms.store(rate_interval_ms, Ordering::Relaxed);
    }

    pub fn negotiates_protocols(&self) -> bool {
        self.negotiate.load(Ordering::Relaxed)
    }

    pub fn set_negotiate_protocols(&self, on: bool) {
        self.negotiate.store(on, Ordering::Relaxed);
    }

    pub fn set_heartbeat(&self, interval_ms: u64, timeout_ms: u64) {
        self.heartbeat_interval_ms.store(interval_ms, Ordering::Relaxed);
        self.heartbeat_timeout_ms.store(timeout_ms, Ordering::Relaxed);
    }
}
