//! The operations the simulated centre answers: every outgoing operation the node declares in
//! `spec::outbound` (spec 6.1–6.7, 6.9, and an SP's OrderNotify 6.8), the envelope checks, and what
//! each operation stores.

use super::store::{self, Store};
use crate::clock::Clock;
use crate::crypto::{self, TdesKey};
use crate::domain::calendar::Cal;
use crate::spec::codes;
use crate::spec::outbound::{self, OutOp};
use crate::soap::envelope::{Elem, SoapVersion};
use crate::soap::writer::{self, Value};
use std::collections::HashMap;

/// Namespaces of the centre's operations and of an SP's OrderNotify endpoint (spec 6).
pub use crate::spec::outbound::{CENTRE_NS, SP_NS};
/// ±seconds a TimeStamp may differ from the simulator's clock.
pub const CLOCK_TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UserInfo,
    PasswordNotify,
    RoamRevoke,
    ClockSync,
    RoamAuth,
    Consumption,
    BatchSync,
    OrderNotify,
}

/// What the simulator does with a declared outgoing operation of the node; `None`: not answered.
fn kind_of(o: &OutOp) -> Option<Kind> {
    Some(match o.name {
        "PUserInfoNotify" => Kind::UserInfo,
        "PUserPasswordNotify" | "PasswordReset" => Kind::PasswordNotify,
        "RoamServiceRevoke" => Kind::RoamRevoke,
        "ClockSync" => Kind::ClockSync,
        "RoamAuthV2" => Kind::RoamAuth,
        "BatchSync" => Kind::BatchSync,
        "OrderNotify" => Kind::OrderNotify,
        _ if o.section == "6.9" => Kind::Consumption,
        _ => return None,
    })
}

/// One operation, as declared in `spec::outbound`: request fields in Authenticator order
/// (TimeStamp included, Authenticator excluded: it always follows; BatchSync's Records follows it
/// and is not signed), the `enc` fields, and the response fields after Result and ErrDescription.
#[derive(Debug, Clone, Copy)]
pub struct OpDef {
    pub name: &'static str,
    pub ns: &'static str,
    pub request: &'static [&'static str],
    pub response: &'static [&'static str],
    /// Fields carrying a password (`enc`): decrypted to check them, never stored or logged.
    secrets: &'static [&'static str],
    kind: Kind,
}

/// The operation named by a request's wrapper element: every outgoing operation the node declares.
pub fn op(name: &str) -> Option<OpDef> {
    let o = outbound::find(name)?;
    Some(OpDef { name: o.name, ns: o.namespace(), request: o.signed(), response: o.response, secrets: o.enc, kind: kind_of(o)? })
}

/// What is stored in place of a secret that decrypted correctly.
pub const SECRET_PLACEHOLDER: &str = "password ok";

/// The simulated centre.
pub struct Sim {
    /// Keys that verify centre messages (any of them; several for key-rotation tests).
    pub keys: Vec<TdesKey>,
    /// SPs whose OrderNotify endpoint is simulated, with their keys.
    pub sp_keys: HashMap<String, TdesKey>,
    /// The simulator's clock (UTC+08:00).
    pub clock: Clock,
    /// Seconds added to the ServerTime that ClockSync answers (to provoke the node's clock alarm).
    pub clock_offset_s: i64,
    pub store: Store,
}

/// An answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub op: OpDef,
    pub result: i32,
    pub desc: String,
    pub values: HashMap<&'static str, String>,
}

impl Answer {
    /// The response document: Result, ErrDescription, then every listed field (empty when absent).
    pub fn render(&self, version: SoapVersion) -> String {
        let mut fields: Vec<(&str, Value, &str)> = vec![("Result", Value::Text(self.result.to_string()), ""), ("ErrDescription", Value::Text(self.desc.clone()), "")];
        for name in self.op.response {
            fields.push((name, Value::Text(self.values.get(name).cloned().unwrap_or_default()), ""));
        }
        writer::response(version, self.op.ns, self.op.name, &fields, "UTF-8")
    }
}

/// A non-zero Result, with any response fields it carries (BatchSync's LastSequenceID).
struct Reject {
    code: i32,
    desc: String,
    values: HashMap<&'static str, String>,
}

impl Reject {
    fn code(code: i32) -> Reject {
        Reject { code, desc: codes::describe(code).to_string(), values: HashMap::new() }
    }
    fn new(code: i32, desc: impl Into<String>) -> Reject {
        Reject { code, desc: desc.into(), values: HashMap::new() }
    }
    fn db(e: rusqlite::Error) -> Reject {
        log::error!("centre-sim database error: {e}");
        Reject::code(codes::SYSTEM_ERROR)
    }
}

