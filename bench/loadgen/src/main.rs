//! velocy benchmark load generator.
//!
//! ```text
//! loadgen echo     --url ws://127.0.0.1:PORT [--conns 100] [--inflight 1] [--size 64]
//!                  [--duration 5] [--warmup 1] [--mode mixed|text|binary] [--pid SERVER_PID]
//! loadgen fanout   --url ws://127.0.0.1:PORT [--conns 1000] [--inflight 1] [--size 1024]
//!                  [--duration 5] [--warmup 1] [--mode mixed] [--pid SERVER_PID]
//! loadgen connrate --url ws://127.0.0.1:PORT [--count 10000] [--concurrency 64] [--pid SERVER_PID]
//! loadgen idle     --url ws://127.0.0.1:PORT --pid SERVER_PID [--conns 10000] [--settle 2]
//! ```
//!
//! Everything runs on one current-thread tokio runtime (pin the process to a
//! core with `taskset`). The result is printed as one JSON line on stdout;
//! the exit status is 0 when the run completed and nothing was lost,
//! reordered or corrupted, 1 otherwise.

mod scenarios;
mod util;
mod ws;

use std::collections::HashMap;
use std::process::ExitCode;

pub struct Args {
    pub scenario: String,
    kv: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let scenario = it.next().ok_or_else(usage)?;
        if scenario == "-h" || scenario == "--help" {
            return Err(usage());
        }
        let mut kv = HashMap::new();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {k}\n{}", usage()))?
                .to_string();
            let (key, val) = match key.split_once('=') {
                Some((a, b)) => (a.to_string(), b.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                    (key, v)
                }
            };
            kv.insert(key, val);
        }
        Ok(Args { scenario, kv })
    }

    pub fn str(&self, k: &str, default: &str) -> String {
        self.kv.get(k).cloned().unwrap_or_else(|| default.to_string())
    }

    pub fn opt_str(&self, k: &str) -> Option<String> {
        self.kv.get(k).cloned()
    }

    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.kv.get(k) {
            None => Ok(default),
            Some(v) => v.parse::<T>().map_err(|_| format!("--{k}: cannot parse {v:?}")),
        }
    }

    pub fn opt_num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        match self.kv.get(k) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| format!("--{k}: cannot parse {v:?}")),
        }
    }
}

fn usage() -> String {
    "usage: loadgen <echo|fanout|connrate|idle> --url ws://127.0.0.1:PORT [options]\n\
     common:   --pid SERVER_PID (CPU/RSS sampling)  --connect-concurrency 200\n\
     echo:     --conns 100 --inflight 1 --size 64 --duration 5 --warmup 1 --mode mixed --path /echo\n\
     fanout:   --conns 1000 --inflight 1 --size 1024 --duration 5 --warmup 1 --mode mixed\n\
     \x20         --sub-path /fanout --pub-path /publish --stall-timeout 10\n\
     connrate: --count 10000 --concurrency 64 --path /echo\n\
     idle:     --conns 10000 --settle 2 --path /echo"
        .to_string()
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    util::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let res = local.block_on(&rt, async move {
        match args.scenario.as_str() {
            "echo" => scenarios::echo(&args).await,
            "fanout" => scenarios::fanout(&args).await,
            "connrate" => scenarios::connrate(&args).await,
            "idle" => scenarios::idle(&args).await,
            other => Err(format!("unknown scenario {other}\n{}", usage())),
        }
    });
    match res {
        Ok((json, ok)) => {
            // Whole-process CPU time of the load generator (user + system),
            // so the runner can tell how much of the machine was ours.
            let cpu = util::self_cpu_secs();
            let json = match json.strip_suffix('}') {
                Some(body) => format!("{body},\"loadgen_cpu_s\":{cpu:.3}}}"),
                None => json,
            };
            println!("{json}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let mut j = util::Json::obj();
            j.str("fatal", &e);
            j.boolean("ok", false);
            println!("{}", j.finish());
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}
