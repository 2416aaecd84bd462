//! Minimal WebSocket client side of RFC 6455, written for throughput:
//! one growable read buffer per connection, frames are parsed in place,
//! outgoing frames are built (and masked) straight into one write buffer
//! that is flushed with a single `write_all` per batch.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Path given in the URL ("/" when none).
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("only ws:// URLs are supported, got {url}"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match hostport.rfind(':') {
            Some(i) => (
                hostport[..i].to_string(),
                hostport[i + 1..]
                    .parse::<u16>()
                    .map_err(|e| format!("bad port in {url}: {e}"))?,
            ),
            None => (hostport.to_string(), 80),
        };
        Ok(Target { host, port, path })
    }

    /// The path to use for a scenario: the URL's own path wins when it is
    /// not "/", otherwise the scenario default.
    pub fn path_or(&self, default: &str) -> String {
        if self.path == "/" || self.path.is_empty() {
            default.to_string()
        } else {
            self.path.clone()
        }
    }
}

/// xorshift64* — plenty for mask keys and handshake nonces.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        if r.0 == 0 {
            r.0 = 1;
        }
        r.next();
        r
    }
    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// XOR `data` with the 4-byte mask key (8 bytes at a time).
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k32 = u32::from_ne_bytes(key);
    let k64 = (k32 as u64) | ((k32 as u64) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ k64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rem = chunks.into_remainder();
    for (i, b) in rem.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// One parsed message (or control frame); payload ranges index `WsConn::rbuf`
/// except for `Assembled`, whose payload is in `WsConn::frag`.
#[derive(Clone, Copy, Debug)]
pub enum Msg {
    Data { opcode: u8, start: usize, end: usize },
    Assembled { opcode: u8 },
    Ping { start: usize, end: usize },
    Pong,
    Close { start: usize, end: usize },
}

pub struct WsConn {
    pub stream: TcpStream,
    pub rbuf: Vec<u8>,
    pub rstart: usize,
    pub rend: usize,
    pub wbuf: Vec<u8>,
    pub frag: Vec<u8>,
    frag_opcode: Option<u8>,
    pub rng: Rng,
}

impl WsConn {
    /// TCP connect + HTTP upgrade. Verifies the 101 status and
    /// Sec-WebSocket-Accept. Bytes received after the response header stay
    /// in the read buffer.
    pub async fn connect(
        t: &Target,
        path: &str,
        seed: u64,
        rbuf_size: usize,
    ) -> Result<WsConn, String> {
        let stream = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let mut rng = Rng::new(seed);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&rng.next().to_le_bytes());
        nonce[8..].copy_from_slice(&rng.next().to_le_bytes());
        let key = base64(&nonce);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            t.host, t.port
        );
        let mut c = WsConn {
            stream,
            rbuf: vec![0u8; rbuf_size.max(4096)],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(1024),
            frag: Vec::new(),
            frag_opcode: None,
            rng,
        };
        c.stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write handshake: {e}"))?;
        // Read until the end of the response header.
        let hdr_end = loop {
            if let Some(i) = find_subslice(&c.rbuf[..c.rend], b"\r\n\r\n") {
                break i + 4;
            }
            if c.rend >= 16384 {
                return Err("handshake response header too large".into());
            }
            let n = c.fill().await.map_err(|e| format!("read handshake: {e}"))?;
            if n == 0 {
                return Err("connection closed during handshake".into());
            }
        };
        let head = std::str::from_utf8(&c.rbuf[..hdr_end])
            .map_err(|_| "non-UTF-8 handshake response".to_string())?;
        let status = head.lines().next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            return Err(format!("upgrade refused: {status:?}"));
        }
        let mut sha = sha1_smol::Sha1::new();
        sha.update(key.as_bytes());
        sha.update(GUID.as_bytes());
        let expect = base64(&sha.digest().bytes());
        let accept = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|(_, v)| v.trim().to_string());
        match accept {
            Some(a) if a == expect => {}
            other => return Err(format!("bad Sec-WebSocket-Accept: {other:?}")),
        }
        c.rstart = hdr_end;
        if c.rstart == c.rend {
            c.rstart = 0;
            c.rend = 0;
        }
        Ok(c)
    }

    /// Read more bytes from the socket; returns bytes read (0 = EOF).
    #[inline]
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rend == self.rbuf.len() {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            } else {
                let n = self.rbuf.len() * 2;
                self.rbuf.resize(n, 0);
            }
        }
        let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
        self.rend += n;
        Ok(n)
    }

    /// Parse the next complete message/control frame from the read buffer.
    /// `Ok(None)` means more bytes are needed.
    #[inline]
    pub fn next_msg(&mut self) -> Result<Option<Msg>, String> {
        loop {
            let buf = &self.rbuf[self.rstart..self.rend];
            if buf.len() < 2 {
                return Ok(None);
            }
            let b0 = buf[0];
            let b1 = buf[1];
            if b1 & 0x80 != 0 {
                return Err("server sent a masked frame".into());
            }
            if b0 & 0x70 != 0 {
                return Err("server set RSV bits (compression must be off)".into());
            }
            let (len, hlen) = match b1 & 0x7F {
                126 => {
                    if buf.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
                }
                127 => {
                    if buf.len() < 10 {
                        return Ok(None);
                    }
                    (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10)
                }
                l => (l as usize, 2),
            };
            if buf.len() < hlen + len {
                return Ok(None);
            }
            let start = self.rstart + hlen;
            let end = start + len;
            self.rstart = end;
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0F;
            match opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag_opcode.is_some() {
                        return Err("new data frame inside a fragmented message".into());
                    }
                    if fin {
                        return Ok(Some(Msg::Data { opcode, start, end }));
                    }
                    self.frag_opcode = Some(opcode);
                    self.frag.clear();
                    let (a, b) = (start, end);
                    self.frag.extend_from_slice(&self.rbuf[a..b]);
                }
                OP_CONT => {
                    let Some(op) = self.frag_opcode else {
                        return Err("unexpected continuation frame".into());
                    };
                    let (a, b) = (start, end);
                    self.frag.extend_from_slice(&self.rbuf[a..b]);
                    if fin {
                        self.frag_opcode = None;
                        return Ok(Some(Msg::Assembled { opcode: op }));
                    }
                }
                OP_PING => return Ok(Some(Msg::Ping { start, end })),
                OP_PONG => return Ok(Some(Msg::Pong)),
                OP_CLOSE => return Ok(Some(Msg::Close { start, end })),
                other => return Err(format!("unknown opcode {other:#x}")),
            }
        }
    }

    #[inline]
    pub fn payload(&self, m: &Msg) -> &[u8] {
        match *m {
            Msg::Data { start, end, .. } | Msg::Ping { start, end } | Msg::Close { start, end } => {
                &self.rbuf[start..end]
            }
            Msg::Assembled { .. } => &self.frag,
            Msg::Pong => &[],
        }
    }

    /// Append one masked frame of `len` payload bytes to the write buffer;
    /// `fill` writes the (unmasked) payload into the given slice.
    #[inline]
    pub fn push_frame_with(&mut self, opcode: u8, len: usize, fill: impl FnOnce(&mut [u8])) {
        let key = (self.rng.next() as u32).to_ne_bytes();
        let w = &mut self.wbuf;
        w.push(0x80 | opcode);
        if len < 126 {
            w.push(0x80 | len as u8);
        } else if len < 65536 {
            w.push(0x80 | 126);
            w.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            w.push(0x80 | 127);
            w.extend_from_slice(&(len as u64).to_be_bytes());
        }
        w.extend_from_slice(&key);
        let at = w.len();
        w.resize(at + len, 0);
        let dst = &mut w[at..];
        fill(dst);
        apply_mask(dst, key);
    }

    #[inline]
    pub fn push_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.push_frame_with(opcode, payload.len(), |d| d.copy_from_slice(payload));
    }

    /// Queue a pong answering the ping whose payload is at rbuf[start..end].
    pub fn push_pong(&mut self, start: usize, end: usize) {
        let p: Vec<u8> = self.rbuf[start..end].to_vec();
        self.push_frame(OP_PONG, &p);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Client-initiated close: send a close frame (1000) and wait for the
    /// server's close frame or EOF, then drop the socket (the client closes
    /// the TCP connection first, so TIME_WAIT lands on the client side).
    pub async fn close_gracefully(mut self, wait: Duration) -> Result<(), String> {
        self.push_frame(OP_CLOSE, &1000u16.to_be_bytes());
        self.flush().await.map_err(|e| format!("write close: {e}"))?;
        let r = tokio::time::timeout(wait, async {
            loop {
                loop {
                    match self.next_msg()? {
                        Some(Msg::Close { .. }) => return Ok(()),
                        Some(_) => continue,
                        None => break,
                    }
                }
                match self.fill().await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    // A reset after we asked to close still means closed.
                    Err(_) => return Ok(()),
                }
            }
        })
        .await;
        match r {
            Ok(v) => v,
            Err(_) => Err("server did not answer the close frame".into()),
        }
    }
}

fn find_subslice(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn accept_rfc_example() {
        let mut sha = sha1_smol::Sha1::new();
        sha.update(b"dGhlIHNhbXBsZSBub25jZQ==");
        sha.update(GUID.as_bytes());
        assert_eq!(base64(&sha.digest().bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn mask_roundtrip() {
        let orig: Vec<u8> = (0..37u8).collect();
        let mut d = orig.clone();
        apply_mask(&mut d, [1, 2, 3, 4]);
        for (i, b) in d.iter().enumerate() {
            assert_eq!(*b, orig[i] ^ [1, 2, 3, 4][i & 3]);
        }
        apply_mask(&mut d, [1, 2, 3, 4]);
        assert_eq!(d, orig);
    }

    #[test]
    fn url() {
        let t = Target::parse("ws://127.0.0.1:9001/echo").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 9001, "/echo"));
        let t = Target::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.path_or("/fanout"), "/fanout");
    }
}
