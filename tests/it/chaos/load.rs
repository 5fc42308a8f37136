//! The clients of a chaos trial and their ledger: every request sent, with what was answered (or
//! that nothing was), in the order each client sent them.
//!
//! Each client thread owns its users (no other thread touches them), so the order of its own
//! ledger is the order of the changes to those users, and the state a user should be in follows
//! from the ledger alone. Owner clients act as the BSS (UserOpen, UserModify, PasswordReset,
//! Order), as the SP (Order, CancelOrder, Charge, UserAuth, TicketValidate) and as a browser (SSO
//! login); the centre client acts as the centre (KeyUpdate, and Charge, Order and CancelOrder for
//! a national SP, which the day close settles).

use super::rng::Rng;
use crate::fields::*;
use crate::harness::*;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vnetd::crypto::token;

pub const SPS: &str = "ProvinceForSP";
pub const BSS: &str = "ProvinceForBSS";
pub const VNET: &str = "ProvinceForVNet";

/// The trial catalogue: one provincial SP (a peer with an OrderNotify URL) with two per-use items
/// and twelve monthly items, and a national SP whose items the centre approves for this province.
pub const SVC: &str = "3500000100000001";
pub const PERUSE: [(&str, i64); 2] = [("3500000100000101", 200), ("3500000100000103", 50)];
pub const MONTHLY: [&str; 12] = [
    "3500000100000201", "3500000100000202", "3500000100000203", "3500000100000204", "3500000100000205", "3500000100000206",
    "3500000100000207", "3500000100000208", "3500000100000209", "3500000100000210", "3500000100000211", "3500000100000212",
];
pub const NAT_SP: &str = "00000004";
pub const NAT_SVC: &str = "0000000400000001";
pub const NAT_PERUSE: (&str, i64) = ("0000000400000101", 300);
pub const NAT_MONTHLY: &str = "0000000400000102";
/// The national SP's key: it is a peer without a URL, so its orders' rollover events are not
/// notified (one SP's OrderNotify queue is delivered one message at a time).
pub const NAT_SP_KEY: &str = "2233445566778899aabbccddeeff00112233445566778899";
/// Monthly items of the national SP: the rollover's data set.
pub const NAT_BULK: [&str; 12] = [
    "0000000400000201", "0000000400000202", "0000000400000203", "0000000400000204", "0000000400000205", "0000000400000206",
    "0000000400000207", "0000000400000208", "0000000400000209", "0000000400000210", "0000000400000211", "0000000400000212",
];
pub const RETURN_URL: &str = "http://sp.example/back";

/// The monthly price of an item of the catalogue (fen).
pub fn monthly_price(item: &str) -> i64 {
    if item == NAT_MONTHLY {
        return 800;
    }
    if let Some(i) = NAT_BULK.iter().position(|m| *m == item) {
        return 500 + 10 * i as i64;
    }
    let i = MONTHLY.iter().position(|m| *m == item).expect("a monthly item of the trial catalogue") as i64;
    100 + 10 * i
}

pub fn catalog() -> String {
    let mut s = format!("{MUSIC_SP}{NATIONAL_GAMES}");
    for (i, (item, price)) in PERUSE.iter().enumerate() {
        s.push_str(&catalog_item(item, SVC, &format!("单次{i}"), "1", *price));
    }
    for (svc, item) in MONTHLY.iter().map(|i| (SVC, i)).chain(NAT_BULK.iter().map(|i| (NAT_SVC, i))) {
        s.push_str(&catalog_item(item, svc, &item_name(item), "2", monthly_price(item)));
    }
    s
}

/// The name of a monthly item (the bulk items are approved for this province under it).
pub fn item_name(item: &str) -> String {
    format!("包月{}", &item[12..])
}

/// A response: every element of the operation's answer by name (Result first in the wire order).
pub type Answer = BTreeMap<String, String>;

pub fn result_of(a: &Answer) -> i32 {
    a.get("Result").and_then(|r| r.parse().ok()).unwrap_or(i32::MIN)
}

/// Who signs a request.
#[derive(Clone, Debug)]
pub enum Signer {
    Sp,
    NatSp,
    Bss,
    /// The centre, with the key it believes is in effect.
    Centre(String),
}

impl Signer {
    fn key(&self) -> &str {
        match self {
            Signer::Sp => SP_KEY,
            Signer::NatSp => NAT_SP_KEY,
            Signer::Bss => BSS_KEY,
            Signer::Centre(k) => k,
        }
    }
}

