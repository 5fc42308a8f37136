//! `vnetd bench argon2`: the single-thread Argon2id hash rate, the per-core ceiling of UserAuth.

use super::*;


pub(super) fn argon2(a: Argon2Args) -> CliResult {
    if a.seconds.is_nan() || a.seconds <= 0.0 {
        return Err(Failed("--seconds must be > 0".into()));
    }
    let h = PasswordHasher::new(a.m_kib, a.t, a.p).map_err(|e| Failed(format!("invalid Argon2 parameters: {e}")))?;
    let _ = h.hash("warm-up-Pass1"); // page in the memory once
    let cpu0 = cpu_self();
    let start = Instant::now();
    let mut n = 0u64;
    let mut phc = String::new();
    while start.elapsed().as_secs_f64() < a.seconds {
        phc = h.hash("bench-Pass-0001");
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_self() - cpu0;
    let rate = n as f64 / secs;
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    println!("Argon2id m={} KiB, t={}, p={}, one thread ({phc_prefix})", a.m_kib, a.t, a.p, phc_prefix = phc.split('$').take(4).collect::<Vec<_>>().join("$"));
    println!();
    println!("| hashes | seconds | hashes/s | ms/hash | CPU used (cores) | × {cores} cores (hashes/s) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!("| {n} | {secs:.2} | {rate:.1} | {:.2} | {:.2} | {:.1} |", 1000.0 / rate, cpu / secs, rate * cores as f64);
    println!();
    println!("load average at end: {}", loadavg());
    Ok(())
}

/// Raw Argon2id hashes per second with `threads` threads for `secs` seconds.
pub(super) fn hash_rate(cfg: &Config, threads: usize, secs: f64) -> Result<f64, Failed> {
    let s = &cfg.security;
    let hasher = Arc::new(PasswordHasher::new(s.argon2_m_kib, s.argon2_t, s.argon2_p).map_err(|e| Failed(e.to_string()))?);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let counts: Vec<usize> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let h = hasher.clone();
                sc.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < end {
                        std::hint::black_box(h.hash(PASSWORD));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    Ok(counts.iter().sum::<usize>() as f64 / start.elapsed().as_secs_f64())
}

