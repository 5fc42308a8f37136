//! The operator CLI and admin endpoints (spec 9, 11 "CLI", "CLI formats", "Config file").

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;


/// A config file in `dir` (nothing listens on its ports), with `extra` appended.
fn write_config(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n[storage]\npath = \"{}\"\n[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n{extra}\n",
        free_port(),
        free_port(),
        dir.join("data/vnetd.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the binary with an environment change (VNETD_CONFIG set or removed), no --config.
fn vnetd_env(args: &[&str], vnetd_config: Option<&Path>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    match vnetd_config {
        Some(p) => c.env("VNETD_CONFIG", p),
        None => c.env_remove("VNETD_CONFIG"),
    };
    c.output().unwrap()
}

fn write_csv(d: &Daemon, name: &str, rows: &[&str]) -> PathBuf {
    let path = d.dir.path().join(name);
    let mut text = format!("{CSV_HEADER}\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn user_exists(d: &Daemon, who: &str) -> bool {
    let o = d.cli(&["user", "show", who]);
    match code(&o) {
        0 => true,
        1 => false,
        c => panic!("user show {who}: exit {c}: {}", stderr(&o)),
    }
}

fn user_auth(d: &Daemon, account: &str, password: &str) -> Resp {
    d.call("ProvinceForSP", "UserAuth", SP_KEY, &[
        ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", account), ("Password", &enc(SP_KEY, password)), ("UserIP", ""),
    ])
}

#[test]
fn check_config_accepts_valid_and_names_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "good.toml", "[node]\nprovince_id = \"35\"\n");
    let o = Command::new(BIN).arg("--config").arg(&good).arg("check-config").env_remove("VNETD_CONFIG").output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let bogus = write_config(dir.path(), "bogus.toml", "[node]\nbogus = 1\n");
    let o = Command::new(BIN).arg("--config").arg(&bogus).arg("check-config").output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("bogus"), "the error names the key: {}", stderr(&o));

    // An unknown section and a wrongly typed value are errors too.
    let o = Command::new(BIN).arg("--config").arg(write_config(dir.path(), "s.toml", "[nonsense]\nx = 1\n")).arg("check-config").output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("nonsense"), "{}", stderr(&o));
    let o = Command::new(BIN).arg("--config").arg(write_config(dir.path(), "t.toml", "[security]\nlockout_threshold = \"five\"\n")).arg("check-config").output().unwrap();
    assert_eq!(code(&o), 1, "{}", stdout(&o));

    // A named file that does not exist is an error, for every command.
    let missing = dir.path().join("missing.toml");
    for args in [&["check-config"][..], &["healthcheck"], &["peer", "list"], &["user", "show", "x"]] {
        let o = Command::new(BIN).arg("--config").arg(&missing).args(args).output().unwrap();
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
    assert!(!dir.path().join("data").exists(), "no database was created by failed commands");
}

#[test]
fn vnetd_config_env_is_used_without_flag() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let bogus = write_config(dir.path(), "bogus.toml", "[node]\nbogus = 1\n");

    let o = vnetd_env(&["check-config"], Some(&d.cfg));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(d.cfg.to_str().unwrap()), "{}", stdout(&o));
    let o = vnetd_env(&["check-config"], Some(&bogus));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("bogus"), "{}", stderr(&o));
    let o = vnetd_env(&["check-config"], Some(&dir.path().join("missing.toml")));
    assert_eq!(code(&o), 1, "a named file that does not exist is an error");

    // Neither flag nor variable (and no /etc/vnetd/vnetd.toml): the built-in defaults.
    if !Path::new("/etc/vnetd/vnetd.toml").exists() {
        let o = vnetd_env(&["check-config"], None);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }

    // --config beats VNETD_CONFIG.
    let o = Command::new(BIN).arg("--config").arg(&d.cfg).arg("check-config").env("VNETD_CONFIG", &bogus).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Real commands use the file named by VNETD_CONFIG: healthcheck reaches the daemon, and a
    // user added that way is in the daemon's database.
    let o = vnetd_env(&["healthcheck"], Some(&d.cfg));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = vnetd_env(&["user", "add", "--account-type", "01", "--account", "env-user1", "--city-code", "0591"], Some(&d.cfg));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert!(d.ok(&["user", "show", &id]).contains("env-user1"));
}

