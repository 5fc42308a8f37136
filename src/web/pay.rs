//! Payment confirmation (spec 5.3, 11): `/pay` shows SP, item and fee; confirm charges under the
//! Charge rules, cancel answers -20512; then `302 ReturnURL?PayResponse=…`.

use super::pages::{self, Pay};
use super::sso::{sign_in, sign_in_message};
use super::tokens::{self, Opened, PAY_REQUEST};
use super::{yuan, Ctx, WebResponse};
use crate::crypto::random_bytes;
use crate::domain::billing::{self as bl, Channel, Kind, Req};
use crate::domain::calendar::Cal;
use crate::domain::catalog;
use crate::domain::sso::{self as store_sso, Claim, PayFor, Payment};
use crate::spec::codes::*;
use crate::spec::{Field, Ty};
use crate::runtime::logging::audit;
use crate::services::errors;

/// A PayRequest whose fields have their types (OrderID `s(32)`, ids `n(16)`, Fee `fen`).
fn well_formed(r: &Opened) -> bool {
    let f = |name: &'static str, ty: Ty| crate::spec::valid(&Field { name, ty, required: true }, r.get(name)) && !r.get(name).is_empty();
    f("OrderID", Ty::S(32)) && f("ServiceID", Ty::N(16)) && f("ServiceItemID", Ty::N(16)) && f("Fee", Ty::Fen)
}

fn pay_for(r: &Opened) -> PayFor {
    PayFor {
        spid: r.sp.id.clone(),
        order_id: r.get("OrderID").to_string(),
        service_id: r.get("ServiceID").to_string(),
        item_id: r.get("ServiceItemID").to_string(),
        fee: r.get("Fee").parse().unwrap_or(0),
    }
}