/// One SOAP request: the fields in Authenticator order, without TimeStamp and Authenticator
/// (added, with the node's time, each time it is sent).
#[derive(Clone, Debug)]
pub struct Req {
    pub service: &'static str,
    pub op: &'static str,
    pub signer: Signer,
    pub fields: Vec<(&'static str, String)>,
}

impl Req {
    pub fn get(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The TransactionID of an idempotent operation ("" for the others).
    pub fn tx(&self) -> &str {
        self.get("TransactionID")
    }

    /// The caller id (the idempotency record's caller): the first field.
    pub fn caller(&self) -> &str {
        &self.fields[0].1
    }

    pub fn send(&self, addr: &str, offset_s: i64) -> Result<Answer, String> {
        let f: Vec<(&str, &str)> = self.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = try_call(addr, self.service, self.op, self.signer.key(), &f, &ts(offset_s))?;
        Ok(r.fields.into_iter().collect())
    }
}

/// What a request was about, with what the checks need to find its effect.
#[derive(Clone, Debug)]
pub enum What {
    UserOpen { account: String, password: String },
    UserModify { user: String, alias: String },
    PasswordReset { user: String, password: String },
    Order { user: String, spid: &'static str, item: &'static str },
    CancelOrder { user: String },
    Charge { user: String, spid: &'static str, fee: i64 },
    KeyUpdate { key: String },
    /// A browser login through SSO; `validated`: Some(true) the SP redeemed the ticket, Some(false)
    /// it did not try, None it tried and got no answer.
    SsoLogin { user: String, ticket: String, cookie: String, validated: Option<bool> },
    UserAuth,
    TicketValidate,
    Probe,
}

impl What {
    pub fn name(&self) -> &'static str {
        match self {
            What::UserOpen { .. } => "UserOpen",
            What::UserModify { .. } => "UserModify",
            What::PasswordReset { .. } => "PasswordReset",
            What::Order { .. } => "Order",
            What::CancelOrder { .. } => "CancelOrder",
            What::Charge { .. } => "Charge",
            What::KeyUpdate { .. } => "KeyUpdate",
            What::SsoLogin { .. } => "SSO login",
            What::UserAuth => "UserAuth",
            What::TicketValidate => "TicketValidate",
            What::Probe => "GetUserinfo",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Answered(Answer),
    /// No complete answer (the daemon was killed): the error seen.
    Unanswered(String),
}

/// How an unanswered request was settled after the restart.
#[derive(Clone, Debug, PartialEq)]
pub enum Settled {
    /// Answered at once.
    No,
    /// Committed before the kill: its repeat answered the stored response.
    Committed,
    /// Not committed: its repeat ran afresh.
    RanAfresh,
    /// Not idempotent and not committed (KeyUpdate), or unknowable (a login): left as it is.
    Lost,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub client: usize,
    pub what: What,
    pub req: Option<Req>,
    pub outcome: Outcome,
    pub settled: Settled,
}

impl Entry {
    /// An idempotent request (one with a TransactionID).
    pub fn idempotent(&self) -> bool {
        self.req.as_ref().is_some_and(|r| !r.tx().is_empty())
    }

    pub fn describe(&self) -> String {
        match &self.req {
            Some(r) => format!("{} {} {} (client {})", r.service, r.op, r.tx(), self.client),
            None => format!("{} (client {})", self.what.name(), self.client),
        }
    }
}

/// A user a client owns, with what it believes about it.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub account: String,
    pub password: String,
    /// Monthly items with an acknowledged order (CancelOrder picks among them).
    pub ordered: Vec<&'static str>,
}

/// What the client threads share while they run.
pub struct Ctx {
    pub addr: String,
    pub offset_s: i64,
    /// Raised just before the daemon is killed: errors after it are expected.
    pub stop: Arc<AtomicBool>,
    /// Prefix of accounts and TransactionIDs (unique per trial).
    pub tag: String,
}

pub struct Client {
    pub id: usize,
    pub centre: bool,
    rng: Rng,
    n: u64,
    pub users: Vec<User>,
    pub entries: Vec<Entry>,
    /// Centre keys of the trial, and the index of the one in effect.
    pub keys: Vec<String>,
    pub key: usize,
    /// Stopped after a request that got no answer.
    pub dead: bool,
    /// Answers that should not have been given (a refused charge, a failed login with the right
    /// password, an error before the kill).
    pub anomalies: Vec<String>,
}

impl Client {
    pub fn new(id: usize, centre: bool, rng: Rng, keys: Vec<String>) -> Client {
        Client { id, centre, rng, n: 0, users: Vec::new(), entries: Vec::new(), keys, key: 0, dead: false, anomalies: Vec::new() }
    }

