//! Browser flows over HTTP against the running binary (spec 5, 4.1 TicketValidate / UserLogout /
//! PaymentQuery, 11 "Browser"): tokens in and out, sessions, tickets, CSRF, payments, password
//! change, and every Result code of the three SOAP operations. The real-browser run of the same
//! flows is tests/browser/e2e.py.

use crate::harness::*;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use vnetd::crypto::token;

const SPS: &str = "ProvinceForSP";
const BSS: &str = "ProvinceForBSS";
const SP2_ID: &str = "35000002";
const SP2_KEY: &str = "fedcba98765432100123456789abcdeffedcba9876543210";
const RETURN: &str = "http://sp.example/back";
const SP2_RETURN: &str = "http://sp2.example/cb?x=1";
const NODE_DEV: &str = "3500000000000101";
const PW: &str = "s3cret-Pass";
const SERVICE: &str = "3500000100000001";
const PERUSE: &str = "3500000100000101"; // per use, 200 fen
const MONTHLY: &str = "3500000100000102"; // monthly
const TICKET_VALIDATE: &[&str] = &["SPID", "Ticket"];
const PAYMENT_QUERY: &[&str] = &["SPID", "OrderID"];
const USER_LOGOUT: &[&str] = &["SPID", "VNetUserID"];

/// The music SP with a per-use item (200 fen) and a monthly one (1,000 fen).
fn catalog() -> String {
    format!("{MUSIC_SP}{}{}", catalog_item(PERUSE, SERVICE, "单次下载", "1", 200), catalog_item(MONTHLY, SERVICE, "音乐包月", "2", 1000))
}
/// A node with the standard peers (SP with ReturnURL prefix http://sp.example/, BSS, centre),
/// a second SP, the catalogue and one user (account fz001, password PW). Returns its VNetUserID.
fn node() -> (Daemon, String) {
    let d = Daemon::start();
    d.ok(&["peer", "add", "--id", SP2_ID, "--kind", "sp", "--key", SP2_KEY, "--return-url", "http://sp2.example/", "--name", "第二商户"]);
    d.add_standard_peers(true);
    let cat = d.dir.path().join("catalog.toml");
    std::fs::write(&cat, catalog()).unwrap();
    d.ok(&["catalog", "import", cat.to_str().unwrap()]);
    let id = user(&d, "fz001", PW, &["--credit-limit", "10000000"]);
    (d, id)
}

