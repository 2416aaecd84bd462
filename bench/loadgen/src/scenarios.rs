//! The four benchmark scenarios. All state is single-threaded (Rc/Cell);
//! every connection is one local task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Notify, Semaphore};
use tokio::task::spawn_local;

use crate::util::{self, hist_json, new_hist, secs, CpuWindow, Json, Mode, Pattern, Problems, Spinner};
use crate::ws::{Msg, Target, WsConn, OP_TEXT};
use crate::Args;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

type Res = Result<(String, bool), String>;

#[inline]
fn ns(d: Duration) -> u64 {
    (d.as_nanos() as u64).max(1)
}

#[inline]
fn record(h: &RefCell<Histogram<u64>>, v: u64) {
    h.borrow_mut().saturating_record(v);
}

// ------------------------------------------------------------ connecting

/// Open `n` connections to `path` with at most `concurrency` handshakes in
/// flight. With `wait_ready`, each connection must first receive the text
/// message "ready". Returns the connections in index order.
async fn connect_many(
    t: &Target,
    path: &str,
    n: usize,
    concurrency: usize,
    rbuf: usize,
    wait_ready: bool,
    seed: u64,
) -> Result<Vec<WsConn>, String> {
    let sem = Rc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let sem = sem.clone();
        let t = t.clone();
        let path = path.to_string();
        handles.push(spawn_local(async move {
            let _permit = sem.acquire().await.unwrap();
            let fut = async {
                let mut c = WsConn::connect(&t, &path, seed.wrapping_add(i as u64 * 7919), rbuf).await?;
                if wait_ready {
                    wait_for_ready(&mut c).await?;
                }
                Ok::<WsConn, String>(c)
            };
            match tokio::time::timeout(Duration::from_secs(30), fut).await {
                Ok(r) => r,
                Err(_) => Err("connect/handshake timed out after 30 s".to_string()),
            }
        }));
    }
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    let mut failed = 0usize;
    for h in handles {
        match h.await {
            Ok(Ok(c)) => out.push(c),
            Ok(Err(e)) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(format!("task failed: {e}"));
            }
        }
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of {n} connections to {path} failed; first error: {}",
            first_err.unwrap_or_default()
        ));
    }
    Ok(out)
}

