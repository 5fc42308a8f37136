//! SQLite storage: WAL, `synchronous=FULL`, one writer thread with group commit, a small pool of
//! read connections. A write returns only after its transaction has committed (spec 10).

pub mod access;
pub mod catalog;
pub mod files;
pub mod charges;
pub mod health;
pub mod idempotency;
pub mod job_state;
pub mod ledger;
pub mod lock;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod peers;
pub mod roaming;
pub mod sso;
pub mod users;
pub(crate) mod migrations;
mod shared;
mod tx;
mod writer;
pub use writer::THREAD_NAME as WRITER_THREAD;
pub use tx::{Read, Write};
pub use shared::{end_shared_reads, share_reads_on_this_thread};
#[cfg(test)]
pub(crate) use tx::memory_db;

/// `EXPLAIN QUERY PLAN` of `sql` in `tx`, one line per step (unit tests of the hot queries: no
/// scan of a table that grows with the province, no sort of all its rows).
#[cfg(test)]
pub(crate) fn query_plan(tx: &Read, sql: &str) -> String {
    let conn = tx.test_conn();
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    for i in 1..=st.parameter_count() {
        st.raw_bind_parameter(i, rusqlite::types::Null).unwrap();
    }
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        out.push(r.get::<_, String>(3).unwrap());
    }
    out.join("\n")
}
pub use writer::{COMMITS, JOBS};

pub use migrations::LATEST as SCHEMA_VERSION;
pub use health::{Health, OpScope};
pub use writer::Writer;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A storage failure. Its Display is for logs; peers only ever see a Result code.
#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    /// The writer thread is gone (shutdown or a fatal error).
    WriterGone,
    /// `open_existing` found no database file.
    Missing(PathBuf),
    Other(String),
}
impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "sqlite: {e}"),
            DbError::WriterGone => write!(f, "database writer stopped"),
            DbError::Missing(p) => write!(f, "no database at {}", p.display()),
            DbError::Other(s) => write!(f, "{s}"),
        }
    }
}
impl std::error::Error for DbError {}
impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}
impl DbError {
    /// Disk-level failures map to -22501, everything else to -22500.
    pub fn is_disk(&self) -> bool {
        use rusqlite::ffi::ErrorCode::*;
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, SystemIoFailure | DiskFull | CannotOpen | ReadOnly | DatabaseCorrupt | NotADatabase))
    }

    /// The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB): it does not heal by itself.
    pub fn is_corrupt(&self) -> bool {
        use rusqlite::ffi::ErrorCode::*;
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if matches!(e.code, DatabaseCorrupt | NotADatabase))
    }

    /// A damaged database found by a check (SQLITE_CORRUPT, with `what` was found).
    pub fn damaged(what: String) -> DbError {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), Some(what)))
    }

    /// A failure of the database itself (disk, corruption, the writer gone), as opposed to a
    /// constraint or a domain error: these make /readyz unready (see `health`).
    pub fn is_failure(&self) -> bool {
        self.is_disk() || matches!(self, DbError::WriterGone)
    }

    /// The disk refused a write: full (SQLITE_FULL), read-only (SQLITE_READONLY), or an I/O
    /// error while writing, syncing, truncating or growing a file (SQLITE_IOERR_WRITE, _FSYNC,
    /// _DIR_FSYNC, _TRUNCATE, _SHMSIZE). Such a failure lasts until a write commits again
    /// (`health`); a read error does not prove the write path either way.
    pub fn is_write_refused(&self) -> bool {
        use rusqlite::ffi::{self, ErrorCode::*};
        let DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) = self else { return false };
        match e.code {
            DiskFull | ReadOnly => true,
            SystemIoFailure => matches!(
                e.extended_code,
                ffi::SQLITE_IOERR_WRITE | ffi::SQLITE_IOERR_FSYNC | ffi::SQLITE_IOERR_DIR_FSYNC | ffi::SQLITE_IOERR_TRUNCATE | ffi::SQLITE_IOERR_SHMSIZE
            ),
            _ => false,
        }
    }

    /// The level to log this failure at where it is met: a refused write at debug (`health`
    /// logs it at error once per episode; a line per request or batch would flood a log that may
    /// be on the full disk), anything else at error.
    pub fn log_level(&self) -> log::Level {
        if self.is_write_refused() {
            log::Level::Debug
        } else {
            log::Level::Error
        }
    }

    /// The same failure for another caller (the writer answers every job of a failed batch with
    /// the batch's error): SQLite's code and message are kept, so each caller still tells a disk
    /// failure (-22501) from any other (-22500). `context` is put before the message.
    pub fn again(&self, context: &str) -> DbError {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, msg)) => {
                let msg = msg.clone().unwrap_or_else(|| e.to_string());
                DbError::Sqlite(rusqlite::Error::SqliteFailure(*e, Some(format!("{context}{msg}"))))
            }
            DbError::WriterGone => DbError::WriterGone,
            other => DbError::Other(format!("{context}{other}")),
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Readers>,
    readers_cv: Condvar,
    health: Arc<Health>,
}

