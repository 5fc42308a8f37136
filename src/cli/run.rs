//! `vnetd run` and `vnetd healthcheck`.

use super::{CliResult, Failed};
use crate::app::App;
use crate::config::Config;
use crate::runtime::logging::{self, LogTarget};
use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// Log target: as configured, else stderr on a terminal or without a config file, else syslog.
fn log_target(cfg: &Config) -> LogTarget {
    match cfg.log.target.as_deref() {
        Some("syslog") => LogTarget::Syslog,
        Some(_) => LogTarget::Stderr,
        None if cfg.source.is_none() || std::io::stderr().is_terminal() => LogTarget::Stderr,
        None => LogTarget::Syslog,
    }
}

/// Each connection takes a file descriptor and `max_connections` may be in the tens of
/// thousands: the soft RLIMIT_NOFILE is raised to the hard limit (shells often start at 1024), and
/// a limit too low for the cap is named in a warning.
fn raise_nofile(max_connections: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    // The admin listener, the database, logs and outbound calls need some too.
    if soft < max_connections + 128 {
        log::warn!("open-file limit {soft} is below server.max_connections {max_connections} + 128: accept will fail (EMFILE) before the cap; raise LimitNOFILE / ulimit -n");
    }
}

pub fn run(cfg: Config) -> CliResult {
    crate::runtime::signals::block().map_err(Failed)?;
    let target = log_target(&cfg);
    if let Err(e) = logging::switch(target, cfg.level()) {
        log::warn!("cannot log to syslog ({e}); logging to stderr");
        let _ = logging::switch(LogTarget::Stderr, cfg.level());
    }
    raise_nofile(cfg.server.max_connections);
    let clock = cfg.clock();
    if cfg.node.time_offset_s != 0 {
        log::warn!("node time is shifted by time_offset_s = {} s", cfg.node.time_offset_s);
    }
    // The database lock first (before anything is created or served): one daemon per database.
    let db = cfg.storage.path.clone();
    crate::store::create_dir_for(&db).map_err(|e| Failed(e.to_string()))?;
    let _db_lock = crate::store::lock::acquire(&db).map_err(Failed)?;
    status("checking the database (quick_check)");
    let check_goes_on = start_up_check(&cfg)?;
    status("opening the database (migrations)");
    let store = crate::store::Store::open(&db).map_err(|e| Failed(format!("cannot open database {}: {e}", db.display())))?;
    if let Some((rx, started)) = check_goes_on {
        finish_check_in_background(rx, started, db.clone(), cfg.storage.quick_check_s, store.clone());
    }
    let app = Arc::new(App::new(cfg, clock, store.clone()).map_err(Failed)?);
    // Missed rollovers and day closes are done before the first request is served.
    status("running the jobs missed while down");
    crate::jobs::catch_up(&app).map_err(|e| Failed(format!("cannot run the jobs missed while down: {e}")))?;
    // A disk that is full or read-only already: unready from the start, serving reads (logged
    // by store::health, which holds it until a write commits).
    let _ = store.probe_writes();
    let stop_jobs = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jobs = crate::jobs::spawn(app.clone(), stop_jobs.clone()).map_err(|e| Failed(format!("cannot start the job thread: {e}")))?;
    let clock_sync = crate::jobs::clock_sync::spawn(app.clone(), stop_jobs.clone())
        .map_err(|e| Failed(format!("cannot start the clock sync thread: {e}")))?;
    let relay = crate::sync::relay::Relay::start(app.clone()).map_err(|e| Failed(format!("cannot start the outbox relay: {e}")))?;
    let listeners = crate::api::http::Listeners::start(app.clone()).map_err(Failed)?;
    log::info!(
        "vnetd {} serving SOAP on {} and admin on {} (province {}, device {}, database {})",
        env!("CARGO_PKG_VERSION"),
        app.cfg.server.listen,
        app.cfg.server.admin_listen,
        app.cfg.node.province_id,
        app.cfg.node.device_no,
        app.cfg.storage.path.display()
    );
    logging::audit("daemon_start", &[("version", env!("CARGO_PKG_VERSION"))]);
    let serving = format!("serving SOAP on {}, admin on {}", app.cfg.server.listen, app.cfg.server.admin_listen);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&serving)]);
    let watchdog = super::watchdog::spawn(app.clone()).map_err(|e| Failed(format!("cannot start the watchdog thread: {e}")))?;
    let sig = crate::runtime::signals::wait_for_shutdown(|| crate::cli::reload::reload(&app, &listeners));
    log::info!("{sig} received; shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping: finishing requests, committing, checkpointing")]);
    if let Some(w) = watchdog {
        w.stop();
    }
    listeners.stop();
    stop_jobs.store(true, std::sync::atomic::Ordering::Relaxed);
    relay.stop();
    let _ = jobs.join();
    let _ = clock_sync.join();
    store.shutdown();
    logging::audit("daemon_stop", &[("signal", sig.as_str())]);
    Ok(())
}

