//! The listening socket: accepts connections, runs the upgrade handshake with typed
//! rejections, and starts a connection task for each accepted upgrade.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::config::MAX_HEADER_BYTES;
use crate::conn;
use crate::conn::socket::{Listener, Stream};
use crate::event::{kind, OpenInfo};
use crate::hub::{Decision, Hub};
use crate::protocol::handshake::{self, Rejection};
use crate::protocol::route::parse_query;

/// A bound, accepting listener. Dropping it does not stop it; call `stop`.
pub struct Listening {
    pub local: SocketAddr,
    listener: Arc<Listener>,
    stop_tx: watch::Sender<bool>,
}

impl Listening {
    /// Stops accepting at once: when this returns the socket no longer listens, so new
    /// connections are refused, as with Node's `server.close()`. Open ones are not touched.
    pub fn stop(&self) {
        // shutdown(2) on a listening socket stops it listening synchronously; the accept
        // loop then ends on the stop signal.
        self.listener.shutdown();
        let _ = self.stop_tx.send(true);
    }
}

/// Binds like Node's `net.Server.listen`: SO_REUSEADDR, dual-stack when the address is `::`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Starts accepting on `listener` inside the current runtime; with `tls`, as wss://.
pub fn start(hub: Arc<Hub>, listener: std::net::TcpListener, tls: Option<TlsAcceptor>) -> io::Result<Listening> {
    let listener = Arc::new(Listener::from_std(listener)?);
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    hub.set_accepting(true);
    tokio::spawn(accept_loop(hub, listener.clone(), tls, stop_rx));
    Ok(Listening { local, listener, stop_tx })
}

async fn accept_loop(hub: Arc<Hub>, listener: Arc<Listener>, tls: Option<TlsAcceptor>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    crate::event::turn();
                    let guard = HandshakeGuard::new(hub.clone());
                    let _ = stream.set_nodelay();
                    match &tls {
                        None => {
                            tokio::spawn(serve(handshake(guard, stream, peer)));
                        }
                        Some(acceptor) => {
                            let accept = acceptor.accept(stream);
                            tokio::spawn(serve(async move {
                                let deadline = tokio::time::Instant::now() + guard.hub.config.handshake_timeout();
                                let mut abort = guard.hub.abort_handshakes.subscribe();
                                // A failed, slow or aborted TLS handshake just drops the socket.
                                let accepted = tokio::select! {
                                    biased;
                                    _ = abort.changed() => return None,
                                    r = tokio::time::timeout_at(deadline, accept) => r,
                                };
                                match accepted {
                                    Ok(Ok(stream)) => handshake(guard, stream, peer).await,
                                    _ => None,
                                }
                            }));
                        }
                    }
                }
                // Out of descriptors or a connection reset before accept: keep serving the
                // others, but do not spin on a persistent error.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }
}

/// Counts a handshake in progress, so that a closing server knows when it is idle.
struct HandshakeGuard {
    hub: Arc<Hub>,
}

impl HandshakeGuard {
    fn new(hub: Arc<Hub>) -> Self {
        hub.handshake_started();
        Self { hub }
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.hub.handshake_ended();
    }
}

/// A stream the upgrade request arrives on: plain TCP, or TLS over TCP.
pub trait Upgrading: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket and, for TLS, the session, for the connection loop to drive.
    fn into_parts(self) -> (Stream, Option<rustls::ServerConnection>);

    /// Writes what the socket takes at once, without waiting (and without TLS: none).
    fn write_now(&mut self, _buf: &[u8]) -> usize {
        0
    }
}

impl Upgrading for Stream {
    fn into_parts(self) -> (Stream, Option<rustls::ServerConnection>) {
        (self, None)
    }

    fn write_now(&mut self, buf: &[u8]) -> usize {
        Stream::write_now(self, buf)
    }
}

impl Upgrading for tokio_rustls::server::TlsStream<Stream> {
    fn into_parts(self) -> (Stream, Option<rustls::ServerConnection>) {
        let (io, session) = self.into_inner();
        (io, Some(session))
    }
}

/// A connection whose handshake completed: what its loop starts with (`conn::task::start`).
type Upgraded = (conn::socket::Io, Arc<Hub>, Vec<u8>);

/// Runs a handshake, then the connection, in one task. The handshake's future is boxed and
/// freed when it ends: the task then carries only the connection's state, which is what an
/// idle connection costs.
fn serve<H>(handshake: H) -> impl Future<Output = ()> + Send + 'static
where
    H: Future<Output = Option<Upgraded>> + Send + 'static,
{
    let handshake = Box::pin(handshake);
    async move {
        let Some((io, hub, early)) = handshake.await else { return };
        conn::task::start(io, hub, early).await;
    }
}

/// Reads, checks and answers an upgrade request (or gives up when the server aborts
/// handshakes). Returns the connection when it was upgraded.
async fn handshake<S: Upgrading>(guard: HandshakeGuard, stream: S, peer: SocketAddr) -> Option<Upgraded> {
    crate::event::turn();
    let mut abort = guard.hub.abort_handshakes.subscribe();
    tokio::select! {
        biased;
        _ = abort.changed() => None,
        upgraded = upgrade(guard, stream, peer) => upgraded,
    }
}

/// Refuses a handshake (see `reject`). Boxed: its state is allocated only by a refusal, not
/// carried by every handshake's future.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: S, rejection: Rejection) -> Option<Upgraded> {
    Box::pin(reject(stream, rejection)).await;
    None
}

