//! The outbox relay (spec 6, 7.1, 11 "Sync"): delivers queued messages in order per ordering key
//! and concurrently across keys, on its own threads, so request handling never waits for a peer.
//!
//! - One dispatcher thread looks at the database every `POLL` and hands work to a pool of
//!   delivery workers: the next message of each ordering key that is not already in flight, and
//!   for each BatchSync stream (one in flight at a time) a batch of up to `batch_max_records`
//!   records, sent when full or `flush_interval_ms` after the dispatcher first saw a record.
//! - The database is the only state that matters: a row is `pending` until its delivery is
//!   acknowledged, then `delivered` (or `dead`). A crash between the peer's acknowledgement and
//!   that update sends the message again (at least once; the centre drops duplicate RecordSeqs).
//! - Failures back off exponentially with jitter (1 s … `retry_max_s`), per message; a transport
//!   failure also backs off the whole destination so a peer that is down costs one probe at a
//!   time. Definitive rejections dead-letter a message at once; so does age beyond
//!   `dead_letter_after_h`. A BatchSync stream is never dead-lettered by age; a definitive
//!   rejection stalls it (its records become `dead`) until `vnetd outbox retry --dead`.
//! - While the database refuses writes (disk full, read-only: `store::health`) nothing is sent:
//!   an outcome that cannot be recorded would only be sent again. A delivery whose outcome could
//!   not be recorded for another reason holds every dispatch back for a growing pause (1 s …
//!   `retry_max_s`). Such failures are logged at error once per streak.

use crate::app::App;
use crate::crypto::TdesKey;
use crate::domain::peers::Peer;
use crate::soap::client::{self, Answer, CallError, Client};
use crate::spec::outbound::{self, Dest};
use crate::store::{outbox, DbResult};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the dispatcher looks for work when idle.
const POLL: Duration = Duration::from_millis(50);
/// Shortest time a queued delivery may take before it counts as failed.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);
/// Delivery workers (concurrent deliveries across keys).
const WORKERS: usize = 8;
/// Ordering keys looked at per destination and round (round-robin across rounds).
const KEYS_PER_ROUND: usize = 512;
/// The BatchSync streams, in the order they are served (their declaration: `spec::outbound::STREAMS`).
pub fn streams() -> impl Iterator<Item = &'static str> {
    outbound::STREAMS.iter().map(|s| s.name)
}

/// What a delivery worker is asked to do.
enum Job {
    /// One message (PassPort notifications, PasswordReset, RoamServiceRevoke, OrderNotify).
    Single(Row),
    /// The next batch of a BatchSync stream.
    Batch { stream: &'static str },
}

/// A waiting message (`crate::store::outbox::Message`).
type Row = outbox::Message;

/// A worker's report to the dispatcher.
struct Done {
    destination: String,
    key: String,
    /// The destination answered (at the HTTP/SOAP level), whatever the Result.
    reachable: bool,
    /// A batch that left records of its stream waiting.
    more: bool,
    /// The outcome could not be written to the database (the row stays as it was).
    unrecorded: bool,
}

impl Done {
    /// Nothing was sent, or it was settled without the peer (left waiting, dead-lettered): the
    /// destination is not held down, and nothing more of it waits.
    fn idle(destination: String, key: String) -> Done {
        Done { destination, key, reachable: true, more: false, unrecorded: false }
    }
}

/// The running relay.
pub struct Relay {
    stop: Arc<AtomicBool>,
    dispatcher: Option<JoinHandle<()>>,
    /// Unix seconds of the dispatcher's last round (for /readyz).
    pub heartbeat: Arc<AtomicI64>,
}

impl Relay {
    pub fn start(app: Arc<App>) -> std::io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = app.relay_heartbeat.clone();
        heartbeat.store(app.clock.unix(), Ordering::Relaxed);
        // `centre_timeout_ms` bounds the synchronous calls (6.1, 6.9); queued deliveries (a batch
        // of 500 records to a busy centre) get more time before counting as failed.
        let timeout = Duration::from_millis(app.cfg.sync.centre_timeout_ms).max(RELAY_TIMEOUT);
        let client = Client::new(timeout, &app.tls_roots);
        let (job_tx, job_rx) = channel::<Job>();
        let (done_tx, done_rx) = channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..WORKERS {
            let (app, client, job_rx, done_tx) = (app.clone(), client.clone(), job_rx.clone(), done_tx.clone());
            std::thread::Builder::new().name(format!("relay-{i}")).spawn(move || worker(&app, &client, &job_rx, &done_tx))?;
        }
        let d = Dispatcher {
            app,
            jobs: job_tx,
            done: done_rx,
            in_flight: HashSet::new(),
            down_until: HashMap::new(),
            down_failures: HashMap::new(),
            first_seen: HashMap::new(),
            backlog: HashSet::new(),
            warned_no_url: HashSet::new(),
            retry_marker: None,
            cursors: HashMap::new(),
            unrecorded: 0,
            hold_until: None,
        };
        let (stop2, hb) = (stop.clone(), heartbeat.clone());
        let dispatcher = std::thread::Builder::new().name("relay".into()).spawn(move || d.run(&stop2, &hb))?;
        Ok(Relay { stop, dispatcher: Some(dispatcher), heartbeat })
    }

