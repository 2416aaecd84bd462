//! Arbitrary bytes into `handshake::parse` and `handshake::check` (see `velocy_fuzz::handshake`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| velocy_fuzz::handshake(data));
