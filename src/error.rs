//! The core's error type. Each variant has a stable `code()` string; the bridge turns an
//! `Error` into a JS `Error` with that `code`, in one place.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// Binding or listening on an address failed.
    Listen { source: io::Error, address: String, port: u16 },
    /// `listen` on a server that already listens.
    AlreadyListening,
    /// A route pattern was refused.
    InvalidRoute(String, &'static str),
    /// The TLS key or certificate (named) cannot be used.
    Tls(&'static str, String),
}

impl Error {
    /// The stable `code` JS sees. For OS errors it is the errno name, as in Node.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Listen { source, .. } => errno_name(source),
            Error::AlreadyListening => "ERR_SERVER_ALREADY_LISTEN",
            Error::InvalidRoute(..) => "ERR_INVALID_ROUTE",
            Error::Tls("key", _) => "ERR_TLS_INVALID_KEY",
            Error::Tls(..) => "ERR_TLS_INVALID_CERT",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen { source, address, port } => {
                write!(f, "listen {}: {} {address}:{port}", errno_name(source), describe(source))
            }
            Error::AlreadyListening => write!(f, "Listen method has been called more than once without closing."),
            Error::InvalidRoute(path, why) => write!(f, "Invalid route path {path:?}: {why}"),
            Error::Tls(what, why) => write!(f, "Invalid TLS {what}: {why}"),
        }
    }
}

impl std::error::Error for Error {}

fn describe(e: &io::Error) -> String {
    match errno_name(e) {
        "EADDRINUSE" => "address already in use".into(),
        "EACCES" => "permission denied".into(),
        "EADDRNOTAVAIL" => "address not available".into(),
        _ => e.to_string(),
    }
}

/// The errno name Node would use for an OS error.
pub fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(98) => "EADDRINUSE",
        Some(13) => "EACCES",
        Some(99) => "EADDRNOTAVAIL",
        Some(1) => "EPERM",
        Some(22) => "EINVAL",
        Some(24) => "EMFILE",
        Some(97) => "EAFNOSUPPORT",
        _ => match e.kind() {
            io::ErrorKind::AddrInUse => "EADDRINUSE",
            io::ErrorKind::PermissionDenied => "EACCES",
            io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
            _ => "ERR_SOCKET",
        },
    }
}
