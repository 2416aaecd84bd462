//! A connection's socket in two parts: the descriptor (`Socket`, in the connection), which
//! any thread may write to with a non-blocking `send`, and its registration with tokio's
//! reactor (`Io`), which only the task running the connection holds, for readiness. A parked
//! connection gives its registration up (`task::park`), so an idle connection costs no reactor
//! state: tokio's is 256 bytes, padded to cache lines.
//!
//! Also the listening socket and the stream a handshake runs on (`Listener`, `Stream`): the
//! registration made at accept time is the one the connection's task goes on with.
//!
//! On Unix the registration is a `tokio::io::unix::AsyncFd` over the descriptor; elsewhere the
//! socket is a tokio `TcpStream`, which keeps its own registration (and connections there do
//! not park).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Conn;

pub use imp::{Io, Listener, Socket, Stream};

#[cfg(unix)]
mod imp {
    use std::mem::ManuallyDrop;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicI32, Ordering};

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    use super::*;

    /// A read that leaves room in `buf` emptied the socket's receive queue: with epoll and kqueue
    /// (edge-triggered) the socket is then not readable until its next event, so its readiness is
    /// cleared and the task waits for that event instead of reading again only to be told
    /// `WouldBlock` (one system call per message saved). Data that arrives meanwhile comes with a
    /// new event, which clearing does not lose. `read` is the plain, non-blocking read.
    fn read_draining(read: impl FnOnce(&mut [u8]) -> io::Result<usize>, buf: &mut [u8], drained: &mut usize) -> io::Result<usize> {
        let room = buf.len();
        let n = read(buf)?;
        if n > 0 && n < room {
            *drained = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// `read_draining`'s result once the registration has cleared the readiness.
    fn drained_result(res: io::Result<usize>, drained: usize) -> io::Result<usize> {
        match res {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained > 0 => Ok(drained),
            res => res,
        }
    }

    /// `MSG_NOSIGNAL`: a peer that is gone is an error to report, not a `SIGPIPE` for the host.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const SEND_FLAGS: libc::c_int = 0;

    /// A connected, non-blocking TCP socket. Its descriptor is closed when the connection's
    /// task ends (`Io`'s drop: on the I/O thread, not wherever the last handle to the
    /// connection goes), or else when it is dropped; -1 once closed.
    pub struct Socket(AtomicI32);

    impl Socket {
        fn from_owned(fd: OwnedFd) -> Self {
            Socket(AtomicI32::new(fd.into_raw_fd()))
        }

        /// A connected socket made elsewhere (tests).
        #[cfg(test)]
        pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
            stream.set_nonblocking(true)?;
            Ok(Socket::from_owned(stream.into()))
        }

        /// The descriptor, or an error once it is closed.
        fn open_fd(&self) -> io::Result<RawFd> {
            match self.0.load(Ordering::Acquire) {
                -1 => Err(io::ErrorKind::NotConnected.into()),
                fd => Ok(fd),
            }
        }

        /// Writes `iov` without blocking, with the socket's own system calls (`send` for one
        /// buffer, `sendmsg` for several) rather than `writev`, which passes the file layer
        /// first: a 1 KiB loopback `writev` cost 15–20% more CPU than a `send`.
        pub fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            let fd = self.open_fd()?;
            // SAFETY: the buffers are valid for reads of their lengths (an `IoSlice` is an
            // `iovec`). The descriptor is open: a connection's socket is written under its
            // outbox lock, under which `Io`'s drop closes it, and nothing writes to a dead
            // outbox; a handshake's socket has one owner.
            let n = unsafe {
                match iov {
                    [one] => libc::send(fd, one.as_ptr().cast(), one.len(), SEND_FLAGS),
                    _ => {
                        let mut msg: libc::msghdr = std::mem::zeroed();
                        msg.msg_iov = iov.as_ptr().cast_mut().cast();
                        msg.msg_iovlen = iov.len() as _;
                        libc::sendmsg(fd, &msg, SEND_FLAGS)
                    }
                }
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }

        /// Reads without blocking, whatever the registration says.
        pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            recv(self.open_fd()?, buf)
        }

        pub fn shutdown_write(&self) -> io::Result<()> {
            // SAFETY: plain system call on an open descriptor; its result is checked.
            if unsafe { libc::shutdown(self.open_fd()?, libc::SHUT_WR) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        fn set_nodelay(&self) -> io::Result<()> {
            let on: libc::c_int = 1;
            // SAFETY: `on` is a valid `int` option value; the descriptor is open.
            let r = unsafe { libc::setsockopt(self.open_fd()?, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw const on).cast(), std::mem::size_of_val(&on) as libc::socklen_t) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        pub fn fd(&self) -> RawFd {
            self.0.load(Ordering::Acquire)
        }

        /// Closes the descriptor now. The caller holds the connection's outbox lock, and the
        /// outbox is dead: no writer uses the descriptor any more, and none will.
        fn close(&self) {
            let fd = self.0.swap(-1, Ordering::AcqRel);
            if fd != -1 {
                // SAFETY: the descriptor was this socket's, and -1 is left in its place.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            self.close();
        }
    }

    /// What a registration is made for: a handshake's socket, then the connection that owns it
    /// (which keeps the descriptor open for as long as the registration lives, as tokio
    /// requires). `Moving` holds the descriptor's number while the socket passes from one to
    /// the other, so that it reads the same throughout.
    enum Owner {
        Socket(Socket),
        Conn(Arc<Conn>),
        Moving(RawFd),
    }

    impl AsRawFd for Owner {
        fn as_raw_fd(&self) -> RawFd {
            match self {
                Owner::Socket(s) => s.fd(),
                Owner::Conn(c) => c.io.fd(),
                Owner::Moving(fd) => *fd,
            }
        }
    }

    fn register(owner: Owner) -> io::Result<AsyncFd<Owner>> {
        // SAFETY: the descriptor belongs to the socket `owner` holds (or to the connection that
        // holds it), which stays alive, unchanged, for as long as the `AsyncFd` (see `Owner`).
        unsafe { AsyncFd::register_with_interest(owner, Interest::READABLE | Interest::WRITABLE) }.map_err(|e| e.into_parts().1)
    }

    /// The registration the connection's task waits on. Dropped when the task ends or parks:
    /// the socket leaves the reactor, and if the connection has ended (its outbox is dead),
    /// its descriptor is closed here, on the I/O thread.
    pub struct Io(ManuallyDrop<AsyncFd<Owner>>);

    impl Drop for Io {
        fn drop(&mut self) {
            // SAFETY: taken once, here; the field is not used again.
            let fd = unsafe { ManuallyDrop::take(&mut self.0) };
            // `into_inner` leaves the reactor first: the descriptor is still open for it.
            if let Owner::Conn(conn) = fd.into_inner() {
                let out = conn.outbox();
                if out.is_dead() {
                    conn.io.close();
                }
            }
        }
    }

    impl Io {
        /// Registers `conn`'s socket again (a parked connection resuming).
        pub fn register(conn: Arc<Conn>) -> io::Result<Io> {
            register(Owner::Conn(conn)).map(|fd| Io(ManuallyDrop::new(fd)))
        }

        pub fn conn(&self) -> &Arc<Conn> {
            match self.0.get_ref() {
                Owner::Conn(c) => c,
                // An `Io` is only made for a connection (`register`, `Stream::into_conn`).
                _ => unreachable!("a connection's registration holds the connection"),
            }
        }

        /// Whether the socket may be readable (a failed socket counts: the read finds out);
        /// if not, the task's waker is kept for its next event.
        pub fn poll_readable(&self, cx: &mut Context<'_>) -> bool {
            self.0.poll_read_ready(cx).is_ready()
        }

        pub fn poll_writable(&self, cx: &mut Context<'_>) -> bool {
            self.0.poll_write_ready(cx).is_ready()
        }

        /// Reads what the socket holds into `buf`; `WouldBlock` when it holds nothing (the
        /// readiness is then cleared, see `read_draining`).
        pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut drained = 0;
            let res = self.0.try_io(Interest::READABLE, |o| read_draining(|b| recv(o.as_raw_fd(), b), buf, &mut drained));
            drained_result(res, drained)
        }

        /// Writes `iov`; `WouldBlock` (and the write readiness cleared) when the socket is full.
        pub fn write(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            self.0.try_io(Interest::WRITABLE, |_| self.conn().io.send(iov))
        }

        /// Waits until the socket may be readable.
        pub async fn readable(&self) -> io::Result<()> {
            self.0.readable().await.map(|mut g| g.retain_ready())
        }
    }

    fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes; `fd` is open (see `Owner`).
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// A listening socket.
    pub struct Listener(AsyncFd<std::net::TcpListener>);

    impl Listener {
        pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
            listener.set_nonblocking(true)?;
            // SAFETY: the `AsyncFd` owns the listener, whose descriptor stays open for as long.
            unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }.map(Listener).map_err(|e| e.into_parts().1)
        }

        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.0.get_ref().local_addr()
        }

        /// Stops listening at once (new connections are refused).
        pub fn shutdown(&self) {
            let _ = socket2::SockRef::from(self.0.get_ref()).shutdown(std::net::Shutdown::Both);
        }

        /// The next connection, non-blocking and registered for the handshake.
        pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
            loop {
                let mut guard = self.0.readable().await?;
                match guard.try_io(|l| accept(l.get_ref())) {
                    Ok(Ok((socket, peer))) => return Ok((Stream(register(Owner::Socket(socket))?), peer)),
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => continue,
                }
            }
        }
    }

    /// `accept4` with the flags a connection needs, where it exists (one system call).
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly"))]
    fn accept(listener: &std::net::TcpListener) -> io::Result<(Socket, SocketAddr)> {
        // SAFETY: `accept4` writes at most `*len` bytes of address into `storage` and sets
        // `*len`, as `try_init` expects; the listener's descriptor is open.
        let (fd, peer) = unsafe {
            socket2::SockAddr::try_init(|storage, len| {
                let fd = libc::accept4(listener.as_raw_fd(), storage.cast(), len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
                if fd < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(fd)
                }
            })?
        };
        // SAFETY: `accept4` returned a new descriptor that nothing else owns.
        let socket = Socket::from_owned(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok((socket, peer.as_socket().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))))
    }

    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly")))]
    fn accept(listener: &std::net::TcpListener) -> io::Result<(Socket, SocketAddr)> {
        let (stream, peer) = listener.accept()?;
        stream.set_nonblocking(true)?;
        // No MSG_NOSIGNAL there: the socket itself is told not to raise SIGPIPE.
        #[cfg(target_vendor = "apple")]
        {
            let on: libc::c_int = 1;
            // SAFETY: `on` is a valid `int` option value; the descriptor is open.
            if unsafe { libc::setsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NOSIGPIPE, (&raw const on).cast(), std::mem::size_of_val(&on) as libc::socklen_t) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((Socket::from_owned(stream.into()), peer))
    }

    /// The socket of a handshake in progress, registered with the reactor.
    pub struct Stream(AsyncFd<Owner>);

    impl Stream {
        fn socket(&self) -> &Socket {
            match self.0.get_ref() {
                Owner::Socket(s) => s,
                // A stream holds its socket until `into_conn` consumes it.
                _ => unreachable!("a handshake's stream holds its socket"),
            }
        }

        pub fn set_nodelay(&self) -> io::Result<()> {
            self.socket().set_nodelay()
        }

        /// Writes what the socket takes at once, without waiting.
        pub fn write_now(&self, buf: &[u8]) -> usize {
            self.0.try_io(Interest::WRITABLE, |_| self.socket().send(&[IoSlice::new(buf)])).unwrap_or(0)
        }

        /// Hands the socket to the connection `make` builds, keeping its registration for the
        /// connection's task: no second registration with the reactor.
        pub fn into_conn(self, make: impl FnOnce(Socket) -> Arc<Conn>) -> (Arc<Conn>, Io) {
            let mut fd = self.0;
            let raw = fd.as_raw_fd();
            let Owner::Socket(socket) = std::mem::replace(fd.get_mut(), Owner::Moving(raw)) else {
                unreachable!("a handshake's stream holds its socket")
            };
            let conn = make(socket);
            *fd.get_mut() = Owner::Conn(conn.clone());
            (conn, Io(ManuallyDrop::new(fd)))
        }
    }

    impl AsyncRead for Stream {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            loop {
                let mut guard = std::task::ready!(self.0.poll_read_ready(cx))?;
                match guard.try_io(|fd| recv(fd.as_raw_fd(), buf.initialize_unfilled())) {
                    Ok(Ok(n)) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(_would_block) => continue,
                }
            }
        }
    }

    impl AsyncWrite for Stream {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            loop {
                let mut guard = std::task::ready!(self.0.poll_write_ready(cx))?;
                match guard.try_io(|_| self.socket().send(&[IoSlice::new(buf)])) {
                    Ok(res) => return Poll::Ready(res),
                    Err(_would_block) => continue,
                }
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(self.socket().shutdown_write())
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::*;

    /// A connected TCP socket; tokio's stream, which keeps its own registration.
    pub struct Socket(tokio::net::TcpStream);

    impl Socket {
        #[cfg(test)]
        pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
            stream.set_nonblocking(true)?;
            tokio::net::TcpStream::from_std(stream).map(Socket)
        }

        pub fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            self.0.try_write_vectored(iov)
        }

        pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            io::Read::read(&mut &*socket2::SockRef::from(&self.0), buf)
        }

        pub fn shutdown_write(&self) -> io::Result<()> {
            socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Write)
        }
    }

    /// The connection, whose socket holds the registration the task waits on.
    pub struct Io(Arc<Conn>);

    impl Io {
        pub fn register(conn: Arc<Conn>) -> io::Result<Io> {
            Ok(Io(conn))
        }

        pub fn conn(&self) -> &Arc<Conn> {
            &self.0
        }

        pub fn poll_readable(&self, cx: &mut Context<'_>) -> bool {
            self.0.io.0.poll_read_ready(cx).is_ready()
        }

        pub fn poll_writable(&self, cx: &mut Context<'_>) -> bool {
            self.0.io.0.poll_write_ready(cx).is_ready()
        }

        pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.io.0.try_read(buf)
        }

        pub fn write(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            self.0.io.0.try_write_vectored(iov)
        }

        pub async fn readable(&self) -> io::Result<()> {
            self.0.io.0.readable().await
        }
    }

    pub struct Listener(tokio::net::TcpListener);

    impl Listener {
        pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener).map(Listener)
        }

        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.0.local_addr()
        }

        pub fn shutdown(&self) {
            let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
        }

        pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
            let (stream, peer) = self.0.accept().await?;
            Ok((Stream(stream), peer))
        }
    }

    pub struct Stream(tokio::net::TcpStream);

    impl Stream {
        pub fn set_nodelay(&self) -> io::Result<()> {
            self.0.set_nodelay(true)
        }

        pub fn write_now(&self, buf: &[u8]) -> usize {
            self.0.try_write(buf).unwrap_or(0)
        }

        pub fn into_conn(self, make: impl FnOnce(Socket) -> Arc<Conn>) -> (Arc<Conn>, Io) {
            let conn = make(Socket(self.0));
            (conn.clone(), Io(conn))
        }
    }

    impl AsyncRead for Stream {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Stream {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
}
