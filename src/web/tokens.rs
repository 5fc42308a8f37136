//! The URL tokens of the browser flows (spec 5, 11): SSORequest, SSOLogoutRequest and PayRequest
//! from SPs, SSOResponse and PayResponse back to them, and the ReturnURL rules.

use crate::app::App;
use crate::clock::Clock;
use crate::crypto::token;
use crate::crypto::TdesKey;
use crate::domain::peers::Peer;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::sync::Arc;

/// Why a token from an SP was refused. Shown to the user as one page; never its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Malformed, unknown SP, undecryptable or a wrong Digest.
    Invalid,
    /// TimeStamp outside `clock_tolerance_s` (checked at the GET only).
    Stale,
    /// ReturnURL outside the SP's registered prefixes.
    ForeignReturnUrl,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Invalid => "invalid",
            Refused::Stale => "stale",
            Refused::ForeignReturnUrl => "foreign_return_url",
        }
    }
}

/// The layout of a request token: its fields after the SP's id (the Digest is over the id and
/// then these fields in order), and which field may contain `$`.
pub struct Layout {
    pub fields: &'static [&'static str],
    pub free: usize,
}

pub const SSO_REQUEST: Layout = Layout { fields: &["TimeStamp", "ReturnURL"], free: 1 };
pub const SSO_LOGOUT_REQUEST: Layout = Layout { fields: &["VNetUserID", "TimeStamp", "ReturnURL"], free: 2 };
pub const PAY_REQUEST: Layout = Layout {
    fields: &["OrderID", "ServiceID", "ServiceItemID", "Fee", "ReturnURL", "TimeStamp"],
    free: 4,
};

/// An opened, verified request token.
#[derive(Debug, Clone)]
pub struct Opened {
    pub sp: Arc<Peer>,
    /// The fields in the layout's order.
    pub values: Vec<String>,
    layout_fields: &'static [&'static str],
}

impl Opened {
    pub fn get(&self, name: &str) -> &str {
        self.layout_fields.iter().position(|f| *f == name).map(|i| self.values[i].as_str()).unwrap_or("")
    }
    pub fn return_url(&self) -> &str {
        self.get("ReturnURL")
    }
}

/// Open a request token: the SP must be an active peer of kind `sp`; the token must decrypt under
/// one of the SP's keys in effect (the newest, or the previous during the grace period) with a
/// correct Digest; the ReturnURL must start with one of the SP's prefixes; with `check_time`,
/// the TimeStamp must be within `clock_tolerance_s` of node time.
pub fn open(app: &App, tok: &str, layout: &Layout, check_time: bool) -> Result<Opened, Refused> {
    let s = &app.cfg.security;
    let rules = Rules { grace_s: s.key_grace_h * 3600, tolerance_s: s.clock_tolerance_s };
    open_with(|id| app.peers.get(id), &app.clock, rules, tok, layout, check_time)
}

/// The settings [`open`] takes from the config.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `key_grace_h` in seconds.
    pub grace_s: i64,
    /// `clock_tolerance_s`.
    pub tolerance_s: i64,
}

/// [`open`] with the peer lookup, the clock and the settings given (the fuzz target calls it).
pub fn open_with(
    peer: impl FnOnce(&str) -> Option<Arc<Peer>>,
    clock: &Clock,
    rules: Rules,
    tok: &str,
    layout: &Layout,
    check_time: bool,
) -> Result<Opened, Refused> {
    let (id, body) = token::split_id(tok).ok_or(Refused::Invalid)?;
    let sp = peer(id).filter(|p| p.active && p.kind == "sp").ok_or(Refused::Invalid)?;
    let now = clock.unix();
    let mut opened = None;
    for k in sp.verify_keys(now, rules.grace_s) {
        let Ok((values, digest)) = token::decrypt_body(&k.key, body, layout.fields.len(), layout.free) else { continue };
        let mut over: Vec<&str> = vec![id];
        over.extend(values.iter().map(String::as_str));
        if token::check_digest(&digest, &over) {
            opened = Some(values);
            break;
        }
    }
    let values = opened.ok_or(Refused::Invalid)?;
    let o = Opened { sp: sp.clone(), values, layout_fields: layout.fields };
    if !return_url_allowed(&o.sp, o.return_url()) {
        return Err(Refused::ForeignReturnUrl);
    }
    if check_time {
        let ok = clock.parse_ts(o.get("TimeStamp")).is_some_and(|t| (t - now).abs() <= rules.tolerance_s);
        if !ok {
            return Err(Refused::Stale);
        }
    }
    Ok(o)
}

/// Does `url` start with one of the SP's registered prefixes? A prefix must be an absolute
/// http(s) URL; the URL may not carry characters that could end a header line.
pub fn return_url_allowed(sp: &Peer, url: &str) -> bool {
    let clean = !url.is_empty() && url.bytes().all(|b| b > 0x20 && b != 0x7f);
    clean && sp.return_urls.iter().any(|p| prefix_matches(p, url))
}

