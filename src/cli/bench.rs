//! `vnetd bench soap|http|argon2|sqlite`: load benchmarks. They report numbers and never pass or fail on
//! timing; an error here means the benchmark could not run (daemon did not start, bad URL, …).
//!
//! The load generator runs N client threads, each with its own persistent keep-alive HTTP/1.1
//! connection: write a pre-built request, read the response by Content-Length (or chunked), check
//! it, record the latency. Requests are rebuilt at most once a second (a SOAP request's TimeStamp
//! and Authenticator), so client-side work stays small; Charge and Order are rebuilt for every
//! request (each needs its own TransactionID), outside the measured latency. Requests that finish with an error are
//! counted separately and not in the latencies or the throughput.

use super::{CliResult, Failed};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{self, PasswordHasher, TdesKey};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// SOAP load (GetUserinfo, UserAuth, Charge, Order) against a daemon this command starts with a
    /// temp config and production Argon2 parameters
    Soap(SoapArgs),
    /// The same load generator against any HTTP server (GET, or POST with --body-file)
    Http(HttpArgs),
    /// Single-thread Argon2id hash rate (the per-core ceiling of UserAuth)
    Argon2(Argon2Args),
    /// The durable-commit ceiling: single-thread SQLite inserts of a charge-shaped row with the
    /// daemon's pragmas, one transaction per row, then batches of rows per transaction
    Sqlite(SqliteArgs),
    /// The outbox relay against centre-sim: records/s delivered at several batch sizes, and the
    /// end-to-end lag (Charge committed → record at the centre) under a steady Charge load
    Sync(sync::SyncArgs),
    /// The browser flows and the access network: TicketValidate and IPAuth beside a static nginx
    /// response of the same size, login-form POSTs beside the raw Argon2id hash rate
    Web(web::WebArgs),
}

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Measured seconds per run (after the warm-up)
    #[arg(long = "duration-s", default_value_t = 10.0)]
    duration_s: f64,
    /// Unmeasured seconds at the start of each run
    #[arg(long = "warmup-s", default_value_t = 1.0)]
    warmup_s: f64,
    /// Client connections (one thread each); one run per value
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
}

#[derive(Args)]
pub struct SoapArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Operations to run (ProvinceForSP). Charge and Order send a new TransactionID in every
    /// request (so they are signed per request); each Order takes a (user, item) pair not used before
    #[arg(long, value_delimiter = ',', default_value = "GetUserinfo,UserAuth", value_parser = ["GetUserinfo", "UserAuth", "Charge", "Order"])]
    ops: Vec<String>,
    /// Users imported for Order (postpaid, large credit limit); with the 4 monthly items of the
    /// bench catalogue they give 4 × N fresh orders
    #[arg(long, default_value_t = 200_000)]
    users: usize,
    /// Charge goes round this many of the imported users
    #[arg(long = "charge-users", default_value_t = 300)]
    charge_users: usize,
    /// Keep the temporary directory (config, database, daemon log) and print its path
    #[arg(long)]
    keep: bool,
    /// Extra environment for the daemon, KEY=VALUE (repeatable), e.g.
    /// GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576
    #[arg(long = "daemon-env", value_name = "KEY=VALUE")]
    daemon_env: Vec<String>,
}

#[derive(Args)]
pub struct HttpArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// http://HOST:PORT/PATH
    #[arg(long)]
    url: String,
    /// POST this file as the body (else GET)
    #[arg(long = "body-file")]
    body_file: Option<PathBuf>,
    /// Content-Type of the POST body
    #[arg(long = "content-type", default_value = "text/xml; charset=utf-8")]
    content_type: String,
    /// Count a response as an error unless its body contains this text (status must be 200 anyway)
    #[arg(long)]
    expect: Option<String>,
    /// Processes of the server (e.g. nginx master and workers), to report their CPU use apart
    /// from the rest of the machine
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
}

