//! `vnetd bench sync`: the outbox relay against `vnetd centre-sim` on loopback (issue 4 item 8).
//!
//! 1. Delivery rate: a backlog of CHARGE records is written straight into a fresh node database
//!    (the way the daemon queues them), then the daemon starts with the centre peer pointing at a
//!    centre-sim; records per second are measured at the sim (its acknowledged LastSequenceID)
//!    while the relay drains the backlog, for each batch size.
//! 2. End-to-end lag: the daemon takes a steady Charge load (open loop, evenly paced); for each
//!    acknowledged Charge the time from its answer (the commit) until the record is committed at
//!    the sim is measured by watching the sim's database every 5 ms.

use crate::centre_sim::store::Reader as SimReader;
use crate::cli::child::ChildProcess;
use super::{free_port, mib, percentile, proc_status_kib, subsec_nanos, Daemon, SERVICE_ID, SP_ID, SP_KEY, IV};
use crate::cli::{CliResult, Failed};
use crate::config::Config;
use crate::crypto::TdesKey;
use crate::soap::client::{self, Client};
use crate::spec::outbound;
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CENTRE_ID: &str = "0000000000000001";
const CENTRE_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a";
const PER_USE_ITEM: &str = super::PER_USE_ITEM;

#[derive(Args)]
pub struct SyncArgs {
    /// Batch sizes (`[sync] batch_max_records`) of the delivery-rate runs
    #[arg(long, value_delimiter = ',', default_value = "1,50,500")]
    batch: Vec<u32>,
    /// CHARGE records waiting when the daemon starts (each delivery-rate run)
    #[arg(long, default_value_t = 30_000)]
    records: usize,
    /// Longest measured seconds of a delivery-rate run (it ends earlier when the backlog is gone)
    #[arg(long = "duration-s", default_value_t = 8.0)]
    duration_s: f64,
    /// Charges per second of the lag runs
    #[arg(long = "lag-rate", default_value_t = 200)]
    lag_rate: u32,
    /// Seconds of steady load per lag run
    #[arg(long = "lag-duration-s", default_value_t = 10.0)]
    lag_duration_s: f64,
    /// `[sync] flush_interval_ms` of the lag runs (the default 1000 first)
    #[arg(long = "flush-ms", value_delimiter = ',', default_value = "1000,100")]
    flush_ms: Vec<u64>,
    /// Keep the temporary directories
    #[arg(long)]
    keep: bool,
}

/// A running centre-sim; killed on drop.
struct Sim {
    _proc: ChildProcess,
    db: PathBuf,
}

fn start_sim(dir: &Path, port: u16) -> Result<Sim, Failed> {
    let db = dir.join("centre.db");
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["centre-sim", "--listen", &format!("127.0.0.1:{port}"), "--device-no", CENTRE_ID, "--key", CENTRE_KEY]).arg("--db").arg(&db);
    let mut proc = ChildProcess::spawn(cmd, &dir.join("centre-sim.log"))?;
    proc.wait_ready("centre-sim", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).map_err(Failed)?;
    Ok(Sim { _proc: proc, db })
}

