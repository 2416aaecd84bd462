#!/usr/bin/env node
'use strict';
// velocy benchmark orchestrator — `npm run bench` (never part of `npm test`).
//
//   node bench/run.js [--rounds N] [--only echo,fanout,connrate,idle]
//                     [--impls velocy,uws,ws,velocy-original] [--quick]
//                     [--duration S] [--warmup S] [--no-install] [--no-build]
//
// For every round, scenario and implementation: start the server pinned to
// CPU 0, wait for "READY <port>", run the Rust load generator pinned to
// CPU 1, collect its JSON line, kill the server. Medians, min–max spread
// and ratios versus uWebSockets.js (computed per round, then the median)
// go to bench/results/latest.md and latest.json.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const BENCH = __dirname;
const ROOT = path.resolve(BENCH, '..');
const LOADGEN_DIR = path.join(BENCH, 'loadgen');
const LOADGEN_BIN = path.join(LOADGEN_DIR, 'target', 'release', 'loadgen');
const RESULTS = path.join(BENCH, 'results');

const SERVER_CPU = 0;
const LOADGEN_CPU = 1;
const BASELINE = 'uws';

const IMPLS = {
  uws: { label: 'uWebSockets.js', script: 'uws.js' },
  velocy: { label: 'velocy', script: 'velocy.js' },
  ws: { label: 'ws', script: 'ws.js' },
  'velocy-original': { label: 'velocy 0.3.0 (JS)', script: 'velocy-original.js' },
};
// Column order of the report: the baseline first.
const IMPL_ORDER = ['uws', 'velocy', 'ws', 'velocy-original'];

// Raise the descriptor limit as far as allowed (10,000 connections on each
// side need more than the usual 1024).
const ULIMIT = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null';

// ------------------------------------------------------------------ options

function usage() {
  return `usage: node bench/run.js [options]
  --rounds N          rounds (default 3; 1 with --quick)
  --only LIST         scenario groups or case ids: echo,fanout,connrate,idle
                      (cases: echo-1,echo-16,fanout-1000x1,fanout-1000x8,
                       fanout-5000x1,fanout-5000x8,connrate,idle)
  --impls LIST        ${IMPL_ORDER.join(',')} (default: all)
  --quick             smoke run: 1 round, short durations, fewer connections
  --duration S        measured seconds per throughput run (default 5; 1.5 quick)
  --warmup S          warm-up seconds before measuring (default 1; 0.5 quick)
  --no-install        do not run npm install for bench dependencies
  --no-build          do not (re)build the load generator
  --max-other P       a run during which other processes used more than P %
                      of a core is repeated (default 25)
  --retries N         at most N repeats of such a run (default 2); repeats
                      stop once the time budget is used up
  --budget MIN        time budget for repeats, minutes (default 13; 4 quick)
  --help`;
}

function parseArgs(argv) {
  const o = {
    rounds: null, only: null, impls: null, quick: false,
    duration: null, warmup: null, install: true, build: true,
    maxOther: 25, retries: 2, budget: null,
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v = null;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const val = () => {
      if (v !== null) return v;
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--rounds': o.rounds = posInt(val(), a); break;
      case '--only': o.only = list(val()); break;
      case '--impls': o.impls = list(val()); break;
      case '--quick': o.quick = true; break;
      case '--duration': o.duration = posNum(val(), a); break;
      case '--warmup': o.warmup = nonNeg(val(), a); break;
      case '--no-install': o.install = false; break;
      case '--no-build': o.build = false; break;
      case '--max-other': o.maxOther = nonNeg(val(), a); break;
      case '--retries': o.retries = nonNegInt(val(), a); break;
      case '--budget': o.budget = posNum(val(), a); break;
      case '-h': case '--help': console.log(usage()); process.exit(0); break;
      default: throw new Error(`unknown option ${a}\n${usage()}`);
    }
  }
  if (o.rounds === null) o.rounds = o.quick ? 1 : 3;
  if (o.duration === null) o.duration = o.quick ? 1.5 : 5;
  if (o.warmup === null) o.warmup = o.quick ? 0.5 : 1;
  if (o.budget === null) o.budget = o.quick ? 4 : 13;
  return o;
}
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
function posInt(s, n) { const v = Number(s); if (!Number.isInteger(v) || v < 1) throw new Error(`${n}: expected a positive integer`); return v; }
function posNum(s, n) { const v = Number(s); if (!(v > 0)) throw new Error(`${n}: expected a positive number`); return v; }
function nonNegInt(s, n) { const v = Number(s); if (!Number.isInteger(v) || v < 0) throw new Error(`${n}: expected an integer >= 0`); return v; }
function nonNeg(s, n) { const v = Number(s); if (!(v >= 0)) throw new Error(`${n}: expected a number >= 0`); return v; }

