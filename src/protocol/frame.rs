//! Frame headers (RFC 6455 §5.2): parsing what a client sends and encoding what the server
//! sends. Server frames are never masked, so one encoded frame can go to many peers as is.

use super::close::CloseError;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;
/// Control frames carry at most 125 bytes (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    pub len: u64,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a client frame header from the start of `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((header, n)))` consumed `n` bytes. Every rule that can be checked from the
/// header alone is checked here, so a bad frame is refused before any payload is read.
pub fn parse_header(buf: &[u8]) -> Result<Option<(Header, usize)>, CloseError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        // No extension is negotiated, so RSV1-3 must be zero (§5.2).
        return Err(CloseError::protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(CloseError::protocol("fragmented control frame"));
            }
            if b1 & 0x7F > MAX_CONTROL_PAYLOAD as u8 {
                return Err(CloseError::protocol("control frame too long"));
            }
        }
        _ => return Err(CloseError::protocol("unknown opcode")),
    }
    if b1 & 0x80 == 0 {
        // Clients must mask every frame (§5.1).
        return Err(CloseError::protocol("unmasked frame"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(CloseError::protocol("frame length has the high bit set"));
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    Ok(Some((Header { fin, opcode, mask, len }, at + 4)))
}

/// Unmasks `data` in place; `offset` is the position of `data[0]` within the frame payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let rot = offset & 3;
    let key = u32::from_ne_bytes([mask[rot], mask[(rot + 1) & 3], mask[(rot + 2) & 3], mask[(rot + 3) & 3]]);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ key;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let key = key.to_ne_bytes();
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i];
    }
}

/// Writes an unmasked server frame header for a final frame into `out`; returns its length.
pub fn encode_header(out: &mut [u8; MAX_HEADER_LEN], opcode: u8, len: usize) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends a whole server frame to `out`.
pub fn encode_into(out: &mut bytes::BytesMut, opcode: u8, payload: &[u8]) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, opcode, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Encodes a close frame payload: code then reason (the caller checked both).
pub fn close_payload(code: Option<u16>, reason: &[u8]) -> Vec<u8> {
    match code {
        None => Vec::new(),
        Some(code) => {
            let mut p = Vec::with_capacity(2 + reason.len());
            p.extend_from_slice(&code.to_be_bytes());
            p.extend_from_slice(reason);
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, len_bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        v.extend_from_slice(len_bytes);
        v[1] |= 0x80;
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn parses_lengths() {
        let (h, n) = parse_header(&masked(0x81, &[5])).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, n), (true, OP_TEXT, 5, 6));
        let (h, n) = parse_header(&masked(0x02, &[126, 1, 0])).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, n), (false, OP_BINARY, 256, 8));
        let (h, n) = parse_header(&masked(0x82, &[127, 0, 0, 0, 1, 0, 0, 0, 0])).unwrap().unwrap();
        assert_eq!((h.len, n), (1 << 32, 14));
    }

    #[test]
    fn needs_more_bytes() {
        let full = masked(0x82, &[127, 0, 0, 0, 1, 0, 0, 0, 0]);
        for cut in 0..full.len() {
            assert_eq!(parse_header(&full[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_bad_headers() {
        let code = |b: &[u8]| parse_header(b).unwrap_err().code;
        assert_eq!(code(&masked(0xC1, &[0])), 1002); // RSV1
        assert_eq!(code(&masked(0x83, &[0])), 1002); // reserved opcode
        assert_eq!(code(&masked(0x8B, &[0])), 1002); // reserved control opcode
        assert_eq!(code(&masked(0x09, &[0])), 1002); // fragmented ping
        assert_eq!(code(&masked(0x89, &[126, 0, 126])), 1002); // ping > 125
        assert_eq!(code(&[0x81, 0x05]), 1002); // unmasked
        assert_eq!(code(&masked(0x82, &[127, 0x80, 0, 0, 0, 0, 0, 0, 0])), 1002); // 2^63
    }

    #[test]
    fn unmask_any_offset() {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let plain: Vec<u8> = (0..23u8).collect();
        let mut whole = plain.clone();
        for (i, b) in whole.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        // Unmasking in uneven pieces gives the same result as the whole.
        let mut pieces = whole.clone();
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(9);
        unmask(a, mask, 0);
        unmask(b, mask, 3);
        unmask(c, mask, 12);
        assert_eq!(pieces, plain);
    }

    #[test]
    fn encodes_headers() {
        let mut h = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(&mut h, OP_TEXT, 5), 2);
        assert_eq!(&h[..2], &[0x81, 5]);
        assert_eq!(encode_header(&mut h, OP_BINARY, 300), 4);
        assert_eq!(&h[..4], &[0x82, 126, 1, 44]);
        assert_eq!(encode_header(&mut h, OP_BINARY, 70000), 10);
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
