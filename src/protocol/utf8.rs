//! Incremental UTF-8 validation for text messages that arrive in pieces, so an invalid byte
//! fails the connection as soon as it is seen (RFC 6455 §8.1) while a code point split across
//! fragments stays valid.

/// A byte sequence that is not UTF-8 and cannot become UTF-8 with more input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates `buf[from..]` and returns the new number of validated bytes: everything up to a
/// trailing incomplete sequence, which the next call re-examines. `Err` on an invalid byte.
pub fn validate_from(buf: &[u8], from: usize) -> Result<usize, InvalidUtf8> {
    match std::str::from_utf8(&buf[from..]) {
        Ok(_) => Ok(buf.len()),
        // error_len() == None: the input ends inside a sequence that may still complete.
        Err(e) if e.error_len().is_none() => Ok(from + e.valid_up_to()),
        Err(_) => Err(InvalidUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_code_point_is_accepted() {
        let euro = "€".as_bytes(); // e2 82 ac
        let mut buf = euro[..1].to_vec();
        assert_eq!(validate_from(&buf, 0), Ok(0));
        buf.extend_from_slice(&euro[1..2]);
        assert_eq!(validate_from(&buf, 0), Ok(0));
        buf.extend_from_slice(&euro[2..]);
        assert_eq!(validate_from(&buf, 0), Ok(3));
    }

    #[test]
    fn invalid_byte_fails_fast() {
        assert!(validate_from(b"ab\xffcd", 0).is_err());
        // A sequence that can never complete (overlong / surrogate) fails before the end.
        assert!(validate_from(b"\xed\xa0", 0).is_err());
        assert!(validate_from(b"\xc0", 0).is_err());
    }
}
