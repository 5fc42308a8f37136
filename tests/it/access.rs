//! The access network and the 168 platform against the running binary (spec 4.1 IPAuth, 4.2,
//! 4.5, 4.6, 11): OnlineNotify start/stop/interim and staleness, every IPAuth code, the legacy
//! getUserProduct and its allow list, CrossAuth with the shared lockout.

use crate::harness::*;
use std::time::Duration;

const SPS: &str = "ProvinceForSP";
const BSS: &str = "ProvinceForBSS";
const AAA: &str = "ProvinceForAAA";
const P168: &str = "ProvinceFor168";
const AAA_ID: &str = "3500000000000301";
const AAA_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";
const P168_ID: &str = "3500000000000401";
const P168_KEY: &str = "1122334455667788990011223344556677889900aabbccdd";
const PW: &str = "s3cret-Pass";
const ONLINE_NOTIFY: &[&str] = &["SrcDeviceNo", "ActionType", "Account", "UserIP", "NASIP", "NASPort", "SessionID", "EventTime"];
const IP_AUTH: &[&str] = &["SPID", "ServiceID", "UserIP"];
const CROSS_AUTH: &[&str] = &["SrcDeviceNo", "AccountType", "Account", "Password"];
const USER_AUTH: &[&str] = &["SPID", "ServiceID", "AccountType", "Account", "Password", "UserIP"];
const LEGACY: &str = "/ProvinceForSPSearchUserName/services/ProvinceForSPSearchUserName";

fn peers(d: &Daemon) {
    d.ok(&["peer", "add", "--id", AAA_ID, "--kind", "aaa", "--key", AAA_KEY]);
    d.ok(&["peer", "add", "--id", P168_ID, "--kind", "p168", "--key", P168_KEY]);
    d.add_standard_peers(true);
}

fn node_with(server_keys: &str, extra: &str) -> Daemon {
    let d = Daemon::start_with_server(server_keys, extra);
    peers(&d);
    d
}

fn node() -> Daemon {
    node_with("", "")
}

fn user(d: &Daemon, account_type: &str, account: &str, extra: &[&str]) -> String {
    let mut args = vec!["user", "add", "--account-type", account_type, "--account", account, "--city-code", "0591", "--password-stdin"];
    args.extend_from_slice(extra);
    let out = d.cli_stdin(&args, &format!("{PW}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn notify_at(d: &Daemon, action: &str, account: &str, ip: &str, session: &str, event_time: &str) -> Resp {
    d.call_named(AAA, "OnlineNotify", AAA_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", AAA_ID), ("ActionType", action), ("Account", account), ("UserIP", ip), ("NASIP", "10.255.0.1"),
        ("NASPort", "3/0/1"), ("SessionID", session), ("EventTime", event_time),
    ])
}

fn notify(d: &Daemon, action: &str, account: &str, ip: &str, session: &str) -> Resp {
    notify_at(d, action, account, ip, session, &d.now_ts())
}

fn ip_auth(d: &Daemon, ip: &str) -> Resp {
    d.call_named(SPS, "IPAuth", SP_KEY, IP_AUTH, &[("SPID", SP_ID), ("UserIP", ip)])
}

fn cross_auth(d: &Daemon, account_type: &str, account: &str, pw: &str) -> Resp {
    let p = enc(P168_KEY, pw);
    d.call_named(P168, "CrossAuth", P168_KEY, CROSS_AUTH, &[("SrcDeviceNo", P168_ID), ("AccountType", account_type), ("Account", account), ("Password", &p)])
}

fn legacy(d: &Daemon, productid: Option<&str>, ip: Option<&str>) -> Http {
    let part = |n: &str, v: Option<&str>| v.map(|v| format!("<{n}>{}</{n}>", xml_escape(v))).unwrap_or_default();
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:ns="http://vnet.cn/province/v3/ProvinceForSPSearchUserName"><soapenv:Body><ns:getUserProduct>{}{}</ns:getUserProduct></soapenv:Body></soapenv:Envelope>"#,
        part("productid", productid),
        part("ip", ip)
    );
    http(&d.addr(), "POST", LEGACY, &[("Content-Type", "text/xml; charset=utf-8")], body.as_bytes())
}

fn legacy_return(h: &Http) -> String {
    assert_eq!(h.status, 200, "{}", h.text());
    let t = h.text();
    let start = t.find("<getUserProductReturn>").expect("an unqualified getUserProductReturn") + "<getUserProductReturn>".len();
    t[start..start + t[start..].find("</getUserProductReturn>").unwrap()].to_string()
}

