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

/// See Cargo.toml: why the engine allocates through jemalloc.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
