//! Close codes (RFC 6455 §7.4) and the checks a received or requested close must pass.

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const NO_STATUS_RECEIVED: u16 = 1005;
pub const ABNORMAL_CLOSURE: u16 = 1006;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_VIOLATION: u16 = 1008;
pub const MESSAGE_TOO_BIG: u16 = 1009;
pub const INTERNAL_ERROR: u16 = 1011;

/// Longest close reason: a control payload is at most 125 bytes, two of them the code.
pub const MAX_REASON_BYTES: usize = 123;

/// Whether `code` may travel in a close frame (RFC 6455 §7.4.1 and the IANA registry).
/// 1004–1006 and 1015 are reserved for local use and never sent; 1016–2999 are unassigned.
pub fn is_valid_wire_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a connection is being failed: the close code to send and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseError {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseError {
    pub const fn protocol(reason: &'static str) -> Self {
        Self { code: PROTOCOL_ERROR, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes() {
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_wire_code(bad), "{bad}");
        }
        for good in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(is_valid_wire_code(good), "{good}");
        }
    }
}
