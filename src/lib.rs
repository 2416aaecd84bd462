//! velocy: a WebSocket server engine for Node.js. The core (protocol, conn, hub, server) is
//! plain Rust on tokio; `bridge` is the only module that speaks napi.
#![deny(clippy::all)]

pub mod config;
pub mod conn;
pub mod error;
pub mod event;
pub mod hub;
pub mod protocol;
pub mod server;
pub mod tls;

mod bridge;
