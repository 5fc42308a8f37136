//! `vnetd bench sqlite`: the durable-commit ceiling of this machine with the daemon's pragmas.

use super::*;


/// A row shaped like a charge record: a dozen columns, UNIQUE (spid, transaction_id) and one more
/// index, as `Store` would write it.
pub(super) const SQLITE_SCHEMA: &str = "CREATE TABLE charge (
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

pub(super) const SQLITE_INSERT: &str = "INSERT INTO charge (spid, transaction_id, operation, vnet_user_id, service_id, service_item_id, \
     fee_type, fee, batch_count, charge_at, ledger_date, bill_month) VALUES (?1, ?2, 'Charge', ?3, ?4, ?5, '1', 1, 1, ?6, ?7, ?8)";

pub(super) fn sqlite(a: SqliteArgs) -> CliResult {
    let bad_time = |x: f64, min: f64| x.is_nan() || x < min;
    if bad_time(a.duration_s, f64::MIN_POSITIVE) || bad_time(a.warmup_s, 0.0) || a.batch.iter().any(|&b| b == 0 || b > 100_000) {
        return Err(Failed("--duration-s must be > 0, --warmup-s >= 0, --batch values 1..100000".into()));
    }
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let batches: Vec<usize> = std::iter::once(1).chain(a.batch.iter().copied()).collect();
    let mut db = CommitBench::open(&parent)?;
    println!(
        "SQLite {} in {}: journal_mode=WAL, synchronous=FULL, foreign_keys=ON, busy_timeout 10 s; one thread, BEGIN IMMEDIATE … COMMIT; \
         a 13-column charge row with UNIQUE (spid, transaction_id) and one more index; warm-up {} s, measured {} s per run",
        rusqlite::version(),
        db.dir.display(),
        a.warmup_s,
        a.duration_s
    );
    println!();
    println!("| rows/transaction | transactions | rows | commits/s | rows/s | p50 ms | p99 ms | max ms | CPU (cores) | other CPU (cores) | rows in table after |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for b in batches {
        let r = db.run(b, a.warmup_s, a.duration_s)?;
        println!(
            "| {b} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {} |",
            r.txns,
            r.txns * b,
            r.commits_s,
            r.rows_s,
            ms(percentile(&r.lat_us, 0.50)),
            ms(percentile(&r.lat_us, 0.99)),
            ms(r.lat_us.last().copied()),
            r.cpu,
            r.other,
            r.rows_in_table
        );
    }
    println!();
    println!("load average at end: {}", loadavg());
    Ok(())
}

/// The SQLite library's version.
pub(super) fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// One run of [`CommitBench::run`].
pub(super) struct CommitRun {
    pub(super) txns: usize,
    pub(super) commits_s: f64,
    pub(super) rows_s: f64,
    /// Transaction latencies, microseconds, sorted.
    pub(super) lat_us: Vec<u32>,
    /// CPU of this process and of everything else, in cores.
    pub(super) cpu: f64,
    pub(super) other: f64,
    pub(super) rows_in_table: i64,
}

/// A scratch database with the daemon's pragmas and a charge-shaped table, removed on drop.
pub(super) struct CommitBench {
    pub(super) dir: std::path::PathBuf,
    conn: Option<rusqlite::Connection>,
    seq: u64,
}

impl Drop for CommitBench {
    fn drop(&mut self) {
        drop(self.conn.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl CommitBench {
    /// In a new subdirectory of `parent`.
    pub(super) fn open(parent: &std::path::Path) -> Result<CommitBench, Failed> {
        let dir = parent.join(format!("vnetd-bench-sqlite-{}-{:08x}", std::process::id(), subsec_nanos()));
        std::fs::create_dir_all(&dir).map_err(|e| Failed(format!("cannot create {}: {e}", dir.display())))?;
        let mut db = CommitBench { dir, conn: None, seq: 0 };
        let path = db.dir.join("bench.db");
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
        db.conn = Some(conn);
        Ok(db)
    }

    /// Transactions of `b` rows each, one after the other, for `warmup_s` + `duration_s`.
    pub(super) fn run(&mut self, b: usize, warmup_s: f64, duration_s: f64) -> Result<CommitRun, Failed> {
        use rusqlite::params;
        let conn = self.conn.as_ref().expect("open");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let start = Instant::now();
        let (measure_from, end) = (start + Duration::from_secs_f64(warmup_s), start + Duration::from_secs_f64(warmup_s + duration_s));
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
                    self.seq += 1;
                    let seq = self.seq;
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
        Ok(CommitRun { txns, commits_s: txns as f64 / secs, rows_s: (txns * b) as f64 / secs, lat_us, cpu, other, rows_in_table })
    }
}
