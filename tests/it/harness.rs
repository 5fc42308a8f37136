//! Test harness: spawns the real `vnetd` binary with a temp config on free ports, speaks SOAP over
//! HTTP to it, and kills it on drop.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
pub use vnetd::cli::child::ChildProcess;
use std::time::{Duration, Instant};
use vnetd::crypto::{self, TdesKey};
use vnetd::soap::envelope::{self, Elem};

pub const BIN: &str = env!("CARGO_BIN_EXE_vnetd");
pub const SP_ID: &str = "35000001";
pub const BSS_ID: &str = "3500000000000201";
pub const CENTRE_ID: &str = "3500000000000001";
pub const SP_KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
pub const CENTRE_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a";
pub const BSS_KEY: &str = "00112233445566778899aabbccddeeff0011223344556677";
pub const IV: &str = "0102030405060708";
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Catalogue fixture (`catalog import` TOML): the provincial music SP (SP_ID) and its service
/// 3500000100000001, without items.
pub const MUSIC_SP: &str = r#"
[[sp]]
spid = "35000001"
name = "福建星空音乐"
scope = "province"
[[service]]
service_id = "3500000100000001"
spid = "35000001"
name = "在线音乐"
status = "active"
"#;

/// Catalogue fixture: a national SP (scope national → SPProvinceID 00) with its service, a
/// per-use item 0000000400000101 (300 fen) and a monthly item 0000000400000102 (800 fen).
pub const NATIONAL_GAMES: &str = r#"
[[sp]]
spid = "00000004"
name = "全国星空游戏"
scope = "national"
[[service]]
service_id = "0000000400000001"
spid = "00000004"
name = "全国游戏"
status = "active"
[[item]]
service_item_id = "0000000400000101"
service_id = "0000000400000001"
name = "游戏单次"
fee_type = "1"
price = 300
status = "active"
[[item]]
service_item_id = "0000000400000102"
service_id = "0000000400000001"
name = "游戏包月"
fee_type = "2"
price = 800
status = "active"
"#;