/// An accepted request: its response fields and a short note for the log.
struct Accept {
    values: HashMap<&'static str, String>,
    note: String,
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// For logs: at most 40 characters of a value sent by the peer.
fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The request's values by field name (local names; first occurrence; absent = "").
struct Req<'a> {
    elem: &'a Elem,
}

impl<'a> Req<'a> {
    fn get(&self, name: &str) -> &'a str {
        self.elem.child(name).map(|c| c.text.as_str()).unwrap_or("")
    }
}

impl Sim {
    /// Answer one request; `None` when the operation is not declared in `spec::outbound` (see [`op`]) (a Client fault).
    pub fn handle(&self, elem: &Elem) -> Option<Answer> {
        let def = op(&elem.name)?;
        let req = Req { elem };
        let src = req.get(def.request[0]);
        let at = self.clock.now_ts();
        let outcome = match self.envelope(&def, &req) {
            Ok(key) => match def.kind {
                Kind::BatchSync => self.batch_sync(&def, &req, &at),
                _ => self.message(&def, &req, key, &at),
            },
            Err(r) => Err(r),
        };
        Some(match outcome {
            Ok(acc) => {
                log::info!("centre-sim: accepted {} from {}{}", def.name, short(src), acc.note);
                Answer { op: def, result: codes::OK, desc: String::new(), values: acc.values }
            }
            Err(r) => {
                log::info!("centre-sim: rejected {} from {}: Result {} ({})", def.name, short(src), r.code, r.desc);
                if let Err(e) = self.store.reject(def.name, src, r.code, &r.desc, &at) {
                    log::error!("centre-sim database error: {e}");
                }
                Answer { op: def, result: r.code, desc: r.desc, values: r.values }
            }
        })
    }

    /// Caller id, Authenticator (the key that verified it is returned), TimeStamp.
    fn envelope(&self, def: &OpDef, req: &Req) -> Result<&TdesKey, Reject> {
        let src = req.get(def.request[0]);
        let keys: Vec<&TdesKey> = if def.kind == Kind::OrderNotify {
            match self.sp_keys.get(src) {
                Some(k) => vec![k],
                None => return Err(Reject::code(codes::CALLER_UNKNOWN)),
            }
        } else {
            if !digits(src, 16) {
                return Err(Reject::new(codes::param_code("SrcDeviceNo"), "SrcDeviceNo must be 16 digits"));
            }
            self.keys.iter().collect()
        };
        let signed: Vec<&str> = def.request.iter().map(|f| req.get(f)).collect();
        let given = req.get("Authenticator");
        let key = keys.into_iter().find(|k| crypto::verify_authenticator(k, &signed, given)).ok_or_else(|| Reject::code(codes::BAD_AUTHENTICATOR))?;
        let now = self.clock.unix();
        let fresh = self.clock.parse_ts(req.get("TimeStamp")).is_some_and(|ts| (ts - now).abs() <= CLOCK_TOLERANCE_S);
        if !fresh {
            return Err(Reject::new(codes::BAD_TIMESTAMP, "TimeStamp missing, malformed or outside the clock tolerance"));
        }
        Ok(key)
    }

