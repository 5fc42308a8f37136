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
use std::process::{Command, Stdio};
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
    /// The front end's figures in one run, each beside its reference from the same run:
    /// GetUserinfo vs nginx (also with 10,000 idle connections held), Charge vs SQLite's commit
    /// ceilings, UserAuth vs the raw Argon2id rate, idle and peak RSS and threads
    Report(report::ReportArgs),
    /// A province's scale: N users (import), orders and a charge history, then start-up to
    /// ready, GetUserinfo/UserAuth/Charge/OrderQuery p50/p99 beside the smallest size, database
    /// size, backup, restore, the month rollover and RSS, per size (docs/capacity.md)
    Scale(scale::ScaleArgs),
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
    /// After an answer 503 with `Retry-After: N`, a client waits N seconds before its next
    /// request (as a well-behaved peer does); otherwise it retries at once
    #[arg(long = "honour-retry-after")]
    honour_retry_after: bool,
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
    /// Hold this many idle keep-alive connections open to the daemon during every run (its
    /// max_connections and read_timeout_s are raised to allow them)
    #[arg(long, default_value_t = 0)]
    hold: usize,
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

mod argon2;
mod daemon;
mod http;
mod load;
mod nginx;
mod procstat;
mod report;
mod scale;
mod scale_gen;
mod soap;
mod sqlite;
mod sync;
mod web;

use argon2::{argon2, hash_rate};
use daemon::*;
use http::http;
use load::*;
use nginx::Nginx;
use procstat::*;
use soap::*;
use sqlite::{sqlite, CommitBench};

pub fn run(cmd: BenchCmd) -> CliResult {
    match cmd {
        BenchCmd::Sync(a) => sync::sync(a),
        BenchCmd::Web(a) => web::web(a),
        BenchCmd::Report(a) => report::report(a),
        BenchCmd::Scale(a) => scale::scale(a),
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