fn user(d: &Daemon, account: &str, pw: &str, extra: &[&str]) -> String {
    let mut args = vec!["user", "add", "--account-type", "01", "--account", account, "--city-code", "0591", "--password-stdin"];
    args.extend_from_slice(extra);
    let out = d.cli_stdin(&args, &format!("{pw}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ---- tokens, as an SP builds and reads them (spec 5)

pub(crate) fn sso_request(d: &Daemon, spid: &str, key_hex: &str, return_url: &str) -> String {
    sso_request_at(spid, key_hex, return_url, &d.now_ts())
}

fn sso_request_at(spid: &str, key_hex: &str, return_url: &str, ts: &str) -> String {
    token::seal(&key(key_hex), spid, &[ts, return_url], &[spid, ts, return_url])
}

fn pay_request(d: &Daemon, order_id: &str, item: &str, fee: &str) -> String {
    let ts = d.now_ts();
    let f = [order_id, SERVICE, item, fee, RETURN, &ts];
    let over = [SP_ID, order_id, SERVICE, item, fee, RETURN, &ts];
    token::seal(&key(SP_KEY), SP_ID, &f, &over)
}

fn logout_request(d: &Daemon, user: &str, ts: Option<&str>) -> String {
    let ts = ts.map(str::to_string).unwrap_or_else(|| d.now_ts());
    token::seal(&key(SP_KEY), SP_ID, &[user, &ts, RETURN], &[SP_ID, user, &ts, RETURN])
}

pub(crate) fn q(v: &str) -> String {
    utf8_percent_encode(v, NON_ALPHANUMERIC).to_string()
}

/// Open an answer token from a Location header: (fields, digest ok).
fn answer(location: &str, param: &str, key_hex: &str, n: usize) -> Vec<String> {
    let (_, query) = location.split_once('?').unwrap_or_else(|| panic!("no query in {location}"));
    let raw = query.split('&').find_map(|kv| kv.strip_prefix(&format!("{param}="))).unwrap_or_else(|| panic!("{param} in {location}"));
    let tok = percent_decode_str(raw).decode_utf8().unwrap().to_string();
    let (id, fields, digest) = token::open(&tok, n, n, |_| Some(key(key_hex))).unwrap();
    assert_eq!(id, NODE_DEV, "answers carry the node's DeviceNo");
    let mut over = vec![fields[0].clone(), id];
    over.extend(fields[1..].iter().cloned());
    let over: Vec<&str> = over.iter().map(String::as_str).collect();
    assert!(token::check_digest(&digest, &over), "Digest of {param}");
    fields
}

// ---- a browser: a cookie jar over the harness's HTTP client

struct Browser<'a> {
    d: &'a Daemon,
    cookies: HashMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(d: &'a Daemon) -> Browser<'a> {
        Browser { d, cookies: HashMap::new() }
    }

    fn send(&mut self, method: &str, path: &str, form: &[(&str, &str)]) -> Http {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let body = form.iter().map(|(k, v)| format!("{}={}", q(k), q(v))).collect::<Vec<_>>().join("&");
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("Cookie", &cookie));
        }
        let r = http(&self.d.addr(), method, path, &headers, body.as_bytes());
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("Set-Cookie") {
                let (name, rest) = v.split_once('=').unwrap();
                let value = rest.split(';').next().unwrap();
                if v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        r
    }

    fn get(&mut self, path: &str) -> Http {
        self.send("GET", path, &[])
    }

    fn login_page(&mut self, tok: &str) -> Http {
        self.get(&format!("/sso/login?SSORequest={}", q(tok)))
    }

    /// Submit the form on `page` with these fields added to its hidden ones.
    fn submit(&mut self, page: &Http, path: &str, fields: &[(&str, &str)]) -> Http {
        let mut form = hidden_fields(&page.text());
        for (k, v) in fields {
            form.retain(|(n, _)| n != k);
            form.push((k.to_string(), v.to_string()));
        }
        let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.send("POST", path, &f)
    }

    /// Log in through an SP's SSORequest; returns the ticket.
    fn sso_login(&mut self, tok: &str, account: &str, pw: &str) -> String {
        let page = self.login_page(tok);
        assert_eq!(page.status, 200, "{}", page.text());
        let r = self.submit(&page, "/sso/login", &[("account", account), ("password", pw)]);
        assert_eq!(r.status, 302, "{}", r.text());
        ticket_of(&r, SP_KEY)
    }
}

/// The hidden inputs of the first form of a page (name, value), HTML entities decoded.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let form = html.split("</form>").next().unwrap_or("");
    for tag in form.split("<input").skip(1) {
        let tag = tag.split('>').next().unwrap();
        if !tag.contains(r#"type="hidden""#) {
            continue;
        }
        let attr = |a: &str| tag.split(&format!(r#"{a}=""#)).nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_string();
        out.push((attr("name"), unescape(&attr("value"))));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&#43;", "+").replace("&#34;", "\"").replace("&#39;", "'").replace("&#60;", "<").replace("&#62;", ">").replace("&#38;", "&")
}

fn ticket_of(r: &Http, key_hex: &str) -> String {
    let f = answer(r.header("Location").unwrap(), "SSOResponse", key_hex, 3);
    assert_eq!(f[0], "0", "SSOResponse Result");
    f[1].clone()
}

fn validate(d: &Daemon, spid: &str, key_hex: &str, ticket: &str) -> Resp {
    d.call_named(SPS, "TicketValidate", key_hex, TICKET_VALIDATE, &[("SPID", spid), ("Ticket", ticket)])
}

fn payment_query(d: &Daemon, order: &str) -> Resp {
    d.call_named(SPS, "PaymentQuery", SP_KEY, PAYMENT_QUERY, &[("SPID", SP_ID), ("OrderID", order)])
}

fn assert_page_headers(r: &Http) {
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
    let csp = r.header("Content-Security-Policy").expect("CSP");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
}

// ---- SSO

#[test]
fn sso_login_ticket_and_second_sp_without_password() {
    let (d, id) = node();
    let mut b = Browser::new(&d);
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let page = b.login_page(&tok);
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    let csp = page.header("Content-Security-Policy").unwrap();
    assert!(csp.contains("form-action 'self' http://sp.example;"), "the SP's ReturnURL origin is allowed: {csp}");
    let html = page.text();
    assert!(html.contains(r#"<html lang="zh-CN">"#) && html.contains("name=\"viewport\""), "{html}");
    assert!(html.contains(r#"name="csrf""#) && !html.contains("<script"), "{html}");
    assert!(b.cookies.contains_key("VNETFORM"));

    let r = b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW)]);
    assert_eq!(r.status, 302, "{}", r.text());
    let loc = r.header("Location").unwrap().to_string();
    assert!(loc.starts_with("http://sp.example/back?SSOResponse="), "{loc}");
    let sso = b.cookies.get("VNETSSO").expect("session cookie").clone();
    assert_eq!(sso.len(), 43, "32 random bytes, base64url without padding");
    let set = r.headers.iter().find(|(k, v)| k == "Set-Cookie" && v.starts_with("VNETSSO=")).unwrap().1.clone();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    let ticket = ticket_of(&r, SP_KEY);

    let v = validate(&d, SP_ID, SP_KEY, &ticket);
    assert_eq!(v.result(), 0, "{v:?}");
    assert_eq!(
        (v.get("VNetUserID"), v.get("AccountType"), v.get("Account"), v.get("ProvinceID"), v.get("CityCode"), v.get("Status")),
        (id.as_str(), "01", "fz001", "35", "0591", "00")
    );
    assert_eq!(v.order, ["Result", "ErrDescription", "VNetUserID", "AccountType", "Account", "ProvinceID", "CityCode", "UserType", "NumFlag", "Alias", "Status"]);
    assert_eq!(validate(&d, SP_ID, SP_KEY, &ticket).result(), -20501, "single use");

    // A second SP: the live session answers at once, no form.
    let r = b.login_page(&sso_request(&d, SP2_ID, SP2_KEY, SP2_RETURN));
    assert_eq!(r.status, 302, "{}", r.text());
    let loc = r.header("Location").unwrap();
    assert!(loc.starts_with("http://sp2.example/cb?x=1&SSOResponse="), "appended with &: {loc}");
    let t2 = ticket_of(&r, SP2_KEY);
    assert_eq!(validate(&d, SP2_ID, SP2_KEY, &t2).get("VNetUserID"), id);
}

#[test]
fn ticket_validate_codes() {
    let (d, _) = node();
    let mut b = Browser::new(&d);
    let t = b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    // Another SP's attempt fails and consumes the ticket.
    assert_eq!(validate(&d, SP2_ID, SP2_KEY, &t).result(), -20501);
    assert_eq!(validate(&d, SP_ID, SP_KEY, &t).result(), -20501, "consumed by the failed attempt");
    assert_eq!(validate(&d, SP_ID, SP_KEY, "no-such-ticket").result(), -20501);
    assert_eq!(validate(&d, SP_ID, SP_KEY, "").result(), -21500, "Ticket missing");
    assert_eq!(validate(&d, SP_ID, SP_KEY, &"x".repeat(65)).result(), -21500, "Ticket longer than s(64)");
    assert_eq!(validate(&d, "35009999", SP_KEY, "t").result(), -20001);
    assert_eq!(validate(&d, SP_ID, SP2_KEY, "t").result(), -21548);
    let stale = d.call_at(SPS, "TicketValidate", SP_KEY, &[("SPID", SP_ID), ("Ticket", "t")], &ts(d.offset_s - 3600));
    assert_eq!(stale.result(), -21514);
    let bss = d.call_named(SPS, "TicketValidate", BSS_KEY, TICKET_VALIDATE, &[("SPID", BSS_ID), ("Ticket", "t")]);
    assert_eq!(bss.result(), -20001, "a 16-digit caller id is no SPID");
}

#[test]
fn tickets_expire_after_ttl_and_sessions_after_idle_time() {
    let (mut d, _) = node();
    let mut b = Browser::new(&d);
    let t = b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    let cookies = b.cookies.clone();
    // ticket_ttl_s is 60: move the node clock 2 minutes on.
    d.restart_with_offset(120);
    d.wait_healthy();
    assert_eq!(validate(&d, SP_ID, SP_KEY, &t).result(), -20501, "expired");
    let mut b = Browser { d: &d, cookies: cookies.clone() };
    assert_eq!(b.login_page(&sso_request(&d, SP_ID, SP_KEY, RETURN)).status, 302, "session still live after 2 minutes");
    // sso_idle_minutes is 30.
    let mut d = d;
    d.restart_with_offset(120 + 31 * 60);
    d.wait_healthy();
    let mut b = Browser { d: &d, cookies };
    let r = b.login_page(&sso_request(&d, SP_ID, SP_KEY, RETURN));
    assert_eq!(r.status, 200, "idle session ended: the form again");
}

#[test]
fn login_failures_look_alike_and_share_the_lockout() {
    let (d, id) = node();
    let mut b = Browser::new(&d);
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let page = b.login_page(&tok);
    let wrong = b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", "wrong-pass")]);
    let unknown = b.submit(&page, "/sso/login", &[("account", "nobody", ), ("password", "wrong-pass")]);
    assert_eq!((wrong.status, unknown.status), (200, 200));
    let msg = |h: &Http| h.text().split("role=\"alert\">").nth(1).and_then(|s| s.split('<').next()).unwrap_or("").to_string();
    assert!(!msg(&wrong).is_empty());
    assert_eq!(msg(&wrong), msg(&unknown), "one generic message");
    assert!(!b.cookies.contains_key("VNETSSO"));
    // Three more wrong SOAP attempts: the fifth failure (threshold 5) locks, across channels.
    for _ in 0..3 {
        let pw = enc(SP_KEY, "wrong-pass");
        let r = d.call_named(SPS, "UserAuth", SP_KEY, &["SPID", "ServiceID", "AccountType", "Account", "Password", "UserIP"],
            &[("SPID", SP_ID), ("AccountType", "01"), ("Account", "fz001"), ("Password", &pw)]);
        assert_eq!(r.result(), -20501);
    }
    let fifth = b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", "wrong-pass")]);
    assert_eq!(msg(&fifth), msg(&wrong));
    let right = b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW)]);
    assert_eq!(right.status, 200, "locked: the right password is refused too");
    assert_eq!(msg(&right), msg(&wrong), "locked looks like any failure");
    let pw = enc(SP_KEY, PW);
    let r = d.call_named(SPS, "UserAuth", SP_KEY, &["SPID", "ServiceID", "AccountType", "Account", "Password", "UserIP"],
        &[("SPID", SP_ID), ("AccountType", "01"), ("Account", "fz001"), ("Password", &pw)]);
    assert_eq!((r.result(), r.get("ErrDescription")), (-20502, "locked"), "{id}");
}

#[test]
fn an_unknown_account_costs_the_hash_time_of_a_wrong_password() {
    // Production-like Argon2 cost so the hash dominates the request time.
    let d = Daemon::start_with("[security]\nargon2_m_kib = 19456\nargon2_t = 2\nlockout_threshold = 1000\n");
    d.add_standard_peers(false);
    user(&d, "fz001", PW, &[]);
    let mut b = Browser::new(&d);
    let page = b.login_page(&sso_request(&d, SP_ID, SP_KEY, RETURN));
    let median = |b: &mut Browser, account: &str| {
        let mut t: Vec<Duration> = (0..7)
            .map(|_| {
                let s = Instant::now();
                let r = b.submit(&page, "/sso/login", &[("account", account), ("password", "wrong-pass")]);
                assert_eq!(r.status, 200);
                s.elapsed()
            })
            .collect();
        t.sort();
        t[3]
    };
    let (wrong, unknown) = (median(&mut b, "fz001"), median(&mut b, "nobody"));
    assert!(unknown * 2 > wrong && wrong * 2 > unknown, "wrong password {wrong:?}, unknown account {unknown:?}");
}

#[test]
fn refused_tokens_get_a_400_page_and_no_redirect() {
    let (d, _) = node();
    let mut b = Browser::new(&d);
    let good = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 6;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let stale = sso_request_at(SP_ID, SP_KEY, RETURN, &ts(d.offset_s - 600));
    let future = sso_request_at(SP_ID, SP_KEY, RETURN, &ts(d.offset_s + 600));
    let foreign = sso_request(&d, SP_ID, SP_KEY, "http://evil.example/steal");
    let lookalike = sso_request(&d, SP_ID, SP_KEY, "http://sp.example.evil.test/");
    let wrong_key = sso_request(&d, SP_ID, SP2_KEY, RETURN);
    let unknown_sp = sso_request(&d, "35009999", SP_KEY, RETURN);
    // A valid token with its Digest over other values.
    let bad_digest = token::seal(&key(SP_KEY), SP_ID, &[&d.now_ts(), RETURN], &[SP_ID, &d.now_ts(), "http://sp.example/other"]);
    for (what, tok) in [
        ("tampered", tampered),
        ("stale", stale),
        ("future", future),
        ("foreign ReturnURL", foreign),
        ("look-alike host", lookalike),
        ("wrong key", wrong_key),
        ("unknown SP", unknown_sp),
        ("bad Digest", bad_digest),
        ("garbage", "35000001$%%%".into()),
    ] {
        let r = b.login_page(&tok);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(r.header("Location").is_none(), "{what}: no redirect");
        assert_page_headers(&r);
    }
    // PayRequest and SSOLogoutRequest: tampered and expired.
    let pay = pay_request(&d, "ORD-T1", PERUSE, "200");
    let bad_pay = pay.replacen(&pay[20..24], "AAAA", 1);
    assert_eq!(b.get(&format!("/pay?PayRequest={}", q(&bad_pay))).status, 400);
    let ts_old = ts(d.offset_s - 600);
    let f = ["ORD-T2", SERVICE, PERUSE, "200", RETURN, &ts_old];
    let old_pay = token::seal(&key(SP_KEY), SP_ID, &f, &[SP_ID, "ORD-T2", SERVICE, PERUSE, "200", RETURN, &ts_old]);
    assert_eq!(b.get(&format!("/pay?PayRequest={}", q(&old_pay))).status, 400);
    assert_eq!(payment_query(&d, "ORD-T2").result(), -21004, "nothing recorded for a refused token");
    let lo = logout_request(&d, "350000000001", Some(&ts_old));
    assert_eq!(b.get(&format!("/sso/logout?SSOLogoutRequest={}", q(&lo))).status, 400);
    let lo = logout_request(&d, "350000000001", None);
    let bad_lo = lo.replacen(&lo[20..24], "AAAA", 1);
    assert_eq!(b.get(&format!("/sso/logout?SSOLogoutRequest={}", q(&bad_lo))).status, 400);
}

#[test]
fn forms_need_their_csrf_token() {
    let (d, _) = node();
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let mut b = Browser::new(&d);
    let page = b.login_page(&tok);
    let no_csrf = b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW), ("csrf", "")]);
    assert_eq!(no_csrf.status, 403);
    // The same form posted from another browser (another VNETFORM cookie) is refused.
    let mut other = Browser::new(&d);
    other.login_page(&tok);
    assert_eq!(other.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW)]).status, 403);
    // A csrf token of this form does not fit another SSORequest.
    let tok2 = sso_request(&d, SP2_ID, SP2_KEY, SP2_RETURN);
    assert_eq!(b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW), ("SSORequest", &tok2)]).status, 403);
    assert!(!b.cookies.contains_key("VNETSSO") && !other.cookies.contains_key("VNETSSO"));
    // The token's age is checked at the GET only: the form stays good within its csrf lifetime.
    assert_eq!(b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW)]).status, 302);
}

