//! Sync with the centre and SPs against a real `vnetd centre-sim` (spec 2.4, 2.6, 4.1, 4.3, 6, 7.1,
//! 9, 11 "Sync", "Keys"): every outbound message signed and accepted, outages, kill -9 in a sync
//! burst, dead letters, key rotation with messages in flight, roaming authentication both ways and
//! RoamServiceNotify's effect on the use rules.

use crate::centre_sim::{CentreSim, NEXT_KEY, NODE_DEV};
use crate::fields::*;
use crate::harness::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SPS: &str = "ProvinceForSP";
const BSS: &str = "ProvinceForBSS";
const VNET: &str = "ProvinceForVNet";

/// The example catalogue (tests/data/catalog-example.toml).
const SVC: &str = "3500000100000001";
const PERUSE: &str = "3500000100000101";
const MONTHLY: &str = "3500000100000102";

/// A national SP (scope national → SPProvinceID 00) imported into the catalogue, with its own key.
const NAT_SP: &str = "00000004";
const NAT_SP_KEY: &str = "2233445566778899aabbccddeeff00112233445566778899";
const NAT_SVC: &str = "0000000400000001";
const NAT_PERUSE: &str = "0000000400000101";
const NAT_MONTHLY: &str = "0000000400000102";

// Request fields in the spec's (Authenticator) order, without TimeStamp and Authenticator.
const SP_CHARGE: &[&str] = &["SPID", "ServiceID", "ServiceItemID", "VNetUserID", "Fee", "BatchCount", "TransactionID"];
const SP_ORDER: &[&str] = &["SPID", "ServiceID", "ServiceItemID", "ProductID", "VNetUserID", "ContractID", "IfExtend", "TransactionID"];
const SP_SERVICE_AUTH: &[&str] = &["SPID", "ServiceID", "ServiceItemID", "VNetUserID"];
const BSS_ORDER: &[&str] =
    &["SrcDeviceNo", "SPID", "ServiceID", "ServiceItemID", "ProductID", "VNetUserID", "ContractID", "IfExtend", "TransactionID"];
const VNET_CHARGE: &[&str] = &["SrcDeviceNo", "SPID", "ServiceID", "ServiceItemID", "VNetUserID", "Fee", "BatchCount", "TransactionID"];
const VNET_ORDER: &[&str] = BSS_ORDER;
const ROAM_AUTH_IN: &[&str] =
    &["SrcDeviceNo", "SrcProvinceID", "SPID", "ServiceID", "AccountType", "Account", "Password", "UserIP", "RoamType", "TransactionID"];
const ROAM_NOTIFY: &[&str] =
    &["SrcDeviceNo", "ActionType", "SPID", "SPProvinceID", "ServiceID", "ServiceItemID", "ServiceItemName", "FeeType", "Price"];


const PW: &str = "s3cret-Pass";

/// `[sync]` with small values so that tests run fast.
fn sync_cfg(batch_max_records: u32) -> String {
    format!("[sync]\nbatch_max_records = {batch_max_records}\nflush_interval_ms = 100\nretry_max_s = 2\ncentre_timeout_ms = 3000\n")
}

// ---------------------------------------------------------------- setting up

