//! The kill -9 campaign (issue 12 item 1; spec 10 "Durability", 2.7, 6.5, 7.1–7.3): trials of
//! mixed load against the real daemon and a real `vnetd centre-sim` that fails and delays at
//! random, each ending in a SIGKILL of the daemon at a random moment — some inside a monthly
//! rollover or around a day close, some while the daemon catches those up at start-up — and in
//! some trials a SIGKILL of the centre followed by a long outage. After each kill (the daemon
//! dead) and again at the end (restarted, every request repeated, the outbox drained) the trial
//! checks the node's database and the centre's against the clients' ledger (see `check`).
//!
//! `VNETD_CHAOS_TRIALS` (default 20) trials run, with seeds `VNETD_CHAOS_SEED` (default: from the
//! clock) + 0, 1, 2, …; a trial's kind, operation mix, accounts, keys, kill and outage moments
//! and the centre's failure rate and delay all follow from its seed. A failure names the seed:
//! `VNETD_CHAOS_SEED=<seed> VNETD_CHAOS_TRIALS=1 scripts/chaos` replays the trial (the same
//! choices; thread scheduling, and so the exact kill point, still varies). The trial's files are
//! kept under target/tmp/chaos-<seed>/. docs/chaos.md describes the campaign.

mod check;
mod load;
mod rng;

use crate::centre_sim::CentreSim;
use crate::harness::*;
use check::{check_centre, check_node, snapshot, CentreSeen, Expect, Snap};
use load::*;
use rng::Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use vnetd::domain::calendar::{Cal, Ym};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Mid-month: a kill at a random moment of the load.
    Load,
    /// The node's clock passes 00:00:00 on the 1st during the load; the kill lands inside the
    /// rollover (after one of its transactions, before its last) when it can be caught there.
    Rollover,
    /// Killed before the boundary, restarted after it: killed again inside the start-up rollover.
    RolloverCatchUp,
    /// The clock passes `day_close_minute` (00:30) during the load; the kill lands around the close.
    DayClose,
    /// Killed, restarted days later: killed again while the missed days are closed at start-up.
    DayCloseCatchUp,
}

const KINDS: [Kind; 5] = [Kind::Load, Kind::Rollover, Kind::DayClose, Kind::RolloverCatchUp, Kind::DayCloseCatchUp];

fn tz() -> UtcOffset {
    UtcOffset::from_hms(8, 0, 0).unwrap()
}

fn cal() -> Cal {
    Cal::new(tz())
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Node time `y-m-d h:mi:00` (+08:00) as unix seconds.
fn at(ym: Ym, day: u8, h: u8, mi: u8) -> i64 {
    let date = Date::from_calendar_date(ym.0, Month::try_from(ym.1).unwrap(), day).unwrap();
    PrimitiveDateTime::new(date, Time::from_hms(h, mi, 0).unwrap()).assume_offset(tz()).unix_timestamp()
}

fn real_month() -> Ym {
    cal().month(now_unix())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

// ---------------------------------------------------------------- the campaign

#[test]
fn kill9_campaign_loses_duplicates_and_invents_nothing() {
    let trials = env_u64("VNETD_CHAOS_TRIALS").unwrap_or(20);
    let base = env_u64("VNETD_CHAOS_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        Rng::new(t.as_nanos() as u64 ^ u64::from(std::process::id())).next() & 0xFFFF_FFFF_FFFF
    });
    eprintln!("chaos: {trials} trials from seed {base:#x}");
    let started = Instant::now();
    let mut total = Totals::default();
    for i in 0..trials {
        let seed = base.wrapping_add(i);
        let t0 = Instant::now();
        let report = match std::panic::catch_unwind(|| run_trial(seed)) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                panic!(
                    "chaos trial {} of {trials} failed, seed {seed:#x} (replay: VNETD_CHAOS_SEED={seed:#x} VNETD_CHAOS_TRIALS=1 scripts/chaos; files in target/tmp/chaos-{seed:x}):\n{msg}",
                    i + 1
                );
            }
        };
        eprintln!("chaos: trial {}/{trials} {} ({:.1} s)", i + 1, report.line(), t0.elapsed().as_secs_f64());
        total.add(&report);
    }
    total.print(trials, started.elapsed());
}

