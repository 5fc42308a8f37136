//! PassPort operations against the running binary (spec 4.1, 4.3, 4.4, 11): every success path and
//! every Result code each operation can answer, idempotency, lockout, outbox rows.

use crate::fields::*;
use crate::harness::*;
use std::time::Duration;

const SP: &str = "ProvinceForSP";
const BSS: &str = "ProvinceForBSS";
const VNET: &str = "ProvinceForVNet";

// Request fields in the spec's order (= Authenticator order), without TimeStamp/Authenticator.
const MPHONE_BSS: &[&str] = &["SrcDeviceNo", "PhoneNum", "Password", "CityCode"];
const MPHONE_SP: &[&str] = &["SPID", "PhoneNum", "Password", "CityCode"];
const USER_INFO_QUERY: &[&str] = &["SrcDeviceNo", "AccountType", "Account"];
const STATUS_NOTIFY: &[&str] = &["SrcDeviceNo", "VNetUserID", "Status", "StatusTime"];

const PROFILE_ORDER: &[&str] = &[
    "Result", "ErrDescription", "VNetUserID", "AccountType", "Account", "Alias", "ProvinceID", "CityCode", "UserType", "Status",
    "NumFlag", "ContractID",
];
const AUTH_ORDER: &[&str] = &["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"];

const PW: &str = "s3cret-Pass";

/// Fill in the caller id (names[0]) unless given.
fn with_caller<'a>(names: &[&str], id: &'a str, given: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let caller: &'a str = if names[0] == "SPID" { "SPID" } else { "SrcDeviceNo" };
    let mut v = given.to_vec();
    if !v.iter().any(|(k, _)| *k == caller) {
        v.insert(0, (caller, id));
    }
    v
}

fn bss(d: &Daemon, op: &str, names: &[&str], given: &[(&str, &str)]) -> Resp {
    d.call_named(BSS, op, BSS_KEY, names, &with_caller(names, BSS_ID, given))
}

fn sp(d: &Daemon, op: &str, names: &[&str], given: &[(&str, &str)]) -> Resp {
    d.call_named(SP, op, SP_KEY, names, &with_caller(names, SP_ID, given))
}

fn centre(d: &Daemon, op: &str, names: &[&str], given: &[(&str, &str)]) -> Resp {
    d.call_named(VNET, op, CENTRE_KEY, names, &with_caller(names, CENTRE_ID, given))
}

/// UserOpen with defaults (CityCode 0591, UserType 1) overridden by `given`; `password` "" = absent.
fn user_open(d: &Daemon, at: &str, account: &str, password: &str, txid: &str, given: &[(&str, &str)]) -> Resp {
    let pw = if password.is_empty() { String::new() } else { enc(BSS_KEY, password) };
    let mut f: Vec<(&str, &str)> =
        vec![("AccountType", at), ("Account", account), ("Password", &pw), ("CityCode", "0591"), ("UserType", "1"), ("TransactionID", txid)];
    for &(k, v) in given {
        f.retain(|(n, _)| *n != k);
        f.push((k, v));
    }
    bss(d, "UserOpen", USER_OPEN, &f)
}

/// Open a user that must succeed; returns its VNetUserID.
fn open(d: &Daemon, at: &str, account: &str, password: &str, txid: &str) -> String {
    let r = user_open(d, at, account, password, txid, &[]);
    assert_eq!(r.result(), 0, "UserOpen {account}: {:?}", r.fields);
    r.get("VNetUserID").to_string()
}

fn status_change(d: &Daemon, id: &str, status: &str, txid: &str) -> Resp {
    bss(d, "UserStatusChange", STATUS_CHANGE, &[("VNetUserID", id), ("Status", status), ("TransactionID", txid)])
}

fn set_status(d: &Daemon, id: &str, status: &str, txid: &str) {
    let r = status_change(d, id, status, txid);
    assert_eq!(r.result(), 0, "UserStatusChange {status}: {:?}", r.fields);
}

fn password_reset(d: &Daemon, id: &str, new_password: &str, txid: &str) -> Resp {
    let pw = enc(BSS_KEY, new_password);
    bss(d, "PasswordReset", PASSWORD_RESET, &[("VNetUserID", id), ("NewPassword", &pw), ("TransactionID", txid)])
}

fn auth(d: &Daemon, at: &str, account: &str, password: &str) -> Resp {
    let pw = enc(SP_KEY, password);
    sp(d, "UserAuth", USER_AUTH, &[("AccountType", at), ("Account", account), ("Password", &pw)])
}

fn phone_auth(d: &Daemon, phone: &str, password: &str) -> Resp {
    let pw = enc(SP_KEY, password);
    sp(d, "PhoneNumAuth", PHONE_AUTH, &[("PhoneNum", phone), ("Password", &pw)])
}

fn info(d: &Daemon, id: &str) -> Resp {
    sp(d, "GetUserinfo", GET_USERINFO_SP, &[("VNetUserID", id)])
}

fn notify(d: &Daemon, id: &str, status: &str, status_time: &str) -> Resp {
    centre(d, "PUserStatusNotify", STATUS_NOTIFY, &[("VNetUserID", id), ("Status", status), ("StatusTime", status_time)])
}

/// `vnetd user show WHO` rows.
fn show(d: &Daemon, who: &str) -> Vec<std::collections::HashMap<String, String>> {
    d.listing(&["user", "show", who])
}

// ---------------------------------------------------------------- UserOpen

#[test]
fn user_open_assigns_sequential_ids_never_reused() {
    let d = Daemon::with_peers(false);
    let r = user_open(&d, "01", "fz10000001", PW, "T1", &[]);
    assert_code(&r, 0, "first UserOpen");
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID"]);
    assert_eq!(r.get("VNetUserID"), "350000000001");
    assert_eq!(open(&d, "01", "fz10000002", PW, "T2"), "350000000002");
    // Cancel the first user: its id is never handed out again; its account is free again.
    set_status(&d, "350000000001", "03", "S1");
    assert_eq!(open(&d, "03", "059187654321", PW, "T3"), "350000000003");
    assert_eq!(open(&d, "01", "fz10000001", "other-Pass1", "T4"), "350000000004");
    // The account now belongs to the new user; the cancelled one is kept for history.
    let a = auth(&d, "01", "fz10000001", "other-Pass1");
    assert_code(&a, 0, "the new holder authenticates");
    assert_eq!(a.get("VNetUserID"), "350000000004");
    assert_eq!(show(&d, "350000000001")[0]["status"], "03");
    // CreditLimit defaults to default_credit_limit_fen, Balance to 0.
    let s = &show(&d, "350000000002")[0];
    assert_eq!((s["credit_limit"].as_str(), s["balance"].as_str(), s["user_type"].as_str()), ("50000", "0", "1"));
    assert_eq!(show(&d, "350000000004")[0]["status"], "00");
    for id in ["350000000001", "350000000002", "350000000003", "350000000004"] {
        assert!(id.len() == 12 && id.starts_with("35"));
    }
}

#[test]
fn user_open_refuses_an_account_held_by_a_live_user() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz20000001", PW, "T1");
    let r = user_open(&d, "01", "fz20000001", "another-Pw1", "T2", &[]);
    assert_code(&r, -20516, "same account, new TransactionID");
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID"]);
    assert_eq!(r.get("VNetUserID"), "");
    // A suspended or frozen holder still holds it.
    set_status(&d, &id, "01", "S1");
    assert_code(&user_open(&d, "01", "fz20000001", PW, "T3", &[]), -20516, "suspended holder");
    set_status(&d, &id, "02", "S2");
    assert_code(&user_open(&d, "01", "fz20000001", PW, "T4", &[]), -20516, "frozen holder");
    // The same string under another account type is another account.
    assert_code(&user_open(&d, "02", "fz20000001", PW, "T5", &[]), 0, "other account type");
    // Only the first user holds the 01 account.
    let rows = show(&d, "fz20000001");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r["account_type"] == "01").count(), 1);
}

