//! Tests of the simulated centre: every declared operation answered, replays, batches, keys.

use super::*;
use crate::clock::parse_utc_offset;

const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a";
const OLD_KEY: &str = "00112233445566778899aabbccddeeff0011223344556677";
const SP_KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
const IV: &str = "0102030405060708";
const DEV: &str = "3500000000000101";
const NOW: i64 = 1_795_917_600; // 2026-11-29 10:00:00 +08:00

fn key(h: &str) -> TdesKey {
    TdesKey::from_hex(h, IV).unwrap()
}

fn sim() -> Sim {
    let store = Store::in_memory().unwrap();
    let users = store::parse_users_csv(&format!("{}\n01,roamer,secret1,110000000001,11,0101\n", store::USERS_HEADER)).unwrap();
    store.load_users(&users).unwrap();
    Sim {
        keys: vec![key(KEY), key(OLD_KEY)],
        sp_keys: [("35000001".to_string(), key(SP_KEY))].into_iter().collect(),
        clock: Clock::manual(parse_utc_offset("+08:00").unwrap(), NOW),
        clock_offset_s: 90,
        store,
    }
}

/// A request element: `fields` in Authenticator order without TimeStamp and Authenticator.
fn signed(op: &str, k: &str, fields: &[(&str, &str)], ts: &str, extra: Vec<Elem>) -> Elem {
    let mut children: Vec<Elem> = fields.iter().map(|(n, v)| Elem { name: n.to_string(), text: v.to_string(), children: vec![] }).collect();
    children.push(Elem { name: "TimeStamp".into(), text: ts.into(), children: vec![] });
    let values: Vec<&str> = children.iter().map(|c| c.text.as_str()).collect();
    let auth = crypto::authenticator(&key(k), &values);
    children.push(Elem { name: "Authenticator".into(), text: auth, children: vec![] });
    children.extend(extra);
    Elem { name: op.into(), text: String::new(), children }
}

const TS: &str = "2026-11-29 10:00:00";

fn info(k: &str, ts: &str) -> Elem {
    let f = [
        ("SrcDeviceNo", DEV),
        ("ProvinceID", "35"),
        ("ActionType", "1"),
        ("VNetUserID", "350000000001"),
        ("AccountType", "01"),
        ("Account", "alice"),
        ("Alias", ""),
        ("CityCode", "0591"),
        ("UserType", "1"),
        ("Status", "00"),
        ("NumFlag", ""),
        ("BindingAccessNo", ""),
        ("ChangeTime", TS),
    ];
    signed("PUserInfoNotify", k, &f, ts, vec![])
}

fn count(s: &Sim, table: &str) -> i64 {
    s.store.with_tx(|tx| tx.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))).unwrap()
}

#[test]
fn every_declared_operation_is_answered() {
    for o in outbound::OUT_OPS {
        assert!(op(o.name).is_some(), "{} has no simulator kind", o.name);
    }
}

#[test]
fn envelope_checks() {
    let s = sim();
    let a = s.handle(&info(KEY, TS)).unwrap();
    assert_eq!((a.result, a.values["ContractID"].as_str()), (0, "C350000000001"));
    assert_eq!(s.handle(&info(OLD_KEY, TS)).unwrap().result, 0, "any configured key verifies");
    assert_eq!(s.handle(&info(SP_KEY, TS)).unwrap().result, -21548);
    assert_eq!(s.handle(&info(KEY, "2026-11-29 10:05:01")).unwrap().result, -21514);
    assert_eq!(s.handle(&info(KEY, "2026-11-29 09:55:00")).unwrap().result, 0);
    let mut bad_src = info(KEY, TS);
    bad_src.children[0].text = "35".into();
    assert_eq!(s.handle(&bad_src).unwrap().result, -21511);
    assert!(s.handle(&Elem { name: "Nope".into(), ..Default::default() }).is_none());
    assert_eq!((count(&s, "message"), count(&s, "rejected")), (3, 3));
    let doc = s.handle(&info(KEY, TS)).unwrap().render(SoapVersion::V11);
    assert!(doc.contains("<PUserInfoNotifyResponse xmlns=\"http://vnet.cn/centre/v3\"><Result>0</Result><ErrDescription></ErrDescription><ContractID>C350000000001</ContractID>"), "{doc}");
}