/// A daemon with the example catalogue (and `more_catalog`, if not empty) and the SP, BSS and
/// centre peers; the SP and centre get the given URLs.
fn node(extra: &str, centre_url: Option<&str>, sp_url: Option<&str>, more_catalog: &str) -> Daemon {
    let d = Daemon::start_with(extra);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/catalog-example.toml");
    d.ok(&["catalog", "import", example]);
    if !more_catalog.is_empty() {
        let file = d.dir.path().join("more-catalog.toml");
        std::fs::write(&file, more_catalog).unwrap();
        d.ok(&["catalog", "import", file.to_str().unwrap()]);
    }
    let mut sp = vec!["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY];
    if let Some(u) = sp_url {
        sp.extend(["--url", u]);
    }
    d.ok(&sp);
    d.ok(&["peer", "add", "--id", BSS_ID, "--kind", "bss", "--key", BSS_KEY]);
    let mut centre = vec!["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY];
    if let Some(u) = centre_url {
        centre.extend(["--url", u]);
    }
    d.ok(&centre);
    // The daemon's peer cache refreshes every second.
    std::thread::sleep(Duration::from_millis(1100));
    d
}

fn url(addr: &str, path: &str) -> String {
    format!("http://{addr}{path}")
}

fn call(d: &Daemon, service: &str, key: &str, names: &[&str], given: &[(&str, &str)]) -> Resp {
    let caller = match service {
        SPS => ("SPID", SP_ID),
        BSS => ("SrcDeviceNo", BSS_ID),
        _ => ("SrcDeviceNo", CENTRE_ID),
    };
    let mut g = given.to_vec();
    if !g.iter().any(|(k, _)| *k == caller.0) {
        g.insert(0, caller);
    }
    d.call_named(service, names_op(service, names), key, names, &g)
}

/// The operation a field list belongs to (each list above is used for one operation per service).
fn names_op(service: &str, names: &[&str]) -> &'static str {
    let is = |l: &[&str]| l == names;
    match service {
        SPS if is(USER_AUTH) => "UserAuth",
        SPS if is(PHONE_AUTH) => "PhoneNumAuth",
        SPS if is(GET_USERINFO_SP) => "GetUserinfo",
        SPS if is(SP_CHARGE) => "Charge",
        SPS if is(SP_ORDER) => "Order",
        SPS if is(SP_SERVICE_AUTH) => "ServiceAuth",
        BSS if is(USER_OPEN) => "UserOpen",
        BSS if is(USER_MODIFY) => "UserModify",
        BSS if is(STATUS_CHANGE) => "UserStatusChange",
        BSS if is(PASSWORD_RESET) => "PasswordReset",
        BSS if is(BSS_ORDER) => "Order",
        VNET if is(GET_USERINFO_VNET) => "GetUserinfo",
        VNET if is(VNET_CHARGE) => "Charge",
        VNET if is(VNET_ORDER) => "Order",
        VNET if is(ROAM_AUTH_IN) => "RoamAuthV2",
        VNET if is(ROAM_NOTIFY) => "RoamServiceNotify",
        VNET if is(KEY_UPDATE) => "KeyUpdate",
        _ => panic!("no operation for {service} {names:?}"),
    }
}

fn sp(d: &Daemon, names: &[&str], given: &[(&str, &str)]) -> Resp {
    call(d, SPS, SP_KEY, names, given)
}

fn bss(d: &Daemon, names: &[&str], given: &[(&str, &str)]) -> Resp {
    call(d, BSS, BSS_KEY, names, given)
}

fn centre(d: &Daemon, names: &[&str], given: &[(&str, &str)]) -> Resp {
    call(d, VNET, CENTRE_KEY, names, given)
}

fn ok(r: &Resp, what: &str) {
    assert_eq!(r.result(), 0, "{what}: {:?}", r.fields);
}

/// BSS UserOpen (postpaid, CreditLimit 1,000,000 yuan); returns the VNetUserID.
fn open_user(d: &Daemon, account: &str, tx: &str) -> String {
    let pw = enc(BSS_KEY, PW);
    let r = bss(d, USER_OPEN, &[
        ("AccountType", "01"), ("Account", account), ("Password", &pw), ("CityCode", "0591"), ("UserType", "1"),
        ("CreditLimit", "100000000"), ("TransactionID", tx),
    ]);
    ok(&r, &format!("UserOpen {account}"));
    r.get("VNetUserID").to_string()
}

fn sp_charge(d: &Daemon, user: &str, tx: &str) -> Resp {
    sp(d, SP_CHARGE, &[("ServiceID", SVC), ("ServiceItemID", PERUSE), ("VNetUserID", user), ("Fee", "200"), ("BatchCount", "1"), ("TransactionID", tx)])
}

fn sp_order(d: &Daemon, user: &str, tx: &str) -> Resp {
    sp(d, SP_ORDER, &[("ServiceID", SVC), ("ServiceItemID", MONTHLY), ("VNetUserID", user), ("IfExtend", "1"), ("TransactionID", tx)])
}

// ---------------------------------------------------------------- observing

/// Poll `f` until it holds; on timeout fail with `what`, the outbox status and the daemon's log.
fn eventually(d: &Daemon, secs: u64, what: &str, f: impl FnMut() -> bool) {
    if !wait_until(Duration::from_secs(secs), f) {
        let status = String::from_utf8_lossy(&d.cli(&["outbox", "status"]).stdout).into_owned();
        let log = d.log();
        let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!("timed out after {secs} s waiting for: {what}\noutbox status:\n{status}\nlog tail:\n{tail}");
    }
}

fn q(d: &Daemon, sql: &str) -> i64 {
    d.db_ro().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn pending(d: &Daemon) -> i64 {
    q(d, "SELECT count(*) FROM outbox WHERE state = 'pending'")
}

/// A message the simulator accepted.
#[derive(Debug, Clone)]
struct Msg {
    src: String,
    fields: serde_json::Value,
    response: serde_json::Value,
}

impl Msg {
    fn f(&self, name: &str) -> &str {
        self.fields.get(name).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no {name} in {}", self.fields))
    }
}

fn messages(sim: &CentreSim, op: &str) -> Vec<Msg> {
    let c = sim.db();
    let mut st = c.prepare("SELECT src_device_no, fields, response FROM message WHERE operation = ?1 ORDER BY id").unwrap();
    let rows = st
        .query_map([op], |r| {
            let (src, f, resp): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(Msg { src, fields: serde_json::from_str(&f).unwrap(), response: serde_json::from_str(&resp).unwrap() })
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Records of a stream at the simulator, by RecordSeq: (RecordSeq, values in the 6.5 order).
fn records(sim: &CentreSim, stream: &str) -> Vec<(i64, Vec<String>)> {
    let c = sim.db();
    let mut st = c.prepare("SELECT record_seq, fields FROM record WHERE stream = ?1 ORDER BY record_seq").unwrap();
    let rows = st
        .query_map([stream], |r| {
            let (seq, f): (i64, String) = (r.get(0)?, r.get(1)?);
            Ok((seq, serde_json::from_str::<Vec<String>>(&f).unwrap()))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Requests the simulator answered with a non-zero Result: (operation, src, result, reason).
fn rejected(sim: &CentreSim) -> Vec<(String, String, i64, String)> {
    let c = sim.db();
    let mut st = c.prepare("SELECT operation, src_device_no, result, reason FROM rejected ORDER BY id").unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// RecordSeqs are exactly 1..=n.
fn assert_gapless(recs: &[(i64, Vec<String>)], stream: &str) {
    let seqs: Vec<i64> = recs.iter().map(|(s, _)| *s).collect();
    let expect: Vec<i64> = (1..=recs.len() as i64).collect();
    assert_eq!(seqs, expect, "{stream}: RecordSeq 1..n without gaps");
    for (s, v) in recs {
        assert_eq!(v[0], s.to_string(), "{stream}: RecordSeq is the first field");
    }
}

fn field<'a>(names: &[&str], rec: &'a [String], name: &str) -> &'a str {
    let i = names.iter().position(|n| *n == name).unwrap();
    &rec[i]
}

/// A gauge or counter value from the admin /metrics, matched by its full series text.
fn metric(d: &Daemon, series: &str) -> Option<f64> {
    let body = d.admin_get("/metrics").text();
    body.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
}

/// `outbox status` rows (tab-separated, header first).
fn status(d: &Daemon) -> Vec<HashMap<String, String>> {
    d.listing(&["outbox", "status"])
}

fn status_sum(d: &Daemon, destination: &str, col: &str) -> i64 {
    status(d).iter().filter(|r| r["destination"] == destination).map(|r| r[col].parse::<i64>().unwrap()).sum()
}

fn is_ts(s: &str) -> bool {
    s.len() == 19 && time::PrimitiveDateTime::parse(s, time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).is_ok()
}

// ---------------------------------------------------------------- 1. every outbound message

#[test]
fn every_outbound_message_arrives_signed_and_accepted() {
    let sim = CentreSim::start(&["--sp-key", &format!("{SP_ID}:{SP_KEY}")]);
    let mut d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), Some(&url(&sim.addr, "/sp/notify")), "");
    // ClockSync runs once at start-up (the centre peer now has a URL): restart.
    d.restart();
    eventually(&d, 10, "ClockSync at the centre after start-up", || !messages(&sim, "ClockSync").is_empty());
    let cs = &messages(&sim, "ClockSync")[0];
    assert_eq!((cs.src.as_str(), cs.f("ProvinceID")), (NODE_DEV, "35"));
    assert!(is_ts(cs.f("LocalTime")), "LocalTime {:?}", cs.f("LocalTime"));
    eventually(&d, 5, "vnetd_clock_offset_seconds on /metrics", || metric(&d, "vnetd_clock_offset_seconds").is_some());
    let offset = metric(&d, "vnetd_clock_offset_seconds").unwrap();
    assert!(offset.abs() < 5.0, "clock offset {offset} against a centre on the same clock");

    // UserOpen → PUserInfoNotify; its ContractID is kept on the user (6.2).
    let alice = open_user(&d, "alice@fj", "OPEN-alice");
    eventually(&d, 10, "PUserInfoNotify for alice", || messages(&sim, "PUserInfoNotify").iter().any(|m| m.f("VNetUserID") == alice));
    let m = messages(&sim, "PUserInfoNotify").into_iter().find(|m| m.f("VNetUserID") == alice).unwrap();
    assert_eq!(m.src, NODE_DEV);
    for (k, v) in [("ProvinceID", "35"), ("ActionType", "1"), ("AccountType", "01"), ("Account", "alice@fj"), ("CityCode", "0591"), ("UserType", "1"), ("Status", "00"), ("NumFlag", "")] {
        assert_eq!(m.f(k), v, "PUserInfoNotify {k}");
    }
    assert!(is_ts(m.f("ChangeTime")));
    let contract = format!("C{alice}");
    assert_eq!(m.response["ContractID"], contract.as_str());
    eventually(&d, 5, "ContractID stored on the user", || sp(&d, GET_USERINFO_SP, &[("VNetUserID", &alice)]).get("ContractID") == contract);
    assert_eq!(centre(&d, GET_USERINFO_VNET, &[("VNetUserID", &alice)]).get("ContractID"), contract);

    // BSS PasswordReset → PasswordReset (6.4), NewPassword decrypts under the centre key.
    let pw = enc(BSS_KEY, "N3w-Passw0rd");
    ok(&bss(&d, PASSWORD_RESET, &[("VNetUserID", &alice), ("NewPassword", &pw), ("TransactionID", "RESET-1")]), "PasswordReset");
    eventually(&d, 10, "PasswordReset at the centre", || !messages(&sim, "PasswordReset").is_empty());
    let m = &messages(&sim, "PasswordReset")[0];
    assert_eq!((m.src.as_str(), m.f("ProvinceID"), m.f("VNetUserID"), m.f("NewPassword")), (NODE_DEV, "35", alice.as_str(), "password ok"));
    assert!(!m.f("TransactionID").is_empty());

    // Charges and an order → BatchSync CHARGE and ORDER records (6.5).
    let txs = ["CH-1", "CH-2", "CH-3"];
    for tx in txs {
        ok(&sp_charge(&d, &alice, tx), tx);
    }
    let order = sp_order(&d, &alice, "OR-1");
    ok(&order, "SP Order");
    let order_id = order.get("OrderID").to_string();
    // A BSS order of another user: the SP (a peer with a URL) is told by OrderNotify (6.8).
    let bob = open_user(&d, "bob@fj", "OPEN-bob");
    let r = bss(&d, BSS_ORDER, &[("SPID", SP_ID), ("ServiceID", SVC), ("ServiceItemID", MONTHLY), ("VNetUserID", &bob), ("IfExtend", "0"), ("TransactionID", "BOR-1")]);
    ok(&r, "BSS Order");
    let bss_order_id = r.get("OrderID").to_string();
    // `vnetd roam revoke` → RoamServiceRevoke (6.6).
    d.ok(&["roam", "revoke", "--sp", SP_ID, "--service", SVC, "--item", PERUSE, "--reason", "合同到期"]);

    eventually(&d, 15, "everything delivered", || {
        pending(&d) == 0
            && records(&sim, "CHARGE").len() == 5
            && records(&sim, "ORDER").len() == 2
            && !messages(&sim, "OrderNotify").is_empty()
            && !messages(&sim, "RoamServiceRevoke").is_empty()
    });
    let charges = records(&sim, "CHARGE");
    assert_gapless(&charges, "CHARGE");
    let today = charges[0].1[12].clone();
    assert_eq!(today.len(), 8);
    for (i, (_, rec)) in charges.iter().enumerate() {
        assert_eq!(rec.len(), CHARGE_RECORD.len());
        let f = |n| field(CHARGE_RECORD, rec, n);
        let (tx, item, name, fee_type, fee) = match i {
            0..=2 => (txs[i], PERUSE, "单次下载", "1", "200"),
            3 => ("OR-1", MONTHLY, "音乐包月", "2", "1000"),
            _ => ("BOR-1", MONTHLY, "音乐包月", "2", "1000"),
        };
        let who = if i == 4 { bob.as_str() } else { alice.as_str() };
        assert_eq!(
            (f("TransactionID"), f("VNetUserID"), f("UserProvinceID"), f("SPID"), f("ServiceID"), f("ServiceItemID"), f("ServiceItemName")),
            (tx, who, "35", SP_ID, SVC, item, name),
            "CHARGE record {}",
            i + 1
        );
        assert_eq!((f("FeeType"), f("Fee"), f("BatchCount"), f("LedgerDate"), f("RoamType")), (fee_type, fee, "1", today.as_str(), ""));
        assert!(is_ts(f("ChargeTime")));
    }
    let orders = records(&sim, "ORDER");
    assert_gapless(&orders, "ORDER");
    for (i, (_, rec)) in orders.iter().enumerate() {
        assert_eq!(rec.len(), ORDER_RECORD.len());
        let f = |n| field(ORDER_RECORD, rec, n);
        let (oid, who, channel) = if i == 0 { (order_id.as_str(), alice.as_str(), "SP") } else { (bss_order_id.as_str(), bob.as_str(), "BSS") };
        assert_eq!(
            (f("OrderID"), f("ActionType"), f("VNetUserID"), f("SPID"), f("ServiceID"), f("ServiceItemID"), f("ServiceItemName"), f("ProductID"), f("Channel")),
            (oid, "1", who, SP_ID, SVC, MONTHLY, "音乐包月", "", channel),
            "ORDER record {}",
            i + 1
        );
        assert!(is_ts(f("StartTime")) && f("EndTime").ends_with("23:59:59") && is_ts(f("EventTime")));
    }
    // OrderNotify only for the BSS order (the SP caused the other itself).
    let notes = messages(&sim, "OrderNotify");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let n = &notes[0];
    assert_eq!(n.src, SP_ID);
    assert_eq!(
        (n.f("ProvinceID"), n.f("OrderID"), n.f("ActionType"), n.f("VNetUserID"), n.f("ServiceID"), n.f("ServiceItemID"), n.f("ProductID"), n.f("Channel")),
        ("35", bss_order_id.as_str(), "1", bob.as_str(), SVC, MONTHLY, "", "BSS")
    );
    let rv = &messages(&sim, "RoamServiceRevoke")[0];
    assert_eq!(
        (rv.src.as_str(), rv.f("ProvinceID"), rv.f("SPID"), rv.f("ServiceID"), rv.f("ServiceItemID"), rv.f("Reason")),
        (NODE_DEV, "35", SP_ID, SVC, PERUSE, "合同到期")
    );
    // Every message carried a valid Authenticator and TimeStamp: nothing was refused, nothing died.
    assert_eq!(rejected(&sim), vec![], "the simulator refused messages");
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE state <> 'delivered'"), 0);
    assert_eq!(sim.count("SELECT COALESCE(SUM(duplicates), 0) FROM stream_state"), 0, "no record sent twice");
}

// ---------------------------------------------------------------- 2. centre down, then back

#[test]
fn centre_down_then_back_delivers_everything_in_order() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = node(&sync_cfg(4), Some(&url(&addr, "/centre")), None, "");
    let users: Vec<String> = (0..3).map(|i| open_user(&d, &format!("u{i}@fj"), &format!("OPEN-{i}"))).collect();
    let mut charge_txs = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let alias = format!("用户{i}");
        ok(&bss(&d, USER_MODIFY, &[("VNetUserID", u), ("Alias", &alias), ("TransactionID", &format!("MOD-{i}"))]), "UserModify");
        for k in 0..3 {
            let tx = format!("DN-{i}-{k}");
            ok(&sp_charge(&d, u, &tx), &tx);
            charge_txs.push(tx);
        }
        let tx = format!("DO-{i}");
        ok(&sp_order(&d, u, &tx), &tx);
        charge_txs.push(tx);
    }
    // One user is suspended and resumed: ActionType 3 twice.
    ok(&bss(&d, STATUS_CHANGE, &[("VNetUserID", &users[0]), ("Status", "01"), ("TransactionID", "ST-1")]), "suspend");
    ok(&bss(&d, STATUS_CHANGE, &[("VNetUserID", &users[0]), ("Status", "00"), ("TransactionID", "ST-2")]), "resume");
    let queued = q(&d, "SELECT count(*) FROM outbox");
    assert_eq!(queued, 3 * 2 + 2 + 12 + 3, "PUserInfoNotify ×8, CHARGE ×12, ORDER ×3");

    // They wait, and the relay has tried.
    eventually(&d, 10, "a failed attempt recorded", || q(&d, "SELECT count(*) FROM outbox WHERE attempts > 0 AND last_error <> ''") > 0);
    assert_eq!(pending(&d), queued, "nothing delivered while the centre is down");
    assert_eq!(status_sum(&d, "centre", "pending"), queued);
    assert_eq!(status_sum(&d, "centre", "dead"), 0);
    assert!(status(&d).iter().any(|r| r["operation"] == "BatchSync CHARGE" && r["pending"] == "12"), "{:?}", status(&d));
    assert_eq!(metric(&d, "vnetd_outbox_backlog{destination=\"centre\"}"), Some(queued as f64));

    // The centre comes back on the same address.
    let sim = CentreSim::start_on(&addr, &[]);
    eventually(&d, 20, "the outbox drained", || pending(&d) == 0);
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE state <> 'delivered'"), 0);
    assert_eq!(rejected(&sim), vec![]);

    // Per user, in order, each exactly once.
    let infos = messages(&sim, "PUserInfoNotify");
    assert_eq!(infos.len(), 8, "each notification exactly once");
    for (i, u) in users.iter().enumerate() {
        let mine: Vec<(&str, &str, &str)> =
            infos.iter().filter(|m| m.f("VNetUserID") == u).map(|m| (m.f("ActionType"), m.f("Status"), m.f("Alias"))).collect();
        let alias = format!("用户{i}");
        let mut expect = vec![("1", "00", ""), ("2", "00", alias.as_str())];
        if i == 0 {
            expect.extend([("3", "01", alias.as_str()), ("3", "00", alias.as_str())]);
        }
        assert_eq!(mine, expect, "notifications of {u} in order");
    }
    // BatchSync: RecordSeq 1..n, no gap, every charge once, in the order they were made.
    let charges = records(&sim, "CHARGE");
    assert_gapless(&charges, "CHARGE");
    let got: Vec<&str> = charges.iter().map(|(_, r)| r[1].as_str()).collect();
    assert_eq!(got, charge_txs.iter().map(String::as_str).collect::<Vec<_>>());
    let orders = records(&sim, "ORDER");
    assert_gapless(&orders, "ORDER");
    assert_eq!(orders.len(), 3);
    assert_eq!(sim.count("SELECT last_seq FROM stream_state WHERE stream = 'CHARGE'"), 12);
    assert!(status(&d).iter().any(|r| r["operation"] == "BatchSync CHARGE" && r["last_delivered_seq"] == "12"), "{:?}", status(&d));

    // The backlog gauge follows the outbox: nothing waits any more.
    let backlog = metric(&d, "vnetd_outbox_backlog{destination=\"centre\"}");
    assert!(backlog.is_none_or(|v| v == 0.0), "vnetd_outbox_backlog{{destination=\"centre\"}} is {backlog:?} with nothing pending (stale gauge)");
}

// ---------------------------------------------------------------- 3. kill -9 in a sync burst

#[test]
fn kill9_during_a_sync_burst_loses_and_duplicates_nothing() {
    let sim = CentreSim::start(&["--delay-ms", "20"]);
    let mut d = node(&sync_cfg(5), Some(&url(&sim.addr, "/centre")), None, "");
    let users: Vec<String> = (0..4).map(|i| open_user(&d, &format!("burst{i}@fj"), &format!("OPEN-B{i}"))).collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = d.addr();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (acked, refused, stop, addr, user) = (acked.clone(), refused.clone(), stop.clone(), addr.clone(), users[t % users.len()].clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let tx = format!("K{t}-{i}");
                    let f = [("SPID", SP_ID), ("ServiceID", SVC), ("ServiceItemID", PERUSE), ("VNetUserID", user.as_str()), ("Fee", "200"), ("BatchCount", "1"), ("TransactionID", tx.as_str())];
                    match try_call(&addr, SPS, "Charge", SP_KEY, &f, &ts(0)) {
                        Ok(r) if r.result() == 0 => acked.lock().unwrap().push(tx),
                        Ok(r) => refused.lock().unwrap().push(format!("{tx}: {:?}", r.fields)),
                        // The daemon was killed: this charge is not acknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Kill in the middle: charges acknowledged and some batches already at the centre.
    let t0 = Instant::now();
    let burst = wait_until(Duration::from_secs(15), || {
        t0.elapsed() >= Duration::from_millis(1500) && acked.lock().unwrap().len() >= 150 && sim.count("SELECT count(*) FROM record WHERE stream = 'CHARGE'") >= 10
    });
    assert!(burst, "no sync burst: {} acknowledged, {} at the centre", acked.lock().unwrap().len(), sim.count("SELECT count(*) FROM record"));
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(refused.lock().unwrap().clone(), Vec::<String>::new(), "charges refused during the burst");
    let at_kill = sim.count("SELECT count(*) FROM record WHERE stream = 'CHARGE'");
    assert!((at_kill as usize) < acked.len(), "the kill came after the sync caught up ({at_kill} of {})", acked.len());
    eprintln!("burst: {} charges acknowledged in {:?}, {at_kill} at the centre at the kill", acked.len(), t0.elapsed());

    d.start_again();
    eventually(&d, 30, "the outbox drained after the restart", || pending(&d) == 0);
    let charges = records(&sim, "CHARGE");
    assert_gapless(&charges, "CHARGE");
    let mut seen = HashSet::new();
    for (seq, r) in &charges {
        assert!(seen.insert(r[1].clone()), "TransactionID {} twice at the centre (RecordSeq {seq})", r[1]);
    }
    let missing: Vec<&String> = acked.iter().filter(|t| !seen.contains(*t)).collect();
    assert!(missing.is_empty(), "{} acknowledged charges never reached the centre: {:?}", missing.len(), &missing[..missing.len().min(10)]);
    // Every committed charge (acknowledged or not) exactly once; nothing that was not committed.
    let node_charges: HashSet<String> = {
        let c = d.db_ro();
        let mut st = c.prepare("SELECT transaction_id FROM charge WHERE spid = ?1 AND operation = 'Charge'").unwrap();
        let rows = st.query_map([SP_ID], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(seen, node_charges, "the centre holds exactly the node's committed charges");
    assert_eq!(q(&d, "SELECT count(DISTINCT seq) FROM outbox WHERE order_key = 'stream:CHARGE'"), charges.len() as i64);
    assert_eq!(q(&d, "SELECT max(seq) FROM outbox WHERE order_key = 'stream:CHARGE'"), charges.len() as i64);
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE state <> 'delivered'"), 0);
}

// ---------------------------------------------------------------- gaps and age

#[test]
fn a_gap_reported_by_the_centre_is_filled_from_last_sequence_id() {
    let mut sim = CentreSim::start(&[]);
    let addr = sim.addr.clone();
    let d = node(&sync_cfg(500), Some(&url(&addr, "/centre")), None, "");
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    let txs: Vec<String> = (1..=5).map(|i| format!("GP-{i}")).collect();
    for tx in &txs[..3] {
        ok(&sp_charge(&d, &alice, tx), tx);
    }
    eventually(&d, 10, "3 records at the centre", || pending(&d) == 0 && records(&sim, "CHARGE").len() == 3);
    // The centre loses what it held (a new database on the same address): the next batch starts
    // beyond its next expected RecordSeq, it answers -21519 with LastSequenceID 0, and the node
    // resumes from LastSequenceID + 1 (11 "Sync").
    assert!(sim.stop());
    let sim2 = CentreSim::start_on(&addr, &[]);
    for tx in &txs[3..] {
        ok(&sp_charge(&d, &alice, tx), tx);
    }
    eventually(&d, 15, "all 5 records at the new centre", || pending(&d) == 0 && records(&sim2, "CHARGE").len() == 5);
    let recs = records(&sim2, "CHARGE");
    assert_gapless(&recs, "CHARGE");
    assert_eq!(recs.iter().map(|(_, r)| r[1].as_str()).collect::<Vec<_>>(), txs.iter().map(String::as_str).collect::<Vec<_>>());
    let gaps: Vec<_> = rejected(&sim2).into_iter().filter(|r| r.0 == "BatchSync").collect();
    assert!(gaps.iter().all(|r| r.2 == -21519) && !gaps.is_empty(), "{gaps:?}");
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE state <> 'delivered'"), 0);
}

#[test]
fn messages_undelivered_past_dead_letter_after_h_are_dead_lettered() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut d = node(&sync_cfg(500), Some(&url(&addr, "/centre")), None, "");
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    ok(&sp_charge(&d, &alice, "AG-1"), "charge");
    eventually(&d, 10, "a failed attempt", || q(&d, "SELECT count(*) FROM outbox WHERE attempts > 0") > 0);
    // 73 hours later the centre is still down: the notification is dead-lettered (default 72 h);
    // a BatchSync record never is.
    let shift = 73 * 3600;
    d.restart_with_offset(shift);
    eventually(&d, 15, "PUserInfoNotify dead-lettered by age", || {
        q(&d, "SELECT count(*) FROM outbox WHERE operation = 'PUserInfoNotify' AND state = 'dead'") == 1
    });
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE operation = 'BatchSync' AND state = 'pending'"), 1, "BatchSync is never dead-lettered by age");
    // The next message of the same ordering key proceeds once the centre is back.
    ok(&bss(&d, USER_MODIFY, &[("VNetUserID", &alice), ("Alias", "阿丽"), ("TransactionID", "MOD-1")]), "UserModify");
    let sim = CentreSim::start_on(&addr, &["--time-offset-s", &shift.to_string()]);
    eventually(&d, 15, "the rest delivered", || pending(&d) == 0);
    let infos = messages(&sim, "PUserInfoNotify");
    assert_eq!(infos.iter().map(|m| (m.f("ActionType"), m.f("Alias"))).collect::<Vec<_>>(), [("2", "阿丽")]);
    assert_eq!(records(&sim, "CHARGE").len(), 1);
    let row = status(&d).into_iter().find(|r| r["destination"] == "centre" && r["operation"] == "PUserInfoNotify").unwrap();
    assert_eq!((row["dead"].as_str(), row["delivered"].as_str(), row["pending"].as_str()), ("1", "1", "0"), "{row:?}");
}

// ---------------------------------------------------------------- 4. a dead destination

#[test]
fn a_permanently_failing_destination_dead_letters_without_stopping_the_others() {
    // One simulator serves the centre and the SP's endpoint, without the SP's key: -20001.
    let mut sim = CentreSim::start(&[]);
    let d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), Some(&url(&sim.addr, "/sp")), "");
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    let bob = open_user(&d, "bob@fj", "OPEN-b");
    let bss_order = |user: &str, tx: &str| {
        ok(&bss(&d, BSS_ORDER, &[("SPID", SP_ID), ("ServiceID", SVC), ("ServiceItemID", MONTHLY), ("VNetUserID", user), ("IfExtend", "1"), ("TransactionID", tx)]), tx);
    };
    bss_order(&alice, "BO-1");
    eventually(&d, 10, "the OrderNotify dead-lettered", || q(&d, "SELECT count(*) FROM outbox WHERE operation = 'OrderNotify' AND state = 'dead'") == 1);
    let (attempts, last_error): (i64, String) =
        d.db_ro().query_row("SELECT attempts, last_error FROM outbox WHERE operation = 'OrderNotify'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(attempts, 1, "a definitive rejection dead-letters at once");
    assert!(last_error.contains("-20001"), "{last_error}");
    // The next message of the same ordering key proceeds; the centre's messages keep flowing.
    bss_order(&bob, "BO-2");
    for i in 0..3 {
        ok(&sp_charge(&d, &bob, &format!("DC-{i}")), "charge");
    }
    eventually(&d, 15, "centre messages delivered, both OrderNotify dead", || {
        q(&d, "SELECT count(*) FROM outbox WHERE destination = 'centre' AND state <> 'delivered'") == 0
            && q(&d, "SELECT count(*) FROM outbox WHERE operation = 'OrderNotify' AND state = 'dead'") == 2
    });
    assert_eq!(messages(&sim, "PUserInfoNotify").len(), 2);
    assert_eq!(records(&sim, "CHARGE").len(), 5);
    assert_eq!(records(&sim, "ORDER").len(), 2);
    let refusals: Vec<(String, i64)> = rejected(&sim).into_iter().map(|(op, _, r, _)| (op, r)).collect();
    assert_eq!(refusals, vec![("OrderNotify".to_string(), -20001), ("OrderNotify".to_string(), -20001)]);
    let row = status(&d).into_iter().find(|r| r["destination"] == SP_ID && r["operation"] == "OrderNotify").expect("an OrderNotify row");
    assert_eq!((row["pending"].as_str(), row["dead"].as_str(), row["delivered"].as_str()), ("0", "2", "0"), "{row:?}");
    assert!(row["last_error"].contains("-20001"), "{row:?}");
    assert_eq!(metric(&d, &format!("vnetd_outbox_dead_letters{{destination=\"{SP_ID}\"}}")), Some(2.0));

    // Re-queued: refused again, dead again.
    let out = d.cli(&["outbox", "retry", "--dead"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(&d, 10, "re-queued dead letters refused again", || rejected(&sim).len() == 4);
    eventually(&d, 5, "dead again", || q(&d, "SELECT count(*) FROM outbox WHERE operation = 'OrderNotify' AND state = 'dead'") == 2);

    // The SP endpoint learns the key: re-queued, delivered once each, in order.
    sim.restart(&["--key", CENTRE_KEY], &["--sp-key", &format!("{SP_ID}:{SP_KEY}")]);
    d.ok(&["outbox", "retry", "--dead"]);
    eventually(&d, 10, "the OrderNotify delivered", || q(&d, "SELECT count(*) FROM outbox WHERE operation = 'OrderNotify' AND state = 'delivered'") == 2);
    let notes: Vec<String> = messages(&sim, "OrderNotify").iter().map(|m| m.f("VNetUserID").to_string()).collect();
    assert_eq!(notes, vec![alice.clone(), bob.clone()]);
    let row = status(&d).into_iter().find(|r| r["destination"] == SP_ID && r["operation"] == "OrderNotify").unwrap();
    assert_eq!((row["pending"].as_str(), row["dead"].as_str(), row["delivered"].as_str()), ("0", "0", "2"), "{row:?}");
}

// ---------------------------------------------------------------- 5. key rotation in flight

#[test]
fn key_rotation_with_messages_in_flight() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = node(&sync_cfg(500), Some(&url(&addr, "/centre")), None, "");
    // Queued while the centre is down, under key version 1.
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    let pw = enc(BSS_KEY, "N3w-Passw0rd");
    ok(&bss(&d, PASSWORD_RESET, &[("VNetUserID", &alice), ("NewPassword", &pw), ("TransactionID", "RESET-1")]), "PasswordReset");
    ok(&sp_charge(&d, &alice, "KR-1"), "charge");
    let reset = d.outbox().into_iter().find(|r| r.operation == "PasswordReset").expect("PasswordReset queued");
    assert_eq!(reset.key_version, Some(1));
    assert_ne!(reset.field("NewPassword"), "N3w-Passw0rd");
    assert_eq!(key(CENTRE_KEY).decrypt_b64_str(reset.field("NewPassword")).unwrap(), "N3w-Passw0rd", "queued under the centre key v1");
    eventually(&d, 10, "a failed attempt", || q(&d, "SELECT count(*) FROM outbox WHERE attempts > 0") > 0);

    // The centre comes back knowing only the next key: refusals (-21548) are retried, not dead.
    let sim = CentreSim::start_keys(&addr, &["--key", NEXT_KEY], &[]);
    eventually(&d, 10, "-21548 from the centre", || rejected(&sim).iter().any(|r| r.2 == -21548));
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE state = 'dead'"), 0, "-21548 is not definitive (11 \"Sync failures\")");
    eventually(&d, 5, "the sync alarm metric", || {
        d.admin_get("/metrics").text().lines().any(|l| l.starts_with("vnetd_sync_alarms_total{") && l.contains("-21548"))
    });
    let pw2 = enc(BSS_KEY, "Th1rd-Passw0rd");
    ok(&bss(&d, PASSWORD_RESET, &[("VNetUserID", &alice), ("NewPassword", &pw2), ("TransactionID", "RESET-2")]), "PasswordReset 2");
    assert!(messages(&sim, "PUserInfoNotify").is_empty() && messages(&sim, "PasswordReset").is_empty());

    // Rotate on the node: every attempt is signed afresh (and passwords re-encrypted) under it.
    d.ok(&["peer", "set-key", CENTRE_ID, "--key", NEXT_KEY]);
    eventually(&d, 20, "the outbox drained under the new key", || pending(&d) == 0);
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE state = 'dead'"), 0);
    let resets = messages(&sim, "PasswordReset");
    assert_eq!(resets.len(), 2, "{resets:?}");
    for r in &resets {
        assert_eq!(r.f("NewPassword"), "password ok", "re-encrypted under the key in effect");
        assert_eq!(r.f("VNetUserID"), alice);
    }
    assert_eq!(resets.iter().map(|r| r.f("TransactionID")).collect::<Vec<_>>(), ["RESET-1", "RESET-2"]);
    assert_eq!(messages(&sim, "PUserInfoNotify").len(), 1);
    assert_eq!(records(&sim, "CHARGE").len(), 1);
    // The outbox still holds the passwords only encrypted (never in plaintext).
    let db = std::fs::read(&d.db).unwrap();
    let wal = std::fs::read(d.db.with_extension("db-wal")).unwrap_or_default();
    for secret in ["N3w-Passw0rd", "Th1rd-Passw0rd"] {
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in plaintext in the node's database");
        }
    }
    // Inbound: the new key verifies; the old one still does during the grace period (2.6).
    let names = GET_USERINFO_VNET;
    assert_eq!(call(&d, VNET, NEXT_KEY, names, &[("VNetUserID", &alice)]).result(), 0);
    assert_eq!(call(&d, VNET, CENTRE_KEY, names, &[("VNetUserID", &alice)]).result(), 0);
}

// ---------------------------------------------------------------- 6. roaming authentication

fn user_auth(d: &Daemon, account_type: &str, account: &str, password: &str) -> Resp {
    let pw = enc(SP_KEY, password);
    sp(d, USER_AUTH, &[("AccountType", account_type), ("Account", account), ("Password", &pw)])
}

fn roam_auth_in(d: &Daemon, account: &str, password: &str, service: &str) -> Resp {
    let pw = enc(CENTRE_KEY, password);
    centre(d, ROAM_AUTH_IN, &[
        ("SrcProvinceID", "44"), ("SPID", "44000001"), ("ServiceID", service), ("AccountType", "01"), ("Account", account),
        ("Password", &pw), ("UserIP", "10.1.2.3"), ("RoamType", "1"), ("TransactionID", "RA-IN-1"),
    ])
}

/// RoamServiceNotify for `[SPID, SPProvinceID, ServiceID, ServiceItemID]`.
fn roam_notify(d: &Daemon, action: &str, [spid, sp_province, service, item]: [&str; 4], name: &str, fee_type: &str, price: &str) -> Resp {
    centre(d, ROAM_NOTIFY, &[
        ("ActionType", action), ("SPID", spid), ("SPProvinceID", sp_province), ("ServiceID", service), ("ServiceItemID", item),
        ("ServiceItemName", name), ("FeeType", fee_type), ("Price", price),
    ])
}

#[test]
fn roaming_authentication_both_ways() {
    let mut sim = CentreSim::start(&[]);
    let cfg = sync_cfg(500).replace("centre_timeout_ms = 3000", "centre_timeout_ms = 1000");
    let d = node(&cfg, Some(&url(&sim.addr, "/centre")), None, "");
    // Outbound: an account no local user holds goes to the centre; its answer comes back unchanged.
    let r = user_auth(&d, "01", "roamer@gd", "Roam-Secret-77");
    ok(&r, "UserAuth roamer@gd");
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"]);
    assert_eq!((r.get("VNetUserID"), r.get("ProvinceID"), r.get("CityCode"), r.get("UserType"), r.get("Status")), ("440000000001", "44", "020", "1", "00"));
    assert_eq!(user_auth(&d, "01", "roamer@gd", "wrong-password").result(), -20501);
    assert_eq!(user_auth(&d, "01", "nobody@gd", "Roam-Secret-77").result(), -20504);
    let pw = enc(SP_KEY, "Mobile-Secret-88");
    let r = sp(&d, PHONE_AUTH, &[("PhoneNum", "13800000000"), ("Password", &pw)]);
    ok(&r, "PhoneNumAuth");
    assert_eq!((r.get("VNetUserID"), r.get("ProvinceID"), r.get("NumFlag")), ("440000000002", "44", "2"));
    let ra = messages(&sim, "RoamAuthV2");
    assert_eq!(ra.len(), 2, "accepted RoamAuthV2: {ra:?}");
    let m = &ra[0];
    assert_eq!(
        (m.src.as_str(), m.f("ProvinceID"), m.f("SPID"), m.f("AccountType"), m.f("Account"), m.f("Password"), m.f("RoamType")),
        (NODE_DEV, "35", SP_ID, "01", "roamer@gd", "password ok", "1")
    );
    assert!(!m.f("TransactionID").is_empty());
    assert_eq!((ra[1].f("AccountType"), ra[1].f("Account")), ("09", "13800000000"));
    assert_eq!(rejected(&sim).iter().map(|r| r.2).collect::<Vec<_>>(), [-20501, -20504], "the refusals were the centre's");
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE operation = 'RoamAuthV2'"), 0, "RoamAuthV2 is synchronous, never queued");

    // Inbound: the centre authenticates a local user.
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    let r = roam_auth_in(&d, "alice@fj", PW, "");
    ok(&r, "RoamAuthV2 alice");
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"]);
    assert_eq!((r.get("VNetUserID"), r.get("ProvinceID"), r.get("CityCode"), r.get("UserType"), r.get("Status")), (alice.as_str(), "35", "0591", "1", "00"));
    assert_eq!(roam_auth_in(&d, "alice@fj", "wrong-password", "").result(), -20501);
    assert_eq!(roam_auth_in(&d, "nobody@fj", PW, "").result(), -20504);
    // A service not approved for this province, then approved (national, SPProvinceID 00).
    assert_eq!(roam_auth_in(&d, "alice@fj", PW, NAT_SVC).result(), -21001);
    let r = roam_notify(&d, "1", [NAT_SP, "00", NAT_SVC, NAT_PERUSE], "游戏单次", "1", "300");
    ok(&r, "RoamServiceNotify approve");
    assert_eq!(r.get("Status"), "1");
    ok(&roam_auth_in(&d, "alice@fj", PW, NAT_SVC), "RoamAuthV2 with an approved service");

    // The centre does not answer: -22500 "centre unavailable".
    assert!(sim.stop());
    let r = user_auth(&d, "01", "roamer@gd", "Roam-Secret-77");
    assert_eq!((r.result(), r.get("ErrDescription")), (-22500, "centre unavailable"));
    let r = sp(&d, PHONE_AUTH, &[("PhoneNum", "13800000000"), ("Password", &pw)]);
    assert_eq!((r.result(), r.get("ErrDescription")), (-22500, "centre unavailable"));
    // A SOAP Fault, or no answer within centre_timeout_ms, is the same (11 "Sync").
    sim.restart(&["--key", CENTRE_KEY], &["--fail-rate", "1.0"]);
    let r = user_auth(&d, "01", "roamer@gd", "Roam-Secret-77");
    assert_eq!((r.result(), r.get("ErrDescription")), (-22500, "centre unavailable"), "SOAP Fault");
    sim.restart(&["--key", CENTRE_KEY], &["--delay-ms", "2500"]);
    let t = Instant::now();
    let r = user_auth(&d, "01", "roamer@gd", "Roam-Secret-77");
    assert_eq!((r.result(), r.get("ErrDescription")), (-22500, "centre unavailable"), "timeout");
    assert!(t.elapsed() < Duration::from_millis(2400), "answered after {:?}: centre_timeout_ms is 1000", t.elapsed());
    drop(sim);

    // No centre peer with a URL: -20504.
    let d2 = node("", None, None, "");
    let r = user_auth(&d2, "01", "roamer@gd", "Roam-Secret-77");
    assert_eq!(r.result(), -20504, "{:?}", r.fields);
    let r = sp(&d2, PHONE_AUTH, &[("PhoneNum", "13800000000"), ("Password", &pw)]);
    assert_eq!(r.result(), -20504, "{:?}", r.fields);
}

// ---------------------------------------------------------------- 7. RoamServiceNotify and use rules

fn vnet_charge(d: &Daemon, spid: &str, service: &str, item: &str, user: &str, fee: &str, tx: &str) -> Resp {
    centre(d, VNET_CHARGE, &[("SPID", spid), ("ServiceID", service), ("ServiceItemID", item), ("VNetUserID", user), ("Fee", fee), ("BatchCount", "1"), ("TransactionID", tx)])
}

#[test]
fn roam_service_notify_governs_the_use_rules() {
    let mut sim = CentreSim::start(&[]);
    let mut d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), None, NATIONAL_GAMES);
    d.ok(&["peer", "add", "--id", NAT_SP, "--kind", "sp", "--key", NAT_SP_KEY]);
    std::thread::sleep(Duration::from_millis(1100));
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    let nat_auth = || {
        let pw = enc(NAT_SP_KEY, PW);
        call(&d, SPS, NAT_SP_KEY, USER_AUTH, &[("SPID", NAT_SP), ("ServiceID", NAT_SVC), ("AccountType", "01"), ("Account", "alice@fj"), ("Password", &pw)])
    };
    let verify = |sp: &str, prov: &str, svc: &str, item: &str| roam_notify(&d, "3", [sp, prov, svc, item], "x", "1", "0");

    // Roam-in of a national item: -21001 until approved.
    assert_eq!(vnet_charge(&d, NAT_SP, NAT_SVC, NAT_PERUSE, &alice, "300", "NC-1").result(), -21001);
    let r = centre(&d, VNET_ORDER, &[("SPID", NAT_SP), ("ServiceID", NAT_SVC), ("ServiceItemID", NAT_MONTHLY), ("VNetUserID", &alice), ("IfExtend", "1"), ("TransactionID", "NO-1")]);
    assert_eq!(r.result(), -21001);
    assert_eq!(nat_auth().result(), -21001, "an SP's UserAuth naming a service not approved for this province");
    let r = verify(NAT_SP, "00", NAT_SVC, NAT_PERUSE);
    ok(&r, "verify");
    assert_eq!(r.get("Status"), "0", "never approved nor revoked");

    for item in [NAT_PERUSE, NAT_MONTHLY] {
        let (fee_type, price) = if item == NAT_PERUSE { ("1", "300") } else { ("2", "800") };
        let r = roam_notify(&d, "1", [NAT_SP, "00", NAT_SVC, item], "游戏", fee_type, price);
        ok(&r, "approve");
        assert_eq!(r.get("Status"), "1");
    }
    let r = vnet_charge(&d, NAT_SP, NAT_SVC, NAT_PERUSE, &alice, "300", "NC-2");
    ok(&r, "Charge of an approved national item");
    assert_eq!(r.get("TransactionID"), "NC-2");
    let r = centre(&d, VNET_ORDER, &[("SPID", NAT_SP), ("ServiceID", NAT_SVC), ("ServiceItemID", NAT_MONTHLY), ("VNetUserID", &alice), ("IfExtend", "1"), ("TransactionID", "NO-2")]);
    ok(&r, "Order of an approved national item");
    ok(&nat_auth(), "UserAuth with an approved national service");
    assert_eq!(verify(NAT_SP, "00", NAT_SVC, NAT_PERUSE).get("Status"), "1");
    let roam_type: String = d.db_ro().query_row("SELECT roam_type FROM charge WHERE transaction_id = 'NC-2'", [], |r| r.get(0)).unwrap();
    assert_eq!(roam_type, "2", "a national SP's charge has RoamType 2");

    // Revoked: -21001 again.
    let r = roam_notify(&d, "2", [NAT_SP, "00", NAT_SVC, NAT_PERUSE], "游戏单次", "1", "300");
    ok(&r, "revoke");
    assert_eq!(r.get("Status"), "2");
    assert_eq!(vnet_charge(&d, NAT_SP, NAT_SVC, NAT_PERUSE, &alice, "300", "NC-3").result(), -21001);
    assert_eq!(verify(NAT_SP, "00", NAT_SVC, NAT_PERUSE).get("Status"), "2");

    // Roam-in of an item the catalogue does not know: it enters as a foreign item.
    let (p_sp, p_svc, p_item) = ("44000007", "4400000700000001", "4400000700000101");
    assert_eq!(vnet_charge(&d, p_sp, p_svc, p_item, &alice, "150", "PC-1").result(), -20004, "unknown service");
    ok(&roam_notify(&d, "1", [p_sp, "44", p_svc, p_item], "广东资讯", "1", "150"), "approve a province item");
    ok(&vnet_charge(&d, p_sp, p_svc, p_item, &alice, "150", "PC-2"), "Charge of an approved item of another province");
    let roam_type: String = d.db_ro().query_row("SELECT roam_type FROM charge WHERE transaction_id = 'PC-2'", [], |r| r.get(0)).unwrap();
    assert_eq!(roam_type, "1");
    let list = d.listing(&["roam", "list"]);
    assert!(list.iter().any(|r| r["service_item_id"] == p_item && r["direction"] == "in" && r["state"] == "approved"), "{list:?}");

    // Roam-out of a local item: a user of province 44 (in the centre's user table).
    let foreign = "440000000001";
    let roam_charge = |tx: &str| sp(&d, SP_CHARGE, &[("ServiceID", SVC), ("ServiceItemID", PERUSE), ("VNetUserID", foreign), ("Fee", "200"), ("BatchCount", "1"), ("TransactionID", tx)]);
    assert_eq!(roam_charge("RC-1").result(), -21001, "not approved for roaming out");
    assert!(messages(&sim, "Charge").is_empty(), "nothing forwarded without approval");
    let r = roam_notify(&d, "1", [SP_ID, "35", SVC, PERUSE], "单次下载", "1", "200");
    ok(&r, "approve roam-out");
    assert_eq!(r.get("Status"), "1");
    assert_eq!(verify(SP_ID, "35", SVC, PERUSE).get("Status"), "1");
    let r = roam_charge("RC-2");
    ok(&r, "roaming Charge forwarded to the centre");
    assert_eq!(r.order, ["Result", "ErrDescription", "TransactionID", "ChargeTime"]);
    assert_eq!(r.get("TransactionID"), "RC-2");
    assert!(is_ts(r.get("ChargeTime")));
    let fwd = messages(&sim, "Charge");
    assert_eq!(fwd.len(), 1);
    let m = &fwd[0];
    assert_eq!(
        (m.src.as_str(), m.f("ProvinceID"), m.f("SPID"), m.f("ServiceID"), m.f("ServiceItemID"), m.f("VNetUserID"), m.f("Fee"), m.f("TransactionID")),
        (NODE_DEV, "35", SP_ID, SVC, PERUSE, foreign, "200", "RC-2")
    );
    // The same TransactionID again: the stored answer, no second forward (2.7).
    let again = roam_charge("RC-2");
    assert_eq!(again.fields, r.fields, "a repeat answers the stored response");
    assert_eq!(messages(&sim, "Charge").len(), 1, "a repeat is not forwarded again");
    let (roam_type, user, fee): (String, String, i64) = d
        .db_ro()
        .query_row("SELECT roam_type, vnet_user_id, fee FROM charge WHERE spid = ?1 AND transaction_id = 'RC-2'", [SP_ID], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("a roaming usage row for RC-2");
    assert_eq!((roam_type.as_str(), user.as_str(), fee), ("1", foreign, 200));
    // ServiceAuth is forwarded too; a user the centre does not know gets the centre's -20504.
    let r = sp(&d, SP_SERVICE_AUTH, &[("ServiceID", SVC), ("ServiceItemID", PERUSE), ("VNetUserID", foreign)]);
    ok(&r, "roaming ServiceAuth");
    let r = sp(&d, SP_CHARGE, &[("ServiceID", SVC), ("ServiceItemID", PERUSE), ("VNetUserID", "440000000099"), ("Fee", "200"), ("BatchCount", "1"), ("TransactionID", "RC-3")]);
    assert_eq!(r.result(), -20504, "the centre's answer unchanged: {:?}", r.fields);
    assert_eq!(q(&d, "SELECT count(*) FROM charge WHERE transaction_id = 'RC-3'"), 0);
    // The centre does not answer: -22500, not stored (11 "Envelope"); a later retry runs afresh.
    assert!(sim.stop());
    let r = roam_charge("RC-5");
    assert_eq!((r.result(), r.get("ErrDescription")), (-22500, "centre unavailable"));
    assert_eq!(q(&d, "SELECT count(*) FROM charge WHERE transaction_id = 'RC-5'"), 0);
    sim.restart(&["--key", CENTRE_KEY], &[]);
    ok(&roam_charge("RC-5"), "the retry once the centre is back");
    assert_eq!(q(&d, "SELECT count(*) FROM charge WHERE transaction_id = 'RC-5' AND roam_type = '1'"), 1);
    // Roam-out revoked by the centre: -21001 again.
    let r = roam_notify(&d, "2", [SP_ID, "35", SVC, PERUSE], "单次下载", "1", "200");
    assert_eq!(r.get("Status"), "2");
    assert_eq!(roam_charge("RC-4").result(), -21001);
    assert_eq!(verify(SP_ID, "35", SVC, PERUSE).get("Status"), "2");
    assert_eq!(messages(&sim, "Charge").iter().map(|m| m.f("TransactionID")).collect::<Vec<_>>(), ["RC-2", "RC-5"]);

    // The CHARGE stream holds the local user's charges with their RoamType; roaming usage rows
    // of other provinces' users (6.9) are not in it (that province bills them).
    eventually(&d, 10, "CHARGE records delivered", || pending(&d) == 0 && records(&sim, "CHARGE").len() == 3);
    let charges = records(&sim, "CHARGE");
    assert_gapless(&charges, "CHARGE");
    let got: Vec<(&str, &str, &str, &str)> = charges
        .iter()
        .map(|(_, r)| (field(CHARGE_RECORD, r, "TransactionID"), field(CHARGE_RECORD, r, "SPID"), field(CHARGE_RECORD, r, "UserProvinceID"), field(CHARGE_RECORD, r, "RoamType")))
        .collect();
    assert_eq!(got, [("NC-2", NAT_SP, "35", "2"), ("NO-2", NAT_SP, "35", "2"), ("PC-2", p_sp, "35", "1")]);
    let today = field(CHARGE_RECORD, &charges[0].1, "LedgerDate").to_string();

    // The day closes (the node 26 hours later): SETTLE records of the roaming charges (7.3, 6.5).
    let shift = 26 * 3600;
    sim.restart(&["--key", CENTRE_KEY], &["--time-offset-s", &shift.to_string()]);
    d.restart_with_offset(shift);
    eventually(&d, 15, "SETTLE records delivered", || pending(&d) == 0 && !records(&sim, "SETTLE").is_empty());
    let settle = records(&sim, "SETTLE");
    assert_gapless(&settle, "SETTLE");
    const SETTLE_FIELDS: &[&str] =
        &["RecordSeq", "LedgerDate", "SPID", "SPProvinceID", "ServiceID", "ServiceItemID", "ServiceItemName", "RoamType", "TotalCount", "TotalFee"];
    let mut got: Vec<Vec<String>> = settle
        .iter()
        .filter(|(_, r)| r[1] == today)
        .map(|(_, r)| {
            assert_eq!(r.len(), SETTLE_FIELDS.len());
            ["SPID", "SPProvinceID", "ServiceID", "ServiceItemID", "RoamType", "TotalCount", "TotalFee"].iter().map(|n| field(SETTLE_FIELDS, r, n).to_string()).collect()
        })
        .collect();
    got.sort();
    let expect: Vec<Vec<String>> = [
        [NAT_SP, "00", NAT_SVC, NAT_PERUSE, "2", "1", "300"],
        [NAT_SP, "00", NAT_SVC, NAT_MONTHLY, "2", "1", "800"],
        [SP_ID, "35", SVC, PERUSE, "1", "2", "400"],
        [p_sp, "44", p_svc, p_item, "1", "1", "150"],
    ]
    .iter()
    .map(|r| r.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, expect, "SETTLE records of {today}");
}

// ---------------------------------------------------------------- clock sync and KeyUpdate

#[test]
fn clock_sync_measures_the_centre_offset_and_alarms() {
    let sim = CentreSim::start(&["--clock-offset-s", "120"]);
    let mut d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), None, "");
    d.restart();
    eventually(&d, 10, "the clock alarm", || metric(&d, "vnetd_clock_alarm") == Some(1.0));
    let offset = metric(&d, "vnetd_clock_offset_seconds").expect("vnetd_clock_offset_seconds");
    assert!((117.0..=123.0).contains(&offset), "offset {offset}");
    assert_eq!(messages(&sim, "ClockSync").len(), 1, "once at start-up");
    // The node never sets its clock: its own time is unchanged.
    let r = d.call_raw(SPS, "GetTime", &[("SPID", SP_ID.to_string())]);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let p = |s: &str| time::PrimitiveDateTime::parse(s, fmt).unwrap();
    let diff = (p(r.get("ServerTime")) - p(&d.now_ts())).whole_seconds();
    assert!(diff.abs() <= 2, "node time moved by {diff} s");
}

#[test]
fn key_update_from_the_centre_switches_outbound_signing() {
    let mut sim = CentreSim::start(&[]);
    let d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), None, "");
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    eventually(&d, 10, "PUserInfoNotify under the first key", || pending(&d) == 0 && messages(&sim, "PUserInfoNotify").len() == 1);
    // An emergency KeyUpdate, signed under the key in effect, the new key encrypted under it.
    let new_key = enc(CENTRE_KEY, NEXT_KEY);
    ok(&centre(&d, KEY_UPDATE, &[("KeyRefreshType", "2"), ("UpdateKeyValue", &new_key)]), "KeyUpdate");
    // The centre now knows only the new key: everything after is signed (and encrypted) with it.
    sim.restart(&["--key", NEXT_KEY], &[]);
    ok(&bss(&d, USER_MODIFY, &[("VNetUserID", &alice), ("Alias", "阿丽"), ("TransactionID", "MOD-1")]), "UserModify");
    let pw = enc(BSS_KEY, "N3w-Passw0rd");
    ok(&bss(&d, PASSWORD_RESET, &[("VNetUserID", &alice), ("NewPassword", &pw), ("TransactionID", "RESET-1")]), "PasswordReset");
    ok(&sp_charge(&d, &alice, "KU-1"), "charge");
    eventually(&d, 10, "delivered under the new key", || pending(&d) == 0 && records(&sim, "CHARGE").len() == 1);
    assert_eq!(rejected(&sim), vec![], "nothing signed with the old key");
    assert_eq!(messages(&sim, "PUserInfoNotify").iter().map(|m| m.f("ActionType")).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(messages(&sim, "PasswordReset")[0].f("NewPassword"), "password ok");
    // Emergency: the old key no longer verifies inbound messages (11 "Keys").
    assert_eq!(call(&d, VNET, CENTRE_KEY, GET_USERINFO_VNET, &[("VNetUserID", &alice)]).result(), -21548);
    assert_eq!(call(&d, VNET, NEXT_KEY, GET_USERINFO_VNET, &[("VNetUserID", &alice)]).result(), 0);
}

// ---------------------------------------------------------------- values as transmitted

/// As `call`, but a carriage return in a value is sent as the character reference `&#13;` (a
/// literal CR would be read as LF by any XML parser, XML 1.0 section 2.11).
fn call_cr(d: &Daemon, service: &str, op: &str, key_hex: &str, fields: &[(&str, &str)]) -> Resp {
    let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><{op}>");
    for (k, v) in signed_fields(key_hex, fields, &d.now_ts()) {
        body.push_str(&format!("<{k}>{}</{k}>", xml_escape(&v).replace('\r', "&#13;")));
    }
    body.push_str(&format!("</{op}></soap:Body></soap:Envelope>"));
    let r = d.post_raw(service, "text/xml; charset=utf-8", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    Resp::parse(&r.text())
}

/// A value holding a carriage return (accepted from a caller as `&#13;`) must reach the centre
/// as it was signed and digested (2.4, 6.5): written as `&#13;`, not as a literal CR that the
/// receiving parser turns into LF. Otherwise the Authenticator (-21548, retried for 72 h, holding
/// up the user's later notifications) or the RecordsDigest (-21500, definitive: the ORDER stream
/// stalls for good) fails at the centre.
#[test]
fn values_with_a_carriage_return_reach_the_centre_as_signed() {
    let sim = CentreSim::start(&[]);
    let d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), None, "");
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    let r = call_cr(&d, SPS, "Order", SP_KEY, &[
        ("SPID", SP_ID), ("ServiceID", SVC), ("ServiceItemID", MONTHLY), ("ProductID", ""), ("VNetUserID", &alice), ("ContractID", "K1\r2"),
        ("IfExtend", "1"), ("TransactionID", "CR-1"),
    ]);
    ok(&r, "Order with a CR in ContractID");
    let r = call_cr(&d, BSS, "UserModify", BSS_KEY, &[
        ("SrcDeviceNo", BSS_ID), ("VNetUserID", &alice), ("CityCode", ""), ("UserType", ""), ("CreditLimit", ""), ("Balance", ""),
        ("Alias", "A\rB"), ("BindingAccessNo", ""), ("TransactionID", "MOD-1"),
    ]);
    ok(&r, "UserModify with a CR in Alias");
    // Orders after it must not be held up either.
    let bob = open_user(&d, "bob@fj", "OPEN-b");
    ok(&sp_order(&d, &bob, "CR-2"), "a later order");
    let delivered = wait_until(Duration::from_secs(6), || pending(&d) == 0 && q(&d, "SELECT count(*) FROM outbox WHERE state = 'dead'") == 0);
    let status = String::from_utf8_lossy(&d.cli(&["outbox", "status"]).stdout).into_owned();
    assert!(delivered, "not delivered; outbox status:\n{status}\nrefused by the centre: {:?}", rejected(&sim));
    assert_eq!(rejected(&sim), vec![]);
    let orders = records(&sim, "ORDER");
    assert_eq!(orders.len(), 2);
    assert_eq!(field(ORDER_RECORD, &orders[0].1, "ContractID"), "K1\r2");
    let infos = messages(&sim, "PUserInfoNotify");
    assert!(infos.iter().any(|m| m.f("Alias") == "A\rB"), "{infos:?}");
}

