//! The load generator: N client threads, each with its own keep-alive HTTP/1.1 connection,
//! pre-built requests, latencies and CPU per run.

use super::*;

// The load generator

pub(super) type Build = dyn Fn() -> Vec<u8> + Send + Sync;
pub(super) type Check = dyn Fn(u16, &[u8]) -> bool + Send + Sync;

/// A keep-alive client connection.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) body: Vec<u8>,
    /// The `Retry-After` seconds of the last answer, if it had one.
    pub(super) retry_after_s: Option<u64>,
}

pub(super) fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle, 0).is_some()
}

pub(super) fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

impl Conn {
    pub(super) fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn { stream, buf: Vec::with_capacity(16384), body: Vec::with_capacity(4096), retry_after_s: None })
    }

    pub(super) fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 16384];
        let n = self.stream.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed by the server"));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    /// Need `n` bytes in the buffer.
    pub(super) fn need(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(())
    }

    /// Send one request, read its response: (status, body, server closes the connection).
    pub(super) fn exchange(&mut self, req: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        self.stream.write_all(req)?;
        let (status, close, body) = self.read_response()?;
        Ok((status, body, close))
    }

    pub(super) fn read_response(&mut self) -> std::io::Result<(u16, bool, Vec<u8>)> {
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n", 0) {
                break p + 4;
            }
            if self.buf.len() > 65536 {
                return Err(bad("response head over 64 KiB"));
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("response head not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
        let http10 = status_line.starts_with("HTTP/1.0");
        let (mut length, mut chunked, mut close) = (None, false, http10);
        self.retry_after_s = None;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else { continue };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            } else if k.eq_ignore_ascii_case("retry-after") {
                self.retry_after_s = v.parse().ok();
            }
        }
        self.body.clear();
        let consumed = if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf, b"\r\n", pos) {
                        break p;
                    }
                    self.fill()?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).map_err(|_| bad("bad chunk size"))?;
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad("bad chunk size"))?;
                pos = line_end + 2;
                if size == 0 {
                    // No trailers expected: the final CRLF.
                    self.need(pos + 2)?;
                    break pos + 2;
                }
                self.need(pos + size + 2)?;
                self.body.extend_from_slice(&self.buf[pos..pos + size]);
                pos += size + 2;
            }
        } else if let Some(n) = length {
            self.need(head_end + n)?;
            self.body.extend_from_slice(&self.buf[head_end..head_end + n]);
            head_end + n
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            head_end
        } else {
            // No length: the body runs to the end of the connection.
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            close = true;
            self.body.extend_from_slice(&self.buf[head_end..]);
            self.buf.len()
        };
        self.buf.drain(..consumed);
        Ok((status, close, std::mem::take(&mut self.body)))
    }
}

pub(super) struct LoadResult {
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// Measured wall time (from the end of the warm-up to the last completion).
    pub(super) window: f64,
    /// Latencies of the successful measured requests, microseconds, sorted.
    pub(super) lat_us: Vec<u32>,
    /// Latencies of the measured answers that were HTTP 503, sorted.
    pub(super) refused_us: Vec<u32>,
    pub(super) first_error: Option<String>,
    /// CPU used during the measured window, in cores: the target process, this process, and
    /// everything else on the machine.
    pub(super) cpu_target: f64,
    pub(super) cpu_bench: f64,
    pub(super) cpu_other: f64,
    /// CPU seconds of the first target's database writer thread during the measured window.
    pub(super) cpu_writer_s: f64,
}

impl LoadResult {
    /// The cells every results table shares: requests | errors | req/s | p50 ms | p99 ms | max ms.
    pub(super) fn cells(&self) -> String {
        let errors = if self.refused_us.is_empty() { self.errors.to_string() } else { format!("{} (+{} 503)", self.errors, self.refused_us.len()) };
        format!("{} | {errors} | {:.0} | {} | {} | {}", self.requests, self.rate(), ms(self.pct(0.50)), ms(self.pct(0.99)), ms(self.max()))
    }
    pub(super) fn rate(&self) -> f64 {
        if self.window > 0.0 {
            self.requests as f64 / self.window
        } else {
            0.0
        }
    }
    pub(super) fn pct(&self, p: f64) -> Option<u32> {
        percentile(&self.lat_us, p)
    }
    pub(super) fn max(&self) -> Option<u32> {
        self.lat_us.last().copied()
    }
}

/// The `p` quantile of sorted latencies.
pub(super) fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

pub(super) fn ms(us: Option<u32>) -> String {
    match us {
        None => "–".into(),
        Some(us) if us < 10_000 => format!("{:.2}", us as f64 / 1000.0),
        Some(us) => format!("{:.1}", us as f64 / 1000.0),
    }
}

