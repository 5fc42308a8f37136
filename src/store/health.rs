//! What `/readyz` knows about the database: its failures (an I/O error, a full disk, a
//! read-only file, a damaged page, the writer gone — not a constraint or a domain error), which
//! operation met them and when.
//!
//! The rule (README, "After a database failure"), by kind of failure:
//! - a damaged database (SQLITE_CORRUPT, SQLITE_NOTADB) keeps `/readyz` at 503 until the daemon
//!   is restarted (it does not heal: restore a backup);
//! - a refused write (disk full, read-only, an error writing or syncing a file:
//!   `DbError::is_write_refused`) keeps it at 503 until a write transaction commits again. While
//!   one is held the writer thread commits a small probe every `PROBE_EVERY` between batches
//!   (`writer.rs`), so the node is ready again about a second after space is freed or
//!   the file is writable again, without a restart and without traffic (an unready node gets
//!   none from its load balancer). A timed hold would be wrong both ways: ready while the disk
//!   is still full, or unready long after it was freed;
//! - any other failure (a read error, the writer gone) keeps it at 503 for `IO_ERROR_HOLD`
//!   after the last one. Other accesses that succeed meanwhile do not clear it: a bad page in one
//!   table leaves every other table readable, so "the last access succeeded" would hide it at
//!   once; a commit proves the write path, not a page it did not read.
//!
//! The first failure of each kind after a healthy period is logged at error with the operation,
//! and the end of a refused-write period at warn; other failures are logged where they happen
//! (refused writes at debug there: one line per request would flood a log that may well be on
//! the full disk).

use super::DbError;
use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an I/O failure that is neither a damaged file nor a refused write keeps /readyz
/// unready after the last one.
pub const IO_ERROR_HOLD: Duration = Duration::from_secs(60);

/// While a refused write is held, the writer commits a probe this often.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static OPERATION: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Names the operation this thread is serving (a SOAP operation) for database failure reports,
/// until dropped.
pub struct OpScope {
    prev: Option<&'static str>,
}

impl OpScope {
    pub fn enter(name: &'static str) -> OpScope {
        OpScope { prev: OPERATION.with(|c| c.replace(Some(name))) }
    }
}

impl Drop for OpScope {
    fn drop(&mut self) {
        OPERATION.with(|c| c.set(self.prev));
    }
}

struct Failure {
    what: String,
    error: String,
    at: Instant,
}

/// A damaged file (sticky) or another I/O failure (held for `IO_ERROR_HOLD`).
struct IoFailure {
    last: Failure,
    corrupt: bool,
}

impl IoFailure {
    fn active(&self) -> bool {
        self.corrupt || self.last.at.elapsed() < IO_ERROR_HOLD
    }
}

/// Refused writes since the last commit: the latest, and when the first came.
struct WriteFailure {
    last: Failure,
    since: Instant,
}

#[derive(Default)]
struct Held {
    io: Option<IoFailure>,
    write: Option<WriteFailure>,
}

#[derive(Default)]
pub struct Health {
    /// Set once any failure was recorded (the fast path of `unready` is one atomic load).
    seen: AtomicBool,
    /// A refused write is held (the writer's probe and the relay look at this; set and cleared
    /// under `held`'s lock).
    write_refused: AtomicBool,
    held: Mutex<Held>,
}

impl Health {
    /// After a database access `kind` ("read", "write") called at `at`: record `err` if it is a
    /// failure of the database itself.
    pub fn observe(&self, kind: &str, at: &Location<'_>, err: Option<&DbError>) {
        let Some(e) = err.filter(|e| e.is_failure()) else { return };
        let site = format!("{kind} at {}:{}", at.file(), at.line());
        let what = match OPERATION.with(Cell::get) {
            Some(op) => format!("{op} ({site})"),
            None => match std::thread::current().name() {
                Some(t) => format!("{site}, thread {t}"),
                None => site,
            },
        };
        self.record(what, e);
    }

