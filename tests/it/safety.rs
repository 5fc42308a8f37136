//! Data safety (issue 9, item 4) and the systemd watchdog (item 3): the database lock, the WAL
//! checkpoint at a clean stop, `restore`, operator commands that never create a database, the
//! start-up quick_check, /readyz after a database failure, WATCHDOG=1 only while the writer
//! makes progress.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `vnetd --config CFG run` that must exit by itself within 20 s (a refusal); its output.
fn run_expecting_exit(cfg: &Path) -> Output {
    let mut child = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("vnetd run did not exit: {}", stderr(&out));
}

/// The daemon's config with other ports (same database).
fn config_with_other_ports(d: &Daemon) -> PathBuf {
    let text = std::fs::read_to_string(&d.cfg)
        .unwrap()
        .replace(&format!("127.0.0.1:{}\"", d.port), &format!("127.0.0.1:{}\"", free_port()))
        .replace(&format!("127.0.0.1:{}\"", d.admin_port), &format!("127.0.0.1:{}\"", free_port()));
    let path = d.dir.path().join("other-ports.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn add_user(d: &Daemon, account: &str) -> String {
    d.ok(&["user", "add", "--account-type", "01", "--account", account, "--city-code", "0591"]).trim().to_string()
}

/// Accounts in the database file `db` opened alone (no -wal beside it: copied first).
fn accounts_in_file_alone(db: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("alone.db");
    std::fs::copy(db, &copy).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    let mut st = c.prepare("SELECT account FROM user ORDER BY account").unwrap();
    let v = st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect();
    v
}

fn wal_len(db: &Path) -> u64 {
    std::fs::metadata(format!("{}-wal", db.display())).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn second_daemon_on_the_same_database_is_refused_naming_the_pid() {
    let d = Daemon::start();
    let other = config_with_other_ports(&d);
    let out = run_expecting_exit(&other);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lock = format!("{}.lock", d.db.display());
    let want = format!("database {} is in use by vnetd pid {} (lock {lock})", d.db.display(), d.pid());
    assert!(stderr(&out).contains(&want), "want {want:?} in: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), d.pid().to_string(), "the lock file holds the pid");
    // Operator commands share the database with the running daemon (SQLite's own locking).
    add_user(&d, "lock-user1");
    assert!(d.ok(&["user", "show", "lock-user1"]).contains("lock-user1"));
    d.assert_serves_get_time();
}

#[test]
fn lock_is_released_by_a_daemon_killed_with_sigkill() {
    let mut d = Daemon::start();
    d.kill9();
    // The stale pid in the lock file does not matter: the kernel dropped the flock.
    d.start_again();
    d.assert_serves_get_time();
}

#[test]
fn clean_stop_checkpoints_so_the_database_file_alone_is_complete() {
    let mut d = Daemon::start();
    add_user(&d, "wal-user1");
    add_user(&d, "wal-user2");
    let listing: Vec<_> = std::fs::read_dir(d.db.parent().unwrap()).unwrap().map(|e| { let e = e.unwrap(); (e.file_name(), e.metadata().unwrap().len()) }).collect();
    assert!(wal_len(&d.db) > 0, "the writes sit in the WAL while the daemon runs: {listing:?}\n{}", d.log());
    d.stop();
    assert_eq!(wal_len(&d.db), 0, "the WAL is truncated at a clean stop");
    assert_eq!(accounts_in_file_alone(&d.db), ["wal-user1", "wal-user2"], "vnetd.db alone holds the data");
}

#[test]
fn operator_commands_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/vnetd.db");
    let cfg = dir.path().join("vnetd.toml");
    std::fs::write(&cfg, format!("[storage]\npath = \"{}\"\n[log]\ntarget = \"stderr\"\n", db.display())).unwrap();
    let backup = dir.path().join("b.db");
    let commands: Vec<Vec<&str>> = vec![
        vec!["peer", "list"],
        vec!["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY],
        vec!["peer", "disable", SP_ID],
        vec!["user", "show", "someone"],
        vec!["user", "add", "--account-type", "01", "--account", "x1", "--city-code", "0591"],
        vec!["catalog", "list"],
        vec!["roam", "list"],
        vec!["outbox", "status"],
        vec!["outbox", "retry"],
        vec!["recon", "export", "--sp", SP_ID, "--date", "20250101"],
        vec!["backup", backup.to_str().unwrap()],
    ];
    let want = format!("no database at {}; is --config right?", db.display());
    for args in &commands {
        let o = Command::new(BIN).arg("--config").arg(&cfg).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&want), "{args:?}: {}", stderr(&o));
    }
    let o = Command::new(BIN).arg("--config").arg(&cfg).args(["restore", backup.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!dir.path().join("data").exists(), "nothing was created, not even the directory");
    assert!(!backup.exists());
    // An existing directory without the database: still nothing created.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let o = Command::new(BIN).arg("--config").arg(&cfg).args(["peer", "list"]).output().unwrap();
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.path().join("data")).unwrap().count(), 0, "no file in the directory");
}

