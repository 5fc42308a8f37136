//! The SOAP envelope against the running binary (spec 2.1, 2.2, 2.7, 11 "Envelope", "Response
//! shape", "Faults"): SOAP 1.1 and 1.2, faults, leniency, field order, response shape, WSDL, GB
//! encodings in and out, idempotent repeats.

use crate::harness::*;
use vnetd::soap::envelope::{self, SOAP12_NS};

const SP_NS: &str = "http://vnet.cn/province/v3/ProvinceForSP";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const ALIAS_ZH: &str = "互联星空用户";

/// The faultcode of a SOAP 1.1 fault or the Code/Value of a SOAP 1.2 fault.
fn fault_code(body: &str) -> String {
    let env = envelope::parse(body).unwrap_or_else(|e| panic!("fault is not a SOAP document ({e}): {body}"));
    assert_eq!(env.op.name, "Fault", "not a fault: {body}");
    if let Some(c) = env.op.child("faultcode") {
        return c.text.clone();
    }
    env.op.child("Code").and_then(|c| c.child("Value")).map(|v| v.text.clone()).unwrap_or_else(|| panic!("no fault code: {body}"))
}

fn user_open_fields<'a>(account: &'a str, alias: &'a str, txid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", account), ("Password", ""),
        ("CityCode", "0591"), ("UserType", "1"), ("CreditLimit", ""), ("Balance", ""), ("Alias", alias),
        ("BindingAccessNo", ""), ("TransactionID", txid),
    ]
}

fn open_user(d: &Daemon, account: &str, alias: &str) -> String {
    let tx = format!("TX-{account}");
    let r = d.call("ProvinceForBSS", "UserOpen", BSS_KEY, &user_open_fields(account, alias, &tx));
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    r.get("VNetUserID").to_string()
}

fn get_userinfo(d: &Daemon, id: &str) -> Resp {
    d.call("ProvinceForSP", "GetUserinfo", SP_KEY, &[("SPID", SP_ID), ("VNetUserID", id)])
}

fn assert_no_internals(d: &Daemon, body: &str) {
    let dir = d.dir.path().to_string_lossy().to_string();
    assert!(!body.contains(&dir), "response reveals a file path: {body}");
    for bad in ["panicked", "src/", "rusqlite", "SQLITE", "SELECT "] {
        assert!(!body.contains(bad), "response reveals internals ({bad}): {body}");
    }
}

