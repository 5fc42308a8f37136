//! The daemon under test: a `vnetd run` on a temporary config and database, stopped and removed
//! on drop; the constants the benchmarks provision it with.

use super::*;
use crate::cli::child::ChildProcess;
use std::path::Path;

pub(super) const SP_ID: &str = "35000001";
pub(super) const SP_KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
pub(super) const IV: &str = "0102030405060708";
pub(super) const ACCOUNT: &str = "benchuser0001";
pub(super) const PASSWORD: &str = "Bench-Pass-2024";
pub(super) const SOAP_PATH: &str = "/ProvinceForSP/services/ProvinceForSP";
pub(super) const SERVICE_ID: &str = "3500000100000001";
pub(super) const PER_USE_ITEM: &str = "3500000100000101";
pub(super) const MONTHLY_ITEMS: [&str; 4] = ["3500000100000102", "3500000100000103", "3500000100000104", "3500000100000105"];
/// Accounts of the imported users start with this.
pub(super) const IMPORT_PREFIX: &str = "benchimp";

/// The daemon under test; stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
pub(super) struct Daemon {
    pub(super) proc: Option<ChildProcess>,
    pub(super) dir: PathBuf,
    pub(super) cfg: PathBuf,
    pub(super) log: PathBuf,
    pub(super) keep: bool,
}

/// Does the daemon of config `cfg` answer `vnetd healthcheck`?
fn healthy(cfg: &Path) -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    Command::new(exe).arg("--config").arg(cfg).arg("healthcheck").stdin(Stdio::null()).output().is_ok_and(|o| o.status.success())
}

impl Daemon {
    /// A daemon of the config `cfg` in `dir`, not started yet (`launch`).
    pub(super) fn new(dir: &Path, cfg: &Path, keep: bool) -> Daemon {
        Daemon { proc: None, dir: dir.to_path_buf(), cfg: cfg.to_path_buf(), log: dir.join("vnetd.log"), keep }
    }

    pub(super) fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String, Failed> {
        let exe = std::env::current_exe()?;
        let mut c = Command::new(exe)
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(s) = stdin {
            c.stdin.take().expect("piped stdin").write_all(format!("{s}\n").as_bytes())?;
        }
        let out = c.wait_with_output()?;
        if !out.status.success() {
            return Err(Failed(format!("vnetd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub(super) fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, ChildProcess::pid)
    }

    /// Has the daemon exited (during a run)?
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.as_mut().and_then(ChildProcess::try_wait)
    }

    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
        if self.keep {
            eprintln!("kept {} (config, database, daemon log)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(super) fn free_port() -> Result<u16, Failed> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A daemon of its own (temp config on free ports, temp database, the config defaults otherwise:
/// production Argon2 parameters and connection cap), with `extra` TOML sections (not `[server]`,
/// `[storage]` or `[log]`).
pub(super) fn start_daemon_with(keep: bool, env: &[String], extra: &str) -> Result<(Daemon, Config), Failed> {
    start_daemon_server(keep, env, "", extra)
}

/// As `start_daemon_with`, with more `[server]` keys (`server`: TOML lines).
pub(super) fn start_daemon_server(keep: bool, env: &[String], server: &str, extra: &str) -> Result<(Daemon, Config), Failed> {
    let dir = std::env::temp_dir().join(format!("vnetd-bench-{}-{:08x}", std::process::id(), subsec_nanos()));
    std::fs::create_dir_all(&dir)?;
    let (port, admin) = (free_port()?, free_port()?);
    // Production Argon2 parameters and connection cap: the config defaults.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n{server}[storage]\npath = \"{}\"\n[log]\ntarget = \"stderr\"\nlevel = \"warn\"\n{extra}",
        dir.join("data/vnetd.db").display()
    );
    let cfg_path = dir.join("vnetd.toml");
    std::fs::write(&cfg_path, &text)?;
    let cfg = Config::parse(&text).map_err(Failed)?;
    let mut d = Daemon::new(&dir, &cfg_path, keep);
    launch(&mut d, env)?;
    Ok((d, cfg))
}

/// Start `vnetd run` on the daemon's config (output to its log) and wait until it is healthy.
pub(super) fn launch(d: &mut Daemon, env: &[String]) -> CliResult {
    let mut cmd = Command::new(std::env::current_exe()?);
    for kv in env {
        let (k, v) = kv.split_once('=').ok_or_else(|| Failed(format!("--daemon-env {kv}: expected KEY=VALUE")))?;
        cmd.env(k, v);
    }
    cmd.arg("--config").arg(&d.cfg).arg("run");
    let mut p = ChildProcess::spawn(cmd, &d.log)?;
    let cfg = d.cfg.clone();
    let ready = p.wait_ready("the daemon", Duration::from_secs(30), || healthy(&cfg));
    d.proc = Some(p);
    ready.map_err(Failed)
}

/// Sub-second nanoseconds of the wall clock, to make temporary names unique.
pub(super) fn subsec_nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}