/// The counts of a trial, and their sums over the campaign.
#[derive(Default)]
struct Counts {
    /// Acknowledged changes (Result 0, including repeats that ran afresh) per kind.
    acked: BTreeMap<&'static str, usize>,
    refused: usize,
    unanswered: usize,
    /// Unanswered requests that had committed (their repeat answered the stored response).
    committed_unanswered: usize,
    /// Unanswered requests that had not (their repeat ran afresh).
    ran_afresh: usize,
    repeats: usize,
    kills: usize,
    rollover_kills: usize,
    /// Kills with the rollover part done (some orders rolled over, the month's marker not set).
    rollover_kills_inside: usize,
    day_close_kills: usize,
    /// Kills in the middle of a start-up catch-up of several days (some closed, some not).
    day_close_kills_between: usize,
    /// Kills before / after the day close of the live kind committed.
    day_close_before: usize,
    day_close_after: usize,
    centre_kills: usize,
    outages: usize,
    outage_s: f64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        for (k, n) in &o.acked {
            *self.acked.entry(k).or_default() += n;
        }
        self.refused += o.refused;
        self.unanswered += o.unanswered;
        self.committed_unanswered += o.committed_unanswered;
        self.ran_afresh += o.ran_afresh;
        self.repeats += o.repeats;
        self.kills += o.kills;
        self.rollover_kills += o.rollover_kills;
        self.rollover_kills_inside += o.rollover_kills_inside;
        self.day_close_kills += o.day_close_kills;
        self.day_close_kills_between += o.day_close_kills_between;
        self.day_close_before += o.day_close_before;
        self.day_close_after += o.day_close_after;
        self.centre_kills += o.centre_kills;
        self.outages += o.outages;
        self.outage_s += o.outage_s;
    }
}

/// What one trial did, for the summary.
#[derive(Default)]
struct Report {
    seed: u64,
    kind: Option<Kind>,
    n: Counts,
    /// Most delivery attempts of one message.
    max_attempts: i64,
    seen: CentreSeen,
    fail_rate: f64,
    /// Seconds spent in each phase.
    phases: Vec<(&'static str, f64)>,
    /// The drain ended with the centre's faults turned off.
    recovered: bool,
}

impl Report {
    fn line(&self) -> String {
        let acked: usize = self.n.acked.values().sum();
        format!(
            "seed {:#x} {:?} [{}]: {acked} acked, {} refused, {} unanswered ({} had committed, {} ran afresh), {} repeats; {} kills (rollover {}/{} inside, day close {}: {} between, {} before, {} after); centre kills {}, outage {:.1} s; fail rate {:.2}; centre records {:?}, {} duplicates dropped, {} notifications redelivered, max attempts {}{}",
            self.seed,
            self.kind.unwrap(),
            self.phases.iter().map(|(p, s)| format!("{p} {s:.1}")).collect::<Vec<_>>().join(", "),
            self.n.refused,
            self.n.unanswered,
            self.n.committed_unanswered,
            self.n.ran_afresh,
            self.n.repeats,
            self.n.kills,
            self.n.rollover_kills_inside,
            self.n.rollover_kills,
            self.n.day_close_kills,
            self.n.day_close_kills_between,
            self.n.day_close_before,
            self.n.day_close_after,
            self.n.centre_kills,
            self.n.outage_s,
            self.fail_rate,
            self.seen.records,
            self.seen.duplicate_records,
            self.seen.redelivered,
            self.max_attempts,
            if self.recovered { "; the centre recovered from its faults to finish the drain" } else { "" },
        )
    }
}

#[derive(Default)]
struct Totals {
    n: Counts,
    kinds: BTreeMap<String, usize>,
    longest_outage_s: f64,
    max_attempts: i64,
    records: BTreeMap<String, usize>,
    duplicate_records: i64,
    redelivered: usize,
    messages: usize,
    gaps: usize,
    /// Trials whose drain ended against a centre without faults.
    recovered: usize,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.n.add(&r.n);
        *self.kinds.entry(format!("{:?}", r.kind.unwrap())).or_default() += 1;
        self.longest_outage_s = self.longest_outage_s.max(r.n.outage_s);
        self.max_attempts = self.max_attempts.max(r.max_attempts);
        for (k, n) in &r.seen.records {
            *self.records.entry(k.clone()).or_default() += n;
        }
        self.duplicate_records += r.seen.duplicate_records;
        self.redelivered += r.seen.redelivered;
        self.messages += r.seen.messages;
        self.gaps += r.seen.gaps;
        self.recovered += usize::from(r.recovered);
    }