#[test]
fn logout_ends_every_session_and_ticket() {
    let (d, id) = node();
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let mut a = Browser::new(&d);
    let mut b = Browser::new(&d);
    a.sso_login(&tok, "fz001", PW);
    let unused = b.sso_login(&tok, "fz001", PW);
    let r = a.get(&format!("/sso/logout?SSOLogoutRequest={}", q(&logout_request(&d, &id, None))));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some(RETURN));
    assert!(!a.cookies.contains_key("VNETSSO"), "cookie cleared");
    assert_eq!(b.login_page(&tok).status, 200, "the other browser's session ended too");
    assert_eq!(validate(&d, SP_ID, SP_KEY, &unused).result(), -20501, "unused tickets revoked");
}

#[test]
fn user_logout_codes_and_effect() {
    let (d, id) = node();
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let mut b = Browser::new(&d);
    let unused = b.sso_login(&tok, "fz001", PW);
    let logout = |user: &str| d.call_named(SPS, "UserLogout", SP_KEY, USER_LOGOUT, &[("SPID", SP_ID), ("VNetUserID", user)]);
    let r = logout(&id);
    assert_eq!((r.result(), r.order.clone()), (0, vec!["Result".to_string(), "ErrDescription".to_string()]));
    assert_eq!(b.login_page(&tok).status, 200, "session ended");
    assert_eq!(validate(&d, SP_ID, SP_KEY, &unused).result(), -20501, "tickets revoked");
    assert_eq!(logout(&id).result(), 0, "a local user without sessions: 0");
    assert_eq!(logout("350000009999").result(), -20504);
    assert_eq!(logout("36000000000").result(), -21512);
    assert_eq!(logout("").result(), -21512);
}

