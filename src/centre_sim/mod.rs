//! `vnetd centre-sim`: the centre's side of spec section 6 (and, optionally, SPs' OrderNotify
//! endpoint) as a real HTTP server, for integration tests, demos and operators' checks.
//!
//! * SOAP 1.1 (or 1.2) POST to any path; the operation is the first element of Body, children are
//!   matched by local name. Not XML, not an envelope, unknown operation: SOAP Fault, HTTP 500.
//! * Every operation: caller id, Authenticator (any `--key` verifies), TimeStamp within ±300 s,
//!   then the operation's own rules ([`handlers`]); what is accepted is committed to the `--db`
//!   SQLite file ([`store`] documents the schema) before the answer is written.
//! * `--time-offset-s N` shifts the simulator's clock (as `[node] time_offset_s` shifts the node's);
//!   `--clock-offset-s N` shifts only the ServerTime that ClockSync answers.
//! * Fault injection: `--fail-rate P` answers that share of requests with HTTP 500 and a Server
//!   fault before anything is stored; `--delay-ms N` sleeps N ms before handling each request.
//! * One log line on stderr per accepted or rejected message (never keys or passwords).
//! * Runs until SIGTERM or SIGINT, then finishes the requests in progress and exits 0.

pub mod handlers;
pub mod store;

use crate::clock::{parse_utc_offset, Clock};
use crate::crypto::TdesKey;
use crate::soap::envelope::{self, SoapVersion};
use crate::soap::writer::{self, FaultCode};
use crate::api::server::{Body, Limits, Request, Response, Runtime, Server, Service};
use handlers::Sim;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Worker threads running the handlers (and the queue of requests waiting for one).
pub const WORKERS: usize = 16;
const QUEUE: usize = 256;
/// Most connections served at once (more get 503 from the listener).
const MAX_CONNECTIONS: usize = 64;
/// Largest request body (a BatchSync of 500 records is well under it).
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// The simulated centre's time zone (node time, spec 2.3).
pub const TIMEZONE: &str = "+08:00";

/// Everything `centre-sim` runs with (parsed and checked by the CLI).
pub struct Options {
    pub listen: String,
    pub db: PathBuf,
    /// The simulated centre's own DeviceNo (only shown in the log: province DeviceNos are all accepted).
    pub device_no: String,
    pub keys: Vec<TdesKey>,
    pub sp_keys: HashMap<String, TdesKey>,
    /// Users to load (insert or replace) before serving.
    pub users: Option<Vec<store::SimUser>>,
    /// Share of requests (0.0–1.0) answered with an injected HTTP 500 Server fault.
    pub fail_rate: f64,
    pub delay_ms: u64,
    /// Seconds added to ClockSync's ServerTime (on top of `time_offset_s`).
    pub clock_offset_s: i64,
    /// Seconds added to the system clock for everything the simulator does (TimeStamp checks,
    /// times it answers and stores), like the node's `[node] time_offset_s`.
    pub time_offset_s: i64,
}

/// Fault injection settings.
#[derive(Clone, Copy)]
struct Injection {
    fail_rate: f64,
    delay: Duration,
}

/// Serve until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), String> {
    // Before any thread starts, so that only the main thread receives the shutdown signals.
    crate::runtime::signals::block()?;
    let store = store::Store::open(&opts.db)?;
    if let Some(users) = &opts.users {
        let n = store.load_users(users).map_err(|e| format!("cannot load the users: {e}"))?;
        log::info!("centre-sim: {n} user(s) loaded");
    }
    let tz = parse_utc_offset(TIMEZONE).ok_or("bad built-in time zone")?;
    let sim = Arc::new(Sim { keys: opts.keys, sp_keys: opts.sp_keys, clock: Clock::system(tz, opts.time_offset_s), clock_offset_s: opts.clock_offset_s, store });
    let rt = Runtime::new("centre-sim", 2)?;
    let limits = Limits { name: "centre-sim", max_connections: MAX_CONNECTIONS, read_timeout: Duration::from_secs(10), workers: WORKERS, queue: QUEUE, tls: None };
    let inj = Injection { fail_rate: opts.fail_rate, delay: Duration::from_millis(opts.delay_ms) };
    let server = Server::start(&rt, &opts.listen, limits, Arc::new(SimService { sim: sim.clone(), inj }))?;
    let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_else(|| opts.listen.clone());
    log::info!(
        "centre-sim: device {}, {} centre key(s), {} SP endpoint(s), database {}, fail rate {}, delay {} ms, clock offset {} s, ServerTime offset {} s",
        opts.device_no,
        sim.keys.len(),
        sim.sp_keys.len(),
        opts.db.display(),
        opts.fail_rate,
        opts.delay_ms,
        opts.time_offset_s,
        opts.clock_offset_s
    );
    eprintln!("centre-sim listening on {addr}");
    let sig = crate::runtime::signals::wait_for_shutdown(|| log::info!("SIGHUP ignored: the centre simulator has no reloadable settings"));
    log::info!("centre-sim: {sig} received; stopping");
    server.stop(Duration::from_secs(5));
    rt.stop();
    eprintln!("centre-sim stopped");
    Ok(())
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::new(status, content_type, body)
}

fn fault(version: SoapVersion, code: FaultCode, reason: &str) -> Response {
    log::info!("centre-sim: SOAP fault ({code:?}): {reason}");
    respond(500, &writer::content_type(version, "UTF-8"), writer::fault(version, code, reason).into_bytes())
}

struct SimService {
    sim: Arc<Sim>,
    inj: Injection,
}

impl Service for SimService {
    fn body(&self, rq: &Request) -> Body {
        if rq.method == "POST" { Body::Read(MAX_BODY_BYTES) } else { Body::Skip }
    }
    fn handle(&self, rq: Request) -> Response {
        handle(&self.sim, self.inj, &rq)
    }
}

/// A uniformly distributed number in [0, 1).
fn random_unit() -> f64 {
    let b = crate::crypto::random_bytes(8);
    let n = u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) >> 11;
    n as f64 / (1u64 << 53) as f64
}

fn handle(sim: &Sim, inj: Injection, rq: &Request) -> Response {
    match rq.method.as_str() {
        "POST" => {}
        "GET" | "HEAD" => return respond(200, "text/plain; charset=utf-8", b"vnetd centre-sim: POST SOAP requests to any path\n".to_vec()),
        _ => return respond(405, "text/plain; charset=utf-8", b"use POST\n".to_vec()),
    }
    if !inj.delay.is_zero() {
        std::thread::sleep(inj.delay);
    }
    if inj.fail_rate > 0.0 && random_unit() < inj.fail_rate {
        return fault(SoapVersion::V11, FaultCode::Server, "injected failure (centre-sim --fail-rate)");
    }
    let env = match envelope::decode_body(&rq.body, rq.header("Content-Type")).and_then(|x| envelope::parse(&x)) {
        Ok(env) => env,
        Err(e) => return fault(SoapVersion::V11, FaultCode::Client, &e.to_string()),
    };
    match sim.handle(&env.op) {
        Some(answer) => {
            let doc = answer.render(env.version);
            respond(200, &writer::content_type(env.version, "UTF-8"), doc.into_bytes())
        }
        None => {
            let name: String = env.op.name.chars().take(40).collect();
            fault(env.version, FaultCode::Client, &format!("unknown operation {name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_unit_in_range() {
        for _ in 0..100 {
            let x = super::random_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
