//! The contract test: the declarations in the code (`vnetd::spec::incoming::INCOMING` for the served
//! operations, `vnetd::spec::outbound` for the outgoing ones and the BatchSync record layouts)
//! against the field lists written in `../shared/spec/INTERFACES.md` (sections 4 and 6).
//!
//! The spec writes most lists out ("Request: SPID, ServiceID O, …", "Response: …"). Where it
//! writes one by reference, the reference is resolved explicitly here — never skipped:
//!
//! | spec text | resolved as |
//! |---|---|
//! | 4.1 PhoneNumAuth "Response: as UserAuth plus NumFlag" | UserAuth's response + NumFlag |
//! | 4.1 GetTime "Request: SPID" with "answered for any SPID" | SPID optional, any form (`Ty::S(usize::MAX)`) |
//! | 4.2 `getUserProduct(productid, ip)` (legacy, rpc style, no Request line) | not in the table: served by `api/legacy.rs` |
//! | 4.3 GetUserinfo "as 4.1 with SrcDeviceNo in place of SPID" | 4.1 GetUserinfo, SPID → SrcDeviceNo |
//! | 4.3 "ServiceAuth, Order, …, MPhoneRegistry … the same fields … as 4.1 with `SrcDeviceNo` added before `SPID`; for MPhoneRegistry `SrcDeviceNo` replaces `SPID`" | each 4.1 list so changed; responses as 4.1 |
//! | 4.4 UserModify "then each of those fields O" | the fields its heading names ("change CityCode, …"), each optional |
//! | 4.4 "Order, CancelOrder, OrderQuery, MPhoneRegistry" (prose) | Order/CancelOrder as in 4.3; OrderQuery's inline list; MPhoneRegistry as in 4.3; responses as 4.1 |
//! | 6.1 RoamAuthV2 "→ as 4.3" | 4.3 RoamAuthV2's response |
//! | 6.5 BatchSync "…, Authenticator, Records" | Records is the declared trailer (not signed) |
//! | 6.9 roaming consumption (prose: "the same fields preceded by SrcDeviceNo and ProvinceID") | each named 4.1 operation's request with that head; its 4.1 response |
//!
//! Compared: field names and order (request, response, list items), `R`/`O` for served requests
//! (unmarked fields are required), `enc` fields of outgoing requests, and the record layouts.

use std::collections::BTreeMap;
use vnetd::spec::incoming::INCOMING;
use vnetd::spec::outbound::{self, Delivery, Dest};
use vnetd::spec::Ty;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec/INTERFACES.md");

fn spec_text() -> String {
    std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("the contract test needs {SPEC}: {e}"))
}

/// One field as the spec writes it.
#[derive(Debug, Clone, PartialEq)]
struct F {
    name: String,
    optional: bool,
    enc: bool,
    /// For a list: (item element, item fields).
    list: Option<(String, Vec<String>)>,
}

fn f(name: &str) -> F {
    F { name: name.into(), optional: false, enc: false, list: None }
}

/// `s` split at commas outside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The text up to the first sentence end (`.` followed by a space or the end) outside parentheses.
fn sentence(s: &str) -> &str {
    let mut depth = 0i32;
    let b = s.as_bytes();
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' if depth == 0 && (i + 1 == b.len() || b[i + 1] == b' ' || b[i + 1] == b'\n') => return &s[..i],
            _ => {}
        }
    }
    s
}

fn ident(s: &str) -> String {
    s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
}

/// A field list: items up to the first one that does not start with a capitalised name (the
/// prose that may follow a list, e.g. ", at most `recon_page_size` … per page").
fn fields(list: &str) -> Vec<F> {
    let mut out = Vec::new();
    for item in split_top(sentence(list)) {
        let name = ident(&item);
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        let rest = &item[name.len()..];
        // Markers before any parenthesis: `enc`, R, O.
        let head = rest.split('(').next().unwrap_or("");
        let words: Vec<&str> = head.split_whitespace().collect();
        let list = rest.find("(list of ").map(|at| {
            let inner = &rest[at + "(list of ".len()..rest.rfind(')').expect("list closes")];
            let (item, fs) = inner.split_once(':').expect("list of Item: fields");
            (item.trim().to_string(), split_top(fs).iter().map(|x| ident(x)).collect())
        });
        out.push(F { name, optional: words.contains(&"O"), enc: words.contains(&"`enc`"), list });
    }
    out
}