#[derive(Args)]
pub struct Argon2Args {
    /// Argon2 memory in KiB
    #[arg(long = "m-kib", default_value_t = 19456)]
    m_kib: u32,
    /// Argon2 iterations
    #[arg(long, default_value_t = 2)]
    t: u32,
    /// Argon2 parallelism
    #[arg(long, default_value_t = 1)]
    p: u32,
    /// Seconds to hash for
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[derive(Args)]
pub struct SqliteArgs {
    /// Create the database in a new subdirectory of DIR (removed afterwards), e.g. on the disk
    /// the daemon's database lives on; else in the system temporary directory
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Measured seconds per run (after the warm-up)
    #[arg(long = "duration-s", default_value_t = 5.0)]
    duration_s: f64,
    /// Unmeasured seconds at the start of each run
    #[arg(long = "warmup-s", default_value_t = 0.5)]
    warmup_s: f64,
    /// Rows per transaction of the batched runs (a run with one row per transaction comes first)
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    batch: Vec<usize>,
}

mod sync;
mod web;

pub fn run(cmd: BenchCmd) -> CliResult {
    match cmd {
        BenchCmd::Sync(a) => sync::sync(a),
        BenchCmd::Web(a) => web::web(a),
        BenchCmd::Soap(a) => soap(a),
        BenchCmd::Http(a) => http(a),
        BenchCmd::Argon2(a) => argon2(a),
        BenchCmd::Sqlite(a) => sqlite(a),
    }
}

fn check_load(l: &LoadArgs) -> CliResult {
    let bad_time = |x: f64, min: f64| x.is_nan() || x < min;
    if bad_time(l.duration_s, f64::MIN_POSITIVE) || bad_time(l.warmup_s, 0.0) || l.concurrency.is_empty() || l.concurrency.iter().any(|&c| c == 0 || c > 4096) {
        return Err(Failed("--duration-s must be > 0, --warmup-s >= 0, --concurrency values 1..4096".into()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// argon2

fn argon2(a: Argon2Args) -> CliResult {
    if a.seconds.is_nan() || a.seconds <= 0.0 {
        return Err(Failed("--seconds must be > 0".into()));
    }
    let h = PasswordHasher::new(a.m_kib, a.t, a.p).map_err(|e| Failed(format!("invalid Argon2 parameters: {e}")))?;
    let _ = h.hash("warm-up-Pass1"); // page in the memory once
    let cpu0 = cpu_self();
    let start = Instant::now();
    let mut n = 0u64;
    let mut phc = String::new();
    while start.elapsed().as_secs_f64() < a.seconds {
        phc = h.hash("bench-Pass-0001");
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_self() - cpu0;
    let rate = n as f64 / secs;
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    println!("Argon2id m={} KiB, t={}, p={}, one thread ({phc_prefix})", a.m_kib, a.t, a.p, phc_prefix = phc.split('$').take(4).collect::<Vec<_>>().join("$"));
    println!();
    println!("| hashes | seconds | hashes/s | ms/hash | CPU used (cores) | × {cores} cores (hashes/s) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!("| {n} | {secs:.2} | {rate:.1} | {:.2} | {:.2} | {:.1} |", 1000.0 / rate, cpu / secs, rate * cores as f64);
    println!();
    println!("load average at end: {}", loadavg());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// sqlite

/// A row shaped like a charge record: a dozen columns, UNIQUE (spid, transaction_id) and one more
/// index, as `Store` would write it.
const SQLITE_SCHEMA: &str = "CREATE TABLE charge (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spid TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    vnet_user_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    service_item_id TEXT NOT NULL,
    fee_type TEXT NOT NULL,
    fee INTEGER NOT NULL,
    batch_count INTEGER NOT NULL,
    charge_at INTEGER NOT NULL,
    ledger_date TEXT NOT NULL,
    bill_month TEXT NOT NULL,
    UNIQUE (spid, transaction_id)
);
CREATE INDEX charge_recon ON charge(spid, ledger_date, charge_at, transaction_id);";

const SQLITE_INSERT: &str = "INSERT INTO charge (spid, transaction_id, operation, vnet_user_id, service_id, service_item_id, \
     fee_type, fee, batch_count, charge_at, ledger_date, bill_month) VALUES (?1, ?2, 'Charge', ?3, ?4, ?5, '1', 1, 1, ?6, ?7, ?8)";

fn sqlite(a: SqliteArgs) -> CliResult {
    let bad_time = |x: f64, min: f64| x.is_nan() || x < min;
    if bad_time(a.duration_s, f64::MIN_POSITIVE) || bad_time(a.warmup_s, 0.0) || a.batch.iter().any(|&b| b == 0 || b > 100_000) {
        return Err(Failed("--duration-s must be > 0, --warmup-s >= 0, --batch values 1..100000".into()));
    }
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("vnetd-bench-sqlite-{}-{:08x}", std::process::id(), subsec_nanos()));
    std::fs::create_dir_all(&dir).map_err(|e| Failed(format!("cannot create {}: {e}", dir.display())))?;
    let result = sqlite_runs(&a, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn sqlite_runs(a: &SqliteArgs, dir: &std::path::Path) -> CliResult {
    use rusqlite::params;
    let path = dir.join("bench.db");
    // The pragmas of store::open_conn and Store::open.
    let conn = rusqlite::Connection::open(&path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failed(format!("cannot switch {} to WAL mode", path.display())));
    }
    conn.execute_batch(SQLITE_SCHEMA)?;
    println!(
        "SQLite {} in {}: journal_mode=WAL, synchronous=FULL, foreign_keys=ON, busy_timeout 10 s; one thread, BEGIN IMMEDIATE … COMMIT; \
         a 13-column charge row with UNIQUE (spid, transaction_id) and one more index; warm-up {} s, measured {} s per run",
        rusqlite::version(),
        dir.display(),
        a.warmup_s,
        a.duration_s
    );
    println!();
    println!("| rows/transaction | transactions | rows | commits/s | rows/s | p50 ms | p99 ms | max ms | CPU (cores) | other CPU (cores) | rows in table after |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut seq: u64 = 0;
    for &b in std::iter::once(&1).chain(&a.batch) {
        let start = Instant::now();
        let (measure_from, end) = (start + Duration::from_secs_f64(a.warmup_s), start + Duration::from_secs_f64(a.warmup_s + a.duration_s));
        let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
        let (mut cpu0, mut last) = (None, measure_from);
        loop {
            let t0 = Instant::now();
            if t0 >= end {
                break;
            }
            if t0 >= measure_from && cpu0.is_none() {
                cpu0 = Some((cpu_self(), cpu_total()));
            }
            conn.execute_batch("BEGIN IMMEDIATE")?;
            {
                let mut st = conn.prepare_cached(SQLITE_INSERT)?;
                for _ in 0..b {
                    seq += 1;
                    let user = format!("35{:010}", seq % 300);
                    st.execute(params!["35000001", format!("bench-{seq}"), user, "3500000100000001", "3500000100000101", now, "20240115", "202401"])?;
                }
            }
            conn.execute_batch("COMMIT")?;
            let done = Instant::now();
            if t0 >= measure_from {
                lat_us.push(done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                last = done;
            }
        }
        let secs = last.duration_since(measure_from).as_secs_f64().max(1e-9);
        let (cpu, other) = cpu0.map_or((0.0, 0.0), |(me, all)| {
            let me = cpu_self() - me;
            (me / secs, ((cpu_total() - all - me) / secs).max(0.0))
        });
        lat_us.sort_unstable();
        let txns = lat_us.len();
        let rows_in_table: i64 = conn.query_row("SELECT count(*) FROM charge", [], |r| r.get(0))?;
        println!(
            "| {b} | {txns} | {} | {:.0} | {:.0} | {} | {} | {} | {cpu:.2} | {other:.2} | {rows_in_table} |",
            txns * b,
            txns as f64 / secs,
            (txns * b) as f64 / secs,
            ms(percentile(&lat_us, 0.50)),
            ms(percentile(&lat_us, 0.99)),
            ms(lat_us.last().copied()),
        );
    }
    println!();
    println!("load average at end: {}", loadavg());
    Ok(())
}

fn subsec_nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// http

fn parse_url(url: &str) -> Result<(SocketAddr, String, String), Failed> {
    let rest = url.strip_prefix("http://").ok_or_else(|| Failed("--url must start with http://".into()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { hostport.to_string() } else { format!("{hostport}:80") };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| Failed(format!("cannot resolve {hostport}: {e}")))?
        .next()
        .ok_or_else(|| Failed(format!("cannot resolve {hostport}")))?;
    Ok((addr, hostport.to_string(), path.to_string()))
}

fn http(a: HttpArgs) -> CliResult {
    check_load(&a.load)?;
    let (addr, host, path) = parse_url(&a.url)?;
    let req = match &a.body_file {
        None => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vnetd-bench\r\n\r\n").into_bytes(),
        Some(f) => {
            let body = std::fs::read(f).map_err(|e| Failed(format!("cannot read {}: {e}", f.display())))?;
            let mut r = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vnetd-bench\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n", a.content_type, body.len())
                .into_bytes();
            r.extend_from_slice(&body);
            r
        }
    };
    let expect = a.expect.clone().map(String::into_bytes);
    let check: Arc<Check> = Arc::new(move |status, body| status == 200 && expect.as_deref().is_none_or(|e| contains(body, e)));
    let build: Arc<Build> = Arc::new(move || req.clone());
    // One probe, so a wrong URL fails at once instead of as a table of errors.
    let mut c = Conn::open(addr).map_err(|e| Failed(format!("cannot connect to {addr}: {e}")))?;
    let (status, len) = c.exchange(&build()).map(|(s, b, _)| (s, b.len())).map_err(|e| Failed(format!("{}: {e}", a.url)))?;
    drop(c);
    println!("{} {} → HTTP {status}, {len}-byte body; warm-up {} s, measured {} s per run", if a.body_file.is_some() { "POST" } else { "GET" }, a.url, a.load.warmup_s, a.load.duration_s);
    println!();
    println!("| concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | server CPU (cores, --pid) | bench CPU (cores) | other CPU (cores) | load avg after |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &n in &a.load.concurrency {
        let r = run_load(addr, n, &a.load, build.clone(), check.clone(), &a.pid, false);
        println!(
            "| {n} | {} | {} | {:.0} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            r.requests,
            r.errors,
            r.rate(),
            ms(r.pct(0.50)),
            ms(r.pct(0.99)),
            ms(r.max()),
            if a.pid.is_empty() { "–".to_string() } else { format!("{:.2}", r.cpu_target) },
            r.cpu_bench,
            r.cpu_other,
            loadavg()
        );
        if let Some(e) = &r.first_error {
            eprintln!("first error at concurrency {n}: {e}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// soap

const SP_ID: &str = "35000001";
const SP_KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
const IV: &str = "0102030405060708";
const ACCOUNT: &str = "benchuser0001";
const PASSWORD: &str = "Bench-Pass-2024";
const SOAP_PATH: &str = "/ProvinceForSP/services/ProvinceForSP";
const SERVICE_ID: &str = "3500000100000001";
const PER_USE_ITEM: &str = "3500000100000101";
const MONTHLY_ITEMS: [&str; 4] = ["3500000100000102", "3500000100000103", "3500000100000104", "3500000100000105"];
/// Accounts of the imported users start with this.
const IMPORT_PREFIX: &str = "benchimp";

/// The daemon under test; stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
    keep: bool,
}

impl Daemon {
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String, Failed> {
        let exe = std::env::current_exe()?;
        let mut c = Command::new(exe)
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(s) = stdin {
            c.stdin.take().expect("piped stdin").write_all(format!("{s}\n").as_bytes())?;
        }
        let out = c.wait_with_output()?;
        if !out.status.success() {
            return Err(Failed(format!("vnetd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_healthy(&mut self) -> CliResult {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(Failed(format!("the daemon exited early ({st}); log:\n{}", self.log_tail())));
            }
            if self.cli(&["healthcheck"], None).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Failed(format!("the daemon did not become healthy in 30 s; log:\n{}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            eprintln!("kept {} (config, database, daemon log)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> Result<u16, Failed> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_daemon(keep: bool, env: &[String]) -> Result<(Daemon, Config), Failed> {
    start_daemon_with(keep, env, "")
}

/// As `start_daemon`, with `extra` TOML sections (not `[server]`, `[storage]` or `[log]`).
fn start_daemon_with(keep: bool, env: &[String], extra: &str) -> Result<(Daemon, Config), Failed> {
    let dir = std::env::temp_dir().join(format!("vnetd-bench-{}-{:08x}", std::process::id(), subsec_nanos()));
    std::fs::create_dir_all(&dir)?;
    let (port, admin) = (free_port()?, free_port()?);
    // Production Argon2 parameters and connection cap: the config defaults.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[storage]\npath = \"{}\"\n[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n{extra}",
        dir.join("data/vnetd.db").display()
    );
    let cfg_path = dir.join("vnetd.toml");
    std::fs::write(&cfg_path, &text)?;
    let cfg = Config::parse(&text).map_err(Failed)?;
    let log = dir.join("vnetd.log");
    let mut d = Daemon { child: None, dir, cfg: cfg_path, log, keep };
    launch(&mut d, env)?;
    Ok((d, cfg))
}

/// Start `vnetd run` on the daemon's config (output to its log) and wait until it is healthy.
fn launch(d: &mut Daemon, env: &[String]) -> CliResult {
    let logf = std::fs::OpenOptions::new().create(true).append(true).open(&d.log)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    for kv in env {
        let (k, v) = kv.split_once('=').ok_or_else(|| Failed(format!("--daemon-env {kv}: expected KEY=VALUE")))?;
        cmd.env(k, v);
    }
    let child = cmd
        .arg("--config")
        .arg(&d.cfg)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()?;
    d.child = Some(child);
    d.wait_healthy()
}

/// Builds SOAP requests for one operation, signed with a fresh TimeStamp.
struct SoapReq {
    op: &'static str,
    host: String,
    key: TdesKey,
    clock: Clock,
    user_id: String,
    password_enc: String,
    /// Imported users (Charge, Order).
    users: Arc<Vec<String>>,
    charge_users: usize,
    /// Requests built so far: the TransactionID, and for Order the (user, item) pair.
    seq: AtomicUsize,
}

impl SoapReq {
    /// Whether every request must be new (a TransactionID each).
    fn fresh(&self) -> bool {
        matches!(self.op, "Charge" | "Order")
    }

    fn build(&self) -> Vec<u8> {
        let ts = self.clock.now_ts();
        let n = if self.fresh() { self.seq.fetch_add(1, Ordering::Relaxed) } else { 0 };
        let txid = format!("bench-{}-{n}", self.op.to_ascii_lowercase());
        let users = self.users.len().max(1);
        let user = |i: usize| self.users.get(i % users).map_or("", String::as_str);
        let mut fields: Vec<(&str, &str)> = match self.op {
            "UserAuth" => vec![("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", ACCOUNT), ("Password", &self.password_enc), ("UserIP", "")],
            "Charge" => vec![
                ("SPID", SP_ID),
                ("ServiceID", SERVICE_ID),
                ("ServiceItemID", PER_USE_ITEM),
                ("VNetUserID", user(n % self.charge_users.max(1))),
                ("Fee", "1"),
                ("BatchCount", "1"),
                ("TransactionID", &txid),
            ],
            // Pair n: user n mod U, item n / U (so 4 × U pairs before one repeats).
            "Order" => vec![
                ("SPID", SP_ID),
                ("ServiceID", SERVICE_ID),
                ("ServiceItemID", MONTHLY_ITEMS[(n / users) % MONTHLY_ITEMS.len()]),
                ("ProductID", ""),
                ("VNetUserID", user(n)),
                ("ContractID", ""),
                ("IfExtend", "1"),
                ("TransactionID", &txid),
            ],
            _ => vec![("SPID", SP_ID), ("VNetUserID", &self.user_id)],
        };
        fields.push(("TimeStamp", &ts));
        let values: Vec<&str> = fields.iter().map(|(_, v)| *v).collect();
        let auth = crypto::authenticator(&self.key, &values);
        fields.push(("Authenticator", &auth));
        let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><{}>", self.op);
        for (k, v) in &fields {
            // Charge and Order leave empty optional fields out (they still count as "" in the
            // Authenticator).
            if v.is_empty() && self.fresh() {
                continue;
            }
            body.push_str(&format!("<{k}>"));
            crate::soap::writer::escape(&mut body, v);
            body.push_str(&format!("</{k}>"));
        }
        body.push_str(&format!("</{}></soap:Body></soap:Envelope>", self.op));
        let mut req = format!(
            "POST {SOAP_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"\"\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body.as_bytes());
        req
    }
}

/// For Charge and Order: a catalogue whose SP is the bench peer (a per-use item and 4 monthly
/// items, 1 fen each) and `n` postpaid users with a large credit limit, imported with the CLI as
/// an operator would. Returns the users' VNetUserIDs in import order.
fn billing_setup(d: &Daemon, cfg: &Config, n: usize) -> Result<Vec<String>, Failed> {
    let mut toml = format!(
        "[[sp]]\nspid = \"{SP_ID}\"\nname = \"bench SP\"\nscope = \"province\"\noffline_payment = true\nroam_out = false\n\n\
         [[service]]\nservice_id = \"{SERVICE_ID}\"\nspid = \"{SP_ID}\"\nname = \"bench service\"\nstatus = \"active\"\n\n\
         [[item]]\nservice_item_id = \"{PER_USE_ITEM}\"\nservice_id = \"{SERVICE_ID}\"\nname = \"bench per use\"\nfee_type = \"1\"\nprice = 1\nstatus = \"active\"\n"
    );
    for (i, item) in MONTHLY_ITEMS.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[item]]\nservice_item_id = \"{item}\"\nservice_id = \"{SERVICE_ID}\"\nname = \"bench monthly {i}\"\nfee_type = \"2\"\nprice = 1\nstatus = \"active\"\n"
        ));
    }
    let cat = d.dir.join("catalog.toml");
    std::fs::write(&cat, toml)?;
    d.cli(&["catalog", "import", &cat.to_string_lossy()], None)?;
    let mut csv = String::from("account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no\n");
    for i in 0..n {
        csv.push_str(&format!("01,{IMPORT_PREFIX}{i:07},0591,1,100000000,0,,\n"));
    }
    let file = d.dir.join("users.csv");
    std::fs::write(&file, csv)?;
    let t = Instant::now();
    d.cli(&["user", "import", &file.to_string_lossy()], None)?;
    let import_s = t.elapsed().as_secs_f64();
    let db = rusqlite::Connection::open_with_flags(&cfg.storage.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st = db.prepare("SELECT vnet_user_id FROM user WHERE account LIKE ?1 ORDER BY account")?;
    let ids = st.query_map([format!("{IMPORT_PREFIX}%")], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    if ids.len() != n {
        return Err(Failed(format!("imported {n} users but found {} in the database", ids.len())));
    }
    eprintln!("setup: catalogue imported; {n} users imported in {import_s:.1} s");
    Ok(ids)
}

/// The daemon's (commits, write jobs) since start, from its admin /metrics.
fn store_counters(cfg: &Config) -> Option<(f64, f64)> {
    let mut s = TcpStream::connect_timeout(&cfg.admin_addr(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());
    Some((value("vnetd_store_commits_total")?, value("vnetd_store_write_jobs_total")?))
}

fn soap_ok(status: u16, body: &[u8]) -> bool {
    status == 200 && contains(body, b"<Result>0</Result>")
}

fn soap(a: SoapArgs) -> CliResult {
    check_load(&a.load)?;
    let (mut d, cfg) = start_daemon(a.keep, &a.daemon_env)?;
    let pid = d.pid();
    d.cli(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"], None)?;
    let user_id = d.cli(&["user", "add", "--account-type", "01", "--account", ACCOUNT, "--city-code", "0591", "--password-stdin"], Some(PASSWORD))?;
    let op_name = |op: &str| -> &'static str {
        match op {
            "UserAuth" => "UserAuth",
            "Charge" => "Charge",
            "Order" => "Order",
            _ => "GetUserinfo",
        }
    };
    let has = |name: &str| a.ops.iter().any(|o| o == name);
    let users = if has("Charge") || has("Order") {
        let n = if has("Order") { a.users.max(a.charge_users) } else { a.charge_users };
        billing_setup(&d, &cfg, n.max(1))?
    } else {
        Vec::new()
    };
    let users = Arc::new(users);
    let addr = cfg.listen_addr();
    let key = TdesKey::from_hex(SP_KEY, IV).map_err(|e| Failed(e.to_string()))?;
    let mk = |op: &'static str| {
        Arc::new(SoapReq {
            op,
            host: addr.to_string(),
            key: TdesKey::from_hex(SP_KEY, IV).expect("valid key"),
            clock: cfg.clock(),
            user_id: user_id.clone(),
            password_enc: key.encrypt_b64(PASSWORD.as_bytes()),
            users: users.clone(),
            charge_users: a.charge_users.max(1),
            seq: AtomicUsize::new(0),
        })
    };
    // One builder per operation, for the probe and all its runs (TransactionIDs and Order pairs
    // are never reused).
    let mut reqs: Vec<(&'static str, Arc<SoapReq>)> = Vec::new();
    for op in std::iter::once("GetUserinfo").chain(a.ops.iter().map(|o| op_name(o))) {
        if !reqs.iter().any(|(o, _)| *o == op) {
            reqs.push((op, mk(op)));
        }
    }
    // The daemon's peer cache refreshes every second: probe until the SP is known.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sizes = Vec::new();
    for (op, r) in &reqs {
        loop {
            let mut c = Conn::open(addr)?;
            let (status, body, _) = c.exchange(&r.build())?;
            if soap_ok(status, &body) {
                sizes.push(format!("{op} {} bytes", body.len()));
                break;
            }
            if Instant::now() > deadline {
                return Err(Failed(format!("{op} probe failed: HTTP {status}: {}", String::from_utf8_lossy(&body))));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, hwm0) = (proc_status_kib(pid, "VmRSS"), proc_status_kib(pid, "VmHWM"));
    println!(
        "vnetd {} (pid {pid}) on {addr}: Argon2id m={} KiB t={} p={}, max_connections {}; responses: {}; warm-up {} s, measured {} s per run",
        env!("CARGO_PKG_VERSION"),
        cfg.security.argon2_m_kib,
        cfg.security.argon2_t,
        cfg.security.argon2_p,
        cfg.server.max_connections,
        sizes.join(", "),
        a.load.warmup_s,
        a.load.duration_s
    );
    if !a.daemon_env.is_empty() {
        println!("daemon environment: {}", a.daemon_env.join(" "));
    }
    if !users.is_empty() {
        println!(
            "billing: {} imported postpaid users (credit limit 100000000 fen); Charge: item {PER_USE_ITEM} (per use, 1 fen), BatchCount 1, round {} users; \
             Order: monthly items {}… (1 fen), a fresh (user, item) pair per request, {} pairs",
            users.len(),
            a.charge_users.min(users.len()),
            MONTHLY_ITEMS[0],
            users.len() * MONTHLY_ITEMS.len()
        );
    }
    println!("daemon RSS before load: {} MiB (VmHWM so far {} MiB); load average {}", mib(rss0), mib(hwm0), loadavg());
    println!();
    println!("| op | concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | peak RSS MiB | writes per commit | daemon CPU (cores) | bench CPU (cores) | other CPU (cores) | load avg after |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut any_errors = false;
    for op in &a.ops {
        let op = op_name(op);
        let r = reqs.iter().find(|(o, _)| *o == op).map(|(_, r)| r.clone()).expect("a builder per op");
        let fresh = r.fresh();
        let build: Arc<Build> = Arc::new(move || r.build());
        for &n in &a.load.concurrency {
            // Reset the peak (Linux: "5" clears VmHWM) so each run reports its own.
            let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
            let before = store_counters(&cfg);
            let res = run_load(addr, n, &a.load, build.clone(), Arc::new(soap_ok), &[pid], fresh);
            let hwm = proc_status_kib(pid, "VmHWM");
            // Group commit: write jobs per committed transaction (one fsync each) during the run.
            let per_commit = match (before, store_counters(&cfg)) {
                (Some((c0, j0)), Some((c1, j1))) if c1 > c0 => format!("{:.1}", (j1 - j0) / (c1 - c0)),
                _ => "–".into(),
            };
            println!(
                "| {op} | {n} | {} | {} | {:.0} | {} | {} | {} | {}{} | {per_commit} | {:.2} | {:.2} | {:.2} | {} |",
                res.requests,
                res.errors,
                res.rate(),
                ms(res.pct(0.50)),
                ms(res.pct(0.99)),
                ms(res.max()),
                mib(hwm),
                if reset { "" } else { " (since start)" },
                res.cpu_target,
                res.cpu_bench,
                res.cpu_other,
                loadavg()
            );
            if let Some(e) = &res.first_error {
                any_errors = true;
                eprintln!("first error ({op}, concurrency {n}): {e}");
            }
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(Failed(format!("the daemon exited during the run ({st}); log:\n{}", d.log_tail())));
            }
        }
    }
    if let Some(r) = reqs.iter().find(|(o, _)| *o == "Order") {
        let used = r.1.seq.load(Ordering::Relaxed);
        let pairs = users.len() * MONTHLY_ITEMS.len();
        println!();
        println!("Order requests sent (with probe and warm-up): {used} of {pairs} fresh pairs{}", if used > pairs { " — pairs were reused: expect -21010 errors; raise --users" } else { "" });
    }
    let warn_lines = std::fs::read_to_string(&d.log).unwrap_or_default().lines().filter(|l| !l.contains("event=")).count();
    if warn_lines > 0 || any_errors {
        eprintln!("daemon log ({} non-audit lines), last lines:\n{}", warn_lines, d.log_tail());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The load generator

type Build = dyn Fn() -> Vec<u8> + Send + Sync;
type Check = dyn Fn(u16, &[u8]) -> bool + Send + Sync;

/// A keep-alive client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle, 0).is_some()
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn { stream, buf: Vec::with_capacity(16384), body: Vec::with_capacity(4096) })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 16384];
        let n = self.stream.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed by the server"));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    /// Need `n` bytes in the buffer.
    fn need(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(())
    }

    /// Send one request, read its response: (status, body, server closes the connection).
    fn exchange(&mut self, req: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        self.stream.write_all(req)?;
        let (status, close, body) = self.read_response()?;
        Ok((status, body, close))
    }

    fn read_response(&mut self) -> std::io::Result<(u16, bool, Vec<u8>)> {
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n", 0) {
                break p + 4;
            }
            if self.buf.len() > 65536 {
                return Err(bad("response head over 64 KiB"));
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("response head not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
        let http10 = status_line.starts_with("HTTP/1.0");
        let (mut length, mut chunked, mut close) = (None, false, http10);
        for l in lines {
            let Some((k, v)) = l.split_once(':') else { continue };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        self.body.clear();
        let consumed = if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf, b"\r\n", pos) {
                        break p;
                    }
                    self.fill()?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).map_err(|_| bad("bad chunk size"))?;
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad("bad chunk size"))?;
                pos = line_end + 2;
                if size == 0 {
                    // No trailers expected: the final CRLF.
                    self.need(pos + 2)?;
                    break pos + 2;
                }
                self.need(pos + size + 2)?;
                self.body.extend_from_slice(&self.buf[pos..pos + size]);
                pos += size + 2;
            }
        } else if let Some(n) = length {
            self.need(head_end + n)?;
            self.body.extend_from_slice(&self.buf[head_end..head_end + n]);
            head_end + n
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            head_end
        } else {
            // No length: the body runs to the end of the connection.
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            close = true;
            self.body.extend_from_slice(&self.buf[head_end..]);
            self.buf.len()
        };
        self.buf.drain(..consumed);
        Ok((status, close, std::mem::take(&mut self.body)))
    }
}

struct LoadResult {
    requests: u64,
    errors: u64,
    /// Measured wall time (from the end of the warm-up to the last completion).
    window: f64,
    /// Latencies of the successful measured requests, microseconds, sorted.
    lat_us: Vec<u32>,
    first_error: Option<String>,
    /// CPU used during the measured window, in cores: the target process, this process, and
    /// everything else on the machine.
    cpu_target: f64,
    cpu_bench: f64,
    cpu_other: f64,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        if self.window > 0.0 {
            self.requests as f64 / self.window
        } else {
            0.0
        }
    }
    fn pct(&self, p: f64) -> Option<u32> {
        percentile(&self.lat_us, p)
    }
    fn max(&self) -> Option<u32> {
        self.lat_us.last().copied()
    }
}

/// The `p` quantile of sorted latencies.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn ms(us: Option<u32>) -> String {
    match us {
        None => "–".into(),
        Some(us) if us < 10_000 => format!("{:.2}", us as f64 / 1000.0),
        Some(us) => format!("{:.1}", us as f64 / 1000.0),
    }
}

struct ThreadResult {
    lat_us: Vec<u32>,
    errors: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

/// `n` clients, each on its own connection, for the warm-up plus the measured duration.
/// `fresh`: build a new request for every request (else at most once a second).
fn run_load(addr: SocketAddr, n: usize, l: &LoadArgs, build: Arc<Build>, check: Arc<Check>, target_pids: &[u32], fresh: bool) -> LoadResult {
    let connected = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Barrier::new(n + 1));
    let times: Arc<OnceLock<(Instant, Instant)>> = Arc::new(OnceLock::new());
    let (warmup, duration) = (Duration::from_secs_f64(l.warmup_s), Duration::from_secs_f64(l.duration_s));
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (connected, go, times, build, check) = (connected.clone(), go.clone(), times.clone(), build.clone(), check.clone());
        handles.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut conn = Conn::open(addr).ok();
                    connected.wait();
                    go.wait();
                    let (measure_from, end) = *times.get().expect("times set before go");
                    let mut out = ThreadResult { lat_us: Vec::with_capacity(1 << 14), errors: 0, last_done: None, first_error: None };
                    let mut req = build();
                    let mut built = Instant::now();
                    let err = |out: &mut ThreadResult, measured: bool, e: String| {
                        if measured {
                            out.errors += 1;
                            if out.first_error.is_none() {
                                out.first_error = Some(e);
                            }
                        }
                    };
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end {
                            break;
                        }
                        if fresh || t0.duration_since(built) >= Duration::from_secs(1) {
                            req = build();
                            built = t0;
                        }
                        let measured = t0 >= measure_from;
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match Conn::open(addr) {
                                Ok(c) => conn.insert(c),
                                Err(e) => {
                                    err(&mut out, measured, format!("connect: {e}"));
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            },
                        };
                        let t0 = Instant::now();
                        match c.exchange(&req) {
                            Ok((status, body, close)) => {
                                let done = Instant::now();
                                if check(status, &body) {
                                    if measured {
                                        out.lat_us.push(done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                                        out.last_done = Some(done);
                                    }
                                } else {
                                    let text = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
                                    err(&mut out, measured, format!("HTTP {status}: {text}"));
                                }
                                if close {
                                    conn = None;
                                }
                            }
                            Err(e) => {
                                err(&mut out, measured, format!("I/O: {e}"));
                                conn = None;
                            }
                        }
                    }
                    out
                })
                .expect("cannot start a client thread"),
        );
    }
    connected.wait();
    let start = Instant::now();
    let measure_from = start + warmup;
    let _ = times.set((measure_from, measure_from + duration));
    go.wait();
    std::thread::sleep(warmup);
    let cpu_targets = || target_pids.iter().map(|&p| cpu_of(p)).sum::<f64>();
    let cpu0 = (cpu_total(), cpu_self(), cpu_targets());
    let mut all = Vec::new();
    let (mut errors, mut last, mut first_error) = (0, None::<Instant>, None);
    for h in handles {
        let t = h.join().expect("client thread panicked");
        all.extend_from_slice(&t.lat_us);
        errors += t.errors;
        last = last.max(t.last_done);
        first_error = first_error.or(t.first_error);
    }
    let wall = measure_from.elapsed().as_secs_f64().max(1e-9);
    let (total, me, tgt) = (cpu_total() - cpu0.0, cpu_self() - cpu0.1, cpu_targets() - cpu0.2);
    all.sort_unstable();
    LoadResult {
        requests: all.len() as u64,
        errors,
        window: last.map_or(0.0, |t| t.duration_since(measure_from).as_secs_f64()),
        lat_us: all,
        first_error,
        cpu_target: tgt / wall,
        cpu_bench: me / wall,
        cpu_other: ((total - me - tgt) / wall).max(0.0),
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// USER_HZ, the unit of /proc CPU times: 100 on every Linux ABI.
fn clk_tck() -> f64 {
    100.0
}

/// Busy CPU seconds of the whole machine (all cores) since boot.
fn cpu_total() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else { return 0.0 };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is included in user)
    let busy: f64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    busy / clk_tck()
}

/// CPU seconds (user + system) of a process.
fn cpu_of(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(after) = text.rfind(')').map(|i| &text[i + 1..]) else { return 0.0 };
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: field 3 (state) is f[0]; utime is field 14, stime 15.
    let get = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / clk_tck()
}

fn cpu_self() -> f64 {
    cpu_of(std::process::id())
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}