    /// Stop dispatching. Deliveries in flight finish on their own; their rows stay pending if
    /// they do not, and go again at the next start.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.dispatcher.take() {
            let _ = h.join();
        }
    }
}

struct Dispatcher {
    app: Arc<App>,
    jobs: Sender<Job>,
    done: Receiver<Done>,
    /// (destination, ordering key) being delivered now.
    in_flight: HashSet<(String, String)>,
    /// Destinations that failed at the transport level: not tried again before this instant.
    down_until: HashMap<String, Instant>,
    down_failures: HashMap<String, u32>,
    /// When the dispatcher first saw a waiting record of a stream (the flush interval runs from it).
    first_seen: HashMap<&'static str, Instant>,
    /// Streams whose last batch left records waiting: the next batch goes at once.
    backlog: HashSet<&'static str>,
    warned_no_url: HashSet<String>,
    /// The last `outbox retry` seen.
    retry_marker: Option<String>,
    /// Per destination, the ordering key the last round stopped at.
    cursors: HashMap<String, String>,
    /// Deliveries in a row whose outcome could not be recorded, and no dispatch before this.
    unrecorded: u32,
    hold_until: Option<Instant>,
}

impl Dispatcher {
    fn run(mut self, stop: &AtomicBool, heartbeat: &AtomicI64) {
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            heartbeat.store(self.app.clock.unix(), Ordering::Relaxed);
            self.watch_retry_marker();
            match self.round() {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        log::error!("outbox relay: cannot read the outbox (will retry): {e}");
                    }
                    failing = true;
                }
            }
            // Wake early when a delivery finishes: its key may have more to send.
            if let Ok(d) = self.done.recv_timeout(POLL) {
                self.finished(d);
            }
            while let Ok(d) = self.done.try_recv() {
                self.finished(d);
            }
        }
    }

    /// `vnetd outbox retry` ends every destination back-off at once.
    fn watch_retry_marker(&mut self) {
        let marker = self.app.store.read(|c| crate::domain::billing::job_state(c, crate::store::outbox::RETRY_MARKER)).ok().flatten();
        if marker != self.retry_marker {
            if self.retry_marker.is_some() {
                log::info!("outbox: retry requested; destination back-offs cleared");
                self.down_until.clear();
                self.down_failures.clear();
            }
            self.retry_marker = marker;
        }
    }

    fn finished(&mut self, d: Done) {
        self.in_flight.remove(&(d.destination.clone(), d.key.clone()));
        if d.unrecorded {
            self.unrecorded += 1;
            let wait = backoff_s(self.unrecorded as i64, self.app.cfg.sync.retry_max_s as i64);
            self.hold_until = Some(Instant::now() + Duration::from_secs(wait as u64));
            return;
        }
        self.unrecorded = 0;
        if d.reachable {
            self.down_until.remove(&d.destination);
            self.down_failures.remove(&d.destination);
        } else {
            let n = self.down_failures.entry(d.destination.clone()).or_insert(0);
            *n += 1;
            let wait = backoff_s(*n as i64, self.app.cfg.sync.retry_max_s as i64);
            self.down_until.insert(d.destination.clone(), Instant::now() + Duration::from_secs(wait as u64));
        }
        if let Some(stream) = d.key.strip_prefix("stream:").and_then(outbound::stream).map(|s| s.name) {
            if d.more {
                self.backlog.insert(stream);
            } else {
                self.backlog.remove(stream);
            }
        }
    }

    /// One look at every destination.
    fn round(&mut self) -> DbResult<()> {
        // Outcomes could not be recorded: send nothing until they can (see the module doc).
        if self.app.store.health().write_refused() || self.hold_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        // Destinations with a waiting message, and the centre (its BatchSync streams).
        // A skip scan over the heads index: one look-up per destination, however long the backlog.
        let mut destinations: Vec<String> = self.app.store.read(outbox::destinations_waiting)?;
        if !destinations.iter().any(|d| d == crate::store::outbox::CENTRE) {
            destinations.push(crate::store::outbox::CENTRE.to_string());
        }
        for dest in destinations {
            let peer = if dest == crate::store::outbox::CENTRE { self.app.peers.centre() } else { self.app.peers.get(&dest).filter(|p| p.kind == "sp") };
            let usable = peer.as_ref().is_some_and(|p| p.active && p.url.as_deref().is_some_and(|u| !u.is_empty()));
            if !usable {
                if self.has_pending(&dest)? && self.warned_no_url.insert(dest.clone()) {
                    log::warn!("outbox: messages for {dest} wait: no active peer with a URL");
                }
                continue;
            }
            self.warned_no_url.remove(&dest);
            // A destination that is down gets one probe at a time once its backoff has passed.
            let down = self.down_until.contains_key(&dest);
            if self.down_until.get(&dest).is_some_and(|t| Instant::now() < *t) {
                continue;
            }
            if down && self.in_flight.iter().any(|(d, _)| *d == dest) {
                continue;
            }
            if dest == crate::store::outbox::CENTRE {
                for stream in streams() {
                    if self.maybe_batch(stream)? && down {
                        break;
                    }
                }
                if down && self.in_flight.iter().any(|(d, _)| *d == dest) {
                    continue;
                }
            }
            self.heads(&dest, down)?;
        }
        Ok(())
    }

    fn has_pending(&self, dest: &str) -> DbResult<bool> {
        self.app.store.read(|c| outbox::has_pending(c, dest))
    }

    /// Dispatch the next batch of a stream if one is due; true if dispatched.
    fn maybe_batch(&mut self, stream: &'static str) -> DbResult<bool> {
        let key = crate::store::outbox::stream_key(stream);
        let fkey = (crate::store::outbox::CENTRE.to_string(), key.clone());
        if self.in_flight.contains(&fkey) {
            return Ok(false);
        }
        let max = self.app.cfg.sync.batch_max_records.max(1) as i64;
        let now = self.app.clock.unix();
        let k = key.clone();
        let st = self.app.store.read(|c| outbox::stream_state(c, &k, max))?;
        let (waiting, head_due, head_attempts, stalled) = (st.waiting, st.head.is_none_or(|(at, _)| at <= now), st.head.map(|h| h.1).unwrap_or(0), st.stalled);
        self.app.metrics.set_gauge("vnetd_sync_stream_stalled", "1 while a BatchSync stream waits for `outbox retry --dead`", &[("stream", stream)], if stalled { 1.0 } else { 0.0 });
        if waiting == 0 {
            self.first_seen.remove(stream);
            return Ok(false);
        }
        if stalled || !head_due {
            return Ok(false);
        }
        let seen = *self.first_seen.entry(stream).or_insert_with(Instant::now);
        let flush = Duration::from_millis(self.app.cfg.sync.flush_interval_ms);
        let due = waiting >= max || seen.elapsed() >= flush || self.backlog.contains(stream) || head_attempts > 0;
        if !due {
            return Ok(false);
        }
        self.first_seen.remove(stream);
        self.in_flight.insert(fkey);
        let _ = self.jobs.send(Job::Batch { stream });
        Ok(true)
    }

    /// Dispatch the next message of ordering keys of `dest` that are due and not in flight. The
    /// keys are walked round-robin from where the previous round stopped, at most
    /// `KEYS_PER_ROUND` of them, by a skip scan (one index look-up per key), so a key with a long
    /// queue never hides the others.
    fn heads(&mut self, dest: &str, probe_only: bool) -> DbResult<()> {
        let now = self.app.clock.unix();
        let start = self.cursors.get(dest).cloned().unwrap_or_default();
        let heads = self.app.store.read(|c| outbox::heads(c, dest, &start, KEYS_PER_ROUND))?;
        for (row, next_at, batch_record) in heads {
            if self.in_flight.len() >= WORKERS * 4 {
                break;
            }
            self.cursors.insert(dest.to_string(), row.order_key.clone());
            let fkey = (row.destination.clone(), row.order_key.clone());
            // BatchSync streams go by `maybe_batch`.
            if batch_record || next_at > now || self.in_flight.contains(&fkey) {
                continue;
            }
            self.in_flight.insert(fkey);
            let _ = self.jobs.send(Job::Single(row));
            if probe_only {
                break;
            }
        }
        Ok(())
    }
}