#[test]
fn status_change_and_password_reset_end_sessions() {
    let (d, id) = node();
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let mut b = Browser::new(&d);
    b.sso_login(&tok, "fz001", PW);
    let r = d.call_named(BSS, "UserStatusChange", BSS_KEY, &["SrcDeviceNo", "VNetUserID", "Status", "Reason", "TransactionID"],
        &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("Status", "02"), ("TransactionID", "ST-1")]);
    assert_eq!(r.result(), 0);
    assert_eq!(b.login_page(&tok).status, 200, "frozen: session ended");
    let r = d.call_named(BSS, "UserStatusChange", BSS_KEY, &["SrcDeviceNo", "VNetUserID", "Status", "Reason", "TransactionID"],
        &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("Status", "00"), ("TransactionID", "ST-2")]);
    assert_eq!(r.result(), 0);
    b.sso_login(&tok, "fz001", PW);
    let pw = enc(BSS_KEY, "N3w-Passw0rd");
    let r = d.call_named(BSS, "PasswordReset", BSS_KEY, &["SrcDeviceNo", "VNetUserID", "NewPassword", "TransactionID"],
        &[("SrcDeviceNo", BSS_ID), ("VNetUserID", &id), ("NewPassword", &pw), ("TransactionID", "PR-1")]);
    assert_eq!(r.result(), 0);
    assert_eq!(b.login_page(&tok).status, 200, "reset: session ended");
}

