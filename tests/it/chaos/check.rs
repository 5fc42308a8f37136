//! What a chaos trial checks: the node's database (read while the daemon is dead after a kill,
//! and again at the end) against the clients' ledger, and the centre simulator's database against
//! the node's outbox. Every check adds a line to a list of problems; a trial fails with all of them.

use super::load::*;
use crate::harness::*;
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use vnetd::domain::calendar::Cal;

/// The node's state, read in one read transaction.
#[derive(Default)]
pub struct Snap {
    /// (caller, operation, TransactionID) → the stored response (Result, ErrDescription, values).
    pub idem: HashMap<(String, String, String), Answer>,
    pub users: HashMap<String, UserRow>,
    pub orders: BTreeMap<String, OrderRow>,
    /// (SPID, TransactionID) → charge.
    pub charges: HashMap<(String, String), ChargeRow>,
    pub spend: HashMap<(String, String), i64>,
    pub outbox: Vec<Ob>,
    /// The centre's key versions, oldest first.
    pub centre_keys: Vec<String>,
    /// Ticket digest → (user, SPID).
    pub tickets: HashMap<String, (String, String)>,
    /// Session digest → user.
    pub sessions: HashMap<String, String>,
    pub jobs: HashMap<String, String>,
    pub ledger_heads: HashSet<String>,
}

pub struct UserRow {
    pub account: String,
    pub alias: String,
}

pub struct OrderRow {
    pub user: String,
    pub spid: String,
    pub item: String,
    pub if_extend: bool,
    pub status: String,
    pub start_at: i64,
    pub end_at: i64,
    pub created_at: i64,
}

pub struct ChargeRow {
    pub operation: String,
    pub user: String,
    pub fee: i64,
    pub bill_month: String,
    pub ledger_date: String,
    pub roam_type: String,
    pub order_id: String,
    pub service_id: String,
    pub item: String,
}

/// An outbox row.
pub struct Ob {
    pub operation: String,
    pub order_key: String,
    pub payload: Vec<(String, String)>,
    pub state: String,
    pub attempts: i64,
    pub seq: Option<i64>,
}

