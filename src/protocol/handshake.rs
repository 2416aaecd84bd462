//! The HTTP/1.1 upgrade request (RFC 6455 §4.2): parsing, validation with typed rejections,
//! and the bytes of the responses. Pure functions; the server feeds them what it read.

use std::mem::MaybeUninit;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// Upper bound on request headers we keep slots for; more is refused with 431.
pub const MAX_HEADERS: usize = 128;
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One request header, borrowed from the bytes read: the name as sent (compare it with
/// `eq_ignore_ascii_case`), the value as raw bytes (Latin-1, as Node reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// A parsed request head, borrowed from the bytes read: parsing copies no string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as sent: path and query.
    pub target: &'a str,
    pub headers: Vec<Header<'a>>,
    /// HTTP minor version: 1 for HTTP/1.1.
    pub minor_version: u8,
}

impl<'a> Request<'a> {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    fn count(&self, name: &str) -> usize {
        self.values(name).count()
    }

    /// All comma-separated tokens of every header called `name`, trimmed.
    fn tokens<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.values(name).flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii)
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query string (after `?`), empty when there is none.
    pub fn query(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// A header value as text: Latin-1, one char per byte (borrowed when it is ASCII).
pub fn latin1(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if bytes.is_ascii() => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// Why an upgrade is refused, with the HTTP status it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 400: the request is malformed or not a valid upgrade.
    BadRequest(&'static str),
    /// 404: no WebSocket route has this path.
    NotFound,
    /// 405: an upgrade must use GET.
    MethodNotAllowed,
    /// 426: a WebSocket route asked for without an upgrade, or an unsupported version.
    UpgradeRequired(&'static str),
    /// 431: the request head is larger than the limit.
    HeadersTooLarge,
    /// Any other status with a reason (used by application-level rejections).
    Status(u16, String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::NotFound => 404,
            Rejection::MethodNotAllowed => 405,
            Rejection::UpgradeRequired(_) => 426,
            Rejection::HeadersTooLarge => 431,
            Rejection::Status(s, _) => *s,
        }
    }

    /// The full HTTP response, after which the server closes the connection.
    pub fn response(&self) -> Vec<u8> {
        let status = self.status();
        let body: &str = match self {
            Rejection::BadRequest(r) | Rejection::UpgradeRequired(r) => r,
            Rejection::NotFound => "Not Found",
            Rejection::MethodNotAllowed => "Method Not Allowed",
            Rejection::HeadersTooLarge => "Request Header Fields Too Large",
            Rejection::Status(s, r) if r.is_empty() => reason_phrase(*s),
            Rejection::Status(_, r) => r,
        };
        let extra = match self {
            Rejection::UpgradeRequired(_) => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            Rejection::MethodNotAllowed => "Allow: GET\r\n",
            _ => "",
        };
        let connection = if matches!(self, Rejection::UpgradeRequired(_)) { "Upgrade, close" } else { "close" };
        format!(
            "HTTP/1.1 {status} {}\r\n{extra}Connection: {connection}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            reason_phrase(status),
            body.len()
        )
        .into_bytes()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Request refused",
    }
}

/// Parses a request head from `buf`. `Ok(None)`: incomplete, read more (the caller enforces
/// the size limit). `Ok(Some((req, n)))`: the head took `n` bytes; anything after it already
/// belongs to the WebSocket stream.
pub fn parse(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, Rejection> {
    // Uninitialised slots: zeroing all of them (4 KiB) cost more than parsing a usual head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::HeadersTooLarge),
        Err(_) => return Err(Rejection::BadRequest("Malformed HTTP request")),
    };
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(Rejection::BadRequest("Request target must be a path"));
    }
    Ok(Some((
        Request {
            method: req.method.unwrap_or_default(),
            target,
            headers: req.headers.iter().map(|h| Header { name: h.name, value: h.value }).collect(),
            minor_version: req.version.unwrap_or(0),
        },
        n,
    )))
}

/// Whether the client asked for an upgrade at all (an `Upgrade` header is present).
/// A plain HTTP request to a WebSocket route gets 426 rather than 400.
pub fn wants_upgrade(req: &Request) -> bool {
    req.header("upgrade").is_some()
}

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept`: base64 of a SHA-1 digest.
    pub accept: [u8; ACCEPT_LEN],
    /// Offered subprotocols, in the client's order.
    pub protocols: Vec<String>,
}

/// Length of a `Sec-WebSocket-Accept` value.
pub const ACCEPT_LEN: usize = 28;
/// Length of a valid `Sec-WebSocket-Key`: base64 of 16 bytes, padded.
const KEY_LEN: usize = 24;

/// Checks an upgrade request against RFC 6455 §4.2.1.
pub fn check(req: &Request) -> Result<Upgrade, Rejection> {
    if req.method != "GET" {
        return Err(Rejection::MethodNotAllowed);
    }
    if req.minor_version < 1 {
        return Err(Rejection::BadRequest("WebSocket upgrade requires HTTP/1.1"));
    }
    if !req.tokens("upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket")) {
        return Err(Rejection::BadRequest("Invalid Upgrade header"));
    }
    if !req.tokens("connection").any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return Err(Rejection::BadRequest("Invalid Connection header"));
    }
    if req.count("sec-websocket-version") != 1 || req.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(Rejection::UpgradeRequired("Unsupported WebSocket version"));
    }
    let key = match (req.count("sec-websocket-key"), req.header("sec-websocket-key")) {
        (1, Some(k)) => k.trim_ascii(),
        _ => return Err(Rejection::BadRequest("Invalid Sec-WebSocket-Key header")),
    };
    let mut raw = [0u8; KEY_LEN * 3 / 4];
    if key.len() != KEY_LEN || B64.decode_slice(key, &mut raw) != Ok(16) {
        return Err(Rejection::BadRequest("Invalid Sec-WebSocket-Key header"));
    }
    let mut protocols: Vec<String> = Vec::new();
    for p in req.tokens("sec-websocket-protocol") {
        if p.is_empty() || !p.iter().copied().all(is_token_byte) || protocols.iter().any(|q| q.as_bytes() == p) {
            return Err(Rejection::BadRequest("Invalid Sec-WebSocket-Protocol header"));
        }
        // Token bytes are ASCII.
        protocols.push(p.iter().map(|&b| b as char).collect());
    }
    Ok(Upgrade { accept: accept_key(key), protocols })
}

/// RFC 7230 token characters, which a subprotocol name must consist of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let mut out = [0u8; ACCEPT_LEN];
    let n = B64.encode_slice(sha.finalize(), &mut out).expect("a SHA-1 digest is 28 base64 bytes");
    debug_assert_eq!(n, ACCEPT_LEN);
    out
}

/// Appends the 101 response completing the handshake to `out`.
pub fn response_101(out: &mut Vec<u8>, accept: &[u8], protocol: Option<&str>) {
    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    out.reserve(HEAD.len() + accept.len() + 4 + protocol.map_or(0, |p| p.len() + 26));
    out.extend_from_slice(HEAD);
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a request with these extra header lines.
    fn checked(extra: &str) -> Result<Upgrade, Rejection> {
        let raw = format!("GET /chat?x=1 HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
        check(&parse(raw.as_bytes()).unwrap().unwrap().0)
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_upgrade() {
        let raw = format!("GET /chat?x=1 HTTP/1.1\r\nHost: a\r\n{GOOD}\r\n");
        let (r, n) = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(n, raw.len());
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.query(), "x=1");
        assert_eq!(r.header("SEC-WEBSOCKET-VERSION"), Some(&b"13"[..]));
        let up = check(&r).unwrap();
        assert_eq!(&up.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(up.protocols.is_empty());
        let up = checked(&format!("{GOOD}Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: v2\r\n")).unwrap();
        assert_eq!(up.protocols, vec!["chat", "superchat", "v2"]);
    }

    #[test]
    fn case_insensitive_tokens() {
        assert!(checked("upgrade: WebSocket\r\nconnection: UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n").is_ok());
    }

    #[test]
    fn rejections() {
        let bad = |extra: &str| checked(extra).unwrap_err().status();
        assert_eq!(bad(&GOOD.replace("websocket", "h2c")), 400);
        assert_eq!(bad(&GOOD.replace("keep-alive, Upgrade", "keep-alive")), 400);
        assert_eq!(bad(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")), 400);
        assert_eq!(bad(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!")), 400);
        assert_eq!(bad(&GOOD.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(bad(&GOOD.replace("Sec-WebSocket-Version: 13\r\n", "")), 426);
        assert_eq!(bad(&format!("{GOOD}Sec-WebSocket-Protocol: a, , b\r\n")), 400);
        assert_eq!(bad(&format!("{GOOD}Sec-WebSocket-Protocol: a, b, a\r\n")), 400);
        assert_eq!(bad(&format!("{GOOD}Sec-WebSocket-Protocol: caf\u{e9}\r\n")), 400);
        assert_eq!(bad(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ")), 400);
        assert_eq!(bad(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ==AAAA")), 400);
        let status = |head: &str| check(&parse(head.as_bytes()).unwrap().unwrap().0).unwrap_err().status();
        assert_eq!(status(&format!("POST / HTTP/1.1\r\n{GOOD}\r\n")), 405);
        assert_eq!(status(&format!("GET / HTTP/1.0\r\n{GOOD}\r\n")), 400);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse(b"\x16\x03\x01garbage\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"GET * HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("h{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 431);
        // Empty lines before the request line are skipped (RFC 9112 §2.2); a bare LF ends a line.
        assert_eq!(parse(b"\r\n\nGET / HTTP/1.1\r\n\r\n").unwrap().unwrap().1, 21);
        assert_eq!(parse(b"GET / HTTP/1.1\nHost: a\n\nrest").unwrap().unwrap().1, 24);
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(Rejection::UpgradeRequired("Upgrade Required").response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("Sec-WebSocket-Version: 13\r\n"));
        let mut ok = Vec::new();
        response_101(&mut ok, b"abc", Some("chat"));
        let ok = String::from_utf8(ok).unwrap();
        assert!(ok.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(ok.contains("Sec-WebSocket-Accept: abc\r\n"));
        assert!(ok.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(ok.ends_with("\r\n\r\n"));
    }
}
