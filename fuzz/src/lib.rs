//! The checks behind velocy's fuzz targets. `frame_reader` and `handshake` take arbitrary
//! bytes and panic on any broken invariant; the cargo-fuzz targets (nightly) and the bounded
//! deterministic run in `tests/` (stable `cargo test`) both call them. No I/O here.

pub mod gen;
pub mod model;

use velocy::protocol::close::{is_valid_wire_code, CloseError};
use velocy::protocol::frame::MAX_CONTROL_PAYLOAD;
use velocy::protocol::handshake::{self, Rejection};
use velocy::protocol::reader::{Item, Reader};

/// An item the reader produced, owned so runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Item<'_>> for Got {
    fn from(item: Item<'_>) -> Self {
        match item {
            Item::Text(t) => Got::Text(t.to_owned()),
            Item::Binary(b) => Got::Binary(b.to_vec()),
            Item::Ping(b) => Got::Ping(b.to_vec()),
            Item::Pong(b) => Got::Pong(b.to_vec()),
            Item::Close(c, r) => Got::Close(c, r.to_owned()),
        }
    }
}

/// What a whole run produced: the items, then Ok or the error that failed the connection.
pub type Outcome = (Vec<Got>, Result<(), CloseError>);

/// Bytes the reader may hold beyond the message limit: a control frame split across reads
/// (at most 125 bytes, in a Vec that may round its capacity up to 128) and allocator slack.
pub const BUFFER_SLACK: u64 = 256;

/// Message limits the first input byte picks from: the edges around control and length
/// encodings, the default (100 MiB) and "no limit".
const LIMITS: [u64; 16] = [
    0,
    1,
    2,
    7,
    64,
    125,
    126,
    127,
    1000,
    4096,
    65_535,
    65_536,
    1 << 20,
    100 << 20,
    u64::MAX >> 1,
    u64::MAX,
];

/// The frame-reader input format: `[limit selector, split seed, split seed, stream...]`.
/// A selector below 128 picks from `LIMITS`; 128 and above means `(selector - 128) * 3`,
/// small limits that fragmented messages can cross.
pub struct ReaderInput<'a> {
    pub limit: u64,
    pub seed: u64,
    pub stream: &'a [u8],
}

impl<'a> ReaderInput<'a> {
    pub fn decode(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let sel = byte(0);
        let limit = if sel < 128 { LIMITS[sel as usize % LIMITS.len()] } else { u64::from(sel - 128) * 3 };
        let seed = u64::from(byte(1)) << 8 | u64::from(byte(2));
        Self { limit, seed, stream: data.get(3..).unwrap_or(&[]) }
    }
}

/// A small deterministic generator (xorshift64*), for split points here and inputs in `gen`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Feeds `pieces` to a fresh reader, checking after every call that the buffer stays within
/// the limit and that nothing follows a close.
fn run(limit: u64, pieces: &[&[u8]]) -> Outcome {
    let mut reader = Reader::new(limit);
    let mut got = Vec::new();
    for piece in pieces {
        let mut bytes = piece.to_vec();
        let res = reader.feed(&mut bytes, &mut |item| got.push(Got::from(item)));
        let held = reader.buffered() as u64;
        assert!(
            held <= limit.saturating_add(BUFFER_SLACK),
            "reader holds {held} bytes with a message limit of {limit}"
        );
        if res.is_err() {
            return (got, res);
        }
        assert_eq!(reader.is_closed(), matches!(got.last(), Some(Got::Close(..))), "is_closed() disagrees with the items");
    }
    (got, Ok(()))
}

/// Cuts `stream` into pieces of pseudo-random sizes (some empty) chosen by `seed`.
pub fn split(stream: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = Rng::new(seed);
    // Mostly tiny pieces (header bytes one by one), sometimes large ones.
    let max = [1u64, 2, 3, 5, 17, 200, 5000][rng.below(7) as usize];
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        if rng.chance(16) {
            pieces.push(&stream[at..at]);
        }
        let n = (1 + rng.below(max) as usize).min(stream.len() - at);
        pieces.push(&stream[at..at + n]);
        at += n;
    }
    pieces
}

/// Checks the items of one outcome against the rules they must satisfy on their own.
fn check_items(limit: u64, (items, _): &Outcome) {
    for (i, item) in items.iter().enumerate() {
        match item {
            Got::Text(t) => assert!(t.len() as u64 <= limit, "text of {} bytes over limit {limit}", t.len()),
            Got::Binary(b) => assert!(b.len() as u64 <= limit, "binary of {} bytes over limit {limit}", b.len()),
            Got::Ping(p) | Got::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
            Got::Close(code, reason) => {
                assert_eq!(i, items.len() - 1, "items after a close");
                if let Some(code) = code {
                    assert!(is_valid_wire_code(*code), "close code {code} accepted");
                }
                assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
            }
        }
    }
}

/// Frame reader invariants for one input (format: `ReaderInput`): no panic; the same items
/// and the same error whether the stream is fed whole, in pieces, or byte by byte; the same
/// items and close code as the reference model; the buffer bounded by the limit.
pub fn frame_reader(data: &[u8]) {
    let input = ReaderInput::decode(data);
    let (limit, stream) = (input.limit, input.stream);

    let whole = run(limit, &[stream]);
    check_items(limit, &whole);

    let pieces = run(limit, &split(stream, input.seed));
    assert_eq!(pieces, whole, "fed in pieces vs whole (limit {limit})");

    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(limit, &bytes), whole, "fed byte by byte vs whole (limit {limit})");
    }

    let expected = model::read(stream, limit);
    assert_eq!(whole.0, expected.0, "items vs the reference model (limit {limit})");
    assert_eq!(whole.1.map_err(|e| e.code), expected.1, "outcome vs the reference model (limit {limit})");
}

/// Handshake invariants: `parse` and `check` never panic; a parsed head re-parses to the
/// same request from its own bytes; an accepted upgrade has the accept key of its trimmed
/// key; every rejection renders a well-formed response with a matching Content-Length.
pub fn handshake(data: &[u8]) {
    let parsed = handshake::parse(data);
    let req = match parsed {
        Ok(None) => return,
        Err(rejection) => return check_rejection(&rejection),
        Ok(Some((req, n))) => {
            assert!(n <= data.len());
            let again = handshake::parse(&data[..n]);
            assert_eq!(again, Ok(Some((req.clone(), n))), "the head alone parses differently");
            req
        }
    };
    let _ = (req.path(), req.query(), handshake::wants_upgrade(&req));
    assert!(req.target.starts_with('/'));
    match handshake::check(&req) {
        Ok(up) => {
            assert_eq!(req.method, "GET");
            let key = req.header("sec-websocket-key").expect("accepted without a key").trim_ascii();
            assert_eq!(up.accept, handshake::accept_key(key));
            for p in &up.protocols {
                assert!(!p.is_empty() && !p.contains(',') && p.trim() == p, "subprotocol {p:?}");
            }
            let mut resp = Vec::new();
            handshake::response_101(&mut resp, &up.accept, up.protocols.first().map(String::as_str));
            assert!(resp.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n") && resp.ends_with(b"\r\n\r\n"));
        }
        Err(rejection) => check_rejection(&rejection),
    }
}

fn check_rejection(rejection: &Rejection) {
    let resp = rejection.response();
    let text = String::from_utf8(resp).expect("rejection response is UTF-8");
    let status = rejection.status();
    assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a blank line ends the head");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    assert_eq!(len, body.len());
}