/// The read connections not in use, and how many threads wait for one (a notify is a system
/// call: made only when someone waits).
struct Readers {
    idle: Vec<Connection>,
    waiting: usize,
}

const READERS: usize = 8;
/// WAL pages between automatic checkpoints (SQLite's default: 1000, 4 MB).
const WAL_AUTOCHECKPOINT: i64 = 4000;
/// The writer's page cache in `Store::open_bulk`.
const BULK_CACHE_MIB: i64 = 4096;
/// WAL pages between automatic checkpoints in `Store::open_bulk` (512 MiB): fewer fsyncs of the
/// database file.
const BULK_WAL_AUTOCHECKPOINT: i64 = 131_072;

fn open_conn(path: &Path, flags: OpenFlags) -> DbResult<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Every hot statement stays prepared (the default cache of 16 is smaller than the writer's set).
    conn.set_prepared_statement_cache_capacity(256);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The writer's per-job SAVEPOINT journals stay in memory instead of a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Create the directory of the database at `path` (mode 0700) when it is missing.
pub fn create_dir_for(path: &Path) -> DbResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| DbError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    Ok(())
}

impl Store {
    /// Open (creating the file and its directory with mode 0700/0600 when missing), migrate, start
    /// the writer thread. Only `vnetd run` (and tests and benchmarks) create a database.
    pub fn open(path: &Path) -> DbResult<Store> {
        Store::open_inner(path, true, false)
    }

    /// As `open`, but a missing database (or directory) is `DbError::Missing` and nothing is
    /// created: operator commands use this, so a wrong `--config` cannot make a new empty database.
    pub fn open_existing(path: &Path) -> DbResult<Store> {
        if !path.is_file() {
            return Err(DbError::Missing(path.to_path_buf()));
        }
        Store::open_inner(path, false, false)
    }

    /// As `open_existing`, for generating a large data set in big transactions (`bench scale`),
    /// never for serving: the writer's commits are not synced (a machine crash may lose the last
    /// ones; a process crash loses nothing), its page cache is `BULK_CACHE_MIB` instead of 2 MB,
    /// and its savepoint journals spill to a temporary file past 64 KiB (in memory, each
    /// statement's release walks a job's whole journal: a job's cost grows with the square of
    /// the pages it changes).
    pub fn open_bulk(path: &Path) -> DbResult<Store> {
        if !path.is_file() {
            return Err(DbError::Missing(path.to_path_buf()));
        }
        Store::open_inner(path, false, true)
    }

