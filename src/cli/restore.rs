//! `vnetd restore FILE`: replace the database with a backup, while no daemon runs.
//!
//! 1. Take the database lock (`<db>.lock`, as `vnetd run` does): refused, naming the pid, while a
//!    daemon holds it; a daemon started during the restore is refused in turn.
//! 2. Copy FILE (SQLite backup API: a `-wal` beside FILE is read too) into a temporary file in the
//!    database's directory, mode 0600; check the copy: `PRAGMA integrity_check`, a vnetd schema
//!    version this binary supports (older ones are migrated at the next start), vnetd's tables;
//!    switch it to a rollback journal so it is one self-contained file; fsync it.
//! 3. Keep the current database: checkpoint its WAL into it, then hard-link it as
//!    `<db>.replaced-<UTC time>`; a `-wal`/`-shm` that is still there moves along with it (a stale
//!    WAL must never meet the restored file).
//! 4. rename(2) the checked copy over the database (atomic) and fsync the directory.

use super::{CliResult, Failed};
use crate::config::Config;
use crate::runtime::logging::audit;
use crate::store::lock;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn run(cfg: &Config, file: &Path) -> CliResult {
    let db = cfg.storage.path.as_path();
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Failed(format!("no database directory {}; is --config right?", dir.display())));
    }
    if !file.is_file() {
        return Err(Failed(format!("{} is not a file", file.display())));
    }
    if db.exists() {
        if let (Ok(a), Ok(b)) = (std::fs::canonicalize(db), std::fs::canonicalize(file)) {
            if a == b {
                return Err(Failed(format!("{} is the database itself", file.display())));
            }
        }
    }
    let _lock = lock::acquire(db).map_err(|e| Failed(format!("{e}; stop the daemon before restoring")))?;

    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .map_err(|e| Failed(e.to_string()))?;
    let replaced = with_suffix(db, &format!(".replaced-{stamp}"));
    if replaced.exists() {
        return Err(Failed(format!("{} already exists; try again in a second", replaced.display())));
    }

    let tmp = dir.join(format!(".{}.restore-{}", db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
    let version = match prepare(file, &tmp) {
        Ok(v) => v,
        Err(e) => {
            remove_with_companions(&tmp);
            return Err(e);
        }
    };

    let kept = if db.exists() {
        match keep_current(db, &replaced) {
            Ok(()) => Some(replaced),
            Err(e) => {
                remove_with_companions(&tmp);
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&tmp, db) {
        remove_with_companions(&tmp);
        return Err(Failed(format!("cannot install the restored database as {}: {e}", db.display())));
    }
    lock::give_to_dir_owner(db);
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    audit("restore", &[("file", &file.display().to_string()), ("schema_version", &version.to_string())]);
    println!("database {} restored from {} (schema version {version})", db.display(), file.display());
    match kept {
        Some(k) => println!("the replaced database is kept as {}", k.display()),
        None => println!("there was no database to replace"),
    }
    Ok(())
}

/// Copy `file` into `tmp` (mode 0600) and check the copy; its schema version.
fn prepare(file: &Path, tmp: &Path) -> Result<i64, Failed> {
    use std::os::unix::fs::OpenOptionsExt;
    remove_with_companions(tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| Failed(format!("cannot create {}: {e}", tmp.display())))?;
    let version = crate::store::files::copy_checked(file, tmp).map_err(Failed)?;
    std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| Failed(format!("cannot sync {}: {e}", tmp.display())))?;
    Ok(version)
}

/// Keep the current database as `replaced` (checkpointed when it can be; its WAL files move with
/// it when they remain).
fn keep_current(db: &Path, replaced: &Path) -> CliResult {
    // Best effort: a damaged database may refuse; then its -wal moves along below.
    crate::store::files::checkpoint_truncate(db);
    if std::fs::hard_link(db, replaced).is_err() {
        std::fs::copy(db, replaced).map_err(|e| Failed(format!("cannot keep the current database as {}: {e}", replaced.display())))?;
    }
    for suffix in ["-wal", "-shm"] {
        let from = with_suffix(db, suffix);
        if from.exists() {
            let to = with_suffix(replaced, suffix);
            std::fs::rename(&from, &to).map_err(|e| Failed(format!("cannot move {} to {}: {e}", from.display(), to.display())))?;
        }
    }
    Ok(())
}

fn remove_with_companions(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}