/// Seconds to wait before attempt `attempts + 1`: 1, 2, 4, … up to `max_s`, with jitter (50–100 %).
pub fn backoff_s(attempts: i64, max_s: i64) -> i64 {
    let base = 1i64.checked_shl(attempts.clamp(1, 30) as u32 - 1).unwrap_or(i64::MAX).min(max_s.max(1));
    let r = crate::crypto::random_bytes(1)[0] as i64; // 0..=255
    (base * (128 + r / 2) / 255).max(1)
}

/// Definitive rejections (spec 11): dead-letter at once.
pub fn is_definitive(result: i32) -> bool {
    result == -20001 || result == -20003 || ((-21999..=-21500).contains(&result) && result != -21519 && result != -21514 && result != -21548)
}

fn worker(app: &App, client: &Client, jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let report = match job {
            Job::Single(row) => deliver_one(app, client, row),
            Job::Batch { stream } => deliver_batch(app, client, stream),
        };
        let report = match report {
            Ok(d) => {
                if RECORD_FAILING.swap(false, Ordering::Relaxed) {
                    log::warn!("outbox: delivery outcomes are recorded again");
                }
                d
            }
            Err((dest, key, e)) => {
                if RECORD_FAILING.swap(true, Ordering::Relaxed) {
                    log::debug!("outbox: cannot record a delivery for {dest} ({key}): {e}");
                } else {
                    log::error!("outbox: cannot record a delivery for {dest} ({key}): {e}; deliveries pause until the database takes writes, and what was sent goes again");
                }
                Done { unrecorded: true, ..Done::idle(dest, key) }
            }
        };
        if done.send(report).is_err() {
            return;
        }
    }
}

