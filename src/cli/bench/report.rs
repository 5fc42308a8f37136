//! `vnetd bench report`: the front end's figures in one run (issue 11), each beside its
//! reference measured in the same run on the same machine:
//!
//! * GetUserinfo at each concurrency, interleaved with nginx (Debian's package) serving a static
//!   file of the answer's size through the same load generator; then the same with N idle
//!   keep-alive connections held open to the server being measured;
//! * Charge beside SQLite's durable-commit ceilings (one row per commit, and batches), with the
//!   writes per commit and the writer thread's CPU per charge;
//! * UserAuth (production Argon2 parameters, clients retrying at once after a 503) accepted and
//!   refused, beside the raw Argon2id hash rate of one thread and of all cores;
//! * the daemon's idle and peak RSS and its threads.
//!
//! Per-run rows are printed as the runs finish; one summary table comes last.

use super::*;

#[derive(Args)]
pub struct ReportArgs {
    /// Measured seconds per run (after the warm-up)
    #[arg(long = "duration-s", default_value_t = 5.0)]
    duration_s: f64,
    /// Unmeasured seconds at the start of each run
    #[arg(long = "warmup-s", default_value_t = 1.0)]
    warmup_s: f64,
    /// Client connections of the GetUserinfo runs (one thread each)
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,1024")]
    concurrency: Vec<usize>,
    /// Idle keep-alive connections held open to the server measured in the second round of
    /// GetUserinfo runs (0: no second round)
    #[arg(long, default_value_t = 10_000)]
    hold: usize,
    /// Client connections of the Charge runs
    #[arg(long = "charge-concurrency", value_delimiter = ',', default_value = "16,64")]
    charge_concurrency: Vec<usize>,
    /// Client connections of the UserAuth runs
    #[arg(long = "login-concurrency", value_delimiter = ',', default_value = "64,256")]
    login_concurrency: Vec<usize>,
    /// The nginx binary of the static ceiling
    #[arg(long, default_value = "nginx")]
    nginx: String,
    /// Keep the daemon's temporary directory (config, database, log) and print its path
    #[arg(long)]
    keep: bool,
}

/// A summary line: what, vnetd's figure, the reference's, their ratio.
struct Line {
    what: String,
    ours: String,
    reference: String,
    ratio: String,
}

fn rate_cell(r: &LoadResult) -> String {
    format!("{} req/s (p50 {} / p99 {} ms)", thousands(r.rate()), ms(r.pct(0.50)), ms(r.pct(0.99)))
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

fn cpu_model() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string())).unwrap_or_else(|| "?".into())
}