    fn open_inner(path: &Path, create: bool, bulk: bool) -> DbResult<Store> {
        let create_flag = if create { OpenFlags::SQLITE_OPEN_CREATE } else { OpenFlags::empty() };
        if create {
            create_dir_for(path)?;
        }
        let fresh = !path.exists();
        let mut conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE | create_flag)?;
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Other(format!("cannot switch {} to WAL mode", path.display())));
        }
        migrations::migrate(&mut conn).map_err(DbError::Other)?;
        // A checkpoint runs inside the writer's COMMIT every WAL_AUTOCHECKPOINT pages: fewer,
        // larger checkpoints copy a page changed many times in between (counters, index tails,
        // credit rows) once.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
        if bulk {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "temp_store", "FILE")?;
            conn.pragma_update(None, "cache_size", -BULK_CACHE_MIB * 1024)?;
            conn.pragma_update(None, "wal_autocheckpoint", BULK_WAL_AUTOCHECKPOINT)?;
        }
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?);
        }
        let health = Arc::new(Health::default());
        let writer = Writer::start(conn, health.clone())?;
        Ok(Store {
            inner: Arc::new(StoreInner {
                path: path.to_path_buf(),
                writer,
                readers: Mutex::new(Readers { idle: readers, waiting: 0 }),
                readers_cv: Condvar::new(),
                health,
            }),
        })
    }

    /// What /readyz reports: `Some(reason)` while the database is considered failing.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Commit a small change (the counter row `PROBE_COUNTER`) to learn whether the disk takes
    /// writes. A refusal (disk full, read-only) is then held by `health`, so /readyz is unready
    /// at once rather than at the first refused request, and the writer probes until writes
    /// commit again. `vnetd run` calls it before serving.
    pub fn probe_writes(&self) -> DbResult<()> {
        self.write(|tx| next_counter(tx, PROBE_COUNTER).map(|_| ()))
    }

    /// Ask the writer thread to answer once it is between batches (the watchdog's probe); the
    /// receiver gets `()` when it did.
    pub fn ping_writer(&self) -> DbResult<std::sync::mpsc::Receiver<()>> {
        self.inner.writer.ping()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in the writer's transaction; returns after the commit.
    #[track_caller]
    pub fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Write) -> DbResult<T> + Send + 'static,
    {
        let at = std::panic::Location::caller();
        let out = self.inner.writer.submit(f);
        self.inner.health.observe("write", at, out.as_ref().err());
        out
    }

    /// As `write`, but `f` also decides whether its writes are kept (`true`) or rolled back
    /// (`false`); its answer is returned either way.
    #[track_caller]
    pub fn write_with<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Write) -> DbResult<(T, bool)> + Send + 'static,
    {
        let at = std::panic::Location::caller();
        let out = self.inner.writer.submit_with(f);
        self.inner.health.observe("write", at, out.as_ref().err());
        out
    }

    /// Run `f` on a read connection (a consistent snapshot for the duration of `f` if it opens
    /// a transaction; single statements are always consistent). On a thread that shares reads
    /// (an event loop: `share_reads_on_this_thread`), `f` runs in that thread's shared read
    /// transaction, which has seen every commit of this process acknowledged before the call.
    #[track_caller]
    pub fn read<T>(&self, f: impl FnOnce(&Read) -> DbResult<T>) -> DbResult<T> {
        let at = std::panic::Location::caller();
        // On an event loop: the thread's shared read transaction (`shared`).
        let f = match shared::read(&self.inner, f) {
            Ok(out) => {
                self.inner.health.observe("read", at, out.as_ref().err());
                return out;
            }
            Err(f) => f,
        };
        let conn = {
            let mut pool = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(c) = pool.idle.pop() {
                    break c;
                }
                pool.waiting += 1;
                pool = self.inner.readers_cv.wait(pool).unwrap_or_else(|e| e.into_inner());
                pool.waiting -= 1;
            }
        };
        let out = f(&Read::new(&conn));
        let mut pool = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
        pool.idle.push(conn);
        if pool.waiting > 0 {
            self.inner.readers_cv.notify_one();
        }
        drop(pool);
        self.inner.health.observe("read", at, out.as_ref().err());
        out
    }

    /// Online, consistent copy of the database to `dest` (SQLite backup API).
    pub fn backup_to(&self, dest: &Path) -> DbResult<()> {
        self.read(|tx| {
            let conn = tx.conn();
            let mut out = Connection::open(dest)?;
            {
                let b = rusqlite::backup::Backup::new(conn, &mut out)?;
                b.run_to_completion(256, Duration::from_millis(0), None)?;
            }
            let ok: String = out.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if ok != "ok" {
                return Err(DbError::Other(format!("backup integrity check failed: {ok}")));
            }
            Ok(())
        })
    }

    /// Stop the writer after the jobs already queued (shutdown).
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }
}

/// What the start-up `PRAGMA quick_check` found.
#[derive(Debug, PartialEq, Eq)]
pub enum QuickCheck {
    Ok,
    /// Stopped at the time budget (a large database): what was checked was fine.
    OutOfTime,
    /// The check's first findings (or the error that stopped it: a damaged page).
    Damaged(String),
}

