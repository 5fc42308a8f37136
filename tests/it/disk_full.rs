//! Storage failures on a filesystem of the daemon's own (issue 12 item 2): the data directory is a
//! small tmpfs (disk full) or an ext4 image on a loop device (read-only) mounted by the test.
//!
//! - Disk full: writes answer -22501 at once, reads keep answering, /readyz is unready and
//!   /healthz live, the relay neither marks a delivery it cannot record nor sends again while the
//!   disk is full; when the filler is removed the node is ready and writes commit within about a
//!   second, without a restart and without traffic (the writer's probe: store/health.rs).
//! - Read-only: `mount -o remount,ro` is refused by the kernel while vnetd holds its files open,
//!   so a filesystem goes read-only under a running daemon only by force, as ext4's
//!   `errors=remount-ro` does after an error (triggered here through
//!   /sys/fs/ext4/<dev>/trigger_fs_error). Writes answer -22501, reads keep answering, nothing
//!   crashes; the kernel gives such a filesystem back only through umount, fsck and mount, so
//!   recovery is a restart, after which nothing acknowledged is missing.
//!
//! In both, afterwards: `PRAGMA integrity_check` is ok, every acknowledged change is there exactly
//! once and nothing refused was stored.
//!
//! These tests need root (mount, loop devices). Without it they fail with a message saying so,
//! unless `VNETD_SKIP_MOUNT_TESTS=1`, which makes them print that they were skipped and pass.

use crate::fields::*;
use crate::harness::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const SPS: &str = "ProvinceForSP";
const BSS: &str = "ProvinceForBSS";
const VNET: &str = "ProvinceForVNet";
const SKIP_ENV: &str = "VNETD_SKIP_MOUNT_TESTS";

/// The example catalogue (tests/data/catalog-example.toml).
const SVC: &str = "3500000100000001";
const PERUSE: &str = "3500000100000101";
const MONTHLY: &str = "3500000100000102";
const SP_CHARGE: &[&str] = &["SPID", "ServiceID", "ServiceItemID", "VNetUserID", "Fee", "BatchCount", "TransactionID"];
const SP_ORDER: &[&str] = &["SPID", "ServiceID", "ServiceItemID", "ProductID", "VNetUserID", "ContractID", "IfExtend", "TransactionID"];
const SP_ORDER_QUERY: &[&str] = &["SPID", "VNetUserID", "ServiceID"];
const SP_CHARGE_QUERY: &[&str] = &["SPID", "TransactionID"];
const USER_INFO_QUERY: &[&str] = &["SrcDeviceNo", "AccountType", "Account"];

/// A write refused by a full or read-only disk must be answered within this.
const PROMPT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- mounts

/// Why this process cannot mount, or None.
fn not_root() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1).map(str::to_string));
    (euid.as_deref() != Some("0")).then(|| format!("not root (effective uid {})", euid.unwrap_or_else(|| "unknown".into())))
}

