//! The data set of `vnetd bench scale`: a province of N users (CSV through `vnetd user import`),
//! orders for a share of them and a history of charges (through the daemon's own billing code,
//! in large transactions: real order and charge rows, credit, the ledger chain, the outbox
//! records), deterministic for a given N.

use super::*;
use crate::domain::billing::{self as bl, Channel, Kind, WriteCtx};
use crate::domain::calendar::Cal;
use std::io::IsTerminal;
use std::path::Path;

/// The scale catalogue: the bench SP with a per-use item and four monthly items (prices in fen).
pub(super) const PER_USE_PRICE: i64 = 100;
const MONTHLY_PRICES: [i64; 4] = [500, 1000, 1500, 3000];
/// Days of charge history before now.
pub(super) const HISTORY_DAYS: i64 = 60;
/// Events (charges and orders) per write transaction while generating. The writer runs each job
/// in a SAVEPOINT; in memory, its sub-journal made a job's cost grow with the square of the pages
/// it changes (each statement's release walks the journal from its start): 10,000 events of
/// random users of a 1 GB database ran at ~150 events/s. `Store::open_bulk` spills it to a file;
/// with it and a large cache, 500 events per job run at ~7,500 events/s on 10 M users (was
/// ~4,200 in memory with a 2 MB cache).
const EVENTS_PER_TX: usize = 500;
/// Delivered outbox records older than the retention deleted per transaction: more than it adds,
/// so a backlog (a history resumed by an older generator) shrinks too.
const PRUNE_PER_TX: i64 = 4 * EVENTS_PER_TX as i64;
/// A prime that divides no size of 10^k: order j goes to user (j × ORDER_STRIDE) mod N, each
/// user at most once.
const ORDER_STRIDE: u64 = 1_000_003;

/// SplitMix64: the generator's deterministic "random" numbers.
pub(super) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// User `i`'s account type and account. Shares: 45 % broadband PPPoE (01), 10 % LAN (02),
/// 25 % fixed line (03), 5 % PassPort alias (04), 15 % mobile (09); unique for i < 10^8.
pub(super) fn account(i: u64) -> (&'static str, String) {
    match mix(i ^ 0xACC0) % 100 {
        0..=44 => ("01", format!("ad{i:09}")),
        45..=54 => ("02", format!("lan{i:09}")),
        55..=79 => ("03", format!("0591{i:08}")),
        80..=84 => ("04", format!("pp{i:09}")),
        _ => ("09", format!("13{i:09}")),
    }
}

/// User `i`'s VNetUserID: the import gives the CSV's rows the sequence in order (an empty database).
pub(super) fn user_id(province: &str, i: u64) -> String {
    format!("{province}{:010}", i + 1)
}

/// Every `stride`-th user has a password (`password(i)`).
pub(super) fn password_stride(n: u64, passwords: u64) -> u64 {
    (n / passwords.max(1)).max(1)
}

pub(super) fn password(i: u64) -> String {
    format!("Sc4le-{i}")
}

/// The scale catalogue as `catalog import` TOML.
pub(super) fn catalogue() -> String {
    let mut toml = format!(
        "[[sp]]\nspid = \"{SP_ID}\"\nname = \"scale SP\"\nscope = \"province\"\noffline_payment = true\nroam_out = false\n\n\
         [[service]]\nservice_id = \"{SERVICE_ID}\"\nspid = \"{SP_ID}\"\nname = \"scale service\"\nstatus = \"active\"\n\n\
         [[item]]\nservice_item_id = \"{PER_USE_ITEM}\"\nservice_id = \"{SERVICE_ID}\"\nname = \"per use\"\nfee_type = \"1\"\nprice = {PER_USE_PRICE}\nstatus = \"active\"\n"
    );
    for (i, (item, price)) in MONTHLY_ITEMS.iter().zip(MONTHLY_PRICES).enumerate() {
        toml.push_str(&format!(
            "\n[[item]]\nservice_item_id = \"{item}\"\nservice_id = \"{SERVICE_ID}\"\nname = \"monthly {i}\"\nfee_type = \"2\"\nprice = {price}\nstatus = \"active\"\n"
        ));
    }
    toml
}