type Failure = (String, String, crate::store::DbError);

/// A delivery's outcome could not be recorded, and none has been since (logged once per streak).
static RECORD_FAILING: AtomicBool = AtomicBool::new(false);

/// The peer and key a message for `destination` goes to now.
fn target(app: &App, destination: &str) -> Option<(Arc<Peer>, String, TdesKey, i64)> {
    let now = app.clock.unix();
    let peer = if destination == crate::store::outbox::CENTRE { app.peers.centre()? } else { app.peers.get(destination)? };
    let url = peer.url.clone().filter(|u| !u.is_empty())?;
    let k = peer.current_key(now)?;
    let (key, version) = (k.key.clone(), k.version);
    Some((peer, url, key, version))
}

fn alarm(app: &App, destination: &str, result: i32) {
    if result == -21514 || result == -21548 {
        app.metrics.inc_counter(
            "vnetd_sync_alarms_total",
            "Deliveries refused for TimeStamp (-21514) or Authenticator (-21548): clocks or keys disagree",
            &[("destination", destination), ("result", &result.to_string())],
            1,
        );
        log::warn!("outbox: {destination} refused a delivery with {result} (clock or key mismatch); retrying");
    }
}

fn deliver_one(app: &App, client: &Client, row: Row) -> Result<Done, Failure> {
    let (dest, key) = (row.destination.clone(), row.order_key.clone());
    let fail = |e| (dest.clone(), key.clone(), e);
    let Some((peer, url, tdes, version)) = target(app, &row.destination) else {
        // The peer lost its URL or key meanwhile: leave the row; the dispatcher warns.
        return Ok(Done::idle(dest, key));
    };
    let payload: Vec<(String, String)> = match serde_json::from_str(&row.payload) {
        Ok(p) => p,
        Err(e) => {
            log::error!("outbox: message {} has an unreadable payload ({e}); dead-lettered", row.id);
            mark(app, row.id, Outcome::Dead(format!("unreadable payload: {e}"))).map_err(fail)?;
            return Ok(Done::idle(dest, key));
        }
    };
    // The declaration of the operation says where the payload goes and what it must hold.
    let declared = outbound::find(&row.operation).filter(|op| {
        op.trailer.is_none()
            && (op.dest == Dest::Centre) == (row.destination == crate::store::outbox::CENTRE)
            && payload.iter().map(|(n, _)| n.as_str()).eq(op.payload().iter().copied())
    });
    let Some(op) = declared else {
        log::error!("outbox: message {} ({} to {dest}) does not match the declaration of its operation; dead-lettered", row.id, row.operation);
        mark(app, row.id, Outcome::Dead("payload does not match the operation's declaration".into())).map_err(fail)?;
        return Ok(Done::idle(dest, key));
    };
    let mut fields = match op.dest {
        Dest::Centre => client::centre_fields(&app.cfg.node.device_no, &app.cfg.node.province_id, payload),
        Dest::Sp => payload,
    };
    // Passwords travel encrypted under the centre key of `key_version`; each attempt re-encrypts
    // under the key in effect now (spec 11 "Keys").
    if let Some(v) = row.key_version.filter(|v| *v != version) {
        let Some(old) = peer.keys.iter().find(|k| k.version == v) else {
            mark(app, row.id, Outcome::Dead(format!("centre key version {v} is gone"))).map_err(fail)?;
            return Ok(Done::idle(dest, key));
        };
        for (name, value) in fields.iter_mut().filter(|(n, _)| op.is_enc(n)) {
            match old.key.decrypt_b64_str(value) {
                Ok(plain) => *value = tdes.encrypt_b64(plain.as_bytes()),
                Err(_) => log::error!("outbox: message {} field {name} does not decrypt under key version {v}", row.id),
            }
        }
    }
    let answer = client.send(&url, op, &tdes, fields, app.clock.now_ts(), None);
    let age_limit = app.cfg.sync.dead_letter_after_h as i64 * 3600;
    let too_old = app.clock.unix() - row.created_at >= age_limit;
    let (outcome, reachable) = match &answer {
        Ok(a) if a.result == 0 => (Outcome::Delivered(contract_of(&row, a)), true),
        Ok(a) if is_definitive(a.result) => {
            log::error!("outbox: {} {} to {dest} rejected definitively ({} {}); dead-lettered", row.operation, row.id, a.result, a.desc);
            (Outcome::Dead(format!("Result {} {}", a.result, a.desc)), true)
        }
        Ok(a) => {
            alarm(app, &dest, a.result);
            (retry_or_dead(app, &row, too_old, format!("Result {} {}", a.result, a.desc)), true)
        }
        Err(e) => (retry_or_dead(app, &row, too_old, e.to_string()), false),
    };
    match &answer {
        Err(e @ (CallError::Transport(_) | CallError::Status(_))) => app.reach.failed(&app.metrics, &dest, &url, e),
        _ => app.reach.answered(&app.metrics, &dest, &url),
    }
    count(app, &dest, &row.operation, &outcome);
    mark(app, row.id, outcome).map_err(fail)?;
    Ok(Done { reachable, ..Done::idle(dest, key) })
}

