//! The bounded fuzz run for CI, on stable Rust: replays the committed corpora, then checks
//! generated inputs for a fixed time. `VELOCY_FUZZ_SECS` sets the time per target (default
//! 10) and `VELOCY_FUZZ_SEED` the seed (default fixed, so a run is reproducible); a failure
//! prints the seed and the input as hex, to add under `corpus/<target>/`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use velocy_fuzz::{gen, Rng};

fn budget() -> Duration {
    let secs = std::env::var("VELOCY_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("VELOCY_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0f_7e1c)
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        if path.file_name().is_some_and(|f| f.to_string_lossy().starts_with('.')) {
            continue;
        }
        let data = std::fs::read(&path).expect("corpus file");
        if catch_unwind(|| check(&data)).is_err() {
            panic!("corpus input {} fails", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
    n
}

fn generate(target: &str, check: fn(&[u8]), make: fn(&mut Rng) -> Vec<u8>) {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let (start, budget) = (Instant::now(), budget());
    let mut runs = 0u64;
    while start.elapsed() < budget {
        let input = make(&mut rng);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{target}: input {runs} of seed {seed} fails: {hex}");
        }
        runs += 1;
    }
    eprintln!("{target}: {runs} generated inputs in {:?} (seed {seed})", start.elapsed());
}

#[test]
fn frame_reader() {
    let seeds = replay("frame_reader", velocy_fuzz::frame_reader);
    eprintln!("frame_reader: {seeds} corpus inputs");
    generate("frame_reader", velocy_fuzz::frame_reader, gen::reader_input);
}

#[test]
fn handshake() {
    let seeds = replay("handshake", velocy_fuzz::handshake);
    eprintln!("handshake: {seeds} corpus inputs");
    generate("handshake", velocy_fuzz::handshake, gen::handshake_input);
}
