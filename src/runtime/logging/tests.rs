//! Tests of the log router, the syslog stream and the line formats.

use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn test_router(stderr: StderrOut) -> Router {
    Router {
        stderr,
        ..Router::new()
    }
}

fn to_syslog(router: &Router, path: &Path, level: LevelFilter) {
    to_syslog_with(router, path, level, SEND_TIMEOUT, STALL_BACKOFF);
}

fn to_syslog_with(router: &Router, path: &Path, level: LevelFilter, timeout: Duration, backoff: Duration) {
    let route = Route::open_syslog(path, timeout, backoff).expect("open syslog");
    router.set_route(route, level);
}

fn bind(path: &Path) -> UnixDatagram {
    let sock = UnixDatagram::bind(path).expect("bind test syslog socket");
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let n = sock.recv(&mut buf).expect("expected a syslog datagram");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn assert_nothing_more(sock: &UnixDatagram) {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!(
            "expected no datagram, got {:?}",
            other.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        ),
    }
    sock.set_nonblocking(false).unwrap();
}

fn emit(router: &Router, level: Level, target: &str, message: &str) {
    router.log(
        &Record::builder()
            .args(format_args!("{message}"))
            .level(level)
            .target(target)
            .build(),
    );
}

/// Splits `<PRI>Mmm dd hh:mm:ss vnetd[pid]: text` and checks the RFC 3164 header.
fn parse(datagram: &str) -> (u32, String) {
    assert!(datagram.starts_with('<'), "{datagram}");
    let close = datagram.find('>').unwrap();
    let pri: u32 = datagram[1..close].parse().unwrap();
    let rest = &datagram[close + 1..];
    // "Jan 05 12:34:56 " is 16 bytes.
    let stamp = &rest[..16];
    let b = stamp.as_bytes();
    assert!(b[0].is_ascii_uppercase() && b[3] == b' ' && b[6] == b' ', "timestamp {stamp:?}");
    assert!(b[9] == b':' && b[12] == b':' && b[15] == b' ', "timestamp {stamp:?}");
    let tag = format!("{PROCESS_NAME}[{}]: ", std::process::id());
    let body = rest[16..]
        .strip_prefix(&tag)
        .unwrap_or_else(|| panic!("missing tag {tag:?} in {datagram:?}"));
    (pri, body.to_string())
}

#[test]
fn syslog_priorities_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = bind(&path);
    let router = test_router(StderrOut::Process);
    to_syslog(&router, &path, LevelFilter::Info);

    emit(&router, Level::Info, "vnetd::store::outbox", "relay started");
    assert_eq!(parse(&recv(&sock)), (30, "vnetd::store::outbox: relay started".to_string()));
    emit(&router, Level::Warn, "vnetd::x", "slow peer");
    assert_eq!(parse(&recv(&sock)), (28, "vnetd::x: slow peer".to_string()));
    emit(&router, Level::Error, "vnetd::x", "disk full");
    assert_eq!(parse(&recv(&sock)), (27, "vnetd::x: disk full".to_string()));

    let line = audit_line("login", &[("account", "alice"), ("result", "ok")]);
    emit(&router, Level::Info, AUDIT_TARGET, &line);
    assert_eq!(parse(&recv(&sock)), (86, "event=login account=alice result=ok".to_string()));
    emit(&router, Level::Warn, AUDIT_TARGET, "event=lockout account=bob");
    assert_eq!(parse(&recv(&sock)), (84, "event=lockout account=bob".to_string()));

    // One record, one line.
    emit(&router, Level::Info, "vnetd::x", "a\nforged line\r\u{1b}[31m");
    assert_eq!(parse(&recv(&sock)).1, "vnetd::x: a\\nforged line\\r\\u{1b}[31m");
    assert_nothing_more(&sock);
    assert_eq!(router.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn audit_goes_only_to_authpriv_and_ordinary_only_to_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = bind(&path);
    let router = test_router(StderrOut::Process);
    to_syslog(&router, &path, LevelFilter::Trace);

    emit(&router, Level::Info, "vnetd::soap", "ordinary");
    emit(&router, Level::Info, AUDIT_TARGET, "event=reset account=carol");
    emit(&router, Level::Debug, "vnetd::soap", "detail");
    emit(&router, Level::Info, "audit_like", "not audit");
    let got: Vec<(u32, String)> = (0..4).map(|_| parse(&recv(&sock))).collect();
    assert_nothing_more(&sock);
    assert_eq!(
        got,
        vec![
            (30, "vnetd::soap: ordinary".to_string()),
            (86, "event=reset account=carol".to_string()),
            (31, "vnetd::soap: detail".to_string()),
            (30, "audit_like: not audit".to_string()),
        ]
    );
    // Audit records carry facility authpriv (10) and nothing else does.
    for (pri, body) in &got {
        assert_eq!(pri / 8 == 10, body.starts_with("event="), "{pri} {body}");
    }
}

