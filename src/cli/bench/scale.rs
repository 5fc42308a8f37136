//! `vnetd bench scale`: a province's data at several sizes, and what the daemon does with it.
//!
//! For each size N: users through `vnetd user import` (CSV files of `--import-rows` rows, mixed
//! account types, a few with passwords hashed at the configured Argon2 cost), orders and a charge
//! history through the daemon's own billing code (`scale_gen`), then: start-up to /readyz,
//! GetUserinfo, UserAuth, Charge and OrderQuery p50/p99 for random users of the whole set (each
//! beside the same runs on the smallest size right after, the reference), database size,
//! `vnetd backup`, the month rollover (the node clock moved past the month's end: the daemon
//! catches it up before it serves) and `vnetd restore`, with the RSS of each. docs/capacity.md.

use super::scale_gen::{self as gen, History};
use super::*;
use crate::cli::child::ChildProcess;
use std::path::Path;

#[derive(Args)]
pub struct ScaleArgs {
    /// Sizes in users, measured in this order; the first is also the latency reference measured
    /// again right after each larger size
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    users: Vec<u64>,
    /// Keep the data sets in DIR/users-N and reuse a complete one on the next run (else a
    /// temporary directory, removed at the end)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Share of the users with a monthly order
    #[arg(long = "orders-share", default_value_t = 0.3)]
    orders_share: f64,
    /// Per-use charges per user in the history (the last 60 days)
    #[arg(long = "charges-per-user", default_value_t = 2.0)]
    charges_per_user: f64,
    /// Users with a password (hashed by the import at the configured Argon2 cost, ~70 per second
    /// per core at the production cost); UserAuth logs in as them
    #[arg(long, default_value_t = 2000)]
    passwords: u64,
    /// Days of delivered outbox records kept (the daemon keeps idempotency_days = 90; fewer keep
    /// the largest data set on a small disk)
    #[arg(long = "outbox-days", default_value_t = 7)]
    outbox_days: i64,
    /// Rows per import file (each is one `vnetd user import`)
    #[arg(long = "import-rows", default_value_t = 1_000_000)]
    import_rows: u64,
    /// Client connections for GetUserinfo, Charge and OrderQuery
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Client connections for UserAuth (Argon2 bound: more only queue)
    #[arg(long = "auth-concurrency", default_value_t = 2)]
    auth_concurrency: usize,
    /// Measured seconds per operation (after the warm-up)
    #[arg(long = "duration-s", default_value_t = 10.0)]
    duration_s: f64,
    /// Unmeasured seconds at the start of each operation's run
    #[arg(long = "warmup-s", default_value_t = 1.0)]
    warmup_s: f64,
    /// Starts timed per size (start-up to /readyz); the median is reported
    #[arg(long, default_value_t = 3)]
    starts: usize,
    /// Generate the data sets and stop (no measurements)
    #[arg(long = "generate-only")]
    generate_only: bool,
    /// Start-up and latency only: no backup, month rollover or restore
    #[arg(long = "latency-only")]
    latency_only: bool,
}

const OPS: [&str; 4] = ["GetUserinfo", "UserAuth", "Charge", "OrderQuery"];
const COMPLETE: &str = "complete.txt";
/// Written when the history starts (the import is complete).
const HISTORY_STARTED: &str = "history-started";

/// A generated data set.
struct Dataset {
    n: u64,
    dir: PathBuf,
    /// The lines of COMPLETE: how it was made.
    made: Vec<String>,
}

impl Dataset {
    fn db(&self) -> PathBuf {
        self.dir.join("data/vnetd.db")
    }
}

/// One operation's figures.
#[derive(Clone)]
struct OpFigures {
    op: &'static str,
    conc: usize,
    rate: f64,
    p50: Option<u32>,
    p99: Option<u32>,
    errors: u64,
    refused: usize,
    peak_kib: Option<u64>,
    first_error: Option<String>,
}

/// One size's figures.
struct SizeReport {
    n: u64,
    made: Vec<String>,
    starts_ms: Vec<f64>,
    idle_kib: Option<u64>,
    ops: Vec<OpFigures>,
    reference: Vec<OpFigures>,
    db_bytes: u64,
    backup: Option<(f64, Option<u64>, u64)>,
    rollover: Option<(f64, String, Option<u64>)>,
    restore: Option<(f64, Option<u64>)>,
}

