//! Runs the fuzz checks on files: `cargo run --release --example replay -- <target> FILE...`.
fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay <frame_reader|handshake> FILE...");
    let check: fn(&[u8]) = match target.as_str() {
        "frame_reader" => velocy_fuzz::frame_reader,
        "handshake" => velocy_fuzz::handshake,
        other => panic!("unknown target {other}"),
    };
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        check(&data);
        println!("{path}: ok");
    }
}