async fn wait_for_ready(c: &mut WsConn) -> Result<(), String> {
    loop {
        while let Some(m) = c.next_msg()? {
            match m {
                Msg::Data { opcode, .. } | Msg::Assembled { opcode } => {
                    let p = c.payload(&m);
                    if opcode == OP_TEXT && p == b"ready" {
                        return Ok(());
                    }
                    return Err(format!(
                        "expected text 'ready', got opcode {opcode} {:?}",
                        String::from_utf8_lossy(&p[..p.len().min(40)])
                    ));
                }
                Msg::Ping { start, end } => {
                    c.push_pong(start, end);
                    c.flush().await.map_err(|e| e.to_string())?;
                }
                Msg::Pong => {}
                Msg::Close { .. } => return Err("server closed before 'ready'".into()),
            }
        }
        match c.fill().await {
            Ok(0) => return Err("EOF before 'ready'".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read before 'ready': {e}")),
        }
    }
}

fn common_json(j: &mut Json, scenario: &str, t: &Target) {
    j.str("scenario", scenario);
    j.str("target", &format!("{}:{}", t.host, t.port));
}

fn cpu_json(j: &mut Json, cpu: (Option<f64>, Option<f64>), busy: Option<f64>, spin: bool) {
    j.opt("server_cpu_pct", cpu.0);
    j.opt("loadgen_cpu_pct", cpu.1);
    // With busy-polling the process always uses its whole core; the busy
    // estimate (from the spin rate) says how much of it did real work.
    j.boolean("loadgen_spin", spin);
    // Time the process was not running at all (other processes on its
    // core) shows up as long spinner laps; take it out again.
    let busy = match (spin, busy, cpu.1) {
        (true, Some(b), Some(c)) => Some((b - (100.0 - c).max(0.0)).max(0.0)),
        (true, b, _) => b,
        (false, _, c) => c,
    };
    j.opt("loadgen_busy_pct", busy);
}

async fn maybe_spin(a: &Args) -> Result<Option<Spinner>, String> {
    let spin: u8 = a.num("spin", 1)?;
    Ok(if spin != 0 { Some(Spinner::start(Duration::from_millis(200)).await) } else { None })
}

// ------------------------------------------------------------------ echo

struct EchoShared {
    phase: Cell<u8>,
    measured: Cell<u64>,
    outstanding: Cell<u64>,
    live: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    probs: Problems,
    pat: Pattern,
    size: usize,
    mode: Mode,
    inflight: usize,
    done: Notify,
}

pub async fn echo(a: &Args) -> Res {
    let t = Target::parse(&a.str("url", "ws://127.0.0.1:9001"))?;
    let path = a.opt_str("path").unwrap_or_else(|| t.path_or("/echo"));
    let conns: usize = a.num("conns", 100)?;
    let inflight: usize = a.num("inflight", 1)?;
    let size: usize = a.num("size", 64)?;
    let duration: f64 = a.num("duration", 5.0)?;
    let warmup: f64 = a.num("warmup", 1.0)?;
    let mode = Mode::parse(&a.str("mode", "mixed"))?;
    let pid: Option<u32> = a.opt_num("pid")?;
    let cc: usize = a.num("connect-concurrency", 200)?;
    if size < util::ECHO_HDR {
        return Err(format!("--size must be >= {} for echo", util::ECHO_HDR));
    }
    if inflight == 0 || conns == 0 {
        return Err("--conns and --inflight must be > 0".into());
    }

    let t_conn = Instant::now();
    let cs = connect_many(&t, &path, conns, cc, 64 * 1024, false, 1).await?;
    let connect_s = secs(t_conn.elapsed());

    let sh = Rc::new(EchoShared {
        phase: Cell::new(WARMUP),
        measured: Cell::new(0),
        outstanding: Cell::new(0),
        live: Cell::new(conns as u64),
        hist: RefCell::new(new_hist()),
        probs: Problems::default(),
        pat: Pattern::new(size),
        size,
        mode,
        inflight,
        done: Notify::new(),
    });
    let spinner = maybe_spin(a).await?;
    for (i, c) in cs.into_iter().enumerate() {
        let sh = sh.clone();
        spawn_local(async move {
            if let Err(e) = echo_conn(c, i as u32, &sh).await {
                sh.probs.note(&sh.probs.conn, 1, || format!("conn {i}: {e}"));
            }
            sh.live.set(sh.live.get() - 1);
            if sh.live.get() == 0 {
                sh.done.notify_one();
            }
        });
    }

    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    sh.hist.borrow_mut().reset();
    sh.measured.set(0);
    sh.phase.set(MEASURE);
    let cpu = CpuWindow::start(pid);
    let mark = spinner.as_ref().map(|s| s.mark());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    sh.phase.set(STOP);
    let window = secs(t0.elapsed());
    let measured = sh.measured.get();
    let cpu = cpu.finish();
    let busy = spinner.as_ref().zip(mark).and_then(|(s, m)| s.busy_since(m));

    // Drain: every request sent must be answered.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while sh.live.get() > 0 {
            sh.done.notified().await;
        }
    })
    .await
    .is_ok();
    if let Some(s) = &spinner {
        s.stop();
    }
    if !drained {
        let o = sh.outstanding.get();
        sh.probs.note(&sh.probs.lost, o, || format!("{o} echo requests still unanswered 10 s after the run"));
    }

    let mut j = Json::obj();
    common_json(&mut j, "echo", &t);
    j.str("path", &path);
    j.num("conns", conns as f64);
    j.num("inflight", inflight as f64);
    j.num("size", size as f64);
    j.str("mode", mode.name());
    j.num("connect_s", (connect_s * 1000.0).round() / 1000.0);
    j.num("duration_s", (window * 1000.0).round() / 1000.0);
    j.num("round_trips", measured as f64);
    j.num("rtt_per_sec", (measured as f64 / window).round());
    hist_json(&mut j, "lat", &sh.hist.borrow());
    cpu_json(&mut j, cpu, busy, spinner.is_some());
    sh.probs.to_json(&mut j);
    let ok = sh.probs.total() == 0;
    Ok((j.finish(), ok))
}