#[test]
fn user_open_refuses_weak_passwords() {
    let d = Daemon::with_peers(false);
    for (i, weak) in ["abc12", "aaaaaaaa", "fz30000001", "777777", "x"].iter().enumerate() {
        let r = user_open(&d, "01", "fz30000001", weak, &format!("W{i}"), &[]);
        assert_code(&r, -20510, weak);
        assert_eq!(r.get("VNetUserID"), "");
    }
    assert!(!d.cli(&["user", "show", "fz30000001"]).status.success(), "no user was created");
    // Six characters, not all the same, not the account: fine. No password at all is fine too.
    assert_eq!(open(&d, "01", "fz30000001", "abc123", "OK1"), "350000000001");
    assert_eq!(open(&d, "01", "fz30000002", "", "OK2"), "350000000002");
    assert_eq!(show(&d, "fz30000002")[0]["password"], "none");
}

#[test]
fn user_open_parameter_codes() {
    let d = Daemon::with_peers(false);
    let long: &str = &"x".repeat(65);
    let long_tx: &str = &"T".repeat(33);
    let cases: Vec<(Vec<(&str, &str)>, i32)> = vec![
        (vec![("AccountType", "05")], -21551),
        (vec![("AccountType", "")], -21551),
        (vec![("AccountType", "1")], -21551),
        (vec![("Account", "")], -21552),
        (vec![("Account", long)], -21552),
        (vec![("AccountType", "09"), ("Account", "fz40000001")], -21552),
        (vec![("AccountType", "09"), ("Account", "23800000001")], -21552),
        (vec![("AccountType", "09"), ("Account", "1380000000")], -21552),
        (vec![("AccountType", "09"), ("Account", "1380000000a")], -21552),
        (vec![("CityCode", "")], -21546),
        (vec![("CityCode", "05a1")], -21546),
        (vec![("CityCode", "1234567")], -21546),
        (vec![("UserType", "3")], -21500),
        (vec![("UserType", "")], -21500),
        (vec![("CreditLimit", "-1")], -21500),
        (vec![("CreditLimit", "abc")], -21500),
        (vec![("CreditLimit", "100000001")], -21500),
        (vec![("Balance", "1.5")], -21500),
        (vec![("Balance", "-5")], -21500),
        (vec![("Alias", long)], -21500),
        (vec![("BindingAccessNo", long)], -21500),
        (vec![("TransactionID", "")], -21513),
        (vec![("TransactionID", "bad id!")], -21513),
        (vec![("TransactionID", long_tx)], -21513),
        (vec![("Password", "!!!not-base64")], -21557),
        // First failure in field order wins.
        (vec![("AccountType", "07"), ("CityCode", "x")], -21551),
        (vec![("CityCode", "x"), ("UserType", "9")], -21546),
        // Syntax (including AccountType 09's mobile rule) comes before the enc fields.
        (vec![("AccountType", "09"), ("Account", "fz40000001"), ("Password", "!!!not-base64")], -21552),
        (vec![("CityCode", "x"), ("Password", "!!!not-base64")], -21546),
    ];
    for (given, code) in &cases {
        let r = user_open(&d, "01", "fz40000001", PW, "P1", given);
        assert_code(&r, *code, &format!("{given:?}"));
    }
    let empty = enc(BSS_KEY, "");
    assert_code(&user_open(&d, "01", "fz40000001", PW, "P1", &[("Password", &empty)]), -21555, "empty password");
    assert!(!d.cli(&["user", "show", "fz40000001"]).status.success(), "no user was created");
    // Parameter errors are not stored: the corrected request with the same TransactionID runs.
    assert_eq!(open(&d, "01", "fz40000001", PW, "P1"), "350000000001");
    // A 09 account that is a mobile number is fine; CreditLimit and Balance at the bounds too.
    let r = user_open(&d, "09", "13800000001", PW, "P2", &[("CreditLimit", "100000000"), ("Balance", "0"), ("UserType", "2")]);
    assert_code(&r, 0, "09 mobile account");
}

#[test]
fn user_open_is_idempotent() {
    let d = Daemon::with_peers(true);
    let first = user_open(&d, "01", "fz50000001", PW, "TX-A", &[("Alias", "alias1")]);
    assert_code(&first, 0, "first");
    // Identical fields (a later TimeStamp, so a different Authenticator): the stored response.
    std::thread::sleep(Duration::from_millis(1100));
    let again = user_open(&d, "01", "fz50000001", PW, "TX-A", &[("Alias", "alias1")]);
    assert_eq!(again.fields, first.fields);
    assert_eq!(again.order, first.order);
    assert_eq!(show(&d, "fz50000001").len(), 1, "one user only");
    assert_eq!(d.outbox_for_user("PUserInfoNotify", first.get("VNetUserID")).len(), 1, "one notification only");
    // Same TransactionID, different fields.
    assert_code(&user_open(&d, "01", "fz50000001", PW, "TX-A", &[("Alias", "alias2")]), -21513, "other Alias");
    assert_code(&user_open(&d, "01", "fz50000099", PW, "TX-A", &[("Alias", "alias1")]), -21513, "other Account");
    assert!(!d.cli(&["user", "show", "fz50000099"]).status.success());
    // A business refusal is stored too: -20516 stays the answer to its TransactionID even after the
    // account becomes free; a new TransactionID then opens.
    let refused = user_open(&d, "01", "fz50000001", PW, "TX-B", &[]);
    assert_code(&refused, -20516, "taken");
    set_status(&d, first.get("VNetUserID"), "03", "S1");
    let repeat = user_open(&d, "01", "fz50000001", PW, "TX-B", &[]);
    assert_eq!(repeat.fields, refused.fields, "stored refusal");
    assert_eq!(open(&d, "01", "fz50000001", PW, "TX-C"), "350000000002");
    // The same TransactionID from another operation is another key.
    let r = bss(&d, "UserModify", USER_MODIFY, &[("VNetUserID", "350000000002"), ("Alias", "z"), ("TransactionID", "TX-A")]);
    assert_code(&r, 0, "UserModify with TX-A");
}

#[test]
fn user_open_queues_p_user_info_notify() {
    let d = Daemon::with_peers(true);
    let r = user_open(&d, "03", "059188880001", PW, "T1", &[("CityCode", "0592"), ("UserType", "2"), ("Alias", "老王"), ("BindingAccessNo", "0592-1")]);
    assert_code(&r, 0, "open");
    let id = r.get("VNetUserID");
    let rows = d.outbox_for_user("PUserInfoNotify", id);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let n = &rows[0];
    assert_eq!(n.destination, "centre");
    assert_eq!(n.state, "pending");
    assert_eq!(n.key_version, None);
    assert_eq!(
        n.names(),
        ["ActionType", "VNetUserID", "AccountType", "Account", "Alias", "CityCode", "UserType", "Status", "NumFlag", "BindingAccessNo", "ChangeTime"]
    );
    assert_eq!(n.field("ActionType"), "1");
    assert_eq!(n.field("VNetUserID"), id);
    assert_eq!(n.field("AccountType"), "03");
    assert_eq!(n.field("Account"), "059188880001");
    assert_eq!(n.field("Alias"), "老王");
    assert_eq!(n.field("CityCode"), "0592");
    assert_eq!(n.field("UserType"), "2");
    assert_eq!(n.field("Status"), "00");
    assert_eq!(n.field("NumFlag"), "1");
    assert_eq!(n.field("BindingAccessNo"), "0592-1");
    assert_eq!(n.field("ChangeTime").len(), 19);
    // Refusals queue nothing.
    let before = d.outbox().len();
    assert_code(&user_open(&d, "03", "059188880001", PW, "T2", &[]), -20516, "taken");
    assert_code(&user_open(&d, "03", "059188880002", "short", "T3", &[]), -20510, "weak");
    assert_eq!(d.outbox().len(), before);
    // No plaintext password ever reaches the outbox.
    assert!(d.outbox().iter().all(|r| !r.payload.iter().any(|(_, v)| v.contains(PW))));
}