/// The test cannot set up its filesystem: fail, saying why, unless the skip is asked for.
/// Returns normally only when skipping.
fn cannot_mount(test: &str, why: &str) {
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {why} ({SKIP_ENV}=1)");
        return;
    }
    panic!(
        "{test} needs root and mount(8) (tmpfs, loop devices, mkfs.ext4, e2fsck) to give the daemon a filesystem of its own: {why}. \
         Run the tests as root, or set {SKIP_ENV}=1 to skip the storage-failure tests deliberately."
    );
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd} {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A filesystem mounted by the test; unmounted on drop (lazily if still busy), even when the test
/// failed.
struct Mount {
    point: PathBuf,
    /// The ext4 image behind the loop device, if any.
    image: Option<PathBuf>,
    mounted: bool,
}

impl Mount {
    fn tmpfs(point: &Path, size_kib: u64) -> Result<Mount, String> {
        let p = point.to_str().unwrap();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size_kib}k,mode=0700"), "tmpfs", p])?;
        Ok(Mount { point: point.to_path_buf(), image: None, mounted: true })
    }

    /// A new ext4 filesystem in `image` (sparse, `size_mib`), mounted on a loop device with
    /// `errors=remount-ro` (the usual setting: an error makes it read-only).
    fn ext4(point: &Path, image: &Path, size_mib: u64) -> Result<Mount, String> {
        std::fs::File::create(image).and_then(|f| f.set_len(size_mib << 20)).map_err(|e| format!("{}: {e}", image.display()))?;
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()])?;
        let mut m = Mount { point: point.to_path_buf(), image: Some(image.to_path_buf()), mounted: false };
        m.mount_again()?;
        std::fs::set_permissions(point, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(|e| e.to_string())?;
        Ok(m)
    }

    fn mount_again(&mut self) -> Result<(), String> {
        let image = self.image.as_ref().expect("an image").to_str().unwrap().to_string();
        run("mount", &["-o", "loop,errors=remount-ro", &image, self.point.to_str().unwrap()])?;
        self.mounted = true;
        Ok(())
    }

    fn unmount(&mut self) -> Result<(), String> {
        if self.mounted {
            run("umount", &[self.point.to_str().unwrap()])?;
            self.mounted = false;
        }
        Ok(())
    }

    /// The block device mounted here (`/dev/loopN`), from /proc/self/mountinfo.
    fn device(&self) -> String {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let point = self.point.to_str().unwrap();
        info.lines()
            .filter(|l| l.split(' ').nth(4) == Some(point))
            .filter_map(|l| l.split(" - ").nth(1).and_then(|r| r.split(' ').nth(1)).map(str::to_string))
            .next_back()
            .unwrap_or_else(|| panic!("{point} not in mountinfo"))
    }

    /// The mount options in force (/proc/mounts).
    fn options(&self) -> String {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let point = self.point.to_str().unwrap();
        mounts.lines().filter(|l| l.split(' ').nth(1) == Some(point)).filter_map(|l| l.split(' ').nth(3)).next_back().unwrap_or("").to_string()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted && self.unmount().is_err() {
            let _ = run("umount", &["-l", self.point.to_str().unwrap()]);
            self.mounted = false;
        }
    }
}

/// Fill the filesystem at `dir` with a file `filler` until it is full (ENOSPC); returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) if n == chunk => continue,
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    f.sync_all().unwrap();
    let e = std::fs::File::create(dir.join("probe")).and_then(|mut p| p.write_all(&[0u8; 4096]).and_then(|_| p.sync_all()));
    assert!(e.is_err(), "{} is not full", dir.display());
    let _ = std::fs::remove_file(dir.join("probe"));
    path
}

// ---------------------------------------------------------------- a centre that answers on cue