    fn print(&self, trials: u64, elapsed: Duration) {
        let acked: usize = self.n.acked.values().sum();
        let lines = [
            format!("trials: {trials} ({})", self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")),
            format!("acknowledged changes: {acked} ({})", self.n.acked.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")),
            format!("refused (business outcome, no effect): {}", self.n.refused),
            format!(
                "unanswered at a kill: {} ({} had committed and answered the stored response on repeat, {} had not and ran afresh, {} not repeatable: logins, probes, uncommitted KeyUpdates)",
                self.n.unanswered,
                self.n.committed_unanswered,
                self.n.ran_afresh,
                self.n.unanswered - self.n.committed_unanswered - self.n.ran_afresh
            ),
            format!("idempotent repeats: {} (every one answered as first answered)", self.n.repeats),
            "losses: 0; duplicate effects: 0; effects or messages without a committed request: 0 (any one fails the campaign)".to_string(),
            format!(
                "centre records accepted: {} (RecordSeq gapless, each once, each the node's committed record); gaps: 0",
                self.records.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "re-sent records dropped by RecordSeq: {}; notifications accepted: {}, of them redelivered after a kill: {}; gap answers (-21519): {}",
                self.duplicate_records, self.messages, self.redelivered, self.gaps
            ),
            format!(
                "daemon kills: {} (rollover: {}, {} with the rollover part done; day close: {}, {} between two closes of a catch-up, {} just before and {} just after a close)",
                self.n.kills, self.n.rollover_kills, self.n.rollover_kills_inside, self.n.day_close_kills, self.n.day_close_kills_between, self.n.day_close_before, self.n.day_close_after
            ),
            format!(
                "centre kills: {}; long outages: {} ({:.0} s in all, longest {:.1} s, retry_max_s 1); most attempts of one message: {}; drains finished after the centre's faults were turned off: {}",
                self.n.centre_kills, self.n.outages, self.n.outage_s, self.longest_outage_s, self.max_attempts, self.recovered
            ),
            "integrity_check: ok after every kill and at every end; ledger verify: ok".to_string(),
            format!("elapsed: {:.0} s", elapsed.as_secs_f64()),
        ];
        eprintln!("chaos summary:");
        for l in lines {
            eprintln!("chaos summary: {l}");
        }
    }
}

// ---------------------------------------------------------------- one trial

/// A centre outage: the simulator is killed `start` into the load and kept down for `len`.
struct Outage {
    start: Duration,
    len: Duration,
    began: Option<Instant>,
    over: bool,
}

struct Trial {
    seed: u64,
    kind: Kind,
    /// The month the trial starts in (the rollover kinds roll over into the next).
    month: Ym,
    rng: Rng,
    d: Daemon,
    sim: CentreSim,
    sim_keys: Vec<String>,
    sim_extra: Vec<String>,
    /// `--fail-rate` and `--delay-ms`, given while `faults` holds.
    sim_faults: Vec<String>,
    faults: bool,
    /// The simulator's clock offset (kept equal to the node's across clock jumps).
    sim_offset: i64,
    sim_up: bool,
    clients: Vec<Client>,
    tag: String,
    outage: Option<Outage>,
    report: Report,
    /// The last snapshot taken after a kill.
    kill_snap: Option<Snap>,
    db_poll: Option<rusqlite::Connection>,
    mark: Instant,
}

fn run_trial(seed: u64) -> Report {
    let mut t = Trial::setup(seed);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.run()));
    if let Err(e) = r {
        t.keep_files();
        std::panic::resume_unwind(e);
    }
    t.report
}