/// One active `[[item]]` of a catalogue (fee_type "1" per use, "2" monthly; price in fen).
pub fn catalog_item(item: &str, service: &str, name: &str, fee_type: &str, price: i64) -> String {
    format!("[[item]]\nservice_item_id = \"{item}\"\nservice_id = \"{service}\"\nname = \"{name}\"\nfee_type = \"{fee_type}\"\nprice = {price}\nstatus = \"active\"\n")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn key(hex: &str) -> TdesKey {
    TdesKey::from_hex(hex, IV).unwrap()
}

pub struct Daemon {
    pub child: Option<ChildProcess>,
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    pub db: PathBuf,
    /// Seconds the node clock is shifted by (`[node] time_offset_s`).
    pub offset_s: i64,
    extra: String,
    /// Starts retried because a chosen port was taken meanwhile.
    port_retries: u32,
}

impl Daemon {
    /// A daemon with small Argon2 parameters and the given extra TOML (whole sections).
    pub fn start_with(extra: &str) -> Daemon {
        Daemon::start_server_limited("", extra, None)
    }

    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// The standard peers: an SP, a BSS and (optionally) the centre.
    pub fn with_peers(centre: bool) -> Daemon {
        let d = Daemon::start();
        d.add_standard_peers(centre);
        d
    }

    pub fn add_standard_peers(&self, centre: bool) {
        self.ok(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"]);
        self.ok(&["peer", "add", "--id", BSS_ID, "--kind", "bss", "--key", BSS_KEY]);
        if centre {
            self.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY]);
        }
        // The daemon's peer cache refreshes every second.
        std::thread::sleep(Duration::from_millis(1100));
    }

    fn write_config(&self) {
        let node_extra = if self.extra.contains("[node]") { String::new() } else { format!("[node]\ntime_offset_s = {}\n", self.offset_s) };
        let security_extra = if self.extra.contains("[security]") { String::new() } else { "[security]\nargon2_m_kib = 64\nargon2_t = 1\n".into() };
        let log_extra = if self.extra.contains("[log]") { "" } else { "[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n" };
        let text = format!(
            "{node_extra}[server]\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n[storage]\npath = \"{}\"\n{security_extra}{log_extra}{}\n",
            self.port,
            self.admin_port,
            self.db.display(),
            self.extra
        );
        std::fs::write(&self.cfg, text).unwrap();
    }

    fn spawn(&mut self) {
        self.spawn_with_nofile(None);
    }

    pub fn wait_healthy(&mut self) {
        if let Err(e) = self.try_wait_healthy() {
            panic!("{e}\nwhole log:\n{}", self.log());
        }
    }

    /// Waits (20 s at most) until `vnetd healthcheck` passes; Err: the daemon exited or never did.
    fn try_wait_healthy(&mut self) -> Result<(), String> {
        let cfg = self.cfg.clone();
        let healthy = || Command::new(BIN).arg("--config").arg(&cfg).arg("healthcheck").stdin(Stdio::null()).output().unwrap().status.success();
        self.child.as_mut().expect("daemon not started").wait_ready("vnetd", Duration::from_secs(20), healthy)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vnetd.log")).unwrap_or_default()
    }

    /// SIGKILL the daemon.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// Stop (SIGTERM) and start again, with the node clock shifted to `offset_s`.
    pub fn restart_with_offset(&mut self, offset_s: i64) {
        self.stop();
        self.offset_s = offset_s;
        self.write_config();
        self.spawn();
    }

    pub fn restart(&mut self) {
        let o = self.offset_s;
        self.restart_with_offset(o);
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop(Duration::from_secs(10));
        }
    }

    /// Run a CLI command against this daemon's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("--config").arg(&self.cfg).args(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut c = Command::new(BIN)
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command may end without reading its input (a usage error): a broken pipe is fine.
        let _ = c.stdin.take().unwrap().write_all(input.as_bytes());
        c.wait_with_output().unwrap()
    }

    /// Run a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "vnetd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn path(service: &str) -> String {
        format!("/{service}/services/{service}")
    }

    /// Node time now, as a `ts`.
    pub fn now_ts(&self) -> String {
        ts(self.offset_s)
    }

    /// POST a raw body; returns (status, headers, body bytes).
    pub fn post_raw(&self, service: &str, content_type: &str, body: &[u8]) -> Http {
        http(&self.addr(), "POST", &Daemon::path(service), &[("Content-Type", content_type)], body)
    }

    /// Call an authenticated operation. `fields` are in the operation's order without TimeStamp
    /// and Authenticator; both are added (TimeStamp = node now).
    pub fn call(&self, service: &str, op: &str, key_hex: &str, fields: &[(&str, &str)]) -> Resp {
        let ts = self.now_ts();
        self.call_at(service, op, key_hex, fields, &ts)
    }

    pub fn call_at(&self, service: &str, op: &str, key_hex: &str, fields: &[(&str, &str)], ts: &str) -> Resp {
        let mut all: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
        all.push(("TimeStamp", ts.to_string()));
        let values: Vec<&str> = all.iter().map(|(_, v)| v.as_str()).collect();
        let auth = crypto::authenticator(&key(key_hex), &values);
        all.push(("Authenticator", auth));
        self.call_raw(service, op, &all)
    }

    /// Send exactly these fields.
    pub fn call_raw(&self, service: &str, op: &str, fields: &[(&str, String)]) -> Resp {
        let body = envelope_of(op, fields);
        let r = self.post_raw(service, "text/xml; charset=utf-8", body.as_bytes());
        assert_eq!(r.status, 200, "HTTP {} for {op}: {}", r.status, r.text());
        Resp::parse(&r.text())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Node time shifted by `offset_s`, in the default +08:00 zone.
pub fn ts(offset_s: i64) -> String {
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    let now = now.to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
    now.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).unwrap()
}

pub fn enc(key_hex: &str, plain: &str) -> String {
    key(key_hex).encrypt_b64(plain.as_bytes())
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::new();
    vnetd::soap::writer::escape(&mut out, s);
    out
}

pub fn envelope_of(op: &str, fields: &[(&str, String)]) -> String {
    let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><{op}>");
    for (k, v) in fields {
        body.push_str(&format!("<{k}>{}</{k}>", xml_escape(v)));
    }
    body.push_str(&format!("</{op}></soap:Body></soap:Envelope>"));
    body
}

/// A parsed SOAP response.
#[derive(Debug)]
pub struct Resp {
    pub op: Elem,
    pub fields: HashMap<String, String>,
    /// Element names in document order.
    pub order: Vec<String>,
}