/// `PY` + 24 random letters and digits (spec 11).
fn new_txid() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // 248 = 4 × 62: bytes at or above it are dropped so every character is equally likely.
    let mut out = String::from("PY");
    while out.len() < 26 {
        for b in random_bytes(32) {
            if b < 248 && out.len() < 26 {
                out.push(ALNUM[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// Back to the SP with the outcome.
fn back(ctx: Ctx, r: &Opened, result: i32, txid: &str) -> WebResponse {
    let Some(tok) = tokens::pay_response(ctx.app, &r.sp, result, r.get("OrderID"), txid) else {
        log::error!("pay: SP {} has no key in effect; cannot answer", r.sp.id);
        return ctx.message(500, "系统繁忙", super::sso::BUSY, true);
    };
    ctx.redirect(302, tokens::append(r.return_url(), "PayResponse", &tok))
}

fn paid_already(ctx: Ctx, r: &Opened, p: &Payment) -> WebResponse {
    back(ctx, r, p.result, &p.transaction_id.clone())
}

/// Record a refusal that happened before the user could decide (e.g. an item not the SP's).
fn refuse_early(ctx: Ctx, r: &Opened, code: i32) -> WebResponse {
    let (p, now) = (pay_for(r), ctx.app.clock.unix());
    let w = ctx.app.store.write(move |c| store_sso::record_outcome(c, &p, "", store_sso::PAY_FAILED, code, "", now));
    match w {
        Ok(()) => back(ctx, r, code, ""),
        Err(e) => ctx.db_error(&e),
    }
}

fn show(ctx: Ctx, r: &Opened, raw: &str, user: &str, error: &str, account: &str) -> WebResponse {
    let p = pay_for(r);
    let names = ctx.app.store.read(|c| catalog::payment_names(c, &p.spid, &p.service_id, &p.item_id));
    let (sp_name, item_name) = match names {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return refuse_early(ctx, r, errors::code(e)),
        Err(e) => return ctx.db_error(&e),
    };
    let csrf = ctx.csrf("pay", raw);
    let fee = yuan(p.fee);
    let html = pages::render(&Pay {
        sp_name: &sp_name,
        item_name: &item_name,
        fee: &fee,
        order_id: &p.order_id,
        user,
        error,
        csrf: &csrf,
        pay_request: raw,
        account,
    });
    let origins = tokens::sp_origins(&r.sp);
    ctx.page(200, html, &origins)
}

/// A PayRequest, opened.
enum Start {
    Open(Opened),
    Refused(tokens::Refused),
    /// Its OrderID is paid already: answer with the first result at once (spec 11).
    Paid(Opened, Payment),
    Failed(crate::store::DbError),
}

/// Open and check a PayRequest (its TimeStamp only at the GET, `check_time`: the POST is bound by
/// its csrf token) and look its OrderID up.
fn open_request(ctx: &Ctx, raw: &str, check_time: bool) -> Start {
    let r = match tokens::open(ctx.app, raw, &PAY_REQUEST, check_time) {
        Ok(r) if well_formed(&r) => r,
        Ok(_) => return Start::Refused(tokens::Refused::Invalid),
        Err(e) => return Start::Refused(e),
    };
    let p = pay_for(&r);
    match ctx.app.store.read(|c| store_sso::payment(c, &p.spid, &p.order_id)) {
        Ok(Some(paid)) if paid.status == store_sso::PAY_PAID => Start::Paid(r, paid),
        Ok(_) => Start::Open(r),
        Err(e) => Start::Failed(e),
    }
}

/// `GET /pay?PayRequest=…`.
pub fn pay_page(ctx: Ctx) -> WebResponse {
    let raw = ctx.field("PayRequest").to_string();
    let r = match open_request(&ctx, &raw, true) {
        Start::Open(r) => r,
        Start::Refused(e) => return ctx.refused("PayRequest", e),
        Start::Paid(r, first) => return paid_already(ctx, &r, &first),
        Start::Failed(e) => return ctx.db_error(&e),
    };
    let p = pay_for(&r);
    let user = match ctx.session() {
        Ok(s) => s.map(|s| s.user.account).unwrap_or_default(),
        Err(e) => return ctx.db_error(&e),
    };
    let now = ctx.app.clock.unix();
    if let Err(e) = ctx.app.store.write(move |c| store_sso::note_pending(c, &p, now)) {
        return ctx.db_error(&e);
    }
    show(ctx, &r, &raw, &user, "", "")
}

/// The /pay rules of the item beyond the use rules: pay per use (FeeType 1, else -21501), Fee at
/// most the item's price × 1000 (-21518).
fn fee_rules(t: &bl::Target, fee: i64) -> Option<i32> {
    match t.item.as_ref() {
        Some(item) if item.fee_type != "1" => Some(BAD_FEE_TYPE),
        Some(item) if fee > item.price * 1000 => Some(BAD_FEE),
        Some(_) => None,
        None => Some(SERVICE_ITEM_ABNORMAL),
    }
}

/// The Charge a confirmation makes, as the SP would send it (channel SP).
fn charge_req(p: &PayFor, user_id: &str) -> Req {
    Req {
        kind: Kind::Charge,
        channel: Channel::Sp,
        spid: p.spid.clone(),
        service_id: p.service_id.clone(),
        item_id: Some(p.item_id.clone()),
        product_id: None,
        user_id: user_id.to_string(),
    }
}

/// A fresh `PY` TransactionID not yet used by the SP.
fn unused_txid(c: &crate::store::Read, spid: &str) -> crate::store::DbResult<String> {
    let mut txid = new_txid();
    while bl::txid_taken(c, spid, &txid)? {
        txid = new_txid();
    }
    Ok(txid)
}

/// The outcome of a confirmed payment: Result and TransactionID ('' unless paid).
struct Outcome {
    result: i32,
    txid: String,
}

/// Charge under the Charge rules (use rules, FeeType 1, Fee at most the item's price × 1000,
/// credit) with its CHARGE record and the payment row in one transaction. A paid OrderID is
/// answered with its first result and charges nothing, also for two confirmations at once (the
/// writer runs them one after the other and the second finds the first).
fn confirm(ctx: &Ctx, r: &Opened, user_id: &str) -> Result<Outcome, crate::store::DbError> {
    let app = ctx.app;
    let p = pay_for(r);
    let (cal, province, now, user) = (Cal::new(app.clock.tz()), app.cfg.node.province_id.clone(), app.clock.unix(), user_id.to_string());
    app.store.write(move |c| {
        if let Some(first) = store_sso::payment(c, &p.spid, &p.order_id)?.filter(|x| x.status == store_sso::PAY_PAID) {
            return Ok(Outcome { result: first.result, txid: first.transaction_id });
        }
        let ctx = bl::WriteCtx::new(c, cal, &province, now);
        let req = charge_req(&p, &user);
        let charged = match bl::resolve(&ctx, &req)? {
            Err(e) => Err(errors::code(e)),
            // A session user of another province is charged by `confirm_roaming`.
            Ok(t) if t.user.is_none() => Err(REGION_NOT_ALLOWED),
            Ok(t) => {
                if let Some(code) = fee_rules(&t, p.fee) {
                    Err(code)
                } else {
                    let txid = unused_txid(c, &p.spid)?;
                    // A confirmation is a Charge of one use on the SP's behalf.
                    let charge = crate::spec::incoming::Charge::Request {
                        SPID: p.spid.clone(),
                        ServiceID: p.service_id.clone(),
                        ServiceItemID: p.item_id.clone(),
                        VNetUserID: user.clone(),
                        Fee: p.fee.to_string(),
                        TransactionID: txid.clone(),
                        ..Default::default()
                    };
                    bl::charge(&ctx, &t, &charge)?.map(|_| txid).map_err(errors::code)
                }
            }
        };
        let out = match charged {
            Ok(txid) => {
                store_sso::record_outcome(c, &p, &user, store_sso::PAY_PAID, OK, &txid, now)?;
                Outcome { result: OK, txid }
            }
            Err(code) => {
                store_sso::record_outcome(c, &p, &user, store_sso::PAY_FAILED, code, "", now)?;
                Outcome { result: code, txid: String::new() }
            }
        };
        Ok(out)
    })
}

/// Confirmation by a user of another province (logged in through the centre): roaming
/// consumption (spec 6.9) under the same /pay rules. This node checks the service, the item, its
/// roam-out approval and the fee; the centre's Charge (the user's home province bills the user)
/// decides; on Result 0 a roaming usage row is kept for reconciliation and SETTLE. The
/// TransactionID is claimed in the payment row before the call, so two confirmations at once send
/// one Charge, and a retry after a timeout or a crash asks the centre again under the same id.
fn confirm_roaming(ctx: &Ctx, r: &Opened, user_id: &str) -> Result<Outcome, crate::store::DbError> {
    let app = ctx.app;
    let p = pay_for(r);
    let (cal, province, user) = (Cal::new(app.clock.tz()), app.cfg.node.province_id.clone(), user_id.to_string());
    let req = charge_req(&p, &user);
    let now = app.clock.unix();
    let checked = app.store.read(|c| {
        let ctx = bl::Ctx::new(c, cal, &province, now);
        Ok(match bl::resolve(&ctx, &req)? {
            Err(e) => Err(errors::code(e)),
            Ok(t) => fee_rules(&t, p.fee).map_or(Ok(t), Err),
        })
    })?;
    let t = match checked {
        Ok(t) => t,
        Err(code) => {
            let (p, user) = (p.clone(), user.clone());
            return app.store.write(move |c| {
                if let Some(first) = store_sso::payment(c, &p.spid, &p.order_id)?.filter(|x| x.status == store_sso::PAY_PAID) {
                    return Ok(Outcome { result: first.result, txid: first.transaction_id });
                }
                store_sso::record_outcome(c, &p, &user, store_sso::PAY_FAILED, code, "", now)?;
                Ok(Outcome { result: code, txid: String::new() })
            });
        }
    };
    // An attempt younger than this is another confirmation's, waiting for the centre.
    let in_flight_s = (app.cfg.sync.centre_timeout_ms / 1000) as i64 + 5;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(in_flight_s as u64 + 2);
    let txid = loop {
        let (p, user, now) = (p.clone(), user.clone(), app.clock.unix());
        let claim = app.store.write(move |c| {
            let fresh = unused_txid(c, &p.spid)?;
            store_sso::claim_attempt(c, &p, &user, &fresh, now, in_flight_s)
        })?;
        match claim {
            Claim::Paid(first) => return Ok(Outcome { result: first.result, txid: first.transaction_id }),
            Claim::Mine(txid) => break txid,
            Claim::Busy if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(100)),
            Claim::Busy => return Ok(Outcome { result: SYSTEM_ERROR, txid: String::new() }),
        }
    };
    let charge = crate::spec::outbound::Charge::Payload {
        SPID: p.spid.clone(),
        ServiceID: p.service_id.clone(),
        ServiceItemID: p.item_id.clone(),
        VNetUserID: user.clone(),
        Fee: p.fee.to_string(),
        BatchCount: "1".to_string(),
        TransactionID: txid.clone(),
    };
    let result = match crate::services::centre::call(app, &crate::spec::outbound::CHARGE, charge.values()) {
        Ok(a) => a.result,
        Err(r) => r.result,
    };
    let now = app.clock.unix();
    // The centre stores business answers by TransactionID, not parameter or system errors (spec
    // 11): after those (and a timeout, -22500) the next try reuses the id.
    let keep_txid = !crate::services::Resp::code(result).storable();
    let usage = (result == OK).then(|| bl::NewCharge { fee: p.fee, ..t.roaming_usage("RoamingCharge", &user, &txid, "", cal, now) });
    app.store.write(move |c| {
        if let Some(u) = usage {
            if !bl::txid_taken(c, &u.spid, &u.transaction_id)? {
                bl::insert_charge(c, &u)?;
            }
        }
        let paid_txid = if result == OK { txid.as_str() } else { "" };
        store_sso::finish_attempt(c, &p, &user, result, paid_txid, keep_txid, now)?;
        Ok(Outcome { result, txid: paid_txid.to_string() })
    })
}

/// `POST /pay`: csrf, action (`confirm` or `cancel`), the original PayRequest and, without a
/// session, account and password.
pub fn pay_submit(mut ctx: Ctx) -> WebResponse {
    let raw = ctx.field("PayRequest").to_string();
    if !ctx.csrf_ok("pay", &raw) {
        return ctx.csrf_refused();
    }
    let r = match open_request(&ctx, &raw, false) {
        Start::Open(r) => r,
        Start::Refused(e) => return ctx.refused("PayRequest", e),
        Start::Paid(r, first) => return paid_already(ctx, &r, &first),
        Start::Failed(e) => return ctx.db_error(&e),
    };
    let p = pay_for(&r);
    let session = match ctx.session() {
        Ok(s) => s,
        Err(e) => return ctx.db_error(&e),
    };
    let now = ctx.app.clock.unix();
    match ctx.field("action") {
        "cancel" => {
            let user = session.map(|s| s.user.vnet_user_id).unwrap_or_default();
            let w = ctx.app.store.write(move |c| {
                if let Some(first) = store_sso::payment(c, &p.spid, &p.order_id)?.filter(|x| x.status == store_sso::PAY_PAID) {
                    return Ok(Some(first));
                }
                store_sso::record_outcome(c, &p, &user, store_sso::PAY_CANCELLED, USER_CANCELLED_PAY, "", now)?;
                Ok(None)
            });
            match w {
                Ok(Some(first)) => paid_already(ctx, &r, &first),
                Ok(None) => {
                    audit("payment_cancelled", &[("sp", &r.sp.id), ("order", r.get("OrderID"))]);
                    back(ctx, &r, USER_CANCELLED_PAY, "")
                }
                Err(e) => ctx.db_error(&e),
            }
        }
        "confirm" => {
            let session = match session {
                Some(s) => s,
                None => {
                    let account = ctx.field("account").trim().to_string();
                    let password = ctx.field("password").to_string();
                    match sign_in(ctx.app, &r.sp.id, &account, &password, &ctx.rq.client_ip) {
                        Ok(u) => match ctx.start_session(u) {
                            Ok(s) => s,
                            Err(e) => return ctx.db_error(&e),
                        },
                        Err(e) => return show(ctx, &r, &raw, "", sign_in_message(&e), &account),
                    }
                }
            };
            let outcome = if session.user.local {
                confirm(&ctx, &r, &session.user.vnet_user_id)
            } else {
                confirm_roaming(&ctx, &r, &session.user.vnet_user_id)
            };
            match outcome {
                Ok(o) => {
                    let fee = r.get("Fee");
                    audit(
                        "payment",
                        &[("sp", &r.sp.id), ("order", r.get("OrderID")), ("user", &session.user.vnet_user_id), ("fee", fee), ("result", &o.result.to_string())],
                    );
                    back(ctx, &r, o.result, &o.txid)
                }
                Err(e) => ctx.db_error(&e),
            }
        }
        _ => ctx.message(400, "请求无效", "请选择确认支付或取消。", true),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transaction_ids() {
        let t = super::new_txid();
        assert_eq!(t.len(), 26);
        assert!(t.starts_with("PY") && t.bytes().all(|b| b.is_ascii_alphanumeric()), "{t}");
        assert_ne!(t, super::new_txid());
    }
}
