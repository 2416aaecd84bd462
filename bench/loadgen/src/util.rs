//! Payload layout, /proc readers, a tiny JSON writer and shared error log.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

// ---------------------------------------------------------------- payloads
//
// Every payload is printable ASCII, so text frames are valid UTF-8 and the
// same bytes work for binary frames. A header carries the identifiers, the
// rest is filler taken from a 26-letter cycle at an offset that depends on
// the sequence number, so corruption anywhere in the message is detected by
// one memcmp against `Pattern`.

pub const ECHO_HDR: usize = 26; // 'E' conn:8hex ':' seq:16hex
pub const FAN_HDR: usize = 34; // 'F' seq:16hex ':' ts_ns:16hex

pub struct Pattern(Vec<u8>);

impl Pattern {
    pub fn new(max_len: usize) -> Pattern {
        Pattern((0..max_len + 26).map(|i| b'a' + (i % 26) as u8).collect())
    }
    #[inline]
    pub fn slice(&self, offset: usize, len: usize) -> &[u8] {
        let o = offset % 26;
        &self.0[o..o + len]
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
pub fn put_hex(dst: &mut [u8], mut v: u64) {
    for i in (0..dst.len()).rev() {
        dst[i] = HEX[(v & 15) as usize];
        v >>= 4;
    }
}

#[inline]
pub fn get_hex(src: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in src {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

#[inline]
pub fn fill_echo(dst: &mut [u8], pat: &Pattern, conn: u32, seq: u64) {
    dst[0] = b'E';
    put_hex(&mut dst[1..9], conn as u64);
    dst[9] = b':';
    put_hex(&mut dst[10..26], seq);
    let n = dst.len() - ECHO_HDR;
    dst[ECHO_HDR..].copy_from_slice(pat.slice(seq as usize + conn as usize, n));
}

/// Returns the sequence number carried by an echo payload if the whole
/// payload is exactly what `fill_echo` would produce for it.
#[inline]
pub fn check_echo(p: &[u8], pat: &Pattern, conn: u32, size: usize) -> Result<u64, String> {
    if p.len() != size {
        return Err(format!("echo length {} != {}", p.len(), size));
    }
    if p[0] != b'E' || p[9] != b':' {
        return Err("echo header garbled".into());
    }
    let c = get_hex(&p[1..9]).ok_or("echo conn id garbled")?;
    if c != conn as u64 {
        return Err(format!("echo for connection {c} arrived on connection {conn}"));
    }
    let seq = get_hex(&p[10..26]).ok_or("echo seq garbled")?;
    if &p[ECHO_HDR..] != pat.slice(seq as usize + conn as usize, size - ECHO_HDR) {
        return Err(format!("echo payload corrupted (seq {seq})"));
    }
    Ok(seq)
}

#[inline]
pub fn fill_fan(dst: &mut [u8], pat: &Pattern, seq: u64, ts_ns: u64) {
    dst[0] = b'F';
    put_hex(&mut dst[1..17], seq);
    dst[17] = b':';
    put_hex(&mut dst[18..34], ts_ns);
    let n = dst.len() - FAN_HDR;
    dst[FAN_HDR..].copy_from_slice(pat.slice(seq as usize, n));
}

/// (seq, ts_ns) of a verified fan-out payload.
#[inline]
pub fn check_fan(p: &[u8], pat: &Pattern, size: usize) -> Result<(u64, u64), String> {
    if p.len() != size {
        return Err(format!("fan-out length {} != {}", p.len(), size));
    }
    if p[0] != b'F' || p[17] != b':' {
        return Err("fan-out header garbled".into());
    }
    let seq = get_hex(&p[1..17]).ok_or("fan-out seq garbled")?;
    let ts = get_hex(&p[18..34]).ok_or("fan-out timestamp garbled")?;
    if &p[FAN_HDR..] != pat.slice(seq as usize, size - FAN_HDR) {
        return Err(format!("fan-out payload corrupted (seq {seq})"));
    }
    Ok((seq, ts))
}

// ------------------------------------------------------------------ modes

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Binary,
    Mixed,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "text" => Ok(Mode::Text),
            "binary" => Ok(Mode::Binary),
            "mixed" => Ok(Mode::Mixed),
            _ => Err(format!("--mode must be text, binary or mixed, got {s}")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Text => "text",
            Mode::Binary => "binary",
            Mode::Mixed => "mixed",
        }
    }
    /// Opcode for message `seq`: mixed alternates text (even) / binary (odd).
    #[inline]
    pub fn opcode(self, seq: u64) -> u8 {
        match self {
            Mode::Text => crate::ws::OP_TEXT,
            Mode::Binary => crate::ws::OP_BINARY,
            Mode::Mixed => {
                if seq & 1 == 0 {
                    crate::ws::OP_TEXT
                } else {
                    crate::ws::OP_BINARY
                }
            }
        }
    }
}

// ------------------------------------------------------------------- /proc

pub fn clk_tck() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process in clock ticks (`None` if unreadable).
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime = field 14, stime = field 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some(ut + st)
}

/// user + system CPU seconds of this process so far.
pub fn self_cpu_secs() -> f64 {
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// VmRSS in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            return v.trim().trim_end_matches("kB").trim().parse().ok();
        }
    }
    None
}

