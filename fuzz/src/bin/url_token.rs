//! The URL tokens of spec 5 (`ID$Base64(3DES(f1$…$Digest))`, URL-encoded) as the browser flows
//! read them: the query string or form (`web::parse_form`), then the request-token check of
//! `web::tokens` (SP lookup, the SP's keys in effect, field split with the one field that may
//! hold `$`, Digest, ReturnURL prefix, TimeStamp), the response-token opener of `crypto::token`,
//! and the CSRF token of the forms.
//!
//! Input (at most 8 KiB, as `fuzz/run` asks AFL++ with -G): one byte choosing the mode, then
//! - mode 0: a query string or form body, read as the pages read it;
//! - mode 1: a token plaintext, encrypted under the SP's key, then opened with a layout chosen by
//!   the next byte;
//! - mode 2: field values separated by NUL, sealed as a well-formed request token of a layout
//!   chosen by the next byte (correct Digest), URL-encoded into a query, then read back.
//!
//! Asserts: nothing panics; an opened token has its layout's field count, a ReturnURL under one
//! of the SP's prefixes and a Digest that verifies; decryption splits a plaintext exactly (the
//! fields and Digest joined with `$` are the plaintext), reads spaces as `+`; a sealed token of
//! the right shape opens to the values sealed (seal → URL → open round trip).

use afl::fuzz;
use std::sync::Arc;
use vnetd::crypto::csrf::Csrf;
use vnetd::crypto::decrypt_enc_field;
use vnetd::fuzzing::{
    check_digest, decrypt_body, open_request_token, open_token, parse_form, return_url_allowed, seal, split_id, Clock,
    KeyVersion, Layout, Opened, Peer, Refused, Rules, TdesKey, PAY_REQUEST, SSO_LOGOUT_REQUEST, SSO_REQUEST,
};
use vnetd::web::tokens::append;

const SPID: &str = "35000001";
const DEVICE_NO: &str = "3500000000000101";
const IV: &str = "0102030405060708";
const KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
const OLD_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a";
/// 2026-11-29 10:00:00 +08:00, the TimeStamp of the seeds.
const NOW: i64 = 1_795_917_600;

struct World {
    sp: Arc<Peer>,
    key: TdesKey,
    clock: Clock,
    rules: Rules,
    csrf: Csrf,
}

fn world() -> World {
    let key = TdesKey::from_hex(KEY, IV).unwrap();
    let old = TdesKey::from_hex(OLD_KEY, IV).unwrap();
    let sp = Arc::new(Peer {
        id: SPID.into(),
        kind: "sp".into(),
        name: "SP".into(),
        active: true,
        url: None,
        return_urls: vec!["http://sp.example/".into(), "https://shop.example".into()],
        ops: None,
        gb2312: false,
        // The newest key took effect a minute ago: the previous one still verifies (grace).
        keys: vec![
            KeyVersion { version: 1, key: old, effect_at: 0, emergency: false },
            KeyVersion { version: 2, key: key.clone(), effect_at: NOW - 60, emergency: false },
        ],
    });
    let tz = vnetd::clock::parse_utc_offset("+08:00").unwrap();
    World {
        sp,
        key,
        clock: Clock::manual(tz, NOW),
        rules: Rules { grace_s: 24 * 3600, tolerance_s: 300 },
        csrf: Csrf::new(b"0123456789abcdef0123456789abcdef".to_vec()),
    }
}

const MAX_INPUT: usize = 8 * 1024;

const LAYOUTS: [(&str, &Layout); 3] =
    [("SSORequest", &SSO_REQUEST), ("SSOLogoutRequest", &SSO_LOGOUT_REQUEST), ("PayRequest", &PAY_REQUEST)];

fn main() {
    let w = world();
    fuzz!(|data: &[u8]| {
        // A token reaches the pages in a request line (≤ 8 KiB) or a form field; larger inputs
        // only make 3DES dominate (tens of ms each with coverage instrumentation), no new paths.
        if data.len() > MAX_INPUT {
            return;
        }
        let Some((&mode, rest)) = data.split_first() else { return };
        match mode % 3 {
            0 => query(&w, rest),
            1 => plaintext(&w, rest),
            _ => sealed(&w, rest),
        }
    });
}

fn open_request(w: &World, tok: &str, layout: &Layout, check_time: bool) -> Result<Opened, Refused> {
    let r = open_request_token(|id| (id == SPID).then(|| w.sp.clone()), &w.clock, w.rules, tok, layout, check_time);
    if let Ok(o) = &r {
        assert_eq!(o.values.len(), layout.fields.len());
        assert_eq!(o.sp.id, SPID);
        assert!(return_url_allowed(&w.sp, o.return_url()));
        assert!(o.return_url().bytes().all(|b| b > 0x20 && b != 0x7f), "ReturnURL with a control character or space");
    }
    r
}