async fn echo_conn(mut c: WsConn, id: u32, sh: &EchoShared) -> Result<(), String> {
    let size = sh.size;
    let mode = sh.mode;
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(sh.inflight + 1);
    let mut send_seq: u64 = 0;
    let mut recv_seq: u64 = 0;

    for _ in 0..sh.inflight {
        let s = send_seq;
        c.push_frame_with(mode.opcode(s), size, |d| util::fill_echo(d, &sh.pat, id, s));
        send_seq += 1;
    }
    let now = Instant::now();
    for _ in 0..sh.inflight {
        sent_at.push_back(now);
    }
    sh.outstanding.set(sh.outstanding.get() + sh.inflight as u64);
    c.flush().await.map_err(|e| format!("write: {e}"))?;

    loop {
        if sh.phase.get() == STOP && sent_at.is_empty() {
            return Ok(());
        }
        match c.fill().await {
            Ok(0) => return Err("server closed the connection (EOF)".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let now = Instant::now();
        let phase = sh.phase.get();
        let mut fresh = 0usize;
        while let Some(m) = c.next_msg()? {
            match m {
                Msg::Data { opcode, .. } | Msg::Assembled { opcode } => {
                    let checked = util::check_echo(c.payload(&m), &sh.pat, id, size);
                    let seq = match checked {
                        Ok(seq) => seq,
                        Err(e) => {
                            sh.probs.note(&sh.probs.verify, 1, || format!("conn {id}: {e}"));
                            recv_seq
                        }
                    };
                    if opcode != mode.opcode(seq) {
                        sh.probs.note(&sh.probs.verify, 1, || {
                            format!("conn {id}: seq {seq} sent with opcode {} but echoed with {opcode}", mode.opcode(seq))
                        });
                    }
                    if seq < recv_seq || seq >= send_seq {
                        sh.probs.note(&sh.probs.reorder, 1, || {
                            format!("conn {id}: got seq {seq}, expected {recv_seq}")
                        });
                        continue;
                    }
                    if seq > recv_seq {
                        let gap = seq - recv_seq;
                        sh.probs.note(&sh.probs.lost, gap, || {
                            format!("conn {id}: {gap} echo(es) missing before seq {seq}")
                        });
                        for _ in 0..gap {
                            sent_at.pop_front();
                        }
                        sh.outstanding.set(sh.outstanding.get() - gap);
                    }
                    recv_seq = seq + 1;
                    let t_sent = sent_at.pop_front().unwrap_or(now);
                    sh.outstanding.set(sh.outstanding.get() - 1);
                    if phase == MEASURE {
                        record(&sh.hist, ns(now - t_sent));
                        sh.measured.set(sh.measured.get() + 1);
                    }
                    if phase != STOP {
                        let s = send_seq;
                        c.push_frame_with(mode.opcode(s), size, |d| util::fill_echo(d, &sh.pat, id, s));
                        send_seq += 1;
                        fresh += 1;
                    }
                }
                Msg::Ping { start, end } => c.push_pong(start, end),
                Msg::Pong => {}
                Msg::Close { .. } => return Err("server sent a close frame".into()),
            }
        }
        if fresh > 0 {
            let t_send = Instant::now();
            for _ in 0..fresh {
                sent_at.push_back(t_send);
            }
            sh.outstanding.set(sh.outstanding.get() + fresh as u64);
        }
        c.flush().await.map_err(|e| format!("write: {e}"))?;
    }
}

// ---------------------------------------------------------------- fan-out

const RING: usize = 4096;

struct FanShared {
    phase: Cell<u8>,
    epoch: Instant,
    subs: u32,
    /// Deliveries still missing for message `seq`, at `seq % RING`.
    remaining: RefCell<Vec<u32>>,
    published_at: RefCell<Vec<Instant>>,
    published: Cell<u64>,
    completed: Cell<u64>,
    completed_measured: Cell<u64>,
    deliveries_measured: Cell<u64>,
    deliveries_total: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    complete_hist: RefCell<Histogram<u64>>,
    probs: Problems,
    pat: Pattern,
    size: usize,
    mode: Mode,
    progress: Notify,
}

pub async fn fanout(a: &Args) -> Res {
    let t = Target::parse(&a.str("url", "ws://127.0.0.1:9001"))?;
    let sub_path = a.str("sub-path", "/fanout");
    let pub_path = a.str("pub-path", "/publish");
    let subs: usize = a.num("conns", 1000)?;
    let inflight: usize = a.num("inflight", 1)?;
    let size: usize = a.num("size", 1024)?;
    let duration: f64 = a.num("duration", 5.0)?;
    let warmup: f64 = a.num("warmup", 1.0)?;
    let mode = Mode::parse(&a.str("mode", "mixed"))?;
    let pid: Option<u32> = a.opt_num("pid")?;
    let cc: usize = a.num("connect-concurrency", 200)?;
    let stall: f64 = a.num("stall-timeout", 10.0)?;
    if size < util::FAN_HDR {
        return Err(format!("--size must be >= {} for fanout", util::FAN_HDR));
    }
    if inflight == 0 || inflight > RING / 2 || subs == 0 {
        return Err(format!("--inflight must be 1..={} and --conns > 0", RING / 2));
    }

    let t_conn = Instant::now();
    let cs = connect_many(&t, &sub_path, subs, cc, 32 * 1024, true, 11).await?;
    let mut pubc = connect_many(&t, &pub_path, 1, 1, 16 * 1024, false, 5).await?;
    let publisher = pubc.pop().unwrap();
    let connect_s = secs(t_conn.elapsed());

    let now = Instant::now();
    let sh = Rc::new(FanShared {
        phase: Cell::new(WARMUP),
        epoch: now,
        subs: subs as u32,
        remaining: RefCell::new(vec![0; RING]),
        published_at: RefCell::new(vec![now; RING]),
        published: Cell::new(0),
        completed: Cell::new(0),
        completed_measured: Cell::new(0),
        deliveries_measured: Cell::new(0),
        deliveries_total: Cell::new(0),
        hist: RefCell::new(new_hist()),
        complete_hist: RefCell::new(new_hist()),
        probs: Problems::default(),
        pat: Pattern::new(size),
        size,
        mode,
        progress: Notify::new(),
    });
    let spinner = maybe_spin(a).await?;
    for (i, c) in cs.into_iter().enumerate() {
        let sh = sh.clone();
        spawn_local(async move {
            if let Err(e) = subscriber(c, i as u32, &sh).await {
                sh.probs.note(&sh.probs.conn, 1, || format!("subscriber {i}: {e}"));
                sh.progress.notify_one();
            }
        });
    }
    let pub_task = {
        let sh = sh.clone();
        spawn_local(async move {
            if let Err(e) = publish_loop(publisher, inflight, Duration::from_secs_f64(stall), &sh).await {
                sh.probs.note(&sh.probs.conn, 1, || format!("publisher: {e}"));
            }
        })
    };

    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    sh.hist.borrow_mut().reset();
    sh.complete_hist.borrow_mut().reset();
    sh.deliveries_measured.set(0);
    sh.completed_measured.set(0);
    sh.phase.set(MEASURE);
    let cpu = CpuWindow::start(pid);
    let mark = spinner.as_ref().map(|s| s.mark());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    sh.phase.set(STOP);
    let window = secs(t0.elapsed());
    let deliveries = sh.deliveries_measured.get();
    let completed = sh.completed_measured.get();
    let cpu = cpu.finish();
    let busy = spinner.as_ref().zip(mark).and_then(|(s, m)| s.busy_since(m));
    sh.progress.notify_one();
    // The publisher finishes once everything it published was delivered to
    // every subscriber (or reports a stall after --stall-timeout).
    let _ = pub_task.await;
    if let Some(s) = &spinner {
        s.stop();
    }

    let mut j = Json::obj();
    common_json(&mut j, "fanout", &t);
    j.num("subscribers", subs as f64);
    j.num("inflight", inflight as f64);
    j.num("size", size as f64);
    j.str("mode", mode.name());
    j.num("connect_s", (connect_s * 1000.0).round() / 1000.0);
    j.num("duration_s", (window * 1000.0).round() / 1000.0);
    j.num("messages_published", sh.published.get() as f64);
    j.num("messages_completed", completed as f64);
    j.num("messages_per_sec", (completed as f64 / window * 10.0).round() / 10.0);
    j.num("deliveries", deliveries as f64);
    j.num("deliveries_per_sec", (deliveries as f64 / window).round());
    j.num("deliveries_total", sh.deliveries_total.get() as f64);
    hist_json(&mut j, "lat", &sh.hist.borrow());
    hist_json(&mut j, "complete", &sh.complete_hist.borrow());
    cpu_json(&mut j, cpu, busy, spinner.is_some());
    sh.probs.to_json(&mut j);
    let ok = sh.probs.total() == 0;
    Ok((j.finish(), ok))
}

async fn subscriber(mut c: WsConn, id: u32, sh: &FanShared) -> Result<(), String> {
    let mut expect: u64 = 0;
    loop {
        match c.fill().await {
            Ok(0) => return Err("server closed the connection (EOF)".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let now = Instant::now();
        let now_ns = ns(now - sh.epoch);
        let measuring = sh.phase.get() == MEASURE;
        let mut got = 0u64;
        while let Some(m) = c.next_msg()? {
            match m {
                Msg::Data { opcode, .. } | Msg::Assembled { opcode } => {
                    let (seq, ts) = match util::check_fan(c.payload(&m), &sh.pat, sh.size) {
                        Ok(v) => v,
                        Err(e) => {
                            sh.probs.note(&sh.probs.verify, 1, || format!("subscriber {id}: {e}"));
                            continue;
                        }
                    };
                    if opcode != sh.mode.opcode(seq) {
                        sh.probs.note(&sh.probs.verify, 1, || {
                            format!("subscriber {id}: seq {seq} published with opcode {} but delivered with {opcode}", sh.mode.opcode(seq))
                        });
                    }
                    if seq >= sh.published.get() {
                        sh.probs.note(&sh.probs.verify, 1, || {
                            format!("subscriber {id}: received seq {seq} that was never published")
                        });
                        continue;
                    }
                    if seq != expect {
                        if seq > expect {
                            let gap = seq - expect;
                            sh.probs.note(&sh.probs.lost, gap, || {
                                format!("subscriber {id}: {gap} message(s) missing before seq {seq}")
                            });
                            // Settle the skipped messages for this subscriber
                            // so completion accounting (and the publisher)
                            // carries on; the loss is already counted.
                            for q in expect..seq {
                                let slot = q as usize % RING;
                                let mut rem = sh.remaining.borrow_mut();
                                if rem[slot] > 0 {
                                    rem[slot] -= 1;
                                    if rem[slot] == 0 {
                                        drop(rem);
                                        sh.completed.set(sh.completed.get() + 1);
                                        sh.progress.notify_one();
                                    }
                                }
                            }
                        } else {
                            sh.probs.note(&sh.probs.reorder, 1, || {
                                format!("subscriber {id}: got seq {seq} after {}", expect - 1)
                            });
                            continue;
                        }
                    }
                    expect = seq + 1;
                    got += 1;
                    if measuring {
                        record(&sh.hist, now_ns.saturating_sub(ts).max(1));
                    }
                    let slot = seq as usize % RING;
                    let mut rem = sh.remaining.borrow_mut();
                    if rem[slot] == 0 {
                        drop(rem);
                        sh.probs.note(&sh.probs.reorder, 1, || format!("subscriber {id}: seq {seq} delivered more often than there are subscribers"));
                        continue;
                    }
                    rem[slot] -= 1;
                    if rem[slot] == 0 {
                        drop(rem);
                        sh.completed.set(sh.completed.get() + 1);
                        if measuring {
                            sh.completed_measured.set(sh.completed_measured.get() + 1);
                            let p = sh.published_at.borrow()[slot];
                            record(&sh.complete_hist, ns(now - p));
                        }
                        sh.progress.notify_one();
                    }
                }
                Msg::Ping { start, end } => c.push_pong(start, end),
                Msg::Pong => {}
                Msg::Close { .. } => return Err("server sent a close frame".into()),
            }
        }
        sh.deliveries_total.set(sh.deliveries_total.get() + got);
        if measuring {
            sh.deliveries_measured.set(sh.deliveries_measured.get() + got);
        }
        if !c.wbuf.is_empty() {
            c.flush().await.map_err(|e| format!("write: {e}"))?;
        }
    }
}

async fn publish_loop(mut c: WsConn, inflight: usize, stall: Duration, sh: &FanShared) -> Result<(), String> {
    let size = sh.size;
    let mut last_progress = Instant::now();
    let mut last_completed = 0u64;
    loop {
        let completed = sh.completed.get();
        if completed != last_completed {
            last_completed = completed;
            last_progress = Instant::now();
        }
        let phase = sh.phase.get();
        if phase != STOP {
            let mut next = sh.published.get();
            while (next - completed) < inflight as u64 {
                let seq = next;
                let slot = seq as usize % RING;
                sh.remaining.borrow_mut()[slot] = sh.subs;
                let now = Instant::now();
                sh.published_at.borrow_mut()[slot] = now;
                let ts = ns(now - sh.epoch);
                c.push_frame_with(sh.mode.opcode(seq), size, |d| util::fill_fan(d, &sh.pat, seq, ts));
                next += 1;
                sh.published.set(next);
            }
            c.flush().await.map_err(|e| format!("write: {e}"))?;
        } else if completed >= sh.published.get() {
            return Ok(());
        }
        let deadline = last_progress + stall;
        if Instant::now() >= deadline {
            // Every delivery still owed counts as lost.
            let published = sh.published.get();
            let owed: u64 = (completed..published)
                .map(|q| sh.remaining.borrow()[q as usize % RING] as u64)
                .sum();
            let slot = completed as usize % RING;
            let missing = sh.remaining.borrow()[slot];
            sh.probs.note(&sh.probs.lost, owed, || {
                format!(
                    "stalled: message {completed} still missing at {missing} of {} subscribers after {:?} without progress ({owed} deliveries owed)",
                    sh.subs, stall
                )
            });
            return Ok(());
        }
        tokio::select! {
            _ = sh.progress.notified() => {}
            r = c.fill() => {
                match r {
                    Ok(0) => return Err("server closed the publisher connection (EOF)".into()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
                while let Some(m) = c.next_msg()? {
                    match m {
                        Msg::Ping { start, end } => c.push_pong(start, end),
                        Msg::Pong => {}
                        Msg::Close { .. } => return Err("server closed the publisher connection".into()),
                        _ => {
                            sh.probs.note(&sh.probs.verify, 1, || "publisher received an unexpected data message".into());
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

// --------------------------------------------------------- connection rate

pub async fn connrate(a: &Args) -> Res {
    let t = Target::parse(&a.str("url", "ws://127.0.0.1:9001"))?;
    let path = a.opt_str("path").unwrap_or_else(|| t.path_or("/echo"));
    let count: u64 = a.num("count", 10_000)?;
    let concurrency: usize = a.num("concurrency", 64)?;
    let pid: Option<u32> = a.opt_num("pid")?;
    // tcp: close the TCP connection right after the verified 101 (the client
    // closes first, so TIME_WAIT stays on the client side). frame: send a
    // close frame and wait for the server's close frame (or EOF) first.
    let close_frame = match a.str("close", "tcp").as_str() {
        "tcp" => false,
        "frame" => true,
        other => return Err(format!("--close must be tcp or frame, got {other}")),
    };

    struct S {
        next: Cell<u64>,
        ok: Cell<u64>,
        hs: RefCell<Histogram<u64>>,
        cycle: RefCell<Histogram<u64>>,
        probs: Problems,
    }
    let sh = Rc::new(S {
        next: Cell::new(0),
        ok: Cell::new(0),
        hs: RefCell::new(new_hist()),
        cycle: RefCell::new(new_hist()),
        probs: Problems::default(),
    });
    let spinner = maybe_spin(a).await?;
    let cpu = CpuWindow::start(pid);
    let mark = spinner.as_ref().map(|s| s.mark());
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let sh = sh.clone();
        let t = t.clone();
        let path = path.clone();
        workers.push(spawn_local(async move {
            loop {
                let i = sh.next.get();
                if i >= count {
                    break;
                }
                sh.next.set(i + 1);
                let start = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(30), async {
                    let c = WsConn::connect(&t, &path, i * 31 + w as u64, 4096).await?;
                    let hs = ns(start.elapsed());
                    if close_frame {
                        c.close_gracefully(Duration::from_secs(10)).await?;
                    } else {
                        drop(c);
                    }
                    Ok::<u64, String>(hs)
                })
                .await;
                match r {
                    Ok(Ok(hs)) => {
                        record(&sh.hs, hs);
                        record(&sh.cycle, ns(start.elapsed()));
                        sh.ok.set(sh.ok.get() + 1);
                    }
                    Ok(Err(e)) => sh.probs.note(&sh.probs.conn, 1, || format!("connection {i}: {e}")),
                    Err(_) => sh.probs.note(&sh.probs.conn, 1, || format!("connection {i}: timed out")),
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let el = secs(t0.elapsed());
    let cpu = cpu.finish();
    let busy = spinner.as_ref().zip(mark).and_then(|(s, m)| s.busy_since(m));
    if let Some(s) = &spinner {
        s.stop();
    }
    let mut j = Json::obj();
    common_json(&mut j, "connrate", &t);
    j.str("path", &path);
    j.num("count", count as f64);
    j.num("concurrency", concurrency as f64);
    j.str("close", if close_frame { "frame" } else { "tcp" });
    j.num("completed", sh.ok.get() as f64);
    j.num("duration_s", (el * 1000.0).round() / 1000.0);
    j.num("conns_per_sec", (sh.ok.get() as f64 / el).round());
    hist_json(&mut j, "handshake", &sh.hs.borrow());
    hist_json(&mut j, "cycle", &sh.cycle.borrow());
    cpu_json(&mut j, cpu, busy, spinner.is_some());
    sh.probs.to_json(&mut j);
    let ok = sh.probs.total() == 0;
    Ok((j.finish(), ok))
}

// ------------------------------------------------------------- idle memory

pub async fn idle(a: &Args) -> Res {
    let t = Target::parse(&a.str("url", "ws://127.0.0.1:9001"))?;
    let path = a.opt_str("path").unwrap_or_else(|| t.path_or("/echo"));
    let conns: usize = a.num("conns", 10_000)?;
    let settle: f64 = a.num("settle", 2.0)?;
    let cc: usize = a.num("connect-concurrency", 200)?;
    let pid: u32 = a
        .opt_num("pid")?
        .ok_or_else(|| "idle needs --pid SERVER_PID to read its VmRSS".to_string())?;

    // Let the freshly started server settle, then take the baseline.
    tokio::time::sleep(Duration::from_secs_f64(settle.min(1.0))).await;
    let before = util::rss_kib(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?;
    let t0 = Instant::now();
    let cs = connect_many(&t, &path, conns, cc, 4096, false, 21).await?;
    let connect_s = secs(t0.elapsed());

    struct S {
        alive: Cell<u64>,
        echoed: Cell<u64>,
        probs: Problems,
        pat: Pattern,
        check: Notify,
    }
    let sh = Rc::new(S {
        alive: Cell::new(conns as u64),
        echoed: Cell::new(0),
        probs: Problems::default(),
        pat: Pattern::new(64),
        check: Notify::new(),
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    for (i, mut c) in cs.into_iter().enumerate() {
        let sh = sh.clone();
        let mut rx = rx.clone();
        spawn_local(async move {
            let id = i as u32;
            let r: Result<(), String> = async {
                let mut checking = false;
                loop {
                    tokio::select! {
                        r = c.fill() => {
                            match r {
                                Ok(0) => return Err("server closed an idle connection (EOF)".to_string()),
                                Ok(_) => {}
                                Err(e) => return Err(format!("read: {e}")),
                            }
                            while let Some(m) = c.next_msg()? {
                                match m {
                                    Msg::Ping { start, end } => c.push_pong(start, end),
                                    Msg::Pong => {}
                                    Msg::Close { .. } => return Err("server closed an idle connection".into()),
                                    Msg::Data { opcode, .. } | Msg::Assembled { opcode } => {
                                        if !checking {
                                            return Err("unexpected message on an idle connection".into());
                                        }
                                        util::check_echo(c.payload(&m), &sh.pat, id, 64)?;
                                        if opcode != OP_TEXT {
                                            return Err("echo changed the message type".into());
                                        }
                                        sh.echoed.set(sh.echoed.get() + 1);
                                        sh.check.notify_one();
                                        checking = false;
                                    }
                                }
                            }
                            c.flush().await.map_err(|e| e.to_string())?;
                        }
                        r = rx.changed(), if !checking => {
                            if r.is_err() { return Ok(()); }
                            // After the measurement: prove the connection is alive.
                            checking = true;
                            c.push_frame_with(OP_TEXT, 64, |d| util::fill_echo(d, &sh.pat, id, 0));
                            c.flush().await.map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            .await;
            if let Err(e) = r {
                sh.probs.note(&sh.probs.conn, 1, || format!("idle conn {i}: {e}"));
                sh.alive.set(sh.alive.get() - 1);
                sh.check.notify_one();
            }
        });
    }
    drop(rx);

    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let after = util::rss_kib(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?;
    let alive_at_measure = sh.alive.get();

    // Liveness check: one 64-byte echo per connection.
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while sh.echoed.get() < sh.alive.get() {
            sh.check.notified().await;
        }
    })
    .await;
    let echoed = sh.echoed.get();
    let alive = sh.alive.get();
    if echoed < alive {
        let missing = alive - echoed;
        sh.probs.note(&sh.probs.lost, missing, || format!("{missing} idle connections did not answer the liveness echo"));
    }

    let per = (after as f64 - before as f64) / conns as f64;
    let mut j = Json::obj();
    common_json(&mut j, "idle", &t);
    j.str("path", &path);
    j.num("conns", conns as f64);
    j.num("connect_s", (connect_s * 1000.0).round() / 1000.0);
    j.num("rss_before_kib", before as f64);
    j.num("rss_after_kib", after as f64);
    j.num("rss_per_conn_kib", (per * 1000.0).round() / 1000.0);
    j.num("alive", alive_at_measure as f64);
    j.num("echo_checked", echoed as f64);
    sh.probs.to_json(&mut j);
    let ok = sh.probs.total() == 0;
    Ok((j.finish(), ok))
}