/// A PUserInfoNotify's ContractID to keep on the user (spec 6.2).
fn contract_of(row: &Row, a: &Answer) -> Option<(String, String)> {
    if row.operation != "PUserInfoNotify" || a.get("ContractID").is_empty() {
        return None;
    }
    let user = row.order_key.strip_prefix("user:")?.to_string();
    Some((user, a.get("ContractID").chars().take(32).collect()))
}

fn retry_or_dead(app: &App, row: &Row, too_old: bool, why: String) -> Outcome {
    if too_old {
        log::error!("outbox: {} {} to {} undelivered for {} h ({why}); dead-lettered", row.operation, row.id, row.destination, app.cfg.sync.dead_letter_after_h);
        Outcome::Dead(why)
    } else {
        let wait = backoff_s(row.attempts + 1, app.cfg.sync.retry_max_s as i64);
        log::debug!("outbox: {} {} to {} failed ({why}); retry in {wait} s", row.operation, row.id, row.destination);
        Outcome::Retry { at: app.clock.unix() + wait, why }
    }
}

enum Outcome {
    /// Delivered; for PUserInfoNotify, the (user, ContractID) to store.
    Delivered(Option<(String, String)>),
    Retry { at: i64, why: String },
    Dead(String),
}

fn count(app: &App, dest: &str, op: &str, o: &Outcome) {
    let outcome = match o {
        Outcome::Delivered(_) => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead(_) => "dead",
    };
    let dest = if dest == crate::store::outbox::CENTRE { dest } else { "sp" };
    app.metrics.inc_counter("vnetd_outbox_deliveries_total", "Delivery attempts by destination, operation and outcome", &[("destination", dest), ("operation", op), ("outcome", outcome)], 1);
}

