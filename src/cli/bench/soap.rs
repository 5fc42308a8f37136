//! `vnetd bench soap`: GetUserinfo, UserAuth, Charge and Order against a daemon this command starts.

use super::*;

/// Builds SOAP requests for one operation, signed with a fresh TimeStamp.
pub(super) struct SoapReq {
    pub(super) op: &'static str,
    pub(super) host: String,
    pub(super) key: TdesKey,
    pub(super) clock: Clock,
    pub(super) user_id: String,
    pub(super) password_enc: String,
    /// Imported users (Charge, Order).
    pub(super) users: Arc<Vec<String>>,
    pub(super) charge_users: usize,
    /// Requests built so far: the TransactionID, and for Order the (user, item) pair.
    pub(super) seq: AtomicUsize,
}

impl SoapReq {
    /// Requests of `op` to the daemon at `addr` (of config `cfg`) as the bench SP, for the
    /// bench user `user_id` or the imported `users`.
    pub(super) fn new(op: &'static str, addr: SocketAddr, cfg: &Config, user_id: &str, users: Arc<Vec<String>>, charge_users: usize) -> Arc<SoapReq> {
        let key = TdesKey::from_hex(SP_KEY, IV).expect("valid key");
        Arc::new(SoapReq {
            op,
            host: addr.to_string(),
            password_enc: key.encrypt_b64(PASSWORD.as_bytes()),
            key,
            clock: cfg.clock(),
            user_id: user_id.to_string(),
            users,
            charge_users: charge_users.max(1),
            seq: AtomicUsize::new(0),
        })
    }

    /// The load generator's request builder.
    pub(super) fn builder(self: &Arc<Self>) -> Arc<Build> {
        let me = self.clone();
        Arc::new(move || me.build())
    }

    /// Whether every request must be new (a TransactionID each).
    pub(super) fn fresh(&self) -> bool {
        matches!(self.op, "Charge" | "Order")
    }

    // A typed request sets what the bench exercises; a field added later keeps its default.
    #[allow(clippy::needless_update)]
    pub(super) fn build(&self) -> Vec<u8> {
        let ts = self.clock.now_ts();
        let n = if self.fresh() { self.seq.fetch_add(1, Ordering::Relaxed) } else { 0 };
        let txid = format!("bench-{}-{n}", self.op.to_ascii_lowercase());
        let users = self.users.len().max(1);
        let user = |i: usize| self.users.get(i % users).map_or("", String::as_str);
        // The typed requests of `spec::incoming`: field names and order come from the declaration.
        // The bench puts the ciphertext it made in the `enc` Password field.
        use crate::spec::incoming::{Charge, GetUserinfo, Order, UserAuth};
        let body = match self.op {
            "UserAuth" => UserAuth::Request {
                AccountType: "01".into(),
                Account: ACCOUNT.into(),
                Password: self.password_enc.clone(),
                ..Default::default()
            }
            .values(),
            "Charge" => Charge::Request {
                SPID: SP_ID.into(),
                ServiceID: SERVICE_ID.into(),
                ServiceItemID: PER_USE_ITEM.into(),
                VNetUserID: user(n % self.charge_users.max(1)).into(),
                Fee: "1".into(),
                BatchCount: Some("1".into()),
                TransactionID: txid,
                ..Default::default()
            }
            .values(),
            // Pair n: user n mod U, item n / U (so 4 × U pairs before one repeats).
            "Order" => Order::Request {
                SPID: SP_ID.into(),
                ServiceID: SERVICE_ID.into(),
                ServiceItemID: Some(MONTHLY_ITEMS[(n / users) % MONTHLY_ITEMS.len()].into()),
                VNetUserID: user(n).into(),
                IfExtend: "1".into(),
                TransactionID: txid,
                ..Default::default()
            }
            .values(),
            _ => GetUserinfo::Request { VNetUserID: self.user_id.clone() }.values(),
        };
        signed_request(&self.host, &self.key, self.op, body, &ts, self.fresh())
    }
}