/// Section 4: (service, operation) → (request, response or None when written by reference).
type Served = BTreeMap<(&'static str, String), (Vec<F>, Option<Vec<F>>)>;

/// The paragraphs of a section, lines joined by spaces: a paragraph ends at a blank line and
/// before a heading or a bold operation title.
fn paragraphs(section: &str) -> Vec<String> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for line in section.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("**") {
            out.push(Vec::new());
        }
        if !line.is_empty() {
            out.last_mut().expect("a paragraph").push(line);
        }
    }
    out.into_iter().filter(|p| !p.is_empty()).map(|p| p.join(" ")).collect()
}

fn section<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let a = text.find(start).unwrap_or_else(|| panic!("spec has no {start:?}"));
    let b = text[a..].find(end).map(|b| a + b).unwrap_or_else(|| panic!("spec has no {end:?} after {start:?}"));
    &text[a..b]
}

/// After `marker` in `p`, the field list.
fn after<'a>(p: &'a str, marker: &str) -> Option<&'a str> {
    p.find(marker).map(|i| &p[i + marker.len()..])
}

fn names(fs: &[F]) -> Vec<String> {
    fs.iter().map(|f| f.name.clone()).collect()
}

/// Result and ErrDescription first, then the operation's fields.
fn strip_common(resp: Vec<F>, what: &str) -> Vec<F> {
    assert_eq!(names(&resp[..2.min(resp.len())]), ["Result", "ErrDescription"], "{what}: response starts with Result, ErrDescription");
    resp[2..].to_vec()
}

/// Replace or insert SrcDeviceNo for SPID, as the spec's references say.
fn with_src(req: &[F], replace: bool) -> Vec<F> {
    let mut out = Vec::new();
    for x in req {
        if x.name == "SPID" {
            out.push(f("SrcDeviceNo"));
            if replace {
                continue;
            }
        }

        out.push(x.clone());
    }
    out
}