    pub fn centre_key(&self) -> String {
        self.keys[self.key].clone()
    }

    fn next_tx(&mut self, ctx: &Ctx) -> String {
        self.n += 1;
        format!("{}c{}n{}", ctx.tag, self.id, self.n)
    }

    /// Send `req` and record it; None when it got no answer (the client then stops).
    fn exec(&mut self, ctx: &Ctx, what: What, req: Req) -> Option<Answer> {
        match req.send(&ctx.addr, ctx.offset_s) {
            Ok(a) => {
                self.entries.push(Entry { client: self.id, what, req: Some(req), outcome: Outcome::Answered(a.clone()), settled: Settled::No });
                Some(a)
            }
            Err(e) => {
                self.unanswered(ctx, what, Some(req), e);
                None
            }
        }
    }

    fn unanswered(&mut self, ctx: &Ctx, what: What, req: Option<Req>, e: String) {
        if !ctx.stop.load(Ordering::SeqCst) {
            self.anomalies.push(format!("client {}: {} failed before the kill: {e}", self.id, what.name()));
        }
        self.entries.push(Entry { client: self.id, what, req, outcome: Outcome::Unanswered(e), settled: Settled::No });
        self.dead = true;
    }

    fn expect_ok(&mut self, a: &Answer, what: &str) {
        if result_of(a) != 0 {
            self.anomalies.push(format!("client {}: {what} refused: {a:?}", self.id));
        }
    }

    // ---------------------------------------------------------------- operations

    pub fn user_open(&mut self, ctx: &Ctx) {
        let tx = self.next_tx(ctx);
        let account = format!("{}u{}n{}", ctx.tag, self.id, self.n);
        let password = format!("Pw-{}", self.rng.hex(8));
        let req = Req {
            service: BSS,
            op: "UserOpen",
            signer: Signer::Bss,
            fields: named(USER_OPEN, &[
                ("SrcDeviceNo", BSS_ID.into()), ("AccountType", "01".into()), ("Account", account.clone()), ("Password", enc(BSS_KEY, &password)),
                ("CityCode", "0591".into()), ("UserType", "1".into()), ("CreditLimit", "100000000".into()), ("TransactionID", tx),
            ]),
        };
        let what = What::UserOpen { account: account.clone(), password: password.clone() };
        if let Some(a) = self.exec(ctx, what, req) {
            self.expect_ok(&a, "UserOpen");
            if result_of(&a) == 0 {
                self.users.push(User { id: a["VNetUserID"].clone(), account, password, ordered: Vec::new() });
            }
        }
    }

    fn user_modify(&mut self, ctx: &Ctx, u: usize) {
        let tx = self.next_tx(ctx);
        let alias = format!("m-{tx}");
        let limit = self.rng.range(50_000_000, 100_000_000).to_string();
        let user = self.users[u].id.clone();
        let req = Req {
            service: BSS,
            op: "UserModify",
            signer: Signer::Bss,
            fields: named(USER_MODIFY, &[("SrcDeviceNo", BSS_ID.into()), ("VNetUserID", user.clone()), ("CreditLimit", limit), ("Alias", alias.clone()), ("TransactionID", tx)]),
        };
        if let Some(a) = self.exec(ctx, What::UserModify { user, alias }, req) {
            self.expect_ok(&a, "UserModify");
        }
    }

    fn password_reset(&mut self, ctx: &Ctx, u: usize) {
        let tx = self.next_tx(ctx);
        let password = format!("Rs-{}", self.rng.hex(8));
        let user = self.users[u].id.clone();
        let req = Req {
            service: BSS,
            op: "PasswordReset",
            signer: Signer::Bss,
            fields: named(PASSWORD_RESET, &[("SrcDeviceNo", BSS_ID.into()), ("VNetUserID", user.clone()), ("NewPassword", enc(BSS_KEY, &password)), ("TransactionID", tx)]),
        };
        if let Some(a) = self.exec(ctx, What::PasswordReset { user, password: password.clone() }, req) {
            self.expect_ok(&a, "PasswordReset");
            if result_of(&a) == 0 {
                self.users[u].password = password;
            }
        }
    }

