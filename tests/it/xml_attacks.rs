//! Hostile XML and HTTP bodies against the running binary (spec 2.1, 2.9, 11 "XML limits"): each
//! is answered quickly and safely, and the daemon keeps serving with bounded memory.

use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const QUICK: Duration = Duration::from_secs(2);
const SP_PATH: &str = "/ProvinceForSP/services/ProvinceForSP";

fn soap(inner: &str) -> String {
    format!("<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body>{inner}</soap:Body></soap:Envelope>")
}

fn get_time_with(extra: &str) -> String {
    soap(&format!("<GetTime><SPID>{SP_ID}</SPID>{extra}</GetTime>"))
}

/// Send `head`, then `body` from another thread (errors ignored: the server may refuse before
/// reading it), and read the response. Returns the response (if any) and the time it took.
fn exchange(d: &Daemon, head: String, body: Vec<u8>) -> (Option<Http>, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let r = read_http_response(&mut s, Duration::from_secs(5));
    let took = started.elapsed();
    drop(s);
    let _ = writer.join();
    (r, took)
}

fn post(d: &Daemon, body: &[u8]) -> (Http, Duration) {
    let head = format!("POST {SP_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", d.addr(), body.len());
    let (r, took) = exchange(d, head, body.to_vec());
    (r.unwrap_or_else(|| panic!("no response after {took:?}")), took)
}

/// The body is refused with a SOAP 1.1 Client fault, quickly, and the daemon still serves.
fn assert_client_fault(d: &Daemon, what: &str, body: &[u8]) -> String {
    let (r, took) = post(d, body);
    assert!(took < QUICK, "{what}: answered after {took:?}");
    assert_eq!(r.status, 500, "{what}: {}", r.text());
    let text = r.text();
    assert!(text.contains("<faultcode>soap:Client</faultcode>"), "{what}: {text}");
    d.assert_serves_get_time();
    text
}

/// The body is served normally (HTTP 200, Result 0), quickly.
fn assert_served(d: &Daemon, what: &str, body: &[u8]) {
    let (r, took) = post(d, body);
    assert!(took < QUICK, "{what}: answered after {took:?}");
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(Resp::parse(&r.text()).result(), 0, "{what}");
}

fn xxe_body() -> String {
    format!("<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}", soap("<GetTime><SPID>&xxe;</SPID></GetTime>"))
}

fn xxe_parameter_body() -> String {
    format!("<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]>{}", soap("<GetTime><SPID>1</SPID></GetTime>"))
}

fn billion_laughs_body() -> String {
    let mut dtd = String::from("<!ENTITY lol \"lol\">");
    dtd.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">");
    for i in 2..=9 {
        let p = i - 1;
        dtd.push_str(&format!("<!ENTITY lol{i} \"{}\">", format!("&lol{p};").repeat(10)));
    }
    format!("<?xml version=\"1.0\"?><!DOCTYPE lolz [{dtd}]>{}", soap("<GetTime><SPID>&lol9;</SPID></GetTime>"))
}

/// Nesting to a total document depth of `depth` (Envelope = 1, Body = 2, GetTime = 3).
fn depth_body(depth: usize) -> String {
    let n = depth - 3;
    get_time_with(&format!("{}{}", "<x>".repeat(n), "</x>".repeat(n)))
}

fn attrs_body(n: usize) -> String {
    let attrs: String = (0..n).map(|i| format!(" a{i}=\"v\"")).collect();
    soap(&format!("<GetTime{attrs}><SPID>{SP_ID}</SPID></GetTime>"))
}

/// A document with `n` elements in all (Envelope, Body, GetTime and SPID included).
fn elements_body(n: usize) -> String {
    get_time_with(&"<x/>".repeat(n - 4))
}

fn undefined_entity_body() -> String {
    get_time_with("<Note>&foo;</Note>")
}

fn invalid_utf8_body() -> Vec<u8> {
    let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{}", get_time_with("<Note>@@</Note>"));
    let (a, b) = doc.split_once("@@").unwrap();
    [a.as_bytes(), &[0xC3, 0x28, 0xFF, 0xFE], b.as_bytes()].concat()
}