/// A stand-in for the centre: answers every operation with Result 0 (BatchSync with the
/// LastSequenceID of what it got), but holds PUserInfoNotify answers until `release`. Counts
/// what it received.
struct FakeCentre {
    addr: String,
    gate: Arc<(Mutex<bool>, Condvar)>,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeCentre {
    fn start() -> FakeCentre {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s, st) = (gate.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (g, s) = (g.clone(), s.clone());
                        std::thread::spawn(move || FakeCentre::serve(conn, &g, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeCentre { addr, gate, seen, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/VNetForProvince/services/VNetForProvince", self.addr)
    }

    fn serve(mut conn: TcpStream, gate: &(Mutex<bool>, Condvar), seen: &Mutex<Vec<String>>) {
        conn.set_nonblocking(false).unwrap();
        let Some(rq) = read_request_body(&mut conn) else { return };
        let Ok(env) = vnetd::soap::envelope::parse(&String::from_utf8_lossy(&rq)) else { return };
        let op = env.op.name.clone();
        seen.lock().unwrap().push(op.clone());
        if op == "PUserInfoNotify" {
            let (open, cv) = gate;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
        }
        let get = |n: &str| env.op.child(n).map(|c| c.text.clone()).unwrap_or_default();
        let extra = match op.as_str() {
            "BatchSync" => {
                let last = get("SequenceID").parse::<i64>().unwrap_or(0) + get("TotalCount").parse::<i64>().unwrap_or(0) - 1;
                format!("<LastSequenceID>{last}</LastSequenceID>")
            }
            "ClockSync" => format!("<ServerTime>{}</ServerTime>", ts(0)),
            _ => String::new(),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><{op}Response><Result>0</Result><ErrDescription></ErrDescription>{extra}</{op}Response></soap:Body></soap:Envelope>"
        );
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(body.as_bytes()));
    }

    fn release(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }

    fn count(&self, op: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|o| *o == op).count()
    }
}

impl Drop for FakeCentre {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.release();
    }
}

/// Read one HTTP request's body (head, then Content-Length bytes).
fn read_request_body(conn: &mut TcpStream) -> Option<Vec<u8>> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
            if buf.len() >= end + 4 + len {
                return Some(buf[end + 4..end + 4 + len].to_vec());
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------- the node on its own filesystem

/// A daemon whose data directory is a filesystem of its own, and the fake centre it delivers to.
/// Dropped: the daemon is killed, then the filesystem unmounted.
struct Rig {
    d: Daemon,
    mount: Mount,
    centre: FakeCentre,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.d.kill9();
        let _ = self.mount.unmount();
    }
}

impl Rig {
    /// A node with the example catalogue and the SP, BSS and centre (URL: the fake) peers, moved
    /// onto the filesystem `mount` makes at its data directory. None: skipped (`cannot_mount`).
    fn start(test: &str, mount: impl FnOnce(&Path, &Path) -> Result<Mount, String>) -> Option<Rig> {
        if let Some(why) = not_root() {
            cannot_mount(test, &why);
            return None;
        }
        let centre = FakeCentre::start();
        let mut d = Daemon::start_with("[sync]\nflush_interval_ms = 100\nretry_max_s = 2\n");
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/catalog-example.toml");
        d.ok(&["catalog", "import", example]);
        d.ok(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY]);
        d.ok(&["peer", "add", "--id", BSS_ID, "--kind", "bss", "--key", BSS_KEY]);
        d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &centre.url()]);
        // Stopped cleanly the database is one file (the WAL checkpointed away): move it over.
        d.stop();
        let data = d.db.parent().unwrap().to_path_buf();
        let before = d.dir.path().join("data-before");
        std::fs::rename(&data, &before).unwrap();
        std::fs::create_dir(&data).unwrap();
        let m = match mount(&data, d.dir.path()) {
            Ok(m) => m,
            Err(e) => {
                cannot_mount(test, &format!("cannot mount a filesystem on {}: {e}", data.display()));
                return None;
            }
        };
        std::fs::copy(before.join("vnetd.db"), &d.db).unwrap();
        std::fs::set_permissions(&d.db, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        // Durable before the daemon starts, as `vnetd restore` makes its copy: the daemon's own
        // commits go to the WAL, and an unsynced copy would be lost with the filesystem.
        std::fs::File::open(&d.db).and_then(|f| f.sync_all()).unwrap();
        std::fs::File::open(&data).and_then(|f| f.sync_all()).unwrap();
        let mut rig = Rig { d, mount: m, centre };
        rig.d.start_again();
        Some(rig)
    }

    fn data(&self) -> PathBuf {
        self.d.db.parent().unwrap().to_path_buf()
    }

    /// The daemon is still running (it did not crash): its process is not a zombie.
    fn assert_alive(&self) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.d.pid())).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        assert!(matches!(state, Some(c) if c != 'Z' && c != 'X'), "the daemon exited ({stat:?})\n{}", self.d.log());
    }
}

// ---------------------------------------------------------------- calls and the record of answers

