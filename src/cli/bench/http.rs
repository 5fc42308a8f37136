//! `vnetd bench http`: the load generator against any HTTP server (the reference ceilings).

use super::*;


pub(super) fn parse_url(url: &str) -> Result<(SocketAddr, String, String), Failed> {
    let rest = url.strip_prefix("http://").ok_or_else(|| Failed("--url must start with http://".into()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { hostport.to_string() } else { format!("{hostport}:80") };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| Failed(format!("cannot resolve {hostport}: {e}")))?
        .next()
        .ok_or_else(|| Failed(format!("cannot resolve {hostport}")))?;
    Ok((addr, hostport.to_string(), path.to_string()))
}

pub(super) fn http(a: HttpArgs) -> CliResult {
    check_load(&a.load)?;
    let (addr, host, path) = parse_url(&a.url)?;
    let req = match &a.body_file {
        None => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vnetd-bench\r\n\r\n").into_bytes(),
        Some(f) => {
            let body = std::fs::read(f).map_err(|e| Failed(format!("cannot read {}: {e}", f.display())))?;
            let mut r = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vnetd-bench\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n", a.content_type, body.len())
                .into_bytes();
            r.extend_from_slice(&body);
            r
        }
    };
    let expect = a.expect.clone().map(String::into_bytes);
    let check: Arc<Check> = Arc::new(move |status, body| status == 200 && expect.as_deref().is_none_or(|e| contains(body, e)));
    let build: Arc<Build> = Arc::new(move || req.clone());
    // One probe, so a wrong URL fails at once instead of as a table of errors.
    let mut c = Conn::open(addr).map_err(|e| Failed(format!("cannot connect to {addr}: {e}")))?;
    let (status, len) = c.exchange(&build()).map(|(s, b, _)| (s, b.len())).map_err(|e| Failed(format!("{}: {e}", a.url)))?;
    drop(c);
    println!("{} {} → HTTP {status}, {len}-byte body; warm-up {} s, measured {} s per run", if a.body_file.is_some() { "POST" } else { "GET" }, a.url, a.load.warmup_s, a.load.duration_s);
    println!();
    println!("| concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | server CPU (cores, --pid) | bench CPU (cores) | other CPU (cores) | load avg after |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &n in &a.load.concurrency {
        let r = run_load(addr, n, &a.load, build.clone(), check.clone(), &a.pid, false);
        println!(
            "| {n} | {} | {} | {:.2} | {:.2} | {} |",
            r.cells(),
            if a.pid.is_empty() { "–".to_string() } else { format!("{:.2}", r.cpu_target) },
            r.cpu_bench,
            r.cpu_other,
            loadavg()
        );
        if let Some(e) = &r.first_error {
            eprintln!("first error at concurrency {n}: {e}");
        }
    }
    Ok(())
}