// ---------------------------------------------------------------- scenarios

function buildCases(o) {
  const d = String(o.duration);
  const w = String(o.warmup);
  const handshakes = o.quick ? 3000 : 10000;
  const idleConns = o.quick ? 3000 : 10000;
  const rate = { fmt: 'rate', better: 'higher' };
  const us = { fmt: 'us', better: 'lower' };
  const echo = (k) => ({
    id: `echo-${k}`,
    group: 'echo',
    title: `echo · 100 conns × ${k} in flight · 64 B`,
    args: ['echo', '--conns', '100', '--inflight', String(k), '--size', '64', '--duration', d, '--warmup', w],
    timeoutS: o.duration + o.warmup + 60,
    metrics: [
      { key: 'rtt_per_sec', label: 'round trips/s', ...rate },
      { key: 'lat_p50_us', label: 'p50 latency', ...us },
      { key: 'lat_p99_us', label: 'p99 latency', ...us },
    ],
  });
  const fan = (n, k) => ({
    id: `fanout-${n}x${k}`,
    group: 'fanout',
    title: `fan-out · ${n.toLocaleString('en-US')} subscribers × ${k} in flight · 1 KiB`,
    args: ['fanout', '--conns', String(n), '--inflight', String(k), '--size', '1024', '--duration', d, '--warmup', w],
    timeoutS: o.duration + o.warmup + 120,
    metrics: [
      { key: 'deliveries_per_sec', label: 'deliveries/s', ...rate },
      { key: 'lat_p99_us', label: 'p99 delivery latency', ...us },
    ],
  });
  return [
    echo(1),
    echo(16),
    fan(1000, 1),
    fan(1000, 8),
    fan(5000, 1),
    fan(5000, 8),
    {
      id: 'connrate',
      group: 'connrate',
      title: `connection rate · ${handshakes.toLocaleString('en-US')} handshakes, 64 at a time`,
      args: ['connrate', '--count', String(handshakes), '--concurrency', '64'],
      timeoutS: 180,
      metrics: [
        { key: 'conns_per_sec', label: 'connections/s', ...rate },
        { key: 'handshake_p99_us', label: 'p99 handshake', ...us },
      ],
    },
    {
      id: 'idle',
      group: 'idle',
      title: `idle memory · ${idleConns.toLocaleString('en-US')} connections`,
      args: ['idle', '--conns', String(idleConns), '--settle', '2'],
      timeoutS: 180,
      noiseSensitive: false,
      metrics: [{ key: 'rss_per_conn_kib', label: 'server RSS per connection', fmt: 'kib', better: 'lower' }],
    },
  ];
}

// ------------------------------------------------------------------ helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
const log = (...a) => console.log(...a);

function have(cmd) {
  return spawnSync('/bin/sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

let PIN = false;
const pin = (cpu) => (PIN ? `taskset -c ${cpu} ` : '');

function clkTck() {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const v = Number((r.stdout || '').trim());
  return v > 0 ? v : 100;
}
const CLK_TCK = clkTck();

/**
 * Busy ticks over all CPUs: user, nice, system, irq, softirq, and steal (time
 * the hypervisor gave to someone else — noise just like a local process),
 * minus the kernel's softirq threads, which mostly carry our own loopback
 * traffic.
 */
function hostBusyTicks() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).map(Number);
    // cpu user nice system idle iowait irq softirq steal ...
    const busy = f[1] + f[2] + f[3] + f[6] + f[7] + (f[8] || 0);
    let ksoftirqd = 0;
    for (const pid of KSOFTIRQD) ksoftirqd += procTicks(pid) || 0;
    return busy - ksoftirqd;
  } catch { return null; }
}

