//! Structured random inputs for the bounded run on stable Rust (`tests/bounded.rs`), where
//! no coverage-guided fuzzer is available: mostly well-formed frame streams and upgrade
//! requests, with a few bytes broken, so that the checks reach past the first header.

use crate::Rng;

const CHARS: [&str; 8] = ["a", "Z", " ", "é", "€", "𝄞", "\u{10FFFF}", "\u{FFFD}"];
/// Byte sequences that are never valid UTF-8 (stray continuation, overlong, surrogate,
/// above U+10FFFF, 0xFF).
const BAD_UTF8: [&[u8]; 5] = [b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff"];

/// A client frame: `len` (declared) may differ from `payload.len()`; `wide` forces a longer
/// length encoding than needed.
pub fn frame(b0: u8, payload: &[u8], len: u64, wide: u8, mask: [u8; 4]) -> Vec<u8> {
    let mut v = vec![b0];
    if len < 126 && wide == 0 {
        v.push(0x80 | len as u8);
    } else if len <= 0xFFFF && wide < 2 {
        v.push(0x80 | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&len.to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

fn text(rng: &mut Rng, max_chars: u64) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..rng.below(max_chars + 1) {
        s.extend_from_slice(CHARS[rng.below(CHARS.len() as u64) as usize].as_bytes());
    }
    if rng.chance(12) {
        let at = rng.below(s.len() as u64 + 1) as usize;
        let bad = BAD_UTF8[rng.below(BAD_UTF8.len() as u64) as usize];
        s.splice(at..at, bad.iter().copied());
    }
    s
}

fn bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max + 1);
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Appends one well-formed-looking frame (or a fragmented message) to `out`.
fn push_unit(rng: &mut Rng, out: &mut Vec<u8>) {
    let mask = (rng.next() as u32).to_be_bytes();
    // Sometimes a longer length encoding than needed (allowed by this reader).
    let wide = if rng.chance(6) { 1 + rng.below(2) as u8 } else { 0 };
    let put = |out: &mut Vec<u8>, b0: u8, p: &[u8]| out.extend(frame(b0, p, p.len() as u64, wide, mask));
    match rng.below(10) {
        0 | 1 => put(out, 0x81, &text(rng, 40)),
        2 => put(out, 0x82, &bytes(rng, 300)),
        3 | 4 => {
            // A fragmented message, code points split anywhere, pings in between.
            let is_text = rng.chance(2);
            let body = if is_text { text(rng, 30) } else { bytes(rng, 200) };
            let parts = 1 + rng.below(5) as usize;
            let mut cuts: Vec<usize> = (0..parts - 1).map(|_| rng.below(body.len() as u64 + 1) as usize).collect();
            cuts.sort_unstable();
            cuts.push(body.len());
            let mut from = 0;
            for (i, &to) in cuts.iter().enumerate() {
                let op = match (i, is_text) {
                    (0, true) => 1,
                    (0, false) => 2,
                    _ => 0,
                };
                let fin = if i == cuts.len() - 1 { 0x80 } else { 0 };
                put(out, fin | op, &body[from..to]);
                from = to;
                if rng.chance(4) {
                    let p = bytes(rng, 8);
                    put(out, 0x89, &p);
                }
            }
        }
        5 => put(out, 0x89, &bytes(rng, 125)),
        6 => put(out, 0x8A, &bytes(rng, 20)),
        7 => {
            let code: u16 = match rng.below(4) {
                0 => [1000, 1001, 1003, 1007, 1014, 3000, 4999][rng.below(7) as usize],
                1 => [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535][rng.below(10) as usize],
                _ => rng.next() as u16,
            };
            let mut p = code.to_be_bytes().to_vec();
            p.extend(text(rng, 10));
            if rng.chance(8) {
                p.truncate(rng.below(2) as usize);
            }
            put(out, 0x88, &p);
        }
        8 => {
            // A header that declares more than follows, or the limit's edges.
            let len = [0, 1, 125, 126, 65_535, 65_536, 1 << 20, 1 << 40, 1 << 62, 1 << 63, u64::MAX][rng.below(11) as usize];
            let b0 = [0x81, 0x82, 0x02, 0x80, 0x89][rng.below(5) as usize];
            let p = bytes(rng, 30);
            out.extend(frame(b0, &p, len, rng.below(3) as u8, mask));
        }
        _ => {
            // Any first byte: reserved bits, reserved opcodes, FIN on or off.
            let b0 = rng.next() as u8;
            put(out, b0, &bytes(rng, 10));
        }
    }
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    if v.is_empty() {
        return;
    }
    for _ in 0..rng.below(3) {
        let at = rng.below(v.len() as u64) as usize;
        match rng.below(4) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = rng.next() as u8,
            2 => v.truncate(at),
            _ => {
                let extra = (rng.next() as u32).to_be_bytes();
                v.splice(at..at, extra);
            }
        }
        if v.is_empty() {
            return;
        }
    }
}

/// A frame-reader input (`ReaderInput` format): limit selector, split seed, frames.
pub fn reader_input(rng: &mut Rng) -> Vec<u8> {
    let mut v = vec![rng.next() as u8, rng.next() as u8, rng.next() as u8];
    let mut stream = Vec::new();
    for _ in 0..1 + rng.below(8) {
        push_unit(rng, &mut stream);
    }
    if rng.chance(3) {
        mutate(rng, &mut stream);
    }
    v.extend(stream);
    v
}

const KEYS: [&str; 5] = ["dGhlIHNhbXBsZSBub25jZQ==", " dGhlIHNhbXBsZSBub25jZQ== ", "c2hvcnQ=", "!!!", ""];

/// An upgrade request: headers from a pool of valid, odd and invalid ones, lines ending in
/// CRLF or LF, then maybe a few bytes broken.
pub fn handshake_input(rng: &mut Rng) -> Vec<u8> {
    let method = ["GET", "POST", "get", "G\u{e9}T", ""][rng.below(5) as usize];
    let target = ["/", "/echo", "/a?b=c&d", "*", "http://x/y", "/%ff", "/\u{7f}"][rng.below(7) as usize];
    let version = ["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1 "][if rng.chance(4) { rng.below(4) as usize } else { 0 }];
    // Lines end in CRLF, now and then in a bare LF; a few heads start with empty lines.
    let eol = |rng: &mut Rng| if rng.chance(6) { "\n" } else { "\r\n" };
    let mut s: String = (0..if rng.chance(10) { 1 + rng.below(2) } else { 0 }).map(|_| eol(rng)).collect();
    s.push_str(&format!("{method} {target} {version}{}", eol(rng)));
    let pool: [(&str, &[&str]); 7] = [
        ("Host", &["a", "", "\u{e9}"]),
        ("Upgrade", &["websocket", "WebSocket", "h2c", "h2c, websocket", ""]),
        ("Connection", &["Upgrade", "keep-alive, upgrade", "close", ""]),
        ("Sec-WebSocket-Version", &["13", " 13 ", "8", "13, 8", ""]),
        ("Sec-WebSocket-Key", &KEYS),
        ("Sec-WebSocket-Protocol", &["chat", "chat, superchat", "a, , b", "a,a", "x y", ""]),
        ("X-Other", &["v", "\u{ff}\u{fe}", " : "]),
    ];
    for (name, values) in pool {
        for _ in 0..(if rng.chance(8) { 0 } else if rng.chance(10) { 2 } else { 1 }) {
            let value = values[rng.below(values.len() as u64) as usize];
            let name = if rng.chance(5) { name.to_ascii_lowercase() } else { name.to_owned() };
            s.push_str(&format!("{name}: {value}{}", eol(rng)));
        }
    }
    s.push_str(eol(rng));
    // Header values may carry latin1 bytes, not UTF-8: re-encode chars as single bytes.
    let mut v: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
    if rng.chance(3) {
        mutate(rng, &mut v);
    }
    if rng.chance(8) {
        v.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    }
    v
}
