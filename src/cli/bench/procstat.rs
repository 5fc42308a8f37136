//! CPU and memory of processes from /proc, for the benchmarks' reports.


// /proc

/// USER_HZ, the unit of /proc CPU times: 100 on every Linux ABI.
pub(super) fn clk_tck() -> f64 {
    100.0
}

/// Busy CPU seconds of the whole machine (all cores) since boot.
pub(super) fn cpu_total() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else { return 0.0 };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is included in user)
    let busy: f64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    busy / clk_tck()
}

/// CPU seconds (user + system) of a process.
pub(super) fn cpu_of(pid: u32) -> f64 {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds (user + system) of the threads of `pid` named `name` (their `comm`).
pub(super) fn cpu_of_thread(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
        .map(|t| stat_cpu(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
        .sum()
}

/// utime + stime of a /proc stat line, in seconds.
fn stat_cpu(text: &str) -> f64 {
    let Some(after) = text.rfind(')').map(|i| &text[i + 1..]) else { return 0.0 };
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: field 3 (state) is f[0]; utime is field 14, stime 15.
    let get = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / clk_tck()
}

pub(super) fn cpu_self() -> f64 {
    cpu_of(std::process::id())
}

pub(super) fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

pub(super) fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}