// ---------------------------------------------------------------- UserModify

#[test]
fn user_modify_changes_fields_and_queues_notify() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz60000001", PW, "T1");
    let r = bss(&d, "UserModify", USER_MODIFY, &[
        ("VNetUserID", &id), ("CityCode", "0592"), ("UserType", "2"), ("CreditLimit", "1000"), ("Balance", "500"),
        ("Alias", "张三"), ("BindingAccessNo", "059112345678"), ("TransactionID", "M1"),
    ]);
    assert_code(&r, 0, "modify");
    assert_eq!(r.order, ["Result", "ErrDescription"]);
    let g = info(&d, &id);
    assert_eq!((g.get("CityCode"), g.get("UserType"), g.get("Alias")), ("0592", "2", "张三"));
    let s = &show(&d, &id)[0];
    assert_eq!((s["credit_limit"].as_str(), s["balance"].as_str(), s["binding_access_no"].as_str()), ("1000", "500", "059112345678"));
    let rows = d.outbox_for_user("PUserInfoNotify", &id);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].field("ActionType"), "2");
    assert_eq!((rows[1].field("CityCode"), rows[1].field("UserType"), rows[1].field("Alias")), ("0592", "2", "张三"));
    assert_eq!(rows[1].field("BindingAccessNo"), "059112345678");
    // Empty fields leave values unchanged; a partial change changes only what is given.
    assert_code(&bss(&d, "UserModify", USER_MODIFY, &[("VNetUserID", &id), ("TransactionID", "M2")]), 0, "nothing given");
    assert_code(&bss(&d, "UserModify", USER_MODIFY, &[("VNetUserID", &id), ("CityCode", "0592"), ("Alias", "张三"), ("TransactionID", "M3")]), 0, "same values");
    assert_eq!(d.outbox_for_user("PUserInfoNotify", &id).len(), 2, "nothing changed, nothing queued");
    assert_code(&bss(&d, "UserModify", USER_MODIFY, &[("VNetUserID", &id), ("Balance", "0"), ("TransactionID", "M4")]), 0, "balance");
    let s = &show(&d, &id)[0];
    assert_eq!((s["city_code"].as_str(), s["credit_limit"].as_str(), s["balance"].as_str(), s["alias"].as_str()), ("0592", "1000", "0", "张三"));
    assert_eq!(d.outbox_for_user("PUserInfoNotify", &id).len(), 3);
    // Idempotent: an identical repeat changes nothing more; different fields -21513.
    assert_code(&bss(&d, "UserModify", USER_MODIFY, &[("VNetUserID", &id), ("Balance", "0"), ("TransactionID", "M4")]), 0, "repeat");
    assert_code(&bss(&d, "UserModify", USER_MODIFY, &[("VNetUserID", &id), ("Balance", "7"), ("TransactionID", "M4")]), -21513, "reuse");
    assert_eq!(show(&d, &id)[0]["balance"], "0");
    assert_eq!(d.outbox_for_user("PUserInfoNotify", &id).len(), 3);
}

#[test]
fn user_modify_refusals() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz61000001", PW, "T1");
    let m = |given: &[(&str, &str)]| bss(&d, "UserModify", USER_MODIFY, given);
    assert_code(&m(&[("VNetUserID", "359999999999"), ("Alias", "a"), ("TransactionID", "M1")]), -20504, "unknown user");
    assert_code(&m(&[("VNetUserID", "35000000001"), ("TransactionID", "M2")]), -21512, "11 digits");
    assert_code(&m(&[("VNetUserID", ""), ("TransactionID", "M2")]), -21512, "missing");
    assert_code(&m(&[("VNetUserID", &id), ("CityCode", "abc"), ("TransactionID", "M2")]), -21546, "CityCode");
    assert_code(&m(&[("VNetUserID", &id), ("UserType", "3"), ("TransactionID", "M2")]), -21500, "UserType");
    assert_code(&m(&[("VNetUserID", &id), ("CreditLimit", "x"), ("TransactionID", "M2")]), -21500, "CreditLimit");
    assert_code(&m(&[("VNetUserID", &id), ("Balance", "100000001"), ("TransactionID", "M2")]), -21500, "Balance");
    assert_code(&m(&[("VNetUserID", &id), ("Alias", "a")]), -21513, "missing TransactionID");
    set_status(&d, &id, "03", "S1");
    assert_code(&m(&[("VNetUserID", &id), ("Alias", "a"), ("TransactionID", "M3")]), -20502, "cancelled user");
    assert_eq!(show(&d, &id)[0]["alias"], "");
}

// ---------------------------------------------------------------- UserStatusChange

#[test]
fn user_status_change_cycle() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz70000001", PW, "T1");
    let r = status_change(&d, &id, "01", "S1");
    assert_code(&r, 0, "suspend");
    assert_eq!(r.order, ["Result", "ErrDescription"]);
    assert_eq!(info(&d, &id).get("Status"), "01");
    let a = auth(&d, "01", "fz70000001", PW);
    assert_code(&a, -20502, "suspended user");
    assert_ne!(a.get("ErrDescription"), "locked");
    set_status(&d, &id, "00", "S2");
    assert_code(&auth(&d, "01", "fz70000001", PW), 0, "resumed");
    set_status(&d, &id, "02", "S3");
    assert_eq!(info(&d, &id).get("Status"), "02");
    assert_code(&auth(&d, "01", "fz70000001", PW), -20502, "frozen user");
    set_status(&d, &id, "00", "S4");
    assert_code(&auth(&d, "01", "fz70000001", PW), 0, "resumed again");
    // No change: Result 0, nothing queued.
    set_status(&d, &id, "00", "S5");
    let rows = d.outbox_for_user("PUserInfoNotify", &id);
    let statuses: Vec<(&str, &str)> = rows.iter().map(|r| (r.field("ActionType"), r.field("Status"))).collect();
    assert_eq!(statuses, [("1", "00"), ("3", "01"), ("3", "00"), ("3", "02"), ("3", "00")]);
    // Idempotent repeat: no second effect.
    set_status(&d, &id, "00", "S4");
    assert_eq!(d.outbox_for_user("PUserInfoNotify", &id).len(), 5);
    assert_code(&status_change(&d, &id, "01", "S4"), -21513, "reused TransactionID");
    // Cancel is terminal.
    set_status(&d, &id, "03", "S6");
    assert_eq!(info(&d, &id).get("Status"), "03");
    assert_code(&auth(&d, "01", "fz70000001", PW), -20502, "cancelled");
    for (i, s) in ["00", "01", "02", "03"].iter().enumerate() {
        assert_code(&status_change(&d, &id, s, &format!("C{i}")), -20502, &format!("cancelled user to {s}"));
    }
    assert_eq!(info(&d, &id).get("Status"), "03");
    assert_eq!(d.outbox_for_user("PUserInfoNotify", &id).last().unwrap().field("Status"), "03");
}