    /// Record a failure `e` of the database met by `what` (an operation, a code site, "commit").
    pub fn record(&self, what: String, e: &DbError) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let error = e.to_string();
        if e.is_write_refused() {
            let since = match &held.write {
                Some(w) => w.since,
                None => {
                    log::error!(
                        "database write refused in {what}: {error}; writes fail and /readyz answers 503 until a write commits again (tried every {} s)",
                        PROBE_EVERY.as_secs()
                    );
                    now
                }
            };
            held.write = Some(WriteFailure { last: Failure { what, error, at: now }, since });
            self.write_refused.store(true, Ordering::Relaxed);
        } else {
            let was_active = held.io.as_ref().is_some_and(IoFailure::active);
            // A damaged database stays damaged.
            let corrupt = e.is_corrupt() || held.io.as_ref().is_some_and(|f| f.corrupt);
            if !was_active {
                let until = if corrupt {
                    "until vnetd is restarted (the database file is damaged: stop, `vnetd restore` a backup, start)".to_string()
                } else {
                    format!("for {} s after the last such error", IO_ERROR_HOLD.as_secs())
                };
                log::error!("database error in {what}: {error}; /readyz answers 503 {until}");
            }
            held.io = Some(IoFailure { last: Failure { what, error, at: now }, corrupt });
        }
        self.seen.store(true, Ordering::Relaxed);
    }

    /// A write transaction that changed rows committed: the disk takes writes again, so a held
    /// refused write ends. One atomic load when none is held.
    pub fn committed(&self) {
        if !self.write_refused.load(Ordering::Relaxed) {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = held.write.take() {
            log::warn!(
                "database writes commit again, {:.1} s after the first refusal (last: {} in {})",
                w.since.elapsed().as_secs_f64(),
                w.last.error,
                w.last.what
            );
        }
        self.write_refused.store(false, Ordering::Relaxed);
    }

    /// Is a refused write held (writes are failing now)?
    pub fn write_refused(&self) -> bool {
        self.write_refused.load(Ordering::Relaxed)
    }

    /// `Some(reason)` while /readyz must answer 503 for the database.
    pub fn unready(&self) -> Option<String> {
        if !self.seen.load(Ordering::Relaxed) {
            return None;
        }
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let io = held.io.as_ref().filter(|f| f.active());
        if let Some(f) = io.filter(|f| f.corrupt) {
            return Some(format!("database damaged in {} {} s ago: {}", f.last.what, f.last.at.elapsed().as_secs(), f.last.error));
        }
        if let Some(w) = &held.write {
            return Some(format!(
                "database write refused in {} {} s ago: {} (refused for {} s; retried every {} s)",
                w.last.what,
                w.last.at.elapsed().as_secs(),
                w.last.error,
                w.since.elapsed().as_secs(),
                PROBE_EVERY.as_secs()
            ));
        }
        io.map(|f| format!("database error in {} {} s ago: {}", f.last.what, f.last.at.elapsed().as_secs(), f.last.error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt() -> DbError {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None))
    }

    #[test]
    fn only_failures_of_the_database_count_and_corruption_sticks() {
        let h = Health::default();
        h.observe("read", Location::caller(), Some(&DbError::Other("a domain error".into())));
        assert!(h.unready().is_none());
        {
            let _op = OpScope::enter("UserAuth");
            h.observe("read", Location::caller(), Some(&corrupt()));
        }
        let why = h.unready().expect("unready after a damaged page");
        assert!(why.contains("UserAuth (read at src/store/health.rs:"), "{why}");
        h.observe("read", Location::caller(), None);
        assert!(h.unready().is_some(), "a later success does not hide a damaged page");
        h.committed();
        assert!(h.unready().unwrap().starts_with("database damaged"), "a commit does not hide a damaged page either");
    }

    fn sqlite(code: i32) -> DbError {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
    }

    #[test]
    fn a_refused_write_is_held_until_a_commit_and_a_read_error_for_the_hold() {
        use rusqlite::ffi;
        for code in [ffi::SQLITE_FULL, ffi::SQLITE_READONLY, ffi::SQLITE_IOERR_WRITE, ffi::SQLITE_IOERR_FSYNC, ffi::SQLITE_IOERR_SHMSIZE] {
            assert!(sqlite(code).is_write_refused(), "{code}");
            assert!(sqlite(code).is_disk(), "{code}");
        }
        for code in [ffi::SQLITE_IOERR_READ, ffi::SQLITE_IOERR, ffi::SQLITE_CORRUPT, ffi::SQLITE_CONSTRAINT, ffi::SQLITE_BUSY] {
            assert!(!sqlite(code).is_write_refused(), "{code}");
        }
        let h = Health::default();
        h.committed();
        assert!(!h.write_refused() && h.unready().is_none());
        h.observe("write", Location::caller(), Some(&sqlite(ffi::SQLITE_FULL)));
        assert!(h.write_refused());
        let why = h.unready().expect("unready while writes are refused");
        assert!(why.starts_with("database write refused in write at src/store/health.rs:"), "{why}");
        h.observe("read", Location::caller(), None);
        assert!(h.unready().is_some(), "a read proves nothing about writes");
        h.committed();
        assert!(!h.write_refused() && h.unready().is_none(), "a commit ends it: {:?}", h.unready());

        // A read error stays for IO_ERROR_HOLD whatever commits meanwhile; a refused write on
        // top of it is reported first and ends alone.
        h.observe("read", Location::caller(), Some(&sqlite(ffi::SQLITE_IOERR_READ)));
        assert!(!h.write_refused());
        h.record("COMMIT".into(), &sqlite(ffi::SQLITE_IOERR_WRITE));
        assert!(h.unready().unwrap().starts_with("database write refused in COMMIT"), "{:?}", h.unready());
        h.committed();
        let why = h.unready().expect("the read error is still held");
        assert!(why.starts_with("database error in read at"), "{why}");
    }

    #[test]
    fn again_keeps_the_code_for_every_caller() {
        let e = sqlite(rusqlite::ffi::SQLITE_FULL);
        let copy = e.again("commit failed: ");
        assert!(copy.is_disk() && copy.is_write_refused(), "{copy}");
        assert!(copy.to_string().contains("commit failed: "), "{copy}");
        assert!(matches!(DbError::WriterGone.again("x"), DbError::WriterGone));
        let other = DbError::Other("no such table".into()).again("commit failed: ");
        assert!(!other.is_disk() && other.to_string() == "commit failed: no such table", "{other}");
    }
}