/// A ProvinceForSP request of `op` from the bench SP with the body fields `body`, signed at
/// TimeStamp `ts`, as HTTP bytes. `skip_empty`: leave empty optional fields out of the XML (they
/// still count as "" in the Authenticator).
pub(super) fn signed_request(host: &str, key: &TdesKey, op: &str, body: Vec<(&'static str, String)>, ts: &str, skip_empty: bool) -> Vec<u8> {
    let mut fields = crate::spec::incoming::client_fields(crate::spec::Service::ProvinceForSP, SP_ID, body);
    fields.push(("TimeStamp", ts.to_string()));
    let values: Vec<&str> = fields.iter().map(|(_, v)| v.as_str()).collect();
    let auth = crypto::authenticator(key, &values);
    fields.push(("Authenticator", auth));
    let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><{op}>");
    for (k, v) in &fields {
        if v.is_empty() && skip_empty {
            continue;
        }
        body.push_str(&format!("<{k}>"));
        crate::soap::writer::escape(&mut body, v);
        body.push_str(&format!("</{k}>"));
    }
    body.push_str(&format!("</{op}></soap:Body></soap:Envelope>"));
    let mut req = format!(
        "POST {SOAP_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"\"\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// For Charge and Order: a catalogue whose SP is the bench peer (a per-use item and 4 monthly
/// items, 1 fen each) and `n` postpaid users with a large credit limit, imported with the CLI as
/// an operator would. Returns the users' VNetUserIDs in import order.
pub(super) fn billing_setup(d: &Daemon, cfg: &Config, n: usize) -> Result<Vec<String>, Failed> {
    let mut toml = format!(
        "[[sp]]\nspid = \"{SP_ID}\"\nname = \"bench SP\"\nscope = \"province\"\noffline_payment = true\nroam_out = false\n\n\
         [[service]]\nservice_id = \"{SERVICE_ID}\"\nspid = \"{SP_ID}\"\nname = \"bench service\"\nstatus = \"active\"\n\n\
         [[item]]\nservice_item_id = \"{PER_USE_ITEM}\"\nservice_id = \"{SERVICE_ID}\"\nname = \"bench per use\"\nfee_type = \"1\"\nprice = 1\nstatus = \"active\"\n"
    );
    for (i, item) in MONTHLY_ITEMS.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[item]]\nservice_item_id = \"{item}\"\nservice_id = \"{SERVICE_ID}\"\nname = \"bench monthly {i}\"\nfee_type = \"2\"\nprice = 1\nstatus = \"active\"\n"
        ));
    }
    let cat = d.dir.join("catalog.toml");
    std::fs::write(&cat, toml)?;
    d.cli(&["catalog", "import", &cat.to_string_lossy()], None)?;
    let mut csv = String::from("account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no\n");
    for i in 0..n {
        csv.push_str(&format!("01,{IMPORT_PREFIX}{i:07},0591,1,100000000,0,,\n"));
    }
    let file = d.dir.join("users.csv");
    std::fs::write(&file, csv)?;
    let t = Instant::now();
    d.cli(&["user", "import", &file.to_string_lossy()], None)?;
    let import_s = t.elapsed().as_secs_f64();
    let ids = crate::store::files::read_beside(&cfg.storage.path, |tx| crate::store::users::ids_with_account_prefix(tx, IMPORT_PREFIX))
        .map_err(|e| Failed(e.to_string()))?;
    if ids.len() != n {
        return Err(Failed(format!("imported {n} users but found {} in the database", ids.len())));
    }
    eprintln!("setup: catalogue imported; {n} users imported in {import_s:.1} s");
    Ok(ids)
}