/// CPU utilisation of the server (if a pid is known) and of this process
/// over a window.
pub struct CpuWindow {
    t0: Instant,
    server0: Option<u64>,
    self0: Option<u64>,
    pid: Option<u32>,
}

impl CpuWindow {
    pub fn start(pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            t0: Instant::now(),
            server0: pid.and_then(|p| cpu_ticks(Some(p))),
            self0: cpu_ticks(None),
            pid,
        }
    }
    /// (server %, loadgen %) of one core.
    pub fn finish(&self) -> (Option<f64>, Option<f64>) {
        let el = self.t0.elapsed().as_secs_f64();
        let tck = clk_tck();
        let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if el > 0.0 => Some((b.saturating_sub(a)) as f64 / tck / el * 100.0),
            _ => None,
        };
        (
            pct(self.server0, self.pid.and_then(|p| cpu_ticks(Some(p)))),
            pct(self.self0, cpu_ticks(None)),
        )
    }
}

// ---------------------------------------------------------------- spinner

/// Busy-polling: a task that yields forever keeps the current-thread
/// runtime from ever sleeping in epoll_wait. Every yield makes the runtime
/// poll the I/O driver with a zero timeout, so readiness is picked up
/// without a sleep/wake-up (context switch + IPI) per event. The load
/// generator owns its core, so spinning costs nothing else; it makes the
/// client cheaper per message when it is not saturated, and it keeps the
/// server from paying a wake-up for every write to a sleeping client.
///
/// The spinner also estimates how busy the load generator really is (its
/// CPU time is always ~100 %): an idle lap of the spinner (yield, zero-
/// timeout epoll, nothing else to run) takes a short, stable time `base`,
/// measured at start; any longer lap means other tasks ran, and the excess
/// is counted as busy time.
pub struct Spinner {
    stop: std::rc::Rc<Cell<bool>>,
    busy_ns: std::rc::Rc<Cell<u64>>,
}

impl Spinner {
    /// Start spinning; the first `calib` (no traffic yet) calibrates `base`.
    pub async fn start(calib: Duration) -> Spinner {
        let stop = std::rc::Rc::new(Cell::new(false));
        let busy_ns = std::rc::Rc::new(Cell::new(0u64));
        let base_ns = std::rc::Rc::new(Cell::new(0u64));
        let calibrating = std::rc::Rc::new(Cell::new(true));
        {
            let (stop, busy_ns, base_ns, calibrating) =
                (stop.clone(), busy_ns.clone(), base_ns.clone(), calibrating.clone());
            tokio::task::spawn_local(async move {
                let mut laps: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut last = Instant::now();
                while !stop.get() {
                    tokio::task::yield_now().await;
                    let now = Instant::now();
                    let lap = (now - last).as_nanos() as u64;
                    last = now;
                    if calibrating.get() {
                        if laps.len() < laps.capacity() {
                            laps.push(lap.min(u32::MAX as u64) as u32);
                        }
                        continue;
                    }
                    if base_ns.get() == 0 {
                        // First lap after calibration: settle `base`.
                        laps.sort_unstable();
                        let b = laps.get(laps.len() / 2).copied().unwrap_or(1000) as u64;
                        base_ns.set(b.max(1));
                        laps = Vec::new();
                    }
                    let b = base_ns.get();
                    // Ignore jitter on an idle lap; count the excess of a
                    // lap during which other tasks ran.
                    if lap > 2 * b {
                        busy_ns.set(busy_ns.get() + (lap - b));
                    }
                }
            });
        }
        tokio::time::sleep(calib).await;
        calibrating.set(false);
        Spinner { stop, busy_ns }
    }
    pub fn mark(&self) -> (Instant, u64) {
        (Instant::now(), self.busy_ns.get())
    }
    /// Estimated busy % of the load generator since `mark`.
    pub fn busy_since(&self, m: (Instant, u64)) -> Option<f64> {
        let el = m.0.elapsed().as_nanos() as f64;
        if el <= 0.0 {
            return None;
        }
        let busy = (self.busy_ns.get() - m.1) as f64;
        Some((busy / el * 100.0).clamp(0.0, 100.0))
    }
    pub fn stop(&self) {
        self.stop.set(true);
    }
}