/// A `STATUS=` line for systemd (`systemctl status vnetd` shows it); nothing without systemd.
fn status(what: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(what)]);
}

/// Databases up to this size are checked whole before the daemon serves (a fraction of a second):
/// a damaged one is refused before anything is served. A larger one is checked in the
/// background while the daemon serves, so that start-up to ready does not grow with the database
/// (docs/capacity.md: 10 million users, 10+ GB, would wait `quick_check_s` at every start), and
/// damage found there makes /readyz unready.
const CHECK_BEFORE_SERVING_BYTES: u64 = 64 << 20;

type CheckResult = crate::store::DbResult<crate::store::QuickCheck>;
type CheckGoesOn = (std::sync::mpsc::Receiver<CheckResult>, std::time::Instant);

/// The start-up `PRAGMA quick_check`, bounded by `storage.quick_check_s` (0: skipped), on a
/// thread of its own: a database up to CHECK_BEFORE_SERVING_BYTES is waited for (refused when
/// damaged); for a larger one the receiver of the result to come is returned.
fn start_up_check(cfg: &Config) -> Result<Option<CheckGoesOn>, Failed> {
    let (db, secs) = (cfg.storage.path.clone(), cfg.storage.quick_check_s);
    if secs == 0 || !db.exists() {
        return Ok(None);
    }
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    let size = [&db, &wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum::<u64>();
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<CheckResult>();
    let path = db.clone();
    let background = size > CHECK_BEFORE_SERVING_BYTES;
    std::thread::Builder::new()
        .name("quick-check".into())
        .spawn(move || {
            let _ = tx.send(crate::store::quick_check(&path, Duration::from_secs(secs)));
        })
        .map_err(|e| Failed(format!("cannot start the start-up quick_check: {e}")))?;
    if background {
        log::info!(
            "start-up quick_check of {} ({} MiB) goes on in the background while the daemon serves (at most storage.quick_check_s = {secs} s)",
            db.display(),
            size >> 20
        );
        return Ok(Some((rx, started)));
    }
    let found = rx.recv().unwrap_or_else(|_| Err(crate::store::DbError::Other("the quick_check thread ended without an answer".into())));
    check_verdict(&db, secs, started, found).map(|()| None).map_err(|msg| {
        let msg = format!("{msg}; refusing to start{}", if msg.contains("damaged") { ": restore a backup (`vnetd restore FILE`)" } else { "" });
        log::error!("{msg}");
        Failed(msg)
    })
}

/// Wait for the start-up quick_check on a thread of its own; damage found makes /readyz unready
/// (as a damaged page met by a request does) until the daemon is restarted.
fn finish_check_in_background(rx: std::sync::mpsc::Receiver<CheckResult>, started: std::time::Instant, db: std::path::PathBuf, secs: u64, store: crate::store::Store) {
    let spawned = std::thread::Builder::new().name("quick-check-wait".into()).spawn(move || {
        let Ok(found) = rx.recv() else { return };
        let damaged = matches!(found, Ok(crate::store::QuickCheck::Damaged(_)));
        if let Err(msg) = check_verdict(&db, secs, started, found) {
            if damaged {
                store.health().record("the start-up quick_check".into(), &crate::store::DbError::damaged(msg));
            } else {
                log::warn!("{msg}");
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot wait for the start-up quick_check: {e}");
    }
}

/// Log what the quick_check found; Err(message) when the database is damaged or cannot be read.
fn check_verdict(db: &std::path::Path, secs: u64, started: std::time::Instant, found: CheckResult) -> Result<(), String> {
    use crate::store::QuickCheck;
    match found {
        Ok(QuickCheck::Ok) => {
            log::info!("start-up quick_check of {}: ok ({} ms)", db.display(), started.elapsed().as_millis());
            Ok(())
        }
        Ok(QuickCheck::OutOfTime) => {
            log::warn!(
                "start-up quick_check of {} stopped after storage.quick_check_s = {secs} s; the part checked is sound (run `vnetd backup` to check it all)",
                db.display()
            );
            Ok(())
        }
        Ok(QuickCheck::Damaged(what)) => Err(format!("database {} is damaged (start-up quick_check: {what})", db.display())),
        Err(e) => Err(format!("cannot check database {}: {e}", db.display())),
    }
}

/// GET /healthz on the admin listener; exit 0 iff it answers 200.
pub fn healthcheck(cfg: &Config) -> CliResult {
    let addr = cfg.admin_addr();
    let fail = |why: String| Failed(format!("unhealthy: {why}"));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| fail(format!("cannot connect to {addr}: {e}")))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    let _ = s.take(4096).read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        println!("healthy");
        Ok(())
    } else {
        Err(fail(head.lines().next().unwrap_or("no answer").to_string()))
    }
}
