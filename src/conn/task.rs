//! A connection's task: reads and parses frames, writes what the outbox could not write at
//! once, sends heartbeats and runs the close handshake. It reports through `Event`s only and
//! never waits on JS: when the event queue is over budget it stops reading (TCP backpressure).
//! A quiet connection parks: its task ends and its socket leaves tokio's reactor, and whatever
//! needs it (the peer's data, a send or close from JS, a deadline) starts one again (see `park`).

use std::cell::RefCell;
use std::io;
use std::future::poll_fn;
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::socket::Io;
use super::timer::Tick;
use super::{tls, Conn, Outbox};
use crate::config::{CLOSE_TIMEOUT, LINGER_TIMEOUT};
use crate::event::{self, kind, CONNECTION_QUEUE_BUDGET};
use crate::hub::Hub;
use crate::protocol::close::{self, CloseError};
use crate::protocol::frame::{self, OP_CLOSE, OP_PING, OP_PONG};
use crate::protocol::reader::{Item, Reader};

/// Size of the per-thread read buffer. Connections own no read buffer while idle; input is
/// parsed straight out of this one, and only a partial message is copied out of it.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Payload of the engine's own heartbeat pings; pongs carrying it are not reported to JS.
const HEARTBEAT_PING: &[u8] = b"velocy-hb";
/// Reads per wake-up. One: every read then goes through the scheduler's budget, so a
/// connection that floods cannot keep its worker from the other connections for long.
const READS_PER_WAKE: usize = 1;
/// A connection that had nothing to do for this long gives up its task (see `park`).
const PARK_AFTER: Duration = Duration::from_secs(1);
/// A new connection is first looked at this long after its handshake: most clients send
/// something at once (subscribe, authenticate) or close; one that did neither parks.
const FIRST_LOOK: Duration = Duration::from_millis(50);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// The peer's close frame arrived: finish writing, then end with its code.
    PeerClosed(u16, Box<str>),
    /// We failed the connection with this code: finish writing the close frame, then end.
    Failed(u16, Box<str>),
    /// The socket is gone (EOF, reset, timeout, terminate).
    Lost,
}

struct Task {
    /// The socket's registration, which holds the connection.
    io: Io,
    hub: Arc<Hub>,
    reader: Reader,
    state: State,
    /// When the oldest ping the peer has not answered (with anything at all) was sent; None
    /// once it has sent something since our last ping. Silence is counted from here, so a
    /// peer is judged only after it was asked, whatever the interval and timeout.
    unanswered: Option<Tick>,
    heartbeat_expired: bool,
    /// Rate limit window: its start and the messages counted in it.
    window: (Tick, u64),
    /// The last read filled the buffer: more is waiting, and other connections get a turn
    /// before this one reads again.
    busy: bool,
    /// The close was reported (see `Drop`).
    ended: bool,
    /// The peer closed its side of the TCP connection (plain TCP): nothing is left to linger for.
    peer_closed_tcp: bool,
    /// Something was read or written since the look for quiet was armed (see `run`).
    active: bool,
    /// The parked connections' poller refused this socket: it keeps its task.
    park_refused: bool,
}

/// What a parked connection keeps of its loop: the rest is what a fresh loop starts with (an
/// open connection, no partial message, no unanswered ping, nothing queued). Its deadline stays
/// armed with the server's timers, which wake it like a peer's data or a send from JS does.
pub struct Parked {
    hub: Arc<Hub>,
    /// The next ping, which is also the deadline armed for it (see `run`: armed before parking).
    next_ping: Option<Tick>,
    interval: u64,
}

/// Starts a connection whose handshake completed, on the registration its handshake used:
/// `early` holds bytes read together with the handshake. The returned future runs it to its end.
pub fn start(io: Io, hub: Arc<Hub>, mut early: Vec<u8>) -> impl std::future::Future<Output = ()> + Send {
    hub.runtime.get_or_init(tokio::runtime::Handle::current);
    let interval = hub.config.heartbeat_interval_ms();
    let next_ping = hub.config.heartbeat_interval().map(Tick::after);
    let mut t = Task::new(io, hub);
    if !early.is_empty() {
        t.input(&mut early);
    }
    run(t, next_ping, None, interval, Some(Tick::after(FIRST_LOOK)))
}