/// Write the users `from..to` as an import CSV (with the password column) to `path`.
pub(super) fn write_csv(path: &Path, from: u64, to: u64, stride: u64) -> std::io::Result<()> {
    const CITIES: [&str; 9] = ["0591", "0592", "0593", "0594", "0595", "0596", "0597", "0598", "0599"];
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "{},password", crate::cli::user::CSV_HEADER)?;
    for i in from..to {
        let (at, acct) = account(i);
        let r = mix(i ^ 0x5EED);
        let city = CITIES[(r % 9) as usize];
        // A quarter prepaid (a balance), the rest postpaid (a monthly credit limit).
        let (utype, credit, balance) = if r.is_multiple_of(4) { ("2", "", "50000") } else { ("1", ["50000", "100000", "200000"][(r >> 8) as usize % 3], "") };
        let alias = if (r >> 16).is_multiple_of(10) { format!("al{i}") } else { String::new() };
        let binding = if at == "01" && (r >> 24).is_multiple_of(5) { format!("0591{i:08}") } else { String::new() };
        let pw = if i % stride == 0 { password(i) } else { String::new() };
        writeln!(out, "{at},{acct},{city},{utype},{credit},{balance},{alias},{binding},{pw}")?;
    }
    out.flush()
}

/// The first of `0..count` that `present` says is not there, when the present ones come first
/// (what an interrupted generator made: it made them in order). A binary search.
pub(super) fn first_absent(count: u64, mut present: impl FnMut(u64) -> Result<bool, Failed>) -> Result<u64, Failed> {
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if present(mid)? {
            lo = mid + 1
        } else {
            hi = mid
        }
    }
    Ok(lo)
}

/// What the history holds, for the report.
#[derive(Default, Clone, Copy)]
pub(super) struct History {
    pub charges: u64,
    pub orders: u64,
    /// Charges and orders the billing rules refused (credit): not written.
    pub refused: u64,
    pub outbox_kept: u64,
    /// Events made by an earlier run (this one resumed after them).
    pub resumed: u64,
    pub secs: f64,
}

impl History {
    /// Charges and orders made by this run (not by the one it resumed after).
    pub fn made_now(&self) -> u64 {
        self.charges + self.orders - self.resumed
    }
}

/// One event of the history at unix time `at`.
#[derive(Clone, Copy)]
enum Event {
    Charge { k: u64, at: i64 },
    Order { j: u64, at: i64 },
}

/// `count` times evenly spread over [from, to).
fn spread(k: u64, count: u64, from: i64, to: i64) -> i64 {
    from + ((to - from).max(1) as u128 * k as u128 / count.max(1) as u128) as i64
}