impl Resp {
    pub fn parse(xml: &str) -> Resp {
        let env = envelope::parse(xml).unwrap_or_else(|e| panic!("bad response {e}: {xml}"));
        let fields = env.op.children.iter().map(|c| (c.name.clone(), c.text.clone())).collect();
        let order = env.op.children.iter().map(|c| c.name.clone()).collect();
        Resp { op: env.op, fields, order }
    }
    pub fn result(&self) -> i32 {
        self.fields["Result"].parse().unwrap()
    }
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or_else(|| panic!("no {name} in {:?}", self.fields))
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (Connection: close).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Http {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse_http(&buf)
}

pub fn parse_http(buf: &[u8]) -> Http {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Http { status, headers, body: buf[end + 4..].to_vec() }
}

// ---- Generic helpers (PassPort / key tests) ----

/// One row of the outbox table.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub destination: String,
    pub operation: String,
    pub order_key: String,
    /// The payload's fields in order.
    pub payload: Vec<(String, String)>,
    pub key_version: Option<i64>,
    pub state: String,
}

impl OutboxRow {
    /// A payload field's value ("" when absent).
    pub fn field(&self, name: &str) -> &str {
        self.payload.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
    pub fn names(&self) -> Vec<&str> {
        self.payload.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Poll `f` every 50 ms until it returns true or `timeout` passes; returns whether it did.
/// The Result is `code`; ErrDescription is empty on success (0, and Reconcile's -22001) and
/// carries a reason otherwise.
pub fn assert_code(r: &Resp, code: i32, what: &str) {
    assert_eq!(r.result(), code, "{what}: {:?}", r.fields);
    if code == 0 || code == -22001 {
        assert_eq!(r.get("ErrDescription"), "", "{what}: success has an empty ErrDescription");
    } else {
        assert!(!r.get("ErrDescription").is_empty(), "{what}: a failure carries a reason");
    }
}

/// The header of `user import` files (spec 11 "CLI formats").
pub const CSV_HEADER: &str = "account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no";

/// A CLI run's standard output, standard error and exit code.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Daemon {
    /// Every outbox row in id order (the database opened read-only).
    pub fn outbox(&self) -> Vec<OutboxRow> {
        let c = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        let mut st = c
            .prepare("SELECT id, destination, operation, order_key, payload, key_version, state FROM outbox ORDER BY id")
            .unwrap();
        let rows = st
            .query_map([], |r| {
                let payload: String = r.get(4)?;
                Ok(OutboxRow {
                    id: r.get(0)?,
                    destination: r.get(1)?,
                    operation: r.get(2)?,
                    order_key: r.get(3)?,
                    payload: serde_json::from_str(&payload).unwrap_or_else(|e| panic!("outbox payload {payload:?}: {e}")),
                    key_version: r.get(5)?,
                    state: r.get(6)?,
                })
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Outbox rows of one operation whose order key is `user:<vnet_user_id>`.
    pub fn outbox_for_user(&self, operation: &str, vnet_user_id: &str) -> Vec<OutboxRow> {
        let key = format!("user:{vnet_user_id}");
        self.outbox().into_iter().filter(|r| r.operation == operation && r.order_key == key).collect()
    }

    /// A tab-separated CLI listing (header row first) as one map per row; the command must succeed.
    pub fn listing(&self, args: &[&str]) -> Vec<HashMap<String, String>> {
        let out = self.ok(args);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap_or_else(|| panic!("no header from {args:?}")).split('\t').collect();
        lines
            .filter(|l| !l.is_empty())
            .map(|l| header.iter().zip(l.split('\t')).map(|(h, v)| (h.to_string(), v.to_string())).collect())
            .collect()
    }

    /// Call with exactly the fields `names` in that order (the Authenticator order), each taking its
    /// value from `given` or "" (sent as an empty element); TimeStamp and Authenticator are added.
    pub fn call_named(&self, service: &str, op: &str, key_hex: &str, names: &[&str], given: &[(&str, &str)]) -> Resp {
        for (k, _) in given {
            assert!(names.contains(k), "{op}: field {k} is not in {names:?}");
        }
        let fields: Vec<(&str, &str)> =
            names.iter().map(|n| (*n, given.iter().find(|(k, _)| k == n).map(|(_, v)| *v).unwrap_or(""))).collect();
        self.call(service, op, key_hex, &fields)
    }

    /// As `call`, signing with a key that has its own IV.
    pub fn call_with_key(&self, service: &str, op: &str, key: &TdesKey, fields: &[(&str, &str)]) -> Resp {
        let mut all: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
        all.push(("TimeStamp", self.now_ts()));
        let values: Vec<&str> = all.iter().map(|(_, v)| v.as_str()).collect();
        let auth = crypto::authenticator(key, &values);
        all.push(("Authenticator", auth));
        self.call_raw(service, op, &all)
    }
}

// ---- Generic helpers (envelope, xml_attacks, crash, cli tests) ----

/// Like `http`, but every socket operation has a deadline and errors are returned, not panics.
pub fn try_http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], timeout: Duration) -> std::io::Result<Http> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    let buf = raw_exchange(addr, &raw, timeout)?;
    try_parse_http(&buf)
}

/// Send raw bytes (a write error part-way is ignored: the server may answer before reading all
/// of them) and read until the server closes or `timeout` passes (an error only if nothing came).
pub fn raw_exchange(addr: &str, raw: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let _ = s.write_all(raw);
    read_until_close(&mut s, timeout)
}

/// Read from `s` until EOF, an error, or `timeout` in total; an error only if nothing was read.
pub fn read_until_close(s: &mut TcpStream, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(buf)
}

/// `parse_http` that returns an error instead of panicking.
pub fn try_parse_http(buf: &[u8]) -> std::io::Result<Http> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{m}: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(200)])));
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no HTTP head"))?;
    String::from_utf8_lossy(&buf[..end]).split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| bad("no status"))?;
    Ok(parse_http(buf))
}

