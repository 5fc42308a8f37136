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
use crate::domain::sso::{self as store_sso, PayFor, Payment};
use crate::ops::codes::*;
use crate::ops::{pipeline, Field, Ty};
use crate::ops_support::logging::audit;

/// A PayRequest whose fields have their types (OrderID `s(32)`, ids `n(16)`, Fee `fen`).
fn well_formed(r: &Opened) -> bool {
    let f = |name: &'static str, ty: Ty| pipeline::valid(&Field { name, ty, required: true }, r.get(name)) && !r.get(name).is_empty();
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
        Ok(Err(code)) => return refuse_early(ctx, r, code),
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

/// `GET /pay?PayRequest=…`.
pub fn pay_page(ctx: Ctx) -> WebResponse {
    let raw = ctx.field("PayRequest").to_string();
    let r = match tokens::open(ctx.app, &raw, &PAY_REQUEST, true) {
        Ok(r) if well_formed(&r) => r,
        Ok(_) => return ctx.refused("PayRequest", tokens::Refused::Invalid),
        Err(e) => return ctx.refused("PayRequest", e),
    };
    let p = pay_for(&r);
    match ctx.app.store.read(|c| store_sso::payment(c, &p.spid, &p.order_id)) {
        Ok(Some(paid)) if paid.status == store_sso::PAY_PAID => return paid_already(ctx, &r, &paid),
        Ok(_) => {}
        Err(e) => return ctx.db_error(&e),
    }
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
        let ctx = bl::Ctx { conn: c, cal, province: &province, now };
        let req = Req {
            kind: Kind::Charge,
            channel: Channel::Sp,
            spid: p.spid.clone(),
            service_id: p.service_id.clone(),
            item_id: Some(p.item_id.clone()),
            product_id: None,
            user_id: user.clone(),
        };
        let charged = match bl::resolve(&ctx, &req)? {
            Err(code) => Err(code),
            // A user of another province is billed by that province through the centre (6.9);
            // that path is not built for /pay (see docs/web.md).
            Ok(t) if t.user.is_none() => Err(REGION_NOT_ALLOWED),
            Ok(t) => {
                let item = t.item.as_ref().expect("ServiceItemID given");
                if item.fee_type != "1" {
                    Err(BAD_FEE_TYPE)
                } else if p.fee > item.price * 1000 {
                    Err(BAD_FEE)
                } else {
                    let mut txid = new_txid();
                    while bl::txid_taken(c, &p.spid, &txid)? {
                        txid = new_txid();
                    }
                    bl::charge(&ctx, &t, p.fee, 1, &txid)?.map(|_| txid)
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

/// `POST /pay`: csrf, action (`confirm` or `cancel`), the original PayRequest and, without a
/// session, account and password.
pub fn pay_submit(mut ctx: Ctx) -> WebResponse {
    let raw = ctx.field("PayRequest").to_string();
    if !ctx.csrf_ok("pay", &raw) {
        return ctx.csrf_refused();
    }
    let r = match tokens::open(ctx.app, &raw, &PAY_REQUEST, false) {
        Ok(r) if well_formed(&r) => r,
        Ok(_) => return ctx.refused("PayRequest", tokens::Refused::Invalid),
        Err(e) => return ctx.refused("PayRequest", e),
    };
    let p = pay_for(&r);
    match ctx.app.store.read(|c| store_sso::payment(c, &p.spid, &p.order_id)) {
        Ok(Some(paid)) if paid.status == store_sso::PAY_PAID => return paid_already(ctx, &r, &paid),
        Ok(_) => {}
        Err(e) => return ctx.db_error(&e),
    }
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
            match confirm(&ctx, &r, &session.user.vnet_user_id) {
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