/// Orders for `orders` users (monthly items, 90 % renewing, placed in this month so far) and
/// `charges` per-use charges of random users over the last HISTORY_DAYS, in time order, through
/// the daemon's billing code (`bl::order`, `bl::charge`) in transactions of EVENTS_PER_TX events;
/// the outbox records they make are delivered (`deliver_all_pending`: the centre acknowledged
/// them) and, as housekeeping would, those older than `outbox_days` pruned.
pub(super) fn history(store: &crate::store::Store, cfg: &Config, n: u64, charges: u64, orders: u64, outbox_days: i64) -> Result<History, Failed> {
    let started = Instant::now();
    let clock = cfg.clock();
    let cal = Cal::new(clock.tz());
    let province = cfg.node.province_id.clone();
    let now = clock.unix();
    let end = now - 600;
    let charge_from = end - HISTORY_DAYS * 86_400;
    let order_from = cal.month_start(cal.month(end)).max(charge_from).min(end - 1);
    let orders = orders.min(n);
    // A history interrupted goes on after the last event committed: events are made in one
    // deterministic order, each batch commits whole, and every charge (an order's too) carries
    // its event's TransactionID (GC<k>, GO<j>), so the first ones missing are where to go on.
    // (A charge refused for credit leaves a gap that would stop this search early; the data sets
    // have none.)
    let first_missing = |prefix: &'static str, count: u64| {
        first_absent(count, |i| {
            let txid = format!("{prefix}{i:012}");
            store.read(|tx| crate::store::charges::txid_taken(tx, SP_ID, &txid)).map_err(|e| Failed(e.to_string()))
        })
    };
    // Housekeeping's retention, here shorter than the daemon's (disk): what was delivered before
    // the last `outbox_days` days goes.
    let cutoff = now - outbox_days * 86_400;
    let (mut k, mut j) = (first_missing("GC", charges)?, first_missing("GO", orders)?);
    if k + j > 0 {
        eprintln!("  resuming the history after {k} charges and {j} orders");
    }
    let mut out = History { charges: k, orders: j, resumed: k + j, ..Default::default() };
    let progress = std::io::stderr().is_terminal();
    while k < charges || j < orders {
        let mut batch = Vec::with_capacity(EVENTS_PER_TX);
        while batch.len() < EVENTS_PER_TX && (k < charges || j < orders) {
            let tc = (k < charges).then(|| spread(k, charges, charge_from, end));
            let to = (j < orders).then(|| spread(j, orders, order_from, end));
            match (tc, to) {
                (Some(a), Some(b)) if b < a => {
                    batch.push(Event::Order { j, at: b });
                    j += 1;
                }
                (Some(a), _) => {
                    batch.push(Event::Charge { k, at: a });
                    k += 1;
                }
                (None, Some(b)) => {
                    batch.push(Event::Order { j, at: b });
                    j += 1;
                }
                (None, None) => break,
            }
        }
        let province = province.clone();
        let (written, refused) = store
            .write(move |tx| {
                let (mut written, mut refused) = ((0u64, 0u64), 0u64);
                let mut last_at = 0;
                for e in &batch {
                    let (at, req) = match *e {
                        Event::Charge { k, at } => {
                            let user = user_id(&province, mix(k ^ 0xC4A6) % n);
                            (at, bl::Req { kind: Kind::Charge, channel: Channel::Sp, spid: SP_ID.into(), service_id: SERVICE_ID.into(), item_id: Some(PER_USE_ITEM.into()), product_id: None, user_id: user })
                        }
                        Event::Order { j, at } => {
                            let user = user_id(&province, (j * ORDER_STRIDE) % n);
                            let item = MONTHLY_ITEMS[(j % MONTHLY_ITEMS.len() as u64) as usize];
                            (at, bl::Req { kind: Kind::Order, channel: Channel::Sp, spid: SP_ID.into(), service_id: SERVICE_ID.into(), item_id: Some(item.into()), product_id: None, user_id: user })
                        }
                    };
                    last_at = at;
                    let ctx = WriteCtx::new(tx, cal, &province, at);
                    let t = match bl::resolve(&ctx, &req)? {
                        Ok(t) if t.user.is_some() => t,
                        _ => return Err(crate::store::DbError::Other(format!("generated user {} is not a local user of the catalogue", req.user_id))),
                    };
                    let ok = match *e {
                        Event::Charge { k, .. } => {
                            let batch_count = 1 + (mix(k ^ 0xBA7C) % 3) as i64;
                            #[allow(clippy::needless_update)]
                            let r = crate::spec::incoming::Charge::Request {
                                SPID: SP_ID.into(),
                                ServiceID: SERVICE_ID.into(),
                                ServiceItemID: PER_USE_ITEM.into(),
                                VNetUserID: req.user_id.clone(),
                                Fee: (PER_USE_PRICE * batch_count).to_string(),
                                BatchCount: Some(batch_count.to_string()),
                                TransactionID: format!("GC{k:012}"),
                                ..Default::default()
                            };
                            bl::charge(&ctx, &t, &r)?.is_ok().then_some((1, 0))
                        }
                        Event::Order { j, .. } => {
                            let if_extend = !mix(j ^ 0x0BD3).is_multiple_of(10);
                            bl::order(&ctx, &t, Channel::Sp, "", if_extend, &format!("GO{j:012}"))?.is_ok().then_some((0, 1))
                        }
                    };
                    match ok {
                        Some((c, o)) => written = (written.0 + c, written.1 + o),
                        None => refused += 1,
                    }
                }
                // The centre (and SPs) took every record as it was made, and housekeeping
                // prunes what was delivered before the retention (as the daemon's job does, in
                // step: the delivered records of 10 M users' history would fill ~25 GB).
                crate::store::outbox::deliver_all_pending(tx, last_at + 60)?;
                crate::store::outbox::prune_delivered(tx, cutoff, PRUNE_PER_TX)?;
                Ok((written, refused))
            })
            .map_err(|e| Failed(format!("generating the history: {e}")))?;
        out.charges += written.0;
        out.orders += written.1;
        out.refused += refused;
        if progress {
            eprint!("\rhistory: {}/{charges} charges, {}/{orders} orders", out.charges, out.orders);
        }
    }
    if progress {
        eprintln!();
    }
    // What is left of the delivered records older than the retention.
    loop {
        let gone = store.write(move |tx| crate::store::outbox::prune_delivered(tx, cutoff, 20_000)).map_err(|e| Failed(format!("pruning the outbox: {e}")))?;
        if gone < 20_000 {
            break;
        }
    }
    out.outbox_kept = store.read(crate::store::outbox::count_all).map_err(|e| Failed(e.to_string()))? as u64;
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}
