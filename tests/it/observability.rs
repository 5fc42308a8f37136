//! Logs, SIGHUP and metrics (issue 9 items 6 and 7): rate-limited refusal lines, destination
//! down/up warnings, the node's UTC offset in timestamps, SIGHUP reload without dropping
//! connections, and the Prometheus exposition (series at zero from start, histograms, refused
//! HTTP answers counted).

use crate::centre_sim::CentreSim;
use crate::fields::USER_OPEN;
use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const WRONG_KEY: &str = "111111111111111111111111111111111111111111111111";

fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// `2026-12-07T21:30:14.354+08:00 LEVEL ...`: RFC 3339 with the node's offset.
fn assert_offset_stamp(line: &str, offset: &str) {
    let stamp = line.split(' ').next().unwrap();
    assert_eq!(stamp.len(), 29, "{line}");
    assert!(stamp.ends_with(offset), "timestamp without the node's offset {offset}: {line}");
    assert_eq!(&stamp[10..11], "T", "{line}");
}

fn metric(d: &Daemon, series: &str) -> Option<f64> {
    let body = d.admin_get("/metrics").text();
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn count(d: &Daemon, sql: &str) -> i64 {
    d.db_ro().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn wait_log(d: &Daemon, secs: u64, what: &str, f: impl Fn(&str) -> bool) {
    assert!(wait_until(Duration::from_secs(secs), || f(&d.log())), "{what}; log:\n{}", d.log());
}

#[test]
fn integration_refusals_are_logged_at_info_rate_limited_per_peer() {
    let d = Daemon::start_with("[log]\ntarget = \"stderr\"\nlevel = \"info\"\nrefusal_burst = 3\nrefusal_window_s = 2\n");
    d.add_standard_peers(false);
    // 20 requests with a wrong key: -21548, the peer's claimed id, the operation, the source.
    for _ in 0..20 {
        let r = d.call("ProvinceForBSS", "UserOpen", WRONG_KEY, &[("SrcDeviceNo", BSS_ID)]);
        assert_eq!(r.result(), -21548);
    }
    // An unknown caller (-20001) is a peer of its own.
    let r = d.call("ProvinceForBSS", "UserOpen", WRONG_KEY, &[("SrcDeviceNo", "3599999999999999")]);
    assert_eq!(r.result(), -20001);
    // Not an envelope: a SOAP fault, logged with the source address.
    let r = d.post_raw("ProvinceForBSS", "text/xml", b"<not-soap/>");
    assert_eq!(r.status, 500);
    let want = format!("refused ProvinceForBSS/UserOpen from peer {BSS_ID} at 127.0.0.1: Result -21548");
    wait_log(&d, 10, "the summary of the suppressed refusals", |l| l.contains(&format!("17 more refused request(s) from peer {BSS_ID} not logged")));
    let log = d.log();
    let logged = lines_with(&log, &want);
    assert_eq!(logged.len(), 3, "three lines per window:\n{log}");
    for l in &logged {
        assert!(l.contains(" INFO "), "{l}");
        assert_offset_stamp(l, "+08:00");
    }
    assert_eq!(lines_with(&log, "from peer 3599999999999999 at 127.0.0.1: Result -20001").len(), 1, "{log}");
    assert_eq!(lines_with(&log, "from peer - at 127.0.0.1: SOAP fault").len(), 1, "{log}");
    // No Authenticator (or any key) in the log.
    assert!(!log.contains("Authenticator>"), "{log}");
    assert!(!log.contains(WRONG_KEY) && !log.contains(BSS_KEY), "{log}");
    // A new window logs again.
    let r = d.call("ProvinceForBSS", "UserOpen", WRONG_KEY, &[("SrcDeviceNo", BSS_ID)]);
    assert_eq!(r.result(), -21548);
    wait_log(&d, 5, "a refusal in the next window is logged", |l| lines_with(l, &want).len() == 4);
}

#[test]
fn an_unreachable_centre_is_warned_once_down_and_once_back() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let centre_url = format!("http://{addr}/centre");
    let d = Daemon::start_with("[sync]\nflush_interval_ms = 100\nretry_max_s = 1\ncentre_timeout_ms = 1000\n");
    d.add_standard_peers(false);
    d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &centre_url]);
    std::thread::sleep(Duration::from_millis(1100));
    // A user opened: a PUserInfoNotify waits for the centre.
    let pw = enc(BSS_KEY, "s3cret-Pass");
    let r = d.call_named(
        "ProvinceForBSS",
        "UserOpen",
        BSS_KEY,
        USER_OPEN,
        &[
            ("SrcDeviceNo", BSS_ID),
            ("AccountType", "01"),
            ("Account", "obs@fj"),
            ("Password", &pw),
            ("CityCode", "0591"),
            ("UserType", "1"),
            ("CreditLimit", "100000"),
            ("TransactionID", "OBS-1"),
        ],
    );
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    let down = format!("centre {centre_url} unreachable since ");
    wait_log(&d, 10, "the centre reported unreachable", |l| l.contains(&down));
    // Several more attempts fail (backoff 1 s), still one warning.
    assert!(wait_until(Duration::from_secs(20), || count(&d, "SELECT count(*) FROM outbox WHERE attempts >= 3") > 0));
    let log = d.log();
    let lines = lines_with(&log, &down);
    assert_eq!(lines.len(), 1, "one warning while down:\n{log}");
    assert!(lines[0].contains(" WARN "), "{}", lines[0]);
    assert_offset_stamp(&lines[0], "+08:00");
    // "unreachable since <the node's time>".
    let since = lines[0].split("unreachable since ").nth(1).unwrap();
    assert!(since[..29].ends_with("+08:00"), "{since}");
    assert_eq!(metric(&d, "vnetd_destination_state_changes_total{destination=\"centre\",state=\"down\"}"), Some(1.0));

    let _sim = CentreSim::start_on(&addr, &[]);
    let up = format!("centre {centre_url} reachable again after ");
    wait_log(&d, 20, "the centre reported reachable again", |l| l.contains(&up));
    assert!(wait_until(Duration::from_secs(20), || count(&d, "SELECT count(*) FROM outbox WHERE state = 'pending'") == 0));
    std::thread::sleep(Duration::from_millis(500));
    let log = d.log();
    assert_eq!(lines_with(&log, &up).len(), 1, "{log}");
    assert_eq!(lines_with(&log, &down).len(), 1, "{log}");
    assert!(lines_with(&log, &up)[0].contains(" failure(s) / "), "{log}");
    assert_eq!(metric(&d, "vnetd_destination_state_changes_total{destination=\"centre\",state=\"up\"}"), Some(1.0));
}