// ---- /pay

fn pay_page(b: &mut Browser, tok: &str) -> Http {
    b.get(&format!("/pay?PayRequest={}", q(tok)))
}

fn pay_answer(r: &Http) -> (String, String) {
    assert_eq!(r.status, 302, "{}", r.text());
    let f = answer(r.header("Location").unwrap(), "PayResponse", SP_KEY, 4);
    (f[0].clone(), f[2].clone())
}

#[test]
fn pay_confirm_cancel_and_payment_query() {
    let (d, id) = node();
    let mut b = Browser::new(&d);
    b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    let tok = pay_request(&d, "ORD-1", PERUSE, "350");
    let page = pay_page(&mut b, &tok);
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    let html = page.text();
    for shown in ["福建星空音乐", "单次下载", "¥3.50", "ORD-1", "fz001"] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    let pq = payment_query(&d, "ORD-1");
    assert_eq!((pq.result(), pq.get("PaymentStatus"), pq.get("TransactionID"), pq.get("Fee")), (0, "1", "", "350"), "pending");
    assert_eq!(pq.order, ["Result", "ErrDescription", "PaymentStatus", "TransactionID", "Fee", "PayTime"]);

    let (result, txid) = pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")]));
    assert_eq!(result, "0");
    assert!(txid.starts_with("PY") && txid.len() == 26 && txid.bytes().all(|c| c.is_ascii_alphanumeric()), "{txid}");
    let pq = payment_query(&d, "ORD-1");
    assert_eq!((pq.get("PaymentStatus"), pq.get("TransactionID"), pq.get("Fee")), ("0", txid.as_str(), "350"));
    assert_eq!(pq.get("PayTime").len(), 19);
    let cq = d.call_named(SPS, "ChargeQuery", SP_KEY, &["SPID", "TransactionID"], &[("SPID", SP_ID), ("TransactionID", &txid)]);
    assert_eq!((cq.result(), cq.get("VNetUserID"), cq.get("Fee"), cq.get("ServiceItemID")), (0, id.as_str(), "350", PERUSE));
    let records: Vec<_> = d.outbox().into_iter().filter(|r| r.operation == "BatchSync" && r.field("TransactionID") == txid).collect();
    assert_eq!(records.len(), 1, "one CHARGE record");

    // A repeat of the paid OrderID (even a new PayRequest) answers the first result, charges nothing.
    let again = pay_request(&d, "ORD-1", PERUSE, "350");
    assert_eq!(pay_answer(&pay_page(&mut b, &again)), ("0".to_string(), txid.clone()));
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")])), ("0".to_string(), txid.clone()));
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "cancel")])), ("0".to_string(), txid.clone()), "paid is final");
    let charges = d.outbox().into_iter().filter(|r| r.operation == "BatchSync" && r.field("VNetUserID") == id).count();
    assert_eq!(charges, 1);

    // Cancel: -20512, PaymentStatus 2, no TransactionID; then it may be tried again.
    let tok = pay_request(&d, "ORD-2", PERUSE, "200");
    let page = pay_page(&mut b, &tok);
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "cancel")])), ("-20512".to_string(), String::new()));
    let pq = payment_query(&d, "ORD-2");
    assert_eq!((pq.get("PaymentStatus"), pq.get("TransactionID")), ("2", ""));
    let page = pay_page(&mut b, &tok);
    assert_eq!(page.status, 200, "a cancelled OrderID may be tried again");
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")])).0, "0");
    assert_eq!(payment_query(&d, "ORD-2").get("PaymentStatus"), "0");

    // PaymentQuery codes.
    assert_eq!(payment_query(&d, "ORD-NONE").result(), -21004);
    assert_eq!(payment_query(&d, &"O".repeat(33)).result(), -21537);
    assert_eq!(payment_query(&d, "").result(), -21537);
    let other = d.call_named(SPS, "PaymentQuery", SP2_KEY, PAYMENT_QUERY, &[("SPID", SP2_ID), ("OrderID", "ORD-1")]);
    assert_eq!(other.result(), -21004, "another SP's OrderID");
}