impl Ob {
    pub fn f(&self, name: &str) -> &str {
        self.payload.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

pub fn open_ro(path: &Path) -> Connection {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

pub fn integrity(path: &Path) -> String {
    let c = open_ro(path);
    let rows: Vec<String> = c.prepare("PRAGMA integrity_check").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    rows.join("; ")
}

fn stored_answer(json: &str) -> Answer {
    let r: vnetd::services::Resp = serde_json::from_str(json).unwrap_or_else(|e| panic!("stored response {json}: {e}"));
    let mut a: Answer = r
        .values
        .into_iter()
        .filter_map(|(k, v)| match v {
            vnetd::spec::Value::Text(t) => Some((k, t)),
            vnetd::spec::Value::List(_) => None,
        })
        .collect();
    a.insert("Result".into(), r.result.to_string());
    a.insert("ErrDescription".into(), r.desc);
    a
}

pub fn snapshot(path: &Path) -> Snap {
    let mut c = open_ro(path);
    let t = c.transaction().unwrap();
    let mut s = Snap::default();
    macro_rules! rows {
        ($sql:expr, |$r:ident| $body:expr) => {{
            let mut st = t.prepare($sql).unwrap();
            let v: Vec<_> = st.query_map([], |$r| Ok($body)).unwrap().map(Result::unwrap).collect();
            v
        }};
    }
    for (k, json) in rows!("SELECT caller, operation, txid, response FROM idempotency", |r| ((r.get(0)?, r.get(1)?, r.get(2)?), r.get::<_, String>(3)?)) {
        s.idem.insert(k, stored_answer(&json));
    }
    for (id, u) in rows!("SELECT vnet_user_id, account, alias FROM user", |r| (r.get::<_, String>(0)?, UserRow { account: r.get(1)?, alias: r.get(2)? })) {
        s.users.insert(id, u);
    }
    for (id, o) in rows!(
        "SELECT order_id, vnet_user_id, spid, service_item_id, if_extend, status, start_at, end_at, created_at FROM orders",
        |r| (
            r.get::<_, String>(0)?,
            OrderRow { user: r.get(1)?, spid: r.get(2)?, item: r.get(3)?, if_extend: r.get::<_, i64>(4)? != 0, status: r.get(5)?, start_at: r.get(6)?, end_at: r.get(7)?, created_at: r.get(8)? }
        )
    ) {
        s.orders.insert(id, o);
    }
    for (k, ch) in rows!(
        "SELECT spid, transaction_id, operation, vnet_user_id, fee, bill_month, ledger_date, roam_type, order_id, service_id, service_item_id FROM charge",
        |r| (
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            ChargeRow {
                operation: r.get(2)?,
                user: r.get(3)?,
                fee: r.get(4)?,
                bill_month: r.get(5)?,
                ledger_date: r.get(6)?,
                roam_type: r.get(7)?,
                order_id: r.get(8)?,
                service_id: r.get(9)?,
                item: r.get(10)?,
            }
        )
    ) {
        s.charges.insert(k, ch);
    }
    for (k, v) in rows!("SELECT vnet_user_id, bill_month, total FROM spend", |r| ((r.get::<_, String>(0)?, r.get::<_, String>(1)?), r.get::<_, i64>(2)?)) {
        s.spend.insert(k, v);
    }
    s.outbox = rows!("SELECT operation, order_key, payload, state, attempts, seq FROM outbox ORDER BY id", |r| {
        let payload: String = r.get(2)?;
        Ob {
            operation: r.get(0)?,
            order_key: r.get(1)?,
            payload: serde_json::from_str(&payload).unwrap_or_else(|e| panic!("outbox payload {payload}: {e}")),
            state: r.get(3)?,
            attempts: r.get(4)?,
            seq: r.get(5)?,
        }
    });
    s.centre_keys = rows!(&format!("SELECT key_hex FROM peer_key WHERE peer_id = '{CENTRE_ID}' ORDER BY version"), |r| r.get::<_, String>(0)?);
    for (h, u, sp) in rows!("SELECT ticket_hash, vnet_user_id, spid FROM sso_ticket", |r| (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)) {
        s.tickets.insert(h, (u, sp));
    }
    for (h, u) in rows!("SELECT id_hash, vnet_user_id FROM sso_session", |r| (r.get::<_, String>(0)?, r.get::<_, String>(1)?)) {
        s.sessions.insert(h, u);
    }
    for (k, v) in rows!("SELECT name, value FROM job_state", |r| (r.get::<_, String>(0)?, r.get::<_, String>(1)?)) {
        s.jobs.insert(k, v);
    }
    s.ledger_heads = rows!("SELECT ledger_date FROM ledger_head", |r| r.get::<_, String>(0)?).into_iter().collect();
    s
}

impl Snap {
    /// The records of a BatchSync stream, by RecordSeq (several rows for one seq is a problem
    /// reported by `check_node`).
    pub fn stream(&self, name: &str) -> Vec<&Ob> {
        let key = format!("stream:{name}");
        let mut v: Vec<&Ob> = self.outbox.iter().filter(|o| o.order_key == key).collect();
        v.sort_by_key(|o| o.seq);
        v
    }

    fn stored(&self, req: &Req) -> Option<&Answer> {
        self.idem.get(&(req.caller().to_string(), req.op.to_string(), req.tx().to_string()))
    }
}

/// The answer a request's effect is described by: what it was answered, or for one without an
/// answer, its stored response if it committed. None: no effect.
fn effect<'a>(e: &'a Entry, snap: &'a Snap) -> Option<&'a Answer> {
    let a = match &e.outcome {
        Outcome::Answered(a) => a,
        Outcome::Unanswered(_) => snap.stored(e.req.as_ref()?)?,
    };
    (result_of(a) == 0).then_some(a)
}

/// Responses that are stored for repeats (spec 11): all but parameter and system errors.
fn storable(a: &Answer) -> bool {
    let r = result_of(a);
    !((-21999..=-21500).contains(&r) || r == -22500 || r == -22501)
}

/// What the checks of one moment should include.
pub struct Expect {
    /// After the final restart with everything settled: no request is in doubt any more.
    pub settled: bool,
    /// Check SSO sessions and tickets (not after a clock jump: they expire).
    pub sso: bool,
    /// Node time (unix) at which the node has caught up its jobs, if it has.
    pub caught_up_at: Option<i64>,
}

pub fn check_node(snap: &Snap, entries: &[Entry], clients: &[Client], x: &Expect, cal: Cal) -> Vec<String> {
    let mut p = Vec::new();
    // Indexes of the outbox: notifications by what identifies them, CHARGE records by
    // TransactionID, renewals by order.
    let mut notes: HashMap<(&str, &str, &str, &str), usize> = HashMap::new();
    for o in snap.outbox.iter().filter(|o| o.seq.is_none()) {
        let k = match o.operation.as_str() {
            "PUserInfoNotify" => ("PUserInfoNotify", o.f("VNetUserID"), o.f("ActionType"), if o.f("ActionType") == "2" { o.f("Alias") } else { "" }),
            "PasswordReset" => ("PasswordReset", o.f("VNetUserID"), o.f("TransactionID"), ""),
            _ => continue,
        };
        *notes.entry(k).or_default() += 1;
    }
    let note = |k: (&str, &str, &str, &str)| notes.get(&k).copied().unwrap_or(0);
    let mut charge_recs: HashMap<(&str, &str), usize> = HashMap::new();
    for o in snap.stream("CHARGE") {
        *charge_recs.entry((o.f("SPID"), o.f("TransactionID"))).or_default() += 1;
    }
    let mut renewals: HashMap<&str, usize> = HashMap::new();
    for c in snap.charges.values().filter(|c| c.operation == "Renewal") {
        *renewals.entry(c.order_id.as_str()).or_default() += 1;
    }
    // ------------------------------------------------ every request's effect, exactly once
    let mut cancels: HashMap<String, usize> = HashMap::new();
    let mut uncancels: HashMap<String, usize> = HashMap::new();
    let mut order_ids: HashSet<String> = HashSet::new();
    let mut charge_keys: HashSet<(String, String)> = HashSet::new();
    let mut opened: HashSet<String> = HashSet::new();
    let mut last_alias: HashMap<String, String> = HashMap::new();
    // The notifications the committed requests account for.
    let mut explained: HashSet<(&str, &str, &str, &str)> = HashSet::new();
    for e in entries {
        let Some(req) = &e.req else { continue };
        if !e.idempotent() {
            continue;
        }
        if let (true, Outcome::Unanswered(why)) = (x.settled, &e.outcome) {
            p.push(format!("{} still unanswered after the repeats ({why})", e.describe()));
        }
        if let Outcome::Answered(a) = &e.outcome {
            if storable(a) && snap.stored(req).is_none() {
                p.push(format!("{} was answered {} but its idempotency record is missing", e.describe(), a["Result"]));
            }
        }
        let eff = effect(e, snap);
        let tx = req.tx();
        match (&e.what, eff) {
            (What::UserOpen { account, .. }, eff) => {
                let holders: Vec<&String> = snap.users.iter().filter(|(_, u)| &u.account == account).map(|(id, _)| id).collect();
                match eff {
                    Some(a) => {
                        let v = &a["VNetUserID"];
                        opened.insert(v.clone());
                        if holders != [v] {
                            p.push(format!("{}: acknowledged user {v} of {account}: holders in the database {holders:?}", e.describe()));
                        }
                        explained.insert(("PUserInfoNotify", v, "1", ""));
                        let n = note(("PUserInfoNotify", v, "1", ""));
                        if n != 1 {
                            p.push(format!("{}: {n} PUserInfoNotify ActionType 1 for {v}", e.describe()));
                        }
                    }
                    None if !holders.is_empty() => p.push(format!("{}: not committed, yet {account} is held by {holders:?}", e.describe())),
                    None => {}
                }
            }
            (What::UserModify { user, alias }, eff) => {
                let n = note(("PUserInfoNotify", user, "2", alias));
                let want = usize::from(eff.is_some());
                if n != want {
                    p.push(format!("{}: {n} PUserInfoNotify with Alias {alias} (expected {want})", e.describe()));
                }
                if eff.is_some() {
                    last_alias.insert(user.clone(), alias.clone());
                    explained.insert(("PUserInfoNotify", user, "2", alias));
                }
            }
            (What::PasswordReset { user, .. }, eff) => {
                if eff.is_some() {
                    explained.insert(("PasswordReset", user, tx, ""));
                }
                let n = note(("PasswordReset", user, tx, ""));
                let want = usize::from(eff.is_some());
                if n != want {
                    p.push(format!("{}: {n} PasswordReset messages (expected {want})", e.describe()));
                }
            }
            (What::Order { user, spid, item }, eff) => {
                let ch = snap.charges.get(&(spid.to_string(), tx.to_string()));
                match eff {
                    Some(a) => {
                        let oid = &a["OrderID"];
                        order_ids.insert(oid.clone());
                        match snap.orders.get(oid) {
                            Some(o) if &o.user == user && o.item == *item && o.spid == *spid => {}
                            Some(o) => p.push(format!("{}: order {oid} is of {} {} {}", e.describe(), o.user, o.spid, o.item)),
                            None => p.push(format!("{}: acknowledged order {oid} is missing", e.describe())),
                        }
                        match ch {
                            Some(c) => {
                                charge_keys.insert((spid.to_string(), tx.to_string()));
                                if &c.order_id != oid || c.fee != monthly_price(item) || &c.user != user {
                                    p.push(format!("{}: its charge is for order {} of {}, fee {}", e.describe(), c.order_id, c.user, c.fee));
                                }
                            }
                            // Un-cancelled (spec 11): the same OrderID, no charge.
                            None => *uncancels.entry(oid.clone()).or_default() += 1,
                        }
                    }
                    None if ch.is_some() => p.push(format!("{}: not acknowledged nor committed, yet charged", e.describe())),
                    None => {}
                }
            }
            (What::CancelOrder { user, .. }, Some(a)) => {
                let oid = &a["OrderID"];
                match snap.orders.get(oid) {
                    Some(o) if &o.user == user => {}
                    _ => p.push(format!("{}: cancelled order {oid} is missing or not {user}'s", e.describe())),
                }
                *cancels.entry(oid.clone()).or_default() += 1;
            }
            (What::Charge { user, spid, fee }, eff) => {
                let ch = snap.charges.get(&(spid.to_string(), tx.to_string()));
                let recs = charge_recs.get(&(*spid, tx)).copied().unwrap_or(0);
                match (eff, ch) {
                    (Some(_), Some(c)) => {
                        charge_keys.insert((spid.to_string(), tx.to_string()));
                        if &c.user != user || c.fee != *fee || c.operation != "Charge" {
                            p.push(format!("{}: stored as {} of {} fee {}", e.describe(), c.operation, c.user, c.fee));
                        }
                    }
                    (Some(_), None) => p.push(format!("{}: acknowledged charge is missing", e.describe())),
                    (None, Some(_)) => p.push(format!("{}: not acknowledged nor committed, yet charged", e.describe())),
                    (None, None) => {}
                }
                let want = usize::from(eff.is_some());
                if recs != want {
                    p.push(format!("{}: {recs} CHARGE records (expected {want})", e.describe()));
                }
            }
            _ => {}
        }
    }
    // No user, order, charge or notification that no committed request made.
    let orphans: Vec<_> = notes.keys().filter(|k| !explained.contains(*k)).take(5).collect();
    if !orphans.is_empty() {
        p.push(format!("queued notifications no committed request made: {orphans:?}"));
    }
    for id in snap.users.keys() {
        if !opened.contains(id) {
            p.push(format!("user {id} exists but no committed UserOpen made it"));
        }
    }
    for (user, alias) in &last_alias {
        if snap.users.get(user).map(|u| &u.alias) != Some(alias) {
            p.push(format!("user {user}: alias {:?}, the last committed UserModify set {alias}", snap.users.get(user).map(|u| &u.alias)));
        }
    }
    for (oid, o) in &snap.orders {
        if !order_ids.contains(oid) {
            p.push(format!("order {oid} ({} {}) exists but no committed Order made it", o.user, o.item));
        }
    }
    for ((spid, tx), c) in &snap.charges {
        let ok = match c.operation.as_str() {
            "Renewal" => snap.orders.contains_key(&c.order_id) && *tx == format!("RN{}{}", c.order_id, c.bill_month),
            _ => charge_keys.contains(&(spid.clone(), tx.clone())),
        };
        if !ok {
            p.push(format!("charge {spid}/{tx} ({}) has no committed request or order behind it", c.operation));
        }
    }
    // ------------------------------------------------ credit: the month totals are the charges
    let mut sums: HashMap<(String, String), i64> = HashMap::new();
    for c in snap.charges.values() {
        *sums.entry((c.user.clone(), c.bill_month.clone())).or_default() += c.fee;
    }
    for (k, total) in &snap.spend {
        if sums.get(k).copied().unwrap_or(0) != *total {
            p.push(format!("spend of {k:?} is {total}, its charges sum to {:?}", sums.get(k)));
        }
    }
    for (k, sum) in &sums {
        if !snap.spend.contains_key(k) && *sum != 0 {
            p.push(format!("charges of {k:?} sum to {sum} without a spend row"));
        }
    }
    // ------------------------------------------------ streams: gapless, one record per change
    for stream in ["ORDER", "CHARGE", "SETTLE"] {
        let recs = snap.stream(stream);
        for (i, o) in recs.iter().enumerate() {
            let want = i as i64 + 1;
            if o.seq != Some(want) || o.f("RecordSeq") != want.to_string() {
                p.push(format!("{stream}: record {} has seq {:?} RecordSeq {} (gap or duplicate)", i + 1, o.seq, o.f("RecordSeq")));
                break;
            }
        }
    }
    let twice: Vec<_> = charge_recs.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).take(5).collect();
    if !twice.is_empty() {
        p.push(format!("CHARGE: several records for one charge: {twice:?}"));
    }
    let unique: HashSet<(&str, &str)> = charge_recs.keys().copied().collect();
    let committed: HashSet<(&str, &str)> = snap.charges.keys().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    if unique != committed {
        let extra: Vec<_> = unique.difference(&committed).take(5).collect();
        let missing: Vec<_> = committed.difference(&unique).take(5).collect();
        p.push(format!("CHARGE records and committed charges differ: records without a charge {extra:?}, charges without a record {missing:?}"));
    }
    // ORDER records: per order, one ActionType 1; a 2 per committed CancelOrder; a 3 per renewal
    // (channel SYSTEM) and per un-cancelling Order; a 4 iff it expired.
    let mut events: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for o in snap.stream("ORDER") {
        events.entry(o.f("OrderID")).or_default().push((o.f("ActionType"), o.f("Channel")));
    }
    for (oid, o) in &snap.orders {
        let ev = events.remove(oid.as_str()).unwrap_or_default();
        let count = |at: &str, system: Option<bool>| ev.iter().filter(|(a, ch)| *a == at && system.is_none_or(|s| (*ch == "SYSTEM") == s)).count();
        let renewals = renewals.get(oid.as_str()).copied().unwrap_or(0);
        let got = (count("1", None), count("2", None), count("3", Some(false)), count("3", Some(true)), count("4", None));
        let want = (1, cancels.get(oid).copied().unwrap_or(0), uncancels.get(oid).copied().unwrap_or(0), renewals, usize::from(o.status == "expired"));
        if got != want {
            p.push(format!("order {oid} ({}): ORDER records (1, 2, 3, 3 SYSTEM, 4) = {got:?}, expected {want:?}; events {ev:?}", o.status));
        }
    }
    for (oid, ev) in events {
        p.push(format!("ORDER records {ev:?} for {oid}, an order that does not exist"));
    }
    // ------------------------------------------------ jobs: every order rolled over once, days closed once
    if let Some(now) = x.caught_up_at {
        let month = cal.month(now);
        let start = cal.month_start(month);
        if snap.jobs.get("rolled_over_month").map(String::as_str) != Some(month.to_string().as_str()) {
            p.push(format!("rolled_over_month is {:?}, the node is in {month}", snap.jobs.get("rolled_over_month")));
        }
        for (oid, o) in &snap.orders {
            if o.status == "active" && o.end_at < start {
                p.push(format!("order {oid} still active with a period that ended before {month}"));
            }
            if o.created_at < start {
                let renewed = snap.charges.contains_key(&(o.spid.clone(), format!("RN{oid}{month}")));
                match o.status.as_str() {
                    "active" if !renewed || o.start_at != start => p.push(format!("order {oid} active in {month} without its renewal")),
                    "expired" if o.if_extend => p.push(format!("order {oid} with IfExtend 1 expired (credit and status allowed its renewal)")),
                    _ => {}
                }
            }
        }
        let due = vnetd::jobs::last_due_day(cal, now, 30);
        let closed = snap.jobs.get("closed_through").cloned().unwrap_or_default();
        if closed != due {
            p.push(format!("closed_through is {closed}, the last day due is {due}"));
        }
        // SETTLE: per closed LedgerDate, one record per (SP, item, RoamType) with the day's totals.
        let mut want: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        for ((spid, _), c) in &snap.charges {
            if !c.roam_type.is_empty() && c.ledger_date <= closed {
                want.entry(c.ledger_date.clone()).or_default().push(vec![spid.clone(), c.service_id.clone(), c.item.clone(), c.roam_type.clone(), c.fee.to_string()]);
            }
        }
        let want: BTreeMap<String, Vec<Vec<String>>> = want
            .into_iter()
            .map(|(d, rows)| {
                let mut g: BTreeMap<Vec<String>, (i64, i64)> = BTreeMap::new();
                for r in rows {
                    let e = g.entry(r[..4].to_vec()).or_default();
                    e.0 += 1;
                    e.1 += r[4].parse::<i64>().unwrap();
                }
                let mut v: Vec<Vec<String>> = g.into_iter().map(|(mut k, (n, f))| { k.extend([n.to_string(), f.to_string()]); k }).collect();
                v.sort();
                (d, v)
            })
            .collect();
        let mut got: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        for o in snap.stream("SETTLE") {
            got.entry(o.f("LedgerDate").to_string()).or_default().push(
                ["SPID", "ServiceID", "ServiceItemID", "RoamType", "TotalCount", "TotalFee"].iter().map(|n| o.f(n).to_string()).collect(),
            );
        }
        for v in got.values_mut() {
            v.sort();
        }
        if got != want {
            p.push(format!("SETTLE records {got:?}, the closed days' roaming charges give {want:?}"));
        }
        for d in want.keys() {
            if !snap.ledger_heads.contains(d) {
                p.push(format!("day {d} closed without its ledger head"));
            }
        }
    }
    // ------------------------------------------------ keys: each committed KeyUpdate once, in order
    for c in clients.iter().filter(|c| c.centre) {
        let known = &c.keys[..=c.key];
        let in_doubt = entries.iter().any(|e| e.client == c.id && matches!(e.what, What::KeyUpdate { .. }) && matches!(e.outcome, Outcome::Unanswered(_)) && e.settled == Settled::No);
        let ok = snap.centre_keys.as_slice() == known || (in_doubt && c.key + 1 < c.keys.len() && snap.centre_keys.as_slice() == &c.keys[..=c.key + 1]);
        if !ok {
            p.push(format!("centre key versions {:?}, expected {known:?}{}", short(&snap.centre_keys), if in_doubt { " (+1 in doubt)" } else { "" }));
        }
    }
    // ------------------------------------------------ SSO: acknowledged logins hold, redeemed tickets stay redeemed
    if x.sso {
        for (i, e) in entries.iter().enumerate() {
            let What::SsoLogin { user, ticket, cookie, validated } = &e.what else { continue };
            if ticket.is_empty() {
                continue;
            }
            let th = vnetd::domain::sso::digest(ticket);
            // A later reset of the user (committed or in doubt) ends its sessions and tickets.
            let reset_later = entries[i + 1..].iter().any(|l| l.client == e.client && matches!(&l.what, What::PasswordReset { user: u, .. } if u == user) && (effect(l, snap).is_some() || matches!(l.outcome, Outcome::Unanswered(_))));
            match validated {
                Some(true) if snap.tickets.contains_key(&th) => p.push(format!("{}: a redeemed ticket of {user} is valid again", e.describe())),
                Some(false) if !reset_later => {
                    if snap.tickets.get(&th) != Some(&(user.clone(), SP_ID.to_string())) {
                        p.push(format!("{}: the acknowledged ticket of {user} is missing", e.describe()));
                    }
                    if snap.sessions.get(&vnetd::domain::sso::digest(cookie)) != Some(user) {
                        p.push(format!("{}: the acknowledged session of {user} is missing", e.describe()));
                    }
                }
                _ => {}
            }
        }
    }
    // ------------------------------------------------ nothing dead-lettered
    let dead: Vec<String> = snap.outbox.iter().filter(|o| o.state == "dead").map(|o| format!("{} {}", o.operation, o.order_key)).take(5).collect();
    if !dead.is_empty() {
        p.push(format!("dead-lettered messages: {dead:?}"));
    }
    p
}

fn short(keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| k[..6].to_string()).collect()
}

// ---------------------------------------------------------------- the centre's side

#[derive(Default, Debug, Clone)]
pub struct CentreSeen {
    /// Records accepted per stream.
    pub records: BTreeMap<String, usize>,
    /// Records sent again and dropped by RecordSeq.
    pub duplicate_records: i64,
    /// Notifications accepted twice (at least once delivery across a kill).
    pub redelivered: usize,
    pub messages: usize,
    /// Gap answers (-21519).
    pub gaps: usize,
}

/// Compare what the centre simulator accepted with the node's outbox: every record it holds is the
/// node's committed record of that RecordSeq (so nothing was sent for an uncommitted change), each
/// RecordSeq once; every notification is a committed message, per ordering key in order. With
/// `complete`, everything the node queued has arrived.
pub fn check_centre(sim_db: &Path, snap: &Snap, complete: bool) -> (Vec<String>, CentreSeen) {
    let mut p = Vec::new();
    let mut seen = CentreSeen::default();
    let c = open_ro(sim_db);
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    if ok != "ok" {
        p.push(format!("centre-sim database integrity_check: {ok}"));
    }
    for stream in ["ORDER", "CHARGE", "SETTLE"] {
        let node = snap.stream(stream);
        let mut st = c.prepare("SELECT record_seq, fields FROM record WHERE stream = ?1 ORDER BY record_seq").unwrap();
        let recs: Vec<(i64, Vec<String>)> = st
            .query_map([stream], |r| Ok((r.get(0)?, serde_json::from_str::<Vec<String>>(&r.get::<_, String>(1)?).unwrap())))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        seen.records.insert(stream.to_string(), recs.len());
        for (i, (seq, vals)) in recs.iter().enumerate() {
            if *seq != i as i64 + 1 {
                p.push(format!("centre {stream}: RecordSeq {seq} at position {} (gap)", i + 1));
                break;
            }
            match node.get(i) {
                Some(o) if o.payload.iter().map(|(_, v)| v).eq(vals.iter()) => {}
                Some(o) => {
                    p.push(format!("centre {stream} RecordSeq {seq} is {vals:?}, the node's record is {:?}", o.payload.iter().map(|(_, v)| v).collect::<Vec<_>>()));
                    break;
                }
                None => {
                    p.push(format!("centre {stream} holds RecordSeq {seq} {vals:?}, which the node never committed"));
                    break;
                }
            }
        }
        let last: Option<i64> = c.query_row("SELECT last_seq FROM stream_state WHERE stream = ?1", [stream], |r| r.get(0)).ok();
        if last.unwrap_or(0) != recs.len() as i64 {
            p.push(format!("centre {stream}: last_seq {last:?} with {} records", recs.len()));
        }
        if complete && recs.len() != node.len() {
            p.push(format!("centre {stream}: {} records arrived of the node's {}", recs.len(), node.len()));
        }
    }
    seen.duplicate_records = c.query_row("SELECT coalesce(sum(duplicates), 0) FROM stream_state", [], |r| r.get(0)).unwrap();
    // Notifications, per ordering key.
    let mut st = c.prepare("SELECT operation, fields FROM message WHERE operation IN ('PUserInfoNotify', 'PasswordReset', 'OrderNotify') ORDER BY id").unwrap();
    let msgs: Vec<(String, serde_json::Value)> =
        st.query_map([], |r| Ok((r.get(0)?, serde_json::from_str(&r.get::<_, String>(1)?).unwrap()))).unwrap().map(Result::unwrap).collect();
    seen.messages = msgs.len();
    let mut by_key: BTreeMap<String, Vec<(String, serde_json::Value)>> = BTreeMap::new();
    for (op, f) in msgs {
        let key = match op.as_str() {
            "OrderNotify" => format!("sp:{}", f["SPID"].as_str().unwrap_or("")),
            _ => format!("user:{}", f["VNetUserID"].as_str().unwrap_or("")),
        };
        by_key.entry(key).or_default().push((op, f));
    }
    let mut node_keys: BTreeMap<String, Vec<&Ob>> = BTreeMap::new();
    for o in snap.outbox.iter().filter(|o| o.seq.is_none()) {
        node_keys.entry(o.order_key.clone()).or_default().push(o);
    }
    let matches = |o: &Ob, op: &str, f: &serde_json::Value| {
        o.operation == op
            && o.payload.iter().all(|(k, v)| {
                let got = f[k.as_str()].as_str().unwrap_or("\u{0}");
                got == v || (matches!(k.as_str(), "NewPassword" | "Password") && got == "password ok")
            })
    };
    for (key, got) in &by_key {
        let node = node_keys.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut j = 0;
        for (op, f) in got {
            if j < node.len() && matches(node[j], op, f) {
                j += 1;
            } else if j > 0 && matches(node[j - 1], op, f) {
                seen.redelivered += 1;
            } else {
                p.push(format!("centre: {op} {f} for {key} is not the node's next committed message ({} of {} arrived before it)", j, node.len()));
                break;
            }
        }
        if complete && j != node.len() {
            p.push(format!("centre: {} of the node's {} messages for {key} arrived", j, node.len()));
        }
    }
    if complete {
        for (key, node) in &node_keys {
            if !by_key.contains_key(key) {
                p.push(format!("centre: none of the node's {} messages for {key} arrived", node.len()));
            }
        }
    }
    let mut st = c.prepare("SELECT operation, result, reason FROM rejected").unwrap();
    let rejected: Vec<(String, i64, String)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    for (op, r, why) in &rejected {
        if *r == -21519 {
            seen.gaps += 1;
        } else {
            p.push(format!("centre-sim refused {op}: {r} {why}"));
        }
    }
    (p, seen)
}