#[test]
fn user_status_change_refusals() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz71000001", PW, "T1");
    for bad in ["04", "", "0", "1", "001"] {
        assert_code(&status_change(&d, &id, bad, "S1"), -21553, bad);
    }
    assert_code(&status_change(&d, "359999999999", "01", "S2"), -20504, "unknown user");
    assert_code(&status_change(&d, "3500000001", "01", "S3"), -21512, "malformed id");
    let long = "r".repeat(257);
    let r = bss(&d, "UserStatusChange", STATUS_CHANGE, &[("VNetUserID", &id), ("Status", "01"), ("Reason", &long), ("TransactionID", "S4")]);
    assert_code(&r, -21523, "Reason too long");
    let r = bss(&d, "UserStatusChange", STATUS_CHANGE, &[("VNetUserID", &id), ("Status", "01"), ("Reason", "欠费")]);
    assert_code(&r, -21513, "missing TransactionID");
    assert_eq!(info(&d, &id).get("Status"), "00");
}

// ---------------------------------------------------------------- PasswordReset

#[test]
fn password_reset_changes_password_and_queues_for_the_centre() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz80000001", PW, "T1");
    let r = password_reset(&d, &id, "new-Pass-2", "R1");
    assert_code(&r, 0, "reset");
    assert_eq!(r.order, ["Result", "ErrDescription"]);
    assert_code(&auth(&d, "01", "fz80000001", "new-Pass-2"), 0, "new password");
    assert_code(&auth(&d, "01", "fz80000001", PW), -20501, "old password");
    let rows = d.outbox_for_user("PasswordReset", &id);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let m = &rows[0];
    assert_eq!(m.destination, "centre");
    assert_eq!(m.key_version, Some(1));
    assert_eq!(m.names(), ["VNetUserID", "NewPassword", "TransactionID"]);
    assert_eq!(m.field("VNetUserID"), id);
    assert_eq!(m.field("TransactionID"), "R1");
    assert_eq!(key(CENTRE_KEY).decrypt_b64_str(m.field("NewPassword")).unwrap(), "new-Pass-2");
    assert!(!m.payload.iter().any(|(_, v)| v.contains("new-Pass-2")), "never in plaintext");
    // Idempotent: the same request again changes nothing and queues nothing.
    assert_code(&password_reset(&d, &id, "new-Pass-2", "R1"), 0, "repeat");
    assert_eq!(d.outbox_for_user("PasswordReset", &id).len(), 1);
    assert_code(&password_reset(&d, &id, "new-Pass-3", "R1"), -21513, "reuse");
    assert_code(&auth(&d, "01", "fz80000001", "new-Pass-3"), -20501, "the -21513 changed nothing");
}

#[test]
fn password_reset_without_centre_queues_nothing() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz81000001", PW, "T1");
    assert_code(&password_reset(&d, &id, "new-Pass-2", "R1"), 0, "reset");
    assert_code(&auth(&d, "01", "fz81000001", "new-Pass-2"), 0, "new password");
    assert!(d.outbox().iter().all(|r| r.operation != "PasswordReset"), "{:?}", d.outbox());
}

#[test]
fn password_reset_clears_lockout() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz82000001", PW, "T1");
    for _ in 0..5 {
        assert_code(&auth(&d, "01", "fz82000001", "wrong-pass"), -20501, "failure");
    }
    assert_eq!(auth(&d, "01", "fz82000001", PW).get("ErrDescription"), "locked");
    assert_eq!(show(&d, &id)[0]["locked"], "yes");
    assert_code(&password_reset(&d, &id, "new-Pass-2", "R1"), 0, "reset");
    assert_eq!(show(&d, &id)[0]["locked"], "no");
    assert_code(&auth(&d, "01", "fz82000001", "new-Pass-2"), 0, "unlocked by the reset");
}

#[test]
fn password_reset_refusals() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz83000001", PW, "T1");
    for (i, weak) in ["abc12", "bbbbbbbbb", "fz83000001"].iter().enumerate() {
        assert_code(&password_reset(&d, &id, weak, &format!("W{i}")), -20510, weak);
    }
    assert_code(&password_reset(&d, "359999999999", "new-Pass-2", "R1"), -20504, "unknown user");
    assert_code(&password_reset(&d, "abc", "new-Pass-2", "R2"), -21512, "malformed id");
    let r = bss(&d, "PasswordReset", PASSWORD_RESET, &[("VNetUserID", &id), ("TransactionID", "R3")]);
    assert_code(&r, -21510, "missing NewPassword");
    let r = bss(&d, "PasswordReset", PASSWORD_RESET, &[("VNetUserID", &id), ("NewPassword", "@@@"), ("TransactionID", "R3")]);
    assert_code(&r, -21557, "undecryptable");
    let empty = enc(BSS_KEY, "");
    let r = bss(&d, "PasswordReset", PASSWORD_RESET, &[("VNetUserID", &id), ("NewPassword", &empty), ("TransactionID", "R3")]);
    assert_code(&r, -21555, "empty");
    let pw = enc(BSS_KEY, "new-Pass-2");
    let r = bss(&d, "PasswordReset", PASSWORD_RESET, &[("VNetUserID", &id), ("NewPassword", &pw)]);
    assert_code(&r, -21513, "missing TransactionID");
    assert_code(&auth(&d, "01", "fz83000001", PW), 0, "password unchanged");
    set_status(&d, &id, "03", "S1");
    assert_code(&password_reset(&d, &id, "new-Pass-2", "R4"), -20502, "cancelled user");
    assert!(d.outbox().iter().all(|r| r.operation != "PasswordReset"), "no refusal queues a PasswordReset");
}

// ---------------------------------------------------------------- MPhoneRegistry

#[test]
fn mphone_registry_sp_creates_a_mobile_user_once() {
    let d = Daemon::with_peers(true);
    let pw = enc(SP_KEY, PW);
    let r = sp(&d, "MPhoneRegistry", MPHONE_SP, &[("PhoneNum", "13900000001"), ("Password", &pw)]);
    assert_code(&r, 0, "register");
    assert_eq!(r.order, ["Result", "ErrDescription", "UserID"]);
    let id = r.get("UserID").to_string();
    assert_eq!(id, "350000000001");
    let g = info(&d, &id);
    assert_eq!(
        (g.get("AccountType"), g.get("Account"), g.get("CityCode"), g.get("UserType"), g.get("Status"), g.get("NumFlag")),
        ("09", "13900000001", "0591", "1", "00", "2")
    );
    assert_eq!(show(&d, &id)[0]["credit_limit"], "50000");
    assert_code(&phone_auth(&d, "13900000001", PW), 0, "PhoneNumAuth");
    let rows = d.outbox_for_user("PUserInfoNotify", &id);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].field("ActionType"), rows[0].field("AccountType"), rows[0].field("NumFlag")), ("1", "09", "2"));
    // Already registered: 0, the same UserID, nothing changed (city, password), nothing queued.
    let pw2 = enc(SP_KEY, "other-Pass-9");
    let r = sp(&d, "MPhoneRegistry", MPHONE_SP, &[("PhoneNum", "13900000001"), ("Password", &pw2), ("CityCode", "0592")]);
    assert_code(&r, 0, "repeat");
    assert_eq!(r.get("UserID"), id);
    assert_eq!(info(&d, &id).get("CityCode"), "0591");
    assert_code(&phone_auth(&d, "13900000001", PW), 0, "old password still works");
    assert_code(&phone_auth(&d, "13900000001", "other-Pass-9"), -20501, "the repeat set no password");
    assert_eq!(d.outbox_for_user("PUserInfoNotify", &id).len(), 1);
    assert_eq!(show(&d, "13900000001").len(), 1);
    // Also when the account was opened by UserOpen.
    let other = open(&d, "09", "13900000002", PW, "T1");
    let r = sp(&d, "MPhoneRegistry", MPHONE_SP, &[("PhoneNum", "13900000002")]);
    assert_eq!((r.result(), r.get("UserID")), (0, other.as_str()));
}