/// Mode 0: a query string or form as the pages read it.
fn query(w: &World, q: &[u8]) {
    let form = parse_form(q);
    for (name, layout) in LAYOUTS {
        if let Some(tok) = form.get(name) {
            let _ = open_request(w, tok, layout, true);
            let _ = open_request(w, tok, layout, false);
        }
    }
    // The answers an SP opens: SSOResponse (Result$Ticket$TimeStamp) and PayResponse
    // (Result$OrderID$TransactionID$TimeStamp), under the node's DeviceNo.
    for (name, n) in [("SSOResponse", 3), ("PayResponse", 4)] {
        if let Some(tok) = form.get(name) {
            if let Ok((id, fields, _digest)) = open_token(tok, n, n, |id| (id == DEVICE_NO).then(|| w.key.clone())) {
                assert_eq!(id, DEVICE_NO);
                assert_eq!(fields.len(), n);
                assert!(fields.iter().all(|f| !f.contains('$')));
            }
        }
    }
    if let Some(t) = form.get("csrf") {
        let binding = form.get("SSORequest").map(String::as_str).unwrap_or("");
        let _ = w.csrf.check(t, "login", "0123456789abcdefghijkl", binding, NOW);
    }
    if let Some(v) = form.get("enc") {
        if let Ok(s) = decrypt_enc_field(&w.key, v) {
            assert!(!s.is_empty());
        }
    }
}

/// Mode 1: any plaintext under the SP's key.
fn plaintext(w: &World, data: &[u8]) {
    let Some((&sel, plain)) = data.split_first() else { return };
    let (_, layout) = LAYOUTS[sel as usize % LAYOUTS.len()];
    let body = w.key.encrypt_b64(plain);
    let n = layout.fields.len();
    // With the layout's free field, and with none (every field without `$`).
    for free in [layout.free, n] {
        let got = decrypt_body(&w.key, &body, n, free);
        let Ok(text) = std::str::from_utf8(plain) else {
            assert!(got.is_err(), "non-UTF-8 plaintext opened");
            continue;
        };
        let parts = text.split('$').count();
        let fits = parts == n + 1 || (parts > n + 1 && free < n);
        match got {
            Ok((fields, digest)) => {
                assert!(fits, "{parts} parts opened as {n} fields (free {free})");
                assert_eq!(fields.len(), n);
                let mut joined = fields.join("$");
                joined.push('$');
                joined.push_str(&digest);
                assert_eq!(joined, text, "the split is not exact");
                assert!(!digest.contains('$'));
                for (i, f) in fields.iter().enumerate() {
                    assert!(i == free || !f.contains('$'), "field {i} holds a `$`");
                }
            }
            Err(e) => assert!(!fits, "{parts} parts refused for {n} fields (free {free}): {e}"),
        }
        // Spaces read as `+` (a token URL-decoded with `+` as space).
        let spaced = body.replace('+', " ");
        assert_eq!(decrypt_body(&w.key, &spaced, n, free).is_ok(), fits);
    }
    let tok = format!("{SPID}${body}");
    assert_eq!(split_id(&tok), Some((SPID, body.as_str())));
    let _ = open_request(w, &tok, layout, true);
}

/// Mode 2: a well-formed token of chosen values, through the URL and back.
fn sealed(w: &World, data: &[u8]) {
    let Some((&sel, values)) = data.split_first() else { return };
    let (name, layout) = LAYOUTS[sel as usize % LAYOUTS.len()];
    let values = String::from_utf8_lossy(values);
    let fields: Vec<&str> = values.split('\0').collect();
    let mut over = vec![SPID];
    over.extend(fields.iter().copied());
    let key = if sel & 0x80 != 0 { &w.sp.keys[0].key } else { &w.key };
    let tok = seal(key, SPID, &fields, &over);
    let url = append("", name, &tok);
    let form = parse_form(url.strip_prefix('?').expect("append starts a query").as_bytes());
    assert_eq!(form.get(name), Some(&tok), "the token does not survive the URL");
    let (_, _, digest) = open_token(&tok, fields.len(), fields.len(), |_| Some(key.clone())).unwrap_or_else(|_| {
        // Only a `$` inside a value splits it differently.
        assert!(fields.iter().any(|f| f.contains('$')), "a sealed token does not open");
        (String::new(), Vec::new(), String::new())
    });
    if !digest.is_empty() {
        assert!(check_digest(&digest, &over));
    }
    let shaped = fields.len() == layout.fields.len()
        && fields.iter().enumerate().all(|(i, f)| i == layout.free || !f.contains('$'));
    let got = open_request(w, &tok, layout, false);
    if !shaped {
        return;
    }
    match got {
        Ok(o) => assert_eq!(o.values, fields),
        Err(Refused::ForeignReturnUrl) => assert!(!return_url_allowed(&w.sp, fields[layout.free])),
        Err(e) => panic!("a well-formed token refused: {e:?}"),
    }
    // With the time check: stale unless the TimeStamp is within the tolerance.
    if let Err(Refused::Stale) = open_request(w, &tok, layout, true) {
        let ts = layout.fields.iter().position(|f| *f == "TimeStamp").unwrap();
        let t = w.clock.parse_ts(fields[ts]);
        assert!(t.is_none_or(|t| (t - NOW).abs() > w.rules.tolerance_s));
    }
}