/// An async block rather than an async fn, whose arguments would be copied into its state a
/// second time. The handshake's state is one allocation per connection: small enough, it
/// comes from the allocator's per-thread cache.
#[allow(clippy::manual_async_fn)]
fn upgrade<S: Upgrading>(guard: HandshakeGuard, mut stream: S, peer: SocketAddr) -> impl Future<Output = Option<Upgraded>> + Send {
    async move {
        let hub = guard.hub.clone();
        let deadline = tokio::time::Instant::now() + hub.config.handshake_timeout();
        // Read until the request head is complete. Each read is parsed at once, so garbage is
        // refused as soon as it arrives; a head that arrived whole (the usual case) is parsed
        // once, borrowing the buffer, so that no header is copied until it is written for JS.
        let mut buf = Vec::with_capacity(1024);
        let (req, head_len) = loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.len().min(MAX_HEADER_BYTES + 1 - buf.len()).max(1));
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // Timed out, or the peer left: nothing to answer.
                _ => return None,
            }
            match handshake::parse(&buf[..buf.len().min(MAX_HEADER_BYTES)]) {
                Ok(Some(head)) => break head,
                Ok(None) if buf.len() >= MAX_HEADER_BYTES => return refuse(stream, Rejection::HeadersTooLarge).await,
                Ok(None) => {}
                Err(rejection) => return refuse(stream, rejection).await,
            }
        };
        let Some(route) = hub.find_route(req.path()) else {
            return refuse(stream, Rejection::NotFound).await;
        };
        if !handshake::wants_upgrade(&req) {
            return refuse(stream, Rejection::UpgradeRequired("Upgrade Required")).await;
        }
        let upgrade = match handshake::check(&req) {
            Ok(u) => u,
            Err(rejection) => return refuse(stream, rejection).await,
        };
        if !hub.config.origin_allowed(req.header("origin").map(handshake::latin1).as_deref()) {
            return refuse(stream, Rejection::Status(403, "Origin not allowed".into())).await;
        }
        let Some(slot) = hub.reserve_slot(hub.config.max_connections()) else {
            return refuse(stream, Rejection::Status(503, "Too many connections".into())).await;
        };
        let route_id = route.route;
        let mut info = OpenInfo { route: route_id, request: &req, params: route.params, query: parse_query(req.query()), remote: peer, protocol: None };
        let ask_protocols = !upgrade.protocols.is_empty() && hub.config.negotiates_protocols();
        if hub.config.verifies() || ask_protocols {
            let offered = if ask_protocols { upgrade.protocols } else { Vec::new() };
            let (ticket, rx) = hub.ask(&info, &offered);
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Decision::Accept(p))) => info.protocol = p,
                Ok(Ok(Decision::Reject(status, body))) => {
                    drop(slot);
                    return refuse(stream, Rejection::Status(status, body)).await;
                }
                // Timed out (JS is busy or the verifier never settled): refuse rather than hang.
                _ => {
                    hub.forget_ticket(ticket);
                    drop(slot);
                    return refuse(stream, Rejection::Status(503, "Service Unavailable".into())).await;
                }
            }
        }
        let mut response = Vec::new();
        handshake::response_101(&mut response, &upgrade.accept, info.protocol.as_deref());
        // A fresh socket takes the response at once: one `send`, no write future.
        let sent = stream.write_now(&response);
        if stream.write_all(&response[sent..]).await.is_err() || stream.flush().await.is_err() {
            return None;
        }
        drop(response);
        let mut early = buf[head_len..].to_vec();
        let (stream, mut session) = stream.into_parts();
        if let Some(s) = session.as_mut() {
            conn::tls::take_plaintext(s, &mut early);
        }
        let (conn, io) = stream.into_conn(|socket| hub.register(socket, session, route_id));
        drop(slot);
        drop(guard);
        hub.events.push_request(kind::OPEN, conn.id.0, &info, None);
        Some((io, hub, early))
    }
}

/// Sends a rejection response and closes the connection gracefully.
async fn reject<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, rejection: Rejection) {
    let _ = timeout(crate::config::LINGER_TIMEOUT, async {
        let _ = stream.write_all(&rejection.response()).await;
        let _ = stream.shutdown().await;
    })
    .await;
    // Read what the client still sends until it closes, so the response is not lost to a reset.
    let _ = timeout(crate::config::LINGER_TIMEOUT, async {
        use tokio::io::AsyncReadExt;
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::route::RouteId;

    /// What a connection that has not parked costs is mostly its task: tokio's cell holds a
    /// header, this state and a trailer, rounded up to 128 bytes. At 408 bytes of state the
    /// cell is 512; a byte more would make it 640 for every such connection.
    #[test]
    fn a_connection_task_fits_a_512_byte_cell() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let socket = crate::conn::socket::Socket::from_std(listener.accept().unwrap().0).unwrap();
            let hub = Arc::new(Hub::default());
            let conn = hub.register(socket, None, RouteId(0));
            let io = conn::socket::Io::register(conn).unwrap();
            let task = serve(std::future::ready(Some((io, hub, Vec::new()))));
            assert!(std::mem::size_of_val(&task) <= 408, "connection task state is {} bytes", std::mem::size_of_val(&task));
        });
    }
}