    /// Field syntax the simulator checks, then secrets; returns the fields to store (JSON object).
    fn fields(&self, def: &OpDef, req: &Req, key: &TdesKey) -> Result<serde_json::Map<String, serde_json::Value>, Reject> {
        let has = |f: &str| def.request.contains(&f);
        if has("ProvinceID") && !digits(req.get("ProvinceID"), 2) {
            return Err(Reject::new(codes::param_code("ProvinceID"), "ProvinceID must be 2 digits"));
        }
        if has("VNetUserID") && !digits(req.get("VNetUserID"), 12) {
            return Err(Reject::new(codes::param_code("VNetUserID"), "VNetUserID must be 12 digits"));
        }
        if has("TransactionID") {
            let t = req.get("TransactionID");
            if t.is_empty() || t.len() > 32 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(Reject::new(codes::BAD_TRANSACTION_ID, "TransactionID must be 1 to 32 of [A-Za-z0-9_-]"));
            }
        }
        if def.kind == Kind::UserInfo && !matches!(req.get("ActionType"), "1" | "2" | "3") {
            return Err(Reject::new(codes::param_code("ActionType"), "ActionType must be 1, 2 or 3"));
        }
        let mut out = serde_json::Map::new();
        for f in def.request {
            let v = req.get(f);
            if def.secrets.contains(f) {
                match crypto::decrypt_enc_field(key, v) {
                    // The plaintext is dropped here: only the fact that it decrypted is kept.
                    Ok(_) => out.insert(f.to_string(), SECRET_PLACEHOLDER.into()),
                    Err(e) => return Err(Reject::new(e.code(), format!("{f}: {e}"))),
                };
            } else {
                out.insert(f.to_string(), v.into());
            }
        }
        Ok(out)
    }

    /// Every operation but BatchSync: checks, then (in one transaction) the idempotency look-up,
    /// the business check, and the stored message.
    fn message(&self, def: &OpDef, req: &Req, key: &TdesKey, at: &str) -> Result<Accept, Reject> {
        let fields = self.fields(def, req, key)?;
        let src = req.get(def.request[0]);
        let now = self.clock.unix();
        // RoamAuthV2 is an authentication, not a state change: no replay (spec 11).
        let idempotent = def.request.contains(&"TransactionID") && def.kind != Kind::RoamAuth;
        let fields_json = serde_json::Value::Object(fields).to_string();
        let outcome = self.store.with_tx(|tx| {
            if idempotent {
                let spid = def.request.contains(&"SPID").then(|| req.get("SPID"));
                if let Some((old_fields, old_resp)) = store::find_transaction(tx, def.name, src, spid, req.get("TransactionID"))? {
                    let strip = |json: &str| {
                        let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
                        m.remove("TimeStamp");
                        m
                    };
                    if strip(&old_fields) != strip(&fields_json) {
                        return Ok(Err(Reject::new(codes::BAD_TRANSACTION_ID, "TransactionID already used with different fields")));
                    }
                    let old: HashMap<String, String> = serde_json::from_str(&old_resp).unwrap_or_default();
                    let values = def.response.iter().map(|f| (*f, old.get(*f).cloned().unwrap_or_default())).collect();
                    return Ok(Ok(Accept { values, note: format!(" (repeat of TransactionID {}: same answer, not stored again)", short(req.get("TransactionID"))) }));
                }
            }
            let values = match self.business(def, req, key, tx, now)? {
                Ok(v) => v,
                Err(r) => return Ok(Err(r)),
            };
            let resp: serde_json::Map<String, serde_json::Value> = def.response.iter().map(|f| (f.to_string(), values.get(f).cloned().unwrap_or_default().into())).collect();
            let id = store::insert_message(tx, def.name, src, &fields_json, &serde_json::Value::Object(resp).to_string(), at)?;
            Ok(Ok(Accept { values, note: note(def, req, id) }))
        });
        outcome.map_err(Reject::db)?
    }

    /// The operation's own rules and response values.
    fn business(&self, def: &OpDef, req: &Req, key: &TdesKey, tx: &rusqlite::Connection, now: i64) -> rusqlite::Result<Result<HashMap<&'static str, String>, Reject>> {
        let mut v: HashMap<&'static str, String> = HashMap::new();
        let cal = Cal::new(self.clock.tz());
        let month_end = cal.ts(cal.month_end(cal.month(now)));
        let now_ts = self.clock.format_ts(now);
        match def.kind {
            Kind::UserInfo => {
                v.insert("ContractID", format!("C{}", req.get("VNetUserID")));
            }
            Kind::PasswordNotify | Kind::RoamRevoke | Kind::OrderNotify | Kind::BatchSync => {}
            Kind::ClockSync => {
                v.insert("ServerTime", self.clock.format_ts(now + self.clock_offset_s));
            }
            Kind::RoamAuth => {
                let Some(user) = store::user_by_account(tx, req.get("AccountType"), req.get("Account"))? else {
                    return Ok(Err(Reject::code(codes::ACCOUNT_UNKNOWN)));
                };
                // The Password was checked to decrypt in `fields`; decrypted again only to compare.
                let matches = crypto::decrypt_enc_field(key, req.get("Password")).is_ok_and(|p| user.password_matches(&p));
                if !matches {
                    return Ok(Err(Reject::code(codes::AUTH_FAILED)));
                }
                v.insert("VNetUserID", user.vnet_user_id);
                v.insert("ProvinceID", user.province_id);
                v.insert("CityCode", user.city_code);
                v.insert("UserType", "1".into());
                v.insert("Status", "00".into());
            }
            Kind::Consumption => {
                let user = req.get("VNetUserID");
                if !store::user_exists(tx, user)? {
                    return Ok(Err(Reject::code(codes::ACCOUNT_UNKNOWN)));
                }
                let new_order_id = || -> rusqlite::Result<String> { Ok(format!("SIM{:010}", store::next_message_id(tx)?)) };
                let existing = || store::latest_order_id(tx, user, req.get("SPID"), req.get("ServiceID"), req.get("ServiceItemID"), req.get("ProductID"));
                match def.name {
                    "ServiceAuth" => {
                        v.insert("FeeType", "2".into());
                        v.insert("EndTime", month_end);
                    }
                    "Order" => {
                        v.insert("OrderID", new_order_id()?);
                        v.insert("StartTime", now_ts);
                        v.insert("EndTime", month_end);
                    }
                    "CancelOrder" => {
                        v.insert("OrderID", match existing()? {
                            Some(id) => id,
                            None => new_order_id()?,
                        });
                        v.insert("EndTime", if req.get("StopType") == "2" { now_ts } else { month_end });
                    }
                    "ReOrder" => {
                        v.insert("OrderID", match existing()? {
                            Some(id) => id,
                            None => new_order_id()?,
                        });
                        v.insert("StartTime", now_ts);
                        v.insert("EndTime", month_end);
                    }
                    _ => {
                        v.insert("TransactionID", req.get("TransactionID").to_string());
                        v.insert("ChargeTime", now_ts);
                    }
                }
            }
        }
        Ok(Ok(v))
    }

    /// BatchSync: structure, RecordsDigest, then (one transaction) the gap check and the records.
    fn batch_sync(&self, def: &OpDef, req: &Req, at: &str) -> Result<Accept, Reject> {
        let stream = req.get("Stream");
        let Some(names) = outbound::stream(stream).map(|s| s.fields) else {
            return Err(Reject::new(codes::BAD_PARAMETER, "unknown Stream"));
        };
        // Problems with the batch itself answer -21500 with the stream's LastSequenceID.
        let bad = |desc: &str| {
            let mut r = Reject::new(codes::BAD_PARAMETER, desc);
            match self.store.with_tx(|tx| store::stream_state(tx, stream)) {
                Ok((last, _)) => {
                    r.values.insert("LastSequenceID", last.to_string());
                }
                Err(e) => return Reject::db(e),
            }
            r
        };
        if !digits(req.get("ProvinceID"), 2) {
            return Err(Reject::new(codes::param_code("ProvinceID"), "ProvinceID must be 2 digits"));
        }
        let seq_id: i64 = match req.get("SequenceID").parse() {
            Ok(n) if n >= 1 && req.get("SequenceID").bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad("SequenceID must be a positive integer")),
        };
        let total: usize = match req.get("TotalCount").parse() {
            Ok(n) if req.get("TotalCount").bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad("TotalCount must be a non-negative integer")),
        };
        if !matches!(req.get("IsFinal"), "0" | "1") {
            return Err(bad("IsFinal must be 0 or 1"));
        }
        let records: Vec<Vec<String>> = req
            .elem
            .child("Records")
            .map(|rs| {
                rs.children
                    .iter()
                    .filter(|r| r.name == "Record")
                    .map(|r| names.iter().map(|n| r.child(n).map(|c| c.text.clone()).unwrap_or_default()).collect())
                    .collect()
            })
            .unwrap_or_default();
        if records.len() != total {
            return Err(bad(&format!("TotalCount {total} but {} records", records.len())));
        }
        let mut seqs = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let expect = seq_id + i as i64;
            if r[0] != expect.to_string() {
                return Err(bad(&format!("RecordSeq of record {} is not {expect} (SequenceID, SequenceID+1, ...)", i + 1)));
            }
            seqs.push(expect);
        }
        if !crypto::ct_eq(crypto::records_digest(&records).as_bytes(), req.get("RecordsDigest").as_bytes()) {
            return Err(bad("RecordsDigest does not match the records"));
        }
        let outcome = self.store.with_tx(|tx| {
            let (last, _) = store::stream_state(tx, stream)?;
            if seq_id > last + 1 {
                let mut r = Reject::new(codes::param_code("SequenceID"), format!("gap: next expected RecordSeq is {}", last + 1));
                r.values.insert("LastSequenceID", last.to_string());
                return Ok(Err(r));
            }
            store::store_batch(tx, stream, &seqs, &records, at).map(Ok)
        });
        let stored = outcome.map_err(Reject::db)??;
        if stored.differing > 0 {
            log::warn!("centre-sim: BatchSync {stream}: {} duplicate record(s) differ from the stored ones (kept the first)", stored.differing);
        }
        let range = if records.is_empty() { "no records".to_string() } else { format!("RecordSeq {}..{}", seq_id, seq_id + records.len() as i64 - 1) };
        let mut values = HashMap::new();
        values.insert(def.response[0], stored.last_seq.to_string());
        Ok(Accept {
            values,
            note: format!(" (stream {stream}, {range}, IsFinal {}: {} stored, {} duplicate(s) dropped, LastSequenceID {})", req.get("IsFinal"), stored.stored, stored.duplicates, stored.last_seq),
        })
    }
}

/// A log note naming the message (identifiers only, never secrets).
fn note(def: &OpDef, req: &Req, id: i64) -> String {
    let mut parts = vec![format!("message {id}")];
    for f in ["VNetUserID", "SPID", "ServiceID", "OrderID", "TransactionID", "ActionType"] {
        if def.request.contains(&f) && !req.get(f).is_empty() {
            parts.push(format!("{f} {}", short(req.get(f))));
        }
    }
    format!(" ({})", parts.join(", "))
}

#[cfg(test)]
mod tests;