#[test]
fn pay_refusals_follow_the_charge_rules() {
    let (d, _) = node();
    user(&d, "poor01", PW, &["--user-type", "1", "--credit-limit", "100"]);
    let mut b = Browser::new(&d);
    b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    let confirm = |b: &mut Browser, order: &str, item: &str, fee: &str| {
        let page = pay_page(b, &pay_request(&d, order, item, fee));
        assert_eq!(page.status, 200, "{}", page.text());
        pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")]))
    };
    assert_eq!(confirm(&mut b, "F-1", PERUSE, "200000").0, "0", "any fee up to price × 1000");
    assert_eq!(confirm(&mut b, "F-2", PERUSE, "200001").0, "-21518");
    assert_eq!(confirm(&mut b, "F-3", MONTHLY, "1000").0, "-21501");
    assert_eq!(payment_query(&d, "F-3").get("PaymentStatus"), "3", "failed");
    // An item that is not the SP's: refused at once, before the user decides.
    let r = pay_page(&mut b, &pay_request(&d, "F-4", "3500000100000199", "200"));
    assert_eq!(pay_answer(&r).0, "-20006");
    // Credit: postpaid over the monthly limit.
    let mut p = Browser::new(&d);
    let page = pay_page(&mut p, &pay_request(&d, "F-5", PERUSE, "200"));
    assert!(page.text().contains(r#"name="password""#), "no session: the page asks for the password");
    let bad = p.submit(&page, "/pay", &[("action", "confirm"), ("account", "poor01"), ("password", "wrong-pass")]);
    assert_eq!(bad.status, 200, "wrong password: the page again");
    assert!(bad.text().contains("role=\"alert\""));
    let r = p.submit(&page, "/pay", &[("action", "confirm"), ("account", "poor01"), ("password", PW)]);
    assert_eq!(pay_answer(&r).0, "-21003");
    assert!(p.cookies.contains_key("VNETSSO"), "logged in on the pay page");
}

#[test]
fn two_tabs_confirming_at_once_charge_once() {
    let (d, id) = node();
    let mut b = Browser::new(&d);
    b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    let page = pay_page(&mut b, &pay_request(&d, "ORD-TABS", PERUSE, "200"));
    let form: Vec<(String, String)> = hidden_fields(&page.text());
    let cookies = b.cookies.clone();
    let answers: Vec<(String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let (form, cookies, d) = (form.clone(), cookies.clone(), &d);
                s.spawn(move || {
                    let mut tab = Browser { d, cookies };
                    let mut f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    f.push(("action", "confirm"));
                    pay_answer(&tab.send("POST", "/pay", &f))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a == &answers[0] && a.0 == "0"), "{answers:?}");
    let charges = d.outbox().into_iter().filter(|r| r.operation == "BatchSync" && r.field("VNetUserID") == id).count();
    assert_eq!(charges, 1, "one charge for six confirmations");
}

// ---- password change

#[test]
fn password_change_queues_the_notification() {
    let (d, id) = node();
    let mut b = Browser::new(&d);
    assert_eq!(b.get("/account/password").status, 303, "no session: to the login");
    b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    let mut other = Browser::new(&d);
    other.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", PW);
    let page = b.get("/account/password");
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    let form = |b: &mut Browser, old: &str, new: &str, new2: &str| {
        let r = b.submit(&page, "/account/password", &[("old_password", old), ("new_password", new), ("new_password2", new2)]);
        assert_eq!(r.status, 200);
        r.text()
    };
    assert!(form(&mut b, PW, "Good-Pass1", "Good-Pass2").contains("不一致"), "mismatch");
    assert!(form(&mut b, PW, "aaaaaa", "aaaaaa").contains("过于简单"), "weak");
    assert!(form(&mut b, PW, "fz001", "fz001").contains("过于简单"), "weak: equal to the account");
    assert!(form(&mut b, "wrong-pass", "Good-Pass1", "Good-Pass1").contains("原密码错误"));
    assert!(d.outbox_for_user("PUserPasswordNotify", &id).is_empty(), "nothing queued for a refused change");
    assert!(form(&mut b, PW, "Good-Pass1", "Good-Pass1").contains("密码已修改"));
    let queued = d.outbox_for_user("PUserPasswordNotify", &id);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].names(), ["VNetUserID", "Password", "ChangeTime"]);
    assert_eq!(key(CENTRE_KEY).decrypt_b64_str(queued[0].field("Password")).unwrap(), "Good-Pass1", "under the centre key");
    assert_eq!(queued[0].key_version, Some(1));
    assert!(!d.log().contains("Good-Pass1"), "no password in the log");
    // This session stays, the other browser's ends; the new password logs in.
    assert_eq!(b.get("/account/password").status, 200);
    assert_eq!(other.login_page(&sso_request(&d, SP_ID, SP_KEY, RETURN)).status, 200);
    let mut fresh = Browser::new(&d);
    fresh.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "fz001", "Good-Pass1");
    // Logging out from the node's own page.
    let page = b.get("/account/password");
    let logout_form = page.text().split("</form>").nth(1).unwrap().to_string();
    let r = b.submit(&Http { status: 200, headers: vec![], body: logout_form.into_bytes() }, "/sso/logout", &[]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("已安全退出"));
    assert_eq!(b.get("/account/password").status, 303);
}