/// Runs a parked connection's loop again, in a new task, once something wakes it.
pub(crate) fn unpark(conn: &Arc<Conn>) {
    let Some(p) = conn.parked.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    p.hub.parked.fetch_sub(1, Ordering::Relaxed);
    let Some(rt) = p.hub.runtime.get().cloned() else { return };
    // Should the runtime be shutting down, the task is dropped unrun and reports the close.
    drop(rt.spawn(resume(conn.clone(), p)));
}

/// A parked connection's loop, resumed: its socket is registered with the reactor again first.
async fn resume(conn: Arc<Conn>, p: Parked) {
    match Io::register(conn.clone()) {
        Ok(io) => run(Task::new(io, p.hub), p.next_ping, p.next_ping, p.interval, None).await,
        Err(_) => abandon(&conn, &p.hub, p.next_ping),
    }
}

/// Ends a connection whose socket the reactor refused (out of resources): a close frame 1011 if
/// the socket takes it, and its close reported. Its deadline, armed at `armed`, is disarmed.
fn abandon(conn: &Arc<Conn>, hub: &Hub, armed: Option<Tick>) {
    if let Some(at) = armed {
        hub.timers.disarm(conn.id, at);
    }
    conn.send(OP_CLOSE, &frame::close_payload(Some(close::INTERNAL_ERROR), b""));
    conn.outbox().kill();
    hub.events.push_close(conn.id, close::INTERNAL_ERROR, "");
}

/// Gives up the connection's task and its socket's registration with the reactor: its state
/// goes to `conn.parked`, a waker that spawns the loop again takes the task's place in the
/// connection's wake-up, and the socket waits with the parked connections (`parking`). An
/// idle connection then costs no task (tokio's cell: 512 bytes) and no registration (256).
/// `None` when this task must end (parked, or already resumed by another); the task back,
/// registered again, if something woke the connection meanwhile.
fn park(t: Task, state: Parked) -> Option<Task> {
    let conn = t.conn().clone();
    let hub = state.hub.clone();
    // The registration goes first: a task resumed by a wake-up registers the socket again, and
    // the reactor refuses a socket registered twice.
    t.hand_over();
    let armed = state.next_ping;
    hub.parked.fetch_add(1, Ordering::Relaxed);
    *conn.parked.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    let waker = parked_waker(&conn);
    let mut cx = Context::from_waker(&waker);
    // The poller is armed last; it reports data that came before it was armed too.
    let woken = conn.wake.poll(&mut cx).is_ready();
    let refused = !woken && !hub.parking.arm(&hub, &conn);
    if !woken && !refused {
        return None;
    }
    // Taken back unless a wake-up already resumed it in a new task.
    conn.parked.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    hub.parked.fetch_sub(1, Ordering::Relaxed);
    match Io::register(conn.clone()) {
        Ok(io) => {
            let mut t = Task::new(io, hub);
            t.park_refused = refused;
            Some(t)
        }
        Err(_) => {
            abandon(&conn, &hub, armed);
            None
        }
    }
}

/// A waker that resumes a parked connection. It holds the connection weakly: it is stored in
/// the connection itself, which it must not keep alive.
fn parked_waker(conn: &Arc<Conn>) -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);
    // SAFETY (all four): the data pointer comes from `Weak::into_raw` and each waker owns the
    // weak reference it points to, released exactly once (by `wake` or `drop_waker`).
    unsafe fn clone(p: *const ()) -> RawWaker {
        let weak = ManuallyDrop::new(unsafe { Weak::from_raw(p.cast::<Conn>()) });
        RawWaker::new(Weak::into_raw(Weak::clone(&weak)).cast(), &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        let weak = unsafe { Weak::from_raw(p.cast::<Conn>()) };
        if let Some(conn) = weak.upgrade() {
            unpark(&conn);
        }
    }
    unsafe fn wake_by_ref(p: *const ()) {
        let weak = ManuallyDrop::new(unsafe { Weak::from_raw(p.cast::<Conn>()) });
        if let Some(conn) = weak.upgrade() {
            unpark(&conn);
        }
    }
    unsafe fn drop_waker(p: *const ()) {
        drop(unsafe { Weak::from_raw(p.cast::<Conn>()) });
    }
    let raw = RawWaker::new(Weak::into_raw(Arc::downgrade(conn)).cast(), &VTABLE);
    // SAFETY: the vtable's functions keep the contract above.
    unsafe { Waker::from_raw(raw) }
}

