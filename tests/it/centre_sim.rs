//! `vnetd centre-sim`: the real binary, spoken to over HTTP; its SQLite file read read-only.

use crate::harness::{self, ChildProcess, Http, Resp, BIN, CENTRE_KEY, SP_ID, SP_KEY};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use vnetd::crypto;

/// The province node's DeviceNo as the sim sees it in SrcDeviceNo.
pub(crate) const NODE_DEV: &str = "3500000000000101";
const SIM_DEV: &str = "0000000000000001";
/// A second centre key (key rotation: both verify).
pub(crate) const NEXT_KEY: &str = "111111111111111122222222222222223333333333333333";
pub(crate) const USERS: &str = "account_type,account,password,vnet_user_id,province_id,city_code\n\
01,roamer@gd,Roam-Secret-77,440000000001,44,020\n\
09,13800000000,Mobile-Secret-88,440000000002,44,0755\n";

/// A running `vnetd centre-sim`, killed on drop.
pub(crate) struct CentreSim {
    child: Option<ChildProcess>,
    dir: tempfile::TempDir,
    pub(crate) addr: String,
    pub(crate) db: PathBuf,
}

impl CentreSim {
    /// Always `--key CENTRE_KEY` (first) and `--users USERS`; `extra` adds options (more keys).
    pub(crate) fn start(extra: &[&str]) -> CentreSim {
        CentreSim::start_on("127.0.0.1:0", extra)
    }

    /// As `start`, listening on `listen` (e.g. a port chosen beforehand).
    pub(crate) fn start_on(listen: &str, extra: &[&str]) -> CentreSim {
        CentreSim::start_keys(listen, &["--key", CENTRE_KEY], extra)
    }

    /// As `start_on`, with `keys` (e.g. `["--key", K]`) in place of `--key CENTRE_KEY`.
    pub(crate) fn start_keys(listen: &str, keys: &[&str], extra: &[&str]) -> CentreSim {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.csv"), USERS).unwrap();
        let db = dir.path().join("sim/centre.db");
        let mut sim = CentreSim { child: None, dir, addr: String::new(), db };
        sim.spawn(listen, keys, extra);
        sim
    }

    /// Stop (SIGTERM) and start again on the same address and database with `keys` (e.g.
    /// `["--key", K]`: replaces CENTRE_KEY) and `extra` options.
    pub(crate) fn restart(&mut self, keys: &[&str], extra: &[&str]) {
        self.stop();
        let listen = self.addr.clone();
        self.spawn(&listen, keys, extra);
    }

    fn spawn(&mut self, listen: &str, keys: &[&str], extra: &[&str]) {
        let log_path = self.dir.path().join("sim.log");
        let skip = self.log().len();
        let mut cmd = Command::new(BIN);
        cmd.args(["centre-sim", "--listen", listen, "--device-no", SIM_DEV])
            .args(keys)
            .arg("--db")
            .arg(&self.db)
            .arg("--users")
            .arg(self.dir.path().join("users.csv"))
            .args(extra);
        let mut child = ChildProcess::spawn(cmd, &log_path).unwrap();
        let mut addr = None;
        let listening = |addr: &mut Option<String>| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            // Complete lines only: stderr is unbuffered, so the line can be seen half written
            // ("centre-sim listening on " without its address yet).
            *addr = log
                .get(skip..)
                .unwrap_or("")
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .find_map(|l| l.strip_prefix("centre-sim listening on "))
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty());
            addr.is_some()
        };
        if let Err(e) = child.wait_ready("centre-sim", Duration::from_secs(20), || listening(&mut addr)) {
            panic!("{e}");
        }
        self.addr = addr.expect("address");
        self.child = Some(child);
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
    }

    fn post(&self, path: &str, body: &str) -> Http {
        harness::http(&self.addr, "POST", path, &[("Content-Type", "text/xml; charset=utf-8")], body.as_bytes())
    }

    /// Call `op` (centre namespace) with `fields` in Authenticator order (without TimeStamp and
    /// Authenticator), signed with `key_hex`, TimeStamp `ts`; `tail` is raw XML after Authenticator.
    fn call_at(&self, op: &str, key_hex: &str, fields: &[(&str, &str)], ts: &str, tail: &str) -> Resp {
        let body = envelope(op, "http://vnet.cn/centre/v3", &harness::signed_fields(key_hex, fields, ts), tail);
        let r = self.post("/VNetForProvince/services/VNetForProvince", &body);
        assert_eq!(r.status, 200, "HTTP {} for {op}: {}", r.status, r.text());
        Resp::parse(&r.text())
    }

    fn call(&self, op: &str, fields: &[(&str, &str)]) -> Resp {
        self.call_at(op, CENTRE_KEY, fields, &harness::ts(0), "")
    }

    pub(crate) fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// SIGKILL, at once (what it committed is all it keeps); `restart` starts it again.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// The directory of its database, users file and log.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// SIGTERM; returns whether it exited with status 0 within 10 s.
    pub(crate) fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        c.stop(Duration::from_secs(10)).is_some_and(|st| st.success())
    }
}

