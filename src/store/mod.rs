//! SQLite storage: WAL, `synchronous=FULL`, one writer thread with group commit, a small pool of
//! read connections. A write returns only after its transaction has committed (spec 10).

pub(crate) mod migrations;
mod writer;
pub use writer::{COMMITS, JOBS};

pub use migrations::LATEST as SCHEMA_VERSION;
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
    Other(String),
}
impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "sqlite: {e}"),
            DbError::WriterGone => write!(f, "database writer stopped"),
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
}

pub type DbResult<T> = Result<T, DbError>;

#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    readers_cv: Condvar,
}

const READERS: usize = 8;

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

impl Store {
    /// Open (creating the file and its directory with mode 0700/0600 when missing), migrate, start
    /// the writer thread.
    pub fn open(path: &Path) -> DbResult<Store> {
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
        let fresh = !path.exists();
        let mut conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Other(format!("cannot switch {} to WAL mode", path.display())));
        }
        migrations::migrate(&mut conn).map_err(DbError::Other)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?);
        }
        let writer = Writer::start(conn)?;
        Ok(Store {
            inner: Arc::new(StoreInner {
                path: path.to_path_buf(),
                writer,
                readers: Mutex::new(readers),
                readers_cv: Condvar::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in the writer's transaction; returns after the commit.
    pub fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.inner.writer.submit(f)
    }

    /// As `write`, but `f` also decides whether its writes are kept (`true`) or rolled back
    /// (`false`); its answer is returned either way.
    pub fn write_with<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<(T, bool)> + Send + 'static,
    {
        self.inner.writer.submit_with(f)
    }

    /// Run `f` on a read connection (a consistent snapshot for the duration of `f` if it opens
    /// a transaction; single statements are always consistent).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> DbResult<T>) -> DbResult<T> {
        let conn = {
            let mut pool = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self.inner.readers_cv.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
        };
        let out = f(&conn);
        self.inner.readers.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        self.inner.readers_cv.notify_one();
        out
    }

    /// Online, consistent copy of the database to `dest` (SQLite backup API).
    pub fn backup_to(&self, dest: &Path) -> DbResult<()> {
        self.read(|conn| {
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

/// Next value of a named counter (inside a write transaction).
pub fn next_counter(conn: &Connection, name: &str) -> DbResult<i64> {
    let mut st = conn.prepare_cached(
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
            let v: i64 = s.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)).unwrap();
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
                    c.execute("INSERT INTO counter(name, value) VALUES (?1, ?2)", rusqlite::params![format!("c{i}"), i])?;
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
        let n: i64 = s.read(|c| Ok(c.query_row("SELECT count(*) FROM counter", [], |r| r.get(0))?)).unwrap();
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
        let n: i64 = s.read(|c| Ok(c.query_row("SELECT count(*) FROM counter", [], |r| r.get(0))?)).unwrap();
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