#[test]
fn online_sessions_feed_ip_auth() {
    let d = node();
    let id = user(&d, "01", "fz0591001", &["--user-type", "2"]);
    let id2 = user(&d, "02", "059187654321", &[]);
    assert_code(&ip_auth(&d, "10.1.0.7"), -20507, "nobody online yet");
    assert_code(&notify(&d, "1", "fz0591001", "10.1.0.7", "S-1"), 0, "start");
    let r = ip_auth(&d, "10.1.0.7");
    assert_code(&r, 0, "online");
    assert_eq!(r.order, ["Result", "ErrDescription", "AccountType", "Account", "VNetUserID", "ProvinceID", "CityCode", "UserType"]);
    assert_eq!(
        (r.get("AccountType"), r.get("Account"), r.get("VNetUserID"), r.get("ProvinceID"), r.get("CityCode"), r.get("UserType")),
        ("01", "fz0591001", id.as_str(), "35", "0591", "2")
    );
    // An IPv4-mapped IPv6 spelling of the same address finds the same session.
    assert_code(&ip_auth(&d, "::ffff:10.1.0.7"), 0, "mapped address");
    // Interim keeps it; stop closes it; a repeated stop is harmless.
    assert_code(&notify(&d, "3", "fz0591001", "10.1.0.7", "S-1"), 0, "interim");
    assert_code(&ip_auth(&d, "10.1.0.7"), 0, "still online");
    assert_code(&notify(&d, "2", "fz0591001", "10.1.0.7", "S-1"), 0, "stop");
    assert_code(&ip_auth(&d, "10.1.0.7"), -20507, "stopped");
    assert_code(&notify(&d, "2", "fz0591001", "10.1.0.7", "S-1"), 0, "stop again");
    // A start on an IP closes the older session there.
    assert_code(&notify(&d, "1", "fz0591001", "10.1.0.8", "S-2"), 0, "start");
    assert_code(&notify(&d, "1", "059187654321", "10.1.0.8", "S-3"), 0, "newer start, same IP");
    assert_eq!(ip_auth(&d, "10.1.0.8").get("VNetUserID"), id2);
    assert_code(&notify(&d, "2", "fz0591001", "10.1.0.8", "S-2"), 0, "stop of the replaced session");
    assert_eq!(ip_auth(&d, "10.1.0.8").get("VNetUserID"), id2, "the replaced session's stop does not touch the new one");
    // A start that arrives late (EventTime before the current session's start) changes nothing.
    assert_code(&notify_at(&d, "1", "fz0591001", "10.1.0.8", "S-OLD", &ts(d.offset_s - 600)), 0, "late start");
    assert_eq!(ip_auth(&d, "10.1.0.8").get("VNetUserID"), id2);
    // A future-dated start (an AAA clock ahead) counts as arriving now: the next start still wins.
    assert_code(&notify_at(&d, "1", "fz0591001", "10.1.0.10", "S-F", &ts(d.offset_s + 86_400)), 0, "future-dated start");
    assert_code(&notify(&d, "1", "059187654321", "10.1.0.10", "S-G"), 0, "the next start");
    assert_eq!(ip_auth(&d, "10.1.0.10").get("VNetUserID"), id2);
    // An interim for a session the node does not know opens it.
    assert_code(&notify(&d, "3", "fz0591001", "10.1.0.9", "S-4"), 0, "interim of an unknown session");
    assert_eq!(ip_auth(&d, "10.1.0.9").get("VNetUserID"), id);
}