// ---------------------------------------------------------------- 8. outbox CLI

#[test]
fn outbox_cli_status_and_retry() {
    let d = node("", None, None, "");
    let header = |d: &Daemon| d.ok(&["outbox", "status"]).lines().next().unwrap_or("").to_string();
    let h = header(&d);
    let cols: Vec<&str> = h.split('\t').collect();
    assert!(cols.len() > 3 && ["destination", "operation", "pending", "dead"].iter().all(|c| cols.contains(c)), "header {h:?}");
    assert_eq!(d.listing(&["outbox", "status"]).len(), 0, "an empty outbox lists no rows");
    for args in [&["outbox", "retry"][..], &["outbox", "retry", "--dead"]] {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Something waiting (the centre has no URL): listed; retry still exits 0.
    let alice = open_user(&d, "alice@fj", "OPEN-a");
    ok(&sp_charge(&d, &alice, "CL-1"), "charge");
    let rows = d.listing(&["outbox", "status"]);
    let info = rows.iter().find(|r| r["destination"] == "centre" && r["operation"] == "PUserInfoNotify").expect("PUserInfoNotify row");
    assert_eq!((info["pending"].as_str(), info["dead"].as_str()), ("1", "0"));
    let batch = rows.iter().find(|r| r["destination"] == "centre" && r["operation"].contains("CHARGE")).expect("a BatchSync CHARGE row");
    assert_eq!(batch["pending"], "1");
    for args in [&["outbox", "retry"][..], &["outbox", "retry", "--dead"]] {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(d.cli(&["outbox", "retry", "--bogus"]).status.code(), Some(2), "usage error");
    assert_eq!(d.cli(&["outbox"]).status.code(), Some(2), "usage error");
}

/// PUserPasswordNotify (6.3) has no producer yet (users change passwords on the browser page of
/// section 5); a queued one is delivered like the others, its password re-encrypted under the
/// centre key in effect at the attempt.
#[test]
fn a_queued_password_notify_is_delivered_under_the_key_in_effect() {
    let sim = CentreSim::start_keys("127.0.0.1:0", &["--key", NEXT_KEY], &[]);
    let d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), None, "");
    // Queued under key version 1; the centre key is rotated before delivery.
    d.ok(&["peer", "set-key", CENTRE_ID, "--key", NEXT_KEY]);
    let enc = enc(CENTRE_KEY, "New-Secret-42");
    let w = rusqlite::Connection::open(&d.db).unwrap();
    w.busy_timeout(Duration::from_secs(10)).unwrap();
    let payload = serde_json::json!([["VNetUserID", "350000009999"], ["Password", enc], ["ChangeTime", "2026-11-29 10:00:00"]]).to_string();
    w.execute(
        "INSERT INTO outbox(destination, operation, order_key, payload, key_version, next_attempt_at, created_at)
         VALUES ('centre', 'PUserPasswordNotify', 'user:350000009999', ?1, 1, 0, strftime('%s','now'))",
        [payload],
    )
    .unwrap();
    eventually(&d, 15, "PUserPasswordNotify delivered", || !messages(&sim, "PUserPasswordNotify").is_empty());
    let m = &messages(&sim, "PUserPasswordNotify")[0];
    assert_eq!((m.f("VNetUserID"), m.f("Password")), ("350000009999", "password ok"));
}