#[test]
fn external_entity_is_refused_and_never_read() {
    let d = Daemon::start();
    for body in [xxe_body(), xxe_parameter_body()] {
        let text = assert_client_fault(&d, "XXE", body.as_bytes());
        assert!(!text.contains("root:") && !text.contains("/bin/"), "the file leaked: {text}");
    }
    // Also as SOAP 1.2.
    let body = xxe_body().replace(SOAP11, vnetd::soap::envelope::SOAP12_NS);
    let r = d.post_raw("ProvinceForSP", "application/soap+xml", body.as_bytes());
    assert_eq!(r.status, 500);
    assert!(r.text().contains("env:Sender") && !r.text().contains("root:"), "{}", r.text());
}

#[test]
fn billion_laughs_is_refused() {
    let d = Daemon::start();
    assert_client_fault(&d, "billion laughs", billion_laughs_body().as_bytes());
}

#[test]
fn undefined_entity_is_refused() {
    let d = Daemon::start();
    assert_client_fault(&d, "undefined entity", undefined_entity_body().as_bytes());
    // The predefined entities and character references are fine.
    assert_served(&d, "predefined entities", get_time_with("<Note>&lt;&amp;&gt;&quot;&apos;&#x4E92;&#20114;</Note>").as_bytes());
}

#[test]
fn invalid_utf8_is_refused() {
    let d = Daemon::start();
    let body = invalid_utf8_body();
    assert!(std::str::from_utf8(&body).is_err());
    assert_client_fault(&d, "invalid UTF-8", &body);
    // Also with no declaration (UTF-8 by default) and a lone continuation byte.
    let mut b = get_time_with("<Note>X</Note>").into_bytes();
    let pos = b.iter().position(|&c| c == b'X').unwrap();
    b[pos] = 0x80;
    assert_client_fault(&d, "lone continuation byte", &b);
}

#[test]
fn depth_limit_is_32() {
    let d = Daemon::start();
    assert_served(&d, "depth 32", depth_body(32).as_bytes());
    assert_client_fault(&d, "depth 33", depth_body(33).as_bytes());
    assert_client_fault(&d, "depth 1000", depth_body(1000).as_bytes());
}

#[test]
fn attribute_limit_is_64() {
    let d = Daemon::start();
    assert_served(&d, "64 attributes", attrs_body(64).as_bytes());
    assert_client_fault(&d, "65 attributes", attrs_body(65).as_bytes());
}

#[test]
fn element_limit_is_10000() {
    let d = Daemon::start();
    assert_served(&d, "10,000 elements", elements_body(10_000).as_bytes());
    assert_client_fault(&d, "10,001 elements", elements_body(10_001).as_bytes());
}

#[test]
fn body_over_max_is_413() {
    let d = Daemon::start();
    // Exactly max_body_bytes is still read and served.
    let base = get_time_with("<Pad></Pad>");
    let exact = get_time_with(&format!("<Pad>{}</Pad>", " ".repeat(65_536 - base.len())));
    assert_eq!(exact.len(), 65_536);
    assert_served(&d, "65536-byte body", exact.as_bytes());
    // One byte more, and a much larger body sent in full.
    let over = get_time_with(&format!("<Pad>{}</Pad>", " ".repeat(65_537 - base.len())));
    for body in [over.into_bytes(), get_time_with(&format!("<Pad>{}</Pad>", "A".repeat(4 << 20))).into_bytes()] {
        let (r, took) = post(&d, &body);
        assert_eq!(r.status, 413, "{} bytes: {}", body.len(), r.text());
        assert!(took < QUICK, "{} bytes answered after {took:?}", body.len());
    }
    d.assert_serves_get_time();
}

#[test]
fn huge_declared_content_length_is_413_without_waiting() {
    let d = Daemon::start();
    let head = format!("POST {SP_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: 1000000000000\r\n\r\n<soap:Envelope", d.addr());
    let (r, took) = exchange(&d, head, Vec::new());
    let r = r.unwrap_or_else(|| panic!("no answer to a 10^12-byte Content-Length after {took:?}"));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(took < QUICK, "answered after {took:?}");
    d.assert_serves_get_time();
}