#[test]
fn mphone_registry_bss_city_code_and_refusals() {
    let d = Daemon::with_peers(false);
    let r = bss(&d, "MPhoneRegistry", MPHONE_BSS, &[("PhoneNum", "13900000011"), ("CityCode", "0592")]);
    assert_code(&r, 0, "register with a city");
    assert_eq!(r.order, ["Result", "ErrDescription", "UserID"]);
    let id = r.get("UserID").to_string();
    let g = info(&d, &id);
    assert_eq!((g.get("AccountType"), g.get("CityCode"), g.get("UserType"), g.get("Status")), ("09", "0592", "1", "00"));
    // Registered without a password: no login until PasswordReset.
    assert_eq!(show(&d, &id)[0]["password"], "none");
    assert_code(&phone_auth(&d, "13900000011", PW), -20501, "no password set");
    assert_code(&phone_auth(&d, "13900000011", ""), -21555, "empty password");
    assert_code(&password_reset(&d, &id, PW, "R1"), 0, "reset");
    assert_code(&phone_auth(&d, "13900000011", PW), 0, "after PasswordReset");
    for bad in ["1390000001", "139000000111", "23900000011", "1390000001x", ""] {
        let r = bss(&d, "MPhoneRegistry", MPHONE_BSS, &[("PhoneNum", bad)]);
        assert_code(&r, -21552, bad);
        assert_eq!(r.get("UserID"), "");
    }
    let r = sp(&d, "MPhoneRegistry", MPHONE_SP, &[("PhoneNum", "1390000001")]);
    assert_code(&r, -21552, "SP: bad phone");
    for weak in ["abc12", "666666", "13900000012"] {
        let pw = enc(BSS_KEY, weak);
        assert_code(&bss(&d, "MPhoneRegistry", MPHONE_BSS, &[("PhoneNum", "13900000012"), ("Password", &pw)]), -20510, weak);
    }
    let pw = enc(SP_KEY, "12345");
    assert_code(&sp(&d, "MPhoneRegistry", MPHONE_SP, &[("PhoneNum", "13900000012"), ("Password", &pw)]), -20510, "SP: weak");
    assert!(!d.cli(&["user", "show", "13900000012"]).status.success(), "nothing created");
    assert_code(&bss(&d, "MPhoneRegistry", MPHONE_BSS, &[("PhoneNum", "13900000012"), ("CityCode", "05x")]), -21546, "CityCode");
    assert_code(&bss(&d, "MPhoneRegistry", MPHONE_BSS, &[("PhoneNum", "13900000012"), ("Password", "%%%")]), -21557, "bad enc");
}

// ---------------------------------------------------------------- UserAuth / PhoneNumAuth

#[test]
fn user_auth_success_and_refusals() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "02", "lan90000001", PW, "T1");
    let r = auth(&d, "02", "lan90000001", PW);
    assert_code(&r, 0, "success");
    assert_eq!(r.order, AUTH_ORDER);
    assert_eq!(
        (r.get("VNetUserID"), r.get("ProvinceID"), r.get("CityCode"), r.get("UserType"), r.get("Status")),
        (id.as_str(), "35", "0591", "1", "00")
    );
    let a = |given: &[(&str, &str)]| sp(&d, "UserAuth", USER_AUTH, given);
    let pw = enc(SP_KEY, PW);
    // UserIP is optional; a valid v4 or v6 address is accepted.
    for ip in ["10.1.2.3", "2001:db8::1"] {
        assert_code(&a(&[("AccountType", "02"), ("Account", "lan90000001"), ("Password", &pw), ("UserIP", ip)]), 0, ip);
    }
    let r = auth(&d, "02", "nobody", PW);
    assert_code(&r, -20504, "unknown account");
    assert_eq!(r.order, AUTH_ORDER, "every element, also on failure");
    assert_eq!(r.get("VNetUserID"), "");
    assert_code(&auth(&d, "01", "lan90000001", PW), -20504, "same string, other account type");
    assert_code(&auth(&d, "02", "lan90000001", "wrong-pass"), -20501, "wrong password");
    assert_code(&auth(&d, "02", "lan90000001", PW), 0, "resets the counter");
    // A ServiceID, with the catalogue still empty, is an unknown service.
    let r = a(&[("ServiceID", "3500000100000001"), ("AccountType", "02"), ("Account", "lan90000001"), ("Password", &pw)]);
    assert_code(&r, -20004, "ServiceID");
    assert_code(&a(&[("ServiceID", "35000001"), ("AccountType", "02"), ("Account", "lan90000001"), ("Password", &pw)]), -21505, "bad ServiceID");
    for ip in ["999.1.1.1", "abc", "10.1.2"] {
        assert_code(&a(&[("AccountType", "02"), ("Account", "lan90000001"), ("Password", &pw), ("UserIP", ip)]), -21520, ip);
    }
    assert_code(&a(&[("AccountType", "02"), ("Account", "lan90000001")]), -21510, "missing Password");
    assert_code(&a(&[("AccountType", "08"), ("Account", "lan90000001"), ("Password", &pw)]), -21551, "AccountType");
    assert_code(&a(&[("AccountType", "02"), ("Password", &pw)]), -21552, "missing Account");
    // enc failures: not Base64, a length not a multiple of 8, bad padding; empty plaintext.
    let sixteen = key(SP_KEY).encrypt(b"12345678"); // one data block + one padding block
    let bad_padding = base64_std(&sixteen[..8]); // decrypts to "12345678": last byte is not padding
    let seven = base64_std(&sixteen[..7]);
    for bad in ["!!!not-base64!!!", "abc", seven.as_str(), bad_padding.as_str()] {
        assert_code(&a(&[("AccountType", "02"), ("Account", "lan90000001"), ("Password", bad)]), -21557, bad);
    }
    let empty = enc(SP_KEY, "");
    assert_code(&a(&[("AccountType", "02"), ("Account", "lan90000001"), ("Password", &empty)]), -21555, "empty");
    // Under a wrong key (the BSS key) the password is not the user's.
    let other = enc(BSS_KEY, PW);
    let r = a(&[("AccountType", "02"), ("Account", "lan90000001"), ("Password", &other)]);
    assert!(r.result() == -21557 || r.result() == -20501, "{:?}", r.fields);
    // None of the parameter errors counted as a failed login.
    assert_eq!(show(&d, &id)[0]["locked"], "no");
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn user_auth_lockout_and_expiry() {
    let mut d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz91000001", PW, "T1");
    for i in 1..=5 {
        let r = auth(&d, "01", "fz91000001", "wrong-pass");
        assert_code(&r, -20501, &format!("failure {i}"));
        assert_ne!(r.get("ErrDescription"), "locked");
    }
    for pw in [PW, "wrong-pass", PW] {
        let r = auth(&d, "01", "fz91000001", pw);
        assert_eq!(r.result(), -20502, "locked: {:?}", r.fields);
        assert_eq!(r.get("ErrDescription"), "locked");
    }
    assert_eq!(show(&d, &id)[0]["locked"], "yes");
    // Not over after 14 minutes.
    d.restart_with_offset(14 * 60);
    assert_eq!(auth(&d, "01", "fz91000001", PW).get("ErrDescription"), "locked");
    // lockout_minutes = 15.
    d.restart_with_offset(16 * 60);
    assert_code(&auth(&d, "01", "fz91000001", PW), 0, "lock expired");
    // The counter started afresh: four more failures do not lock.
    for _ in 0..4 {
        assert_code(&auth(&d, "01", "fz91000001", "wrong-pass"), -20501, "failure");
    }
    assert_code(&auth(&d, "01", "fz91000001", PW), 0, "not locked");
}