#[test]
fn reconnects_after_syslog_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let router = test_router(StderrOut::Process);

    let first = bind(&path);
    to_syslog(&router, &path, LevelFilter::Info);
    emit(&router, Level::Info, "t", "before restart");
    emit(&router, Level::Info, AUDIT_TARGET, "event=a");
    assert_eq!(parse(&recv(&first)), (30, "t: before restart".to_string()));
    assert_eq!(parse(&recv(&first)), (86, "event=a".to_string()));

    // Syslog restarts: its socket is closed, removed and bound anew at the same path.
    drop(first);
    std::fs::remove_file(&path).unwrap();
    let second = bind(&path);
    emit(&router, Level::Info, "t", "after restart");
    emit(&router, Level::Info, AUDIT_TARGET, "event=b");
    emit(&router, Level::Info, "t", "and later");
    assert_eq!(parse(&recv(&second)), (30, "t: after restart".to_string()));
    assert_eq!(parse(&recv(&second)), (86, "event=b".to_string()));
    assert_eq!(parse(&recv(&second)), (30, "t: and later".to_string()));
    assert_nothing_more(&second);
    assert_eq!(router.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn drops_while_syslog_is_down_then_reconnects_and_reports_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let router = test_router(StderrOut::Process);
    let first = bind(&path);
    to_syslog(&router, &path, LevelFilter::Info);
    drop(first);
    std::fs::remove_file(&path).unwrap();

    let started = Instant::now();
    emit(&router, Level::Info, "t", "lost 1");
    emit(&router, Level::Error, "t", "lost 2");
    assert!(started.elapsed() < Duration::from_secs(1), "must not block while syslog is down");
    assert_eq!(router.dropped.load(Ordering::Relaxed), 2);

    let second = bind(&path);
    emit(&router, Level::Info, "t", "back");
    assert_eq!(parse(&recv(&second)), (30, "t: back".to_string()));
    let (pri, notice) = parse(&recv(&second));
    assert_eq!(pri, 28);
    assert!(notice.ends_with(": 2 message(s) dropped while syslog was unavailable"), "{notice}");
    emit(&router, Level::Info, "t", "steady");
    assert_eq!(parse(&recv(&second)), (30, "t: steady".to_string()));
    assert_nothing_more(&second);
}

#[test]
fn a_stuck_syslog_does_not_hold_callers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = bind(&path);
    let router = test_router(StderrOut::Process);
    let timeout = Duration::from_millis(20);
    to_syslog_with(&router, &path, LevelFilter::Info, timeout, Duration::from_millis(200));

    // Nobody reads `sock`: its queue fills up, then sends time out.
    let body = "x".repeat(4000);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..2000 {
        let t = Instant::now();
        emit(&router, Level::Info, "t", &body);
        slowest = slowest.max(t.elapsed());
    }
    let dropped = router.dropped.load(Ordering::Relaxed);
    assert!(dropped > 0, "the queue never filled");
    // One timeout per back-off window at most, never one per message.
    assert!(slowest < timeout * 10, "a single call blocked {slowest:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // Drain, wait out the back-off, and delivery resumes with a loss report.
    sock.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    while sock.recv(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received + dropped, 2000);
    sock.set_nonblocking(false).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    emit(&router, Level::Info, "t", "recovered");
    assert_eq!(parse(&recv(&sock)), (30, "t: recovered".to_string()));
    let (_, notice) = parse(&recv(&sock));
    assert!(notice.ends_with(&format!(": {dropped} message(s) dropped while syslog was unavailable")), "{notice}");
}

#[test]
fn level_filtering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = bind(&path);
    let router = test_router(StderrOut::Process);

    to_syslog(&router, &path, LevelFilter::Warn);
    emit(&router, Level::Info, "t", "info hidden");
    emit(&router, Level::Debug, "t", "debug hidden");
    emit(&router, Level::Warn, "t", "warn shown");
    emit(&router, Level::Info, AUDIT_TARGET, "event=shown_anyway");
    assert_eq!(parse(&recv(&sock)), (28, "t: warn shown".to_string()));
    assert_eq!(parse(&recv(&sock)), (86, "event=shown_anyway".to_string()));
    assert_nothing_more(&sock);
    assert!(!router.enabled(&Metadata::builder().level(Level::Info).target("t").build()));
    assert!(router.enabled(&Metadata::builder().level(Level::Info).target(AUDIT_TARGET).build()));

    to_syslog(&router, &path, LevelFilter::Off);
    emit(&router, Level::Error, "t", "off");
    emit(&router, Level::Info, AUDIT_TARGET, "event=off");
    assert_nothing_more(&sock);
    assert!(!router.enabled(&Metadata::builder().level(Level::Error).target(AUDIT_TARGET).build()));

    assert_eq!(max_level_for(LevelFilter::Off), LevelFilter::Off);
    assert_eq!(max_level_for(LevelFilter::Error), LevelFilter::Info);
    assert_eq!(max_level_for(LevelFilter::Debug), LevelFilter::Debug);
}

