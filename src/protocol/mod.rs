//! Pure RFC 6455 building blocks: the upgrade request, frames, close codes, UTF-8 checks
//! and URL routing. Nothing here touches sockets, tokio or napi, so all of it is unit-tested
//! and fuzzed without I/O.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod reader;
pub mod route;
pub mod utf8;