#[test]
fn user_auth_success_resets_the_counter_across_channels() {
    let d = Daemon::with_peers(false);
    open(&d, "09", "13700000001", PW, "T1");
    for _ in 0..4 {
        assert_code(&auth(&d, "09", "13700000001", "wrong-pass"), -20501, "failure");
    }
    assert_code(&phone_auth(&d, "13700000001", PW), 0, "success resets");
    for _ in 0..4 {
        assert_code(&phone_auth(&d, "13700000001", "wrong-pass"), -20501, "failure");
    }
    assert_code(&auth(&d, "09", "13700000001", PW), 0, "still not locked");
    // One counter for UserAuth and PhoneNumAuth together.
    for _ in 0..2 {
        assert_code(&auth(&d, "09", "13700000001", "wrong-pass"), -20501, "UserAuth failure");
    }
    for _ in 0..3 {
        assert_code(&phone_auth(&d, "13700000001", "wrong-pass"), -20501, "PhoneNumAuth failure");
    }
    let r = phone_auth(&d, "13700000001", PW);
    assert_eq!((r.result(), r.get("ErrDescription")), (-20502, "locked"));
    let r = auth(&d, "09", "13700000001", PW);
    assert_eq!((r.result(), r.get("ErrDescription")), (-20502, "locked"));
}

#[test]
fn user_auth_cancelled_holder_is_refused_without_a_password_check() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz92000001", PW, "T1");
    set_status(&d, &id, "03", "S1");
    for _ in 0..7 {
        let r = auth(&d, "01", "fz92000001", "wrong-pass");
        assert_code(&r, -20502, "cancelled holder, wrong password");
        assert_ne!(r.get("ErrDescription"), "locked");
    }
    assert_code(&auth(&d, "01", "fz92000001", PW), -20502, "cancelled holder, right password");
    assert_eq!(show(&d, &id)[0]["locked"], "no", "no failure was counted");
    // A new holder of the account is the one authenticated.
    let new = open(&d, "01", "fz92000001", "fresh-Pass1", "T2");
    let r = auth(&d, "01", "fz92000001", "fresh-Pass1");
    assert_code(&r, 0, "new holder");
    assert_eq!(r.get("VNetUserID"), new);
    assert_code(&auth(&d, "01", "fz92000001", PW), -20501, "the old password is not the new holder's");
}

#[test]
fn phone_num_auth_success_and_refusals() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "09", "13600000001", PW, "T1");
    let r = phone_auth(&d, "13600000001", PW);
    assert_code(&r, 0, "success");
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status", "NumFlag"]);
    assert_eq!(
        (r.get("VNetUserID"), r.get("ProvinceID"), r.get("CityCode"), r.get("UserType"), r.get("Status"), r.get("NumFlag")),
        (id.as_str(), "35", "0591", "1", "00", "2")
    );
    for bad in ["1360000000", "23600000001", "1360000000a", ""] {
        let pw = enc(SP_KEY, PW);
        assert_code(&sp(&d, "PhoneNumAuth", PHONE_AUTH, &[("PhoneNum", bad), ("Password", &pw)]), -21552, bad);
    }
    let r = phone_auth(&d, "13600000002", PW);
    assert_code(&r, -20504, "unknown phone");
    assert_eq!(r.get("NumFlag"), "");
    assert_code(&phone_auth(&d, "13600000001", "wrong-pass"), -20501, "wrong password");
    assert_code(&sp(&d, "PhoneNumAuth", PHONE_AUTH, &[("PhoneNum", "13600000001")]), -21510, "missing Password");
    let pw = enc(SP_KEY, PW);
    let r = sp(&d, "PhoneNumAuth", PHONE_AUTH, &[("ServiceID", "3500000100000001"), ("PhoneNum", "13600000001"), ("Password", &pw)]);
    assert_code(&r, -20004, "ServiceID");
    // A 01 account that looks like a phone number is not a mobile user.
    open(&d, "01", "13600000003", PW, "T2");
    assert_code(&phone_auth(&d, "13600000003", PW), -20504, "held under 01 only");
    set_status(&d, &id, "02", "S1");
    assert_code(&phone_auth(&d, "13600000001", PW), -20502, "frozen");
}

// ---------------------------------------------------------------- GetUserinfo / UserInfoQueryV3

#[test]
fn get_userinfo_profile_and_num_flag() {
    let d = Daemon::with_peers(true);
    let cases = [("01", "fz93000001", ""), ("02", "lan93000001", ""), ("03", "059193000001", "1"), ("04", "alias93000001", "3"), ("09", "13593000001", "2")];
    for (i, (at, account, flag)) in cases.iter().enumerate() {
        let r = user_open(&d, at, account, PW, &format!("T{i}"), &[("CityCode", "0593"), ("UserType", "2"), ("Alias", "别名")]);
        assert_code(&r, 0, account);
        let id = r.get("VNetUserID");
        for g in [info(&d, id), centre(&d, "GetUserinfo", GET_USERINFO_VNET, &[("VNetUserID", id)])] {
            assert_code(&g, 0, account);
            assert_eq!(g.order, PROFILE_ORDER);
            let got: Vec<&str> = PROFILE_ORDER[2..].iter().map(|n| g.get(n)).collect();
            assert_eq!(got, [id, at, account, "别名", "35", "0593", "2", "00", flag, ""], "{account}");
        }
    }
    for g in [info(&d, "359999999999"), centre(&d, "GetUserinfo", GET_USERINFO_VNET, &[("VNetUserID", "359999999999")])] {
        assert_code(&g, -1, "unknown user");
        assert_eq!(g.order, PROFILE_ORDER);
        assert!(PROFILE_ORDER[2..].iter().all(|n| g.get(n).is_empty()), "{:?}", g.fields);
    }
    assert_code(&info(&d, "120000000001"), -1, "another province's id");
    for bad in ["", "abc", "35000000001", "3500000000011", "35000000000x"] {
        assert_code(&info(&d, bad), -21512, bad);
        assert_code(&centre(&d, "GetUserinfo", GET_USERINFO_VNET, &[("VNetUserID", bad)]), -21512, bad);
    }
    // A cancelled user is still found, with Status 03.
    set_status(&d, "350000000001", "03", "S1");
    assert_eq!(info(&d, "350000000001").get("Status"), "03");
}

#[test]
fn user_info_query_v3() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "09", "13400000001", PW, "T1");
    let r = centre(&d, "UserInfoQueryV3", USER_INFO_QUERY, &[("AccountType", "09"), ("Account", "13400000001")]);
    assert_code(&r, 0, "found");
    let order = ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "Status", "UserType", "ContractID", "NumFlag"];
    assert_eq!(r.order, order);
    let got: Vec<&str> = order[2..].iter().map(|n| r.get(n)).collect();
    assert_eq!(got, [id.as_str(), "35", "0591", "00", "1", "", "2"]);
    let id3 = open(&d, "03", "059194000001", PW, "T2");
    let r = centre(&d, "UserInfoQueryV3", USER_INFO_QUERY, &[("AccountType", "03"), ("Account", "059194000001")]);
    assert_eq!((r.result(), r.get("VNetUserID"), r.get("NumFlag")), (0, id3.as_str(), "1"));
    for (at, account) in [("09", "13400000002"), ("01", "13400000001"), ("03", "nobody")] {
        let r = centre(&d, "UserInfoQueryV3", USER_INFO_QUERY, &[("AccountType", at), ("Account", account)]);
        assert_code(&r, -1, account);
        assert_eq!(r.order, order);
        assert!(order[2..].iter().all(|n| r.get(n).is_empty()));
    }
    assert_code(&centre(&d, "UserInfoQueryV3", USER_INFO_QUERY, &[("AccountType", "9"), ("Account", "13400000001")]), -21551, "AccountType");
    assert_code(&centre(&d, "UserInfoQueryV3", USER_INFO_QUERY, &[("AccountType", "09")]), -21552, "Account");
}

