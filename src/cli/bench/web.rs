//! `vnetd bench web`: the hot paths of the browser flows and the access network (issue 8 item 9),
//! each beside its ceiling measured in the same run:
//!
//! 1. TicketValidate (a write: the ticket is consumed) and IPAuth (a read) at each concurrency,
//!    interleaved with nginx serving a static file the size of a TicketValidate answer, driven
//!    by the same load generator (nginx is started here when the binary is found).
//! 2. Login form POSTs (`/sso/login`, production Argon2 parameters: each one a hash, a session
//!    and a ticket written) beside the raw Argon2id hash rate of the machine's cores.

use super::{cpu_of, hash_rate, mib, ms, proc_status_kib, run_load, soap_ok, start_daemon_with, subsec_nanos, Conn, LoadArgs, Nginx, IV, SP_ID, SP_KEY};
use crate::cli::{CliResult, Failed};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{self, TdesKey};
use crate::domain::sso;
use clap::Args;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AAA_ID: &str = "3500000000000301";
const AAA_KEY: &str = "00112233445566778899aabbccddeeff0011223344556677";
const ACCOUNT: &str = "benchweb0001";
const PASSWORD: &str = "Bench-Pass-2024";
const USER_IP: &str = "10.20.30.40";
const RETURN_URL: &str = "http://sp.example/back";

#[derive(Args)]
pub struct WebArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// The nginx binary for the static ceiling ("" to skip it)
    #[arg(long, default_value = "nginx")]
    nginx: String,
    /// Tickets minted before the TicketValidate runs (each request consumes one)
    #[arg(long, default_value_t = 300_000)]
    tickets: usize,
    /// Client connections of the login-form runs
    #[arg(long = "login-concurrency", value_delimiter = ',', default_value = "1,4,16")]
    login_concurrency: Vec<usize>,
    /// Keep the temporary directory (config, database, logs) and print its path
    #[arg(long)]
    keep: bool,
}

/// A SOAP request of ProvinceForSP or ProvinceForAAA, signed now.
fn soap_request(host: &str, service: &str, op: &str, key: &TdesKey, clock: &Clock, fields: &[(&str, &str)]) -> Vec<u8> {
    let ts = clock.now_ts();
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    all.push(("TimeStamp", &ts));
    let values: Vec<&str> = all.iter().map(|(_, v)| *v).collect();
    let auth = crypto::authenticator(key, &values);
    all.push(("Authenticator", &auth));
    let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><{op}>");
    for (k, v) in &all {
        body.push_str(&format!("<{k}>"));
        crate::soap::writer::escape(&mut body, v);
        body.push_str(&format!("</{k}>"));
    }
    body.push_str(&format!("</{op}></soap:Body></soap:Envelope>"));
    let mut req = format!(
        "POST /{service}/services/{service} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// One exchange on a new connection.
pub(super) fn once(addr: SocketAddr, req: &[u8]) -> Result<(u16, Vec<u8>), Failed> {
    let (status, body, _) = Conn::open(addr)?.exchange(req)?;
    Ok((status, body))
}

/// Mint `n` tickets for one session of the user straight into the database (the daemon is
/// running; SQLite serialises the writers), as `GET /sso/login` with a live session would.
fn mint_tickets(cfg: &Config, user_id: &str, n: usize) -> Result<Vec<String>, Failed> {
    let now = cfg.clock().unix();
    let user = sso::SessionUser {
        vnet_user_id: user_id.into(),
        local: true,
        account_type: "01".into(),
        account: ACCOUNT.into(),
        province_id: cfg.node.province_id.clone(),
        city_code: "0591".into(),
        user_type: "1".into(),
        status: "00".into(),
    };
    let out = crate::store::files::write_beside(&cfg.storage.path, Duration::from_secs(30), |tx| {
        let cookie = sso::create_session(tx, &user, now)?;
        let session = sso::Session { id_hash: sso::digest(&cookie), user: user.clone() };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(sso::issue_ticket(tx, &session, SP_ID, now, 86_400)?);
        }
        Ok(out)
    })
    .map_err(|e| Failed(e.to_string()))?;
    Ok(out)
}

/// The login form: a VNETFORM cookie and a csrf token from one GET, reused by every POST (the
/// token's age is checked at the GET only; the csrf token lives for sso_idle_minutes).
fn login_post(addr: SocketAddr, clock: &Clock, key: &TdesKey) -> Result<Vec<u8>, Failed> {
    let ts = clock.now_ts();
    let tok = crypto::token::seal(key, SP_ID, &[&ts, RETURN_URL], &[SP_ID, &ts, RETURN_URL]);
    let q = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let get = format!("GET /sso/login?SSORequest={} HTTP/1.1\r\nHost: bench\r\n\r\n", q(&tok));
    let mut c = std::net::TcpStream::connect(addr)?;
    use std::io::{Read, Write};
    c.write_all(get.as_bytes())?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 65536];
    let mut text = String::new();
    while !text.contains("</html>") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let cookie = text
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: VNETFORM="))
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| Failed(format!("no form cookie from /sso/login: {}", &text[..text.len().min(300)])))?;
    let csrf = text
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| Failed("no csrf field on the login page".into()))?;
    let body = format!("account={}&password={}&csrf={}&SSORequest={}", q(ACCOUNT), q(PASSWORD), q(csrf), q(&tok));
    let mut req = format!(
        "POST /sso/login HTTP/1.1\r\nHost: bench\r\nCookie: VNETFORM={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    Ok(req)
}