pub(super) fn scale(a: ScaleArgs) -> CliResult {
    if a.users.is_empty() || a.users.iter().any(|&n| !(100..=100_000_000).contains(&n)) {
        return Err(Failed("--users: sizes from 100 to 100000000".into()));
    }
    if !(0.0..=1.0).contains(&a.orders_share) || !(0.0..=100.0).contains(&a.charges_per_user) || a.import_rows == 0 || a.starts == 0 {
        return Err(Failed("--orders-share 0..1, --charges-per-user 0..100, --import-rows and --starts > 0".into()));
    }
    let temp = a.dir.is_none();
    let base = a.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("vnetd-scale-{}-{:08x}", std::process::id(), subsec_nanos())));
    std::fs::create_dir_all(&base)?;
    let result = run_sizes(&a, &base);
    if temp {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

fn run_sizes(a: &ScaleArgs, base: &Path) -> CliResult {
    let mut sets = Vec::new();
    for &n in &a.users {
        sets.push(prepare(a, base, n)?);
    }
    if a.generate_only {
        return Ok(());
    }
    let load = LoadArgs { duration_s: a.duration_s, warmup_s: a.warmup_s, concurrency: vec![a.concurrency], honour_retry_after: false };
    check_load(&load)?;
    let mut reports = Vec::new();
    for (i, ds) in sets.iter().enumerate() {
        let mut r = measure(a, ds, &load)?;
        if i > 0 {
            eprintln!("reference: the latency runs on {} users again", sets[0].n);
            r.reference = latency_only(a, &sets[0], &load)?;
        }
        print_size(&r);
        reports.push(r);
    }
    print_summary(&reports);
    Ok(())
}

/// A config on free ports for the data set's database; `node` are extra `[node]` lines.
fn write_config(ds: &Dataset, name: &str, level: &str, node: &str) -> Result<(PathBuf, Config), Failed> {
    let (port, admin) = (free_port()?, free_port()?);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[storage]\npath = \"{}\"\n[log]\ntarget = \"stderr\"\nlevel = \"{level}\"\n[node]\n{node}",
        ds.db().display()
    );
    let path = ds.dir.join(name);
    std::fs::write(&path, &text)?;
    Ok((path, Config::parse(&text).map_err(Failed)?))
}

