//! The HTTP/1.1 upgrade request (RFC 6455 §4.2): parsing, validation with typed rejections,
//! and the bytes of the responses. Pure functions; the server feeds them what it read.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// Upper bound on request headers we keep slots for; more is refused with 431.
pub const MAX_HEADERS: usize = 128;
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed request head. Header names are lower-case; values are decoded as latin1,
/// as Node does, so no byte is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// HTTP minor version: 1 for HTTP/1.1.
    pub minor_version: u8,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }

    /// All comma-separated tokens of every header called `name`, trimmed.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The query string (after `?`), empty when there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
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

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Parses a request head from `buf`. `Ok(None)`: incomplete, read more (the caller enforces
/// the size limit). `Ok(Some((req, n)))`: the head took `n` bytes; anything after it already
/// belongs to the WebSocket stream.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Rejection> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::HeadersTooLarge),
        Err(_) => return Err(Rejection::BadRequest("Malformed HTTP request")),
    };
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(Rejection::BadRequest("Request target must be a path"));
    }
    let headers = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), latin1(h.value)))
        .collect();
    Ok(Some((
        Request {
            method: req.method.unwrap_or_default().to_owned(),
            target: target.to_owned(),
            headers,
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
    pub accept: String,
    /// Offered subprotocols, in the client's order.
    pub protocols: Vec<String>,
}

/// Checks an upgrade request against RFC 6455 §4.2.1.
pub fn check(req: &Request) -> Result<Upgrade, Rejection> {
    if req.method != "GET" {
        return Err(Rejection::MethodNotAllowed);
    }
    if req.minor_version < 1 {
        return Err(Rejection::BadRequest("WebSocket upgrade requires HTTP/1.1"));
    }
    if !req.tokens("upgrade").any(|t| t.eq_ignore_ascii_case("websocket")) {
        return Err(Rejection::BadRequest("Invalid Upgrade header"));
    }
    if !req.tokens("connection").any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return Err(Rejection::BadRequest("Invalid Connection header"));
    }
    if req.count("sec-websocket-version") != 1 || req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Rejection::UpgradeRequired("Unsupported WebSocket version"));
    }
    let key = match (req.count("sec-websocket-key"), req.header("sec-websocket-key")) {
        (1, Some(k)) => k.trim(),
        _ => return Err(Rejection::BadRequest("Invalid Sec-WebSocket-Key header")),
    };
    match B64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(Rejection::BadRequest("Invalid Sec-WebSocket-Key header")),
    }
    let mut protocols: Vec<String> = Vec::new();
    if req.count("sec-websocket-protocol") > 0 {
        for p in req.tokens("sec-websocket-protocol") {
            if p.is_empty() || !p.bytes().all(is_token_byte) || protocols.iter().any(|q| q == p) {
                return Err(Rejection::BadRequest("Invalid Sec-WebSocket-Protocol header"));
            }
            protocols.push(p.to_owned());
        }
    }
    Ok(Upgrade { accept: accept_key(key.as_bytes()), protocols })
}

/// RFC 7230 token characters, which a subprotocol name must consist of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    B64.encode(sha.finalize())
}

/// The 101 response completing the handshake.
pub fn response_101(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str) -> Request {
        let raw = format!("GET /chat?x=1 HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
        parse(raw.as_bytes()).unwrap().unwrap().0
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_upgrade() {
        let r = req(GOOD);
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.query(), "x=1");
        let up = check(&r).unwrap();
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(up.protocols.is_empty());
        let r = req(&format!("{GOOD}Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: v2\r\n"));
        assert_eq!(check(&r).unwrap().protocols, vec!["chat", "superchat", "v2"]);
    }

    #[test]
    fn case_insensitive_tokens() {
        let r = req("upgrade: WebSocket\r\nconnection: UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n");
        assert!(check(&r).is_ok());
    }

    #[test]
    fn rejections() {
        let bad = |extra: &str| check(&req(extra)).unwrap_err().status();
        assert_eq!(bad(&GOOD.replace("websocket", "h2c")), 400);
        assert_eq!(bad(&GOOD.replace("keep-alive, Upgrade", "keep-alive")), 400);
        assert_eq!(bad(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")), 400);
        assert_eq!(bad(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!")), 400);
        assert_eq!(bad(&GOOD.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(bad(&GOOD.replace("Sec-WebSocket-Version: 13\r\n", "")), 426);
        assert_eq!(bad(&format!("{GOOD}Sec-WebSocket-Protocol: a, , b\r\n")), 400);
        let post = parse(format!("POST / HTTP/1.1\r\n{GOOD}\r\n").as_bytes()).unwrap().unwrap().0;
        assert_eq!(check(&post).unwrap_err().status(), 405);
        let old = parse(format!("GET / HTTP/1.0\r\n{GOOD}\r\n").as_bytes()).unwrap().unwrap().0;
        assert_eq!(check(&old).unwrap_err().status(), 400);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse(b"\x16\x03\x01garbage\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"GET * HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("h{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 431);
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(Rejection::UpgradeRequired("Upgrade Required").response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("Sec-WebSocket-Version: 13\r\n"));
        let ok = String::from_utf8(response_101("abc", Some("chat"))).unwrap();
        assert!(ok.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(ok.ends_with("\r\n\r\n"));
    }
}