#[test]
fn user_add_prints_only_the_id_and_sets_the_password() {
    let d = Daemon::with_peers(false);
    let o = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", "cliuser01", "--city-code", "0591", "--password-stdin"], "Good-Pass1\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.len(), 13, "only the VNetUserID and a newline: {out:?}");
    assert!(out.ends_with('\n') && out[..12].bytes().all(|b| b.is_ascii_digit()) && out.starts_with("35"), "{out:?}");
    let id = out.trim().to_string();
    let r = user_auth(&d, "cliuser01", "Good-Pass1");
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(r.get("VNetUserID"), id);
    assert_eq!(r.get("CityCode"), "0591");
    assert_eq!(user_auth(&d, "cliuser01", "Good-Pass2").result(), -20501);

    // CRLF line ending stripped; only the first line is the password.
    let o = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", "cliuser02", "--city-code", "0592", "--user-type", "2", "--password-stdin"], "Crlf-Pass9\r\nignored\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let id2 = stdout(&o).trim().to_string();
    assert_ne!(id, id2);
    assert_eq!(user_auth(&d, "cliuser02", "Crlf-Pass9").result(), 0);

    // Without a password the user exists but cannot log in.
    let o = d.cli(&["user", "add", "--account-type", "01", "--account", "cliuser03", "--city-code", "0591"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).trim().len(), 12);
    assert_ne!(user_auth(&d, "cliuser03", "anything-1").result(), 0);

    // The same account again is refused.
    let o = d.cli(&["user", "add", "--account-type", "01", "--account", "cliuser01", "--city-code", "0591"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).is_empty());
}

#[test]
fn user_add_refuses_weak_passwords() {
    let d = Daemon::start();
    for (account, pw) in [("weak0001", "abc12"), ("weak0002", "aaaaaaaa"), ("weak0003", "weak0003"), ("weak0004", "")] {
        let o = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", account, "--city-code", "0591", "--password-stdin"], &format!("{pw}\n"));
        assert_eq!(code(&o), 1, "{account} with {pw:?}: {}", stdout(&o));
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
        assert!(!stderr(&o).contains(pw) || pw.is_empty() || pw == account, "the password is echoed: {}", stderr(&o));
        assert!(!user_exists(&d, account), "{account} was created with a weak password");
    }
}

#[test]
fn user_show_by_account_and_id_without_the_hash() {
    let d = Daemon::start();
    let o = d.cli_stdin(&["user", "add", "--account-type", "02", "--account", "showuser1", "--city-code", "0593", "--credit-limit", "1234", "--password-stdin"], "Show-Pass1\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let by_account = d.ok(&["user", "show", "showuser1"]);
    let by_id = d.ok(&["user", "show", &id]);
    assert_eq!(by_account, by_id);
    let lines: Vec<&str> = by_id.lines().collect();
    assert_eq!(lines.len(), 2, "{by_id}");
    let header: Vec<&str> = lines[0].split('\t').collect();
    let row: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(header.len(), row.len(), "{by_id}");
    assert!(header.len() >= 6, "tab-separated: {by_id}");
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}: {by_id}"))];
    assert_eq!(col("vnet_user_id"), id);
    assert_eq!(col("account"), "showuser1");
    assert_eq!(col("account_type"), "02");
    assert_eq!(col("city_code"), "0593");
    assert_eq!(col("credit_limit"), "1234");
    assert_eq!(col("status"), "00");
    assert!(!by_id.contains("$argon2") && !by_id.contains("Show-Pass1"), "{by_id}");
    // Unknown: exit 1.
    let o = d.cli(&["user", "show", "nobody-here"]);
    assert_eq!(code(&o), 1);
    let o = d.cli(&["user", "show", "350009999999"]);
    assert_eq!(code(&o), 1);
}

