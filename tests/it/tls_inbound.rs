//! Inbound TLS (issue 11 item 2): with `[tls] cert_file` and `key_file` the SOAP/pages listener
//! speaks HTTPS only (verified here against the test's CA), the browser cookies are `Secure`,
//! SIGHUP replaces the certificate for new connections while open ones keep working, and
//! check-config refuses a missing or unreadable pair.

use crate::harness::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A test CA; `leaf` signs a certificate for 127.0.0.1 with a new key.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "vnetd inbound test CA");
        Ca { issuer: rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap() }
    }
    /// Writes a new leaf's certificate and key to `dir` (cert.pem, key.pem); returns its DER.
    fn leaf(&self, dir: &Path) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }
    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.issuer.pem().as_bytes()).unwrap()).unwrap();
        Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    }
}

fn tls_section(dir: &Path) -> String {
    format!("[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n", dir.join("cert.pem").display(), dir.join("key.pem").display())
}

/// An HTTPS connection to the daemon (keep-alive).
struct Conn(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Conn {
    fn open(d: &Daemon, cfg: &Arc<rustls::ClientConfig>) -> Conn {
        let tcp = TcpStream::connect(d.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let c = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
        let mut s = rustls::StreamOwned::new(c, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake verified by the test CA");
        }
        Conn(s)
    }
    /// The DER of the certificate the server presented.
    fn peer_cert(&self) -> Vec<u8> {
        self.0.conn.peer_certificates().unwrap()[0].to_vec()
    }
    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Http {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.0.write_all(&bytes).unwrap();
        self.0.flush().unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(self.0.read(&mut byte).unwrap(), 1, "the answer's head ended early: {:?}", String::from_utf8_lossy(&buf));
            buf.push(byte[0]);
        }
        let head = parse_http(&buf);
        let n: usize = head.header("Content-Length").unwrap().parse().unwrap();
        let mut body = vec![0; n];
        self.0.read_exact(&mut body).unwrap();
        Http { body, ..head }
    }
    fn soap(&mut self, service: &str, op: &str, fields: &[(String, String)]) -> Resp {
        let r = self.request("POST", &Daemon::path(service), &[("Content-Type", "text/xml; charset=utf-8")], envelope_owned(op, fields).as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        Resp::parse(&r.text())
    }
}

fn get_time(c: &mut Conn) -> Resp {
    c.soap("ProvinceForSP", "GetTime", &[("SPID".into(), SP_ID.into())])
}

fn tls_daemon(ca: &Ca, extra: &str) -> (Daemon, tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let der = ca.leaf(dir.path());
    let mut d = Daemon::start_with(&format!("{}{extra}", tls_section(dir.path())));
    d.add_standard_peers(false);
    d.wait_healthy();
    (d, dir, der)
}

#[test]
fn soap_over_https_verified_by_the_ca_and_plain_http_gets_no_soap_answer() {
    let ca = Ca::new();
    let (d, _dir, der) = tls_daemon(&ca, "");
    let account = "tls-in-1";
    let out = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", account, "--city-code", "0591", "--password-stdin"], "secret-1\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();

    let mut c = Conn::open(&d, &ca.client());
    assert_eq!(c.peer_cert(), der);
    let t = get_time(&mut c);
    assert_eq!(t.result(), 0, "{:?}", t.fields);
    // The same connection, kept alive: an authenticated GetUserinfo.
    let fields = signed_fields(SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)], &d.now_ts());
    let r = c.soap("ProvinceForSP", "GetUserinfo", &fields);
    assert_eq!(r.result(), 0, "{:?}", r.fields);

    // Plain HTTP on the TLS port: no HTTP answer, no SOAP body.
    let body = envelope_of("GetTime", &[("SPID", SP_ID.to_string())]);
    let raw = format!("POST {} HTTP/1.1\r\nHost: t\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", Daemon::path("ProvinceForSP"), body.len());
    let got = raw_exchange(&d.addr(), raw.as_bytes(), Duration::from_secs(10)).unwrap_or_default();
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("HTTP/1.1") && !text.contains("Envelope"), "plain HTTP answered: {text}");
}

