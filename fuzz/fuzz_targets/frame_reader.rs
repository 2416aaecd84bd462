//! Arbitrary bytes into `Reader::feed`, whole and in pieces (see `velocy_fuzz::frame_reader`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| velocy_fuzz::frame_reader(data));