const KSOFTIRQD = (() => {
  const pids = [];
  try {
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('ksoftirqd/')) pids.push(Number(d));
      } catch { /* gone */ }
    }
  } catch { /* no /proc */ }
  return pids;
})();

function procTicks(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch { return null; }
}

function freePort(start) {
  return new Promise((resolve, reject) => {
    const tryPort = (p) => {
      if (p > 31999) return reject(new Error('no free port in 20000–31999'));
      const s = net.createServer();
      s.once('error', () => tryPort(p + 1));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(p)));
    };
    tryPort(start);
  });
}

let nextPort = 20000 + (process.pid % 2000) * 5;
let currentServer = null;

function startServer(impl, port) {
  const script = path.join(BENCH, 'servers', IMPLS[impl].script);
  const cmd = `${ULIMIT}; exec ${pin(SERVER_CPU)}${shq(process.execPath)} ${shq(script)} ${port}`;
  const child = spawn('/bin/sh', ['-c', cmd], {
    cwd: BENCH,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PORT: String(port), NODE_ENV: 'production' },
  });
  currentServer = child;
  let stderr = '';
  let exited = null;
  child.stderr.on('data', (b) => { stderr = (stderr + b).slice(-4000); });
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  const ready = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no READY within 30 s; stderr: ${stderr.trim()}`)), 30000);
    child.stdout.on('data', (b) => {
      out += b;
      const m = /READY (\d+)/.exec(out);
      if (m) { clearTimeout(timer); out = ''; resolve(Number(m[1])); }
      if (out.length > 65536) out = out.slice(-1024);
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`server exited before READY (code ${code}${sig ? `, ${sig}` : ''}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
  return { child, ready, stderr: () => stderr, exited: () => exited };
}

async function stopServer(srv) {
  const { child } = srv;
  if (srv.exited()) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => { if (!srv.exited()) child.kill('SIGKILL'); }, 3000);
  await gone;
  clearTimeout(t);
  currentServer = null;
}

function runLoadgen(args, timeoutS) {
  return new Promise((resolve) => {
    const cmd = `${ULIMIT}; exec ${pin(LOADGEN_CPU)}${shq(LOADGEN_BIN)} ${args.map(shq).join(' ')}`;
    const child = spawn('/bin/sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => { out += b; });
    child.stderr.on('data', (b) => { err = (err + b).slice(-4000); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, timeoutS * 1000);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      let json = null;
      try { json = line ? JSON.parse(line) : null; } catch { json = null; }
      if (!json) {
        json = { fatal: sig ? `load generator killed (${sig}, timeout ${timeoutS} s)` : `load generator exited ${code} without a result: ${err.trim()}`, ok: false };
      }
      resolve(json);
    });
  });
}

/** One server start + load generator run; returns the run record. */
async function runOnce(c, impl, round) {
  const port = await freePort(nextPort);
  nextPort = port + 1 > 31000 ? 20000 : port + 1;
  const rec = { round, impl, case: c.id, port };
  const srv = startServer(impl, port);
  try {
    await srv.ready;
    const pid = srv.child.pid;
    const busy0 = hostBusyTicks();
    const srv0 = procTicks(pid);
    const w0 = Date.now();
    const result = await runLoadgen([...c.args, '--url', `ws://127.0.0.1:${port}`, '--pid', String(pid)], c.timeoutS);
    const wall = (Date.now() - w0) / 1000;
    const busy1 = hostBusyTicks();
    const srv1 = procTicks(pid);
    // CPU used by everything that is neither the server nor the load
    // generator, in % of one core, over the load generator's lifetime.
    if (busy0 !== null && busy1 !== null && srv0 !== null && srv1 !== null && typeof result.loadgen_cpu_s === 'number') {
      const other = (busy1 - busy0) / CLK_TCK - (srv1 - srv0) / CLK_TCK - result.loadgen_cpu_s;
      rec.foreign_cpu_pct = Math.max(0, Math.round((other / wall) * 1000) / 10);
    }
    if (srv.exited()) {
      result.ok = false;
      result.fatal = `${result.fatal ? `${result.fatal}; ` : ''}server died during the run: ${srv.stderr().trim().split('\n').slice(-3).join(' | ')}`;
    }
    rec.result = result;
  } catch (err) {
    rec.result = { ok: false, fatal: err.message };
  } finally {
    await stopServer(srv);
  }
  return rec;
}