pub(super) fn report(a: ReportArgs) -> CliResult {
    let load = LoadArgs { duration_s: a.duration_s, warmup_s: a.warmup_s, concurrency: a.concurrency.clone(), honour_retry_after: false };
    check_load(&load)?;
    for c in a.charge_concurrency.iter().chain(&a.login_concurrency) {
        if *c == 0 || *c > 4096 {
            return Err(Failed("--charge-concurrency and --login-concurrency values must be 1..4096".into()));
        }
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let biggest = a.concurrency.iter().chain(&a.charge_concurrency).chain(&a.login_concurrency).copied().max().unwrap_or(1);
    println!("vnetd bench report — vnetd {}; {cores} × {}; load average {}", env!("CARGO_PKG_VERSION"), cpu_model(), loadavg());
    let mut lines: Vec<Line> = Vec::new();

    // The durable-commit ceilings, first, with nothing else running.
    let mut db = CommitBench::open(&std::env::temp_dir())?;
    let single = db.run(1, a.warmup_s.min(0.5), a.duration_s)?;
    let batched = db.run(64, a.warmup_s.min(0.5), a.duration_s)?;
    drop(db);
    println!(
        "SQLite {} (the daemon's pragmas, a charge-shaped row, temp dir): 1 row per commit {:.0} commits/s; 64 rows per commit {:.0} rows/s",
        super::sqlite::sqlite_version(),
        single.commits_s,
        batched.rows_s
    );

    // The daemon: default config but for the room the held connections need.
    let server = format!("max_connections = {}\nread_timeout_s = 3600\n", a.hold + biggest + 2048);
    let (mut d, cfg) = start_daemon_server(a.keep, &[], &server, "")?;
    let pid = d.pid();
    let started_rss = proc_status_kib(pid, "VmRSS");
    d.cli(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--return-url", "http://sp.example/"], None)?;
    let user_id = d.cli(&["user", "add", "--account-type", "01", "--account", ACCOUNT, "--city-code", "0591", "--password-stdin"], Some(PASSWORD))?;
    let charge_users = 300;
    let users = Arc::new(billing_setup(&d, &cfg, charge_users)?);
    let addr = cfg.listen_addr();
    let mk = |op: &'static str| SoapReq::new(op, addr, &cfg, &user_id, users.clone(), charge_users);
    let (get, auth, charge) = (mk("GetUserinfo"), mk("UserAuth"), mk("Charge"));
    // The peer cache refreshes every second: probe until the SP is known.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer_size = loop {
        let (status, body, _) = Conn::open(addr)?.exchange(&get.build())?;
        if soap_ok(status, &body) {
            break body.len();
        }
        if Instant::now() > deadline {
            return Err(Failed(format!("GetUserinfo probe failed: HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(1));
    let (idle_rss, idle_threads) = (proc_status_kib(pid, "VmRSS"), threads_of(pid));
    println!(
        "daemon pid {pid} on {addr}: RSS {} MiB at start, {} MiB idle after setup, {idle_threads} threads; Argon2id m={} KiB t={} p={}; GetUserinfo answer {answer_size} bytes",
        mib(started_rss),
        mib(idle_rss),
        cfg.security.argon2_m_kib,
        cfg.security.argon2_t,
        cfg.security.argon2_p
    );

    let ng_dir = std::env::temp_dir().join(format!("vnetd-bench-nginx-{}-{:08x}", std::process::id(), subsec_nanos()));
    let ng = Nginx::start(&a.nginx, ng_dir, answer_size, a.hold + biggest + 256)
        .map_err(|e| Failed(format!("{} (install nginx: apt-get install nginx-light, or pass --nginx PATH)", e.0)))?;
    let ng_pids = ng.pids();
    let static_get = format!("GET /static.xml HTTP/1.1\r\nHost: {}\r\n\r\n", ng.addr).into_bytes();
    println!("nginx (pids {ng_pids:?}) on {}: a static file of {answer_size} bytes; warm-up {} s, measured {} s per run", ng.addr, a.warmup_s, a.duration_s);
    println!();
    println!("| target | held idle | concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | vs nginx | server CPU (cores) | bench CPU (cores) | server RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut max_threads = idle_threads;
    let get_build = get.builder();
    let holds: Vec<usize> = if a.hold > 0 { vec![0, a.hold] } else { vec![0] };
    for &hold in &holds {
        for &n in &a.concurrency {
            let held = hold_idle(ng.addr, hold)?;
            let g = static_get.clone();
            let r_ng = run_load(ng.addr, n, &load, Arc::new(move || g.clone()), Arc::new(|s, _| s == 200), &ng_pids, false);
            let ng_rss: u64 = ng_pids.iter().filter_map(|p| proc_status_kib(*p, "VmRSS")).sum();
            drop(held);
            let held = hold_idle(addr, hold)?;
            let r = run_load(addr, n, &load, get_build.clone(), Arc::new(soap_ok), &[pid], false);
            max_threads = max_threads.max(threads_of(pid));
            let rss = proc_status_kib(pid, "VmRSS");
            drop(held);
            let ratio = if r_ng.rate() > 0.0 { r.rate() / r_ng.rate() } else { 0.0 };
            println!("| nginx static | {hold} | {n} | {} | – | {:.2} | {:.2} | {} |", r_ng.cells(), r_ng.cpu_target, r_ng.cpu_bench, mib(Some(ng_rss)));
            println!("| GetUserinfo | {hold} | {n} | {} | {ratio:.2} | {:.2} | {:.2} | {} |", r.cells(), r.cpu_target, r.cpu_bench, mib(rss));
            for (who, res) in [("nginx", &r_ng), ("vnetd", &r)] {
                if let Some(e) = &res.first_error {
                    eprintln!("first error ({who}, {n} connections, {hold} held): {e}");
                }
            }
            let held_text = if hold > 0 { format!(", {hold} idle held") } else { String::new() };
            lines.push(Line {
                what: format!("GetUserinfo, {n} conn{}{held_text}", if n == 1 { "" } else { "s" }),
                ours: rate_cell(&r),
                reference: format!("nginx static {answer_size} B: {}", rate_cell(&r_ng)),
                ratio: format!("{ratio:.2}"),
            });
            if let Some(st) = d.exited() {
                return Err(Failed(format!("the daemon exited during the run ({st}); log:\n{}", d.log_tail())));
            }
        }
    }
    drop(ng);

    println!();
    println!("| op | concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | writes per commit | writer CPU µs/req | daemon CPU (cores) | bench CPU (cores) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let charge_build = charge.builder();
    for &n in &a.charge_concurrency {
        let before = store_counters(&cfg);
        let r = run_load(addr, n, &load, charge_build.clone(), Arc::new(soap_ok), &[pid], true);
        max_threads = max_threads.max(threads_of(pid));
        let per_commit = match (before, store_counters(&cfg)) {
            (Some((c0, j0)), Some((c1, j1))) if c1 > c0 => format!("{:.1}", (j1 - j0) / (c1 - c0)),
            _ => "–".into(),
        };
        let writer_us = r.cpu_writer_s * 1e6 / r.requests.max(1) as f64;
        println!("| Charge | {n} | {} | {per_commit} | {writer_us:.0} | {:.2} | {:.2} |", r.cells(), r.cpu_target, r.cpu_bench);
        if let Some(e) = &r.first_error {
            eprintln!("first error (Charge, {n} connections): {e}");
        }
        lines.push(Line {
            what: format!("Charge, {n} conns"),
            ours: format!("{}; {per_commit} writes per commit; writer CPU {writer_us:.0} µs per charge", rate_cell(&r)),
            reference: format!("SQLite 1 row per commit: {} commits/s; 64 rows per commit: {} rows/s", thousands(single.commits_s), thousands(batched.rows_s)),
            ratio: format!("{:.2} of 1 row per commit", r.rate() / single.commits_s.max(1e-9)),
        });
    }

    // The raw hash rate with the daemon idle (its hashing threads are free).
    let one = hash_rate(&cfg, 1, a.duration_s.min(5.0))?;
    let all = hash_rate(&cfg, cores, a.duration_s.min(5.0))?;
    println!();
    println!("Argon2id raw rate: {one:.1} hashes/s on one thread, {all:.1} on {cores}");
    println!();
    println!("| op | concurrency | accepted | accepted/s | p50 ms | p99 ms | refused (503) | refused/s | p50 ms | p99 ms | other errors | daemon CPU (cores) | bench CPU (cores) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let auth_build = auth.builder();
    let polite = LoadArgs { honour_retry_after: true, ..load.clone() };
    let runs = a.login_concurrency.iter().flat_map(|&n| [(n, false), (n, true)]);
    for (n, honour) in runs {
        let r = run_load(addr, n, if honour { &polite } else { &load }, auth_build.clone(), Arc::new(soap_ok), &[pid], false);
        max_threads = max_threads.max(threads_of(pid));
        let refused_rate = if r.window > 0.0 { r.refused_us.len() as f64 / r.window } else { 0.0 };
        let (rp50, rp99) = (ms(percentile(&r.refused_us, 0.50)), ms(percentile(&r.refused_us, 0.99)));
        let clients = if honour { "wait Retry-After" } else { "retry at once" };
        println!(
            "| UserAuth ({clients}) | {n} | {} | {:.1} | {} | {} | {} | {refused_rate:.0} | {rp50} | {rp99} | {} | {:.2} | {:.2} |",
            r.requests,
            r.rate(),
            ms(r.pct(0.50)),
            ms(r.pct(0.99)),
            r.refused_us.len(),
            r.errors,
            r.cpu_target,
            r.cpu_bench
        );
        if let Some(e) = &r.first_error {
            eprintln!("first error (UserAuth, {n} connections): {e}");
        }
        lines.push(Line {
            what: format!("UserAuth, {n} conns (clients {clients} after a 503)"),
            ours: format!(
                "accepted {:.1}/s (p50 {} / p99 {} ms); refused 503 {}/s (p50 {rp50} / p99 {rp99} ms)",
                r.rate(),
                ms(r.pct(0.50)),
                ms(r.pct(0.99)),
                thousands(refused_rate)
            ),
            reference: format!("Argon2id {all:.1} hashes/s on {cores} threads ({one:.1} on one)"),
            ratio: format!("{:.2}", r.rate() / all.max(1e-9)),
        });
    }
    let peak = proc_status_kib(pid, "VmHWM");
    let argon2_mib = f64::from(cfg.security.argon2_m_kib) / 1024.0 * cores as f64;
    lines.push(Line {
        what: "Idle (after setup)".into(),
        ours: format!("RSS {} MiB, {idle_threads} threads", mib(idle_rss)),
        reference: "issue 11: ≤ 20 MiB".into(),
        ratio: "–".into(),
    });
    lines.push(Line {
        what: "Peak over every run".into(),
        ours: format!("RSS {} MiB (VmHWM), at most {max_threads} threads", mib(peak)),
        reference: format!("issue 11: ≤ 64 MiB + Argon2 memory ({argon2_mib:.0} MiB on {cores} hashing threads)"),
        ratio: "–".into(),
    });

    println!();
    println!("Summary (every reference measured in this run):");
    println!();
    println!("| measurement | vnetd | reference | ratio |");
    println!("|---|---|---|---:|");
    for l in &lines {
        println!("| {} | {} | {} | {} |", l.what, l.ours, l.reference, l.ratio);
    }
    println!();
    println!("load average at end: {}", loadavg());
    let warn_lines = std::fs::read_to_string(&d.log).unwrap_or_default().lines().filter(|l| !l.contains("event=")).count();
    if warn_lines > 1 {
        eprintln!("daemon log ({warn_lines} non-audit lines), last lines:\n{}", d.log_tail());
    }
    Ok(())
}