/// `PRAGMA quick_check` of the database at `path` (which exists), interrupted after `budget`
/// (sqlite3_interrupt from a timer thread): O(N) over every page, without the index-content
/// cross-checks of integrity_check. Errors other than damage (cannot open) are `Err`.
pub fn quick_check(path: &Path, budget: Duration) -> DbResult<QuickCheck> {
    let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let handle = conn.get_interrupt_handle();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let timer = std::thread::Builder::new()
        .name("quick-check".into())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(budget) {
                handle.interrupt();
            }
        })
        .map_err(|e| DbError::Other(format!("cannot start the quick_check timer: {e}")))?;
    let found = (|| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("PRAGMA quick_check(20)")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })();
    let _ = done_tx.send(());
    let _ = timer.join();
    match found {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(QuickCheck::Ok),
        Ok(rows) => Ok(QuickCheck::Damaged(rows.join("; "))),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::OperationInterrupted => Ok(QuickCheck::OutOfTime),
        Err(e) => {
            let e = DbError::Sqlite(e);
            if e.is_corrupt() { Ok(QuickCheck::Damaged(e.to_string())) } else { Err(e) }
        }
    }
}

/// Does the database answer a query at all (`/healthz`)?
pub fn answers(tx: &Read) -> DbResult<()> {
    tx.conn().query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// The counter the storage probes bump (`Store::probe_writes`, the writer's probe while writes
/// are refused): how many there were.
pub const PROBE_COUNTER: &str = "storage_probe";

/// Next value of a named counter (inside a write transaction).
pub fn next_counter(tx: &Write, name: &str) -> DbResult<i64> {
    let mut st = tx.conn().prepare_cached(
        "INSERT INTO counter(name, value) VALUES (?1, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
    )?;
    Ok(st.query_row([name], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/v.db");
        {
            let s = Store::open(&path).unwrap();
            let v: i64 = s.read(|c| Ok(c.test_conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)).unwrap();
            assert_eq!(v, SCHEMA_VERSION);
            s.shutdown();
        }
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        }
        let err = Store::open(&path).err().expect("must refuse");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn group_commit_isolates_failed_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.db")).unwrap();
        let mut handles = Vec::new();
        for i in 0..64 {
            let s = s.clone();
            handles.push(std::thread::spawn(move || {
                s.write(move |c| {
                    c.test_conn().execute("INSERT INTO counter(name, value) VALUES (?1, ?2)", rusqlite::params![format!("c{i}"), i])?;
                    if i % 2 == 1 {
                        return Err(DbError::Other("odd".into()));
                    }
                    Ok(i)
                })
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.join().unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 32);
        let n: i64 = s.read(|c| Ok(c.test_conn().query_row("SELECT count(*) FROM counter", [], |r| r.get(0))?)).unwrap();
        assert_eq!(n, 32, "failed jobs must leave nothing behind");
        assert_eq!(s.write(|c| next_counter(c, "seq")).unwrap(), 1);
        assert_eq!(s.write(|c| next_counter(c, "seq")).unwrap(), 2);
    }

    #[test]
    fn write_with_false_rolls_back_but_answers() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.db")).unwrap();
        let got = s.write_with(|c| Ok((next_counter(c, "kept")?, false))).unwrap();
        assert_eq!(got, 1);
        let n: i64 = s.read(|c| Ok(c.test_conn().query_row("SELECT count(*) FROM counter", [], |r| r.get(0))?)).unwrap();
        assert_eq!(n, 0, "a rolled-back job leaves nothing");
        assert_eq!(s.write_with(|c| Ok((next_counter(c, "kept")?, true))).unwrap(), 1);
    }

    #[test]
    fn backup_is_a_consistent_copy() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.db")).unwrap();
        s.write(|c| next_counter(c, "x")).unwrap();
        let dest = dir.path().join("copy.db");
        s.backup_to(&dest).unwrap();
        let c = Connection::open(&dest).unwrap();
        let v: i64 = c.query_row("SELECT value FROM counter WHERE name='x'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1);
    }
}