#[test]
fn user_import_good_file_imports_every_row() {
    let d = Daemon::start();
    let csv = write_csv(&d, "good.csv", &["01,imp-a,0591,1,50000,,,", "02,imp-b,0592,2,,1000,\"张三, Jr\",0591-87654321", "09,13800000001,0591,1,,,,"]);
    let o = d.cli(&["user", "import", csv.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for account in ["imp-a", "imp-b", "13800000001"] {
        assert!(user_exists(&d, account), "{account} not imported");
    }
    let show = d.ok(&["user", "show", "imp-b"]);
    assert!(show.contains("张三, Jr") && show.contains("0591-87654321") && show.contains("1000"), "{show}");
    let n: i64 = d.db_ro().query_row("SELECT count(*) FROM outbox WHERE operation = 'PUserInfoNotify'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3, "each imported user queues PUserInfoNotify");
    assert!(stdout(&o).contains('3'), "{}", stdout(&o));
    // A spreadsheet export: UTF-8 BOM and CRLF line endings.
    let path = d.dir.path().join("excel.csv");
    std::fs::write(&path, format!("\u{feff}{CSV_HEADER}\r\n01,imp-crlf,0591,1,,,,\r\n")).unwrap();
    let o = d.cli(&["user", "import", path.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let show = d.ok(&["user", "show", "imp-crlf"]);
    assert!(!show.contains('\r'), "{show:?}");
    // A wrong header is refused.
    let path = d.dir.path().join("badheader.csv");
    std::fs::write(&path, "account,account_type\nx,01\n").unwrap();
    let o = d.cli(&["user", "import", path.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
}

#[test]
fn user_import_bad_rows_reports_lines_and_imports_nothing() {
    let d = Daemon::start();
    let csv = write_csv(&d, "bad.csv", &[
        "01,bad-a,0591,1,,,,",      // line 2: good
        "07,bad-b,0591,1,,,,",      // line 3: account type
        "01,bad-c,0591,1,,,,",      // line 4: good
        "01,bad-d,abc,1,,,,",       // line 5: city code
        "01,bad-e,0591,3,,,,",      // line 6: user type
        "01,bad-f,0591,1,-5,,,",    // line 7: credit limit
        "01,bad-g,0591,1",          // line 8: too few fields
    ]);
    let o = d.cli(&["user", "import", csv.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let err = stderr(&o);
    for n in [3, 5, 6, 7, 8] {
        assert!(err.contains(&format!("line {n}")), "line {n} not reported: {err}");
    }
    for n in [2, 4] {
        assert!(!err.contains(&format!("line {n}:")), "good line {n} reported: {err}");
    }
    for account in ["bad-a", "bad-c"] {
        assert!(!user_exists(&d, account), "{account} imported from a file with errors");
    }
    let n: i64 = d.db_ro().query_row("SELECT count(*) FROM user", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn user_import_reports_duplicates_in_file_and_in_database() {
    let d = Daemon::start();
    d.ok(&["user", "add", "--account-type", "01", "--account", "dup-existing", "--city-code", "0591"]);
    let csv = write_csv(&d, "dups.csv", &[
        "01,dup-a,0591,1,,,,",        // line 2
        "01,dup-a,0592,1,,,,",        // line 3: repeats line 2
        "01,dup-existing,0592,1,,,,", // line 4: already in the database, other values (the same values would be skipped)
        "02,dup-a,0591,1,,,,",        // line 5: same account, other type: fine
    ]);
    let o = d.cli(&["user", "import", csv.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("line 3"), "duplicate in the file not reported: {err}");
    assert!(err.contains("line 4"), "account already in the database not reported: {err}");
    assert!(!err.contains("line 5"), "{err}");
    assert!(!user_exists(&d, "dup-a"), "nothing may be imported");
    let n: i64 = d.db_ro().query_row("SELECT count(*) FROM user", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn peer_add_validates_and_peer_list_is_a_table() {
    let d = Daemon::with_peers(true);
    let bad_keys = ["xyz".to_string(), SP_KEY[..46].to_string(), format!("{}zz", &SP_KEY[..46]), format!("{SP_KEY}00"), String::new()];
    for bad in &bad_keys {
        let o = d.cli(&["peer", "add", "--id", "35000009", "--kind", "sp", "--key", bad]);
        assert_eq!(code(&o), 1, "key {bad:?}: {}", stdout(&o));
    }
    let o = d.cli(&["peer", "add", "--id", "35000009", "--kind", "sp", "--key", SP_KEY, "--iv", "12"]);
    assert_eq!(code(&o), 1, "bad IV");
    let o = d.cli(&["peer", "add", "--id", "35000009", "--kind", "nonsense", "--key", SP_KEY]);
    assert_eq!(code(&o), 2, "bad kind is a usage error");
    // A duplicate id is an error.
    let o = d.cli(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY]);
    assert_eq!(code(&o), 1);

    let list = d.ok(&["peer", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "header and three peers: {list}");
    let header: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(header[0], "id", "{list}");
    assert!(header.contains(&"kind"), "{list}");
    for l in &lines[1..] {
        assert_eq!(l.split('\t').count(), header.len(), "{list}");
    }
    for (id, kind) in [(SP_ID, "sp"), (BSS_ID, "bss"), (CENTRE_ID, "centre")] {
        let row = lines.iter().find(|l| l.starts_with(&format!("{id}\t"))).unwrap_or_else(|| panic!("{id} missing: {list}"));
        assert!(row.split('\t').any(|c| c == kind), "{row}");
    }
    assert!(!list.contains("35000009"));
    assert_no_secrets("peer list", &list);
}

#[test]
fn backup_while_running_is_consistent_and_refuses_existing_file() {
    let d = Daemon::with_peers(false);
    for i in 0..5 {
        d.ok(&["user", "add", "--account-type", "01", "--account", &format!("bk-user{i}"), "--city-code", "0591"]);
    }
    // Writes keep coming while the backup runs.
    let addr = d.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let account = format!("bk-live{i}");
                let tx = format!("TX-{account}");
                let fields = signed_fields(BSS_KEY, &[
                    ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", &account), ("Password", ""), ("CityCode", "0591"),
                    ("UserType", "1"), ("CreditLimit", ""), ("Balance", ""), ("Alias", ""), ("BindingAccessNo", ""), ("TransactionID", &tx),
                ], &ts(0));
                let _ = try_http(&addr, "POST", &Daemon::path("ProvinceForBSS"), &[("Content-Type", "text/xml")], envelope_owned("UserOpen", &fields).as_bytes(), Duration::from_secs(10));
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let file = d.dir.path().join("backup.db");
    let o = d.cli(&["backup", file.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let c = rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let n: i64 = c.query_row("SELECT count(*) FROM user WHERE account LIKE 'bk-user%'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 5);
    let peers: i64 = c.query_row("SELECT count(*) FROM peer", [], |r| r.get(0)).unwrap();
    assert_eq!(peers, 2);
    // Every user in the copy has its notification: the copy is a transaction-consistent snapshot.
    let orphans: i64 = c
        .query_row("SELECT count(*) FROM user u WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.order_key = 'user:' || u.vnet_user_id)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orphans, 0);
    drop(c);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds keys: mode {mode:o}");
    }
    // An existing file is never overwritten.
    let before = std::fs::read(&file).unwrap();
    let o = d.cli(&["backup", file.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let other = d.dir.path().join("other.txt");
    std::fs::write(&other, "keep me").unwrap();
    let o = d.cli(&["backup", other.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
}

#[test]
fn usage_errors_exit_2() {
    let d = Daemon::start();
    for args in [&["frobnicate"][..], &["user", "frob"], &["peer", "list", "--bogus-flag"], &["user", "add", "--account", "x"], &[]] {
        let o = d.cli(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn healthcheck_follows_the_daemon() {
    let mut d = Daemon::start();
    let o = d.cli(&["healthcheck"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    d.kill9();
    let started = std::time::Instant::now();
    let o = d.cli(&["healthcheck"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A port that accepts but never answers is unhealthy too, within the client's deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&d.cfg).unwrap().replace(&format!("127.0.0.1:{}", d.admin_port), &format!("127.0.0.1:{port}"));
    let path = d.dir.path().join("silent.toml");
    std::fs::write(&path, cfg).unwrap();
    let started = std::time::Instant::now();
    let o = Command::new(BIN).arg("--config").arg(&path).arg("healthcheck").output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    drop(silent);
}

#[test]
fn admin_endpoints_health_ready_metrics() {
    let d = Daemon::start();
    let r = d.admin_get("/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.admin_get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.admin_get("/nope").status, 404);
    d.assert_serves_get_time();
    d.assert_serves_get_time();
    let r = d.admin_get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"), "{:?}", r.headers);
    let m = r.text();
    let line = m
        .lines()
        .find(|l| l.starts_with("vnetd_requests_total{service=\"ProvinceForSP\",operation=\"GetTime\",result=\"0\"}"))
        .unwrap_or_else(|| panic!("no GetTime counter:\n{m}"));
    assert_eq!(line.rsplit(' ').next(), Some("2"), "{line}");
    assert!(m.lines().any(|l| l.starts_with("vnetd_request_duration_seconds_bucket{")), "{m}");
    assert!(m.contains("# TYPE vnetd_requests_total counter"), "{m}");
    assert!(m.contains("# TYPE vnetd_request_duration_seconds histogram"), "{m}");
    // The SOAP port does not serve the admin endpoints.
    let r = http(&d.addr(), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 404);
}

const NEW_SP_KEY: &str = "fedcba9876543210fedcba98765432100123456789abcdef";
const NEW_CENTRE_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";
const PASSWORDS: [&str; 4] = ["Secret-Cli-1", "Secret-Soap-2", "Secret-Reset-3", "Wrong-Guess-4"];

fn assert_no_secrets(what: &str, text: &str) {
    for k in [SP_KEY, BSS_KEY, CENTRE_KEY, NEW_SP_KEY, NEW_CENTRE_KEY] {
        assert!(!text.to_ascii_lowercase().contains(k), "{what} contains key {k}");
        // Also any long slice of it (a key written in parts, or its first half).
        assert!(!text.to_ascii_lowercase().contains(&k[..24]), "{what} contains part of key {k}");
    }
    for p in PASSWORDS {
        assert!(!text.contains(p), "{what} contains password {p}");
    }
    assert!(!text.contains("$argon2"), "{what} contains a password hash");
}

#[test]
fn no_key_or_password_in_metrics_peer_list_or_log() {
    let mut d = Daemon::start();
    d.restart_with_edited_config(|t| t.replace("level = \"warn\"", "level = \"trace\""));
    let mut cli_out = String::new();
    let mut record = |o: Output| {
        cli_out.push_str(&stdout(&o));
        cli_out.push_str(&stderr(&o));
        o
    };
    d.add_standard_peers(true);
    let o = record(d.cli(&["peer", "set-key", SP_ID, "--key", NEW_SP_KEY]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = record(d.cli_stdin(&["user", "add", "--account-type", "01", "--account", "secret01", "--city-code", "0591", "--password-stdin"], &format!("{}\n", PASSWORDS[0])));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(2100));
    // SOAP traffic that carries passwords and keys.
    let r = d.call("ProvinceForBSS", "UserOpen", BSS_KEY, &[
        ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", "secret02"), ("Password", &enc(BSS_KEY, PASSWORDS[1])),
        ("CityCode", "0591"), ("UserType", "1"), ("CreditLimit", ""), ("Balance", ""), ("Alias", ""), ("BindingAccessNo", ""), ("TransactionID", "TX-SECRET-2"),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    let id = r.get("VNetUserID").to_string();
    let r = d.call("ProvinceForBSS", "PasswordReset", BSS_KEY, &[
        ("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("NewPassword", &enc(BSS_KEY, PASSWORDS[2])), ("TransactionID", "TX-SECRET-3"),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    for (account, pw) in [("secret01", PASSWORDS[0]), ("secret02", PASSWORDS[2]), ("secret02", PASSWORDS[3]), ("nosuchuser", PASSWORDS[3])] {
        let _ = d.call("ProvinceForSP", "UserAuth", NEW_SP_KEY, &[
            ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", account), ("Password", &enc(NEW_SP_KEY, pw)), ("UserIP", ""),
        ]);
    }
    let r = d.call("ProvinceForVNet", "KeyUpdate", CENTRE_KEY, &[
        ("SrcDeviceNo", CENTRE_ID), ("KeyRefreshType", "1"), ("UpdateKeyValue", &enc(CENTRE_KEY, NEW_CENTRE_KEY)), ("DESInitialValue", ""), ("EffectTimeStamp", ""),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    // A bad Authenticator made with a real key, and a refused envelope.
    let _ = d.call("ProvinceForSP", "GetUserinfo", BSS_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)]);
    let _ = d.post_raw("ProvinceForSP", "text/xml", b"<x>not an envelope</x>");

    let metrics = d.admin_get("/metrics").text();
    assert!(metrics.contains("vnetd_requests_total"), "{metrics}");
    assert_no_secrets("/metrics", &metrics);
    let list = record(d.cli(&["peer", "list"]));
    assert_no_secrets("peer list", &stdout(&list));
    let show = d.ok(&["user", "show", "secret02"]);
    assert_no_secrets("user show", &show);
    assert_no_secrets("CLI output", &cli_out);
    d.stop();
    let log = d.log();
    assert!(!log.is_empty(), "the daemon logged nothing at debug level");
    assert_no_secrets("the log", &log);
}

/// Every benchmark runs end to end with tiny sizes (numbers are not checked: the benchmarks never
/// pass or fail on timing), so a change elsewhere (e.g. operator commands refusing to create a
/// database) cannot break them unnoticed.
#[test]
fn benchmarks_run_end_to_end() {
    let runs: [&[&str]; 5] = [
        &["bench", "argon2", "--m-kib", "64", "--t", "1", "--seconds", "0.2"],
        &["bench", "sqlite", "--duration-s", "0.2", "--batch", "16"],
        &["bench", "soap", "--ops", "GetUserinfo,Charge", "--concurrency", "1", "--duration-s", "0.3", "--warmup-s", "0", "--users", "50", "--charge-users", "10", "--hold", "20"],
        &["bench", "sync", "--batch", "50", "--records", "200", "--duration-s", "1", "--lag-rate", "20", "--lag-duration-s", "1", "--flush-ms", "100"],
        &["bench", "web", "--nginx", "", "--concurrency", "1", "--login-concurrency", "1", "--duration-s", "0.3", "--warmup-s", "0", "--tickets", "2000"],
    ];
    for args in runs {
        let out = Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "vnetd {}: {}\n{}", args.join(" "), stderr(&out), stdout(&out));
        assert!(stdout(&out).contains('|') || stdout(&out).contains("records/s") || stdout(&out).contains("hashes"), "vnetd {}: {}", args.join(" "), stdout(&out));
    }
}

/// `bench scale` at tiny sizes (the tool must not rot; its numbers are not checked): the data set
/// it generates through the import and the billing code holds what it says (30 % of the users
/// with an order, 2 charges per user plus the orders' monthly charges), every operation answers
/// Result 0 for random users of the set, and the month rollover handles every order.
#[test]
fn bench_scale_runs_at_small_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench", "scale", "--users", "300,600", "--passwords", "10", "--concurrency", "2", "--auth-concurrency", "1",
        "--duration-s", "0.3", "--warmup-s", "0", "--starts", "1", "--dir",
    ];
    let out = Command::new(BIN).args(args).arg(dir.path()).stdin(Stdio::null()).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    for (n, orders, charges) in [(300, 90, 690), (600, 180, 1380)] {
        let part = text.split(&format!("## {n} users")).nth(1).unwrap_or_else(|| panic!("no section for {n} users:\n{text}"));
        let part = part.split("## ").next().unwrap();
        assert!(part.contains(&format!("- orders: {orders}\n")), "{part}");
        assert!(part.contains(&format!("- charges: {charges}\n")), "{part}");
        assert!(part.contains("- refused by the credit rules while generating: 0\n"), "{part}");
        for op in ["GetUserinfo", "UserAuth", "Charge", "OrderQuery"] {
            let row = part.lines().find(|l| l.starts_with(&format!("| {op} |"))).unwrap_or_else(|| panic!("no {op} row:\n{part}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert!(cells[3].parse::<f64>().unwrap() > 0.0, "{op} answered nothing: {row}");
            assert_eq!(cells[6], "0", "{op} had errors: {row}\n{part}");
        }
        let roll = part.lines().find(|l| l.contains("monthly rollover")).unwrap_or_else(|| panic!("no rollover:\n{part}"));
        let nums: Vec<u64> = roll.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
        // "…: 202701: R orders renewed, E expired; …": R + E is every order.
        let (renewed, expired) = roll.split("monthly rollover").nth(1).map(|r| {
            let v: Vec<u64> = r.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
            (v[1], v[2])
        }).unwrap();
        assert_eq!(renewed + expired, orders, "{roll} ({nums:?})");
        assert!(renewed > expired, "{roll}");
        assert!(part.contains("- restore: "), "{part}");
    }
    assert!(text.contains("| users | 300 | 600 |"), "{text}");
    // The data sets are kept for reuse, complete.
    assert!(dir.path().join("users-600/complete.txt").is_file());
}