/** Is there time for one more run, given the average so far? */
function withinBudget(o, t0, done, total) {
  const elapsed = Date.now() - t0;
  const perRun = elapsed / Math.max(1, done);
  return elapsed + perRun * (total - done + 1) < o.budget * 60000;
}

/** Wait (at most maxMs) until other processes use < 10 % of a core for 1 s. */
async function waitQuiet(maxMs) {
  const until = Date.now() + maxMs;
  while (Date.now() < until) {
    const a = hostBusyTicks();
    await sleep(1000);
    const b = hostBusyTicks();
    if (a === null || b === null || (b - a) / CLK_TCK < 0.1) return;
  }
}

// Only one benchmark at a time on this machine: two runs pinned to the
// same cores would measure each other.
const LOCK = path.join(os.tmpdir(), 'velocy-bench.lock');
let lockHeld = false;

async function acquireLock() {
  let announced = false;
  for (;;) {
    try {
      fs.writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      lockHeld = true;
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try { holder = Number(fs.readFileSync(LOCK, 'utf8').trim()); } catch { /* vanished */ }
    let alive = false;
    if (Number.isInteger(holder) && holder > 0) {
      try { process.kill(holder, 0); alive = true; } catch (e) { alive = e.code === 'EPERM'; }
    }
    if (!alive) {
      try { fs.unlinkSync(LOCK); } catch { /* someone else removed it */ }
      continue;
    }
    if (!announced) {
      log(`» another benchmark run (pid ${holder}) is using the machine; waiting for it to finish …`);
      announced = true;
    }
    await sleep(2000);
  }
}

function releaseLock() {
  if (!lockHeld) return;
  try {
    if (fs.readFileSync(LOCK, 'utf8').trim() === String(process.pid)) fs.unlinkSync(LOCK);
  } catch { /* already gone */ }
  lockHeld = false;
}

// -------------------------------------------------------------- formatting

function fmtValue(v, fmt) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  switch (fmt) {
    case 'rate':
      if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
      if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e5 ? 0 : 1)}k`;
      return v.toFixed(0);
    case 'us':
      if (v >= 1e6) return `${(v / 1e6).toFixed(2)} s`;
      if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e4 ? 1 : 2)} ms`;
      return `${v.toFixed(0)} µs`;
    case 'kib':
      return `${v.toFixed(2)} KiB`;
    default:
      return String(v);
  }
}

function fmtSpread(lo, hi, fmt) {
  if (lo === hi) return '';
  const a = fmtValue(lo, fmt);
  const b = fmtValue(hi, fmt);
  // "1.20 ms–1.31 ms" → "1.20–1.31 ms"
  const ua = a.split(' ');
  const ub = b.split(' ');
  if (ua.length === 2 && ub.length === 2 && ua[1] === ub[1]) return ` (${ua[0]}–${ub[0]} ${ua[1]})`;
  return ` (${a}–${b})`;
}

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  const n = s.length;
  if (!n) return null;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// ---------------------------------------------------------------- summary

