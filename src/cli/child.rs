//! A `vnetd` child process for the benchmarks and the integration tests (`vnetd run`,
//! `vnetd centre-sim`): started with its output appended to a log file, waited for until a
//! readiness check passes (failing early, with the log, if it exits), stopped with SIGTERM and a
//! deadline, or killed with SIGKILL. Dropping it kills it.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct ChildProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ChildProcess {
    /// Start `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> std::io::Result<ChildProcess> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn()?;
        Ok(ChildProcess { child: Some(child), log: log.to_path_buf() })
    }

    /// Wait until `ready()` is true, for at most `timeout`. Err (with the end of the log) when the
    /// process exits first or the time runs out.
    pub fn wait_ready(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("{what} exited early ({st}); log:\n{}", self.log_tail(40)));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{what} was not ready within {} s; log:\n{}", timeout.as_secs(), self.log_tail(40)));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Has the process exited (and with what)?
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then SIGKILL after `deadline`. The exit status if it exited by itself in time.
    pub fn stop(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// SIGKILL, at once.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