/// The connection's loop. Its state is what an active connection costs, so it is kept small:
/// socket readiness and room in the event queue are polled (the wakers live in the socket's
/// registration and the queue), not awaited through futures that would carry waiters here.
/// An async block rather than an async fn: `t` is used where it was captured, where an async
/// fn's argument would be moved into a second copy (216 bytes more per connection).
/// `next_ping`, `armed` and `interval` are the loop's heartbeat state, `quiet_check` its first
/// look for quiet (see below).
#[allow(clippy::manual_async_fn)]
fn run(mut t: Task, mut next_ping: Option<Tick>, mut armed: Option<Tick>, mut interval: u64, mut quiet_check: Option<Tick>) -> impl std::future::Future<Output = ()> + Send {
    async move {
        // The wake-up below borrows the connection while `t` is mutated in the select's arms.
        let conn = t.conn().clone();
        // The loop's state is scoped to it, so that it is gone (not kept beside the linger's)
        // once the connection ends.
        {
            let mut close_deadline: Option<Tick> = None;
            let mut last_buffered = 0;
            // `interval`: the heartbeat interval (ms, 0: off) the deadlines were computed with.
            // `armed`: the deadline armed with the server's timers: a message costs nothing
            // there, only a deadline that changed is armed again.
            let mut space_round = 0;
            // Parking: a resumed connection parks as soon as it waits with nothing done since;
            // a new one when its first look finds it did nothing (many only ever listen); an
            // active one when a look a second later finds it was quiet since (`quiet_check`: a
            // timer per second while active, not a clock read per message; one per quiet spell
            // for a connection that sends now and then).
            let mut park_wanted = quiet_check.is_none();

            loop {
                event::turn();
                if conn.is_terminated() {
                    t.state = State::Lost;
                }
                if conn.take_timer_due() {
                    // The armed deadline passed (the timer forgot it).
                    armed = None;
                    let now = Tick::now();
                    let close_due = close_deadline.is_some_and(|d| d <= now);
                    // What the peer sent before a deadline counts even if this task had no turn
                    // to read it yet (a loaded machine): the socket is read once more first.
                    // The peer's close found that way ends the handshake normally, this turn.
                    let late_close = close_due && t.state == State::Closing && {
                        t.read_late();
                        matches!(t.state, State::PeerClosed(..))
                    };
                    let silent = |t: &Task| t.state == State::Open && t.answer_by(interval > 0).is_some_and(|d| d <= now);
                    if close_due && !late_close {
                        t.state = State::Lost;
                    } else if silent(&t) && {
                        t.read_late();
                        silent(&t)
                    } {
                        t.expire();
                    } else if t.state == State::Open && next_ping.is_some_and(|p| p <= now) {
                        next_ping = t.ping();
                    }
                    if quiet_check.is_some_and(|q| q <= now) {
                        if std::mem::take(&mut t.active) {
                            quiet_check = Some(now.plus(PARK_AFTER));
                        } else {
                            quiet_check = None;
                            park_wanted = true;
                        }
                    }
                }
                let hub = &*t.hub;
                // Heartbeat settings changed at run time (the bridge wakes every connection).
                if hub.config.heartbeat_interval_ms() != interval {
                    interval = hub.config.heartbeat_interval_ms();
                    next_ping = hub.config.heartbeat_interval().map(Tick::after);
                    t.unanswered = None;
                }
                let (buffered, closing, want_write) = {
                    let mut out = conn.outbox();
                    if out.take_drained() {
                        hub.events.push_record(kind::DRAIN, 0, 0, conn.id, &[]);
                    }
                    (out.buffered(), out.is_closing(), conn.wants_write(&out))
                };
                let over_limit = buffered > hub.config.max_backpressure();
                // While closing, frames queued before our close frame are still going out: the wait
                // for the peer's close starts over as long as they make progress, so none is cut off.
                if buffered < last_buffered {
                    if t.state == State::Closing {
                        close_deadline = Some(Tick::after(CLOSE_TIMEOUT));
                    }
                    // The peer is taking data: it is alive, even if we do not read its pongs while
                    // it is over the backpressure limit.
                    t.unanswered = None;
                }
                last_buffered = buffered;
                match t.state {
                    State::Open if closing => {
                        t.state = State::Closing;
                        // A peer that went silent will not answer our close either: give up sooner.
                        let wait = if t.heartbeat_expired { hub.config.heartbeat_interval().map_or(CLOSE_TIMEOUT, |i| i.min(CLOSE_TIMEOUT)) } else { CLOSE_TIMEOUT };
                        close_deadline = Some(Tick::after(wait));
                    }
                    State::PeerClosed(..) | State::Failed(..) if !want_write => break,
                    State::Lost => break,
                    _ => {}
                }
                let may_read = matches!(t.state, State::Open | State::Closing);
                // A peer whose queue is over the limit is not read from until it drains: whatever it
                // sends (pings, requests) would only add to what it does not take.
                let behind = conn.undelivered.load(Ordering::Acquire) > CONNECTION_QUEUE_BUDGET;
                let queue_full = hub.events.is_full();
                let read = may_read && !over_limit && !behind && !queue_full;
                let open = t.state == State::Open;
                // Quiet, and waiting only for the peer, JS or a heartbeat: the task is given up.
                if t.active {
                    park_wanted = false;
                    if open && quiet_check.is_none() {
                        // The look asks whether anything happened after this.
                        quiet_check = Some(Tick::after(PARK_AFTER));
                        t.active = false;
                    }
                } else if park_wanted && open && read && !want_write && !closing && t.parkable() {
                    // Whatever the peer sent is read first, whether or not the reactor has told
                    // yet (a resumed connection has just been registered): the poller it waits
                    // with would report it at once, and resume it only to park it again.
                    t.read(true);
                    if t.active || t.state != State::Open || !t.parkable() {
                        continue;
                    }
                    let hub = t.hub.clone();
                    rearm(&hub, &conn, &mut armed, next_ping);
                    match park(t, Parked { hub, next_ping, interval }) {
                        // The connection goes on without this task: nothing to report.
                        None => return,
                        // Woken meanwhile (or refused by the poller: then it keeps its task, see
                        // `parkable`): the turn starts over with what woke it, and parking
                        // waits for the next quiet look.
                        Some(back) => {
                            t = back;
                            park_wanted = false;
                            quiet_check = Some(Tick::after(PARK_AFTER));
                            continue;
                        }
                    }
                }
                // One deadline serves the close handshake, the next ping, the wait for an
                // answer and the look for quiet: the earliest, computed afresh each turn.
                let timer = [close_deadline, next_ping.filter(|_| open), t.answer_by(interval > 0).filter(|_| open), quiet_check.filter(|_| open)].into_iter().flatten().min();
                rearm(hub, &conn, &mut armed, timer);
                tokio::select! {
                    biased;
                    _ = poll_fn(|cx| conn.wake.poll(cx)) => {}
                    (readable, writable) = poll_fn(|cx| poll_ready(&t.io, cx, read, want_write)), if read || want_write => {
                        if writable {
                            t.active = true;
                            t.flush();
                        }
                        if readable {
                            t.read(false);
                        }
                    }
                    _ = poll_fn(|cx| hub.events.poll_space(cx, &mut space_round)), if may_read && queue_full && !over_limit && !behind => {}
                }
                if std::mem::take(&mut t.busy) {
                    tokio::task::yield_now().await;
                } else {
                    // Every turn counts against the scheduler's budget, whichever arm woke it, so a
                    // connection that always has input cannot keep its worker from the others.
                    tokio::task::consume_budget().await;
                }
            }
            if let Some(at) = armed {
                t.hub.timers.disarm(conn.id, at);
            }
        }

        let (code, reason) = match std::mem::replace(&mut t.state, State::Lost) {
            State::PeerClosed(code, reason) | State::Failed(code, reason) => (code, reason),
            _ => (close::ABNORMAL_CLOSURE, Box::default()),
        };
        t.ended = true;
        let terminated = conn.is_terminated();
        conn.outbox().kill();
        // The hub forgets the connection when JS takes this event (bridge::drain).
        t.hub.events.push_close(conn.id, code, &reason);
        // A peer that closed first has what we sent; closing the socket now sends our FIN
        // (nothing unread is left to turn it into a reset).
        if !terminated && !t.peer_closed_tcp {
            // Boxed: its state is allocated only by connections that are ending.
            Box::pin(linger(&t.io)).await;
        }
    }
}