function summarise(cases, impls, runs, rounds) {
  const out = [];
  for (const c of cases) {
    const sc = { id: c.id, title: c.title, metrics: [] };
    for (const m of c.metrics) {
      const row = { key: m.key, label: m.label, better: m.better, fmt: m.fmt, impls: {} };
      for (const impl of impls) {
        const rs = (runs[c.id] && runs[c.id][impl]) || [];
        const vals = rs.filter((r) => r.result && r.result.ok && typeof r.result[m.key] === 'number').map((r) => r.result[m.key]);
        const all = rs.filter((r) => r.result && typeof r.result[m.key] === 'number').map((r) => r.result[m.key]);
        const ratios = [];
        for (let round = 1; round <= rounds; round++) {
          const mine = rs.find((r) => r.round === round);
          const base = ((runs[c.id] && runs[c.id][BASELINE]) || []).find((r) => r.round === round);
          const a = mine && mine.result && mine.result.ok ? mine.result[m.key] : null;
          const b = base && base.result && base.result.ok ? base.result[m.key] : null;
          if (typeof a === 'number' && typeof b === 'number' && b > 0) ratios.push(a / b);
        }
        row.impls[impl] = {
          median: median(vals),
          min: vals.length ? Math.min(...vals) : null,
          max: vals.length ? Math.max(...vals) : null,
          n: vals.length,
          failed: rs.length - vals.length,
          // figures from runs with problems, kept for diagnosis only
          unverified: all.length > vals.length ? all : undefined,
          ratio_vs_uws: ratios.length ? median(ratios) : null,
          values: vals,
        };
      }
      sc.metrics.push(row);
    }
    out.push(sc);
  }
  return out;
}

function markdown(meta, summary, impls, runs, cases) {
  const L = [];
  L.push(`# velocy WebSocket benchmark`);
  L.push('');
  L.push(`${meta.date} · ${meta.cpu} (${meta.cores} cores) · Node ${meta.node} · ${meta.rounds} round(s)${meta.quick ? ' · **quick mode**' : ''} · server on CPU ${SERVER_CPU}, load generator on CPU ${LOADGEN_CPU}${meta.pinned ? '' : ' (**not pinned: taskset missing**)'}`);
  L.push('');
  L.push('Each cell: median (min–max over rounds) · ratio to uWebSockets.js measured in the same round (median of the per-round ratios). ↑ higher is better, ↓ lower is better; a ratio above 1× means a larger figure than uWebSockets.js.');
  L.push('');
  const cols = impls.map((i) => IMPLS[i].label);
  L.push(`| Scenario | Metric | ${cols.join(' | ')} |`);
  L.push(`|---|---|${impls.map(() => '---:').join('|')}|`);
  for (const sc of summary) {
    sc.metrics.forEach((m, idx) => {
      const cells = impls.map((impl) => {
        const s = m.impls[impl];
        if (!s || s.median === null) return s && s.failed ? 'failed' : '–';
        let cell = `${fmtValue(s.median, m.fmt)}${fmtSpread(s.min, s.max, m.fmt)}`;
        if (impl !== BASELINE && s.ratio_vs_uws !== null) cell += ` · ${s.ratio_vs_uws.toFixed(2)}×`;
        if (s.failed) cell += ` ⚠${s.failed} failed`;
        return cell;
      });
      const arrow = m.better === 'higher' ? '↑' : '↓';
      L.push(`| ${idx === 0 ? sc.title : ''} | ${m.label} ${arrow} | ${cells.join(' | ')} |`);
    });
  }
  L.push('');

  // Diagnostics: CPU use shows whether the server core was saturated and
  // whether the load generator kept up; "other" is load from processes
  // that are not part of the benchmark.
  L.push('<details><summary>Diagnostics (median CPU % of one core during the measured window: server / load generator / other processes; then the server\'s CPU time per operation, steadier than throughput on a shared machine)</summary>');
  L.push('');
  L.push(`| Scenario | ${cols.join(' | ')} |`);
  L.push(`|---|${impls.map(() => '---:').join('|')}|`);
  for (const c of cases) {
    const cells = impls.map((impl) => {
      const rs = ((runs[c.id] && runs[c.id][impl]) || []).filter((r) => r.result);
      const pick = (k) => median(rs.map((r) => r.result[k]).filter((v) => typeof v === 'number'));
      const f = (v) => (v === null ? '–' : `${Math.round(v)}`);
      // Server CPU per operation (round trip, delivery, connection): CPU share over rate.
      const rateKey = c.metrics[0].fmt === 'rate' ? c.metrics[0].key : null;
      const perOp = rateKey === null ? null : median(rs.map((r) => r.result).filter((j) => typeof j.server_cpu_pct === 'number' && j[rateKey] > 0).map((j) => (j.server_cpu_pct / 100) * 1e6 / j[rateKey]));
      const cpuPerOp = perOp === null ? '' : ` · ${perOp < 10 ? perOp.toFixed(2) : perOp.toFixed(1)} µs/op`;
      return `${f(pick('server_cpu_pct'))} / ${f(pick('loadgen_busy_pct'))} / ${f(median(rs.map((r) => r.foreign_cpu_pct).filter((v) => typeof v === 'number')))}${cpuPerOp}`;
    });
    L.push(`| ${c.id} | ${cells.join(' | ')} |`);
  }
  L.push('');
  L.push('</details>');
  L.push('');

  const problems = [];
  for (const c of cases) {
    for (const impl of impls) {
      for (const r of (runs[c.id] && runs[c.id][impl]) || []) {
        const j = r.result || {};
        if (j.ok) continue;
        const why = j.fatal || (j.errors ? `verify ${j.errors.verify}, lost ${j.errors.lost}, reordered ${j.errors.reordered}, connection ${j.errors.connection}; ${(j.errors.samples || []).slice(0, 3).join(' | ')}` : 'no result');
        problems.push(`- round ${r.round}, ${c.id}, ${IMPLS[impl].label}: ${why}`);
      }
    }
  }
  L.push('### Verification');
  L.push('');
  if (problems.length) {
    L.push('Runs with loss, reordering, corrupted payloads or failures (their figures are excluded above):');
    L.push('');
    L.push(...problems);
  } else {
    L.push('Every payload was verified: all echoes matched what was sent (content and text/binary type), every subscriber received every sequence number in order, no connection failed.');
  }
  if (meta.skipped.length) {
    L.push('');
    L.push('### Skipped');
    L.push('');
    for (const s of meta.skipped) L.push(`- ${IMPLS[s.impl] ? IMPLS[s.impl].label : s.impl}: ${s.reason}`);
  }
  if (meta.warnings.length) {
    L.push('');
    L.push('### Warnings');
    L.push('');
    for (const w of meta.warnings) L.push(`- ${w}`);
  }
  L.push('');
  return L.join('\n');
}

