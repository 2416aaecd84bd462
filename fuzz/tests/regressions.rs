//! Inputs the fuzz checks failed on, kept as tests once found. Each says what it broke.

use velocy::protocol::reader::Reader;
use velocy_fuzz::{gen, BUFFER_SLACK};

const MASK: [u8; 4] = [1, 2, 3, 4];

/// The reader's buffer grew past the message limit: `Vec` doubles its capacity, so a
/// fragmented message of 320 bytes under a limit of 381 held 638 bytes (limit + slack is 637).
#[test]
fn fragment_growth_stays_within_the_limit() {
    let mut input = vec![255, 0, 0]; // limit (255 - 128) * 3 = 381
    input.extend(gen::frame(0x02, &[0; 319], 319, 0, MASK));
    input.extend(gen::frame(0x00, &[0; 1], 1, 0, MASK));
    velocy_fuzz::frame_reader(&input);
}

/// The same with the realistic shape: one large frame arriving in 64 KiB reads. The buffer
/// doubles from 64 KiB to 1 MiB for a 999,999-byte message under a 1,000,000-byte limit
/// (with the 100 MiB default, a 65 MiB message reserves 128 MiB).
#[test]
fn a_large_frame_read_in_pieces_stays_within_the_limit() {
    let limit = 1_000_000u64;
    let len = 999_999usize;
    let bytes = gen::frame(0x82, &vec![7; len], len as u64, 0, MASK);
    let mut reader = Reader::new(limit);
    let mut got = 0;
    for chunk in bytes.chunks(64 * 1024) {
        let mut chunk = chunk.to_vec();
        reader.feed(&mut chunk, &mut |_| got += 1).expect("a message within the limit");
        let held = reader.buffered() as u64;
        assert!(held <= limit + BUFFER_SLACK, "reader holds {held} bytes with a limit of {limit}");
    }
    assert_eq!(got, 1);
}
