//! A reference reader: RFC 6455 client-frame rules written as plainly as possible, over a
//! whole input at once, with no incremental state. The real `Reader` must agree with it on
//! every input: the same items and the same close code (or none).
//!
//! Where an input ends mid-frame, the reference says what the real reader can already know:
//! header errors as soon as the bytes that show them are there, the limit once the header is
//! complete, and invalid UTF-8 as soon as the text received so far can no longer be valid.

use crate::Got;

const PROTOCOL: u16 = 1002;
const BAD_DATA: u16 = 1007;
const TOO_BIG: u16 = 1009;

/// Reads `input` against a message limit of `limit` bytes.
pub fn read(input: &[u8], limit: u64) -> (Vec<Got>, Result<(), u16>) {
    let mut items = Vec::new();
    let res = read_into(input, limit, &mut items);
    (items, res)
}

fn read_into(input: &[u8], limit: u64, items: &mut Vec<Got>) -> Result<(), u16> {
    // The data message in progress: (is text, bytes so far).
    let mut message: Option<(bool, Vec<u8>)> = None;
    let mut at = 0usize;
    while at < input.len() {
        let rest = &input[at..];
        if rest.len() < 2 {
            return Ok(());
        }
        let (b0, b1) = (rest[0], rest[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let control = opcode >= 8;
        if b0 & 0x70 != 0 || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(PROTOCOL);
        }
        if control && (!fin || (b1 & 0x7F) > 125) {
            return Err(PROTOCOL);
        }
        if b1 & 0x80 == 0 {
            return Err(PROTOCOL);
        }
        let (len, len_end) = match b1 & 0x7F {
            126 if rest.len() < 4 => return Ok(()),
            126 => (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 if rest.len() < 10 => return Ok(()),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&rest[2..10]);
                let len = u64::from_be_bytes(be);
                if len >= 1 << 63 {
                    return Err(PROTOCOL);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if rest.len() < len_end + 4 {
            return Ok(());
        }
        let mask = [rest[len_end], rest[len_end + 1], rest[len_end + 2], rest[len_end + 3]];
        let body_at = len_end + 4;

        if !control {
            match (&message, opcode) {
                (None, 0) | (Some(_), 1 | 2) => return Err(PROTOCOL),
                _ => {}
            }
            let so_far = message.as_ref().map_or(0, |(_, d)| d.len() as u64);
            if so_far + len > limit {
                return Err(TOO_BIG);
            }
        }

        let have = ((rest.len() - body_at) as u64).min(len) as usize;
        let payload: Vec<u8> = rest[body_at..body_at + have].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        let complete = have as u64 == len;

        if control {
            if !complete {
                return Ok(());
            }
            match opcode {
                9 => items.push(Got::Ping(payload)),
                10 => items.push(Got::Pong(payload)),
                _ => {
                    items.push(close_item(&payload)?);
                    // Nothing after a close frame is read (RFC 6455 §5.5.1).
                    return Ok(());
                }
            }
        } else {
            let (text, data) = message.get_or_insert_with(|| (opcode == 1, Vec::new()));
            data.extend_from_slice(&payload);
            if *text && !utf8_prefix_ok(data) {
                return Err(BAD_DATA);
            }
            if !complete {
                return Ok(());
            }
            if fin {
                let (text, data) = message.take().expect("set above");
                items.push(if text {
                    Got::Text(String::from_utf8(data).map_err(|_| BAD_DATA)?)
                } else {
                    Got::Binary(data)
                });
            }
        }
        at += body_at + have;
    }
    Ok(())
}

/// Whether `bytes` is valid UTF-8 or a valid prefix of it (ends inside a code point).
fn utf8_prefix_ok(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn close_item(payload: &[u8]) -> Result<Got, u16> {
    match payload.len() {
        0 => Ok(Got::Close(None, String::new())),
        1 => Err(PROTOCOL),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            // RFC 6455 §7.4.1 and the IANA registry: 1004-1006 and 1015 are never sent,
            // 1016-2999 are unassigned, 5000 and up do not exist.
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(PROTOCOL);
            }
            let reason = String::from_utf8(payload[2..].to_vec()).map_err(|_| PROTOCOL)?;
            Ok(Got::Close(Some(code), reason))
        }
    }
}