fn served(text: &str) -> Served {
    let mut out: Served = BTreeMap::new();
    let subsections = [
        ("### 4.1 ", "### 4.2 ", "ProvinceForSP"),
        ("### 4.2 ", "### 4.3 ", "legacy"),
        ("### 4.3 ", "### 4.4 ", "ProvinceForVNet"),
        ("### 4.4 ", "### 4.5 ", "ProvinceForBSS"),
        ("### 4.5 ", "### 4.6 ", "ProvinceForAAA"),
        ("### 4.6 ", "## 5. ", "ProvinceFor168"),
    ];
    let mut by_reference: Vec<(&'static str, String, String)> = Vec::new();
    for (start, end, service) in subsections {
        for p in paragraphs(section(text, start, end)) {
            let Some(rest) = p.strip_prefix("**") else { continue };
            let Some((title, body)) = rest.split_once("**") else { continue };
            if let (Some(req), false) = (after(body, "Request: "), title.contains(',')) {
                let request = if title == "UserModify" {
                    // "then each of those fields O": the fields its heading names ("change CityCode, …").
                    let those = split_top(sentence(after(body, "— change ").expect("UserModify heading")));
                    let those: Vec<String> = those.iter().map(|x| format!("{} O", ident(x))).collect();
                    let then = "then each of those fields O (empty = unchanged)";
                    assert!(req.contains(then), "UserModify: {req}");
                    fields(&req.replacen(then, &those.join(", "), 1))
                } else {
                    fields(req)
                };
                let response = after(body, "Response: ").filter(|r| !r.starts_with("as ")).map(fields);
                out.insert((service, title.to_string()), (request, response));
                if let Some(r) = after(body, "Response: ").filter(|r| r.starts_with("as ")) {
                    by_reference.push((service, title.to_string(), sentence(r).to_string()));
                }
            } else {
                by_reference.push((service, title.to_string(), body.to_string()));
            }
        }
    }
    // The references, resolved one by one (see the table at the top).
    let sp = |out: &Served, name: &str| out.get(&("ProvinceForSP", name.to_string())).cloned().unwrap_or_else(|| panic!("4.1 {name}"));
    for (service, title, body) in by_reference {
        match (service, title.as_str()) {
            ("ProvinceForSP", "PhoneNumAuth") => {
                assert_eq!(body, "as UserAuth plus NumFlag", "PhoneNumAuth's response reference");
                let mut resp = sp(&out, "UserAuth").1.expect("UserAuth response");
                resp.push(f("NumFlag"));
                out.get_mut(&(service, title)).expect("PhoneNumAuth").1 = Some(resp);
            }
            ("legacy", t) => assert!(t.starts_with("getUserProduct"), "4.2 holds only the legacy getUserProduct: {t}"),
            ("ProvinceForVNet", "GetUserinfo") => {
                assert!(body.contains("as 4.1 with SrcDeviceNo in place of SPID"), "{body}");
                let (req, resp) = sp(&out, "GetUserinfo");
                out.insert((service, title), (with_src(&req, true), resp));
            }
            ("ProvinceForVNet", "ServiceAuth, Order, CancelOrder, ReOrder, Charge, ChargeQuery, MPhoneRegistry") => {
                assert!(body.contains("with `SrcDeviceNo` added before `SPID`") && body.contains("for MPhoneRegistry `SrcDeviceNo` replaces `SPID`"), "{body}");
                for name in title.split(", ") {
                    let (req, resp) = sp(&out, name);
                    out.insert((service, name.to_string()), (with_src(&req, name == "MPhoneRegistry"), resp));
                }
            }
            ("ProvinceForBSS", "Order, CancelOrder, OrderQuery, MPhoneRegistry") => {
                assert!(body.contains("the 4.1 fields with `SrcDeviceNo` added before `SPID`") && body.contains("MPhoneRegistry: `SrcDeviceNo` replaces `SPID`"), "{body}");
                for name in ["Order", "CancelOrder"] {
                    let (req, resp) = sp(&out, name);
                    out.insert((service, name.to_string()), (with_src(&req, false), resp));
                }
                let (req, resp) = sp(&out, "MPhoneRegistry");
                out.insert((service, "MPhoneRegistry".into()), (with_src(&req, true), resp));
                let list = after(&body, "OrderQuery: ").expect("OrderQuery's list");
                let list = list.split(" — ").next().unwrap_or("");
                out.insert((service, "OrderQuery".into()), (fields(list), sp(&out, "OrderQuery").1));
            }
            (s, t) => panic!("{s} {t}: a field list written by reference that the contract test does not resolve: {body}"),
        }
    }
    out
}

fn ty_is_enc(t: Ty) -> bool {
    matches!(t, Ty::Enc)
}

#[test]
fn served_operations_match_the_spec() {
    let text = spec_text();
    let mut spec = served(&text);
    let mut problems = Vec::new();
    for d in INCOMING {
        let op = d.message;
        let key = (d.service.name(), op.name.to_string());
        let Some((req, resp)) = spec.remove(&key) else {
            problems.push(format!("{} {}: declared in the code, not in spec section 4", key.0, key.1));
            continue;
        };
        let what = format!("{} {}", key.0, key.1);
        let code: Vec<(String, bool)> = d.request.iter().map(|x| (x.name.to_string(), !x.required)).collect();
        let written: Vec<(String, bool)> = req.iter().map(|x| (x.name.clone(), x.optional)).collect();
        // GetTime's SPID: "answered for any SPID" — the code accepts it absent or of any form.
        let written = if what == "ProvinceForSP GetTime" { vec![("SPID".to_string(), true)] } else { written };
        if code != written {
            problems.push(format!("{what} request:\n  code {code:?}\n  spec {written:?}"));
        }
        for x in &req {
            let declared = d.request.iter().find(|c| c.name == x.name);
            if x.enc != declared.is_some_and(|c| ty_is_enc(c.ty)) {
                problems.push(format!("{what}: {} is `enc` in one of the spec ({}) and the code", x.name, x.enc));
            }
        }
        let resp = strip_common(resp.unwrap_or_else(|| panic!("{what}: no response")), &what);
        if names(&resp) != op.response {
            problems.push(format!("{what} response:\n  code {:?}\n  spec {:?}", op.response, names(&resp)));
        }
        let lists: Vec<(String, String, Vec<String>)> = resp.iter().filter_map(|x| x.list.clone().map(|(i, fs)| (x.name.clone(), i, fs))).collect();
        let code_lists: Vec<(String, String, Vec<String>)> =
            op.lists.iter().map(|l| (l.name.to_string(), l.item.to_string(), l.fields.iter().map(|s| s.to_string()).collect())).collect();
        if lists != code_lists {
            problems.push(format!("{what} lists:\n  code {code_lists:?}\n  spec {lists:?}"));
        }
    }
    for (s, name) in spec.keys() {
        problems.push(format!("{s} {name}: in spec section 4, not declared in the code"));
    }
    assert!(problems.is_empty(), "served operations differ from {SPEC}:\n{}", problems.join("\n"));
}

/// Section 6 as written: operation → (section, request, response).
type Outgoing = BTreeMap<String, (String, Vec<F>, Vec<F>)>;

/// Section 6: the operations, the 6.9 operation names, and the 6.5 paragraph (the streams).
fn outgoing(text: &str) -> (Outgoing, Vec<String>, String) {
    let six = section(text, "## 6. Outbound operations", "## 7. ");
    let mut out = BTreeMap::new();
    let mut consumption = Vec::new();
    let mut streams = String::new();
    for p in paragraphs(six) {
        let Some(rest) = p.strip_prefix("**") else { continue };
        let (title, body) = rest.split_once("**").expect("bold title");
        let (sec, name) = title.split_once(' ').expect("6.N Name");
        if sec == "6.9" {
            // "When a ProvinceForSP ServiceAuth, Order, CancelOrder, ReOrder or Charge names such a user"
            assert!(body.contains("calls the centre's operation of the same name with the same fields preceded by SrcDeviceNo and ProvinceID"), "6.9: {body}");
            let list = after(body, "When a ProvinceForSP ").expect("6.9 names the operations");
            let list = &list[..list.find(" names such a user").expect("6.9 list end")];
            consumption = list.replace(" or ", ", ").split(", ").map(str::to_string).collect();
            continue;
        }
        if sec == "6.5" {
            streams = body.to_string();
        }
        // "(destination, …): fields → response."
        let mut depth = 0i32;
        let colon = body
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                c == ':' && depth == 0
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{title}: no field list"));
        let (req, resp) = body[colon + 1..].split_once('→').unwrap_or_else(|| panic!("{title}: no →"));
        let resp = if resp.trim_start().starts_with("as 4.3") {
            // 6.1 RoamAuthV2 "→ as 4.3": the response of 4.3 RoamAuthV2.
            assert_eq!(name, "RoamAuthV2", "only RoamAuthV2's response is written as 4.3's");
            let p = paragraphs(section(text, "### 4.3 ", "### 4.4 ")).into_iter().find(|p| p.starts_with("**RoamAuthV2**")).expect("4.3 RoamAuthV2");
            fields(after(&p, "Response: ").expect("4.3 RoamAuthV2 response"))
        } else {
            fields(resp)
        };
        out.insert(name.to_string(), (sec.to_string(), fields(req), resp));
    }
    (out, consumption, streams)
}

#[test]
fn outgoing_operations_match_the_spec() {
    let text = spec_text();
    let (mut spec, consumption, _) = outgoing(&text);
    let sp41 = served(&text);
    let mut problems = Vec::new();
    for op in outbound::OUT_OPS {
        let (sec, req, resp) = if op.section == "6.9" {
            // Roaming consumption: the 4.1 operation's fields preceded by SrcDeviceNo and ProvinceID.
            if !consumption.iter().any(|c| c == op.name) {
                problems.push(format!("{}: declared as 6.9 roaming consumption, not named in 6.9", op.name));
                continue;
            }
            let (req, resp) = sp41.get(&("ProvinceForSP", op.name.to_string())).cloned().expect("4.1 operation");
            let mut r = vec![f("SrcDeviceNo"), f("ProvinceID")];
            r.extend(req);
            ("6.9".to_string(), r, resp.expect("4.1 response"))
        } else {
            match spec.remove(op.name) {
                Some(x) => x,
                None => {
                    problems.push(format!("{}: declared in spec::outbound, not in spec section 6", op.name));
                    continue;
                }
            }
        };
        if sec != op.section {
            problems.push(format!("{}: section {} in the code, {sec} in the spec", op.name, op.section));
        }
        let mut code: Vec<&str> = op.request.to_vec();
        if let Some(t) = op.trailer {
            code.push(t.name); // written after the Authenticator (6.5 BatchSync's Records)
        }
        if names(&req) != code {
            problems.push(format!("{} request:\n  code {code:?}\n  spec {:?}", op.name, names(&req)));
        }
        let enc: Vec<String> = req.iter().filter(|x| x.enc).map(|x| x.name.clone()).collect();
        if enc != op.enc {
            problems.push(format!("{} enc fields: code {:?}, spec {enc:?}", op.name, op.enc));
        }
        let resp = strip_common(resp, op.name);
        if names(&resp) != op.response {
            problems.push(format!("{} response:\n  code {:?}\n  spec {:?}", op.name, op.response, names(&resp)));
        }
        let expect_dest = if op.name == "OrderNotify" { Dest::Sp } else { Dest::Centre };
        if op.dest != expect_dest {
            problems.push(format!("{}: destination {:?}", op.name, op.dest));
        }
        // 6: "Everything except RoamAuthV2, ClockSync and roaming consumption (6.9) is written to a durable outbox".
        let queued = !(op.name == "RoamAuthV2" || op.name == "ClockSync" || op.section == "6.9");
        if (op.delivery == Delivery::Queued) != queued {
            problems.push(format!("{}: delivery {:?}", op.name, op.delivery));
        }
    }
    for c in &consumption {
        if outbound::find(c).is_none_or(|o| o.section != "6.9") {
            problems.push(format!("{c}: named in 6.9, not declared as roaming consumption"));
        }
    }
    for name in spec.keys() {
        problems.push(format!("{name}: in spec section 6, not declared in spec::outbound"));
    }
    assert!(problems.is_empty(), "outgoing operations differ from {SPEC}:\n{}", problems.join("\n"));
}

#[test]
fn record_layouts_match_the_spec() {
    let text = spec_text();
    let (_, _, body) = outgoing(&text);
    let mut written = Vec::new();
    let mut rest = after(&body, "Streams: ").expect("6.5 Streams");
    // "`ORDER` (one record per order event: RecordSeq, …), `CHARGE` (RecordSeq, …), `SETTLE` (…)"
    while let Some(open) = rest.find("` (") {
        let name = rest[..open].rsplit('`').next().unwrap_or("").to_string();
        let inner_start = open + 3;
        let close = inner_start + rest[inner_start..].find(')').expect("layout closes");
        let inner = &rest[inner_start..close];
        let inner = inner.split_once(": ").map(|(_, x)| x).unwrap_or(inner);
        written.push((name, split_top(inner).iter().map(|x| ident(x)).collect::<Vec<_>>()));
        rest = &rest[close..];
        if !rest.starts_with("), `") {
            break;
        }
    }
    let code: Vec<(String, Vec<String>)> = outbound::STREAMS.iter().map(|s| (s.name.to_string(), s.fields.iter().map(|x| x.to_string()).collect())).collect();
    assert_eq!(written.len(), 3, "6.5 names three streams: {written:?}");
    assert_eq!(code, written, "BatchSync record layouts differ from spec 6.5");
}