#[test]
fn ip_auth_codes() {
    let d = node();
    let id = user(&d, "01", "fz0591002", &[]);
    user(&d, "09", "13900000001", &[]);
    // No local user holds the account (OnlineNotify accepts any account).
    assert_code(&notify(&d, "1", "nobody-here", "10.2.0.1", "A"), 0, "any account");
    assert_code(&ip_auth(&d, "10.2.0.1"), -20504, "not local");
    // A mobile account cannot use IP authentication.
    assert_code(&notify(&d, "1", "13900000001", "10.2.0.2", "B"), 0, "mobile");
    assert_code(&ip_auth(&d, "10.2.0.2"), -20505, "type 09");
    // Status.
    assert_code(&notify(&d, "1", "fz0591002", "10.2.0.3", "C"), 0, "start");
    assert_code(&ip_auth(&d, "10.2.0.3"), 0, "normal");
    let st = d.call_named(BSS, "UserStatusChange", BSS_KEY, &["SrcDeviceNo", "VNetUserID", "Status", "Reason", "TransactionID"],
        &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("Status", "01"), ("TransactionID", "ST-1")]);
    assert_code(&st, 0, "suspend");
    assert_code(&ip_auth(&d, "10.2.0.3"), -20502, "suspended");
    // Syntax, the use rules for a ServiceID, and the envelope.
    assert_code(&ip_auth(&d, "10.2.0.300"), -21520, "not an address");
    assert_code(&ip_auth(&d, ""), -21520, "UserIP missing");
    let r = d.call_named(SPS, "IPAuth", SP_KEY, IP_AUTH, &[("SPID", SP_ID), ("ServiceID", "12x"), ("UserIP", "10.2.0.1")]);
    assert_code(&r, -21505, "ServiceID syntax");
    assert_code(&notify(&d, "1", "fz0591002", "10.2.0.4", "D"), 0, "start");
    let st = d.call_named(BSS, "UserStatusChange", BSS_KEY, &["SrcDeviceNo", "VNetUserID", "Status", "Reason", "TransactionID"],
        &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("Status", "00"), ("TransactionID", "ST-2")]);
    assert_code(&st, 0, "resume");
    let r = d.call_named(SPS, "IPAuth", SP_KEY, IP_AUTH, &[("SPID", SP_ID), ("ServiceID", "3599999900000001"), ("UserIP", "10.2.0.4")]);
    assert_code(&r, -20004, "a service that is not the SP's");
    let r = d.call_named(SPS, "IPAuth", AAA_KEY, IP_AUTH, &[("SPID", AAA_ID), ("UserIP", "10.2.0.4")]);
    assert_code(&r, -20001, "a DeviceNo is no SPID");
    let r = d.call_named(SPS, "IPAuth", BSS_KEY, IP_AUTH, &[("SPID", SP_ID), ("UserIP", "10.2.0.4")]);
    assert_code(&r, -21548, "wrong key");
}

#[test]
fn online_notify_codes_and_callers() {
    let d = node();
    let ok = |action: &str, ip: &str, sid: &str, et: &str| {
        d.call_named(AAA, "OnlineNotify", AAA_KEY, ONLINE_NOTIFY, &[
            ("SrcDeviceNo", AAA_ID), ("ActionType", action), ("Account", "fz1"), ("UserIP", ip), ("SessionID", sid), ("EventTime", et),
        ])
    };
    let now = d.now_ts();
    assert_code(&ok("1", "10.3.0.1", "S", &now), 0, "NASIP and NASPort are optional");
    assert_code(&ok("4", "10.3.0.1", "S", &now), -21547, "ActionType");
    assert_code(&ok("1", "10.3.0", "S", &now), -21520, "UserIP");
    assert_code(&ok("1", "10.3.0.1", "", &now), -21500, "SessionID missing");
    assert_code(&ok("1", "10.3.0.1", "S", "2026-13-01 00:00:00"), -21500, "EventTime");
    let r = d.call_named(AAA, "OnlineNotify", AAA_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", AAA_ID), ("ActionType", "1"), ("Account", "fz1"), ("UserIP", "10.3.0.1"), ("NASIP", "nas"), ("SessionID", "S"),
        ("EventTime", &now),
    ]);
    assert_code(&r, -21520, "NASIP");
    let r = d.call_named(AAA, "OnlineNotify", AAA_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", AAA_ID), ("ActionType", "1"), ("UserIP", "10.3.0.1"), ("SessionID", "S"), ("EventTime", &now),
    ]);
    assert_code(&r, -21552, "Account missing");
    let r = d.call_at(AAA, "OnlineNotify", AAA_KEY, &[
        ("SrcDeviceNo", AAA_ID), ("ActionType", "1"), ("Account", "fz1"), ("UserIP", "10.3.0.1"), ("NASIP", ""), ("NASPort", ""),
        ("SessionID", "S"), ("EventTime", &now),
    ], &ts(d.offset_s + 3600));
    assert_code(&r, -21514, "TimeStamp");
    let r = d.call_named(AAA, "OnlineNotify", BSS_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", AAA_ID), ("ActionType", "1"), ("Account", "fz1"), ("UserIP", "10.3.0.1"), ("SessionID", "S"), ("EventTime", &now),
    ]);
    assert_code(&r, -21548, "wrong key");
    // Callers: an SPID is unknown here; a BSS is not an AAA.
    let r = d.call_named(AAA, "OnlineNotify", SP_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", SP_ID), ("ActionType", "1"), ("Account", "fz1"), ("UserIP", "10.3.0.2"), ("SessionID", "S2"), ("EventTime", &now),
    ]);
    assert_code(&r, -20001, "SP");
    let r = d.call_named(AAA, "OnlineNotify", BSS_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", BSS_ID), ("ActionType", "1"), ("Account", "fz1"), ("UserIP", "10.3.0.2"), ("SessionID", "S2"), ("EventTime", &now),
    ]);
    assert_code(&r, -20003, "BSS");
    // The AAA may not call ProvinceFor168, the 168 platform not ProvinceForAAA.
    let p = enc(AAA_KEY, PW);
    let r = d.call_named(P168, "CrossAuth", AAA_KEY, CROSS_AUTH, &[("SrcDeviceNo", AAA_ID), ("AccountType", "01"), ("Account", "fz1"), ("Password", &p)]);
    assert_code(&r, -20003, "AAA on 168");
    let r = d.call_named(AAA, "OnlineNotify", P168_KEY, ONLINE_NOTIFY, &[
        ("SrcDeviceNo", P168_ID), ("ActionType", "1"), ("Account", "fz1"), ("UserIP", "10.3.0.2"), ("SessionID", "S2"), ("EventTime", &now),
    ]);
    assert_code(&r, -20003, "168 on AAA");
}

