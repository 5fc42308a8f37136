//! Crash safety (spec 10 "Durability"): SIGKILL during a burst of UserOpen calls loses no
//! acknowledged user, never reuses a VNetUserID, keeps the database intact, and every
//! acknowledged user has its PUserInfoNotify outbox row.

use crate::harness::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;

/// A pseudo-random number in 0..n (no rand crate; seeded from the clock and a counter).
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish() % n
}

/// One UserOpen; Some(VNetUserID) iff the daemon acknowledged it (HTTP 200, Result 0).
fn user_open(addr: &str, account: &str, password: Option<&str>) -> Result<Option<String>, String> {
    let pw = password.map(|p| enc(BSS_KEY, p)).unwrap_or_default();
    let tx = format!("TX-{account}");
    let fields = signed_fields(
        BSS_KEY,
        &[
            ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", account), ("Password", &pw), ("CityCode", "0591"),
            ("UserType", "1"), ("CreditLimit", ""), ("Balance", ""), ("Alias", ""), ("BindingAccessNo", ""), ("TransactionID", &tx),
        ],
        &ts(0),
    );
    let body = envelope_owned("UserOpen", &fields);
    let r = try_http(addr, "POST", &Daemon::path("ProvinceForBSS"), &[("Content-Type", "text/xml; charset=utf-8")], body.as_bytes(), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("HTTP {}", r.status));
    }
    // A response cut short by the kill is not an acknowledgement.
    let text = r.text();
    if !text.contains("</soap:Envelope>") {
        return Err("truncated response".into());
    }
    let resp = Resp::parse(&text);
    Ok((resp.result() == 0).then(|| resp.get("VNetUserID").to_string()))
}

/// Burst UserOpen from `CLIENTS` threads, SIGKILL the daemon after `kill_after`; returns the
/// acknowledged (account → VNetUserID) pairs.
fn burst_and_kill(d: &mut Daemon, cycle: usize, kill_after: Duration) -> HashMap<String, String> {
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (acked, stop, addr) = (acked.clone(), stop.clone(), d.addr());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let account = format!("c{cycle}t{t}n{i}");
                    // Every fourth user also gets a password (Argon2 on the hashing pool).
                    let pw = (i % 4 == 0).then_some("Crash-Pass1");
                    match user_open(&addr, &account, pw) {
                        Ok(Some(id)) => {
                            acked.lock().unwrap().insert(account, id);
                        }
                        Ok(None) => panic!("UserOpen of a fresh account {account} was refused"),
                        // Connection errors after the kill are expected and not acknowledged.
                        Err(_) if stop.load(Ordering::SeqCst) => break,
                        Err(e) => panic!("client error before the kill: {e}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(kill_after);
    // Errors from here on are expected: the flag goes up just before the kill.
    stop.store(true, Ordering::SeqCst);
    d.kill9();
    for t in threads {
        t.join().expect("client thread");
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

fn verify(d: &Daemon, acked: &HashMap<String, String>) {
    let db = d.db_ro();
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    // Acknowledged IDs are distinct.
    let ids: HashSet<&String> = acked.values().collect();
    assert_eq!(ids.len(), acked.len(), "a VNetUserID was acknowledged for two accounts");
    let mut stmt = db.prepare("SELECT account, status FROM user WHERE vnet_user_id = ?1").unwrap();
    let mut notify = db.prepare("SELECT count(*) FROM outbox WHERE operation = 'PUserInfoNotify' AND order_key = ?1").unwrap();
    for (account, id) in acked {
        let row: Option<(String, String)> = stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).ok();
        assert_eq!(row, Some((account.clone(), "00".to_string())), "acknowledged user {account} ({id}) is missing or changed");
        let n: i64 = notify.query_row([format!("user:{id}")], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "acknowledged user {account} ({id}) has {n} PUserInfoNotify rows");
    }
    // Every account has one live holder and no VNetUserID appears twice in the table.
    let dup: i64 = db.query_row("SELECT count(*) FROM (SELECT vnet_user_id FROM user GROUP BY vnet_user_id HAVING count(*) > 1)", [], |r| r.get(0)).unwrap();
    assert_eq!(dup, 0);
    let dup: i64 = db
        .query_row("SELECT count(*) FROM (SELECT account FROM user WHERE status <> '03' GROUP BY account_type, account HAVING count(*) > 1)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dup, 0);
    // Every committed user (acknowledged or not) has its notification: same transaction.
    let orphans: i64 = db
        .query_row(
            "SELECT count(*) FROM user u WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.operation = 'PUserInfoNotify' AND o.order_key = 'user:' || u.vnet_user_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "users committed without their PUserInfoNotify");
    // The ID counter is not behind any ID in use, so no ID can be handed out again.
    let max_id: Option<String> = db.query_row("SELECT max(vnet_user_id) FROM user", [], |r| r.get(0)).unwrap();
    drop(stmt);
    drop(notify);
    // Spot checks through the CLI.
    let mut sample: Vec<(&String, &String)> = acked.iter().collect();
    sample.sort();
    for (account, id) in sample.iter().take(3).chain(sample.iter().rev().take(3)) {
        let out = d.ok(&["user", "show", account]);
        let line = out.lines().nth(1).unwrap_or_else(|| panic!("user show {account}: {out}"));
        assert_eq!(line.split('\t').next(), Some(id.as_str()), "{out}");
    }
    if let Some(max_id) = max_id {
        let out = d.ok(&["user", "add", "--account-type", "01", "--account", &format!("after-{max_id}"), "--city-code", "0591"]);
        assert!(out.trim() > max_id.as_str(), "new ID {} not above {max_id}", out.trim());
        assert!(!ids.contains(&out.trim().to_string()));
    }
}

#[test]
fn kill9_during_user_open_burst_loses_nothing_acknowledged() {
    let mut d = Daemon::with_peers(false);
    let mut all: HashMap<String, String> = HashMap::new();
    for cycle in 0..2 {
        let kill_after = Duration::from_millis(1000 + random_below(1000));
        let started = Instant::now();
        let acked = burst_and_kill(&mut d, cycle, kill_after);
        assert!(!acked.is_empty(), "cycle {cycle}: nothing acknowledged in {:?}", started.elapsed());
        eprintln!("cycle {cycle}: {} users acknowledged before SIGKILL at {kill_after:?}", acked.len());
        for (k, v) in acked {
            assert!(all.insert(k, v).is_none());
        }
        d.start_again();
        verify(&d, &all);
    }
    // The daemon serves normally after the second recovery.
    let id = user_open(&d.addr(), "after-crash-1", Some("After-Pass1")).unwrap().expect("UserOpen after recovery");
    assert!(!all.values().any(|v| *v == id), "VNetUserID {id} reused");
}