// --------------------------------------------------------------------- main

function ensureDeps(o) {
  const need = ['ws', 'uws-pack', 'velocy-original'];
  const missing = need.filter((n) => !fs.existsSync(path.join(BENCH, 'node_modules', n, 'package.json')));
  if (!missing.length) return;
  if (!o.install) throw new Error(`bench dependencies missing (${missing.join(', ')}); run: npm install --prefix bench`);
  log(`» installing bench dependencies (${missing.join(', ')}) …`);
  const r = spawnSync('npm', ['install', '--prefix', BENCH, '--no-audit', '--no-fund'], { stdio: 'inherit', cwd: BENCH });
  if (r.status !== 0) throw new Error('npm install --prefix bench failed');
}

function buildLoadgen(o) {
  if (!o.build) {
    if (!fs.existsSync(LOADGEN_BIN)) throw new Error(`${LOADGEN_BIN} missing; drop --no-build`);
    return;
  }
  log('» building the load generator (cargo build --release) …');
  const r = spawnSync('cargo', [
    'build', '--release', '--quiet',
    '--manifest-path', path.join(LOADGEN_DIR, 'Cargo.toml'),
    '--target-dir', path.join(LOADGEN_DIR, 'target'),
  ], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('building bench/loadgen failed');
}

/** Which implementations can run here; returns { ok: [...], skipped: [{impl, reason}] } */
function checkImpls(wanted) {
  const ok = [];
  const skipped = [];
  for (const impl of wanted) {
    let probe;
    if (impl === 'velocy') {
      probe = `const v = require(${JSON.stringify(ROOT)}); if (typeof v.Router !== 'function' || typeof v.createServer !== 'function') { console.error('the package does not export Router and createServer'); process.exit(3); }`;
    } else if (impl === 'uws') {
      probe = `import('uws-pack').then(() => {}, (e) => { console.error(e.message.split('\\n')[0]); process.exit(3); })`;
    } else {
      const mod = impl === 'ws' ? 'ws' : 'velocy-original';
      probe = `require(${JSON.stringify(mod)})`;
    }
    const r = spawnSync(process.execPath, ['-e', probe], { cwd: BENCH, encoding: 'utf8', timeout: 60000 });
    if (r.status === 0) ok.push(impl);
    else {
      const msg = ((r.stderr || '').split('\n').find((l) => /Error|error|Cannot|not/.test(l)) || (r.stderr || '').trim().split('\n')[0] || `exit ${r.status}`).trim();
      const reason = impl === 'velocy'
        ? `skipped — the package at the repository root does not load yet (build the addon first): ${msg}`
        : `skipped — cannot load: ${msg}`;
      skipped.push({ impl, reason });
    }
  }
  return { ok, skipped };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (process.platform !== 'linux') throw new Error('the benchmark needs Linux (/proc, taskset)');
  const cases = buildCases(o).filter((c) => !o.only || o.only.includes(c.group) || o.only.includes(c.id));
  if (!cases.length) throw new Error(`--only matched no scenario\n${usage()}`);
  const wanted = (o.impls || IMPL_ORDER).map((i) => {
    if (!IMPLS[i]) throw new Error(`unknown implementation ${i} (known: ${IMPL_ORDER.join(', ')})`);
    return i;
  });

  const warnings = [];
  PIN = have('taskset') && os.cpus().length >= 2;
  if (!PIN) warnings.push('taskset unavailable or fewer than 2 CPUs: processes were not pinned; figures are not per-core.');

  ensureDeps(o);
  buildLoadgen(o);
  const { ok: impls0, skipped } = checkImpls(wanted);
  for (const s of skipped) log(`» ${IMPLS[s.impl].label}: ${s.reason}`);
  const impls = IMPL_ORDER.filter((i) => impls0.includes(i));
  if (!impls.length) throw new Error('no implementation can run');
  if (!impls.includes(BASELINE)) warnings.push('uWebSockets.js is not part of this run, so no ratios are reported.');

  const meta = {
    date: new Date().toISOString(),
    cpu: (os.cpus()[0] && os.cpus()[0].model) || 'unknown CPU',
    cores: os.cpus().length,
    node: process.version,
    kernel: os.release(),
    rounds: o.rounds,
    quick: o.quick,
    duration_s: o.duration,
    warmup_s: o.warmup,
    pinned: PIN,
    max_other_pct: o.maxOther,
    retries: o.retries,
    server_cpu: SERVER_CPU,
    loadgen_cpu: LOADGEN_CPU,
    implementations: impls,
    skipped,
    warnings,
  };

  await acquireLock();
  const runs = {};
  const total = o.rounds * cases.length * impls.length;
  let done = 0;
  const t0 = Date.now();
  log(`» ${total} runs: ${o.rounds} round(s) × ${cases.length} scenario(s) × ${impls.length} implementation(s) [${impls.join(', ')}]`);
  for (let round = 1; round <= o.rounds; round++) {
    for (const c of cases) {
      // Rotate the order every round so no implementation always runs
      // first (or right after the heaviest one).
      const order = impls.map((_, i) => impls[(i + round - 1) % impls.length]);
      for (const impl of order) {
        done++;
        let rec = await runOnce(c, impl, round);
        // A run disturbed by other processes is repeated (after waiting a
        // little for the machine to calm down) while the budget allows;
        // the least disturbed attempt is kept.
        let attempts = 1;
        while (
          c.noiseSensitive !== false && attempts <= o.retries &&
          rec.result && typeof rec.foreign_cpu_pct === 'number' && rec.foreign_cpu_pct > o.maxOther &&
          withinBudget(o, t0, done, total)
        ) {
          log(`${progressLine(done, total, round, c, impl, rec, t0)}  ↻ other processes used ${Math.round(rec.foreign_cpu_pct)}% of a core — repeating`);
          await waitQuiet(10000);
          const again = await runOnce(c, impl, round);
          attempts++;
          if (!(again.result && again.result.ok) && rec.result && rec.result.ok) {
            log(`${progressLine(done, total, round, c, impl, again, t0)}  (repeat failed; keeping the first result)`);
            continue;
          }
          if (typeof again.foreign_cpu_pct !== 'number' || again.foreign_cpu_pct < rec.foreign_cpu_pct ||
              (!(rec.result && rec.result.ok) && again.result && again.result.ok)) rec = again;
        }
        rec.attempts = attempts;
        ((runs[c.id] = runs[c.id] || {})[impl] = runs[c.id][impl] || []).push(rec);
        log(progressLine(done, total, round, c, impl, rec, t0));
        await sleep(300);
      }
    }
  }

  const summary = summarise(cases, impls, runs, o.rounds);
  const noisy = [];
  let repeated = 0;
  for (const c of cases) {
    for (const impl of impls) {
      for (const r of (runs[c.id] && runs[c.id][impl]) || []) {
        if (r.attempts > 1) repeated += r.attempts - 1;
        if (c.noiseSensitive !== false && typeof r.foreign_cpu_pct === 'number' && r.foreign_cpu_pct > o.maxOther) {
          noisy.push(`${c.id}/${impl}/r${r.round} (${Math.round(r.foreign_cpu_pct)}%)`);
        }
      }
    }
  }
  if (repeated) warnings.push(`${repeated} run(s) were repeated because other processes used more than ${o.maxOther}% of a core.`);
  if (noisy.length) {
    warnings.push(`${noisy.length} run(s) still had other processes using more than ${o.maxOther}% of a core (the machine was busy; compare ratios rather than absolute figures): ${noisy.join(', ')}.`);
  }
  const md = markdown(meta, summary, impls, runs, cases);
  fs.mkdirSync(RESULTS, { recursive: true });
  const json = `${JSON.stringify({ meta, summary, runs }, null, 2)}\n`;
  // latest.* plus a timestamped copy, so earlier runs stay around.
  const stamp = meta.date.replace(/[:.]/g, '-');
  for (const base of ['latest', `run-${stamp}`]) {
    fs.writeFileSync(path.join(RESULTS, `${base}.md`), md);
    fs.writeFileSync(path.join(RESULTS, `${base}.json`), json);
  }
  log('');
  log(md);
  log(`» wrote ${path.relative(process.cwd(), path.join(RESULTS, 'latest.md'))} and latest.json (${Math.round((Date.now() - t0) / 1000)} s)`);
  releaseLock();
  const bad = Object.values(runs).some((byImpl) => Object.values(byImpl).some((rs) => rs.some((r) => !r.result || !r.result.ok)));
  process.exitCode = bad ? 1 : 0;
}

function progressLine(done, total, round, c, impl, rec, t0) {
  const j = rec.result || {};
  const head = `[${String(done).padStart(String(total).length)}/${total} r${round} ${Math.round((Date.now() - t0) / 1000)}s] ${c.id.padEnd(14)} ${IMPLS[impl].label.padEnd(18)}`;
  if (!j.ok && j.fatal) return `${head} FAILED: ${j.fatal}`;
  const parts = c.metrics.map((m) => `${m.label} ${fmtValue(j[m.key], m.fmt)}`);
  const cpu = typeof j.server_cpu_pct === 'number' ? ` [srv ${Math.round(j.server_cpu_pct)}% lg ${Math.round(j.loadgen_busy_pct)}%${typeof rec.foreign_cpu_pct === 'number' ? ` other ${Math.round(rec.foreign_cpu_pct)}%` : ''}]` : '';
  const bad = j.ok ? '' : ` PROBLEMS: ${JSON.stringify(j.errors || {})}`;
  return `${head} ${parts.join(', ')}${cpu}${bad}`;
}

function cleanup() {
  if (currentServer && currentServer.exitCode === null) {
    try { currentServer.kill('SIGKILL'); } catch { /* already gone */ }
  }
  releaseLock();
}
process.on('SIGINT', () => { cleanup(); process.exit(130); });
process.on('SIGTERM', () => { cleanup(); process.exit(143); });

main().catch((err) => {
  cleanup();
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