#[test]
fn browser_cookies_are_secure_over_tls_only() {
    let ca = Ca::new();
    let (d, _dir, _) = tls_daemon(&ca, "");
    let tok = crate::web::sso_request(&d, SP_ID, SP_KEY, "http://sp.example/back");
    let path = format!("/sso/login?SSORequest={}", crate::web::q(&tok));
    let r = Conn::open(&d, &ca.client()).request("GET", &path, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let cookies: Vec<&str> = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie")).map(|(_, v)| v.as_str()).collect();
    assert!(!cookies.is_empty(), "the login page sets its form cookie");
    assert!(cookies.iter().all(|c| c.ends_with("; Secure")), "{cookies:?}");

    let plain = Daemon::with_peers(false);
    let tok = crate::web::sso_request(&plain, SP_ID, SP_KEY, "http://sp.example/back");
    let r = http(&plain.addr(), "GET", &format!("/sso/login?SSORequest={}", crate::web::q(&tok)), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let cookies: Vec<&str> = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie")).map(|(_, v)| v.as_str()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
}

fn wait_log(d: &Daemon, what: &str, f: impl Fn(&str) -> bool) {
    assert!(wait_until(Duration::from_secs(10), || f(&d.log())), "{what}; log:\n{}", d.log());
}

#[test]
fn sighup_replaces_the_certificate_for_new_connections_and_keeps_open_ones() {
    let ca = Ca::new();
    let (d, dir, first) = tls_daemon(&ca, "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n");
    let client = ca.client();
    let mut kept = Conn::open(&d, &client);
    assert_eq!(get_time(&mut kept).result(), 0);

    let second = ca.leaf(dir.path());
    assert_ne!(first, second);
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_log(&d, "the certificate reloaded", |l| l.contains("TLS certificate reloaded"));
    let mut fresh = Conn::open(&d, &client);
    assert_eq!(fresh.peer_cert(), second, "a new connection gets the new certificate");
    assert_eq!(get_time(&mut fresh).result(), 0);
    assert_eq!(kept.peer_cert(), first);
    assert_eq!(get_time(&mut kept).result(), 0, "the open connection keeps working");

    // A key file that is not a key: the running certificate stays, the file is named.
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "garbage\n").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_log(&d, "the bad key refused", |l| l.contains("TLS certificate not reloaded") && l.contains(&key.display().to_string()));
    let mut again = Conn::open(&d, &client);
    assert_eq!(again.peer_cert(), second);
    assert_eq!(get_time(&mut again).result(), 0);
    assert_eq!(get_time(&mut kept).result(), 0);
}

fn check_config(dir: &Path, tls: &str) -> std::process::Output {
    let cfg: PathBuf = dir.join("vnetd.toml");
    std::fs::write(&cfg, tls).unwrap();
    std::process::Command::new(BIN).arg("--config").arg(&cfg).arg("check-config").output().unwrap()
}

#[test]
fn check_config_refuses_a_missing_or_garbage_key_and_a_cert_without_key() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    ca.leaf(dir.path());
    let o = check_config(dir.path(), &tls_section(dir.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let cert = dir.path().join("cert.pem").display().to_string();
    let o = check_config(dir.path(), &format!("[tls]\ncert_file = \"{cert}\"\nkey_file = \"/nonexistent/key.pem\"\n"));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("tls.key_file /nonexistent/key.pem"), "{}", stderr(&o));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let o = check_config(dir.path(), &format!("[tls]\ncert_file = \"{cert}\"\nkey_file = \"{}\"\n", garbage.display()));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(&format!("tls.key_file {}", garbage.display())), "{}", stderr(&o));

    let o = check_config(dir.path(), &format!("[tls]\ncert_file = \"{cert}\"\n"));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("tls.cert_file and tls.key_file must be set together"), "{}", stderr(&o));

    let o = check_config(dir.path(), "[tls]\ncertificate = \"x.pem\"\n");
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
}

fn metric(d: &Daemon, series: &str) -> f64 {
    let body = d.admin_get("/metrics").text();
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[test]
fn a_handshake_not_finished_within_read_timeout_closes_the_connection_and_is_counted() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    ca.leaf(dir.path());
    let mut d = Daemon::start_with_server("read_timeout_s = 1", &tls_section(dir.path()));
    d.wait_healthy();
    assert_eq!(metric(&d, "vnetd_tls_handshake_failures_total{reason=\"timeout\"}"), 0.0);
    // Silent after connecting: closed after about 1 s, with nothing written.
    let mut silent = TcpStream::connect(d.addr()).unwrap();
    let started = std::time::Instant::now();
    let got = read_until_close(&mut silent, Duration::from_secs(10)).unwrap_or_default();
    let took = started.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(5), "closed after {took:?}");
    // The start of a TLS record header a byte at a time, then nothing: the deadline counts from the accept, not per byte.
    let mut trickle = TcpStream::connect(d.addr()).unwrap();
    let started = std::time::Instant::now();
    for b in [0x16, 0x03, 0x01] {
        if trickle.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let _ = read_until_close(&mut trickle, Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    assert!(wait_until(Duration::from_secs(5), || metric(&d, "vnetd_tls_handshake_failures_total{reason=\"timeout\"}") >= 2.0));
    // Not TLS at all: a failed handshake, counted apart.
    let _ = raw_exchange(&d.addr(), b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(5), || metric(&d, "vnetd_tls_handshake_failures_total{reason=\"error\"}") >= 1.0));
    // And the listener still serves HTTPS.
    assert_eq!(get_time(&mut Conn::open(&d, &ca.client())).result(), 0);
}