#[test]
fn passwords_are_checked_not_stored() {
    let s = sim();
    let enc = key(KEY).encrypt_b64(b"n3wPassw0rd");
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("VNetUserID", "350000000001"), ("Password", enc.as_str()), ("ChangeTime", TS)];
    assert_eq!(s.handle(&signed("PUserPasswordNotify", KEY, &f, TS, vec![])).unwrap().result, 0);
    let stored: String = s.store.with_tx(|tx| tx.query_row("SELECT fields FROM message", [], |r| r.get(0))).unwrap();
    assert!(stored.contains("\"Password\":\"password ok\"") && !stored.contains(&enc), "{stored}");
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("VNetUserID", "350000000001"), ("Password", "not base64!"), ("ChangeTime", TS)];
    assert_eq!(s.handle(&signed("PUserPasswordNotify", KEY, &f, TS, vec![])).unwrap().result, -21557);
    // Decrypted with the key that verified the Authenticator (here the second one): empty.
    let empty = key(OLD_KEY).encrypt_b64(b"");
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("VNetUserID", "350000000001"), ("NewPassword", empty.as_str()), ("TransactionID", "T1")];
    assert_eq!(s.handle(&signed("PasswordReset", OLD_KEY, &f, TS, vec![])).unwrap().result, -21555);
    // Encrypted under another key than the one that verified: cannot be decrypted.
    let other = key(SP_KEY).encrypt_b64(b"n3wPassw0rd");
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("VNetUserID", "350000000001"), ("NewPassword", other.as_str()), ("TransactionID", "T2")];
    assert_eq!(s.handle(&signed("PasswordReset", KEY, &f, TS, vec![])).unwrap().result, -21557);
}

fn roam(pw_key: &str, account: &str, password: &str) -> Elem {
    let enc = key(pw_key).encrypt_b64(password.as_bytes());
    let f = [
        ("SrcDeviceNo", DEV),
        ("ProvinceID", "35"),
        ("SPID", "35000001"),
        ("ServiceID", ""),
        ("AccountType", "01"),
        ("Account", account),
        ("Password", enc.as_str()),
        ("UserIP", ""),
        ("RoamType", "1"),
        ("TransactionID", "RA1"),
    ];
    signed("RoamAuthV2", KEY, &f, TS, vec![])
}

#[test]
fn roam_auth() {
    let s = sim();
    let a = s.handle(&roam(KEY, "roamer", "secret1")).unwrap();
    assert_eq!(a.result, 0);
    assert_eq!((a.values["VNetUserID"].as_str(), a.values["ProvinceID"].as_str(), a.values["CityCode"].as_str()), ("110000000001", "11", "0101"));
    assert_eq!(s.handle(&roam(KEY, "roamer", "secret1")).unwrap().result, 0, "no idempotency for RoamAuthV2");
    assert_eq!(s.handle(&roam(KEY, "roamer", "wrong")).unwrap().result, -20501);
    assert_eq!(s.handle(&roam(KEY, "nobody", "secret1")).unwrap().result, -20504);
    let rej = s.handle(&roam(KEY, "roamer", "wrong")).unwrap().render(SoapVersion::V11);
    assert!(rej.contains("<VNetUserID></VNetUserID><ProvinceID></ProvinceID><CityCode></CityCode><UserType></UserType><Status></Status>"), "{rej}");
}

fn order(tx: &str, product: &str) -> Elem {
    let f = [
        ("SrcDeviceNo", DEV),
        ("ProvinceID", "35"),
        ("SPID", "35000001"),
        ("ServiceID", "3500000100000001"),
        ("ServiceItemID", "3500000100000011"),
        ("ProductID", product),
        ("VNetUserID", "110000000001"),
        ("ContractID", ""),
        ("IfExtend", "1"),
        ("TransactionID", tx),
    ];
    signed("Order", KEY, &f, TS, vec![])
}

#[test]
fn consumption_and_replay() {
    let s = sim();
    let a = s.handle(&order("T1", "")).unwrap();
    assert_eq!(a.result, 0);
    assert_eq!(a.values["OrderID"], "SIM0000000001");
    assert_eq!(a.values["EndTime"], "2026-11-30 23:59:59");
    assert_eq!(a.values["StartTime"], TS);
    let again = s.handle(&order("T1", "")).unwrap();
    assert_eq!((again.result, again.values["OrderID"].as_str()), (0, "SIM0000000001"));
    assert_eq!(s.handle(&order("T1", "3500000100000099")).unwrap().result, -21513);
    assert_eq!(count(&s, "message"), 1);
    let f = [
        ("SrcDeviceNo", DEV),
        ("ProvinceID", "35"),
        ("SPID", "35000001"),
        ("ServiceID", "3500000100000001"),
        ("ServiceItemID", "3500000100000011"),
        ("ProductID", ""),
        ("VNetUserID", "110000000001"),
        ("StopType", "2"),
        ("TransactionID", "T2"),
    ];
    let c = s.handle(&signed("CancelOrder", KEY, &f, TS, vec![])).unwrap();
    assert_eq!((c.result, c.values["OrderID"].as_str(), c.values["EndTime"].as_str()), (0, "SIM0000000001", TS));
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("SPID", "35000001"), ("ServiceID", "1"), ("ServiceItemID", ""), ("VNetUserID", "350000000009")];
    assert_eq!(s.handle(&signed("ServiceAuth", KEY, &f, TS, vec![])).unwrap().result, -20504);
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("LocalTime", TS)];
    let cs = s.handle(&signed("ClockSync", KEY, &f, TS, vec![])).unwrap();
    assert_eq!(cs.values["ServerTime"], "2026-11-29 10:01:30");
}