#[test]
fn stale_sessions_close_and_acknowledged_sessions_survive_kill9() {
    let mut d = node_with("", "[access]\nsession_stale_h = 1\n");
    let id = user(&d, "01", "fz0591003", &[]);
    assert_code(&notify(&d, "1", "fz0591003", "10.4.0.1", "K-1"), 0, "start");
    assert_code(&notify(&d, "1", "fz0591003", "10.4.0.2", "K-2"), 0, "start");
    d.kill9();
    d.restart();
    assert_eq!(ip_auth(&d, "10.4.0.1").get("VNetUserID"), id, "acknowledged start survives kill -9");
    // 59 minutes later one session gets an interim; at 61 minutes the other is stale.
    d.restart_with_offset(59 * 60);
    assert_code(&notify(&d, "3", "fz0591003", "10.4.0.2", "K-2"), 0, "interim");
    d.restart_with_offset(61 * 60);
    assert_code(&ip_auth(&d, "10.4.0.1"), -20507, "no event for session_stale_h");
    assert_code(&ip_auth(&d, "10.4.0.2"), 0, "refreshed by the interim");
    // Housekeeping (the job thread runs it at start-up) deletes the stale row.
    assert!(wait_until(Duration::from_secs(10), || sqlite_count(&d, "SELECT count(*) FROM online_session") == 1), "stale row not deleted");
}