fn mark(app: &App, id: i64, outcome: Outcome) -> DbResult<()> {
    let now = app.clock.unix();
    app.store.write(move |c| {
        match outcome {
            Outcome::Delivered(contract) => {
                outbox::mark_delivered(c, id, now)?;
                if let Some((user, contract)) = contract {
                    crate::domain::passport::set_contract_id(c, &user, &contract)?;
                }
            }
            Outcome::Retry { at, why } => outbox::mark_retry(c, id, at, &why)?,
            Outcome::Dead(why) => outbox::mark_dead_after_attempt(c, id, &why)?,
        }
        Ok(())
    })
}

/// Send the next batch of `stream` (6.5) and record the centre's LastSequenceID.
fn deliver_batch(app: &App, client: &Client, stream: &'static str) -> Result<Done, Failure> {
    let key = crate::store::outbox::stream_key(stream);
    let dest = crate::store::outbox::CENTRE.to_string();
    let fail = |e| (dest.clone(), key.clone(), e);
    let Some((_peer, url, tdes, _)) = target(app, crate::store::outbox::CENTRE) else {
        return Ok(Done::idle(dest, key));
    };
    let max = app.cfg.sync.batch_max_records.max(1) as i64;
    let k = key.clone();
    let rows = app.store.read(|c| outbox::stream_batch(c, &k, max + 1)).map_err(fail)?;
    if rows.is_empty() {
        return Ok(Done::idle(dest, key));
    }
    let more = rows.len() as i64 > max;
    let batch = &rows[..rows.len().min(max as usize)];
    let mut records: Vec<Vec<(String, String)>> = Vec::with_capacity(batch.len());
    for (id, _, payload, _) in batch {
        match serde_json::from_str::<Vec<(String, String)>>(payload) {
            Ok(r) => records.push(r),
            Err(e) => {
                // Never skip a record (that would leave a gap): stall the stream instead.
                log::error!("outbox: {stream} record {id} has an unreadable payload ({e}); the stream stalls");
                let id = *id;
                app.store.write(move |c| outbox::mark_dead(c, id, "unreadable payload")).map_err(fail)?;
                return Ok(Done::idle(dest, key));
            }
        }
    }
    let values: Vec<Vec<String>> = records.iter().map(|r| r.iter().map(|(_, v)| v.clone()).collect()).collect();
    let first = batch[0].1;
    let last = batch[batch.len() - 1].1;
    let op = &outbound::BATCH_SYNC;
    let head = outbound::BatchSync::Payload {
        Stream: stream.to_string(),
        SequenceID: first.to_string(),
        TotalCount: batch.len().to_string(),
        IsFinal: if more { "0" } else { "1" }.to_string(),
        RecordsDigest: crate::crypto::records_digest(&values),
    }
    .values();
    let fields = client::centre_fields(&app.cfg.node.device_no, &app.cfg.node.province_id, head);
    let answer = client.send(&url, op, &tdes, fields, app.clock.now_ts(), Some(records));
    match &answer {
        Err(e @ (CallError::Transport(_) | CallError::Status(_))) => app.reach.failed(&app.metrics, crate::store::outbox::CENTRE, &url, e),
        _ => app.reach.answered(&app.metrics, crate::store::outbox::CENTRE, &url),
    }
    let last_seq = |a: &Answer| outbound::BatchSync::Response::read(&|n| a.get(n).to_string()).LastSequenceID.trim().parse::<i64>().ok();
    let head_id = batch[0].0;
    let head_attempts = batch[0].3;
    let ids: Vec<i64> = batch.iter().map(|r| r.0).collect();
    let (reachable, result) = match &answer {
        Ok(a) if a.result == 0 || a.result == -21519 => match last_seq(a) {
            Some(l) => {
                if a.result == -21519 {
                    log::warn!("outbox: centre reports a gap in {stream} after {l}; resending from {}", l + 1);
                }
                app.metrics.set_gauge("vnetd_sync_last_sequence", "Highest RecordSeq the centre acknowledged", &[("stream", stream)], l as f64);
                (true, acknowledge(app, &key, first, l, last).map_err(fail)?)
            }
            None => (true, retry_batch(app, head_id, head_attempts, format!("Result {} without LastSequenceID", a.result)).map_err(fail)?),
        },
        Ok(a) if is_definitive(a.result) => {
            log::error!("outbox: centre rejected {stream} batch {first}..{last} definitively ({} {}); the stream stalls until `vnetd outbox retry --dead`", a.result, a.desc);
            let why = format!("Result {} {}", a.result, a.desc);
            app.store
                .write(move |c| {
                    for id in ids {
                        outbox::mark_dead(c, id, &why)?;
                    }
                    Ok(())
                })
                .map_err(fail)?;
            (true, false)
        }
        Ok(a) => {
            alarm(app, &dest, a.result);
            (true, retry_batch(app, head_id, head_attempts, format!("Result {} {}", a.result, a.desc)).map_err(fail)?)
        }
        Err(e) => (!matches!(e, CallError::Transport(_) | CallError::Status(_)), retry_batch(app, head_id, head_attempts, e.to_string()).map_err(fail)?),
    };
    let outcome = if answer.as_ref().is_ok_and(|a| a.result == 0) { "delivered" } else { "retry" };
    app.metrics.inc_counter("vnetd_outbox_batches_total", "BatchSync batches sent by stream and outcome", &[("stream", stream), ("outcome", outcome)], 1);
    Ok(Done { reachable, more: more || result, ..Done::idle(dest, key) })
}