/// A key with a long queue whose head waits (backing off) does not hold up other keys: the relay
/// walks ordering keys, not a window of rows.
#[test]
fn a_long_waiting_queue_of_one_key_does_not_hide_other_keys() {
    let sim = CentreSim::start(&[]);
    let d = node(&sync_cfg(500), Some(&url(&sim.addr, "/centre")), None, "");
    let w = rusqlite::Connection::open(&d.db).unwrap();
    w.busy_timeout(Duration::from_secs(10)).unwrap();
    w.execute_batch("BEGIN").unwrap();
    for i in 0..3000 {
        // The head of user:350000009999 is not due for an hour; 2,999 more wait behind it.
        let next = if i == 0 { "strftime('%s','now') + 3600" } else { "0" };
        w.execute(
            &format!(
                "INSERT INTO outbox(destination, operation, order_key, payload, next_attempt_at, created_at)
                 VALUES ('centre', 'PUserInfoNotify', 'user:350000009999', '[[\"ActionType\",\"2\"]]', {next}, strftime('%s','now'))"
            ),
            [],
        )
        .unwrap();
    }
    w.execute_batch("COMMIT").unwrap();
    let bob = open_user(&d, "bob@fj", "OPEN-bob");
    eventually(&d, 10, "bob's PUserInfoNotify delivered past the long queue", || {
        messages(&sim, "PUserInfoNotify").iter().any(|m| m.f("VNetUserID") == bob)
    });
    assert_eq!(q(&d, "SELECT count(*) FROM outbox WHERE order_key = 'user:350000009999' AND state = 'pending'"), 3000, "the waiting key keeps its order");
}