#[test]
fn restore_is_refused_while_running_checks_the_file_and_keeps_the_replaced_database() {
    let mut d = Daemon::start();
    add_user(&d, "before-backup");
    let backup = d.dir.path().join("nightly.db");
    d.ok(&["backup", backup.to_str().unwrap()]);
    add_user(&d, "after-backup");

    // Refused while the daemon holds the lock, naming its pid; nothing changes.
    let o = d.cli(&["restore", backup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("is in use by vnetd pid {}", d.pid())), "{}", stderr(&o));
    assert!(stderr(&o).contains("stop the daemon"), "{}", stderr(&o));
    d.stop();

    // Files that are not a sound vnetd database are refused and leave the database alone.
    let text = d.dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a database\n".repeat(100)).unwrap();
    let other = d.dir.path().join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").unwrap();
    let damaged = d.dir.path().join("damaged.db");
    std::fs::copy(&backup, &damaged).unwrap();
    damage_table_page(&damaged, "user");
    for (file, why) in [(&text, "not a readable SQLite database"), (&other, "not a vnetd database"), (&damaged, "fails the integrity check")] {
        let o = d.cli(&["restore", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{file:?}");
        assert!(stderr(&o).contains(why), "{file:?}: want {why:?}: {}", stderr(&o));
    }
    let leftovers: Vec<String> = std::fs::read_dir(d.db.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(leftovers.iter().all(|n| !n.contains("restore") && !n.contains("replaced")), "{leftovers:?}");
    assert_eq!(accounts_in_file_alone(&d.db), ["after-backup", "before-backup"]);

    let o = d.cli(&["restore", backup.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let kept = out.lines().find_map(|l| l.strip_prefix("the replaced database is kept as ")).unwrap_or_else(|| panic!("{out}")).to_string();
    assert!(kept.starts_with(&format!("{}.replaced-", d.db.display())), "{kept}");
    assert_eq!(accounts_in_file_alone(Path::new(&kept)), ["after-backup", "before-backup"], "the replaced database is whole");
    assert!(!Path::new(&format!("{}-wal", d.db.display())).exists() || wal_len(&d.db) == 0, "no stale WAL beside the restored file");
    assert_eq!(std::fs::metadata(&d.db).unwrap().permissions().mode() & 0o777, 0o600);

    d.start_again();
    assert!(d.ok(&["user", "show", "before-backup"]).contains("before-backup"));
    let o = d.cli(&["user", "show", "after-backup"]);
    assert_eq!(o.status.code(), Some(1), "the restored database is the backup's");
    d.assert_serves_get_time();
}

/// Overwrite the root page of `table` in the (checkpointed, closed) database at `db` with garbage.
fn damage_table_page(db: &Path, table: &str) {
    let (root, size): (i64, i64) = {
        let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let root = c.query_row("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0)).unwrap();
        let size = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (root, size)
    };
    assert_eq!(wal_len(db), 0, "the page must be in the database file");
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start(((root - 1) * size) as u64)).unwrap();
    f.write_all(&vec![0xA5u8; size as usize]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn start_refuses_a_damaged_database() {
    let mut d = Daemon::start();
    add_user(&d, "damage-user1");
    d.stop();
    damage_table_page(&d.db, "user");
    let out = run_expecting_exit(&d.cfg);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("database {} is damaged (start-up quick_check", d.db.display())), "{}", stderr(&out));
    assert!(stderr(&out).contains("vnetd restore"), "{}", stderr(&out));
}

/// A database over 64 MiB is checked in the background while the daemon serves (start-up to
/// ready must not grow with the database: docs/capacity.md); damage found there makes /readyz
/// unready, naming the check, and it stays so.
#[test]
fn a_large_database_is_checked_in_the_background() {
    let mut d = Daemon::with_peers(false);
    add_user(&d, "damage-user3");
    d.stop();
    {
        let c = rusqlite::Connection::open(&d.db).unwrap();
        c.execute("INSERT INTO node_secret(name, value) VALUES ('test-padding', zeroblob(70000000))", []).unwrap();
    }
    damage_table_page(&d.db, "user");
    d.restart();
    let ready = |d: &Daemon| d.admin_get("/readyz");
    assert!(
        wait_until(Duration::from_secs(20), || ready(&d).status == 503),
        "the background check did not report the damage; log:\n{}",
        d.log()
    );
    let r = ready(&d);
    assert!(r.text().contains("database damaged in the start-up quick_check"), "{}", r.text());
    assert!(d.log().contains(&format!("database {} is damaged (start-up quick_check", d.db.display())), "log:\n{}", d.log());
    assert_eq!(d.admin_get("/healthz").status, 200, "the database still answers");
}

#[test]
fn readyz_turns_unready_after_a_request_meets_a_damaged_page() {
    let mut d = Daemon::with_peers(false);
    add_user(&d, "damage-user2");
    d.stop();
    damage_table_page(&d.db, "user");
    // Without the start-up check (storage.quick_check_s = 0) the daemon starts on it.
    let db_line = format!("path = \"{}\"\n", d.db.display());
    d.restart_with_edited_config(|t| t.replacen(&db_line, &format!("{db_line}quick_check_s = 0\n"), 1));
    assert_eq!(d.admin_get("/readyz").status, 200, "{}", d.log());
    let r = d.call("ProvinceForSP", "UserAuth", SP_KEY, &[
        ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", "damage-user2"), ("Password", &enc(SP_KEY, "Whatever-1")), ("UserIP", ""),
    ]);
    assert_eq!(r.result(), -22501, "{:?}", r.fields);
    let ready = d.admin_get("/readyz");
    assert_eq!(ready.status, 503, "{}\nlog:\n{}", ready.text(), d.log());
    assert!(ready.text().contains("database damaged in UserAuth (read at src/"), "{}", ready.text());
    assert_eq!(d.admin_get("/healthz").status, 200, "the database still answers");
    assert!(d.log().contains("database error in UserAuth (read at src/"), "log:\n{}", d.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.admin_get("/readyz").status, 503, "a damaged database stays unready");
}

/// Start `d` again with a fake systemd notify socket, a watchdog of `watchdog_ms` and the debug
/// builds' writer-hang flag; returns the datagrams received (time, text).
fn start_with_notify(d: &mut Daemon, watchdog_ms: u64, hang_flag: &Path) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let sock_path = d.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let mut g = got2.lock().unwrap();
                    for line in text.lines() {
                        g.push((Instant::now(), line.to_string()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    if Arc::strong_count(&got2) == 1 {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", d.cfg.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", (watchdog_ms * 1000).to_string())
        .env_remove("WATCHDOG_PID")
        .env("VNETD_TEST_HANG_WRITER", hang_flag);
    d.child = Some(ChildProcess::spawn(cmd, &d.dir.path().join("vnetd.log")).unwrap());
    d.wait_healthy();
    got
}

fn count(got: &Mutex<Vec<(Instant, String)>>, what: &str) -> usize {
    got.lock().unwrap().iter().filter(|(_, l)| l == what).count()
}

#[test]
fn watchdog_keepalives_stop_while_the_writer_hangs_and_resume_after() {
    let mut d = Daemon::start();
    d.stop();
    let flag = d.dir.path().join("hang-writer");
    let got = start_with_notify(&mut d, 1000, &flag);
    assert!(wait_until(Duration::from_secs(10), || count(&got, "READY=1") == 1 && count(&got, "WATCHDOG=1") >= 3), "{:?}", got.lock().unwrap());
    // STATUS= lines tell `systemctl status` what start-up is doing, then what is served.
    let lines: Vec<String> = got.lock().unwrap().iter().map(|(_, l)| l.clone()).collect();
    let at = |p: &str| lines.iter().position(|l| l.starts_with(p)).unwrap_or_else(|| panic!("no {p} in {lines:?}"));
    assert!(at("STATUS=checking the database") < at("STATUS=opening the database"));
    assert!(at("STATUS=opening the database") < at("READY=1"));
    assert!(lines[at("READY=1") + 1].starts_with("STATUS=serving SOAP on 127.0.0.1:"), "{lines:?}");

    if !cfg!(debug_assertions) {
        // Release builds have no writer-hang hook (VNETD_TEST_HANG_WRITER is debug-only).
        d.stop();
        return;
    }
    // Hang the writer: within two ticks (half the interval each) the keepalives stop.
    std::fs::write(&flag, "").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let before = count(&got, "WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count(&got, "WATCHDOG=1"), before, "no WATCHDOG=1 while the writer hangs");
    assert!(d.log().contains("watchdog: the database writer has not answered"), "log:\n{}", d.log());

    // The writer moves again: keepalives resume.
    std::fs::remove_file(&flag).unwrap();
    assert!(wait_until(Duration::from_secs(5), || count(&got, "WATCHDOG=1") >= before + 2), "keepalives resume");
    assert!(d.log().contains("watchdog: progress again"), "log:\n{}", d.log());
    d.stop();
    assert!(wait_until(Duration::from_secs(2), || count(&got, "STOPPING=1") == 1));
    assert!(got.lock().unwrap().iter().any(|(_, l)| l.starts_with("STATUS=stopping")));
}