/// What the node acknowledged and what it refused, checked against the database at the end.
#[derive(Default)]
struct Book {
    /// account → VNetUserID of acknowledged UserOpens.
    users: HashMap<String, String>,
    /// Accounts whose UserOpen was refused (and not retried).
    refused_users: Vec<String>,
    /// TransactionIDs of acknowledged Charges and Orders; (tx, OrderID) of Orders.
    charges: Vec<String>,
    orders: Vec<(String, String)>,
    /// TransactionIDs of refused Charges and Orders.
    refused_tx: Vec<String>,
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn user_open(d: &Daemon, account: &str, tx: &str) -> Resp {
    let pw = enc(BSS_KEY, "Disk-Pass-1");
    d.call_named(BSS, "UserOpen", BSS_KEY, USER_OPEN, &[
        ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", account), ("Password", &pw), ("CityCode", "0591"), ("UserType", "1"),
        ("TransactionID", tx),
    ])
}

fn charge(d: &Daemon, user: &str, tx: &str) -> Resp {
    d.call_named(SPS, "Charge", SP_KEY, SP_CHARGE, &[
        ("SPID", SP_ID), ("ServiceID", SVC), ("ServiceItemID", PERUSE), ("VNetUserID", user), ("Fee", "200"), ("BatchCount", "1"), ("TransactionID", tx),
    ])
}

fn order(d: &Daemon, user: &str, tx: &str) -> Resp {
    d.call_named(SPS, "Order", SP_KEY, SP_ORDER, &[
        ("SPID", SP_ID), ("ServiceID", SVC), ("ServiceItemID", MONTHLY), ("VNetUserID", user), ("IfExtend", "1"), ("TransactionID", tx),
    ])
}

impl Book {
    fn open_ok(&mut self, d: &Daemon, account: &str) -> String {
        let r = user_open(d, account, &format!("TX-{account}"));
        assert_code(&r, 0, &format!("UserOpen {account}"));
        let id = r.get("VNetUserID").to_string();
        self.users.insert(account.to_string(), id.clone());
        id
    }

    fn charge_ok(&mut self, d: &Daemon, user: &str, tx: &str) {
        assert_code(&charge(d, user, tx), 0, &format!("Charge {tx}"));
        self.charges.push(tx.to_string());
    }

    fn order_ok(&mut self, d: &Daemon, user: &str, tx: &str) {
        let r = order(d, user, tx);
        assert_code(&r, 0, &format!("Order {tx}"));
        self.orders.push((tx.to_string(), r.get("OrderID").to_string()));
    }

    /// UserOpen, Charge and Order, each answered -22501 within `PROMPT`; returns the slowest.
    fn refused_writes(&mut self, d: &Daemon, tag: &str, user: &str, rounds: usize) -> Duration {
        let mut slowest = Duration::ZERO;
        for i in 0..rounds {
            let account = format!("{tag}-refused-{i}");
            let (r, t) = timed(|| user_open(d, &account, &format!("TX-{account}")));
            assert_code(&r, -22501, &format!("UserOpen {account} on a {tag} disk"));
            self.refused_users.push(account);
            slowest = slowest.max(t);
            let tx = format!("{tag}-C{i}");
            let (r, t) = timed(|| charge(d, user, &tx));
            assert_code(&r, -22501, &format!("Charge {tx} on a {tag} disk"));
            self.refused_tx.push(tx);
            slowest = slowest.max(t);
            let tx = format!("{tag}-O{i}");
            let (r, t) = timed(|| order(d, user, &tx));
            assert_code(&r, -22501, &format!("Order {tx} on a {tag} disk"));
            self.refused_tx.push(tx);
            slowest = slowest.max(t);
        }
        assert!(slowest < PROMPT, "a refused write took {slowest:?} (at most {PROMPT:?})");
        slowest
    }

    /// Reads answer from what was acknowledged.
    fn reads_answer(&self, d: &Daemon) {
        d.assert_serves_get_time();
        for (account, id) in &self.users {
            let r = d.call_named(SPS, "GetUserinfo", SP_KEY, GET_USERINFO_SP, &[("SPID", SP_ID), ("VNetUserID", id)]);
            assert_code(&r, 0, &format!("GetUserinfo {id}"));
            assert_eq!((r.get("VNetUserID"), r.get("Account"), r.get("Status")), (id.as_str(), account.as_str(), "00"));
            let r = d.call_named(VNET, "UserInfoQueryV3", CENTRE_KEY, USER_INFO_QUERY, &[("SrcDeviceNo", CENTRE_ID), ("AccountType", "01"), ("Account", account)]);
            assert_code(&r, 0, &format!("UserInfoQueryV3 {account}"));
            assert_eq!(r.get("VNetUserID"), id);
        }
        for tx in &self.charges {
            let r = d.call_named(SPS, "ChargeQuery", SP_KEY, SP_CHARGE_QUERY, &[("SPID", SP_ID), ("TransactionID", tx)]);
            assert_code(&r, 0, &format!("ChargeQuery {tx}"));
        }
        for (tx, order_id) in &self.orders {
            let user = self.users.values().find(|u| {
                let r = d.call_named(SPS, "OrderQuery", SP_KEY, SP_ORDER_QUERY, &[("SPID", SP_ID), ("VNetUserID", u), ("ServiceID", SVC)]);
                r.result() == 0 && r.op.child("Orders").is_some_and(|o| o.children.iter().any(|e| e.child("OrderID").is_some_and(|c| c.text == *order_id)))
            });
            assert!(user.is_some(), "OrderQuery finds no user with order {order_id} ({tx})");
        }
        for account in &self.refused_users {
            let r = d.call_named(VNET, "UserInfoQueryV3", CENTRE_KEY, USER_INFO_QUERY, &[("SrcDeviceNo", CENTRE_ID), ("AccountType", "01"), ("Account", account)]);
            assert_code(&r, -1, &format!("UserInfoQueryV3 of the refused {account}"));
        }
    }

