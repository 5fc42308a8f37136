//! Outbound TLS (issue 11): a peer URL `https://…` is called over TLS (rustls), the server
//! verified against `tls.ca_file` or, without it, the system's trusted roots. The certificates
//! are made in the test (rcgen) and served by a small HTTPS server here (rustls).

use crate::harness::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn pki() -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "vnetd test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    Pki { ca_pem: ca.pem(), chain: vec![cert.der().clone()], key: key.serialize_der() }
}

/// The operations an HTTPS server received (it answers each with Result 0) and its port.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn https_server(p: &Pki) -> Server {
    // The crypto provider of the crate features (ring, as in the daemon's client).
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(p.chain.clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key.clone())))
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (cfg, seen) = (cfg.clone(), s.clone());
            std::thread::spawn(move || serve(cfg, tcp, &seen));
        }
    });
    Server { port, seen }
}

/// Answer SOAP requests on one connection (keep-alive) until it closes or TLS fails.
fn serve(cfg: Arc<rustls::ServerConfig>, tcp: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body);
        // The operation: the first element inside the Body.
        let after = body.split_once("Body>").map(|(_, a)| a).unwrap_or("");
        let op: String = after.trim_start().trim_start_matches('<').chars().take_while(|c| c.is_ascii_alphanumeric() || *c == ':').collect();
        let op = op.rsplit(':').next().unwrap_or("").to_string();
        seen.lock().unwrap().push(op.clone());
        let answer = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body>\
             <{op}Response xmlns=\"http://vnet.cn/centre/v3\"><Result>0</Result><ErrDescription></ErrDescription></{op}Response>\
             </soap:Body></soap:Envelope>"
        );
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n", answer.len());
        let w = r.get_mut();
        if w.write_all(head.as_bytes()).and_then(|_| w.write_all(answer.as_bytes())).and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}

/// A daemon whose centre peer is the HTTPS server; `extra` is more TOML.
fn daemon(server: &Server, extra: &str) -> Daemon {
    let d = Daemon::start_with(extra);
    d.add_standard_peers(false);
    let url = format!("https://127.0.0.1:{}/centre", server.port);
    d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &url]);
    std::thread::sleep(Duration::from_millis(1100));
    d
}

fn open_user(d: &Daemon, account: &str) {
    let tx = format!("tls-{account}");
    let r = d.call("ProvinceForBSS", "UserOpen", BSS_KEY, &[
        ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", account), ("Password", ""), ("CityCode", "0591"), ("UserType", "1"),
        ("CreditLimit", ""), ("Balance", ""), ("Alias", ""), ("BindingAccessNo", ""), ("TransactionID", &tx),
    ]);
    assert_code(&r, 0, "UserOpen");
}

#[test]
fn https_peers_are_called_over_tls_verified_by_the_configured_ca() {
    let p = pki();
    let server = https_server(&p);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &p.ca_pem).unwrap();
    let d = daemon(&server, &format!("[tls]\nca_file = \"{}\"\n", ca.display()));
    open_user(&d, "tls-user-1");
    let delivered = wait_until(Duration::from_secs(15), || server.seen.lock().unwrap().iter().any(|o| o == "PUserInfoNotify"));
    assert!(delivered, "PUserInfoNotify over TLS; log:\n{}", d.log());
}

#[test]
fn without_the_ca_the_server_is_not_trusted_and_nothing_is_delivered() {
    let p = pki();
    let server = https_server(&p);
    // No tls.ca_file: the system's roots, which do not know the test's CA.
    let d = daemon(&server, "");
    open_user(&d, "tls-user-2");
    let logged = wait_until(Duration::from_secs(15), || d.log().to_ascii_lowercase().contains("certificate"));
    assert!(logged, "a certificate error is logged:\n{}", d.log());
    assert!(server.seen.lock().unwrap().is_empty(), "no request reached the untrusted server");
}

#[test]
fn a_ca_file_that_is_not_a_certificate_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, cfg) = (dir.path().join("ca.pem"), dir.path().join("vnetd.toml"));
    std::fs::write(&bad, "not a certificate\n").unwrap();
    std::fs::write(&cfg, format!("[tls]\nca_file = \"{}\"\n", bad.display())).unwrap();
    let o = std::process::Command::new(BIN).arg("--config").arg(&cfg).arg("check-config").output().unwrap();
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stderr(&o).contains("tls.ca_file") && stderr(&o).contains("no PEM certificate"), "{}", stderr(&o));
    std::fs::write(&cfg, "[tls]\nca_file = \"/nonexistent/ca.pem\"\n").unwrap();
    let o = std::process::Command::new(BIN).arg("--config").arg(&cfg).arg("check-config").output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("/nonexistent/ca.pem"), "{}", stderr(&o));
}