/// The daemon's (commits, write jobs) since start, from its admin /metrics.
pub(super) fn store_counters(cfg: &Config) -> Option<(f64, f64)> {
    let mut s = TcpStream::connect_timeout(&cfg.admin_addr(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());
    Some((value("vnetd_store_commits_total")?, value("vnetd_store_write_jobs_total")?))
}

/// `n` idle connections to `addr`, kept open by the caller (this process's open-file limit is
/// raised to its hard limit first; the daemon raises its own at start).
pub(super) fn hold_idle(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, Failed> {
    if n == 0 {
        return Ok(Vec::new());
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    (0..n)
        .map(|i| TcpStream::connect(addr).map_err(|e| Failed(format!("holding idle connection {i} of {n}: {e} (raise ulimit -n)"))))
        .collect()
}

pub(super) fn soap_ok(status: u16, body: &[u8]) -> bool {
    status == 200 && contains(body, b"<Result>0</Result>")
}

pub(super) fn soap(a: SoapArgs) -> CliResult {
    check_load(&a.load)?;
    // Held idle connections need room under the cap and must outlive the idle deadline.
    let server = if a.hold > 0 { format!("max_connections = {}\nread_timeout_s = 3600\n", a.hold + 2048) } else { String::new() };
    let (mut d, cfg) = start_daemon_server(a.keep, &a.daemon_env, &server, "")?;
    let pid = d.pid();
    d.cli(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"], None)?;
    let user_id = d.cli(&["user", "add", "--account-type", "01", "--account", ACCOUNT, "--city-code", "0591", "--password-stdin"], Some(PASSWORD))?;
    let op_name = |op: &str| -> &'static str {
        match op {
            "UserAuth" => "UserAuth",
            "Charge" => "Charge",
            "Order" => "Order",
            _ => "GetUserinfo",
        }
    };
    let has = |name: &str| a.ops.iter().any(|o| o == name);
    let users = if has("Charge") || has("Order") {
        let n = if has("Order") { a.users.max(a.charge_users) } else { a.charge_users };
        billing_setup(&d, &cfg, n.max(1))?
    } else {
        Vec::new()
    };
    let users = Arc::new(users);
    let addr = cfg.listen_addr();
    let mk = |op: &'static str| SoapReq::new(op, addr, &cfg, &user_id, users.clone(), a.charge_users);
    // One builder per operation, for the probe and all its runs (TransactionIDs and Order pairs
    // are never reused).
    let mut reqs: Vec<(&'static str, Arc<SoapReq>)> = Vec::new();
    for op in std::iter::once("GetUserinfo").chain(a.ops.iter().map(|o| op_name(o))) {
        if !reqs.iter().any(|(o, _)| *o == op) {
            reqs.push((op, mk(op)));
        }
    }
    // The daemon's peer cache refreshes every second: probe until the SP is known.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sizes = Vec::new();
    for (op, r) in &reqs {
        loop {
            let mut c = Conn::open(addr)?;
            let (status, body, _) = c.exchange(&r.build())?;
            if soap_ok(status, &body) {
                sizes.push(format!("{op} {} bytes", body.len()));
                break;
            }
            if Instant::now() > deadline {
                return Err(Failed(format!("{op} probe failed: HTTP {status}: {}", String::from_utf8_lossy(&body))));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let held = hold_idle(addr, a.hold)?;
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, hwm0) = (proc_status_kib(pid, "VmRSS"), proc_status_kib(pid, "VmHWM"));
    if !held.is_empty() {
        println!("holding {} idle keep-alive connections open to the daemon during every run", held.len());
    }
    println!(
        "vnetd {} (pid {pid}) on {addr}: Argon2id m={} KiB t={} p={}, max_connections {}; responses: {}; warm-up {} s, measured {} s per run",
        env!("CARGO_PKG_VERSION"),
        cfg.security.argon2_m_kib,
        cfg.security.argon2_t,
        cfg.security.argon2_p,
        cfg.server.max_connections,
        sizes.join(", "),
        a.load.warmup_s,
        a.load.duration_s
    );
    if !a.daemon_env.is_empty() {
        println!("daemon environment: {}", a.daemon_env.join(" "));
    }
    if !users.is_empty() {
        println!(
            "billing: {} imported postpaid users (credit limit 100000000 fen); Charge: item {PER_USE_ITEM} (per use, 1 fen), BatchCount 1, round {} users; \
             Order: monthly items {}… (1 fen), a fresh (user, item) pair per request, {} pairs",
            users.len(),
            a.charge_users.min(users.len()),
            MONTHLY_ITEMS[0],
            users.len() * MONTHLY_ITEMS.len()
        );
    }
    println!("daemon RSS before load: {} MiB (VmHWM so far {} MiB); load average {}", mib(rss0), mib(hwm0), loadavg());
    println!();
    println!("| op | concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | peak RSS MiB | writes per commit | writer CPU µs/req | daemon CPU (cores) | bench CPU (cores) | other CPU (cores) | load avg after |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut any_errors = false;
    for op in &a.ops {
        let op = op_name(op);
        let r = reqs.iter().find(|(o, _)| *o == op).map(|(_, r)| r.clone()).expect("a builder per op");
        let fresh = r.fresh();
        let build = r.builder();
        for &n in &a.load.concurrency {
            // Reset the peak (Linux: "5" clears VmHWM) so each run reports its own.
            let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
            let before = store_counters(&cfg);
            let res = run_load(addr, n, &a.load, build.clone(), Arc::new(soap_ok), &[pid], fresh);
            let hwm = proc_status_kib(pid, "VmHWM");
            // Group commit: write jobs per committed transaction (one fsync each) during the run.
            let per_commit = match (before, store_counters(&cfg)) {
                (Some((c0, j0)), Some((c1, j1))) if c1 > c0 => format!("{:.1}", (j1 - j0) / (c1 - c0)),
                _ => "–".into(),
            };
            println!(
                "| {op} | {n} | {} | {}{} | {per_commit} | {} | {:.2} | {:.2} | {:.2} | {} |",
                res.cells(),
                mib(hwm),
                if reset { "" } else { " (since start)" },
                // Reads leave the writer idle: no figure rather than a misleading 0.
                if fresh { format!("{:.0}", res.cpu_writer_s * 1e6 / res.requests.max(1) as f64) } else { "–".into() },
                res.cpu_target,
                res.cpu_bench,
                res.cpu_other,
                loadavg()
            );
            if !res.refused_us.is_empty() {
                let rate = if res.window > 0.0 { res.refused_us.len() as f64 / res.window } else { 0.0 };
                println!(
                    "|   … refused with 503 | {n} | {} | | {rate:.0} | {} | {} | {} | | | | | | | |",
                    res.refused_us.len(),
                    ms(percentile(&res.refused_us, 0.50)),
                    ms(percentile(&res.refused_us, 0.99)),
                    ms(res.refused_us.last().copied())
                );
            }
            if let Some(e) = &res.first_error {
                any_errors = true;
                eprintln!("first error ({op}, concurrency {n}): {e}");
            }
            if let Some(st) = d.exited() {
                return Err(Failed(format!("the daemon exited during the run ({st}); log:\n{}", d.log_tail())));
            }
        }
    }
    if let Some(r) = reqs.iter().find(|(o, _)| *o == "Order") {
        let used = r.1.seq.load(Ordering::Relaxed);
        let pairs = users.len() * MONTHLY_ITEMS.len();
        println!();
        println!("Order requests sent (with probe and warm-up): {used} of {pairs} fresh pairs{}", if used > pairs { " — pairs were reused: expect -21010 errors; raise --users" } else { "" });
    }
    let warn_lines = std::fs::read_to_string(&d.log).unwrap_or_default().lines().filter(|l| !l.contains("event=")).count();
    if warn_lines > 0 || any_errors {
        eprintln!("daemon log ({} non-audit lines), last lines:\n{}", warn_lines, d.log_tail());
    }
    Ok(())
}