    /// The database is intact, every acknowledged change is there once, nothing refused is.
    fn verify(&self, d: &Daemon) {
        let db = d.db_ro();
        let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        let one = |sql: &str, arg: &str| -> i64 { db.query_row(sql, [arg], |r| r.get(0)).unwrap() };
        for (account, id) in &self.users {
            assert_eq!(one("SELECT count(*) FROM user WHERE account = ?1", account), 1, "acknowledged user {account}");
            assert_eq!(one("SELECT count(*) FROM user WHERE vnet_user_id = ?1 AND account_type = '01'", id), 1, "{account} is {id}");
            assert_eq!(one("SELECT count(*) FROM outbox WHERE operation = 'PUserInfoNotify' AND order_key = 'user:' || ?1", id), 1, "{account}'s notification");
        }
        for account in &self.refused_users {
            assert_eq!(one("SELECT count(*) FROM user WHERE account = ?1", account), 0, "refused user {account} was stored");
        }
        for tx in &self.charges {
            assert_eq!(one("SELECT count(*) FROM charge WHERE transaction_id = ?1 AND operation = 'Charge'", tx), 1, "acknowledged charge {tx}");
        }
        for (tx, order_id) in &self.orders {
            assert_eq!(one("SELECT count(*) FROM orders WHERE order_id = ?1", order_id), 1, "acknowledged order {order_id}");
            assert_eq!(one("SELECT count(*) FROM charge WHERE transaction_id = ?1 AND operation = 'Order'", tx), 1, "the charge of order {tx}");
        }
        for tx in &self.refused_tx {
            assert_eq!(one("SELECT count(*) FROM charge WHERE transaction_id = ?1", tx), 0, "refused {tx} was charged");
            assert_eq!(one("SELECT count(*) FROM idempotency WHERE txid = ?1", tx), 0, "refused {tx} has a stored answer");
        }
        let orders: i64 = db.query_row("SELECT count(*) FROM orders", [], |r| r.get(0)).unwrap();
        assert_eq!(orders as usize, self.orders.len(), "orders in the database");
    }
}

/// `/readyz`: (status, text).
fn readyz(d: &Daemon) -> (u16, String) {
    let r = d.admin_get("/readyz");
    (r.status, r.text())
}

fn error_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(" ERROR ") && l.contains(needle)).count()
}

// ---------------------------------------------------------------- the tests

