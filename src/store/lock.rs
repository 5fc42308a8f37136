//! The database lock: `vnetd run` (and `vnetd restore`) hold an exclusive, non-blocking flock(2)
//! on `<database>.lock` (e.g. `/var/lib/vnetd/vnetd.db.lock`) for as long as they run, so a second
//! daemon on the same database refuses to start, and a restore cannot replace the file under a
//! running daemon. The file holds the holder's pid (for the message); the lock itself is the
//! kernel's, released when the process exits however it exits, so a stale file after kill -9 is
//! harmless. Other operator commands do not take it: they share the database through SQLite's
//! own locking while the daemon runs.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A held lock; released when dropped (or when the process ends).
pub struct DbLock {
    _file: Flock<File>,
    pub path: PathBuf,
}

/// Take the lock of the database at `db` (its directory must exist) and write our pid into it.
pub fn acquire(db: &Path) -> Result<DbLock, String> {
    let path = lock_path(db);
    let file = open(&path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            // Best effort: a lock file created by root for a directory owned by the service user
            // must stay usable by the daemon.
            give_to_dir_owner(&path);
            let _ = f.set_len(0).and_then(|_| f.rewind()).and_then(|_| writeln!(f, "{}", std::process::id()));
            Ok(DbLock { _file: f, path })
        }
        Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("vnetd pid {pid}"),
                Err(_) => "another vnetd process".to_string(),
            };
            Err(format!("database {} is in use by {holder} (lock {})", db.display(), path.display()))
        }
        Err((_, e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

fn open(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let rw = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path);
    match rw {
        Ok(f) => Ok(f),
        // Not ours to write (e.g. left by root): flock works on a read-only descriptor too.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            File::open(path).map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot open the lock file {}: {e}", path.display())),
    }
}

/// When run as root in a directory owned by someone else (the `vnetd` service user), hand a file
/// we created to the directory's owner so the daemon can still open it. A no-op otherwise (chown
/// to another user fails without privilege, and that failure is ignored).
pub fn give_to_dir_owner(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) else { return };
    let (Ok(dm), Ok(fm)) = (std::fs::metadata(dir), std::fs::metadata(path)) else { return };
    if dm.uid() != fm.uid() || dm.gid() != fm.gid() {
        let _ = std::os::unix::fs::chown(path, Some(dm.uid()), Some(dm.gid()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v.db");
        let held = acquire(&db).unwrap();
        assert_eq!(held.path, dir.path().join("v.db.lock"));
        // flock locks belong to the open file description: a second open in this process conflicts.
        let err = acquire(&db).err().expect("refused");
        assert!(err.contains(&format!("in use by vnetd pid {}", std::process::id())), "{err}");
        drop(held);
        assert!(acquire(&db).is_ok());
    }
}