#[test]
fn chunked_body_over_max_is_413() {
    let d = Daemon::start();
    let head = format!("POST {SP_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n", d.addr());
    let mut body = Vec::new();
    for _ in 0..40 {
        body.extend_from_slice(format!("{:x}\r\n", 4096).as_bytes());
        body.extend_from_slice(&[b' '; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (r, took) = exchange(&d, head, body);
    let r = r.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(took < QUICK, "answered after {took:?}");
    d.assert_serves_get_time();
}

#[test]
fn memory_stays_bounded_under_attack() {
    let d = Daemon::start();
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("xxe", xxe_body().into_bytes()),
        ("billion laughs", billion_laughs_body().into_bytes()),
        ("depth", depth_body(5000).into_bytes()),
        ("attributes", attrs_body(5000).into_bytes()),
        ("elements", elements_body(10_001).into_bytes()),
        ("undefined entity", undefined_entity_body().into_bytes()),
        ("invalid utf-8", invalid_utf8_body()),
        ("too large", vec![b'<'; 2 << 20]),
    ];
    let attacks = std::sync::Arc::new(attacks);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (attacks, addr) = (attacks.clone(), d.addr());
            std::thread::spawn(move || {
                for _ in 0..4 {
                    for (what, body) in attacks.iter() {
                        let r = try_http(&addr, "POST", SP_PATH, &[("Content-Type", "text/xml")], body, Duration::from_secs(10));
                        let status = r.map(|r| r.status).unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert!(status == 500 || status == 413, "{what}: HTTP {status}");
                    }
                }
            })
        })
        .collect();
    // Huge declared lengths at the same time.
    for _ in 0..20 {
        let head = format!("POST {SP_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000000000\r\n\r\n", d.addr());
        let (r, _) = exchange(&d, head, b"xxxx".to_vec());
        assert_eq!(r.map(|r| r.status), Some(413));
    }
    for t in threads {
        t.join().unwrap();
    }
    d.assert_serves_get_time();
    let rss = d.rss_kib();
    assert!(rss < 200 * 1024, "RSS {rss} KiB after the attacks");
}

/// Insert `line` into the `[server]` section of the daemon's config and restart it.
fn restart_with_server_setting(d: &mut Daemon, line: &str) {
    d.restart_with_edited_config(|t| t.replacen("[server]\n", &format!("[server]\n{line}\n"), 1));
}

#[test]
fn max_body_bytes_is_configurable() {
    let mut d = Daemon::start();
    restart_with_server_setting(&mut d, "max_body_bytes = 2048");
    let base = get_time_with("<Pad></Pad>");
    let fits = get_time_with(&format!("<Pad>{}</Pad>", " ".repeat(2048 - base.len())));
    assert_served(&d, "2048-byte body", fits.as_bytes());
    let over = get_time_with(&format!("<Pad>{}</Pad>", " ".repeat(2049 - base.len())));
    let (r, took) = post(&d, over.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(took < QUICK);
    d.assert_serves_get_time();
}

#[test]
fn slow_body_and_slow_headers_time_out() {
    let mut d = Daemon::start();
    restart_with_server_setting(&mut d, "read_timeout_s = 1");
    // A body that never completes: the connection is answered (408) or closed after the read
    // timeout, not held.
    let head = format!("POST {SP_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<soap:Envelope", d.addr());
    let started = Instant::now();
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let got = read_until_close(&mut s, Duration::from_secs(6)).unwrap_or_default();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "slow body held the connection for {took:?}");
    if !got.is_empty() {
        let r = try_parse_http(&got).unwrap();
        assert!(r.status == 408 || r.status == 400, "HTTP {}", r.status);
    }
    // Headers that never complete.
    let started = Instant::now();
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(format!("POST {SP_PATH} HTTP/1.1\r\nHost: {}\r\nX-Slow: ", d.addr()).as_bytes()).unwrap();
    let _ = read_until_close(&mut s, Duration::from_secs(6));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "slow headers held the connection for {took:?}");
    d.assert_serves_get_time();
}
