//! What `/readyz` knows about the database: the last failure of the database itself (an I/O
//! error, a full disk, a damaged page, the writer gone — not a constraint or a domain error),
//! which operation met it and when.
//!
//! The rule (README, Admin endpoints): after such a failure `/readyz` answers 503 naming the
//! operation; a damaged database (SQLITE_CORRUPT, SQLITE_NOTADB) stays unready until the daemon
//! is restarted (it does not heal: restore a backup), any other failure for `IO_ERROR_HOLD` after
//! the last one. Other accesses that succeed meanwhile do not clear it: a bad page in one table
//! leaves every other table readable, so "the last access succeeded" would hide it at once.
//! The first failure after a healthy period is logged at error with the operation; the request
//! paths log each failure themselves.

use super::DbError;
use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an I/O failure (not a damaged file) keeps /readyz unready after the last one.
pub const IO_ERROR_HOLD: Duration = Duration::from_secs(60);

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
    corrupt: bool,
}

impl Failure {
    fn active(&self) -> bool {
        self.corrupt || self.at.elapsed() < IO_ERROR_HOLD
    }
}

#[derive(Default)]
pub struct Health {
    /// Set once any failure was recorded (the fast path of `unready` is one atomic load).
    seen: AtomicBool,
    last: Mutex<Option<Failure>>,
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
        self.record(what, e.to_string(), e.is_corrupt());
    }

    /// Record a failure of `what` (an operation, a code site, "commit").
    pub fn record(&self, what: String, error: String, corrupt: bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let was_ready = last.as_ref().is_none_or(|f| !f.active());
        // A damaged database stays damaged.
        let corrupt = corrupt || last.as_ref().is_some_and(|f| f.corrupt);
        if was_ready {
            let until = if corrupt {
                "until vnetd is restarted (the database file is damaged: stop, `vnetd restore` a backup, start)".to_string()
            } else {
                format!("for {} s after the last such error", IO_ERROR_HOLD.as_secs())
            };
            log::error!("database error in {what}: {error}; /readyz answers 503 {until}");
        }
        *last = Some(Failure { what, error, at: Instant::now(), corrupt });
        self.seen.store(true, Ordering::Relaxed);
    }

    /// `Some(reason)` while /readyz must answer 503 for the database.
    pub fn unready(&self) -> Option<String> {
        if !self.seen.load(Ordering::Relaxed) {
            return None;
        }
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|f| f.active()).map(|f| {
            let kind = if f.corrupt { "database damaged" } else { "database error" };
            format!("{kind} in {} {} s ago: {}", f.what, f.at.elapsed().as_secs(), f.error)
        })
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
    }
}