#[test]
fn soap11_request_gets_text_xml_response() {
    let d = Daemon::start();
    let body = envelope_of("GetTime", &[("SPID", SP_ID.to_string())]);
    // SOAPAction is never trusted: a misleading one does not change the operation.
    let r = http(&d.addr(), "POST", &Daemon::path("ProvinceForSP"), &[("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", "\"urn:UserAuth\"")], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.header("Content-Type").unwrap().to_ascii_lowercase();
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(ct.contains("charset=utf-8"), "{ct}");
    let text = r.text();
    assert!(text.contains(SOAP11), "{text}");
    assert!(!text.contains(SOAP12_NS), "{text}");
    assert!(text.contains(&format!("<GetTimeResponse xmlns=\"{SP_NS}\">")), "{text}");
    let resp = Resp::parse(&text);
    assert_eq!(resp.op.name, "GetTimeResponse");
    assert_eq!(resp.order, ["Result", "ErrDescription", "ServerTime"]);
    assert_eq!(resp.result(), 0);
    assert_eq!(envelope::parse(&text).unwrap().version, envelope::SoapVersion::V11);
    // Whitespace, comments and processing instructions around the root are well-formed.
    let body = format!("<?xml version=\"1.0\"?>\n<!-- c -->\n<?pi x?>{}\r\n  <!-- end -->\n", body.replacen("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "", 1));
    let r = d.post_raw("ProvinceForSP", "text/xml", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn soap12_request_answered_in_soap12() {
    let d = Daemon::with_peers(false);
    let id = open_user(&d, "soap12user", "");
    let doc = |op: &str, fields: &[(String, String)]| {
        let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><env:Envelope xmlns:env=\"{SOAP12_NS}\"><env:Header/><env:Body><m:{op} xmlns:m=\"{SP_NS}\">");
        for (k, v) in fields {
            s.push_str(&format!("<m:{k}>{}</m:{k}>", xml_escape(v)));
        }
        s.push_str(&format!("</m:{op}></env:Body></env:Envelope>"));
        s
    };
    for ct in ["application/soap+xml; charset=utf-8", "application/soap+xml;charset=UTF-8; action=\"urn:GetTime\""] {
        let r = d.post_raw("ProvinceForSP", ct, doc("GetTime", &[("SPID".into(), SP_ID.into())]).as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("Content-Type").unwrap().to_ascii_lowercase().starts_with("application/soap+xml"), "{:?}", r.headers);
        let text = r.text();
        assert!(text.contains(SOAP12_NS) && !text.contains(SOAP11), "{text}");
        assert_eq!(envelope::parse(&text).unwrap().version, envelope::SoapVersion::V12);
        assert_eq!(Resp::parse(&text).result(), 0);
    }
    // An authenticated operation in SOAP 1.2.
    let fields = signed_fields(SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)], &d.now_ts());
    let r = d.post_raw("ProvinceForSP", "application/soap+xml; charset=utf-8", doc("GetUserinfo", &fields).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains(SOAP12_NS), "{text}");
    let resp = Resp::parse(&text);
    assert_eq!(resp.result(), 0, "{:?}", resp.fields);
    assert_eq!(resp.get("Account"), "soap12user");
}

/// Bodies that must be refused with a Client fault, as (what, body).
fn refused_bodies(ns: &str, prefix: &str) -> Vec<(&'static str, String)> {
    let env = |inner: &str| format!("<{prefix}:Envelope xmlns:{prefix}=\"{ns}\"><{prefix}:Body>{inner}</{prefix}:Body></{prefix}:Envelope>");
    vec![
        ("not XML", "this is not XML at all".to_string()),
        ("not XML (broken tags)", format!("<{prefix}:Envelope xmlns:{prefix}=\"{ns}\"><{prefix}:Body><GetTime><SPID>1</GetTime>")),
        ("empty body", String::new()),
        ("not XML (text before the root)", format!("junk{}", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("not XML (text after the root)", format!("{}trailing", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("not XML (reference after the root)", format!("{}&amp;", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("not XML (CDATA after the root)", format!("{}<![CDATA[x]]>", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("not XML (declaration not first)", format!("{}<?xml version=\"1.0\"?>", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("not XML (two declarations)", format!("<?xml version=\"1.0\"?><?xml version=\"1.0\"?>{}", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("not an envelope (other root)", "<?xml version=\"1.0\"?><Request><Body><GetTime><SPID>35000001</SPID></GetTime></Body></Request>".to_string()),
        ("not an envelope (no namespace)", "<Envelope><Body><GetTime><SPID>35000001</SPID></GetTime></Body></Envelope>".to_string()),
        ("not an envelope (wrong namespace)", "<s:Envelope xmlns:s=\"urn:not-soap\"><s:Body><GetTime><SPID>35000001</SPID></GetTime></s:Body></s:Envelope>".to_string()),
        ("not an envelope (empty Body)", env("")),
        ("unknown operation", env("<StealEverything><SPID>35000001</SPID></StealEverything>")),
        ("operation of another service", env("<UserOpen><SrcDeviceNo>3500000000000201</SrcDeviceNo></UserOpen>")),
        ("DOCTYPE present", format!("<?xml version=\"1.0\"?><!DOCTYPE x>{}", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
        ("DOCTYPE with internal subset", format!("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]>{}", env("<GetTime><SPID>35000001</SPID></GetTime>"))),
    ]
}

#[test]
fn refused_requests_are_soap11_client_faults() {
    let d = Daemon::start();
    for (what, body) in refused_bodies(SOAP11, "soap") {
        let r = d.post_raw("ProvinceForSP", "text/xml; charset=utf-8", body.as_bytes());
        assert_eq!(r.status, 500, "{what}: {}", r.text());
        assert!(r.header("Content-Type").unwrap().to_ascii_lowercase().starts_with("text/xml"), "{what}: {:?}", r.headers);
        let text = r.text();
        assert!(text.contains(SOAP11), "{what}: {text}");
        assert_eq!(fault_code(&text), "soap:Client", "{what}: {text}");
        assert_no_internals(&d, &text);
    }
    d.assert_serves_get_time();
}

#[test]
fn refused_requests_are_soap12_sender_faults() {
    let d = Daemon::start();
    for (what, body) in refused_bodies(SOAP12_NS, "env") {
        let r = d.post_raw("ProvinceForSP", "application/soap+xml; charset=utf-8", body.as_bytes());
        assert_eq!(r.status, 500, "{what}: {}", r.text());
        assert!(r.header("Content-Type").unwrap().to_ascii_lowercase().starts_with("application/soap+xml"), "{what}: {:?}", r.headers);
        let text = r.text();
        assert!(text.contains(SOAP12_NS), "{what}: {text}");
        assert_eq!(fault_code(&text), "env:Sender", "{what}: {text}");
        assert_no_internals(&d, &text);
    }
    d.assert_serves_get_time();
}

#[test]
fn qualified_and_unqualified_children_accepted() {
    let d = Daemon::with_peers(false);
    let id = open_user(&d, "lenient01", "");
    let fields = signed_fields(SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)], &d.now_ts());
    let wrap = |inner: String| format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11}\" xmlns:xsi=\"{XSI}\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body>{inner}</soap:Body></soap:Envelope>");
    let mut variants = Vec::new();
    // Unqualified children under a qualified wrapper.
    let mut s = format!("<m:GetUserinfo xmlns:m=\"{SP_NS}\">");
    for (k, v) in &fields {
        s.push_str(&format!("<{k}>{v}</{k}>"));
    }
    variants.push(("unqualified children", wrap(s + "</m:GetUserinfo>")));
    // Prefixed, qualified children carrying xsi:type (Axis rpc/encoded style).
    let mut s = format!("<ns1:GetUserinfo xmlns:ns1=\"{SP_NS}\" soap:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\">");
    for (k, v) in &fields {
        s.push_str(&format!("<ns1:{k} xsi:type=\"xsd:string\">{v}</ns1:{k}>"));
    }
    variants.push(("prefixed children with xsi:type", wrap(s + "</ns1:GetUserinfo>")));
    // Default-namespace qualified children (ASMX style) with an extra attribute.
    let mut s = format!("<GetUserinfo xmlns=\"{SP_NS}\">");
    for (k, v) in &fields {
        s.push_str(&format!("<{k} xsi:type=\"xsd:string\" foo=\"bar\">{v}</{k}>"));
    }
    variants.push(("default-namespace children", wrap(s + "</GetUserinfo>")));
    // A wrapper in a foreign namespace: matched by local name.
    let mut s = "<x:GetUserinfo xmlns:x=\"urn:something-else\">".to_string();
    for (k, v) in &fields {
        s.push_str(&format!("<x:{k}>{v}</x:{k}>"));
    }
    variants.push(("foreign-namespace wrapper", wrap(s + "</x:GetUserinfo>")));
    for (what, body) in variants {
        let r = d.post_raw("ProvinceForSP", "text/xml; charset=utf-8", body.as_bytes());
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let resp = Resp::parse(&r.text());
        assert_eq!(resp.result(), 0, "{what}: {:?}", resp.fields);
        assert_eq!(resp.get("VNetUserID"), id, "{what}");
        assert_eq!(resp.get("Account"), "lenient01", "{what}");
    }
}

#[test]
fn fields_in_any_order_accepted() {
    let d = Daemon::with_peers(false);
    // UserOpen with its fields reversed (the Authenticator still follows the listed order).
    let pw = enc(BSS_KEY, "Order-Pass9");
    let mut f = user_open_fields("anyorder1", "", "TX-anyorder1");
    f[3] = ("Password", pw.as_str());
    let mut fields = signed_fields(BSS_KEY, &f, &d.now_ts());
    fields.reverse();
    let r = d.post_raw("ProvinceForBSS", "text/xml; charset=utf-8", envelope_owned("UserOpen", &fields).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = Resp::parse(&r.text());
    assert_eq!(resp.result(), 0, "{:?}", resp.fields);
    let id = resp.get("VNetUserID").to_string();
    // GetUserinfo with Authenticator first and SPID last.
    let mut fields = signed_fields(SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)], &d.now_ts());
    fields.rotate_right(1);
    assert_eq!(fields[0].0, "Authenticator");
    let r = d.post_raw("ProvinceForSP", "text/xml; charset=utf-8", envelope_owned("GetUserinfo", &fields).as_bytes());
    let resp = Resp::parse(&r.text());
    assert_eq!(resp.result(), 0, "{:?}", resp.fields);
    assert_eq!(resp.get("Account"), "anyorder1");
    // And the password set through the shuffled request works.
    let r = d.call("ProvinceForSP", "UserAuth", SP_KEY, &[
        ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", "anyorder1"), ("Password", &enc(SP_KEY, "Order-Pass9")), ("UserIP", ""),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
}

const PROFILE: [&str; 12] = ["Result", "ErrDescription", "VNetUserID", "AccountType", "Account", "Alias", "ProvinceID", "CityCode", "UserType", "Status", "NumFlag", "ContractID"];
const AUTH_RESULT: [&str; 7] = ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"];

fn assert_failure_shape(r: &Resp, code: i32, order: &[&str]) {
    assert_eq!(r.result(), code, "{:?}", r.fields);
    assert_eq!(r.order, order, "{:?}", r.fields);
    assert!(!r.get("ErrDescription").is_empty(), "a failure has a reason: {:?}", r.fields);
    for name in &order[2..] {
        assert_eq!(r.get(name), "", "{name} must be empty when Result is {code}: {:?}", r.fields);
    }
}

#[test]
fn response_lists_every_element_in_order_also_on_failure() {
    let d = Daemon::with_peers(false);
    let id = open_user(&d, "shape0001", "");
    let ok = get_userinfo(&d, &id);
    assert_eq!(ok.result(), 0);
    assert_eq!(ok.order, PROFILE);
    assert_eq!(ok.get("ErrDescription"), "");
    // Unknown user: -1.
    assert_failure_shape(&get_userinfo(&d, "350009999999"), -1, &PROFILE);
    // Unknown caller: -20001.
    let r = d.call("ProvinceForSP", "GetUserinfo", SP_KEY, &[("SPID", "35999999"), ("VNetUserID", &id)]);
    assert_failure_shape(&r, -20001, &PROFILE);
    // Wrong Authenticator: -21548.
    let r = d.call("ProvinceForSP", "GetUserinfo", CENTRE_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)]);
    assert_failure_shape(&r, -21548, &PROFILE);
    // Stale TimeStamp: -21514.
    let r = d.call_at("ProvinceForSP", "GetUserinfo", SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)], &ts(-3600));
    assert_failure_shape(&r, -21514, &PROFILE);
    // Wrong password: -20501, the UserAuth shape.
    let r = d.call("ProvinceForSP", "UserAuth", SP_KEY, &[
        ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", "shape0001"), ("Password", &enc(SP_KEY, "wrong-pass")), ("UserIP", ""),
    ]);
    assert!(r.result() != 0);
    assert_eq!(r.order, AUTH_RESULT);
    for name in &AUTH_RESULT[2..] {
        assert_eq!(r.get(name), "", "{name}: {:?}", r.fields);
    }
    // A parameter error on UserOpen: VNetUserID present and empty.
    let r = d.call("ProvinceForBSS", "UserOpen", BSS_KEY, &user_open_fields("shape0002", "", "bad txid!"));
    assert!(r.result() <= -21500 && r.result() > -22000, "{:?}", r.fields);
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID"]);
    assert_eq!(r.get("VNetUserID"), "");
    // Operation without extra response fields: just Result and ErrDescription.
    let r = d.call("ProvinceForBSS", "UserStatusChange", BSS_KEY, &[
        ("SrcDeviceNo", BSS_ID), ("VNetUserID", "350009999999"), ("Status", "01"), ("Reason", ""), ("TransactionID", "TX-shape-1"),
    ]);
    assert!(r.result() != 0);
    assert_eq!(r.order, ["Result", "ErrDescription"]);
}

/// Operations of spec section 4 each service's WSDL must list (at least; the table may add more).
const SPEC_OPS: [(&str, &[&str]); 5] = [
    ("ProvinceForSP", &["UserAuth", "PhoneNumAuth", "IPAuth", "GetUserinfo", "MPhoneRegistry", "GetTime", "TicketValidate", "UserLogout", "PaymentQuery"]),
    ("ProvinceForBSS", &["UserOpen", "UserModify", "UserStatusChange", "PasswordReset", "MPhoneRegistry"]),
    ("ProvinceForVNet", &["UserInfoQueryV3", "GetUserinfo", "PUserStatusNotify", "KeyUpdate"]),
    ("ProvinceForAAA", &["OnlineNotify"]),
    ("ProvinceFor168", &["CrossAuth"]),
];

/// Spec 11 "Response shape": every response element is always present, so the WSDL declares
/// each with minOccurs 1 (only repeated list items may be absent).
fn assert_response_elements_required(service: &str, doc: &str) {
    use quick_xml::events::Event;
    let mut rd = quick_xml::Reader::from_str(doc);
    rd.config_mut().expand_empty_elements = true;
    // Depth of the open *Response element, if inside one.
    let (mut depth, mut inside): (usize, Option<(usize, String)>) = (0, None);
    let mut checked = 0;
    loop {
        match rd.read_event().unwrap() {
            Event::Start(e) => {
                depth += 1;
                if e.local_name().as_ref() != "element" {
                    continue;
                }
                let attr = |k: &str| e.try_get_attribute(k).unwrap().map(|a| a.value.to_string());
                let name = attr("name").unwrap_or_default();
                match &inside {
                    None if name.ends_with("Response") => inside = Some((depth, name)),
                    Some((_, op)) => {
                        checked += 1;
                        let min = attr("minOccurs").unwrap_or_else(|| "1".into());
                        let list_item = attr("maxOccurs").as_deref() == Some("unbounded");
                        assert!(min == "1" || list_item, "{service} {op}: element {name} has minOccurs {min}");
                    }
                    None => {}
                }
            }
            Event::End(_) => {
                if inside.as_ref().is_some_and(|(d, _)| *d == depth) {
                    inside = None;
                }
                depth -= 1;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(checked > 0, "{service}: no response elements found");
}

#[test]
fn wsdl_of_each_service_lists_its_operations() {
    let d = Daemon::start();
    for service in vnetd::spec::Service::ALL {
        let name = service.name();
        let r = http(&d.addr(), "GET", &format!("{}?wsdl", Daemon::path(name)), &[], b"");
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(r.header("Content-Type").unwrap().to_ascii_lowercase().contains("xml"), "{:?}", r.headers);
        let doc = r.text();
        // Well-formed XML.
        let mut rd = quick_xml::Reader::from_str(&doc);
        loop {
            match rd.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{name}: WSDL is not well-formed: {e}"),
            }
        }
        assert!(doc.contains("http://schemas.xmlsoap.org/wsdl/"), "{name}");
        assert!(doc.contains(&format!("targetNamespace=\"http://vnet.cn/province/v3/{name}\"")), "{name}");
        assert!(doc.contains(&format!("location=\"http://{}{}\"", d.addr(), Daemon::path(name))), "{name}: {doc}");
        assert_response_elements_required(name, &doc);
        let mut ops: Vec<&str> = vnetd::spec::incoming::of(service).map(|o| o.message.name).collect();
        ops.extend(SPEC_OPS.iter().find(|(s, _)| *s == name).unwrap().1);
        for op in ops {
            assert!(doc.contains(&format!("<wsdl:operation name=\"{op}\">")), "{name}: WSDL lacks {op}");
            assert!(doc.contains(&format!("<xsd:element name=\"{op}\">")), "{name}: WSDL lacks the {op} element");
            assert!(doc.contains(&format!("<xsd:element name=\"{op}Response\">")), "{name}: WSDL lacks {op}Response");
        }
    }
}

#[test]
fn unknown_path_is_404() {
    let d = Daemon::start();
    let body = envelope_of("GetTime", &[("SPID", SP_ID.to_string())]);
    for path in ["/", "/nope", "/ProvinceForXYZ/services/ProvinceForXYZ", "/ProvinceForSP/services/ProvinceForBSS", "/ProvinceForSP/services/ProvinceForSP/extra", "/ProvinceForSP"] {
        let r = http(&d.addr(), "POST", path, &[("Content-Type", "text/xml")], body.as_bytes());
        assert_eq!(r.status, 404, "POST {path}");
        let r = http(&d.addr(), "GET", &format!("{path}?wsdl"), &[], b"");
        assert_eq!(r.status, 404, "GET {path}?wsdl");
    }
    d.assert_serves_get_time();
}

/// A UserOpen request document declared (or not) in a GB encoding, returned as text.
fn user_open_doc(d: &Daemon, decl: Option<&str>, account: &str, alias: &str) -> String {
    let tx = format!("TX-{account}");
    let fields = signed_fields(BSS_KEY, &user_open_fields(account, alias, &tx), &d.now_ts());
    let doc = envelope_owned("UserOpen", &fields);
    let doc = doc.replacen("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "", 1);
    match decl {
        Some(enc) => format!("<?xml version=\"1.0\" encoding=\"{enc}\"?>{doc}"),
        None => format!("<?xml version=\"1.0\"?>{doc}"),
    }
}

#[test]
fn gb_encoded_requests_are_decoded() {
    let d = Daemon::with_peers(false);
    // (account, XML declaration, Content-Type, encoder)
    let cases: [(&str, Option<&str>, &str, &'static encoding_rs::Encoding); 6] = [
        ("gbdecl01", Some("GB2312"), "text/xml", encoding_rs::GBK),
        ("gbctype1", None, "text/xml; charset=gb2312", encoding_rs::GBK),
        ("gbctype2", None, "text/xml; charset=\"GB2312\"", encoding_rs::GBK),
        ("gbkdecl1", Some("GBK"), "text/xml; charset=utf-8", encoding_rs::GBK),
        ("gb18030a", Some("GB18030"), "text/xml", encoding_rs::GB18030),
        // The XML declaration wins over the Content-Type charset.
        ("gbwins01", Some("gb2312"), "text/xml; charset=utf-8", encoding_rs::GBK),
    ];
    for (account, decl, ct, encoder) in cases {
        let doc = user_open_doc(&d, decl, account, ALIAS_ZH);
        let (bytes, _, unmappable) = encoder.encode(&doc);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&bytes).is_err(), "the request really is in a GB encoding");
        let r = d.post_raw("ProvinceForBSS", ct, &bytes);
        assert_eq!(r.status, 200, "{account}: {}", r.text());
        let resp = Resp::parse(&r.text());
        assert_eq!(resp.result(), 0, "{account}: {:?}", resp.fields);
        let info = get_userinfo(&d, resp.get("VNetUserID"));
        assert_eq!(info.result(), 0, "{account}: {:?}", info.fields);
        assert_eq!(info.get("Alias"), ALIAS_ZH, "{account}");
        assert_eq!(info.get("Account"), account);
    }
    // GB bytes declared as UTF-8 everywhere are not valid UTF-8: a Client fault, not garbage.
    let doc = user_open_doc(&d, Some("UTF-8"), "gbwrong1", ALIAS_ZH);
    let (bytes, _, _) = encoding_rs::GBK.encode(&doc);
    let r = d.post_raw("ProvinceForBSS", "text/xml; charset=utf-8", &bytes);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(fault_code(&r.text()), "soap:Client");
    // An unsupported charset is refused as well.
    let doc = user_open_doc(&d, Some("KOI8-R"), "koi8user", "");
    let r = d.post_raw("ProvinceForBSS", "text/xml", doc.as_bytes());
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(fault_code(&r.text()), "soap:Client");
}

#[test]
fn gb2312_peer_gets_gbk_bytes_declared_gb2312() {
    let d = Daemon::with_peers(false);
    const GB_SP: &str = "35000002";
    d.ok(&["peer", "add", "--id", GB_SP, "--kind", "sp", "--key", SP_KEY, "--encoding", "gb2312"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let id = open_user(&d, "gbpeer01", ALIAS_ZH);
    let fields = signed_fields(SP_KEY, &[("SPID", GB_SP), ("VNetUserID", &id)], &d.now_ts());
    let r = d.post_raw("ProvinceForSP", "text/xml; charset=utf-8", envelope_owned("GetUserinfo", &fields).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.header("Content-Type").unwrap().to_ascii_lowercase();
    assert!(ct.starts_with("text/xml") && ct.contains("charset=gb2312"), "{ct}");
    assert!(r.body.starts_with(b"<?xml version=\"1.0\" encoding=\"gb2312\"?>"), "{}", String::from_utf8_lossy(&r.body[..60.min(r.body.len())]));
    assert!(std::str::from_utf8(&r.body).is_err(), "the body must be GBK bytes, not UTF-8");
    let (gbk_alias, _, _) = encoding_rs::GBK.encode(ALIAS_ZH);
    assert!(r.body.windows(gbk_alias.len()).any(|w| w == &gbk_alias[..]), "the alias is GBK-encoded in the body");
    let (text, _, bad) = encoding_rs::GBK.decode(&r.body);
    assert!(!bad);
    let resp = Resp::parse(&text);
    assert_eq!(resp.result(), 0, "{:?}", resp.fields);
    assert_eq!(resp.get("Alias"), ALIAS_ZH);

    // A character GBK cannot encode travels as a character reference.
    let id = open_user(&d, "gbpeer02", "星空😀");
    let fields = signed_fields(SP_KEY, &[("SPID", GB_SP), ("VNetUserID", &id)], &d.now_ts());
    let r = d.post_raw("ProvinceForSP", "text/xml; charset=utf-8", envelope_owned("GetUserinfo", &fields).as_bytes());
    let (text, _, bad) = encoding_rs::GBK.decode(&r.body);
    assert!(!bad);
    assert!(text.contains("&#128512;"), "{text}");
    assert_eq!(Resp::parse(&text).get("Alias"), "星空😀");

    // The UTF-8 SP still gets UTF-8 for the same user.
    let info = get_userinfo(&d, &id);
    assert_eq!(info.get("Alias"), "星空😀");
}

#[test]
fn idempotent_user_open_repeat_is_identical_and_has_one_effect() {
    let d = Daemon::with_peers(false);
    let pw = enc(BSS_KEY, "Idem-Pass1");
    let mut f = user_open_fields("idem0001", "别名", "TX-IDEM-1");
    f[3] = ("Password", pw.as_str());
    let send = |ts: &str, f: &[(&str, &str)]| {
        let fields = signed_fields(BSS_KEY, f, ts);
        let r = d.post_raw("ProvinceForBSS", "text/xml; charset=utf-8", envelope_owned("UserOpen", &fields).as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        r
    };
    let first = send(&ts(-20), &f);
    let resp = Resp::parse(&first.text());
    assert_eq!(resp.result(), 0, "{:?}", resp.fields);
    let second = send(&d.now_ts(), &f);
    assert_eq!(first.body, second.body, "a repeat returns the stored response byte for byte");
    let third = send(&ts(5), &f);
    assert_eq!(first.body, third.body);
    // Same TransactionID, different fields: -21513, and still no second user.
    let mut changed = f.clone();
    changed[4] = ("CityCode", "0592");
    let r = Resp::parse(&send(&d.now_ts(), &changed).text());
    assert_eq!(r.result(), -21513, "{:?}", r.fields);
    let n: i64 = d.db_ro().query_row("SELECT count(*) FROM user WHERE account = 'idem0001'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "one user for one TransactionID");
    let notes: i64 = d
        .db_ro()
        .query_row("SELECT count(*) FROM outbox WHERE operation = 'PUserInfoNotify' AND order_key = ?1", [format!("user:{}", resp.get("VNetUserID"))], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 1, "one PUserInfoNotify for one effect");
    // A new TransactionID for the same account is a second attempt: -20516.
    let mut again = f.clone();
    again[10] = ("TransactionID", "TX-IDEM-2");
    let r = Resp::parse(&send(&d.now_ts(), &again).text());
    assert_eq!(r.result(), -20516, "{:?}", r.fields);
}

/// Read until `\r\n\r\n` (a head without a body, like `100 Continue`) or the deadline.
fn read_head(s: &mut std::net::TcpStream, timeout: std::time::Duration) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn keep_alive_expect_continue_and_chunked_requests() {
    use std::io::Write;
    use std::time::Duration;
    let d = Daemon::start();
    let path = Daemon::path("ProvinceForSP");
    let body = envelope_of("GetTime", &[("SPID", SP_ID.to_string())]);
    // Several requests on one keep-alive connection (toolkits reuse connections).
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    for i in 0..3 {
        let req = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}", d.addr(), body.len());
        s.write_all(req.as_bytes()).unwrap();
        let r = read_http_response(&mut s, Duration::from_secs(5)).unwrap_or_else(|| panic!("no response to request {i} on a kept-alive connection"));
        assert_eq!(r.status, 200);
        assert_eq!(Resp::parse(&r.text()).result(), 0);
    }
    drop(s);
    // No Content-Type at all: SOAP 1.1, UTF-8.
    let r = http(&d.addr(), "POST", &path, &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("Content-Type").unwrap().starts_with("text/xml"));
    // Expect: 100-continue (curl does this for bodies over 1 KiB).
    let big = envelope_of("GetTime", &[("SPID", SP_ID.to_string()), ("Pad", "x".repeat(4000))]);
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", d.addr(), big.len());
    s.write_all(head.as_bytes()).unwrap();
    let cont = read_head(&mut s, Duration::from_secs(2));
    assert!(cont.starts_with("HTTP/1.1 100"), "expected 100 Continue, got {cont:?}");
    s.write_all(big.as_bytes()).unwrap();
    let r = read_http_response(&mut s, Duration::from_secs(5)).expect("response after 100 Continue");
    assert_eq!(r.status, 200, "{}", r.text());
    // Expect: 100-continue with a body over the limit: 413 at once, never 100.
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n", d.addr());
    s.write_all(head.as_bytes()).unwrap();
    let r = read_http_response(&mut s, Duration::from_secs(2)).expect("an answer without sending the body");
    assert_eq!(r.status, 413);
    // A chunked request under the limit is served.
    let mut chunked = Vec::new();
    for part in body.as_bytes().chunks(100) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", d.addr());
    let raw = [head.as_bytes(), &chunked].concat();
    let r = try_parse_http(&raw_exchange(&d.addr(), &raw, Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(Resp::parse(&r.text()).result(), 0);
}

/// Every character is allowed by XML 1.0's Char production.
fn assert_xml_chars(what: &str, text: &str) {
    for c in text.chars() {
        let u = c as u32;
        let ok = matches!(u, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF);
        assert!(ok, "{what}: the response carries U+{u:04X}, which XML 1.0 does not allow: {text:?}");
    }
}

#[test]
fn responses_stay_well_formed_whatever_was_stored() {
    let d = Daemon::with_peers(false);
    // Characters XML 1.0 forbids, sent raw and as character references. Each request is either
    // refused or accepted; whatever was accepted must come back as a well-formed document.
    let aliases = ["a\u{FFFF}b", "a\u{FFFE}b", "a\u{1}b", "a&#xFFFF;b", "a&#1;b", "a&#0;b", "a\u{7F}\u{85}b"];
    for (i, alias) in aliases.iter().enumerate() {
        let account = format!("badchar{i}");
        let tx = format!("TX-badchar{i}");
        // The Authenticator is over the value as the server will read it.
        let value = alias.replace("&#xFFFF;", "\u{FFFF}").replace("&#1;", "\u{1}").replace("&#0;", "\u{0}");
        let mut fields = signed_fields(BSS_KEY, &user_open_fields(&account, &value, &tx), &d.now_ts());
        for f in fields.iter_mut() {
            if f.0 == "Alias" {
                f.1 = "@ALIAS@".into();
            }
        }
        let body = envelope_owned("UserOpen", &fields).replace("@ALIAS@", alias);
        let r = d.post_raw("ProvinceForBSS", "text/xml; charset=utf-8", body.as_bytes());
        let text = r.text();
        assert_xml_chars(&format!("UserOpen alias {alias:?}"), &text);
        if r.status != 200 {
            assert_eq!(r.status, 500, "{text}");
            continue;
        }
        let resp = Resp::parse(&text);
        if resp.result() != 0 {
            continue;
        }
        let id = resp.get("VNetUserID").to_string();
        let fields = signed_fields(SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)], &d.now_ts());
        let r = d.post_raw("ProvinceForSP", "text/xml; charset=utf-8", envelope_owned("GetUserinfo", &fields).as_bytes());
        assert_eq!(r.status, 200);
        assert_xml_chars(&format!("GetUserinfo of alias {alias:?}"), &r.text());
        assert_eq!(Resp::parse(&r.text()).result(), 0);
    }
}
