//! The frame reader: turns the bytes a client sends into whole messages and control frames.
//!
//! It works on borrowed input that it unmasks in place, keeps no buffer while a connection is
//! idle, and delivers a message that arrives whole in one read without copying it. Bytes are
//! buffered only while a message is split across frames or reads, and never more than the
//! message limit: the limit is checked against declared lengths before any payload is kept.

use super::close::{self, CloseError};
use super::frame::{self, Header, MAX_HEADER_LEN, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::utf8;

/// What the reader found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A valid close frame: its code (None when the frame had no payload) and reason.
    Close(Option<u16>, &'a str),
}

/// Growth step for a message buffered across reads, so one header cannot reserve the limit.
const INITIAL_RESERVE: usize = 64 * 1024;

#[derive(Debug)]
pub struct Reader {
    max_message: u64,
    /// The frame being read, when its payload is split across reads.
    frame: Option<Frame>,
    /// What is kept between reads besides the frame: allocated only while there is some, so
    /// an idle connection's reader is a few words.
    spill: Option<Box<Spill>>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Spill {
    /// The start of a frame header split across reads.
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    /// Payload of a control frame split across reads (at most 125 bytes).
    control: Vec<u8>,
    /// A data message started but not finished.
    message: Option<Partial>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    header: Header,
    done: u64,
}

#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// Bytes of `data` known to be valid UTF-8 (text messages).
    valid: usize,
}

const TOO_BIG: CloseError = CloseError { code: close::MESSAGE_TOO_BIG, reason: "message too big" };
const BAD_UTF8: CloseError = CloseError { code: close::INVALID_PAYLOAD, reason: "invalid UTF-8" };

impl Reader {
    pub fn new(max_message: u64) -> Self {
        Self { max_message, frame: None, spill: None, closed: false }
    }

    fn spill(&mut self) -> &mut Spill {
        self.spill.get_or_insert_with(Box::default)
    }

    fn message(&self) -> Option<&Partial> {
        self.spill.as_ref().and_then(|s| s.message.as_ref())
    }

    pub fn set_max_message(&mut self, max: u64) {
        self.max_message = max;
    }

    /// True once a close frame has been read; later input is ignored (RFC 6455 §5.5.1).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Nothing is held between reads: no frame or message is under way.
    pub fn is_idle(&self) -> bool {
        self.frame.is_none() && self.spill.as_ref().is_none_or(|s| s.head_len == 0 && s.message.is_none())
    }

    /// Bytes held for unfinished frames and messages.
    pub fn buffered(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.message.as_ref().map_or(0, |m| m.data.capacity()) + s.control.capacity())
    }

    /// Consumes `input` (unmasking it in place) and calls `sink` for each complete item.
    /// An `Err` means the connection must be failed with that close code.
    pub fn feed<F: FnMut(Item<'_>)>(&mut self, input: &mut [u8], sink: &mut F) -> Result<(), CloseError> {
        let mut pos = 0;
        while !self.closed {
            if self.frame.is_none() {
                if pos == input.len() {
                    break;
                }
                pos += match self.read_header(&input[pos..])? {
                    Some(n) => n,
                    None => break,
                };
            }
            let f = self.frame.as_mut().expect("frame set above");
            let avail = (f.header.len - f.done).min((input.len() - pos) as u64) as usize;
            let chunk = &mut input[pos..pos + avail];
            pos += avail;
            self.payload(chunk, sink)?;
            if self.frame.is_some() {
                break; // the frame needs more input
            }
        }
        if self.spill.as_ref().is_some_and(|s| s.head_len == 0 && s.message.is_none() && s.control.capacity() == 0) {
            self.spill = None;
        }
        Ok(())
    }

    /// Reads a header from `input` (together with bytes kept from the last call); returns the
    /// bytes of `input` it used, or None when all of `input` was kept for later.
    fn read_header(&mut self, input: &[u8]) -> Result<Option<usize>, CloseError> {
        let old = self.spill.as_ref().map_or(0, |s| s.head_len);
        let parsed = if old == 0 {
            frame::parse_header(input)?
        } else {
            let s = self.spill();
            let take = (MAX_HEADER_LEN - old).min(input.len());
            s.head[old..old + take].copy_from_slice(&input[..take]);
            frame::parse_header(&s.head[..old + take])?
        };
        match parsed {
            None => {
                let s = self.spill();
                let take = (MAX_HEADER_LEN - old).min(input.len());
                s.head[old..old + take].copy_from_slice(&input[..take]);
                s.head_len = old + take;
                Ok(None)
            }
            Some((header, n)) => {
                if old > 0 {
                    self.spill().head_len = 0;
                }
                self.start_frame(header)?;
                Ok(Some(n - old))
            }
        }
    }

    fn start_frame(&mut self, h: Header) -> Result<(), CloseError> {
        if !h.is_control() {
            let so_far = match (self.message(), h.opcode) {
                (None, OP_CONTINUATION) => return Err(CloseError::protocol("continuation without a message")),
                (Some(_), OP_TEXT | OP_BINARY) => return Err(CloseError::protocol("new message inside a fragmented one")),
                (Some(m), _) => m.data.len() as u64,
                (None, _) => 0,
            };
            if so_far + h.len > self.max_message {
                return Err(TOO_BIG);
            }
        }
        self.frame = Some(Frame { header: h, done: 0 });
        Ok(())
    }

    fn payload<F: FnMut(Item<'_>)>(&mut self, chunk: &mut [u8], sink: &mut F) -> Result<(), CloseError> {
        let f = self.frame.expect("payload without a frame");
        frame::unmask(chunk, f.header.mask, f.done as usize);
        let whole = f.done == 0 && chunk.len() as u64 == f.header.len;
        let complete = f.done + chunk.len() as u64 == f.header.len;
        self.frame = if complete { None } else { Some(Frame { done: f.done + chunk.len() as u64, ..f }) };
        let h = f.header;

        if h.is_control() {
            if whole {
                return self.control_frame(h.opcode, chunk, sink);
            }
            self.spill().control.extend_from_slice(chunk);
            if complete {
                let data = std::mem::take(&mut self.spill().control);
                self.control_frame(h.opcode, &data, sink)?;
            }
            return Ok(());
        }

        if whole && h.fin && self.message().is_none() {
            // The common case: a one-frame message entirely in this read.
            return match h.opcode {
                OP_TEXT => {
                    let text = std::str::from_utf8(chunk).map_err(|_| BAD_UTF8)?;
                    sink(Item::Text(text));
                    Ok(())
                }
                _ => {
                    sink(Item::Binary(chunk));
                    Ok(())
                }
            };
        }

        let max_message = self.max_message;
        let m = self.spill().message.get_or_insert_with(|| Partial {
            text: h.opcode == OP_TEXT,
            data: Vec::with_capacity((h.len as usize).min(INITIAL_RESERVE)),
            valid: 0,
        });
        reserve_within(&mut m.data, chunk.len(), max_message);
        m.data.extend_from_slice(chunk);
        if m.text {
            m.valid = utf8::validate_from(&m.data, m.valid).map_err(|_| BAD_UTF8)?;
        }
        if complete && h.fin {
            let m = self.spill().message.take().expect("message set above");
            if m.text {
                if m.valid != m.data.len() {
                    return Err(BAD_UTF8);
                }
                // Validated incrementally above.
                let text = std::str::from_utf8(&m.data).map_err(|_| BAD_UTF8)?;
                sink(Item::Text(text));
            } else {
                sink(Item::Binary(&m.data));
            }
        }
        Ok(())
    }

    fn control_frame<F: FnMut(Item<'_>)>(&mut self, opcode: u8, data: &[u8], sink: &mut F) -> Result<(), CloseError> {
        match opcode {
            OP_PING => sink(Item::Ping(data)),
            OP_PONG => sink(Item::Pong(data)),
            OP_CLOSE => {
                let item = match data.len() {
                    0 => Item::Close(None, ""),
                    1 => return Err(CloseError::protocol("close payload of one byte")),
                    _ => {
                        let code = u16::from_be_bytes([data[0], data[1]]);
                        if !close::is_valid_wire_code(code) {
                            return Err(CloseError::protocol("invalid close code"));
                        }
                        let reason = std::str::from_utf8(&data[2..])
                            .map_err(|_| CloseError::protocol("close reason is not UTF-8"))?;
                        Item::Close(Some(code), reason)
                    }
                };
                self.closed = true;
                sink(item);
            }
            _ => unreachable!("parse_header admits no other control opcode"),
        }
        Ok(())
    }
}