/// A prefix that is a bare origin (`http://sp.example`) matches only that host, not
/// `http://sp.example.evil.test`.
fn prefix_matches(prefix: &str, url: &str) -> bool {
    let Some(o) = origin(prefix) else { return false };
    let Some(rest) = url.strip_prefix(prefix) else { return false };
    o.len() < prefix.len() || rest.is_empty() || rest.starts_with(['/', '?', '#'])
}

/// `scheme://host[:port]` of an absolute http(s) URL.
pub fn origin(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_len == 0 {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_len])
}

/// The origins the SP's ReturnURLs may go to (for the CSP `form-action`).
pub fn sp_origins(sp: &Peer) -> Vec<String> {
    let mut out: Vec<String> = sp.return_urls.iter().filter_map(|p| origin(p)).map(str::to_string).collect();
    out.sort();
    out.dedup();
    out
}

/// `ReturnURL` with `name=value` appended: `&` when it has a query already, else `?` (spec 11).
pub fn append(return_url: &str, name: &str, value: &str) -> String {
    let sep = if return_url.contains('?') { '&' } else { '?' };
    format!("{return_url}{sep}{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC))
}

/// The SP's key for answers: the newest in effect.
fn answer_key(app: &App, sp: &Peer) -> Option<TdesKey> {
    sp.current_key(app.clock.unix()).map(|k| k.key.clone())
}

/// `DeviceNo$Base64(3DES(Result$Ticket$TimeStamp$Digest))`, Digest over Result + DeviceNo +
/// Ticket + TimeStamp (5.1).
pub fn sso_response(app: &App, sp: &Peer, result: i32, ticket: &str) -> Option<String> {
    let key = answer_key(app, sp)?;
    let (dev, ts, r) = (app.cfg.node.device_no.as_str(), app.clock.now_ts(), result.to_string());
    Some(token::seal(&key, dev, &[&r, ticket, &ts], &[&r, dev, ticket, &ts]))
}

/// `DeviceNo$Base64(3DES(Result$OrderID$TransactionID$TimeStamp$Digest))`, Digest over Result +
/// DeviceNo + OrderID + TransactionID + TimeStamp (5.3).
pub fn pay_response(app: &App, sp: &Peer, result: i32, order_id: &str, txid: &str) -> Option<String> {
    let key = answer_key(app, sp)?;
    let (dev, ts, r) = (app.cfg.node.device_no.as_str(), app.clock.now_ts(), result.to_string());
    Some(token::seal(&key, dev, &[&r, order_id, txid, &ts], &[&r, dev, order_id, txid, &ts]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_append() {
        assert_eq!(origin("http://sp.example/cb"), Some("http://sp.example"));
        assert_eq!(origin("https://sp.example:8443"), Some("https://sp.example:8443"));
        assert_eq!(origin("https://sp.example?x"), Some("https://sp.example"));
        assert_eq!(origin("ftp://sp.example/"), None);
        assert_eq!(origin("http:///x"), None);
        assert_eq!(append("http://sp/cb", "SSOResponse", "a$b+c/="), "http://sp/cb?SSOResponse=a%24b%2Bc%2F%3D");
        assert_eq!(append("http://sp/cb?x=1", "PayResponse", "z"), "http://sp/cb?x=1&PayResponse=z");
    }

    fn sp(prefixes: &[&str]) -> Peer {
        Peer {
            id: "35000001".into(),
            kind: "sp".into(),
            name: String::new(),
            active: true,
            url: None,
            return_urls: prefixes.iter().map(|s| s.to_string()).collect(),
            ops: None,
            gb2312: false,
            keys: Vec::new(),
        }
    }

    #[test]
    fn return_url_prefix_rule() {
        let p = sp(&["http://sp.example/"]);
        assert!(return_url_allowed(&p, "http://sp.example/back?x=1"));
        assert!(!return_url_allowed(&p, "http://sp.example.evil.test/"));
        assert!(!return_url_allowed(&p, "http://evil.test/?http://sp.example/"));
        assert!(!return_url_allowed(&p, "http://sp.example/a\r\nSet-Cookie: x"));
        assert!(!return_url_allowed(&sp(&[]), "http://sp.example/"));
        assert!(!return_url_allowed(&sp(&["javascript:"]), "javascript:alert(1)"), "only http(s) prefixes count");
        let bare = sp(&["http://sp.example"]);
        assert!(return_url_allowed(&bare, "http://sp.example/cb"));
        assert!(return_url_allowed(&bare, "http://sp.example"));
        assert!(!return_url_allowed(&bare, "http://sp.example.evil.test/"));
        assert!(!return_url_allowed(&bare, "http://sp.example@evil.test/"));
    }
}