    /// An order of `item` for user `u`, by the SP or (`bss`) by the business hall.
    pub fn order(&mut self, ctx: &Ctx, u: usize, item: &'static str, bss: bool) {
        let tx = self.next_tx(ctx);
        let user = self.users[u].id.clone();
        let if_extend = if self.rng.chance(0.6) { "1" } else { "0" };
        let mut fields = vec![
            ("SPID", SP_ID.to_string()), ("ServiceID", SVC.into()), ("ServiceItemID", item.into()), ("ProductID", String::new()),
            ("VNetUserID", user.clone()), ("ContractID", String::new()), ("IfExtend", if_extend.into()), ("TransactionID", tx),
        ];
        let (service, signer) = if bss {
            fields.insert(0, ("SrcDeviceNo", BSS_ID.into()));
            (BSS, Signer::Bss)
        } else {
            (SPS, Signer::Sp)
        };
        let req = Req { service, op: "Order", signer, fields };
        if let Some(a) = self.exec(ctx, What::Order { user, spid: SP_ID, item }, req) {
            if result_of(&a) == 0 {
                self.users[u].ordered.push(item);
            }
        }
    }

    /// An order of a national monthly item by the national SP (the rollover's data set).
    fn order_national(&mut self, ctx: &Ctx, u: usize, item: &'static str) {
        let tx = self.next_tx(ctx);
        let user = self.users[u].id.clone();
        let if_extend = if self.rng.chance(0.6) { "1" } else { "0" };
        let fields = vec![
            ("SPID", NAT_SP.to_string()), ("ServiceID", NAT_SVC.into()), ("ServiceItemID", item.into()), ("ProductID", String::new()),
            ("VNetUserID", user.clone()), ("ContractID", String::new()), ("IfExtend", if_extend.into()), ("TransactionID", tx),
        ];
        let req = Req { service: SPS, op: "Order", signer: Signer::NatSp, fields };
        if let Some(a) = self.exec(ctx, What::Order { user, spid: NAT_SP, item }, req) {
            self.expect_ok(&a, "national Order");
        }
    }

    fn cancel(&mut self, ctx: &Ctx, u: usize) {
        let item = match self.users[u].ordered.len() {
            0 => *self.rng.pick(&MONTHLY),
            n => self.users[u].ordered[self.rng.below(n as u64) as usize],
        };
        let tx = self.next_tx(ctx);
        let user = self.users[u].id.clone();
        let stop_type = *self.rng.pick(&["", "1", "2"]);
        let mut fields = vec![
            ("SPID", SP_ID.to_string()), ("ServiceID", SVC.into()), ("ServiceItemID", item.into()), ("ProductID", String::new()),
            ("VNetUserID", user.clone()), ("StopType", stop_type.into()), ("TransactionID", tx),
        ];
        let (service, signer) = if self.rng.chance(0.3) {
            fields.insert(0, ("SrcDeviceNo", BSS_ID.into()));
            (BSS, Signer::Bss)
        } else {
            (SPS, Signer::Sp)
        };
        let req = Req { service, op: "CancelOrder", signer, fields };
        if let Some(a) = self.exec(ctx, What::CancelOrder { user }, req) {
            if result_of(&a) == 0 {
                self.users[u].ordered.retain(|i| *i != item);
            }
        }
    }

    fn charge(&mut self, ctx: &Ctx, u: usize) {
        let (item, price) = *self.rng.pick(&PERUSE);
        let batch = self.rng.range(1, 3) as i64;
        let tx = self.next_tx(ctx);
        let user = self.users[u].id.clone();
        let req = Req {
            service: SPS,
            op: "Charge",
            signer: Signer::Sp,
            fields: vec![
                ("SPID", SP_ID.into()), ("ServiceID", SVC.into()), ("ServiceItemID", item.into()), ("VNetUserID", user.clone()),
                ("Fee", (price * batch).to_string()), ("BatchCount", batch.to_string()), ("TransactionID", tx),
            ],
        };
        if let Some(a) = self.exec(ctx, What::Charge { user, spid: SP_ID, fee: price * batch }, req) {
            self.expect_ok(&a, "Charge");
        }
    }