// ---------------------------------------------------------------- GetTime

#[test]
fn get_time_answers_any_spid_with_node_time() {
    let mut d = Daemon::with_peers(false);
    d.restart_with_offset(7200);
    let bodies: Vec<Vec<(&str, String)>> = vec![
        vec![("SPID", SP_ID.into())],
        vec![("SPID", "99999999".into())],
        vec![("SPID", "".into())],
        vec![],
        vec![("SPID", "not-an-spid".into())],
    ];
    for fields in &bodies {
        let r = d.call_raw(SP, "GetTime", fields);
        assert_code(&r, 0, &format!("{fields:?}"));
        assert_eq!(r.order, ["Result", "ErrDescription", "ServerTime"]);
        let got = vnetd::clock::Clock::system(time::UtcOffset::UTC, 0).parse_ts(r.get("ServerTime")).expect("a ts");
        let want = vnetd::clock::Clock::system(time::UtcOffset::UTC, 0).parse_ts(&d.now_ts()).unwrap();
        assert!((got - want).abs() <= 3, "ServerTime {} vs node time {}", r.get("ServerTime"), d.now_ts());
    }
    // A disabled SP still gets the time.
    d.ok(&["peer", "disable", SP_ID]);
    std::thread::sleep(Duration::from_millis(2100));
    assert_code(&d.call_raw(SP, "GetTime", &[("SPID", SP_ID.into())]), 0, "disabled SP");
}

// ---------------------------------------------------------------- PUserStatusNotify

#[test]
fn p_user_status_notify_freezes_and_lifts() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz95000001", PW, "T1");
    let notified = || d.outbox_for_user("PUserInfoNotify", &id).len();
    assert_eq!(notified(), 1);
    let r = notify(&d, &id, "02", &ts(d.offset_s + 2));
    assert_code(&r, 0, "freeze");
    assert_eq!(r.order, ["Result", "ErrDescription"]);
    assert_eq!(info(&d, &id).get("Status"), "02");
    assert_code(&auth(&d, "01", "fz95000001", PW), -20502, "frozen by the centre");
    // Older than (or as old as) the last applied change: 0 and no change.
    assert_code(&notify(&d, &id, "00", &ts(d.offset_s + 1)), 0, "older");
    assert_code(&notify(&d, &id, "00", &ts(d.offset_s + 2)), 0, "same time");
    assert_eq!(info(&d, &id).get("Status"), "02");
    // Newer 00 lifts the freeze.
    assert_code(&notify(&d, &id, "00", &ts(d.offset_s + 3)), 0, "lift");
    assert_eq!(info(&d, &id).get("Status"), "00");
    assert_code(&auth(&d, "01", "fz95000001", PW), 0, "lifted");
    // Not echoed back to the centre.
    assert_eq!(notified(), 1, "{:?}", d.outbox_for_user("PUserInfoNotify", &id));
    // Older than the user's creation: no change.
    let fresh = open(&d, "01", "fz95000002", PW, "T2");
    assert_code(&notify(&d, &fresh, "02", &ts(d.offset_s - 3600)), 0, "before creation");
    assert_eq!(info(&d, &fresh).get("Status"), "00");
}

#[test]
fn p_user_status_notify_does_not_lift_a_local_suspension() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz96000001", PW, "T1");
    set_status(&d, &id, "01", "S1");
    let r = notify(&d, &id, "00", &ts(d.offset_s + 5));
    assert_code(&r, 0, "00 on a suspended user");
    assert_eq!(info(&d, &id).get("Status"), "01");
    assert_code(&auth(&d, "01", "fz96000001", PW), -20502, "still suspended");
}

#[test]
fn p_user_status_notify_refusals() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz97000001", PW, "T1");
    let later = ts(d.offset_s + 5);
    for bad in ["01", "03", "", "2", "04"] {
        assert_code(&notify(&d, &id, bad, &later), -21553, bad);
    }
    assert_eq!(info(&d, &id).get("Status"), "00");
    assert_code(&notify(&d, "359999999999", "02", &later), -20504, "unknown user");
    assert_code(&notify(&d, "3599999999", "02", &later), -21512, "malformed id");
    for bad in ["", "2024-13-01 00:00:00", "2024/01/01 00:00:00", "20240101000000"] {
        assert_code(&notify(&d, &id, "02", bad), -21500, bad);
    }
    set_status(&d, &id, "03", "S1");
    assert_code(&notify(&d, &id, "02", &ts(d.offset_s + 10)), -20502, "cancelled user");
    assert_code(&notify(&d, &id, "00", &ts(d.offset_s + 10)), -20502, "cancelled user");
    assert_eq!(info(&d, &id).get("Status"), "03");
}

// ---------------------------------------------------------------- Envelope

#[test]
fn envelope_unknown_disabled_and_malformed_callers() {
    let d = Daemon::with_peers(false);
    let id = open(&d, "01", "fz98000001", PW, "T1");
    // Unknown or malformed callers, signed with a key we hold: -20001.
    for caller in ["35999999", "abc", "", "350000011", "3500000"] {
        let r = d.call_named(SP, "GetUserinfo", SP_KEY, GET_USERINFO_SP, &[("SPID", caller), ("VNetUserID", &id)]);
        assert_code(&r, -20001, caller);
        assert_eq!(r.order, PROFILE_ORDER);
    }
    // A malformed caller id is unknown even when it names a peer (spec 11): the SP's 8-digit SPID
    // sent as SrcDeviceNo, signed with the SP's own key, is -20001, not -20003.
    for (caller, key) in [("3500000000009999", BSS_KEY), ("35000001", SP_KEY), ("abcdefghijklmnop", BSS_KEY)] {
        let r = d.call_named(BSS, "UserStatusChange", key, STATUS_CHANGE, &[("SrcDeviceNo", caller), ("VNetUserID", &id), ("Status", "01"), ("TransactionID", "X1")]);
        assert_code(&r, -20001, caller);
    }
    // Unknown beats everything else (bad Authenticator, bad TimeStamp, bad fields).
    let r = d.call_raw(SP, "GetUserinfo", &[("SPID", "35999999".into()), ("VNetUserID", "x".into()), ("TimeStamp", "x".into()), ("Authenticator", "x".into())]);
    assert_code(&r, -20001, "unknown first");
    // A disabled caller is refused within 2 seconds.
    assert_code(&info(&d, &id), 0, "enabled");
    d.ok(&["peer", "disable", SP_ID]);
    assert!(wait_until(Duration::from_secs(2), || info(&d, &id).result() == -20001), "SP disable not effective within 2 s");
    d.ok(&["peer", "disable", BSS_ID]);
    assert!(
        wait_until(Duration::from_secs(2), || status_change(&d, &id, "00", "X2").result() == -20001),
        "BSS disable not effective within 2 s"
    );
    assert_eq!(info_status(&d, &id), "00", "nothing changed");
    let list = d.listing(&["peer", "list"]);
    assert!(list.iter().filter(|p| p["id"] == SP_ID || p["id"] == BSS_ID).all(|p| p["status"] == "disabled"), "{list:?}");
}