/// Makes room for `more` bytes, doubling like `Vec` would but never past `limit`: the
/// declared lengths already keep the message within it, so the buffer stays within it too.
fn reserve_within(data: &mut Vec<u8>, more: usize, limit: u64) {
    let need = data.len() + more;
    if need > data.capacity() {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let cap = data.capacity().saturating_mul(2).min(limit).max(need);
        data.reserve_exact(cap - data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&MASK);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
        v
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn read_in_pieces(r: &mut Reader, bytes: &[u8], piece: usize) -> (Vec<Got>, Result<(), CloseError>) {
        let mut got = Vec::new();
        let mut res = Ok(());
        for chunk in bytes.chunks(piece.max(1)) {
            let mut chunk = chunk.to_vec();
            res = r.feed(&mut chunk, &mut |item| {
                got.push(match item {
                    Item::Text(t) => Got::Text(t.to_owned()),
                    Item::Binary(b) => Got::Binary(b.to_vec()),
                    Item::Ping(b) => Got::Ping(b.to_vec()),
                    Item::Pong(b) => Got::Pong(b.to_vec()),
                    Item::Close(c, r) => Got::Close(c, r.to_owned()),
                })
            });
            if res.is_err() {
                break;
            }
        }
        (got, res)
    }

    fn read(bytes: &[u8]) -> (Vec<Got>, Result<(), CloseError>) {
        read_in_pieces(&mut Reader::new(1 << 20), bytes, usize::MAX)
    }

    #[test]
    fn whole_and_byte_by_byte_agree() {
        let mut input = frame(true, OP_TEXT, b"hello");
        input.extend(frame(false, OP_BINARY, &[1, 2]));
        input.extend(frame(true, OP_PING, b"p"));
        input.extend(frame(false, OP_CONTINUATION, &[]));
        input.extend(frame(true, OP_CONTINUATION, &[3; 300]));
        input.extend(frame(true, OP_TEXT, &[]));
        input.extend(frame(true, OP_CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']));
        let mut expected_bin = vec![1, 2];
        expected_bin.extend([3; 300]);
        let expected = vec![
            Got::Text("hello".into()),
            Got::Ping(b"p".to_vec()),
            Got::Binary(expected_bin),
            Got::Text(String::new()),
            Got::Close(Some(1000), "bye".into()),
        ];
        for piece in [usize::MAX, 1, 2, 3, 7, 13] {
            let (got, res) = read_in_pieces(&mut Reader::new(1 << 20), &input, piece);
            assert_eq!(res, Ok(()), "piece {piece}");
            assert_eq!(got, expected, "piece {piece}");
        }
    }

    #[test]
    fn ignores_input_after_close() {
        let mut input = frame(true, OP_CLOSE, &[]);
        input.extend(frame(true, OP_TEXT, b"late"));
        let (got, res) = read(&input);
        assert_eq!(res, Ok(()));
        assert_eq!(got, vec![Got::Close(None, String::new())]);
    }

    #[test]
    fn fragment_sequence_errors() {
        assert_eq!(read(&frame(true, OP_CONTINUATION, b"x")).1.unwrap_err().code, 1002);
        let mut two_starts = frame(false, OP_TEXT, b"a");
        two_starts.extend(frame(true, OP_TEXT, b"b"));
        assert_eq!(read(&two_starts).1.unwrap_err().code, 1002);
    }

    #[test]
    fn utf8_fails_fast_and_accepts_split_code_points() {
        // "€" split across two fragments is valid.
        let mut ok = frame(false, OP_TEXT, &[0xe2, 0x82]);
        ok.extend(frame(true, OP_CONTINUATION, &[0xac]));
        assert_eq!(read(&ok), (vec![Got::Text("€".into())], Ok(())));
        // An invalid first fragment fails before the message is finished.
        let (got, res) = read(&frame(false, OP_TEXT, &[b'a', 0xff]));
        assert!(got.is_empty());
        assert_eq!(res.unwrap_err().code, 1007);
        // A message that ends inside a code point is invalid.
        assert_eq!(read(&frame(true, OP_TEXT, &[0xe2, 0x82])).1.unwrap_err().code, 1007);
        let mut trunc = frame(false, OP_TEXT, &[0xe2]);
        trunc.extend(frame(true, OP_CONTINUATION, &[0x82]));
        assert_eq!(read(&trunc).1.unwrap_err().code, 1007);
    }

    #[test]
    fn close_frame_checks() {
        assert_eq!(read(&frame(true, OP_CLOSE, &[3])).1.unwrap_err().code, 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let r = read(&frame(true, OP_CLOSE, &code.to_be_bytes())).1;
            assert_eq!(r.unwrap_err().code, 1002, "code {code}");
        }
        let r = read(&frame(true, OP_CLOSE, &[0x03, 0xe8, 0xff])).1;
        assert_eq!(r.unwrap_err().code, 1002);
        assert_eq!(read(&frame(true, OP_CLOSE, &[0x0f, 0xa0])).0, vec![Got::Close(Some(4000), String::new())]);
    }

    #[test]
    fn limit_covers_all_fragments_and_is_checked_at_the_header() {
        let mut r = Reader::new(10);
        let mut input = frame(false, OP_BINARY, &[0; 6]);
        input.extend(frame(true, OP_CONTINUATION, &[0; 6]));
        let (got, res) = read_in_pieces(&mut r, &input, usize::MAX);
        assert!(got.is_empty());
        assert_eq!(res.unwrap_err().code, 1009);
        // A header declaring a huge length is refused before any payload arrives.
        let mut r = Reader::new(1 << 20);
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&MASK);
        assert_eq!(r.feed(&mut huge, &mut |_| {}).unwrap_err().code, 1009);
        assert_eq!(r.buffered(), 0);
    }
}