    /// UserAuth with the password the client believes is the user's: must succeed.
    pub fn user_auth(&mut self, ctx: &Ctx, u: usize) {
        let user = self.users[u].clone();
        let req = Req {
            service: SPS,
            op: "UserAuth",
            signer: Signer::Sp,
            fields: named(USER_AUTH, &[("SPID", SP_ID.into()), ("AccountType", "01".into()), ("Account", user.account.clone()), ("Password", enc(SP_KEY, &user.password))]),
        };
        if let Some(a) = self.exec(ctx, What::UserAuth, req) {
            self.expect_ok(&a, &format!("UserAuth of {} with its current password", user.id));
            if result_of(&a) == 0 && a.get("VNetUserID") != Some(&user.id) {
                self.anomalies.push(format!("client {}: UserAuth of {} answered {a:?}", self.id, user.account));
            }
        }
    }

    /// A browser login through the SP's SSORequest; half of the tickets are redeemed at once.
    fn sso_login(&mut self, ctx: &Ctx, u: usize) {
        let user = self.users[u].clone();
        let what = |ticket: &str, cookie: &str, validated| What::SsoLogin { user: user.id.clone(), ticket: ticket.into(), cookie: cookie.into(), validated };
        let (ticket, cookie) = match browser_login(ctx, &user.account, &user.password) {
            Ok(Some(tc)) => tc,
            Ok(None) => {
                self.anomalies.push(format!("client {}: SSO login of {} with its current password refused", self.id, user.account));
                return;
            }
            Err(e) => return self.unanswered(ctx, what("", "", Some(false)), None, e),
        };
        if !self.rng.chance(0.5) {
            let w = what(&ticket, &cookie, Some(false));
            self.entries.push(Entry { client: self.id, what: w, req: None, outcome: Outcome::Answered(ok_answer()), settled: Settled::No });
            return;
        }
        let req = Req { service: SPS, op: "TicketValidate", signer: Signer::Sp, fields: vec![("SPID", SP_ID.into()), ("Ticket", ticket.clone())] };
        match req.send(&ctx.addr, ctx.offset_s) {
            Ok(a) => {
                if result_of(&a) != 0 || a.get("VNetUserID") != Some(&user.id) {
                    self.anomalies.push(format!("client {}: TicketValidate of a fresh ticket of {} answered {a:?}", self.id, user.id));
                }
                let w = what(&ticket, &cookie, Some(true));
                self.entries.push(Entry { client: self.id, what: w, req: None, outcome: Outcome::Answered(ok_answer()), settled: Settled::No });
            }
            Err(e) => {
                // The login itself was answered; only the redemption is in doubt.
                let w = what(&ticket, &cookie, None);
                self.entries.push(Entry { client: self.id, what: w, req: None, outcome: Outcome::Answered(ok_answer()), settled: Settled::No });
                self.unanswered(ctx, What::TicketValidate, Some(req), e);
            }
        }
    }

    // ---------------------------------------------------------------- the centre

    fn centre_charge(&mut self, ctx: &Ctx, u: usize) {
        let batch = self.rng.range(1, 2) as i64;
        let tx = self.next_tx(ctx);
        let user = self.users[u].id.clone();
        let fee = NAT_PERUSE.1 * batch;
        let req = Req {
            service: VNET,
            op: "Charge",
            signer: Signer::Centre(self.centre_key()),
            fields: vec![
                ("SrcDeviceNo", CENTRE_ID.into()), ("SPID", NAT_SP.into()), ("ServiceID", NAT_SVC.into()), ("ServiceItemID", NAT_PERUSE.0.into()),
                ("VNetUserID", user.clone()), ("Fee", fee.to_string()), ("BatchCount", batch.to_string()), ("TransactionID", tx),
            ],
        };
        if let Some(a) = self.exec(ctx, What::Charge { user, spid: NAT_SP, fee }, req) {
            self.expect_ok(&a, "centre Charge");
        }
    }