#[test]
fn plain_login_reaches_the_account_page() {
    let (d, _) = node();
    let mut b = Browser::new(&d);
    let page = b.get("/sso/login");
    assert_eq!(page.status, 200);
    let r = b.submit(&page, "/sso/login", &[("account", "fz001"), ("password", PW)]);
    assert_eq!((r.status, r.header("Location")), (303, Some("/account/password")));
    assert_eq!(b.get("/account/password").status, 200);
    assert_eq!(b.get("/sso/login").status, 303, "logged in already");
    let css = b.get("/static/vnetd.css");
    assert_eq!((css.status, css.header("Content-Type")), (200, Some("text/css; charset=utf-8")));
    assert_eq!(b.send("PUT", "/pay", &[]).status, 405);
}

#[test]
fn accounts_of_other_provinces_log_in_through_the_centre() {
    let sim = crate::centre_sim::CentreSim::start(&[]);
    let d = Daemon::start_with("[sync]\ncentre_timeout_ms = 1000\n");
    d.ok(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"]);
    d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &format!("http://{}/centre", sim.addr)]);
    std::thread::sleep(Duration::from_millis(1100));
    let tok = sso_request(&d, SP_ID, SP_KEY, RETURN);
    let mut b = Browser::new(&d);
    let page = b.login_page(&tok);
    let wrong = b.submit(&page, "/sso/login", &[("account", "roamer@gd"), ("password", "wrong-password")]);
    assert_eq!(wrong.status, 200, "the centre's refusal: the form again");
    assert!(wrong.text().contains("role=\"alert\""));
    let t = b.sso_login(&tok, "roamer@gd", "Roam-Secret-77");
    let v = validate(&d, SP_ID, SP_KEY, &t);
    assert_eq!(v.result(), 0, "{v:?}");
    assert_eq!(
        (v.get("VNetUserID"), v.get("AccountType"), v.get("Account"), v.get("ProvinceID"), v.get("CityCode"), v.get("NumFlag"), v.get("Alias")),
        ("440000000001", "01", "roamer@gd", "44", "020", "", "")
    );
    // The password of another province's user is changed at home.
    let page = b.get("/account/password");
    let r = b.submit(&page, "/account/password", &[("old_password", "Roam-Secret-77"), ("new_password", "Good-Pass1"), ("new_password2", "Good-Pass1")]);
    assert!(r.text().contains("其他省份"), "{}", r.text());
    // UserLogout knows the user by the session.
    let logout = |user: &str| d.call_named(SPS, "UserLogout", SP_KEY, USER_LOGOUT, &[("SPID", SP_ID), ("VNetUserID", user)]);
    assert_eq!(logout("440000000001").result(), 0);
    assert_eq!(logout("440000000001").result(), -20504, "no session left, not a local user");
    assert_eq!(b.login_page(&tok).status, 200);
}