/// Arms the connection's deadline with the server's timers if it changed.
fn rearm(hub: &Hub, conn: &Arc<Conn>, armed: &mut Option<Tick>, timer: Option<Tick>) {
    if timer != *armed {
        match (timer, *armed) {
            (Some(at), before) => hub.timers.arm(conn, at, before),
            (None, Some(before)) => hub.timers.disarm(conn.id, before),
            (None, None) => {}
        }
        *armed = timer;
    }
}

/// Which of the wanted directions the socket is ready for (closed and failed count as ready:
/// the read or write that follows finds out). Wakers are kept in the socket's registration.
fn poll_ready(io: &Io, cx: &mut Context<'_>, read: bool, write: bool) -> Poll<(bool, bool)> {
    let writable = write && io.poll_writable(cx);
    let readable = read && io.poll_readable(cx);
    if readable || writable {
        Poll::Ready((readable, writable))
    } else {
        Poll::Pending
    }
}

/// Should a connection's task unwind (or be dropped unfinished with the runtime), JS still
/// gets its close event.
impl Drop for Task {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.conn().outbox().kill();
        self.hub.events.push_close(self.conn().id, close::INTERNAL_ERROR, "");
    }
}

impl Task {
    fn new(io: Io, hub: Arc<Hub>) -> Self {
        Task { reader: Reader::new(hub.config.max_payload()), io, hub, state: State::Open, unanswered: None, heartbeat_expired: false, window: (Tick::now(), 0), busy: false, ended: false, peer_closed_tcp: false, active: false, park_refused: false }
    }