/// The centre holds everything up to `l`: mark the waiting records from `first` (the lowest one
/// waiting, the batch's first) to `l` delivered. If the centre holds less than was sent, anything
/// after `l` that was marked delivered before goes again. Returns true if records are waiting to
/// be (re)sent at once.
fn acknowledge(app: &App, key: &str, first: i64, l: i64, sent_last: i64) -> DbResult<bool> {
    let (key, now) = (key.to_string(), app.clock.unix());
    let resend = app.store.write(move |c| outbox::acknowledge(c, &key, first, l, sent_last, now).map(|r| (key, r)))?;
    match resend {
        (_, None) => Ok(false),
        (key, Some(n)) => {
            if n > 0 {
                log::warn!("outbox: resending {n} records of {key} after {l}");
            }
            Ok(true)
        }
    }
}

fn retry_batch(app: &App, head_id: i64, attempts: i64, why: String) -> DbResult<bool> {
    let at = app.clock.unix() + backoff_s(attempts + 1, app.cfg.sync.retry_max_s as i64);
    log::debug!("outbox: batch starting at row {head_id} failed ({why}); retrying");
    app.store.write(move |c| outbox::retry_batch_head(c, head_id, at, &why))?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for _ in 0..50 {
            let b1 = backoff_s(1, 300);
            assert!((1..=1).contains(&b1), "{b1}");
            let b5 = backoff_s(5, 300);
            assert!((8..=16).contains(&b5), "{b5}");
            let b20 = backoff_s(20, 300);
            assert!((150..=300).contains(&b20), "{b20}");
        }
    }

    #[test]
    fn definitive_rejections() {
        for r in [-20001, -20003, -21500, -21513, -21999] {
            assert!(is_definitive(r), "{r}");
        }
        for r in [0, -21519, -21514, -21548, -22500, -20504, -20002] {
            assert!(!is_definitive(r), "{r}");
        }
    }
}