#[test]
fn users_of_other_provinces_pay_through_the_centre() {
    let mut sim = crate::centre_sim::CentreSim::start(&[]);
    let d = Daemon::start_with("[sync]\ncentre_timeout_ms = 1000\n");
    d.ok(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"]);
    d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &format!("http://{}/centre", sim.addr)]);
    let cat = d.dir.path().join("catalog.toml");
    std::fs::write(&cat, catalog().replace("scope = \"province\"", "scope = \"province\"\nroam_out = true")).unwrap();
    d.ok(&["catalog", "import", cat.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1100));
    let mut b = Browser::new(&d);
    b.sso_login(&sso_request(&d, SP_ID, SP_KEY, RETURN), "roamer@gd", "Roam-Secret-77");
    let charges_at_centre = |sim: &crate::centre_sim::CentreSim| sim.count("SELECT count(*) FROM message WHERE operation = 'Charge'");

    // Confirm: the centre's Charge decides (the home province bills the user); the node keeps a
    // roaming usage row (RoamType 1) for reconciliation and SETTLE.
    let page = pay_page(&mut b, &pay_request(&d, "R-1", PERUSE, "200"));
    assert_eq!(page.status, 200, "{}", page.text());
    let (result, txid) = pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")]));
    assert_eq!(result, "0");
    assert!(txid.starts_with("PY") && txid.len() == 26, "{txid}");
    let pq = payment_query(&d, "R-1");
    assert_eq!((pq.get("PaymentStatus"), pq.get("TransactionID"), pq.get("Fee")), ("0", txid.as_str(), "200"));
    assert_eq!(charges_at_centre(&sim), 1);
    let db = rusqlite::Connection::open(&d.db).unwrap();
    let row: (String, String, i64) = db
        .query_row("SELECT roam_type, vnet_user_id, fee FROM charge WHERE transaction_id = ?1", [&txid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(row, ("1".to_string(), "440000000001".to_string(), 200));
    // A repeat answers the first result and sends nothing.
    assert_eq!(pay_answer(&pay_page(&mut b, &pay_request(&d, "R-1", PERUSE, "200"))), ("0".to_string(), txid.clone()));
    assert_eq!(charges_at_centre(&sim), 1);

    // The centre unreachable: -22500, and the retry asks again under the same TransactionID (the
    // centre may have charged before the answer was lost).
    sim.stop();
    let page = pay_page(&mut b, &pay_request(&d, "R-2", PERUSE, "300"));
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")])), ("-22500".to_string(), String::new()));
    assert_eq!(payment_query(&d, "R-2").get("PaymentStatus"), "3");
    let kept: String = db.query_row("SELECT attempt_txid FROM payment WHERE order_id = 'R-2'", [], |r| r.get(0)).unwrap();
    assert!(kept.starts_with("PY"), "{kept}");
    sim.restart(&["--key", CENTRE_KEY], &[]);
    let page = pay_page(&mut b, &pay_request(&d, "R-2", PERUSE, "300"));
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")])), ("0".to_string(), kept.clone()));
    assert_eq!(payment_query(&d, "R-2").get("TransactionID"), kept);

    // An item that is not approved for roaming out: -21001, nothing sent.
    d.ok(&["roam", "revoke", "--sp", SP_ID, "--service", SERVICE, "--item", PERUSE]);
    std::thread::sleep(Duration::from_millis(2100));
    let page = pay_page(&mut b, &pay_request(&d, "R-3", PERUSE, "200"));
    assert_eq!(pay_answer(&b.submit(&page, "/pay", &[("action", "confirm")])).0, "-21001");
    assert_eq!(charges_at_centre(&sim), 2);
}