/// `fields` (in the operation's order, without TimeStamp and Authenticator) plus TimeStamp `ts`
/// and the Authenticator under `key_hex`, computed over the values as Rust (UTF-8) strings.
pub fn signed_fields(key_hex: &str, fields: &[(&str, &str)], ts: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.push(("TimeStamp".into(), ts.to_string()));
    let values: Vec<&str> = all.iter().map(|(_, v)| v.as_str()).collect();
    let auth = crypto::authenticator(&key(key_hex), &values);
    all.push(("Authenticator".into(), auth));
    all
}

/// A SOAP 1.1 request document for `op` carrying `fields` as unqualified children.
pub fn envelope_owned(op: &str, fields: &[(String, String)]) -> String {
    let f: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    envelope_of(op, &f)
}

impl Daemon {
    /// The daemon's process id (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").pid()
    }

    /// Resident set size of the daemon in KiB (from /proc/<pid>/status VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Edit the config file, then stop and start the daemon without regenerating the config
    /// (a later `restart()` regenerates it).
    pub fn restart_with_edited_config(&mut self, edit: impl FnOnce(&str) -> String) {
        self.stop();
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        std::fs::write(&self.cfg, edit(&text)).unwrap();
        self.spawn();
    }

    /// Start the daemon again after `kill9` or `stop`, keeping the config file as it is.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// After `kill9` or `stop`: start again with the node clock shifted to `offset_s`, without
    /// waiting until it is healthy (the chaos campaign kills it during its start-up catch-up;
    /// `wait_healthy` waits).
    pub fn start_unready_with_offset(&mut self, offset_s: i64) {
        assert!(self.child.is_none(), "daemon still running");
        self.offset_s = offset_s;
        self.write_config();
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", self.cfg.to_str().unwrap(), "run"]);
        self.child = Some(ChildProcess::spawn(cmd, &self.dir.path().join("vnetd.log")).unwrap());
    }

    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> Http {
        try_http(&format!("127.0.0.1:{}", self.admin_port), "GET", path, &[], b"", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    /// A read-only connection to the daemon's database.
    pub fn db_ro(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// GetTime answered normally (the daemon still serves).
    pub fn assert_serves_get_time(&self) {
        let r = self.call_raw("ProvinceForSP", "GetTime", &[("SPID", SP_ID.to_string())]);
        assert_eq!(r.result(), 0, "{:?}", r.fields);
        assert_eq!(r.get("ServerTime").len(), 19);
    }
}

/// Read one HTTP response: until its head and Content-Length body arrived, the peer closed, or
/// `timeout` passed.
pub fn read_http_response(s: &mut TcpStream, timeout: Duration) -> Option<Http> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if buf.len() >= end + 4 + len {
                    return try_parse_http(&buf).ok();
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    try_parse_http(&buf).ok()
}

// ---- Helpers for http_attacks: keys in `[server]`, a lowered fd limit ----

impl Daemon {
    /// As `start_with(extra)`, with `server_keys` (TOML `key = value` lines) added to the
    /// `[server]` section the harness writes. A later `restart()` regenerates the config
    /// without them.
    pub fn start_with_server(server_keys: &str, extra: &str) -> Daemon {
        Daemon::start_server_limited(server_keys, extra, None)
    }

    /// As `start_with_server`, with the daemon's RLIMIT_NOFILE (soft and hard) set to `nofile`
    /// in the child before exec (setrlimit in a `pre_exec` hook; no external tool).
    pub fn start_with_server_nofile(server_keys: &str, extra: &str, nofile: u64) -> Daemon {
        Daemon::start_server_limited(server_keys, extra, Some(nofile))
    }

    /// A daemon in a new temporary directory on free ports, not yet configured or started.
    fn unstarted(offset_s: i64, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon {
            child: None,
            cfg: dir.path().join("vnetd.toml"),
            db: dir.path().join("data/vnetd.db"),
            dir,
            port: free_port(),
            admin_port: free_port(),
            offset_s,
            extra: extra.to_string(),
            port_retries: 0,
        }
    }

    pub fn start_server_limited(server_keys: &str, extra: &str, nofile: Option<u64>) -> Daemon {
        let mut d = Daemon::unstarted(0, extra);
        d.write_config();
        let text = std::fs::read_to_string(&d.cfg).unwrap();
        let marker = format!("admin_listen = \"127.0.0.1:{}\"\n", d.admin_port);
        assert!(text.contains(&marker), "no admin_listen line in the generated config:\n{text}");
        let keys = server_keys.trim_end();
        let text = if keys.is_empty() { text } else { text.replacen(&marker, &format!("{marker}{keys}\n"), 1) };
        std::fs::write(&d.cfg, text).unwrap();
        d.spawn_with_nofile(nofile);
        d
    }

    /// As `spawn`, optionally with RLIMIT_NOFILE lowered in the child.
    fn spawn_with_nofile(&mut self, nofile: Option<u64>) {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", self.cfg.to_str().unwrap(), "run"]);
        if let Some(n) = nofile {
            // SAFETY: runs in the forked child before exec; it only calls setrlimit(2), which is
            // async-signal-safe (no allocation, no locks).
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n).map_err(std::io::Error::from)
                });
            }
        }
        let log = self.dir.path().join("vnetd.log");
        let logged_before = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        self.child = Some(ChildProcess::spawn(cmd, &log).unwrap());
        if let Err(e) = self.try_wait_healthy() {
            // The ports were free when chosen, but another test's connection can take one as its
            // local port before the daemon binds it: choose again (the daemon never started).
            let this_start = self.log().get(logged_before..).unwrap_or_default().to_string();
            if this_start.contains("Address already in use") && self.port_retries < 3 {
                self.port_retries += 1;
                let text = std::fs::read_to_string(&self.cfg).unwrap();
                let (port, admin_port) = (free_port(), free_port());
                let text = text
                    .replace(&format!("listen = \"127.0.0.1:{}\"", self.port), &format!("listen = \"127.0.0.1:{port}\""))
                    .replace(&format!("admin_listen = \"127.0.0.1:{}\"", self.admin_port), &format!("admin_listen = \"127.0.0.1:{admin_port}\""));
                std::fs::write(&self.cfg, text).unwrap();
                (self.port, self.admin_port) = (port, admin_port);
                return self.spawn_with_nofile(nofile);
            }
            panic!("{e}\nwhole log:\n{}", self.log());
        }
    }
}