// ------------------------------------------------------------------ errors

/// Problems found while running, shared by all tasks (single-threaded).
#[derive(Default)]
pub struct Problems {
    pub verify: Cell<u64>,   // payload corrupted / wrong length / wrong type
    pub lost: Cell<u64>,     // sequence numbers skipped
    pub reorder: Cell<u64>,  // sequence number lower than expected (dup/reorder)
    pub conn: Cell<u64>,     // connection-level failures (connect, EOF, close)
    pub samples: RefCell<Vec<String>>,
}

impl Problems {
    pub fn note(&self, c: &Cell<u64>, n: u64, msg: impl FnOnce() -> String) {
        c.set(c.get() + n);
        let mut s = self.samples.borrow_mut();
        if s.len() < 8 {
            s.push(msg());
        }
    }
    pub fn total(&self) -> u64 {
        self.verify.get() + self.lost.get() + self.reorder.get() + self.conn.get()
    }
    pub fn to_json(&self, o: &mut Json) {
        let mut e = Json::obj();
        e.num("verify", self.verify.get() as f64);
        e.num("lost", self.lost.get() as f64);
        e.num("reordered", self.reorder.get() as f64);
        e.num("connection", self.conn.get() as f64);
        e.strs("samples", &self.samples.borrow());
        o.raw("errors", &e.finish());
        o.boolean("ok", self.total() == 0);
    }
}

// -------------------------------------------------------------- histograms

pub fn new_hist() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram")
}

pub fn hist_json(o: &mut Json, prefix: &str, h: &Histogram<u64>) {
    let us = |v: u64| v as f64 / 1000.0;
    if h.is_empty() {
        o.null(&format!("{prefix}_p50_us"));
        o.null(&format!("{prefix}_p99_us"));
        return;
    }
    o.num(&format!("{prefix}_p50_us"), us(h.value_at_quantile(0.50)));
    o.num(&format!("{prefix}_p90_us"), us(h.value_at_quantile(0.90)));
    o.num(&format!("{prefix}_p99_us"), us(h.value_at_quantile(0.99)));
    o.num(&format!("{prefix}_p999_us"), us(h.value_at_quantile(0.999)));
    o.num(&format!("{prefix}_max_us"), us(h.max()));
    o.num(&format!("{prefix}_mean_us"), (h.mean() / 1000.0 * 1000.0).round() / 1000.0);
}

// -------------------------------------------------------------------- JSON

pub struct Json {
    s: String,
    first: bool,
}

impl Json {
    pub fn obj() -> Json {
        Json { s: "{".into(), first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.s.push(',');
        }
        self.first = false;
        self.s.push_str(&quote(k));
        self.s.push(':');
    }
    pub fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.s.push_str(&quote(v));
    }
    pub fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        if v.is_finite() {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                let _ = write!(self.s, "{}", v as i64);
            } else {
                let _ = write!(self.s, "{:.3}", v);
            }
        } else {
            self.s.push_str("null");
        }
    }
    pub fn opt(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(k, (v * 10.0).round() / 10.0),
            None => self.null(k),
        }
    }
    pub fn null(&mut self, k: &str) {
        self.key(k);
        self.s.push_str("null");
    }
    pub fn boolean(&mut self, k: &str, v: bool) {
        self.key(k);
        self.s.push_str(if v { "true" } else { "false" });
    }
    pub fn strs(&mut self, k: &str, v: &[String]) {
        self.key(k);
        self.s.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                self.s.push(',');
            }
            self.s.push_str(&quote(x));
        }
        self.s.push(']');
    }
    pub fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.s.push_str(v);
    }
    pub fn finish(mut self) -> String {
        self.s.push('}');
        self.s
    }
}

fn quote(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit.
pub fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            if r.rlim_cur < r.rlim_max {
                let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    return r.rlim_max;
                }
            }
            return r.rlim_cur;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_payload_roundtrip() {
        let pat = Pattern::new(256);
        let mut b = vec![0u8; 64];
        fill_echo(&mut b, &pat, 7, 123456);
        assert_eq!(check_echo(&b, &pat, 7, 64), Ok(123456));
        assert!(check_echo(&b, &pat, 8, 64).is_err());
        b[40] ^= 1;
        assert!(check_echo(&b, &pat, 7, 64).is_err());
        assert!(b.iter().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn fan_payload_roundtrip() {
        let pat = Pattern::new(2048);
        let mut b = vec![0u8; 1024];
        fill_fan(&mut b, &pat, 99, 0xdead_beef);
        assert_eq!(check_fan(&b, &pat, 1024), Ok((99, 0xdead_beef)));
        b[1000] = b'#';
        assert!(check_fan(&b, &pat, 1024).is_err());
    }
}