pub(super) struct ThreadResult {
    pub(super) lat_us: Vec<u32>,
    /// Latencies of the measured answers that were HTTP 503 (load shed by the server).
    pub(super) refused_us: Vec<u32>,
    pub(super) errors: u64,
    pub(super) last_done: Option<Instant>,
    pub(super) first_error: Option<String>,
}

/// `n` clients, each on its own connection, for the warm-up plus the measured duration.
/// `fresh`: build a new request for every request (else at most once a second).
pub(super) fn run_load(addr: SocketAddr, n: usize, l: &LoadArgs, build: Arc<Build>, check: Arc<Check>, target_pids: &[u32], fresh: bool) -> LoadResult {
    let connected = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Barrier::new(n + 1));
    let times: Arc<OnceLock<(Instant, Instant)>> = Arc::new(OnceLock::new());
    let (warmup, duration) = (Duration::from_secs_f64(l.warmup_s), Duration::from_secs_f64(l.duration_s));
    let honour_retry = l.honour_retry_after;
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (connected, go, times, build, check) = (connected.clone(), go.clone(), times.clone(), build.clone(), check.clone());
        handles.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut conn = Conn::open(addr).ok();
                    connected.wait();
                    go.wait();
                    let (measure_from, end) = *times.get().expect("times set before go");
                    let mut out = ThreadResult { lat_us: Vec::with_capacity(1 << 14), refused_us: Vec::new(), errors: 0, last_done: None, first_error: None };
                    let mut req = build();
                    let mut built = Instant::now();
                    let err = |out: &mut ThreadResult, measured: bool, e: String| {
                        if measured {
                            out.errors += 1;
                            if out.first_error.is_none() {
                                out.first_error = Some(e);
                            }
                        }
                    };
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end {
                            break;
                        }
                        if fresh || t0.duration_since(built) >= Duration::from_secs(1) {
                            req = build();
                            built = t0;
                        }
                        let measured = t0 >= measure_from;
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match Conn::open(addr) {
                                Ok(c) => conn.insert(c),
                                Err(e) => {
                                    err(&mut out, measured, format!("connect: {e}"));
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            },
                        };
                        let t0 = Instant::now();
                        match c.exchange(&req) {
                            Ok((status, body, close)) => {
                                let done = Instant::now();
                                let took = done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32;
                                if check(status, &body) {
                                    if measured {
                                        out.lat_us.push(took);
                                        out.last_done = Some(done);
                                    }
                                } else if status == 503 {
                                    // Shed by the server (a full queue): counted apart, not an error.
                                    if measured {
                                        out.refused_us.push(took);
                                        out.last_done = Some(done);
                                    }
                                    if let Some(s) = c.retry_after_s.filter(|_| honour_retry) {
                                        std::thread::sleep(Duration::from_secs(s).min(end.saturating_duration_since(Instant::now())));
                                    }
                                } else {
                                    let text = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
                                    err(&mut out, measured, format!("HTTP {status}: {text}"));
                                }
                                if close {
                                    conn = None;
                                }
                            }
                            Err(e) => {
                                err(&mut out, measured, format!("I/O: {e}"));
                                conn = None;
                            }
                        }
                    }
                    out
                })
                .expect("cannot start a client thread"),
        );
    }
    connected.wait();
    let start = Instant::now();
    let measure_from = start + warmup;
    let _ = times.set((measure_from, measure_from + duration));
    go.wait();
    std::thread::sleep(warmup);
    let cpu_targets = || target_pids.iter().map(|&p| cpu_of(p)).sum::<f64>();
    let cpu_writer = || target_pids.first().map_or(0.0, |&p| cpu_of_thread(p, crate::store::WRITER_THREAD));
    let cpu0 = (cpu_total(), cpu_self(), cpu_targets(), cpu_writer());
    let mut all = Vec::new();
    let mut refused = Vec::new();
    let (mut errors, mut last, mut first_error) = (0, None::<Instant>, None);
    for h in handles {
        let t = h.join().expect("client thread panicked");
        all.extend_from_slice(&t.lat_us);
        refused.extend_from_slice(&t.refused_us);
        errors += t.errors;
        last = last.max(t.last_done);
        first_error = first_error.or(t.first_error);
    }
    let wall = measure_from.elapsed().as_secs_f64().max(1e-9);
    let (total, me, tgt, writer) = (cpu_total() - cpu0.0, cpu_self() - cpu0.1, cpu_targets() - cpu0.2, cpu_writer() - cpu0.3);
    all.sort_unstable();
    refused.sort_unstable();
    LoadResult {
        requests: all.len() as u64,
        errors,
        window: last.map_or(0.0, |t| t.duration_since(measure_from).as_secs_f64()),
        lat_us: all,
        refused_us: refused,
        first_error,
        cpu_target: tgt / wall,
        cpu_bench: me / wall,
        cpu_other: ((total - me - tgt) / wall).max(0.0),
        cpu_writer_s: writer,
    }
}