#[test]
fn disk_full_refuses_writes_at_once_keeps_reads_and_recovers_without_restart() {
    const TEST: &str = "disk_full_refuses_writes_at_once_keeps_reads_and_recovers_without_restart";
    let Some(mut rig) = Rig::start(TEST, |data, _| Mount::tmpfs(data, 8 * 1024)) else { return };
    let mut book = Book::default();
    let d = &rig.d;

    // Acknowledged before: users, a charge, an order. Their PUserInfoNotify reach the centre,
    // which holds its answers; everything else it acknowledges at once.
    let u1 = book.open_ok(d, "full-a1");
    book.open_ok(d, "full-a2");
    book.charge_ok(d, &u1, "full-C-before");
    book.order_ok(d, &u1, "full-O-before");
    let held = book.users.len();
    assert!(wait_until(Duration::from_secs(10), || rig.centre.count("PUserInfoNotify") == held), "the centre got {} PUserInfoNotify", rig.centre.count("PUserInfoNotify"));
    let other_centre_rows = || d.outbox().iter().filter(|r| r.destination == "centre" && r.operation != "PUserInfoNotify" && r.state == "pending").count();
    assert!(wait_until(Duration::from_secs(10), || other_centre_rows() == 0), "BatchSync records still waiting");
    assert_eq!(readyz(d).0, 200);

    // Fill the filesystem, then let the centre acknowledge the notifications: the node cannot
    // record that, so they stay pending and nothing is sent again while the disk is full.
    let filler = fill(&rig.data());
    let log_before = d.log().len();
    rig.centre.release();

    // Writes: -22501 at once, every time.
    let slowest = book.refused_writes(d, "full", &u1, 5);
    eprintln!("disk full: the slowest of 15 refused writes took {slowest:?}");
    let (status, why) = readyz(d);
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("database write refused") && why.contains("database or disk is full"), "{why}");
    eprintln!("disk full: /readyz {status} {}", why.trim());
    assert_eq!(d.admin_get("/healthz").status, 200, "the database still answers");
    // Reads: from what was acknowledged.
    book.reads_answer(d);
    let metrics = d.admin_get("/metrics").text();
    assert!(metrics.contains("result=\"-22501\""), "refused writes are counted");
    // The relay: each held notification was sent once; none marked delivered; no resending.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rig.centre.count("PUserInfoNotify"), held, "notifications sent again while the disk is full");
    for id in book.users.values() {
        let rows = d.outbox_for_user("PUserInfoNotify", id);
        assert_eq!(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["pending"], "{id}: an unrecorded delivery");
    }
    rig.assert_alive();
    // One error line per kind of failure, not one per request or per delivery.
    let log = d.log()[log_before..].to_string();
    assert_eq!(error_lines(&log, "database write refused"), 1, "{log}");
    assert_eq!(error_lines(&log, "cannot record a delivery"), 1, "{log}");
    assert!(log.lines().filter(|l| l.contains(" ERROR ")).count() <= 3, "error lines while the disk is full:\n{log}");
    // The other files: the WAL and its index are there, nothing else was made.
    let mut names: Vec<String> = std::fs::read_dir(rig.data()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["filler", "vnetd.db", "vnetd.db-shm", "vnetd.db-wal", "vnetd.db.lock"]);
    // An operator's backup onto the full disk fails and leaves nothing behind.
    let out = d.cli(&["backup", rig.data().join("backup.db").to_str().unwrap()]);
    assert_eq!(code(&out), 1, "backup onto a full disk: {}", stderr(&out));
    assert!(!rig.data().join("backup.db").exists() && !rig.data().join("backup.partial").exists());

    // Killed while the disk is full and started again (systemd would): it recovers the WAL,
    // comes up, serves reads and is unready at once, before any write is asked of it.
    rig.d.kill9();
    rig.d.start_again();
    let d = &rig.d;
    let (status, why) = readyz(d);
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("database write refused"), "{why}");
    book.reads_answer(d);
    assert_eq!(user_open(d, "full-restarted", "TX-full-restarted").result(), -22501);
    book.refused_users.push("full-restarted".into());

    // Space is freed: ready again and writes commit without a restart, with no traffic needed.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || readyz(d).0 == 200), "not ready 5 s after space was freed: {}", readyz(d).1);
    let ready_after = freed.elapsed();
    let (r, t) = timed(|| user_open(d, "full-after-1", "TX-full-after-1"));
    assert_code(&r, 0, "UserOpen after space was freed");
    book.users.insert("full-after-1".into(), r.get("VNetUserID").to_string());
    eprintln!("disk full: ready {ready_after:?} after the filler was removed; the next write took {t:?}");
    let log = d.log()[log_before..].to_string();
    assert!(log.contains("database writes commit again"), "{log}");
    // A refused request retried with its TransactionID runs afresh (its -22501 was not stored).
    let account = book.refused_users.remove(0);
    let r = user_open(d, &account, &format!("TX-{account}"));
    assert_code(&r, 0, "retry of a refused UserOpen");
    book.users.insert(account, r.get("VNetUserID").to_string());
    let tx = book.refused_tx.remove(0);
    book.charge_ok(d, &u1, &tx);
    let u2 = book.users["full-a2"].clone();
    book.order_ok(d, &u2, "full-O-after");
    // The relay sends the notifications again and records them.
    assert!(
        wait_until(Duration::from_secs(10), || book.users.values().all(|id| d.outbox_for_user("PUserInfoNotify", id).iter().all(|r| r.state == "delivered"))),
        "notifications not delivered after recovery: {:?}",
        d.outbox().iter().filter(|r| r.state != "delivered").map(|r| (&r.operation, &r.state)).collect::<Vec<_>>()
    );
    assert_eq!(rig.centre.count("PUserInfoNotify"), held * 2 + book.users.len() - held, "each unrecorded delivery went once more");
    rig.assert_alive();
    book.reads_answer(&rig.d);
    book.verify(&rig.d);
}