#[test]
fn log_timestamps_use_the_configured_timezone() {
    let mut d = Daemon::start_with("[node]\ntimezone = \"-03:30\"\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n");
    d.wait_healthy();
    wait_log(&d, 10, "the start line", |l| l.contains("serving SOAP on"));
    let log = d.log();
    let line = log.lines().find(|l| l.contains("serving SOAP on")).unwrap();
    assert_offset_stamp(line, "-03:30");
}

/// Send one keep-alive GET ?wsdl on `s` and read its answer.
fn wsdl_on(s: &mut TcpStream) -> Http {
    s.write_all(b"GET /ProvinceForSP/services/ProvinceForSP?wsdl HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_http_response(s, Duration::from_secs(5)).expect("an answer on the kept-alive connection")
}

#[test]
fn sighup_reloads_level_and_limits_without_dropping_connections() {
    let mut d = Daemon::start();
    d.add_standard_peers(false);
    d.wait_healthy();
    let mut kept = TcpStream::connect(d.addr()).unwrap();
    assert_eq!(wsdl_on(&mut kept).status, 200);
    // Level warn: a refusal is not logged.
    assert_eq!(d.call("ProvinceForBSS", "UserOpen", WRONG_KEY, &[("SrcDeviceNo", BSS_ID)]).result(), -21548);
    let big = vec![b'x'; 3000];
    assert_ne!(d.post_raw("ProvinceForSP", "text/xml", &big).status, 413);

    let original = std::fs::read_to_string(&d.cfg).unwrap();
    let changed = original.replace("level = \"warn\"", "level = \"info\"").replace("[storage]", "max_body_bytes = 2000\n[storage]");
    assert_ne!(changed, original);
    std::fs::write(&d.cfg, &changed).unwrap();
    let pid = nix::unistd::Pid::from_raw(d.child.as_ref().unwrap().pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_log(&d, 10, "the reload logged", |l| l.contains("SIGHUP: configuration reloaded"));
    // The limit applies, the level too, and the kept connection still serves.
    assert_eq!(d.post_raw("ProvinceForSP", "text/xml", &big).status, 413);
    assert_eq!(d.call("ProvinceForBSS", "UserOpen", WRONG_KEY, &[("SrcDeviceNo", BSS_ID)]).result(), -21548);
    wait_log(&d, 5, "a refusal logged at info", |l| l.contains(&format!("refused ProvinceForBSS/UserOpen from peer {BSS_ID}")));
    assert_eq!(wsdl_on(&mut kept).status, 200, "the keep-alive connection survived the reload");

    // An invalid file is logged and ignored: the reloaded settings stay.
    std::fs::write(&d.cfg, changed.replace("level = \"info\"", "level = \"loud\"")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_log(&d, 10, "the invalid file refused", |l| l.contains("SIGHUP: configuration not reloaded, the running one stays"));
    assert_eq!(d.post_raw("ProvinceForSP", "text/xml", &big).status, 413);
    assert_eq!(wsdl_on(&mut kept).status, 200);
    assert_eq!(d.admin_get("/healthz").status, 200);

    // A peer added by the CLI is served at once after SIGHUP (no 1 s cache wait needed).
    std::fs::write(&d.cfg, &changed).unwrap();
    d.ok(&["peer", "add", "--id", "35000002", "--kind", "sp", "--key", SP_KEY]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_log(&d, 10, "the second reload", |l| l.matches("SIGHUP: configuration reloaded").count() == 2);
    let log = d.log();
    assert!(log.lines().any(|l| l.contains("SIGHUP: configuration reloaded") && l.contains("3 peer(s) read")), "{log}");
}

#[test]
fn metrics_are_complete_at_start_and_count_refused_answers() {
    let mut d = Daemon::start_server_limited("max_connections = 2", "", None);
    d.wait_healthy();
    let r = d.admin_get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let m = r.text();
    for series in [
        "vnetd_requests_total{service=\"ProvinceForSP\",operation=\"Charge\",result=\"0\"} 0",
        "vnetd_requests_total{service=\"ProvinceForVNet\",operation=\"RoamAuthV2\",result=\"0\"} 0",
        "vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=\"Charge\",le=\"5e-05\"} 0",
        "vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=\"Charge\",le=\"5\"} 0",
        "vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=\"Charge\",le=\"+Inf\"} 0",
        "vnetd_request_duration_seconds_count{service=\"ProvinceForSP\",operation=\"Charge\"} 0",
        "vnetd_logins_total{result=\"ok\"} 0",
        "vnetd_logins_total{result=\"failed\"} 0",
        "vnetd_logins_total{result=\"locked\"} 0",
        "vnetd_lockouts_total 0",
        "vnetd_hash_busy_total 0",
        "vnetd_soap_faults_total{service=\"ProvinceForSP\"} 0",
        "vnetd_http_refused_total{listener=\"soap\",status=\"413\"} 0",
        "vnetd_http_refused_total{listener=\"soap\",status=\"503\"} 0",
        "vnetd_outbox_backlog{destination=\"centre\"} 0",
        "vnetd_outbox_dead_letters{destination=\"centre\"} 0",
        "vnetd_clock_offset_seconds 0",
        "vnetd_metrics_series_refused_total 0",
    ] {
        let (name, want) = series.rsplit_once(' ').unwrap();
        let got = m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
        assert_eq!(got, Some(want.parse::<f64>().unwrap()), "missing at start: {series}\n{m}");
    }
    for t in [
        "# TYPE vnetd_requests_total counter",
        "# TYPE vnetd_request_duration_seconds histogram",
        "# TYPE vnetd_store_commits_total counter",
        "# TYPE vnetd_http_refused_total counter",
        "# TYPE vnetd_outbox_backlog gauge",
    ] {
        assert!(m.contains(t), "{t}\n{m}");
    }
    // 413 (body over max_body_bytes), 431 (a header line over the limit), 503 (connection cap).
    assert_eq!(d.post_raw("ProvinceForSP", "text/xml", &vec![b'x'; 70_000]).status, 413);
    let huge = "a".repeat(20_000);
    let r = try_http(&d.addr(), "GET", "/ProvinceForSP/services/ProvinceForSP?wsdl", &[("X-Big", &huge)], b"", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 431);
    assert!(wait_until(Duration::from_secs(5), || metric(&d, "vnetd_open_connections") == Some(0.0)));
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(d.addr()).unwrap()).collect();
    assert!(
        wait_until(Duration::from_secs(5), || metric(&d, "vnetd_open_connections") == Some(2.0)),
        "open connections: {:?}",
        metric(&d, "vnetd_open_connections")
    );
    let r = raw_exchange(&d.addr(), b"GET /ProvinceForSP/services/ProvinceForSP?wsdl HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(5)).unwrap();
    assert!(r.starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&r));
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || metric(&d, "vnetd_open_connections") == Some(0.0)));
    let _ = d.post_raw("ProvinceForSP", "text/xml", b"<not-soap/>");
    assert_eq!(metric(&d, "vnetd_http_refused_total{listener=\"soap\",status=\"413\"}"), Some(1.0));
    assert_eq!(metric(&d, "vnetd_http_refused_total{listener=\"soap\",status=\"431\"}"), Some(1.0));
    assert_eq!(metric(&d, "vnetd_http_refused_total{listener=\"soap\",status=\"503\"}"), Some(1.0));
    assert_eq!(metric(&d, "vnetd_soap_faults_total{service=\"ProvinceForSP\"}"), Some(1.0));
}