fn captured(router: &Router) -> Vec<String> {
    match &router.stderr {
        StderrOut::Capture(lines) => std::mem::take(&mut *lock(lines)),
        StderrOut::Process => unreachable!(),
    }
}

/// `2024-01-05T12:34:56.789+08:00 LEVEL target: message\n` -> (LEVEL target: message)
fn strip_time(line: &str) -> &str {
    let b = line.as_bytes();
    assert!(b.len() > 30, "{line:?}");
    for (i, c) in b[..29].iter().enumerate() {
        let ok = match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 | 26 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'+' || *c == b'-',
            _ => c.is_ascii_digit(),
        };
        assert!(ok, "bad RFC 3339 time in {line:?}");
    }
    assert_eq!(b[29], b' ');
    line[30..].strip_suffix('\n').expect("line ends with a newline")
}

#[test]
fn timestamps_carry_the_node_offset() {
    set_utc_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
    let t = now_rfc3339();
    assert!(t.ends_with("+08:00"), "{t}");
    let parsed = time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((parsed - time::OffsetDateTime::now_utc()).abs() < time::Duration::seconds(5));
    assert_eq!(syslog_stamp().len(), 15);
}

#[test]
fn stderr_format_audit_prefix_and_levels() {
    let router = test_router(StderrOut::Capture(Mutex::new(Vec::new())));
    router.use_stderr(LevelFilter::Error);
    emit(&router, Level::Error, "vnetd::store", "write failed");
    emit(&router, Level::Warn, "vnetd::store", "hidden");
    emit(&router, Level::Info, AUDIT_TARGET, &audit_line("key_change", &[("peer", "sp01")]));
    emit(&router, Level::Error, "vnetd::store", "two\nlines");
    let lines = captured(&router);
    let rest: Vec<&str> = lines.iter().map(|l| strip_time(l)).collect();
    assert_eq!(
        rest,
        vec![
            "ERROR vnetd::store: write failed",
            "INFO audit: event=key_change peer=sp01",
            "ERROR vnetd::store: two\\nlines",
        ]
    );

    router.use_stderr(LevelFilter::Off);
    emit(&router, Level::Error, "t", "x");
    emit(&router, Level::Info, AUDIT_TARGET, "event=x");
    assert!(captured(&router).is_empty());
}

#[test]
fn audit_line_quotes_and_escapes() {
    assert_eq!(audit_line("login", &[]), "event=login");
    assert_eq!(
        audit_line(
            "login_failed",
            &[
                ("account", "alice"),
                ("reason", "bad password"),
                ("q", "a\"b\\c"),
                ("eq", "a=b"),
                ("nl", "x\ny"),
                ("empty", ""),
                ("bad key", "v"),
                ("cn", "张三"),
            ]
        ),
        "event=login_failed account=alice reason=\"bad password\" q=\"a\\\"b\\\\c\" \
         eq=\"a=b\" nl=\"x\\ny\" empty=\"\" bad_key=v cn=张三"
    );
    assert_eq!(audit_line("admin command", &[]), "event=\"admin command\"");
}

#[test]
fn long_messages_are_truncated_on_a_char_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = bind(&path);
    let router = test_router(StderrOut::Process);
    to_syslog(&router, &path, LevelFilter::Info);
    let long = "é".repeat(10_000); // 20 000 bytes
    emit(&router, Level::Info, "t", &long);
    let (_, body) = parse(&recv(&sock));
    assert!(body.len() <= MAX_SYSLOG_MESSAGE_BYTES, "{}", body.len());
    assert!(body.len() > MAX_SYSLOG_MESSAGE_BYTES - 20);
    assert!(body.starts_with("t: éé"));
    assert!(body.ends_with(TRUNCATED_MARKER));
}

#[test]
fn switch_to_missing_socket_fails_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such.sock");
    let err = switch_to_syslog_at(&path, LevelFilter::Info).unwrap_err();
    assert!(err.contains("cannot connect to syslog socket"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}