fn batch(stream: &str, from: i64, to: i64, digest: Option<&str>) -> Elem {
    let names = outbound::stream(stream).unwrap_or(outbound::STREAMS[0]).fields;
    let records: Vec<Vec<String>> = (from..=to).map(|n| names.iter().enumerate().map(|(i, f)| if i == 0 { n.to_string() } else { format!("{f}{n}") }).collect()).collect();
    let d = digest.map(str::to_string).unwrap_or_else(|| crypto::records_digest(&records));
    let recs = Elem {
        name: "Records".into(),
        text: String::new(),
        children: records
            .iter()
            .map(|r| Elem { name: "Record".into(), text: String::new(), children: names.iter().zip(r).map(|(n, v)| Elem { name: n.to_string(), text: v.clone(), children: vec![] }).collect() })
            .collect(),
    };
    let (seq, total) = (from.to_string(), records.len().to_string());
    let f = [("SrcDeviceNo", DEV), ("ProvinceID", "35"), ("Stream", stream), ("SequenceID", seq.as_str()), ("TotalCount", total.as_str()), ("IsFinal", "1"), ("RecordsDigest", d.as_str())];
    signed("BatchSync", KEY, &f, TS, vec![recs])
}

#[test]
fn batch_sync_sequence() {
    let s = sim();
    let r = |e: Elem| {
        let a = s.handle(&e).unwrap();
        (a.result, a.values.get("LastSequenceID").cloned().unwrap_or_default())
    };
    assert_eq!(r(batch("ORDER", 1, 3, None)), (0, "3".into()));
    assert_eq!(r(batch("ORDER", 2, 4, None)), (0, "4".into()));
    assert_eq!(r(batch("ORDER", 7, 8, None)), (-21519, "4".into()));
    assert_eq!(r(batch("ORDER", 5, 5, Some("AAAA"))), (-21500, "4".into()));
    assert_eq!(r(batch("CHARGE", 1, 1, None)), (0, "1".into()));
    assert_eq!(r(batch("SETTLE", 2, 2, None)), (-21519, "0".into()));
    assert_eq!(r(batch("BOGUS", 1, 1, None)), (-21500, "".into()));
    assert_eq!(count(&s, "record"), 5);
    assert_eq!(s.store.with_tx(|tx| store::stream_state(tx, "ORDER")).unwrap(), (4, 2));
    // TotalCount that does not match, RecordSeq out of order.
    let mut e = batch("ORDER", 5, 6, None);
    let recs = e.children.pop().unwrap();
    let mut swapped = recs.clone();
    swapped.children.swap(0, 1);
    e.children.push(swapped);
    assert_eq!(r(e).0, -21500);
    assert_eq!(count(&s, "record"), 5);
}

#[test]
fn order_notify() {
    let s = sim();
    let f = [
        ("SPID", "35000001"),
        ("ProvinceID", "35"),
        ("OrderID", "O1"),
        ("ActionType", "1"),
        ("VNetUserID", "350000000001"),
        ("ServiceID", "3500000100000001"),
        ("ServiceItemID", "3500000100000011"),
        ("ProductID", ""),
        ("StartTime", TS),
        ("EndTime", "2026-11-30 23:59:59"),
        ("Channel", "BSS"),
    ];
    let a = s.handle(&signed("OrderNotify", SP_KEY, &f, TS, vec![])).unwrap();
    assert_eq!(a.result, 0);
    assert!(a.render(SoapVersion::V11).contains("<OrderNotifyResponse xmlns=\"http://vnet.cn/sp/v3\">"));
    assert_eq!(s.handle(&signed("OrderNotify", KEY, &f, TS, vec![])).unwrap().result, -21548);
    let mut g = f;
    g[0].1 = "35000002";
    assert_eq!(s.handle(&signed("OrderNotify", SP_KEY, &g, TS, vec![])).unwrap().result, -20001);
}