fn sqlite_count(d: &Daemon, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(&d.db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn cross_auth_is_local_and_shares_the_lockout() {
    let d = node();
    let id = user(&d, "01", "fz0591004", &[]);
    let m = d.call_named(BSS, "UserModify", BSS_KEY,
        &["SrcDeviceNo", "VNetUserID", "CityCode", "UserType", "CreditLimit", "Balance", "Alias", "BindingAccessNo", "TransactionID"],
        &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("BindingAccessNo", "059112345678"), ("TransactionID", "M-1")]);
    assert_code(&m, 0, "UserModify");
    let r = cross_auth(&d, "01", "fz0591004", PW);
    assert_code(&r, 0, "right password");
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID", "CityCode", "BindingAccessNo", "Status"]);
    assert_eq!((r.get("VNetUserID"), r.get("CityCode"), r.get("BindingAccessNo"), r.get("Status")), (id.as_str(), "0591", "059112345678", "00"));
    // Local users only: with a centre configured, an unknown account is still -20504 here.
    assert_code(&cross_auth(&d, "01", "not-local-account", PW), -20504, "not local");
    assert_code(&cross_auth(&d, "02", "fz0591004", PW), -20504, "held under another type");
    assert_code(&cross_auth(&d, "01", "fz0591004", ""), -21555, "empty password");
    let raw = |t: &str, a: &str, p: &str| d.call_named(P168, "CrossAuth", P168_KEY, CROSS_AUTH, &[("SrcDeviceNo", P168_ID), ("AccountType", t), ("Account", a), ("Password", p)]);
    assert_code(&raw("05", "fz0591004", "x"), -21551, "AccountType");
    assert_code(&raw("01", &"a".repeat(65), &enc(P168_KEY, PW)), -21552, "Account longer than s(64)");
    assert_code(&raw("01", "fz0591004", ""), -21510, "Password missing");
    assert_code(&raw("01", "fz0591004", "not base64!"), -21557, "Password not Base64");
    let stale = d.call_at(P168, "CrossAuth", P168_KEY, &[("SrcDeviceNo", P168_ID), ("AccountType", "01"), ("Account", "fz0591004"), ("Password", &enc(P168_KEY, PW))], &ts(d.offset_s - 3600));
    assert_code(&stale, -21514, "TimeStamp");
    assert_code(&d.call_named(P168, "CrossAuth", SP_KEY, CROSS_AUTH, &[("SrcDeviceNo", P168_ID), ("AccountType", "01"), ("Account", "fz0591004"), ("Password", &enc(SP_KEY, PW))]), -21548, "wrong key");
    // Status: a suspended user, a cancelled holder.
    let other = user(&d, "01", "fz0591014", &[]);
    let status = |id: &str, st: &str, tx: &str| {
        d.call_named(BSS, "UserStatusChange", BSS_KEY, &["SrcDeviceNo", "VNetUserID", "Status", "Reason", "TransactionID"],
            &[("SrcDeviceNo", BSS_ID), ("VNetUserID", id), ("Status", st), ("TransactionID", tx)])
    };
    assert_code(&status(&other, "01", "X-1"), 0, "suspend");
    assert_code(&cross_auth(&d, "01", "fz0591014", PW), -20502, "suspended");
    assert_code(&status(&other, "03", "X-2"), 0, "cancel");
    assert_code(&cross_auth(&d, "01", "fz0591014", PW), -20502, "cancelled holder");
    // One failure counter across channels: four wrong CrossAuths and one wrong UserAuth lock.
    for i in 1..=4 {
        assert_code(&cross_auth(&d, "01", "fz0591004", "wrong-pass"), -20501, &format!("failure {i}"));
    }
    let p = enc(SP_KEY, "wrong-pass");
    let r = d.call_named(SPS, "UserAuth", SP_KEY, USER_AUTH, &[("SPID", SP_ID), ("AccountType", "01"), ("Account", "fz0591004"), ("Password", &p)]);
    assert_code(&r, -20501, "fifth failure, by UserAuth");
    let r = cross_auth(&d, "01", "fz0591004", PW);
    assert_code(&r, -20502, "locked");
    assert_eq!(r.get("ErrDescription"), "locked");
}

#[test]
fn legacy_get_user_product() {
    let d = node_with(r#"legacy_allow = ["192.0.2.0/24", "127.0.0.0/8"]"#, "");
    user(&d, "01", "fz0591005", &[]);
    user(&d, "09", "13900000002", &[]);
    assert_code(&notify(&d, "1", "fz0591005", "10.5.0.1", "L-1"), 0, "start");
    assert_code(&notify(&d, "1", "13900000002", "10.5.0.2", "L-2"), 0, "start");
    assert_eq!(legacy_return(&legacy(&d, Some("P1"), Some("10.5.0.1"))), "0|0591|fz0591005");
    assert_eq!(legacy_return(&legacy(&d, Some("P1"), Some("10.5.0.9"))), "-999||", "nobody online");
    assert_eq!(legacy_return(&legacy(&d, Some("P1"), Some("10.5.0.2"))), "-999||", "not a broadband user");
    assert_eq!(legacy_return(&legacy(&d, Some("P1"), Some("10.5.0"))), "-998||", "bad ip");
    assert_eq!(legacy_return(&legacy(&d, Some("P1"), None)), "-998||", "ip missing");
    assert_eq!(legacy_return(&legacy(&d, None, Some("10.5.0.1"))), "-998||", "productid missing");
    // rpc style: the response wrapper is qualified, its part is not.
    let t = legacy(&d, Some("P1"), Some("10.5.0.1")).text();
    assert!(t.contains(r#"getUserProductResponse xmlns:ns1="http://vnet.cn/province/v3/ProvinceForSPSearchUserName""#), "{t}");
    let w = http(&d.addr(), "GET", &format!("{LEGACY}?wsdl"), &[], b"");
    assert_eq!(w.status, 200);
    assert!(w.text().contains(r#"style="rpc""#) && w.text().contains(r#"type="xsd:string""#));
    // Not a SOAP envelope, an unknown operation: Client faults.
    let h = http(&d.addr(), "POST", LEGACY, &[("Content-Type", "text/xml")], b"not xml");
    assert_eq!(h.status, 500);
    assert!(h.text().contains("Client"));
}

#[test]
fn legacy_is_403_when_disabled_or_outside_the_allow_list() {
    for keys in ["", r#"legacy_allow = ["192.0.2.0/24"]"#] {
        let d = Daemon::start_with_server(keys, "");
        let h = legacy(&d, Some("P1"), Some("10.5.0.1"));
        assert_eq!(h.status, 403, "POST with {keys:?}");
        let w = http(&d.addr(), "GET", &format!("{LEGACY}?wsdl"), &[], b"");
        assert_eq!(w.status, 403, "?wsdl with {keys:?}");
    }
}
