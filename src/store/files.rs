//! SQLite work on database files beside (or instead of) an open `Store`: the checked copy of
//! `vnetd restore`, checkpoints from operator commands, and the connections of benchmarks that
//! seed or read a running daemon's database.

use super::{DbResult, Read, Write};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Copy the database `file` (SQLite backup API: a `-wal` beside it is read too) into `tmp`, which
/// exists, and check the copy: `PRAGMA integrity_check`, a vnetd schema version this binary
/// supports, vnetd's tables; then switch it to a rollback journal so it is one self-contained
/// file. Returns its schema version, or what is wrong (for the operator).
pub fn copy_checked(file: &Path, tmp: &Path) -> Result<i64, String> {
    let bad = |e: rusqlite::Error| format!("{} is not a readable SQLite database: {e}", file.display());
    let src = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(bad)?;
    src.busy_timeout(Duration::from_secs(10)).map_err(bad)?;
    let mut dest = Connection::open_with_flags(tmp, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(|e| e.to_string())?;
    rusqlite::backup::Backup::new(&src, &mut dest)
        .and_then(|b| b.run_to_completion(1024, Duration::from_millis(0), None))
        .map_err(bad)?;
    let found: Vec<String> = dest
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| format!("{} fails the integrity check: {e}", file.display()))?;
    if found != ["ok"] {
        return Err(format!("{} fails the integrity check: {}", file.display(), found.join("; ")));
    }
    let version: i64 = dest.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(bad)?;
    let tables: i64 = dest
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('peer', 'peer_key', 'user', 'outbox')", [], |r| r.get(0))
        .map_err(bad)?;
    if version < 1 || tables != 4 {
        return Err(format!("{} is not a vnetd database", file.display()));
    }
    if version > super::SCHEMA_VERSION {
        return Err(format!(
            "{} has schema version {version}, newer than this vnetd supports ({}); use a newer vnetd",
            file.display(),
            super::SCHEMA_VERSION
        ));
    }
    // One self-contained file; the daemon switches it back to WAL when it opens it.
    let mode: String = dest.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(format!("cannot take {} out of WAL mode", tmp.display()));
    }
    dest.close().map_err(|(_, e)| e.to_string())?;
    drop(src);
    Ok(version)
}

/// Best effort: move the WAL of the database at `db` into it and truncate the WAL (a damaged
/// database may refuse).
pub fn checkpoint_truncate(db: &Path) {
    if let Ok(c) = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE) {
        let _ = c.busy_timeout(Duration::from_secs(10));
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let _ = c.close();
    }
}

/// A connection of its own for passive WAL checkpoints between the chunks of a long operator
/// job, so no live request inherits them.
pub struct Checkpointer(Connection);

impl Checkpointer {
    /// `busy`: how long a checkpoint waits for a lock (best effort).
    pub fn open(path: &Path, busy: Duration) -> Option<Checkpointer> {
        let c = Connection::open(path).ok()?;
        let _ = c.busy_timeout(busy);
        Some(Checkpointer(c))
    }

    pub fn passive(&self) {
        let _ = self.0.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

/// One write transaction on a connection of its own to the database at `path`, beside the
/// writer of a daemon that has it open (SQLite serialises the writers; `busy` is how long to wait
/// for the lock): benchmarks seed a running daemon with it.
pub fn write_beside<T>(path: &Path, busy: Duration, f: impl FnOnce(&Write) -> DbResult<T>) -> DbResult<T> {
    let mut db = Connection::open(path)?;
    db.busy_timeout(busy)?;
    let tx = db.transaction()?;
    let out = f(&Write::new(&tx))?;
    tx.commit()?;
    Ok(out)
}

/// `f` on a read-only connection of its own to the database at `path` (a running daemon's).
pub fn read_beside<T>(path: &Path, f: impl FnOnce(&Read) -> DbResult<T>) -> DbResult<T> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    f(&Read::new(&db))
}
