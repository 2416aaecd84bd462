//! A wss:// connection's I/O through its rustls session, driven by hand over the same
//! non-blocking socket as plain connections: records are read through the task's registration
//! and written with a non-blocking `send`, so writers on any thread can still write without
//! waiting.

use std::io::{self, Read, Write};

use rustls::ServerConnection;

use super::socket::{Io, Socket};
use super::Outbox;

/// The socket as a non-blocking `Read` for rustls (the task reads): through the registration,
/// or with `late` straight from the socket (see `task::Task::read`).
struct Reader<'a>(&'a Io, bool);

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.1 {
            self.0.conn().io.recv(buf)
        } else {
            self.0.read(buf)
        }
    }
}

/// The socket as a non-blocking `Write` for rustls: through the task's registration when the
/// task writes (see `Outbox::flush`).
struct Writer<'a>(&'a Socket, Option<&'a Io>);

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.1 {
            Some(io) => io.write(bufs),
            None => self.0.send(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends pending TLS records and encrypts queued frames until everything is on the wire
/// (`Ok(true)`) or the socket would block (`Ok(false)`). At most one buffer's worth of
/// plaintext sits inside rustls at a time, so `Outbox::buffered` stays close to the truth.
pub fn flush(tls: &mut ServerConnection, out: &mut Outbox, socket: &Socket, io: Option<&Io>) -> io::Result<bool> {
    loop {
        while tls.wants_write() {
            match tls.write_tls(&mut Writer(socket, io)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if out.buffered() == 0 {
            out.release_memory();
            return Ok(true);
        }
        let taken = out.write_some(|iov| tls.writer().write_vectored(iov))?;
        if taken == 0 && !tls.wants_write() {
            return Err(io::Error::other("TLS session accepts no more data"));
        }
    }
}

/// What one read from a TLS socket produced.
pub enum Input {
    /// Plaintext bytes were placed at the start of the buffer (possibly none).
    Data(usize),
    /// The peer closed (TCP EOF or TLS close_notify), after `usize` final bytes.
    Closed(usize),
    /// Nothing to read now.
    WouldBlock,
}

/// Reads TLS records from the socket and decrypts what they hold into `buf`.
pub fn read(tls: &mut ServerConnection, io: &Io, late: bool, buf: &mut [u8]) -> io::Result<Input> {
    let eof = match tls.read_tls(&mut Reader(io, late)) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Input::WouldBlock),
        Err(e) => return Err(e),
    };
    tls.process_new_packets().map_err(io::Error::other)?;
    let mut n = 0;
    while n < buf.len() {
        match tls.reader().read(&mut buf[n..]) {
            Ok(0) => return Ok(Input::Closed(n)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Input::Closed(n)),
            Err(e) => return Err(e),
        }
    }
    Ok(if eof { Input::Closed(n) } else { Input::Data(n) })
}

/// Plaintext rustls already decrypted (bytes that followed the upgrade request).
pub fn take_plaintext(tls: &mut ServerConnection, into: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    while let Ok(k) = tls.reader().read(&mut chunk) {
        if k == 0 {
            break;
        }
        into.extend_from_slice(&chunk[..k]);
    }
}