    fn centre_order(&mut self, ctx: &Ctx, u: usize, cancel: bool) {
        let tx = self.next_tx(ctx);
        let user = self.users[u].id.clone();
        let mut fields = vec![
            ("SrcDeviceNo", CENTRE_ID.to_string()), ("SPID", NAT_SP.into()), ("ServiceID", NAT_SVC.into()), ("ServiceItemID", NAT_MONTHLY.into()),
            ("ProductID", String::new()), ("VNetUserID", user.clone()),
        ];
        let (op, what) = if cancel {
            fields.push(("StopType", self.rng.pick(&["1", "2"]).to_string()));
            ("CancelOrder", What::CancelOrder { user })
        } else {
            fields.push(("ContractID", String::new()));
            fields.push(("IfExtend", if self.rng.chance(0.6) { "1" } else { "0" }.into()));
            ("Order", What::Order { user, spid: NAT_SP, item: NAT_MONTHLY })
        };
        fields.push(("TransactionID", tx));
        let req = Req { service: VNET, op, signer: Signer::Centre(self.centre_key()), fields };
        self.exec(ctx, what, req);
    }

    /// KeyUpdate (scheduled): the next key of the trial, encrypted and signed under the current one.
    fn key_update(&mut self, ctx: &Ctx) {
        if self.key + 1 >= self.keys.len() {
            return self.probe(ctx);
        }
        let (cur, new) = (self.centre_key(), self.keys[self.key + 1].clone());
        let req = key_update_req(&cur, &new);
        if let Some(a) = self.exec(ctx, What::KeyUpdate { key: new }, req) {
            self.expect_ok(&a, "KeyUpdate");
            if result_of(&a) == 0 {
                self.key += 1;
            }
        }
    }

    /// GetUserinfo signed with the key the centre believes is in effect.
    fn probe(&mut self, ctx: &Ctx) {
        let Some(user) = self.users.first().map(|u| u.id.clone()) else { return };
        let req = Req { service: VNET, op: "GetUserinfo", signer: Signer::Centre(self.centre_key()), fields: vec![("SrcDeviceNo", CENTRE_ID.into()), ("VNetUserID", user)] };
        if let Some(a) = self.exec(ctx, What::Probe, req) {
            self.expect_ok(&a, &format!("GetUserinfo signed with centre key {}", self.key));
        }
    }

    /// After the restart, with every request settled: each user's password (owners) and the
    /// centre's key (the centre) are what the ledger says.
    pub fn verify_credentials(&mut self, ctx: &Ctx) {
        self.dead = false;
        if self.centre {
            self.probe(ctx);
        } else {
            for u in 0..self.users.len() {
                self.user_auth(ctx, u);
            }
        }
    }

    // ---------------------------------------------------------------- loops

    /// The mixed load, until `ctx.stop` or the first request without an answer.
    pub fn run(&mut self, ctx: &Ctx) {
        while !ctx.stop.load(Ordering::SeqCst) && !self.dead {
            if self.users.is_empty() {
                self.user_open(ctx);
                continue;
            }
            let u = self.rng.below(self.users.len() as u64) as usize;
            let p = self.rng.below(100);
            if self.centre {
                match p {
                    0..=49 => self.centre_charge(ctx, u),
                    50..=69 => self.centre_order(ctx, u, false),
                    70..=79 => self.centre_order(ctx, u, true),
                    80..=87 => self.key_update(ctx),
                    _ => self.probe(ctx),
                }
            } else {
                match p {
                    0..=5 => self.user_open(ctx),
                    6..=15 => self.user_modify(ctx, u),
                    16..=20 => self.password_reset(ctx, u),
                    21..=32 => {
                        let item = *self.rng.pick(&MONTHLY);
                        let bss = self.rng.chance(0.3);
                        self.order(ctx, u, item, bss)
                    }
                    33..=39 => self.cancel(ctx, u),
                    40..=84 => self.charge(ctx, u),
                    85..=94 => self.sso_login(ctx, u),
                    _ => self.user_auth(ctx, u),
                }
            }
        }
    }