// ---- Helpers for billing tests: a daemon whose node clock is shifted from the first start ----

impl Daemon {
    /// As `start_with(extra)`, with the node clock shifted by `offset_s` (`[node] time_offset_s`)
    /// from the very first start, so the database never sees the unshifted clock. `extra` must not
    /// hold a `[node]` section; `restart_with_offset` changes the shift later.
    pub fn start_at(offset_s: i64, extra: &str) -> Daemon {
        assert!(!extra.contains("[node]"), "start_at writes the [node] section itself");
        let mut d = Daemon::unstarted(offset_s, extra);
        d.write_config();
        d.spawn();
        d
    }
}

/// One authenticated call to the daemon at `addr` without panicking (for client threads and
/// crash tests): `fields` in the operation's order, then TimeStamp `ts` and the Authenticator.
/// An error for a connection failure, an HTTP status other than 200 or a response cut short.
pub fn try_call(addr: &str, service: &str, op: &str, key_hex: &str, fields: &[(&str, &str)], ts: &str) -> Result<Resp, String> {
    let body = envelope_owned(op, &signed_fields(key_hex, fields, ts));
    let r = try_http(addr, "POST", &Daemon::path(service), &[("Content-Type", "text/xml; charset=utf-8")], body.as_bytes(), Duration::from_secs(20))
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("HTTP {}", r.status));
    }
    let text = r.text();
    if !text.contains("Envelope>") || envelope::parse(&text).is_err() {
        return Err(format!("truncated or bad response: {text:?}"));
    }
    Ok(Resp::parse(&text))
}