pub fn web(a: WebArgs) -> CliResult {
    super::check_load(&a.load)?;
    // Tickets minted for the whole run must outlive it.
    let (mut d, cfg) = start_daemon_with(a.keep, &[], "[security]\nticket_ttl_s = 86400\n")?;
    let pid = d.pid();
    d.cli(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"], None)?;
    d.cli(&["peer", "add", "--id", AAA_ID, "--kind", "aaa", "--key", AAA_KEY], None)?;
    let user_id = d.cli(&["user", "add", "--account-type", "01", "--account", ACCOUNT, "--city-code", "0591", "--password-stdin"], Some(PASSWORD))?;
    let addr = cfg.listen_addr();
    let host = addr.to_string();
    let clock = cfg.clock();
    let sp_key = TdesKey::from_hex(SP_KEY, IV).map_err(|e| Failed(e.to_string()))?;
    let aaa_key = TdesKey::from_hex(AAA_KEY, IV).map_err(|e| Failed(e.to_string()))?;

    // The access network reports the user online at USER_IP (the peer cache needs a second).
    let start_fields = [
        ("SrcDeviceNo", AAA_ID),
        ("ActionType", "1"),
        ("Account", ACCOUNT),
        ("UserIP", USER_IP),
        ("NASIP", ""),
        ("NASPort", ""),
        ("SessionID", "bench-session-1"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut f = start_fields.to_vec();
        let now = clock.now_ts();
        f.push(("EventTime", &now));
        let (status, body) = once(addr, &soap_request(&host, "ProvinceForAAA", "OnlineNotify", &aaa_key, &clock, &f))?;
        if soap_ok(status, &body) {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failed(format!("OnlineNotify failed: HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let t = Instant::now();
    let tickets = Arc::new(mint_tickets(&cfg, &user_id, a.tickets)?);
    eprintln!("setup: {} tickets minted in {:.1} s", tickets.len(), t.elapsed().as_secs_f64());
    let next = Arc::new(AtomicUsize::new(0));
    let ticket_validate: Arc<super::Build> = {
        let (tickets, next, host, key, clock) = (tickets.clone(), next.clone(), host.clone(), sp_key.clone(), clock.clone());
        Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let t = tickets.get(i).map_or("exhausted", String::as_str);
            soap_request(&host, "ProvinceForSP", "TicketValidate", &key, &clock, &[("SPID", SP_ID), ("Ticket", t)])
        })
    };
    let ip_auth: Arc<super::Build> = {
        let (host, key, clock) = (host.clone(), sp_key.clone(), clock.clone());
        Arc::new(move || soap_request(&host, "ProvinceForSP", "IPAuth", &key, &clock, &[("SPID", SP_ID), ("ServiceID", ""), ("UserIP", USER_IP)]))
    };
    let probe = |name: &str, b: &Arc<super::Build>| -> Result<usize, Failed> {
        let (status, body) = once(addr, &b())?;
        if !soap_ok(status, &body) {
            return Err(Failed(format!("{name} probe failed: HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        Ok(body.len())
    };
    let tv_size = probe("TicketValidate", &ticket_validate)?;
    let ip_size = probe("IPAuth", &ip_auth)?;

    let dir = std::env::temp_dir().join(format!("vnetd-bench-nginx-{}-{:08x}", std::process::id(), subsec_nanos()));
    let nginx = if a.nginx.is_empty() {
        None
    } else {
        match Nginx::start(&a.nginx, dir, tv_size, 4096) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("no nginx ceiling: {}", e.0);
                None
            }
        }
    };
    println!(
        "vnetd {} (pid {pid}) on {addr}; responses: TicketValidate {tv_size} bytes, IPAuth {ip_size} bytes; nginx static {tv_size} bytes: {}; warm-up {} s, measured {} s per run",
        env!("CARGO_PKG_VERSION"),
        nginx.as_ref().map_or("not measured".to_string(), |n| format!("{} (pids {:?})", n.addr, n.pids())),
        a.load.warmup_s,
        a.load.duration_s
    );
    println!();
    println!("| target | concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | vs nginx | peak RSS MiB | server CPU (cores) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ceiling: Mutex<Option<f64>> = Mutex::new(None);
    let row = |name: &str, n: usize, r: &super::LoadResult, rss: String| {
        let vs = match (*ceiling.lock().expect("lock"), name) {
            (Some(c), n) if n != "nginx static" && c > 0.0 => format!("{:.2}", r.rate() / c),
            _ => "–".into(),
        };
        println!(
            "| {name} | {n} | {} | {vs} | {rss} | {:.2} |",
            r.cells(),
            r.cpu_target
        );
        if let Some(e) = &r.first_error {
            eprintln!("first error ({name}, concurrency {n}): {e}");
        }
    };
    let peak = |pid: u32, f: &dyn Fn() -> super::LoadResult| {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let r = f();
        (r, mib(proc_status_kib(pid, "VmHWM")))
    };
    for &n in &a.load.concurrency {
        if let Some(ng) = &nginx {
            let get = format!("GET /static.xml HTTP/1.1\r\nHost: {}\r\n\r\n", ng.addr).into_bytes();
            let pids = ng.pids();
            let r = run_load(ng.addr, n, &a.load, Arc::new(move || get.clone()), Arc::new(|s, _| s == 200), &pids, false);
            *ceiling.lock().expect("lock") = Some(r.rate());
            let rss: u64 = pids.iter().filter_map(|p| proc_status_kib(*p, "VmRSS")).sum();
            row("nginx static", n, &r, mib(Some(rss)));
        }
        let (r, rss) = peak(pid, &|| run_load(addr, n, &a.load, ticket_validate.clone(), Arc::new(soap_ok), &[pid], true));
        row("TicketValidate", n, &r, rss);
        let (r, rss) = peak(pid, &|| run_load(addr, n, &a.load, ip_auth.clone(), Arc::new(soap_ok), &[pid], false));
        row("IPAuth", n, &r, rss);
        if let Some(st) = d.exited() {
            return Err(Failed(format!("the daemon exited during the run ({st}); log:\n{}", d.log_tail())));
        }
    }
    if next.load(Ordering::Relaxed) > tickets.len() {
        eprintln!("tickets ran out ({} minted): raise --tickets", tickets.len());
    }
    drop(nginx);

    // Logins at production Argon2 parameters, beside the raw hash rate of the cores.
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let rate = hash_rate(&cfg, threads, a.load.duration_s.min(5.0))?;
    println!();
    println!(
        "Login form POSTs (Argon2id m={} KiB t={} p={}; each a hash, a session and a ticket) beside the raw hash rate: {rate:.1} hashes/s on {threads} threads",
        cfg.security.argon2_m_kib, cfg.security.argon2_t, cfg.security.argon2_p
    );
    println!();
    println!("| concurrency | requests | errors | logins/s | p50 ms | p99 ms | vs raw hash rate | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let post = login_post(addr, &clock, &sp_key)?;
    let login_ok = |status: u16, _: &[u8]| status == 302;
    for &n in &a.login_concurrency {
        let p = post.clone();
        let (r, rss) = peak(pid, &|| {
            let p = p.clone();
            run_load(addr, n, &a.load, Arc::new(move || p.clone()), Arc::new(login_ok), &[pid], false)
        });
        println!(
            "| {n} | {} | {} | {:.1} | {} | {} | {:.2} | {rss} |",
            r.requests,
            r.errors,
            r.rate(),
            ms(r.pct(0.50)),
            ms(r.pct(0.99)),
            r.rate() / rate
        );
        if let Some(e) = &r.first_error {
            eprintln!("first error (login, concurrency {n}): {e}");
        }
    }
    let cpu = cpu_of(pid);
    eprintln!("daemon CPU over the whole bench: {cpu:.1} s");
    Ok(())
}