impl Trial {
    fn setup(seed: u64) -> Trial {
        let mut rng = Rng::new(seed);
        let kind = KINDS[(seed % KINDS.len() as u64) as usize];
        let outage = (seed / KINDS.len() as u64).is_multiple_of(4).then(|| Outage {
            start: Duration::from_millis(rng.range(200, 900)),
            len: Duration::from_millis(rng.range(4_000, 7_000)),
            began: None,
            over: false,
        });
        let m = real_month();
        let day = rng.range(3, 25) as u8;
        // Node time at the start of the setup.
        let t0 = match kind {
            Kind::Load | Kind::DayCloseCatchUp => at(m, day, rng.range(9, 20) as u8, 0),
            Kind::Rollover | Kind::RolloverCatchUp => cal().month_start(m.next()) - 600,
            Kind::DayClose => at(m, day, 0, 30) - 32 * 60,
        };
        let offset = t0 - now_unix();
        let keys: Vec<String> = (0..4).map(|i| if i == 0 { CENTRE_KEY.to_string() } else { rng.hex(48) }).collect();
        let fail_rate = [0.0, 0.03, 0.1, 0.2][rng.below(4) as usize];
        let delay_ms = [0, 2, 10, 25][rng.below(4) as usize];
        let cfg = format!(
            "[sync]\nbatch_max_records = {}\nflush_interval_ms = {}\nretry_max_s = 1\ncentre_timeout_ms = 2000\ndead_letter_after_h = 240\n",
            rng.range(5, 200),
            rng.range(50, 300)
        );
        let sim_addr = format!("127.0.0.1:{}", free_port());
        let sim_keys: Vec<String> = keys.iter().flat_map(|k| ["--key".to_string(), k.clone()]).collect();
        let sim_extra: Vec<String> = vec!["--sp-key".into(), format!("{SP_ID}:{SP_KEY}")];
        let sim_faults: Vec<String> = vec!["--fail-rate".into(), fail_rate.to_string(), "--delay-ms".into(), delay_ms.to_string()];
        let sim = {
            let mut e = sim_extra.clone();
            e.extend(sim_faults.iter().cloned());
            e.extend(["--time-offset-s".to_string(), offset.to_string()]);
            let k: Vec<&str> = sim_keys.iter().map(String::as_str).collect();
            let e: Vec<&str> = e.iter().map(String::as_str).collect();
            CentreSim::start_keys(&sim_addr, &k, &e)
        };
        let d = Daemon::start_at(offset, &cfg);
        let file = d.dir.path().join("catalog.toml");
        std::fs::write(&file, catalog()).unwrap();
        d.ok(&["catalog", "import", file.to_str().unwrap()]);
        let sp_url = format!("http://{sim_addr}/sp");
        let centre_url = format!("http://{sim_addr}/centre");
        d.ok(&["peer", "add", "--id", SP_ID, "--kind", "sp", "--key", SP_KEY, "--url", &sp_url, "--return-url", "http://sp.example/"]);
        d.ok(&["peer", "add", "--id", BSS_ID, "--kind", "bss", "--key", BSS_KEY]);
        d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &centre_url]);
        d.ok(&["peer", "add", "--id", NAT_SP, "--kind", "sp", "--key", NAT_SP_KEY]);
        // The daemon's peer cache refreshes every second.
        std::thread::sleep(Duration::from_millis(1100));
        let mut approve = vec![(NAT_PERUSE.0.to_string(), "游戏单次".to_string(), "1", "300".to_string()), (NAT_MONTHLY.to_string(), "游戏包月".to_string(), "2", "800".to_string())];
        approve.extend(NAT_BULK.iter().map(|i| (i.to_string(), item_name(i), "2", monthly_price(i).to_string())));
        for (item, name, fee_type, price) in &approve {
            let (item, name, fee_type, price) = (item.as_str(), name.as_str(), *fee_type, price.as_str());
            let f = [
                ("SrcDeviceNo", CENTRE_ID), ("ActionType", "1"), ("SPID", NAT_SP), ("SPProvinceID", "00"), ("ServiceID", NAT_SVC),
                ("ServiceItemID", item), ("ServiceItemName", name), ("FeeType", fee_type), ("Price", price),
            ];
            let r = try_call(&d.addr(), VNET, "RoamServiceNotify", CENTRE_KEY, &f, &ts(offset)).unwrap();
            assert_eq!(r.result(), 0, "RoamServiceNotify: {:?}", r.fields);
        }
        let owners = rng.range(3, 5) as usize;
        let clients: Vec<Client> = (0..=owners).map(|i| Client::new(i, i == owners, rng.fork(i as u64), keys.clone())).collect();
        let tag = format!("x{:x}", seed & 0xFFFFFF);
        let report = Report { seed, kind: Some(kind), fail_rate, ..Report::default() };
        eprintln!(
            "chaos: seed {seed:#x}: {kind:?}, {owners} owner clients and the centre, fail rate {fail_rate}, delay {delay_ms} ms, {}, outage {:?}, node time {}",
            cfg.replace('\n', " "),
            outage.as_ref().map(|o| (o.start, o.len)),
            cal().ts(t0)
        );
        Trial {
            seed,
            kind,
            month: m,
            rng,
            d,
            sim,
            sim_keys,
            sim_extra,
            sim_faults,
            faults: true,
            sim_offset: offset,
            sim_up: true,
            clients,
            tag,
            outage,
            report,
            kill_snap: None,
            db_poll: None,
            mark: Instant::now(),
        }
    }

    /// Record the time since the last phase ended.
    fn phase(&mut self, name: &'static str) {
        self.report.phases.push((name, self.mark.elapsed().as_secs_f64()));
        self.mark = Instant::now();
    }

    fn ctx(&self, stop: &Arc<AtomicBool>) -> Ctx {
        Ctx { addr: self.d.addr(), offset_s: self.d.offset_s, stop: stop.clone(), tag: self.tag.clone() }
    }

    fn node_now(&self) -> i64 {
        now_unix() + self.d.offset_s
    }

    /// Run every client's `f` on its own thread.
    fn on_clients<F: Fn(&mut Client, &Ctx) + Send + Sync + 'static>(&mut self, stop: &Arc<AtomicBool>, f: F) -> Vec<std::thread::JoinHandle<Client>> {
        let ctx = Arc::new(self.ctx(stop));
        let f = Arc::new(f);
        std::mem::take(&mut self.clients)
            .into_iter()
            .map(|mut c| {
                let (ctx, f) = (ctx.clone(), f.clone());
                std::thread::spawn(move || {
                    f(&mut c, &ctx);
                    c
                })
            })
            .collect()
    }

    fn join(&mut self, threads: Vec<std::thread::JoinHandle<Client>>) {
        self.clients = threads.into_iter().map(|h| h.join().expect("client thread")).collect();
        self.clients.sort_by_key(|c| c.id);
    }

    fn run(&mut self) {
        // Setup: users (and for the rollover, a data set of orders big enough for several of its
        // transactions), then the clock where the trial wants it.
        let stop = Arc::new(AtomicBool::new(false));
        let orders = matches!(self.kind, Kind::Rollover | Kind::RolloverCatchUp);
        // 1,000 national orders and the load's: the rollover takes three of its 500-order
        // transactions.
        let owners = self.clients.len() - 1;
        let users = if orders { 1000usize.div_ceil(12 * owners) } else { 4 };
        let h = self.on_clients(&stop, move |c, ctx| c.setup(ctx, if c.centre { 3 } else { users }, orders));
        self.join(h);
        self.assert_no_anomalies("setup");
        match self.kind {
            Kind::Rollover => {
                let boundary = cal().month_start(self.month.next());
                // The restart takes a second or less: the boundary passes about a second into the load.
                self.jump(boundary - 2 - now_unix());
            }
            Kind::DayClose => {
                // The setup ran at 23:58 of the day before.
                let d = cal().date8(self.node_now() + 3600);
                let close = cal().day_start(&d).unwrap() + 30 * 60;
                self.jump(close - 2 - now_unix());
            }
            _ => {}
        }
        self.phase("setup");

        // The load and the kill.
        match self.kind {
            Kind::Load | Kind::RolloverCatchUp | Kind::DayCloseCatchUp => {
                let l = Duration::from_millis(self.rng.range(400, 1800));
                let started = Instant::now();
                self.load_until(|_| started.elapsed() >= l);
            }
            Kind::Rollover => {
                let month = self.month.next();
                let deadline = Instant::now() + Duration::from_secs(30);
                self.load_until(|t| Instant::now() >= deadline || t.rollover_seen(month));
                self.report.n.rollover_kills += 1;
            }
            Kind::DayClose => {
                let d = cal().date8(self.node_now() + 600);
                let close = cal().day_start(&d).unwrap() + 30 * 60;
                // The job thread looks once a second: the close commits within ~1 s of 00:30:00.
                let real = close - self.d.offset_s;
                let at = std::time::UNIX_EPOCH + Duration::from_secs(real as u64) + Duration::from_millis(self.rng.range(0, 1600));
                self.load_until(|_| std::time::SystemTime::now() >= at);
                self.report.n.day_close_kills += 1;
            }
        }
        self.after_kill(true);
        if self.kind == Kind::DayClose {
            let closed = self.kill_snap.as_ref().unwrap().jobs.get("closed_through").cloned().unwrap_or_default();
            let yesterday = cal().date8(self.node_now() - 86_400);
            if closed >= yesterday {
                self.report.n.day_close_after += 1;
            } else {
                self.report.n.day_close_before += 1;
            }
        }
        self.phase("load+kill");

        // The catch-up kinds: restart later, killed again during the start-up catch-up.
        match self.kind {
            Kind::RolloverCatchUp => {
                let boundary = cal().month_start(self.month.next());
                let target = boundary + self.rng.range(2, 120) as i64;
                let month = cal().month(target);
                self.restart_unready(target - now_unix());
                self.kill_when(|t| t.rollover_seen(month));
                self.report.n.rollover_kills += 1;
                self.after_kill(false);
            }
            Kind::DayCloseCatchUp => {
                let days = self.rng.range(2, 4) as i64;
                let target = self.node_now() + days * 86_400 + self.rng.range(0, 6 * 3600) as i64;
                let due = vnetd::jobs::last_due_day(cal(), target, 30);
                let first = self.kill_snap.as_ref().unwrap().jobs.get("closed_through").cloned().unwrap_or_default();
                self.restart_unready(target - now_unix());
                self.kill_when(|t| t.closed_through().is_some_and(|c| c > first));
                self.after_kill(false);
                let closed = self.kill_snap.as_ref().unwrap().jobs.get("closed_through").cloned().unwrap_or_default();
                self.report.n.day_close_kills += 1;
                if closed > first && closed < due {
                    self.report.n.day_close_kills_between += 1;
                }
            }
            _ => {}
        }
        self.phase("catch-up kill");

        // Restart, settle every request, let the outage end, drain, check everything.
        self.d.start_again();
        self.phase("restart");
        self.settle();
        self.phase("repeats");
        self.end_outage();
        self.phase("outage");
        self.drain();
        self.phase("drain");
        self.final_check();
        self.phase("check");
    }

    // ------------------------------------------------------------ the clock and the processes

    /// Move the node's clock to `offset` (stopped gracefully, setup only) and the centre's with it.
    fn jump(&mut self, offset: i64) {
        self.d.stop();
        self.move_sim_clock(offset);
        self.d.restart_with_offset(offset);
    }

    /// After a kill: start again with the clock at `offset`, not waiting until it is healthy.
    fn restart_unready(&mut self, offset: i64) {
        self.move_sim_clock(offset);
        self.db_poll = None;
        self.d.start_unready_with_offset(offset);
    }

    /// The centre's clock follows the node's (its TimeStamp check is ±300 s): killed and started
    /// again with the new offset, unless it is down for an outage (it comes back with it).
    fn move_sim_clock(&mut self, offset: i64) {
        self.sim_offset = offset;
        if self.sim_up {
            self.sim.kill9();
            self.report.n.centre_kills += 1;
            self.start_sim();
        }
    }

    fn start_sim(&mut self) {
        let mut e = self.sim_extra.clone();
        if self.faults {
            e.extend(self.sim_faults.iter().cloned());
        }
        e.extend(["--time-offset-s".to_string(), self.sim_offset.to_string()]);
        let k: Vec<&str> = self.sim_keys.iter().map(String::as_str).collect();
        let e: Vec<&str> = e.iter().map(String::as_str).collect();
        self.sim.restart(&k, &e);
        self.sim_up = true;
    }

    /// Begin or end the outage when its time has come (`since`: the start of the load).
    fn outage_tick(&mut self, since: Instant) {
        let Some(o) = &mut self.outage else { return };
        if o.began.is_none() && since.elapsed() >= o.start {
            o.began = Some(Instant::now());
            self.sim.kill9();
            self.sim_up = false;
            self.report.n.centre_kills += 1;
        }
    }

    /// Wait for the end of the outage, if one is on, and bring the centre back.
    fn end_outage(&mut self) {
        let Some(o) = &mut self.outage else { return };
        let Some(began) = o.began else { return };
        if o.over {
            return;
        }
        let end = began + o.len;
        if let Some(wait) = end.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        o.over = true;
        self.report.n.outages += 1;
        self.report.n.outage_s += began.elapsed().as_secs_f64();
        self.start_sim();
    }

    /// The mixed load until `kill_now` (polled every few ms) says so; then SIGKILL.
    fn load_until(&mut self, mut kill_now: impl FnMut(&mut Trial) -> bool) {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = self.on_clients(&stop, |c, ctx| c.run(ctx));
        let since = Instant::now();
        loop {
            self.outage_tick(since);
            if kill_now(self) {
                break;
            }
            if let Some(st) = self.d.child.as_mut().and_then(|c| c.try_wait()) {
                stop.store(true, Ordering::SeqCst);
                panic!("the daemon exited by itself ({st}) during the load; log:\n{}", tail(&self.d.log(), 60));
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        // Errors from here on are expected: the flag goes up just before the kill.
        stop.store(true, Ordering::SeqCst);
        self.d.kill9();
        self.report.n.kills += 1;
        self.join(threads);
        self.assert_no_anomalies("load");
    }

    /// Poll `cond` while the daemon starts (and catches up); SIGKILL when it holds, when the
    /// daemon is healthy, or after 30 s.
    fn kill_when(&mut self, mut cond: impl FnMut(&mut Trial) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let healthy_addr = format!("127.0.0.1:{}", self.d.admin_port);
        let mut polls = 0u32;
        loop {
            if cond(self) || Instant::now() >= deadline {
                break;
            }
            polls += 1;
            // Once in a while: serving already means the catch-up is over.
            if polls.is_multiple_of(50) && std::net::TcpStream::connect(&healthy_addr).is_ok() {
                break;
            }
            if let Some(st) = self.d.child.as_mut().and_then(|c| c.try_wait()) {
                panic!("the daemon exited by itself ({st}) during its start-up; log:\n{}", tail(&self.d.log(), 60));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.d.kill9();
        self.report.n.kills += 1;
    }

    fn poll_conn(&mut self) -> Option<&rusqlite::Connection> {
        if self.db_poll.is_none() && self.d.db.exists() {
            self.db_poll = rusqlite::Connection::open_with_flags(&self.d.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok();
            if let Some(c) = &self.db_poll {
                let _ = c.busy_timeout(Duration::from_millis(200));
            }
        }
        self.db_poll.as_ref()
    }

    /// Has the rollover into `month` begun (some orders rolled over, or its marker set)?
    fn rollover_seen(&mut self, month: Ym) -> bool {
        let start = cal().month_start(month);
        let Some(c) = self.poll_conn() else { return false };
        let r = c.query_row(
            "SELECT (SELECT value FROM job_state WHERE name = 'rolled_over_month'),
                    (SELECT count(*) FROM charge WHERE operation = 'Renewal') + (SELECT count(*) FROM orders WHERE status = 'expired' AND end_at < ?1)",
            [start],
            |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)),
        );
        match r {
            Ok((marker, n)) => n > 0 || marker.as_deref() == Some(month.to_string().as_str()),
            Err(_) => false,
        }
    }

    fn closed_through(&mut self) -> Option<String> {
        let c = self.poll_conn()?;
        c.query_row("SELECT value FROM job_state WHERE name = 'closed_through'", [], |r| r.get(0)).ok()
    }

    // ------------------------------------------------------------ checks

    fn assert_no_anomalies(&self, phase: &str) {
        let a: Vec<&String> = self.clients.iter().flat_map(|c| &c.anomalies).collect();
        assert!(a.is_empty(), "{phase}: {} wrong answers:\n{}", a.len(), a.iter().take(20).map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
    }

    fn entries(&self) -> Vec<Entry> {
        self.clients.iter().flat_map(|c| c.entries.iter().cloned()).collect()
    }

    /// The daemon is dead: check its database as the kill left it, and the centre's.
    fn after_kill(&mut self, sso: bool) {
        self.db_poll = None;
        let ok = check::integrity(&self.d.db);
        assert_eq!(ok, "ok", "PRAGMA integrity_check after the kill");
        let snap = snapshot(&self.d.db);
        let x = Expect { settled: false, sso, caught_up_at: None };
        let entries = self.entries();
        let mut problems = check_node(&snap, &entries, &self.clients, &x, cal());
        let (p, _) = check_centre(&self.sim.db, &snap, false);
        problems.extend(p);
        if let (Kind::Rollover | Kind::RolloverCatchUp, Some(m)) = (self.kind, self.rollover_month()) {
            let start = cal().month_start(m);
            let marker = snap.jobs.get("rolled_over_month").cloned().unwrap_or_default();
            let n = snap.charges.values().filter(|c| c.operation == "Renewal").count()
                + snap.orders.values().filter(|o| o.status == "expired" && o.end_at < start).count();
            if n > 0 && marker != m.to_string() {
                self.report.n.rollover_kills_inside += 1;
            }
        }
        self.fail_on(problems, "after the kill");
        self.kill_snap = Some(snap);
    }

    fn rollover_month(&self) -> Option<Ym> {
        matches!(self.kind, Kind::Rollover | Kind::RolloverCatchUp).then(|| self.month.next())
    }

    fn fail_on(&self, problems: Vec<String>, when: &str) {
        if !problems.is_empty() {
            panic!(
                "{when}: {} problems:\n{}\ndaemon log tail:\n{}",
                problems.len(),
                problems.iter().take(25).cloned().collect::<Vec<_>>().join("\n"),
                tail(&self.d.log(), 40)
            );
        }
    }

    /// Repeat every idempotent request (each client's in its order, the clients in parallel): an
    /// answered one must answer the same; an unanswered one that committed (its idempotency
    /// record is in the snapshot taken after the kill) must answer its stored response; one that
    /// did not runs afresh now. A KeyUpdate without an answer is settled from the key versions.
    /// Then every user's password (UserAuth) and the centre's key (GetUserinfo) must work.
    fn settle(&mut self) {
        let snap = self.kill_snap.take().expect("a snapshot after the kill");
        let snap = Arc::new(snap);
        let ctx = Arc::new(self.ctx(&Arc::new(AtomicBool::new(false))));
        let threads: Vec<_> = std::mem::take(&mut self.clients)
            .into_iter()
            .map(|mut c| {
                let (snap, ctx) = (snap.clone(), ctx.clone());
                std::thread::spawn(move || {
                    let p = settle_client(&mut c, &ctx, &snap);
                    (c, p)
                })
            })
            .collect();
        let mut problems = Vec::new();
        for h in threads {
            let (c, p) = h.join().expect("settle thread");
            self.clients.push(c);
            problems.extend(p);
        }
        self.clients.sort_by_key(|c| c.id);
        self.fail_on(problems, "repeating the requests after the restart");
        self.assert_no_anomalies("after the restart");
        for e in self.clients.iter().flat_map(|c| &c.entries) {
            match e.settled {
                load::Settled::Committed => self.report.n.committed_unanswered += 1,
                load::Settled::RanAfresh => self.report.n.ran_afresh += 1,
                _ => {}
            }
        }
    }

    /// Wait until the outbox is empty. The centre keeps failing and delaying for up to
    /// `FAULTY_DRAIN`; then it recovers (restarted gracefully without faults), so that one
    /// ordering key's queue behind a flaky peer (one message at a time, a second or more after
    /// each failure) does not make a trial last minutes.
    fn drain(&mut self) {
        const FAULTY_DRAIN: Duration = Duration::from_secs(2);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        loop {
            let pending: i64 = check::open_ro(&self.d.db).query_row("SELECT count(*) FROM outbox WHERE state = 'pending'", [], |r| r.get(0)).unwrap();
            if pending == 0 {
                break;
            }
            if self.faults && started.elapsed() >= FAULTY_DRAIN {
                self.faults = false;
                self.report.recovered = true;
                self.sim.stop();
                self.start_sim();
            }
            assert!(Instant::now() < deadline, "the outbox did not drain in 120 s: {pending} pending; log tail:\n{}", tail(&self.d.log(), 30));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn final_check(&mut self) {
        let ok = check::integrity(&self.d.db);
        assert_eq!(ok, "ok", "PRAGMA integrity_check at the end");
        let out = self.d.cli(&["ledger", "verify"]);
        assert!(out.status.success(), "ledger verify: {}{}", stdout(&out), stderr(&out));
        let snap = snapshot(&self.d.db);
        let entries = self.entries();
        let x = Expect { settled: true, sso: false, caught_up_at: Some(self.node_now()) };
        let mut problems = check_node(&snap, &entries, &self.clients, &x, cal());
        let (p, seen) = check_centre(&self.sim.db, &snap, true);
        problems.extend(p);
        self.fail_on(problems, "at the end");
        self.report.seen = seen;
        self.report.max_attempts = snap.outbox.iter().map(|o| o.attempts).max().unwrap_or(0);
        for e in &entries {
            match &e.outcome {
                Outcome::Answered(a) if result_of(a) == 0 && !matches!(e.what, What::UserAuth | What::Probe | What::TicketValidate) => {
                    *self.report.n.acked.entry(e.what.name()).or_default() += 1
                }
                Outcome::Answered(_) => self.report.n.refused += 1,
                Outcome::Unanswered(_) => {}
            }
            if e.settled != load::Settled::No {
                self.report.n.unanswered += 1;
            }
            if e.idempotent() {
                self.report.n.repeats += 1;
            }
        }
    }

    /// Keep the daemon's and the centre's files of a failed trial under target/tmp/chaos-<seed>.
    fn keep_files(&mut self) {
        self.d.kill9();
        self.sim.kill9();
        let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{:x}", self.seed));
        let _ = std::fs::remove_dir_all(&dest);
        copy_dir(self.d.dir.path(), &dest.join("node"));
        copy_dir(self.sim.dir(), &dest.join("centre"));
        eprintln!("chaos: the files of the failed trial are in {}", dest.display());
    }
}

/// Repeat a client's requests in order (see `Trial::settle`); returns the problems found.
fn settle_client(c: &mut Client, ctx: &Ctx, snap: &Snap) -> Vec<String> {
    let mut p = Vec::new();
    for i in 0..c.entries.len() {
        let e = c.entries[i].clone();
        match (&e.what, &e.outcome) {
            (What::KeyUpdate { key }, Outcome::Unanswered(_)) => {
                if snap.centre_keys.contains(key) {
                    c.key += 1;
                    c.entries[i].settled = load::Settled::Committed;
                    c.entries[i].outcome = Outcome::Answered([("Result".to_string(), "0".to_string())].into_iter().collect());
                } else {
                    c.entries[i].settled = load::Settled::Lost;
                }
                continue;
            }
            (_, Outcome::Unanswered(_)) if !e.idempotent() => {
                c.entries[i].settled = load::Settled::Lost;
                continue;
            }
            _ if !e.idempotent() => continue,
            _ => {}
        }
        let mut req = e.req.clone().unwrap();
        if let Signer::Centre(_) = req.signer {
            req.signer = Signer::Centre(c.centre_key());
        }
        let again = match req.send(&ctx.addr, ctx.offset_s) {
            Ok(a) => a,
            Err(err) => {
                p.push(format!("{}: the repeat got no answer: {err}", e.describe()));
                return p;
            }
        };
        match &e.outcome {
            Outcome::Answered(first) => {
                if &again != first {
                    p.push(format!("{}: the repeat answered {again:?}, first {first:?}", e.describe()));
                }
            }
            Outcome::Unanswered(_) => {
                let key = (req.caller().to_string(), req.op.to_string(), req.tx().to_string());
                match snap.idem.get(&key) {
                    Some(stored) => {
                        if !same_answer(&again, stored) {
                            p.push(format!("{}: committed before the kill with {stored:?}, its repeat answered {again:?}", e.describe()));
                        }
                        c.entries[i].settled = load::Settled::Committed;
                    }
                    None => c.entries[i].settled = load::Settled::RanAfresh,
                }
                if result_of(&again) == 0 {
                    match &e.what {
                        What::UserOpen { account, password } => {
                            c.users.push(User { id: again["VNetUserID"].clone(), account: account.clone(), password: password.clone(), ordered: Vec::new() })
                        }
                        What::PasswordReset { user, password } => {
                            if let Some(u) = c.users.iter_mut().find(|u| &u.id == user) {
                                u.password = password.clone();
                            }
                        }
                        _ => {}
                    }
                }
                c.entries[i].outcome = Outcome::Answered(again);
            }
        }
    }
    // The last KeyUpdate in effect, again: a no-op answering 0 (spec 11).
    if c.centre && c.key > 0 {
        let k = c.centre_key();
        match key_update_req(&k, &k).send(&ctx.addr, ctx.offset_s) {
            Ok(a) if result_of(&a) == 0 => {}
            other => p.push(format!("the repeat of the KeyUpdate in effect answered {other:?}")),
        }
    }
    // Every user's password, and the centre's key, as the ledger has them.
    c.verify_credentials(ctx);
    p
}

/// An answer and a stored response agree: the same values, where the stored response leaves out
/// the fields the answer carries empty (spec 11: every element is sent, empty when unset).
fn same_answer(answer: &Answer, stored: &Answer) -> bool {
    let set = |a: &Answer| a.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect::<Answer>();
    set(answer) == set(stored)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    let Ok(rd) = std::fs::read_dir(from) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            let _ = std::fs::copy(&p, to.join(e.file_name()));
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
