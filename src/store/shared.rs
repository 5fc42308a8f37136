//! Point reads on an event-loop thread share one read transaction.
//!
//! Each SQLite read transaction in WAL mode takes and releases a read lock in the shared-memory
//! index (a process-wide mutex and, when no other connection of the process holds that lock,
//! two `fcntl` calls). For a GetUserinfo that was more than the query itself. A thread that
//! declares itself an event loop ([`share_reads_on_this_thread`]) keeps one connection of its
//! own and one read transaction open across the point reads it runs one after the other, and
//! starts a new one when:
//!
//! * this process committed anything since it began ([`super::COMMITS`] is bumped after every
//!   commit and before the writes' callers are answered, so a read that starts after an
//!   acknowledged write always sees it);
//! * it is older than [`MAX_AGE`] (changes committed by another process, e.g. the operator
//!   CLI, are seen within that time; a checkpoint is never held back longer);
//! * the loop is about to wait for events ([`end_shared_reads`]): nothing stays open while idle.

use super::{open_conn, DbResult, Read, StoreInner, COMMITS};
use rusqlite::{Connection, OpenFlags};
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The oldest a shared read transaction gets before the next read starts a new one.
pub const MAX_AGE: Duration = Duration::from_millis(2);

struct Shared {
    /// The store this connection reads.
    store: Weak<StoreInner>,
    conn: Connection,
    /// The open transaction: when it began and the commit count then.
    open: Option<(Instant, u64)>,
}

thread_local! {
    static ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// From now on, reads on this thread share read transactions (an event loop's thread).
pub fn share_reads_on_this_thread() {
    ENABLED.with(|e| e.set(true));
}

/// Ends this thread's shared read transaction, if one is open.
pub fn end_shared_reads() {
    SHARED.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if let Some(sh) = s.as_mut() {
                if sh.open.take().is_some() && sh.conn.execute_batch("COMMIT").is_err() {
                    *s = None;
                }
            }
        }
    });
}

/// Runs `f` in this thread's shared read transaction; `Err(f)` when this thread does not share
/// reads (or is already inside one): the caller reads as usual.
pub(super) fn read<T, F: FnOnce(&Read) -> DbResult<T>>(inner: &Arc<StoreInner>, f: F) -> Result<DbResult<T>, F> {
    if !ENABLED.with(|e| e.get()) {
        return Err(f);
    }
    SHARED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => Ok(read_in(&mut slot, inner, f)),
        Err(_) => Err(f),
    })
}

fn read_in<T>(slot: &mut Option<Shared>, inner: &Arc<StoreInner>, f: impl FnOnce(&Read) -> DbResult<T>) -> DbResult<T> {
    if !slot.as_ref().is_some_and(|s| std::ptr::eq(s.store.as_ptr(), Arc::as_ptr(inner))) {
        // First read on this thread, or a store opened anew (tests).
        let conn = open_conn(&inner.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        *slot = Some(Shared { store: Arc::downgrade(inner), conn, open: None });
    }
    let sh = slot.as_mut().expect("set above");
    let commits = COMMITS.load(Ordering::SeqCst);
    if let Some((began, at)) = sh.open {
        if at != commits || began.elapsed() > MAX_AGE {
            sh.open = None;
            if let Err(e) = sh.conn.execute_batch("COMMIT") {
                *slot = None;
                return Err(e.into());
            }
        }
    }
    if sh.open.is_none() {
        sh.conn.execute_batch("BEGIN")?;
        sh.open = Some((Instant::now(), commits));
    }
    let out = f(&Read::new(&sh.conn));
    if out.is_err() {
        // Whatever went wrong, the next read starts afresh.
        let _ = sh.conn.execute_batch("ROLLBACK");
        *slot = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{next_counter, Store};
    use super::*;

    fn counter(s: &Store) -> i64 {
        s.read(|c| Ok(c.test_conn().query_row("SELECT coalesce(max(value), 0) FROM counter WHERE name = 'n'", [], |r| r.get(0))?)).unwrap()
    }

    #[test]
    fn shared_reads_see_every_acknowledged_write_and_other_processes_within_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.db")).unwrap();
        let path = dir.path().join("v.db");
        std::thread::spawn(move || {
            share_reads_on_this_thread();
            assert_eq!(counter(&s), 0);
            // A write of this process, acknowledged: the next read sees it at once.
            s.write(|c| next_counter(c, "n")).unwrap();
            assert_eq!(counter(&s), 1);
            // Another process (the operator CLI): seen once the shared transaction ends …
            let other = Connection::open(&path).unwrap();
            other.execute("UPDATE counter SET value = 5 WHERE name = 'n'", []).unwrap();
            let seen = counter(&s);
            assert!(seen == 1 || seen == 5);
            std::thread::sleep(MAX_AGE * 2);
            assert_eq!(counter(&s), 5, "within MAX_AGE");
            other.execute("UPDATE counter SET value = 7 WHERE name = 'n'", []).unwrap();
            // … or when the loop goes idle.
            end_shared_reads();
            assert_eq!(counter(&s), 7);
            // Reads nested in a read (none today) fall back to a connection of the pool.
            let nested = s.read(|_| Ok(counter(&s))).unwrap();
            assert_eq!(nested, 7);
            end_shared_reads();
            s.shutdown();
        })
        .join()
        .unwrap();
    }
}