/// Status via the CLI (for when the SOAP callers are disabled).
fn info_status(d: &Daemon, id: &str) -> String {
    show(d, id)[0]["status"].clone()
}

#[test]
fn envelope_caller_not_allowed() {
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz99000001", PW, "T1");
    // An SP calling ProvinceForBSS, a BSS calling ProvinceForSP: the caller id has the other
    // service's syntax, so the caller is unknown there (spec 11), not merely not allowed.
    let r = d.call_named(BSS, "UserStatusChange", SP_KEY, STATUS_CHANGE, &[("SrcDeviceNo", SP_ID), ("VNetUserID", &id), ("Status", "01"), ("TransactionID", "X1")]);
    assert_code(&r, -20001, "SP on BSS");
    let r = d.call_named(SP, "GetUserinfo", BSS_KEY, GET_USERINFO_SP, &[("SPID", BSS_ID), ("VNetUserID", &id)]);
    assert_code(&r, -20001, "BSS on SP");
    // A BSS calling ProvinceForVNet: a well-formed DeviceNo of the wrong kind.
    let r = d.call_named(VNET, "GetUserinfo", BSS_KEY, GET_USERINFO_VNET, &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id)]);
    assert_code(&r, -20003, "BSS on VNet");
    // The centre calling ProvinceForBSS.
    let r = d.call_named(BSS, "UserStatusChange", CENTRE_KEY, STATUS_CHANGE, &[("SrcDeviceNo", CENTRE_ID), ("VNetUserID", &id), ("Status", "01"), ("TransactionID", "X1")]);
    assert_code(&r, -20003, "centre on BSS");
    assert_eq!(info(&d, &id).get("Status"), "00");
    // A peer restricted by --ops.
    d.ok(&["peer", "add", "--id", "35000002", "--kind", "sp", "--key", SP_KEY, "--ops", "UserAuth,GetTime"]);
    std::thread::sleep(Duration::from_millis(2100));
    let pw = enc(SP_KEY, PW);
    let r = d.call_named(SP, "UserAuth", SP_KEY, USER_AUTH, &[("SPID", "35000002"), ("AccountType", "01"), ("Account", "fz99000001"), ("Password", &pw)]);
    assert_code(&r, 0, "allowed op");
    let r = d.call_named(SP, "GetUserinfo", SP_KEY, GET_USERINFO_SP, &[("SPID", "35000002"), ("VNetUserID", &id)]);
    assert_code(&r, -20003, "op outside --ops");
    let r = d.call_named(SP, "MPhoneRegistry", SP_KEY, MPHONE_SP, &[("SPID", "35000002"), ("PhoneNum", "13300000001")]);
    assert_code(&r, -20003, "op outside --ops");
    assert!(!d.cli(&["user", "show", "13300000001"]).status.success());
    // Not allowed beats a bad Authenticator.
    let r = d.call_raw(SP, "GetUserinfo", &[("SPID", "35000002".into()), ("VNetUserID", id.clone()), ("TimeStamp", d.now_ts()), ("Authenticator", "garbage".into())]);
    assert_code(&r, -20003, "before the Authenticator");
}

#[test]
fn envelope_authenticator_and_timestamp() {
    /// The fields plus TimeStamp, and the Authenticator over them.
    fn signed<'a>(fields: &[(&'a str, &str)], key_hex: &str, ts: &str) -> (Vec<(&'a str, String)>, String) {
        let mut all: Vec<(&'a str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
        all.push(("TimeStamp", ts.to_string()));
        let values: Vec<&str> = all.iter().map(|(_, v)| v.as_str()).collect();
        let auth = vnetd::crypto::authenticator(&key(key_hex), &values);
        (all, auth)
    }
    let d = Daemon::with_peers(true);
    let id = open(&d, "01", "fz99100001", PW, "T1");
    let now = d.now_ts();
    let base = [("SPID", SP_ID), ("VNetUserID", id.as_str())];
    // Wrong key.
    let r = d.call(SP, "GetUserinfo", BSS_KEY, &base);
    assert_code(&r, -21548, "wrong key");
    assert_eq!(r.order, PROFILE_ORDER);
    // Garbage, missing, empty Authenticator.
    let (mut all, _) = signed(&base, SP_KEY, &now);
    all.push(("Authenticator", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()));
    assert_code(&d.call_raw(SP, "GetUserinfo", &all), -21548, "garbage");
    let (all, _) = signed(&base, SP_KEY, &now);
    assert_code(&d.call_raw(SP, "GetUserinfo", &all), -21548, "missing");
    let (mut all, _) = signed(&base, SP_KEY, &now);
    all.push(("Authenticator", String::new()));
    assert_code(&d.call_raw(SP, "GetUserinfo", &all), -21548, "empty");
    // Signed over other values (a field changed after signing; a TimeStamp changed after signing).
    let (mut all, auth) = signed(&base, SP_KEY, &now);
    all[1].1 = "350000000002".into();
    all.push(("Authenticator", auth.clone()));
    assert_code(&d.call_raw(SP, "GetUserinfo", &all), -21548, "tampered field");
    let (mut all, auth) = signed(&base, SP_KEY, &now);
    all[2].1 = ts(d.offset_s + 1);
    all.push(("Authenticator", auth));
    assert_code(&d.call_raw(SP, "GetUserinfo", &all), -21548, "tampered TimeStamp");
    // Correctly signed, TimeStamp outside ±300 s or malformed: -21514.
    for t in [ts(d.offset_s - 600), ts(d.offset_s + 600), ts(d.offset_s + 301 + 2), "2024/01/01 00:00:00".into(), "".into(), "yesterday".into()] {
        let r = d.call_at(SP, "GetUserinfo", SP_KEY, &base, &t);
        assert_code(&r, -21514, &t);
    }
    // Inside the tolerance.
    assert_code(&d.call_at(SP, "GetUserinfo", SP_KEY, &base, &ts(d.offset_s - 240)), 0, "4 minutes behind");
    assert_code(&d.call_at(SP, "GetUserinfo", SP_KEY, &base, &ts(d.offset_s + 240)), 0, "4 minutes ahead");
    // Check order: Authenticator before TimeStamp, TimeStamp before fields.
    let (mut all, _) = signed(&base, SP_KEY, &ts(d.offset_s - 600));
    all.push(("Authenticator", "bad".into()));
    assert_code(&d.call_raw(SP, "GetUserinfo", &all), -21548, "bad auth and bad ts");
    let r = d.call_at(SP, "GetUserinfo", SP_KEY, &[("SPID", SP_ID), ("VNetUserID", "bad")], &ts(d.offset_s - 600));
    assert_code(&r, -21514, "bad ts and bad field");
    // The same on the other services.
    let r = d.call(BSS, "UserStatusChange", SP_KEY, &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("Status", "01"), ("Reason", ""), ("TransactionID", "X")]);
    assert_code(&r, -21548, "BSS wrong key");
    let r = d.call_at(VNET, "GetUserinfo", CENTRE_KEY, &[("SrcDeviceNo", CENTRE_ID), ("VNetUserID", &id)], &ts(d.offset_s + 900));
    assert_code(&r, -21514, "centre bad ts");
    // Fields in another order than the Authenticator's are accepted (matched by name).
    let (all, auth) = signed(&base, SP_KEY, &now);
    let mut shuffled = vec![("Authenticator", auth)];
    shuffled.extend(all.into_iter().rev());
    assert_code(&d.call_raw(SP, "GetUserinfo", &shuffled), 0, "any order");
}
