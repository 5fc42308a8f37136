//! nginx serving a static file, the reference ceiling of the HTTP benchmarks (started by them).

use super::{free_port, web::once};
use crate::cli::Failed;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// nginx serving `size` bytes at /static.xml on a free port; its master and worker pids.
pub(super) struct Nginx {
    child: Child,
    pub(super) addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    pub(super) fn start(bin: &str, dir: PathBuf, size: usize, connections: usize) -> Result<Nginx, Failed> {
        std::fs::create_dir_all(dir.join("www"))?;
        std::fs::write(dir.join("www/static.xml"), vec![b'x'; size])?;
        let port = free_port()?;
        let conf = format!(
            "worker_processes 2;\nworker_rlimit_nofile {files};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections {connections}; }}\n\
             http {{ access_log off; client_header_timeout 3600s; keepalive_timeout 3600s; keepalive_requests 100000000; server {{ listen 127.0.0.1:{port}; location / {{ root {d}/www; }} }} }}\n",
            d = dir.display(),
            files = 2 * connections + 64
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Failed(format!("cannot start {bin}: {e}")))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut n = Nginx { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(once(n.addr, b"GET /static.xml HTTP/1.1\r\nHost: bench\r\n\r\n"), Ok((200, _))) {
            if Instant::now() > deadline || n.child.try_wait().ok().flatten().is_some() {
                return Err(Failed(format!("nginx did not serve; see {}", n.dir.join("error.log").display())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        n.addr = addr;
        Ok(n)
    }

    /// The master and its workers.
    pub(super) fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut out = vec![master];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(master) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master stops its workers too (a SIGKILL would leave them running); after
    /// 5 s whatever is left is killed.
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pids = self.pids();
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in pids.iter().skip(1) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