    fn conn(&self) -> &Arc<Conn> {
        self.io.conn()
    }

    /// The connection was parked (or resumed by another task): this one ends without closing it.
    fn hand_over(mut self) {
        self.ended = true;
    }

    /// Nothing in the task's own state keeps it from parking: no partial message, no ping
    /// waiting for its answer, no rate limit window running, no plaintext the TLS session
    /// decrypted and the task has not taken (its records to send show as `want_write`), and
    /// the parked connections' poller did not refuse the socket before.
    fn parkable(&self) -> bool {
        cfg!(target_os = "linux")
            && !self.park_refused
            && self.conn().tls().is_none_or(|tls| tls.wants_read())
            && !self.busy
            && self.unanswered.is_none()
            && self.reader.is_idle()
            && !self.conn().is_terminated()
            && self.hub.config.rate_limit().is_none_or(|(_, interval)| self.window.1 == 0 || Tick::now() >= self.window.0.plus(interval))
    }

    fn flush(&mut self) {
        let conn = self.io.conn();
        let mut out = conn.outbox();
        if conn.write_out(&mut out, Some(&self.io)).is_err() {
            self.state = State::Lost;
        }
    }

    /// Reads and acts on what the socket holds. `late`: at a deadline, straight from the socket
    /// whatever tokio's readiness says (see `read_late`).
    fn read(&mut self, late: bool) {
        if self.conn().tls.is_some() {
            return self.read_tls(late);
        }
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                let res = if late { self.conn().io.recv(&mut buf) } else { self.io.read(&mut buf) };
                match res {
                    Ok(0) => {
                        self.state = State::Lost;
                        self.peer_closed_tcp = true;
                        return;
                    }
                    Ok(n) => {
                        self.unanswered = None;
                        self.busy = n == buf.len();
                        self.input(&mut buf[..n]);
                        if !matches!(self.state, State::Open | State::Closing) || n < buf.len() || self.hub.events.is_full() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.state = State::Lost;
                        return;
                    }
                }
            }
        });
    }

    /// One read at a deadline, whatever tokio's readiness says (its event may not have been
    /// processed yet). Not when the loop would not read either: JS is behind on this
    /// connection's events or on all of them, or the peer is over the backpressure limit.
    fn read_late(&mut self) {
        let behind = self.conn().undelivered.load(Ordering::Acquire) > CONNECTION_QUEUE_BUDGET;
        if !(behind || self.hub.events.is_full() || self.conn().outbox().buffered() > self.hub.config.max_backpressure()) {
            self.read(true);
        }
    }

    /// `read` for a wss:// connection: records are decrypted into the per-thread buffer.
    fn read_tls(&mut self, late: bool) {
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                let res = {
                    let Some(mut tls) = self.io.conn().tls() else { return };
                    tls::read(&mut tls, &self.io, late, &mut buf)
                };
                // Handshake messages or alerts may need an answer.
                self.flush();
                let (n, closed) = match res {
                    Ok(tls::Input::Data(n)) => (n, false),
                    Ok(tls::Input::Closed(n)) => (n, true),
                    Ok(tls::Input::WouldBlock) => return,
                    Err(_) => {
                        self.state = State::Lost;
                        return;
                    }
                };
                if n > 0 {
                    self.unanswered = None;
                    self.busy = n == buf.len();
                    self.input(&mut buf[..n]);
                }
                if closed {
                    if matches!(self.state, State::Open | State::Closing) {
                        self.state = State::Lost;
                    }
                    return;
                }
                if !matches!(self.state, State::Open | State::Closing) || self.hub.events.is_full() {
                    return;
                }
            }
        });
    }

    /// Parses `data` and acts on what it holds.
    fn input(&mut self, data: &mut [u8]) {
        // Messages (and pings) this connection may still send in the current window.
        let mut budget = match self.hub.config.rate_limit() {
            None => u64::MAX,
            Some((max, interval)) => {
                let now = Tick::now();
                if now >= self.window.0.plus(interval) {
                    self.window = (now, 0);
                }
                max.saturating_sub(self.window.1)
            }
        };
        let budget_before = budget;
        let mut limited = false;
        let Task { io, hub, reader, state, .. } = self;
        let conn = io.conn();
        let id = conn.id;
        let deliver = *state == State::Open;
        let mut peer_close = None;
        let mut spend = |limited: &mut bool| {
            if budget == 0 {
                *limited = true;
                false
            } else {
                budget -= 1;
                true
            }
        };
        let mut pongs = false;
        // Anything but the answer to a heartbeat makes the connection active.
        let mut active = false;
        // Counted for the connection before JS can take it (bridge::drain subtracts it).
        let count = |weight: usize| {
            conn.undelivered.fetch_add(weight, Ordering::AcqRel);
        };
        let res = reader.feed(data, &mut |item| {
            active |= !matches!(item, Item::Pong(HEARTBEAT_PING));
            match item {
                Item::Text(_) | Item::Binary(_) | Item::Ping(_) if limited || !spend(&mut limited) => {}
                Item::Text(s) if deliver => {
                    count(event::message_weight(s.len()));
                    hub.events.push_text(id, s);
                }
                Item::Binary(b) if deliver => {
                    count(event::message_weight(b.len()));
                    hub.events.push_binary(id, b);
                }
                Item::Text(_) | Item::Binary(_) => {}
                Item::Ping(p) => {
                    // Answered at once, even between the fragments of a message (RFC 6455 §5.5.2):
                    // queued here and written when this input is processed, one write for all the
                    // pongs it held.
                    pongs |= conn.queue(OP_PONG, p);
                    if deliver && conn.ping_events.load(Ordering::Relaxed) {
                        count(event::record_len(p.len()));
                        hub.events.push_record(kind::PING, 0, 0, id, p);
                    }
                }
                Item::Pong(p) => {
                    if deliver && p != HEARTBEAT_PING {
                        count(event::record_len(p.len()));
                        hub.events.push_record(kind::PONG, 0, 0, id, p);
                    }
                }
                Item::Close(code, reason) => {
                    // Echo the peer's code (RFC 6455 §5.5.1) unless our close went out already.
                    conn.send(OP_CLOSE, &frame::close_payload(code, b""));
                    peer_close = Some((code.unwrap_or(close::NO_STATUS_RECEIVED), Box::from(reason)));
                }
            }
        });
        if budget_before != u64::MAX {
            self.window.1 += budget_before - budget;
        }
        self.active |= active;
        if pongs {
            self.flush();
        }
        let Task { io, state, .. } = self;
        let conn = io.conn();
        if let Some((code, reason)) = peer_close {
            *state = State::PeerClosed(code, reason);
        } else if let Err(CloseError { code, reason }) = res {
            conn.send(OP_CLOSE, &frame::close_payload(Some(code), reason.as_bytes()));
            *state = State::Failed(code, Box::from(reason));
        } else if limited && *state == State::Open {
            // Over the rate limit (documented): fail with 1008, nothing more is delivered.
            const REASON: &str = "Rate limit exceeded";
            conn.send(OP_CLOSE, &frame::close_payload(Some(close::POLICY_VIOLATION), REASON.as_bytes()));
            *state = State::Failed(close::POLICY_VIOLATION, Box::from(REASON));
        }
    }

    /// Pings the peer; returns when the next ping is due. The ping carries a marker so that
    /// its pong is recognised and not handed to JS: heartbeats cost JS nothing.
    fn ping(&mut self) -> Option<Tick> {
        let interval = self.hub.config.heartbeat_interval()?;
        let now = Tick::now();
        self.unanswered.get_or_insert(now);
        self.conn().send(OP_PING, HEARTBEAT_PING);
        Some(now.plus(interval))
    }

    /// When the peer must have answered our oldest unanswered ping, with heartbeats on.
    fn answer_by(&self, heartbeats: bool) -> Option<Tick> {
        self.unanswered.filter(|_| heartbeats).map(|s| s.plus(self.hub.config.heartbeat_timeout()))
    }

    /// Gives up on a peer that sent nothing for `heartbeatTimeout` after a ping.
    fn expire(&mut self) {
        self.heartbeat_expired = true;
        self.conn().send(OP_CLOSE, &frame::close_payload(Some(close::GOING_AWAY), b"Heartbeat timeout"));
    }

}

/// Half-closes the socket and reads until the peer closes too, so that our last frames are
/// not destroyed by a reset; bounded by `LINGER_TIMEOUT`.
async fn linger(io: &Io) {
    let conn = io.conn();
    if let Some(mut tls) = conn.tls() {
        // End the TLS session properly before the TCP half close (best effort).
        tls.send_close_notify();
        let mut out = Outbox::default();
        let _ = tls::flush(&mut tls, &mut out, &conn.io, Some(io));
    }
    let _ = conn.io.shutdown_write();
    let deadline = Instant::now() + LINGER_TIMEOUT;
    loop {
        event::turn();
        tokio::select! {
            r = io.readable() => {
                if r.is_err() || discard_input(io) {
                    return;
                }
            }
            _ = sleep_until(deadline) => return,
        }
    }
}

/// Reads and drops what is readable; true once the peer has closed or the socket failed.
fn discard_input(io: &Io) -> bool {
    SCRATCH.with(|scratch| loop {
        match io.read(&mut scratch.borrow_mut()) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    })
}