    /// Setup: `users` users, each (with `orders`) ordering every monthly item (the rollover's
    /// data set), and for the centre client a few national charges and orders.
    pub fn setup(&mut self, ctx: &Ctx, users: usize, orders: bool) {
        for _ in 0..users {
            self.user_open(ctx);
        }
        let n = self.users.len();
        if self.centre {
            for u in 0..n {
                self.centre_charge(ctx, u);
                self.centre_order(ctx, u, false);
            }
        } else if orders {
            for u in 0..n {
                for item in NAT_BULK {
                    self.order_national(ctx, u, item);
                }
            }
        }
    }
}

pub fn key_update_req(sign_with: &str, new_key: &str) -> Req {
    Req {
        service: VNET,
        op: "KeyUpdate",
        signer: Signer::Centre(sign_with.to_string()),
        fields: named(KEY_UPDATE, &[("SrcDeviceNo", CENTRE_ID.into()), ("KeyRefreshType", "1".into()), ("UpdateKeyValue", enc(sign_with, new_key))]),
    }
}

fn ok_answer() -> Answer {
    [("Result".to_string(), "0".to_string())].into_iter().collect()
}

/// Every name of `names` in order, with its value from `given` or "".
fn named(names: &[&'static str], given: &[(&str, String)]) -> Vec<(&'static str, String)> {
    for (k, _) in given {
        assert!(names.contains(k), "{k} is not one of {names:?}");
    }
    names.iter().map(|n| (*n, given.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default())).collect()
}

// ---------------------------------------------------------------- a browser

fn q(v: &str) -> String {
    utf8_percent_encode(v, NON_ALPHANUMERIC).to_string()
}

/// Log in through SSO as a browser would: the SP's SSORequest, the form, its POST. Ok(Some((ticket,
/// VNETSSO cookie))) on success, Ok(None) if the login was refused, Err when an answer is missing.
pub fn browser_login(ctx: &Ctx, account: &str, password: &str) -> Result<Option<(String, String)>, String> {
    let now = ts(ctx.offset_s);
    let tok = token::seal(&key(SP_KEY), SP_ID, &[&now, RETURN_URL], &[SP_ID, &now, RETURN_URL]);
    let mut jar: Vec<(String, String)> = Vec::new();
    let page = browse(ctx, "GET", &format!("/sso/login?SSORequest={}", q(&tok)), &[], &mut jar)?;
    if page.status != 200 {
        return Err(format!("login page: HTTP {}", page.status));
    }
    let mut form = hidden_fields(&page.text());
    form.push(("account".into(), account.into()));
    form.push(("password".into(), password.into()));
    let r = browse(ctx, "POST", "/sso/login", &form, &mut jar)?;
    match r.status {
        302 => {}
        200 => return Ok(None),
        s => return Err(format!("login: HTTP {s}")),
    }
    let location = r.header("Location").ok_or("no Location")?.to_string();
    let (_, query) = location.split_once('?').ok_or("no query in the Location")?;
    let raw = query.split('&').find_map(|kv| kv.strip_prefix("SSOResponse=")).ok_or("no SSOResponse")?;
    let tok = percent_decode_str(raw).decode_utf8().map_err(|e| e.to_string())?.to_string();
    let (_, f, _) = token::open(&tok, 3, 3, |_| Some(key(SP_KEY))).map_err(|e| format!("SSOResponse: {e:?}"))?;
    if f[0] != "0" {
        return Ok(None);
    }
    let cookie = jar.iter().find(|(k, _)| k == "VNETSSO").map(|(_, v)| v.clone()).ok_or("no VNETSSO cookie")?;
    Ok(Some((f[1].clone(), cookie)))
}

fn browse(ctx: &Ctx, method: &str, path: &str, form: &[(String, String)], jar: &mut Vec<(String, String)>) -> Result<Http, String> {
    let cookie = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let body = form.iter().map(|(k, v)| format!("{}={}", q(k), q(v))).collect::<Vec<_>>().join("&");
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if !cookie.is_empty() {
        headers.push(("Cookie", &cookie));
    }
    let r = try_http(&ctx.addr, method, path, &headers, body.as_bytes(), Duration::from_secs(20)).map_err(|e| e.to_string())?;
    for (k, v) in &r.headers {
        if k.eq_ignore_ascii_case("Set-Cookie") {
            let Some((name, rest)) = v.split_once('=') else { continue };
            let value = rest.split(';').next().unwrap_or("").to_string();
            jar.retain(|(n, _)| n != name);
            if !v.contains("Max-Age=0") {
                jar.push((name.to_string(), value));
            }
        }
    }
    Ok(r)
}

/// The hidden inputs of the first form of a page, entities decoded.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let form = html.split("</form>").next().unwrap_or("");
    let unescape = |s: &str| s.replace("&#43;", "+").replace("&#34;", "\"").replace("&#39;", "'").replace("&#60;", "<").replace("&#62;", ">").replace("&#38;", "&");
    form.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = tag.split('>').next()?;
            if !tag.contains(r#"type="hidden""#) {
                return None;
            }
            let attr = |a: &str| tag.split(&format!(r#"{a}=""#)).nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_string();
            Some((attr("name"), unescape(&attr("value"))))
        })
        .collect()
}