/// A `vnetd` command on `cfg`, timed, with its peak RSS (VmHWM read every 50 ms while it runs).
fn timed_cli(cfg: &Path, args: &[&str]) -> Result<(f64, Option<u64>, String), Failed> {
    let t = Instant::now();
    let c = Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = c.id();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = None;
            while !stop.load(Ordering::Relaxed) {
                if let Some(k) = proc_status_kib(pid, "VmHWM") {
                    peak = Some(k);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let out = c.wait_with_output()?;
    stop.store(true, Ordering::Relaxed);
    let peak = peak.join().unwrap_or(None);
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Failed(format!("vnetd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok((secs, peak, String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// Does /readyz answer 200?
fn ready(cfg: &Config) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&cfg.admin_addr(), Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// A daemon on a data set (its log is the data set's `vnetd.log`); stopped on drop.
struct Running {
    proc: Option<ChildProcess>,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, ChildProcess::pid)
    }

    /// SIGTERM and wait (a clean stop checkpoints the WAL into the database).
    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(600));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Start `vnetd run` on the config `cfg_path` and time it from the spawn to /readyz 200.
fn start_timed(ds: &Dataset, cfg_path: &Path, cfg: &Config, limit: Duration) -> Result<(Running, f64), Failed> {
    let log = ds.dir.join("vnetd.log");
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--config").arg(cfg_path).arg("run");
    let t = Instant::now();
    let mut p = ChildProcess::spawn(cmd, &log)?;
    loop {
        if ready(cfg) {
            break;
        }
        if let Some(st) = p.try_wait() {
            return Err(Failed(format!("the daemon exited during its start ({st}); log:\n{}", log_tail(&log))));
        }
        if t.elapsed() > limit {
            return Err(Failed(format!("the daemon was not ready within {} s; log:\n{}", limit.as_secs(), log_tail(&log))));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((Running { proc: Some(p), log }, t.elapsed().as_secs_f64()))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn db_bytes(db: &Path) -> u64 {
    file_size(db) + file_size(&PathBuf::from(format!("{}-wal", db.display())))
}

/// The data set of N users in `base`: reused when complete, else made anew.
fn prepare(a: &ScaleArgs, base: &Path, n: u64) -> Result<Dataset, Failed> {
    let dir = base.join(format!("users-{n}"));
    if let Ok(text) = std::fs::read_to_string(dir.join(COMPLETE)) {
        eprintln!("{n} users: reusing {}", dir.display());
        return Ok(Dataset { n, dir, made: text.lines().map(String::from).collect() });
    }
    let mut ds = Dataset { n, dir, made: Vec::new() };
    let db = ds.db();
    // An import interrupted (by a stop of the bench) goes on from the first user it lacks: the
    // users come in CSV order, one committed chunk at a time; so does the history (`gen::history`).
    let imported = |db: &Path, province: &str| {
        let has = |i: u64| Ok(crate::store::files::read_beside(db, |tx| crate::store::users::by_id(tx, &gen::user_id(province, i))).ok().flatten().is_some());
        gen::first_absent(n, has).unwrap_or(0)
    };
    let mut from = if db.is_file() { imported(&db, &Config::default().node.province_id) } else { 0 };
    if from == 0 {
        let _ = std::fs::remove_dir_all(&ds.dir);
    }
    std::fs::create_dir_all(&ds.dir)?;
    eprintln!("{n} users: generating in {}", ds.dir.display());
    let (cfg_path, cfg) = write_config(&ds, "vnetd.toml", "warn", "")?;
    if from == 0 {
        // The daemon makes the database (schema, job markers) as at an installation.
        start_timed(&ds, &cfg_path, &cfg, Duration::from_secs(60))?.0.stop();
        timed_cli(&cfg_path, &["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"])?;
        let cat = ds.dir.join("catalog.toml");
        std::fs::write(&cat, gen::catalogue())?;
        timed_cli(&cfg_path, &["catalog", "import", &cat.to_string_lossy()])?;
    } else {
        eprintln!("  resuming the import at user {from}");
    }

    // Users through the import, a file at a time.
    let stride = gen::password_stride(n, a.passwords);
    let (mut import_s, mut import_peak, first) = (0.0, 0u64, from);
    while from < n {
        let to = (from + a.import_rows).min(n);
        let part = ds.dir.join(format!("users-{from}.csv"));
        gen::write_csv(&part, from, to, stride)?;
        let (secs, peak, _) = timed_cli(&cfg_path, &["user", "import", &part.to_string_lossy()])?;
        let _ = std::fs::remove_file(&part);
        import_s += secs;
        import_peak = import_peak.max(peak.unwrap_or(0));
        eprintln!("  imported users {from}..{to} in {secs:.1} s");
        from = to;
    }
    let with_pw = n.div_ceil(stride);
    // The VNetUserIDs the load generator computes must be the import's.
    for i in [0, n - 1] {
        let u = crate::store::files::read_beside(&db, |tx| crate::store::users::by_id(tx, &gen::user_id(&cfg.node.province_id, i))).map_err(|e| Failed(e.to_string()))?;
        if u.map(|u| u.account) != Some(gen::account(i).1) {
            return Err(Failed(format!("user {i} of the CSV did not get VNetUserID {}", gen::user_id(&cfg.node.province_id, i))));
        }
    }

    // Orders and charges through the billing code, with the daemon stopped (its lock held).
    let charges = (n as f64 * a.charges_per_user).round() as u64;
    let orders = (n as f64 * a.orders_share).round() as u64;
    std::fs::write(ds.dir.join(HISTORY_STARTED), "")?;
    let history: History = {
        let _lock = crate::store::lock::acquire(&db).map_err(Failed)?;
        let store = crate::store::Store::open_bulk(&db).map_err(|e| Failed(e.to_string()))?;
        let h = gen::history(&store, &cfg, n, charges, orders, a.outbox_days);
        store.shutdown();
        h?
    };
    ds.made = vec![
        format!("users\t{n}"),
        format!("users with a password\t{with_pw}"),
        if first == n {
            "import\tin an earlier run (resumed after it)".to_string()
        } else {
            format!(
                "import\t{import_s:.1} s ({:.0} users/s{}), peak RSS {} MiB",
                (n - first) as f64 / import_s.max(1e-9),
                if first > 0 { format!("; the last {} users, after a resume", n - first) } else { String::new() },
                import_peak / 1024
            )
        },
        format!("orders\t{}", history.orders),
        format!("charges\t{}", history.charges + history.orders),
        format!("refused by the credit rules while generating\t{}", history.refused),
        format!("outbox rows kept (delivered, last {} days)\t{}", a.outbox_days, history.outbox_kept),
        format!(
            "history\t{:.1} s ({:.0} events/s{})",
            history.secs,
            history.made_now() as f64 / history.secs.max(1e-9),
            if history.resumed > 0 { format!("; the last {} events, after a resume", history.made_now()) } else { String::new() }
        ),
        format!("database after generation\t{:.2} GB", db_bytes(&db) as f64 / 1e9),
    ];
    std::fs::write(ds.dir.join(COMPLETE), ds.made.join("\n") + "\n")?;
    for l in &ds.made {
        eprintln!("  {}", l.replace('\t', ": "));
    }
    Ok(ds)
}

/// Requests of one operation for random users of the whole data set.
struct ScaleReq {
    op: &'static str,
    host: String,
    key: TdesKey,
    clock: Clock,
    province: String,
    n: u64,
    stride: u64,
    seq: std::sync::atomic::AtomicU64,
    /// Makes this run's TransactionIDs and user picks its own.
    run: u64,
}

impl ScaleReq {
    #[allow(clippy::needless_update)]
    fn build(&self) -> Vec<u8> {
        use crate::spec::incoming::{Charge, GetUserinfo, OrderQuery, UserAuth};
        let s = self.seq.fetch_add(1, Ordering::Relaxed);
        let r = gen::mix(s ^ self.run);
        let user = gen::user_id(&self.province, r % self.n);
        let body = match self.op {
            "UserAuth" => {
                let i = (r % self.n.div_ceil(self.stride)) * self.stride;
                let (at, account) = gen::account(i);
                UserAuth::Request { AccountType: at.into(), Account: account, Password: self.key.encrypt_b64(gen::password(i).as_bytes()), ..Default::default() }.values()
            }
            "Charge" => Charge::Request {
                SPID: SP_ID.into(),
                ServiceID: SERVICE_ID.into(),
                ServiceItemID: PER_USE_ITEM.into(),
                VNetUserID: user,
                Fee: gen::PER_USE_PRICE.to_string(),
                BatchCount: Some("1".into()),
                TransactionID: format!("sc{:08x}-{s}", self.run & 0xffff_ffff),
                ..Default::default()
            }
            .values(),
            "OrderQuery" => OrderQuery::Request { VNetUserID: user, ..Default::default() }.values(),
            _ => GetUserinfo::Request { VNetUserID: user }.values(),
        };
        signed_request(&self.host, &self.key, self.op, body, &self.clock.now_ts(), self.op == "Charge")
    }
}

/// The four operations against the running daemon `d` of the data set.
fn latency(a: &ScaleArgs, ds: &Dataset, cfg: &Config, d: &Running, load: &LoadArgs) -> Result<Vec<OpFigures>, Failed> {
    let addr = cfg.listen_addr();
    let pid = d.pid();
    let run = gen::mix(u64::from(subsec_nanos()) ^ u64::from(std::process::id()) << 32);
    let mut out = Vec::new();
    for op in OPS {
        let req = Arc::new(ScaleReq {
            op,
            host: addr.to_string(),
            key: TdesKey::from_hex(SP_KEY, IV).expect("valid key"),
            clock: cfg.clock(),
            province: cfg.node.province_id.clone(),
            n: ds.n,
            stride: gen::password_stride(ds.n, a.passwords),
            seq: std::sync::atomic::AtomicU64::new(0),
            run,
        });
        // The daemon's peer cache may take a second to know the SP: probe first.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body, _) = Conn::open(addr)?.exchange(&req.build())?;
            if soap_ok(status, &body) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Failed(format!("{op} probe failed: HTTP {status}: {}", String::from_utf8_lossy(&body))));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let conc = if op == "UserAuth" { a.auth_concurrency } else { a.concurrency };
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let build: Arc<Build> = {
            let req = req.clone();
            Arc::new(move || req.build())
        };
        let res = run_load(addr, conc, load, build, Arc::new(soap_ok), &[pid], true);
        if let Some(e) = &res.first_error {
            eprintln!("first error ({op}): {e}");
        }
        out.push(OpFigures {
            op,
            conc,
            rate: res.rate(),
            p50: res.pct(0.50),
            p99: res.pct(0.99),
            errors: res.errors,
            refused: res.refused_us.len(),
            peak_kib: proc_status_kib(pid, "VmHWM"),
            first_error: res.first_error.clone(),
        });
    }
    Ok(out)
}

/// Start the data set's daemon, run the latency figures, stop it (the reference runs).
fn latency_only(a: &ScaleArgs, ds: &Dataset, load: &LoadArgs) -> Result<Vec<OpFigures>, Failed> {
    let (cfg_path, cfg) = write_config(ds, "vnetd.toml", "warn", "")?;
    let (d, _) = start_timed(ds, &cfg_path, &cfg, Duration::from_secs(600))?;
    if db_bytes(&ds.db()) > 64 << 20 {
        std::thread::sleep(Duration::from_secs(cfg.storage.quick_check_s + 1));
    }
    latency(a, ds, &cfg, &d, load)
}

/// Unix time of the node clock at the start of the next month.
fn next_month_start(cfg: &Config) -> i64 {
    let clock = cfg.clock();
    let cal = crate::domain::calendar::Cal::new(clock.tz());
    cal.month_start(cal.month(clock.unix()).next())
}

fn measure(a: &ScaleArgs, ds: &Dataset, load: &LoadArgs) -> Result<SizeReport, Failed> {
    let db = ds.db();
    let (cfg_path, cfg) = write_config(ds, "vnetd.toml", "warn", "")?;
    let mut r = SizeReport {
        n: ds.n,
        made: ds.made.clone(),
        starts_ms: Vec::new(),
        idle_kib: None,
        ops: Vec::new(),
        reference: Vec::new(),
        db_bytes: db_bytes(&db),
        backup: None,
        rollover: None,
        restore: None,
    };
    // Start-up to ready, `starts` times; the last daemon stays for the load.
    let mut d = None;
    for i in 0..a.starts {
        let (mut dd, secs) = start_timed(ds, &cfg_path, &cfg, Duration::from_secs(600))?;
        r.starts_ms.push(secs * 1e3);
        if i + 1 < a.starts {
            dd.stop();
        } else {
            d = Some(dd);
        }
    }
    let mut d = d.expect("at least one start");
    // A database over 64 MiB is quick_checked in the background for up to quick_check_s after
    // the start: the latency runs come after it.
    let wait = if db_bytes(&db) > 64 << 20 { Duration::from_secs(cfg.storage.quick_check_s + 1) } else { Duration::from_millis(300) };
    std::thread::sleep(wait);
    r.idle_kib = proc_status_kib(d.pid(), "VmRSS");
    eprintln!("{} users: start-up {:?} ms; latency runs", ds.n, r.starts_ms.iter().map(|m| m.round()).collect::<Vec<_>>());
    r.ops = latency(a, ds, &cfg, &d, load)?;
    if a.latency_only {
        d.stop();
        r.db_bytes = db_bytes(&db);
        return Ok(r);
    }

    // Backup while the daemon serves.
    let backup = ds.dir.join("backup.db");
    let _ = std::fs::remove_file(&backup);
    eprintln!("{} users: backup", ds.n);
    let (secs, peak, _) = timed_cli(&cfg_path, &["backup", &backup.to_string_lossy()])?;
    r.backup = Some((secs, peak, file_size(&backup)));
    d.stop();
    r.db_bytes = db_bytes(&db);

    // The month rollover: the node clock just past the end of the month; the daemon rolls the
    // orders over (and closes the days) before it serves.
    let offset = next_month_start(&cfg) + 60 - cfg.clock().unix();
    let (roll_path, roll_cfg) = write_config(ds, "vnetd-rollover.toml", "info", &format!("time_offset_s = {offset}\n"))?;
    eprintln!("{} users: month rollover", ds.n);
    let log_len = file_size(&d.log);
    let (mut dr, secs) = start_timed(ds, &roll_path, &roll_cfg, Duration::from_secs(6 * 3600))?;
    let peak = proc_status_kib(dr.pid(), "VmHWM");
    dr.stop();
    let log = std::fs::read_to_string(&dr.log).unwrap_or_default();
    let what = log
        .get(log_len as usize..)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.find("monthly rollover").map(|i| l[i..].to_string()))
        .collect::<Vec<_>>()
        .join("; ");
    let base_ms = r.starts_ms.iter().cloned().fold(f64::INFINITY, f64::min);
    r.rollover = Some((secs - base_ms / 1e3, what, peak));

    // Restore the backup (the rolled-over database goes first: two copies fit the disk, three
    // might not).
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    eprintln!("{} users: restore", ds.n);
    let (secs, peak, _) = timed_cli(&cfg_path, &["restore", &backup.to_string_lossy()])?;
    r.restore = Some((secs, peak));
    let _ = std::fs::remove_file(&backup);
    Ok(r)
}

fn ms_or_dash(us: Option<u32>) -> String {
    us.map_or("–".into(), |u| format!("{:.2}", u as f64 / 1e3))
}

fn ratio(a: Option<u32>, b: Option<u32>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
        _ => "–".into(),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn print_size(r: &SizeReport) {
    println!();
    println!("## {} users", r.n);
    for l in &r.made {
        println!("- {}", l.replace('\t', ": "));
    }
    println!("- start-up to /readyz: {} ms (median of {}: {:.0} ms); daemon RSS idle {} MiB", r.starts_ms.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", "), r.starts_ms.len(), median(&r.starts_ms), mib(r.idle_kib));
    println!();
    println!("| op | connections | req/s | p50 ms | p99 ms | errors | 503 | peak RSS MiB | p50 / ref | p99 / ref |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &r.ops {
        let rf = r.reference.iter().find(|x| x.op == o.op);
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            o.op,
            o.conc,
            o.rate,
            ms_or_dash(o.p50),
            ms_or_dash(o.p99),
            o.errors,
            o.refused,
            mib(o.peak_kib),
            rf.map_or("–".into(), |x| ratio(o.p50, x.p50)),
            rf.map_or("–".into(), |x| ratio(o.p99, x.p99)),
        );
        if let Some(e) = &o.first_error {
            println!("|   first error: {} |", e.chars().take(200).collect::<String>().replace('|', "/"));
        }
    }
    for o in &r.reference {
        println!("| {} (reference: the smallest size, right after) | {} | {:.0} | {} | {} | {} | {} | {} | | |", o.op, o.conc, o.rate, ms_or_dash(o.p50), ms_or_dash(o.p99), o.errors, o.refused, mib(o.peak_kib));
    }
    println!();
    println!("- database: {:.2} GB", r.db_bytes as f64 / 1e9);
    if let Some((s, peak, bytes)) = r.backup {
        println!("- backup (online, with integrity_check of the copy): {s:.1} s, {:.2} GB, peak RSS {} MiB", bytes as f64 / 1e9, mib(peak));
    }
    if let Some((s, what, peak)) = &r.rollover {
        println!("- month rollover (start-up with the clock past the month's end, less the plain start-up): {s:.1} s: {what}; daemon peak RSS {} MiB", mib(*peak));
    }
    if let Some((s, peak)) = r.restore {
        println!("- restore: {s:.1} s, peak RSS {} MiB", mib(peak));
    }
}

fn print_summary(reports: &[SizeReport]) {
    println!();
    println!("## Summary");
    println!();
    let sizes: Vec<String> = reports.iter().map(|r| r.n.to_string()).collect();
    println!("| users | {} |", sizes.join(" | "));
    println!("|---|{}", "---:|".repeat(reports.len()));
    let row = |name: &str, f: &dyn Fn(&SizeReport) -> String| println!("| {name} | {} |", reports.iter().map(f).collect::<Vec<_>>().join(" | "));
    for op in OPS {
        row(&format!("{op} p50 / p99 ms"), &|r| {
            r.ops.iter().find(|o| o.op == op).map_or("–".into(), |o| format!("{} / {}", ms_or_dash(o.p50), ms_or_dash(o.p99)))
        });
        row(&format!("{op} p50 / p99 vs reference"), &|r| {
            match (r.ops.iter().find(|o| o.op == op), r.reference.iter().find(|o| o.op == op)) {
                (Some(o), Some(x)) => format!("{} / {}", ratio(o.p50, x.p50), ratio(o.p99, x.p99)),
                _ => "(reference)".into(),
            }
        });
    }
    row("database GB", &|r| format!("{:.2}", r.db_bytes as f64 / 1e9));
    row("start-up to ready ms (median)", &|r| format!("{:.0}", median(&r.starts_ms)));
    row("backup s", &|r| r.backup.map_or("–".into(), |b| format!("{:.1}", b.0)));
    row("restore s", &|r| r.restore.map_or("–".into(), |b| format!("{:.1}", b.0)));
    row("month rollover s", &|r| r.rollover.as_ref().map_or("–".into(), |b| format!("{:.1}", b.0)));
    row("daemon RSS idle / peak MiB", &|r| {
        let peak = r.ops.iter().filter_map(|o| o.peak_kib).chain(r.rollover.as_ref().and_then(|x| x.2)).max();
        format!("{} / {}", mib(r.idle_kib), mib(peak))
    });
}