#[test]
fn read_only_filesystem_refuses_writes_keeps_reads_and_a_restart_after_fsck_loses_nothing() {
    const TEST: &str = "read_only_filesystem_refuses_writes_keeps_reads_and_a_restart_after_fsck_loses_nothing";
    let Some(mut rig) = Rig::start(TEST, |data, dir| Mount::ext4(data, &dir.join("disk.img"), 32)) else { return };
    let mut book = Book::default();
    let d = &rig.d;
    let u1 = book.open_ok(d, "ro-a1");
    book.charge_ok(d, &u1, "ro-C-before");
    book.order_ok(d, &u1, "ro-O-before");
    rig.centre.release();

    // An operator's remount is refused while the daemon has its files open for writing, and the
    // daemon is unaffected.
    let data = rig.data();
    let err = run("mount", &["-o", "remount,ro", data.to_str().unwrap()]).expect_err("remount,ro under a running daemon");
    assert!(err.contains("busy"), "{err}");
    book.open_ok(d, "ro-a2");

    // An error forces the filesystem read-only (errors=remount-ro).
    let log_before = d.log().len();
    let dev = rig.mount.device();
    let name = dev.rsplit('/').next().unwrap();
    std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "vnetd disk_full test").unwrap();
    let e = std::fs::write(data.join("probe"), b"x").expect_err("the filesystem is read-only");
    assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{e}; options {}", rig.mount.options());

    let slowest = book.refused_writes(d, "ro", &u1, 5);
    eprintln!("read-only: the slowest of 15 refused writes took {slowest:?}");
    let (status, why) = readyz(d);
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("database write refused"), "{why}");
    eprintln!("read-only: /readyz {status} {}", why.trim());
    assert_eq!(d.admin_get("/healthz").status, 200);
    book.reads_answer(d);
    // Still up and answering a few seconds on (the dirty pages of the WAL index cannot be
    // written back; the writer keeps probing).
    std::thread::sleep(Duration::from_secs(2));
    book.reads_answer(d);
    rig.assert_alive();
    let log = d.log()[log_before..].to_string();
    assert_eq!(error_lines(&log, "database write refused"), 1, "{log}");
    assert!(log.lines().filter(|l| l.contains(" ERROR ")).count() <= 3, "error lines while read-only:\n{log}");

    // Recovery: stop, unmount, fsck, mount, start.
    let stopped = Instant::now();
    rig.d.stop();
    rig.mount.unmount().unwrap();
    let image = rig.mount.image.clone().unwrap();
    let fsck = Command::new("e2fsck").args(["-f", "-y", image.to_str().unwrap()]).output().unwrap();
    assert!(fsck.status.code().is_some_and(|c| c <= 1), "e2fsck: {}\n{}", fsck.status, String::from_utf8_lossy(&fsck.stdout));
    rig.mount.mount_again().unwrap();
    rig.d.start_again();
    eprintln!("read-only: stop, fsck, mount and start took {:?}", stopped.elapsed());
    let d = &rig.d;
    assert!(wait_until(Duration::from_secs(5), || readyz(d).0 == 200), "{}", readyz(d).1);
    book.reads_answer(d);
    book.verify(d);
    let account = book.refused_users.remove(0);
    let r = user_open(d, &account, &format!("TX-{account}"));
    assert_code(&r, 0, "retry of a refused UserOpen after the restart");
    book.users.insert(account, r.get("VNetUserID").to_string());
    book.charge_ok(d, &u1, "ro-C-after");
    book.verify(&rig.d);
}