/// A SOAP 1.1 request with the operation element in namespace `ns` and qualified children.
fn envelope(op: &str, ns: &str, fields: &[(String, String)], tail: &str) -> String {
    let mut b = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{}\"><soap:Body><m:{op} xmlns:m=\"{ns}\">", harness::SOAP11);
    for (k, v) in fields {
        b.push_str(&format!("<m:{k}>{}</m:{k}>", harness::xml_escape(v)));
    }
    b.push_str(tail);
    b.push_str(&format!("</m:{op}></soap:Body></soap:Envelope>"));
    b
}

fn user_info(vnet_user_id: &str) -> Vec<(&'static str, String)> {
    [
        ("SrcDeviceNo", NODE_DEV),
        ("ProvinceID", "35"),
        ("ActionType", "1"),
        ("VNetUserID", vnet_user_id),
        ("AccountType", "01"),
        ("Account", "alice@fj"),
        ("Alias", "爱丽丝"),
        ("CityCode", "0591"),
        ("UserType", "1"),
        ("Status", "00"),
        ("NumFlag", ""),
        ("BindingAccessNo", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .chain([("ChangeTime", harness::ts(0))])
    .collect()
}

fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn user_info_notify_authenticator_and_timestamp() {
    let mut sim = CentreSim::start(&["--key", NEXT_KEY]);
    let f = user_info("350000000001");
    let r = sim.call("PUserInfoNotify", &refs(&f));
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(r.order, ["Result", "ErrDescription", "ContractID"]);
    assert_eq!(r.get("ContractID"), "C350000000001");
    // The second --key verifies too (key rotation).
    let r = sim.call_at("PUserInfoNotify", NEXT_KEY, &refs(&user_info("350000000002")), &harness::ts(0), "");
    assert_eq!(r.result(), 0);
    // Wrong key, stale TimeStamp, malformed SrcDeviceNo.
    let r = sim.call_at("PUserInfoNotify", SP_KEY, &refs(&f), &harness::ts(0), "");
    assert_eq!(r.result(), -21548);
    assert_eq!(r.get("ContractID"), "", "every listed element, empty, on a rejection");
    let r = sim.call_at("PUserInfoNotify", CENTRE_KEY, &refs(&f), &harness::ts(-400), "");
    assert_eq!(r.result(), -21514);
    let mut g = f.clone();
    g[0].1 = "35".into();
    assert_eq!(sim.call("PUserInfoNotify", &refs(&g)).result(), -21511);

    let db = sim.db();
    let (op, src, fields, response): (String, String, String, String) =
        db.query_row("SELECT operation, src_device_no, fields, response FROM message ORDER BY id LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    assert_eq!((op.as_str(), src.as_str()), ("PUserInfoNotify", NODE_DEV));
    let fields: serde_json::Value = serde_json::from_str(&fields).unwrap();
    assert_eq!(fields["VNetUserID"], "350000000001");
    assert_eq!(fields["Alias"], "爱丽丝");
    assert!(fields.get("Authenticator").is_none());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&response).unwrap()["ContractID"], "C350000000001");
    assert_eq!(sim.count("SELECT COUNT(*) FROM message"), 2);
    let rejected: Vec<i64> = db.prepare("SELECT result FROM rejected ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(rejected, [-21548, -21514, -21511]);
    drop(db);

    // Any path; faults for what is not an operation; GET answers.
    let ok = envelope("ClockSync", "http://vnet.cn/centre/v3", &harness::signed_fields(CENTRE_KEY, &[("SrcDeviceNo", NODE_DEV), ("ProvinceID", "35"), ("LocalTime", &harness::ts(0))], &harness::ts(0)), "");
    let r = sim.post("/some/other/path", &ok);
    assert_eq!(r.status, 200);
    let r = Resp::parse(&r.text());
    assert_eq!(r.result(), 0);
    assert_eq!(r.get("ServerTime").len(), 19);
    for (body, what) in [
        ("not xml".to_string(), "not XML"),
        ("<a/>".to_string(), "not an envelope"),
        (envelope("Nonsense", "http://vnet.cn/centre/v3", &[], ""), "unknown operation"),
    ] {
        let r = sim.post("/", &body);
        assert_eq!(r.status, 500, "{what}");
        assert!(r.text().contains("<faultcode>soap:Client</faultcode>"), "{what}: {}", r.text());
    }
    assert_eq!(harness::http(&sim.addr, "GET", "/", &[], b"").status, 200);
    assert_eq!(sim.count("SELECT COUNT(*) FROM rejected"), 3, "faults are not recorded as rejections");

    let log = sim.log();
    assert!(log.contains("accepted PUserInfoNotify") && log.contains("rejected PUserInfoNotify"), "{log}");
    assert!(!log.contains(CENTRE_KEY) && !log.contains(NEXT_KEY));
    assert!(sim.stop(), "centre-sim exits 0 on SIGTERM");
    assert!(sim.log().contains("centre-sim stopped"));
}

fn order_record(n: i64) -> Vec<String> {
    // A fixed time: the test rebuilds the record to compare it with what was stored, so a value
    // taken from the clock could fall in the next second.
    let ts = "2026-12-01 10:00:00".to_string();
    [
        n.to_string(),
        format!("35O{n:08}"),
        "1".into(),
        "350000000001".into(),
        SP_ID.into(),
        "3500000100000001".into(),
        "3500000100000011".into(),
        "新闻 & 天气".into(),
        String::new(),
        String::new(),
        ts.clone(),
        "2026-12-31 23:59:59".into(),
        "SP".into(),
        ts,
    ]
    .into()
}

const ORDER_FIELDS: [&str; 14] =
    ["RecordSeq", "OrderID", "ActionType", "VNetUserID", "SPID", "ServiceID", "ServiceItemID", "ServiceItemName", "ProductID", "ContractID", "StartTime", "EndTime", "Channel", "EventTime"];

/// BatchSync of ORDER records `from..=to`; `digest` overrides the correct RecordsDigest.
fn batch(sim: &CentreSim, from: i64, to: i64, digest: Option<&str>) -> Resp {
    let records: Vec<Vec<String>> = (from..=to).map(order_record).collect();
    let good = crypto::records_digest(&records);
    let mut tail = String::from("<m:Records>");
    for r in &records {
        tail.push_str("<m:Record>");
        for (k, v) in ORDER_FIELDS.iter().zip(r) {
            tail.push_str(&format!("<m:{k}>{}</m:{k}>", harness::xml_escape(v)));
        }
        tail.push_str("</m:Record>");
    }
    tail.push_str("</m:Records>");
    let (seq, total) = (from.to_string(), records.len().to_string());
    let fields = [
        ("SrcDeviceNo", NODE_DEV),
        ("ProvinceID", "35"),
        ("Stream", "ORDER"),
        ("SequenceID", seq.as_str()),
        ("TotalCount", total.as_str()),
        ("IsFinal", "1"),
        ("RecordsDigest", digest.unwrap_or(&good)),
    ];
    sim.call_at("BatchSync", CENTRE_KEY, &fields, &harness::ts(0), &tail)
}

#[test]
fn batch_sync_duplicates_gaps_and_digest() {
    let sim = CentreSim::start(&[]);
    let r = batch(&sim, 1, 3, None);
    assert_eq!((r.result(), r.get("LastSequenceID")), (0, "3"), "{:?}", r.fields);
    let r = batch(&sim, 2, 4, None);
    assert_eq!((r.result(), r.get("LastSequenceID")), (0, "4"));
    let r = batch(&sim, 7, 8, None);
    assert_eq!((r.result(), r.get("LastSequenceID")), (-21519, "4"));
    let r = batch(&sim, 5, 6, Some("2jmj7l5rSw0yVb/vlWAYkK/YBwk="));
    assert_eq!((r.result(), r.get("LastSequenceID")), (-21500, "4"));
    assert!(r.get("ErrDescription").contains("RecordsDigest"));

    assert_eq!(sim.count("SELECT COUNT(*) FROM record WHERE stream = 'ORDER'"), 4);
    assert_eq!(sim.count("SELECT last_seq FROM stream_state WHERE stream = 'ORDER'"), 4);
    assert_eq!(sim.count("SELECT duplicates FROM stream_state WHERE stream = 'ORDER'"), 2);
    let stored: String = sim.db().query_row("SELECT fields FROM record WHERE stream = 'ORDER' AND record_seq = 2", [], |r| r.get(0)).unwrap();
    assert_eq!(serde_json::from_str::<Vec<String>>(&stored).unwrap(), order_record(2));
    assert_eq!(sim.count("SELECT COUNT(*) FROM message"), 0, "batches are not messages");
    let rejected: Vec<i64> = sim.db().prepare("SELECT result FROM rejected ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(rejected, [-21519, -21500]);
    // The sequence continues after the gap is filled.
    assert_eq!(batch(&sim, 5, 8, None).get("LastSequenceID"), "8");
}

fn roam_auth(sim: &CentreSim, account_type: &str, account: &str, password: &str) -> Resp {
    let enc = harness::enc(CENTRE_KEY, password);
    sim.call(
        "RoamAuthV2",
        &[
            ("SrcDeviceNo", NODE_DEV),
            ("ProvinceID", "35"),
            ("SPID", SP_ID),
            ("ServiceID", ""),
            ("AccountType", account_type),
            ("Account", account),
            ("Password", &enc),
            ("UserIP", "10.0.0.1"),
            ("RoamType", "1"),
            ("TransactionID", "RA-1"),
        ],
    )
}

#[test]
fn roam_auth_and_roaming_consumption_from_the_user_table() {
    let sim = CentreSim::start(&[]);
    let r = roam_auth(&sim, "01", "roamer@gd", "Roam-Secret-77");
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"]);
    assert_eq!((r.get("VNetUserID"), r.get("ProvinceID"), r.get("CityCode"), r.get("UserType"), r.get("Status")), ("440000000001", "44", "020", "1", "00"));
    assert_eq!(roam_auth(&sim, "09", "13800000000", "Mobile-Secret-88").get("VNetUserID"), "440000000002");
    assert_eq!(roam_auth(&sim, "01", "roamer@gd", "wrong-password").result(), -20501);
    assert_eq!(roam_auth(&sim, "01", "nobody@gd", "Roam-Secret-77").result(), -20504);

    let order = |user: &str, tx: &str| {
        sim.call(
            "Order",
            &[
                ("SrcDeviceNo", NODE_DEV),
                ("ProvinceID", "35"),
                ("SPID", SP_ID),
                ("ServiceID", "3500000100000001"),
                ("ServiceItemID", "3500000100000011"),
                ("ProductID", ""),
                ("VNetUserID", user),
                ("ContractID", ""),
                ("IfExtend", "1"),
                ("TransactionID", tx),
            ],
        )
    };
    let r = order("440000000001", "ORD-1");
    assert_eq!(r.result(), 0);
    assert!(r.get("OrderID").starts_with("SIM"));
    assert_eq!(r.get("StartTime").len(), 19);
    assert!(r.get("EndTime").ends_with("23:59:59"));
    assert_eq!(order("440000000001", "ORD-1").get("OrderID"), r.get("OrderID"), "a repeated TransactionID gets the same answer");
    assert_eq!(order("350000000001", "ORD-2").result(), -20504);
    let c = sim.call(
        "Charge",
        &[
            ("SrcDeviceNo", NODE_DEV),
            ("ProvinceID", "35"),
            ("SPID", SP_ID),
            ("ServiceID", "3500000100000001"),
            ("ServiceItemID", "3500000100000012"),
            ("VNetUserID", "440000000002"),
            ("Fee", "200"),
            ("BatchCount", "1"),
            ("TransactionID", "CH-1"),
        ],
    );
    assert_eq!((c.result(), c.get("TransactionID")), (0, "CH-1"));
    assert_eq!(c.get("ChargeTime").len(), 19);

    // Accepted: 2 RoamAuthV2, 1 Order (the repeat is not stored again), 1 Charge.
    assert_eq!(sim.count("SELECT COUNT(*) FROM message"), 4);
    assert_eq!(sim.count("SELECT COUNT(*) FROM message WHERE operation = 'RoamAuthV2' AND json_extract(fields, '$.Password') = 'password ok'"), 2);
    // No plaintext password anywhere.
    let db_bytes = std::fs::read(&sim.db).unwrap();
    let wal = std::fs::read(sim.db.with_extension("db-wal")).unwrap_or_default();
    for secret in ["Roam-Secret-77", "Mobile-Secret-88", "wrong-password"] {
        assert!(!sim.log().contains(secret), "{secret} in the log");
        for bytes in [&db_bytes, &wal] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in the database");
        }
    }
}

#[test]
fn fail_rate_one_answers_500_and_stores_nothing() {
    let sim = CentreSim::start(&["--fail-rate", "1.0"]);
    let body = envelope("PUserInfoNotify", "http://vnet.cn/centre/v3", &harness::signed_fields(CENTRE_KEY, &refs(&user_info("350000000001")), &harness::ts(0)), "");
    for _ in 0..3 {
        let r = sim.post("/", &body);
        assert_eq!(r.status, 500);
        assert!(r.text().contains("<faultcode>soap:Server</faultcode>"), "{}", r.text());
    }
    assert_eq!(sim.count("SELECT COUNT(*) FROM message"), 0);
    assert_eq!(sim.count("SELECT COUNT(*) FROM rejected"), 0);
}

#[test]
fn delay_ms_delays_each_answer() {
    let sim = CentreSim::start(&["--delay-ms", "700"]);
    let t = Instant::now();
    let r = sim.call("ClockSync", &[("SrcDeviceNo", NODE_DEV), ("ProvinceID", "35"), ("LocalTime", &harness::ts(0))]);
    assert_eq!(r.result(), 0);
    assert!(t.elapsed() >= Duration::from_millis(700), "{:?}", t.elapsed());
}

#[test]
fn clock_offset_shifts_server_time() {
    let sim = CentreSim::start(&["--clock-offset-s", "-3600"]);
    let r = sim.call("ClockSync", &[("SrcDeviceNo", NODE_DEV), ("ProvinceID", "35"), ("LocalTime", &harness::ts(0))]);
    assert_eq!(r.result(), 0);
    let diff = secs_between(&harness::ts(0), r.get("ServerTime"));
    assert!((-3602..=-3598).contains(&diff), "{diff}");
}

/// `b - a` in seconds for two `ts` values.
fn secs_between(a: &str, b: &str) -> i64 {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let p = |s: &str| time::PrimitiveDateTime::parse(s, fmt).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    (p(b) - p(a)).whole_seconds()
}

#[test]
fn time_offset_shifts_the_whole_clock() {
    // As for a node run with `[node] time_offset_s = 40 days`.
    let shift = 40 * 86400;
    let sim = CentreSim::start(&["--time-offset-s", &shift.to_string()]);
    let f = [("SrcDeviceNo", NODE_DEV), ("ProvinceID", "35"), ("LocalTime", "")];
    let r = sim.call_at("ClockSync", CENTRE_KEY, &f, &harness::ts(shift), "");
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert!(secs_between(&harness::ts(shift), r.get("ServerTime")).abs() <= 2, "{}", r.get("ServerTime"));
    assert_eq!(sim.call_at("ClockSync", CENTRE_KEY, &f, &harness::ts(0), "").result(), -21514);
}

#[test]
fn order_notify_for_an_sp_with_sp_key() {
    let sim = CentreSim::start(&["--sp-key", &format!("{SP_ID}:{SP_KEY}")]);
    let ts = harness::ts(0);
    let notify = |spid: &str, key: &str| {
        let f = [
            ("SPID", spid),
            ("ProvinceID", "35"),
            ("OrderID", "35O00000001"),
            ("ActionType", "1"),
            ("VNetUserID", "350000000001"),
            ("ServiceID", "3500000100000001"),
            ("ServiceItemID", "3500000100000011"),
            ("ProductID", ""),
            ("StartTime", &ts),
            ("EndTime", "2026-12-31 23:59:59"),
            ("Channel", "BSS"),
        ];
        let body = envelope("OrderNotify", "http://vnet.cn/sp/v3", &harness::signed_fields(key, &f, &ts), "");
        let r = sim.post("/sp/OrderNotify", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("<OrderNotifyResponse xmlns=\"http://vnet.cn/sp/v3\">"), "{}", r.text());
        Resp::parse(&r.text())
    };
    let r = notify(SP_ID, SP_KEY);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(r.order, ["Result", "ErrDescription"]);
    assert_eq!(notify(SP_ID, CENTRE_KEY).result(), -21548);
    assert_eq!(notify("35000009", SP_KEY).result(), -20001);
    assert_eq!(sim.count("SELECT COUNT(*) FROM message WHERE operation = 'OrderNotify' AND src_device_no = '35000001'"), 1);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["--key", "zz"],
        vec!["--key", CENTRE_KEY, "--fail-rate", "1.5"],
        vec!["--key", CENTRE_KEY, "--sp-key", "123:abc"],
    ] {
        let out = Command::new(BIN)
            .args(["centre-sim", "--listen", "127.0.0.1:0", "--db", "/nonexistent/x.db", "--device-no", SIM_DEV])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("users.csv");
    std::fs::write(&bad, "account_type,account,password,vnet_user_id,province_id,city_code\n01,a,pw,123,44,020\n").unwrap();
    let out = Command::new(BIN)
        .args(["centre-sim", "--listen", "127.0.0.1:0", "--device-no", SIM_DEV, "--key", CENTRE_KEY, "--users"])
        .arg(&bad)
        .arg("--db")
        .arg(dir.path().join("x.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_other_operation_answers_its_listed_fields() {
    let sim = CentreSim::start(&[]);
    let pw = harness::enc(CENTRE_KEY, "New-Secret-99");
    let now = harness::ts(0);
    let svc = [("SPID", SP_ID), ("ServiceID", "3500000100000001"), ("ServiceItemID", "3500000100000011")];
    let head = [("SrcDeviceNo", NODE_DEV), ("ProvinceID", "35")];
    let with = |rest: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        head.iter().chain(rest).map(|(k, v)| (*k, v.to_string())).collect()
    };
    type Case = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);
    let mut cases: Vec<Case> = vec![
        ("PUserPasswordNotify", with(&[("VNetUserID", "350000000001")]), vec![]),
        ("PasswordReset", with(&[("VNetUserID", "350000000001")]), vec![]),
        ("RoamServiceRevoke", with(&svc), vec![]),
        ("ServiceAuth", with(&svc), vec!["FeeType", "EndTime"]),
        ("CancelOrder", with(&svc), vec!["OrderID", "EndTime"]),
        ("ReOrder", with(&svc), vec!["OrderID", "StartTime", "EndTime"]),
    ];
    cases[0].1.extend([("Password", pw.clone()), ("ChangeTime", now.clone())]);
    cases[1].1.extend([("NewPassword", pw.clone()), ("TransactionID", "RESET-1".to_string())]);
    cases[2].1.push(("Reason", "撤销漫游".to_string()));
    cases[3].1.push(("VNetUserID", "440000000001".to_string()));
    cases[4].1.extend([("ProductID", String::new()), ("VNetUserID", "440000000001".into()), ("StopType", "1".into()), ("TransactionID", "CX-1".into())]);
    cases[5].1.extend([("ProductID", String::new()), ("VNetUserID", "440000000001".into()), ("TransactionID", "RO-1".into())]);
    for (op, fields, extra) in &cases {
        let r = sim.call(op, &refs(fields));
        assert_eq!(r.result(), 0, "{op}: {:?}", r.fields);
        let mut expect = vec!["Result", "ErrDescription"];
        expect.extend(extra);
        assert_eq!(r.order, expect, "{op}");
    }
    assert_eq!(sim.count("SELECT COUNT(*) FROM message"), 6);
    assert_eq!(sim.count("SELECT COUNT(*) FROM message WHERE json_extract(fields, '$.NewPassword') = 'password ok'"), 1);
    assert!(!sim.log().contains("New-Secret-99") && !sim.log().contains(&pw));
}