/// A node directory with a config (`[sync]` as given) and its database, peers added.
fn node_dir(batch: u32, flush_ms: u64, sim_port: u16) -> Result<(PathBuf, PathBuf, Config, u16), Failed> {
    let dir = std::env::temp_dir().join(format!("vnetd-bench-sync-{}-{:08x}", std::process::id(), subsec_nanos()));
    std::fs::create_dir_all(&dir)?;
    let (port, admin) = (free_port()?, free_port()?);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[storage]\npath = \"{}\"\n\
         [sync]\nbatch_max_records = {batch}\nflush_interval_ms = {flush_ms}\n[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n",
        dir.join("data/vnetd.db").display()
    );
    let cfg_path = dir.join("vnetd.toml");
    std::fs::write(&cfg_path, &text)?;
    let cfg = Config::parse(&text).map_err(Failed)?;
    // The database is made here, as `vnetd run` would (operator commands never create one).
    crate::store::create_dir_for(&cfg.storage.path)?;
    crate::store::Store::open(&cfg.storage.path)?.shutdown();
    let url = format!("http://127.0.0.1:{sim_port}/centre");
    cli(&cfg_path, &["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &url])?;
    cli(&cfg_path, &["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY])?;
    Ok((dir, cfg_path, cfg, port))
}

/// Run an operator command against the node's config.
fn cli(cfg_path: &Path, args: &[&str]) -> CliResult {
    let out = Command::new(std::env::current_exe()?).arg("--config").arg(cfg_path).args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(Failed(format!("vnetd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

fn spawn_daemon(dir: &Path, cfg_path: &Path, keep: bool) -> Result<Daemon, Failed> {
    let mut d = Daemon::new(dir, cfg_path, keep);
    super::launch(&mut d, &[])?;
    Ok(d)
}

/// Queue `n` CHARGE records in the node database, as the daemon would (one RecordSeq each).
fn preload(cfg: &Config, n: usize) -> CliResult {
    let store = crate::store::Store::open(&cfg.storage.path)?;
    let clock = cfg.clock();
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(5000);
        let (now, ts, day) = (clock.unix(), clock.now_ts(), crate::domain::calendar::Cal::new(clock.tz()).date8(clock.unix()));
        store.write(move |c| {
            for i in done..done + chunk {
                let seq = crate::store::next_counter(c, "seq:CHARGE")?;
                // Fields the bench does not set travel empty (RoamType: a charge without roaming).
                let record = outbound::ChargeRecord {
                    RecordSeq: seq.to_string(),
                    TransactionID: format!("bench-sync-{i}"),
                    VNetUserID: format!("35{:010}", i % 1000 + 1),
                    UserProvinceID: "35".to_string(),
                    SPID: SP_ID.to_string(),
                    ServiceID: SERVICE_ID.to_string(),
                    ServiceItemID: PER_USE_ITEM.to_string(),
                    ServiceItemName: "bench per use".to_string(),
                    FeeType: "1".to_string(),
                    Fee: "1".to_string(),
                    BatchCount: "1".to_string(),
                    ChargeTime: ts.clone(),
                    LedgerDate: day.clone(),
                    ..Default::default()
                }
                .values();
                crate::store::outbox::enqueue_record(c, &outbound::CHARGE_RECORD, &record, now)?;
            }
            Ok(())
        })?;
        done += chunk;
    }
    store.shutdown();
    Ok(())
}

fn sim_last_seq(db: &SimReader) -> i64 {
    db.last_seq("CHARGE")
}

fn open_sim_db(path: &Path) -> Result<SimReader, Failed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SimReader::open(path) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(Failed(format!("cannot open the sim database: {e}"))),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One delivery-rate run: (records delivered in the window, seconds, peak RSS of the daemon).
fn rate_run(a: &SyncArgs, batch: u32) -> Result<(i64, f64, Option<u64>), Failed> {
    let sim_port = free_port()?;
    let (dir, cfg_path, cfg, _) = node_dir(batch, 1000, sim_port)?;
    preload(&cfg, a.records)?;
    let sim = start_sim(&dir, sim_port)?;
    let db = open_sim_db(&sim.db)?;
    let d = spawn_daemon(&dir, &cfg_path, a.keep)?;
    // The window opens at the first acknowledged record and closes when the backlog is gone or
    // the duration has passed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (t0, s0) = loop {
        let s = sim_last_seq(&db);
        if s > 0 {
            break (Instant::now(), s);
        }
        if Instant::now() > deadline {
            return Err(Failed(format!("no record reached the sim in 30 s; daemon log:\n{}", d.log_tail())));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let window = Duration::from_secs_f64(a.duration_s);
    let mut peak = None;
    let (t1, s1) = loop {
        let s = sim_last_seq(&db);
        let now = Instant::now();
        peak = peak.max(proc_status_kib(d.pid(), "VmHWM"));
        if s >= a.records as i64 || now - t0 >= window {
            break (now, s);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(d);
    drop(sim);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((s1 - s0, (t1 - t0).as_secs_f64(), peak))
}

/// One lag run at `flush_ms`: sorted lags in microseconds, and how many charges were acknowledged.
fn lag_run(a: &SyncArgs, flush_ms: u64) -> Result<(Vec<u32>, usize), Failed> {
    let sim_port = free_port()?;
    let (dir, cfg_path, cfg, port) = node_dir(500, flush_ms, sim_port)?;
    let sim = start_sim(&dir, sim_port)?;
    let d = spawn_daemon(&dir, &cfg_path, a.keep)?;
    let users = super::billing_setup(&d, &cfg, 100)?;
    std::thread::sleep(Duration::from_millis(1500)); // the daemon's peer cache and first PUserInfoNotify batch
    let db = open_sim_db(&sim.db)?;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The watcher: new CHARGE records at the sim, every 5 ms.
    let txid_at = outbound::CHARGE_RECORD.fields.iter().position(|f| *f == "TransactionID");
    let watcher = {
        let (arrived, stop) = (arrived.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let rows = db.records_after("CHARGE", last);
                let now = Instant::now();
                let mut m = arrived.lock().unwrap_or_else(|e| e.into_inner());
                for (seq, fields) in rows {
                    last = last.max(seq);
                    if let Ok(v) = serde_json::from_str::<Vec<String>>(&fields) {
                        if let Some(txid) = txid_at.and_then(|i| v.get(i)) {
                            m.insert(txid.clone(), now);
                        }
                    }
                }
                drop(m);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // The load: evenly paced Charges on one keep-alive connection (open loop).
    let client = Client::new(Duration::from_secs(10), &crate::soap::client::TlsRoots::load("")?);
    let key = TdesKey::from_hex(SP_KEY, IV).map_err(|e| Failed(e.to_string()))?;
    let clock = cfg.clock();
    let url = format!("http://127.0.0.1:{port}/ProvinceForSP/services/ProvinceForSP");
    let ns = crate::spec::Service::ProvinceForSP.namespace();
    let every = Duration::from_secs_f64(1.0 / a.lag_rate.max(1) as f64);
    let start = Instant::now();
    let mut next = start;
    let mut i = 0usize;
    while start.elapsed().as_secs_f64() < a.lag_duration_s {
        let txid = format!("lag-{flush_ms}-{i}");
        #[allow(clippy::needless_update)] // a field added to Charge later keeps its default
        let charge = crate::spec::incoming::Charge::Request {
            SPID: SP_ID.into(),
            ServiceID: SERVICE_ID.into(),
            ServiceItemID: PER_USE_ITEM.into(),
            VNetUserID: users[i % users.len()].clone(),
            Fee: "1".into(),
            BatchCount: Some("1".into()),
            TransactionID: txid.clone(),
            ..Default::default()
        };
        let fields: Vec<(String, String)> = crate::spec::incoming::client_fields(crate::spec::Service::ProvinceForSP, SP_ID, charge.values())
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let signed = client::sign(&key, fields, clock.now_ts());
        if let Ok(ans) = client.call(&url, &ns, "Charge", &client::text_fields(&signed)) {
            if ans.result == 0 {
                acked.lock().unwrap_or_else(|e| e.into_inner()).insert(txid, Instant::now());
            }
        }
        i += 1;
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Let the last batch arrive.
    let n_acked = acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    let deadline = Instant::now() + Duration::from_millis(flush_ms + 5000);
    while arrived.lock().unwrap_or_else(|e| e.into_inner()).len() < n_acked && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
    let arrived = arrived.lock().unwrap_or_else(|e| e.into_inner());
    let mut lags: Vec<u32> = acked
        .iter()
        .filter_map(|(txid, t)| arrived.get(txid).map(|a| a.saturating_duration_since(*t).as_micros().min(u32::MAX as u128) as u32))
        .collect();
    lags.sort_unstable();
    let missing = n_acked - lags.len();
    if missing > 0 {
        eprintln!("warning: {missing} acknowledged charges had not reached the sim at the end");
    }
    drop(d);
    drop(sim);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((lags, n_acked))
}

pub fn sync(a: SyncArgs) -> CliResult {
    if a.batch.is_empty() || a.batch.contains(&0) || a.records == 0 {
        return Err(Failed("--batch needs sizes ≥ 1 and --records ≥ 1".into()));
    }
    println!("delivery rate: {} CHARGE records waiting, relay → centre-sim on loopback (durable commits on both sides)", a.records);
    println!("{:>6} {:>12} {:>10} {:>10}", "batch", "records/s", "window s", "peak RSS");
    for &b in &a.batch {
        let (n, secs, peak) = rate_run(&a, b)?;
        println!("{b:>6} {:>12.0} {:>10.1} {:>10}", n as f64 / secs.max(1e-9), secs, mib(peak));
    }
    println!();
    println!("end-to-end lag: {} Charge/s for {} s, batch_max_records 500; Charge answered → record committed at the sim", a.lag_rate, a.lag_duration_s);
    println!("{:>10} {:>8} {:>9} {:>9} {:>9}", "flush ms", "charges", "p50 ms", "p99 ms", "max ms");
    for &f in &a.flush_ms {
        let (lags, n) = lag_run(&a, f)?;
        let ms = |v: Option<u32>| v.map(|us| format!("{:.1}", us as f64 / 1000.0)).unwrap_or_else(|| "–".into());
        println!("{f:>10} {n:>8} {:>9} {:>9} {:>9}", ms(percentile(&lags, 0.50)), ms(percentile(&lags, 0.99)), ms(lags.last().copied()));
    }
    Ok(())
}
