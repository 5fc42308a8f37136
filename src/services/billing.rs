//! Ordering, charging, billing and reconciliation operations of ProvinceForSP, ProvinceForBSS
//! and ProvinceForVNet (spec 4.1, 4.3, 4.4, 11): fields in, domain call, fields out.

use crate::app::App;
use crate::clock::Clock;
use crate::domain::billing::{self as bl, Channel, Ctx, Kind, Req, Target, WriteCtx};
use crate::domain::calendar::{Cal, Ym};
use crate::spec::codes::*;
use crate::services::write_idempotent;
use crate::services::{Call, Resp};
use crate::spec::Service;
use crate::services::{centre, errors};
use crate::store::DbResult;

fn channel(call: &Call) -> Channel {
    match call.op.service {
        Service::ProvinceForSP => Channel::Sp,
        Service::ProvinceForBSS => Channel::Bss,
        Service::ProvinceForVNet => Channel::Centre,
        // No billing operation is declared for these services (ops/table.rs).
        Service::ProvinceForAAA | Service::ProvinceFor168 => unreachable!("billing call on {}", call.op.service.name()),
    }
}

/// The SP whose service a call names: the caller for ProvinceForSP (an SP names only its own
/// services), the SPID field otherwise.
fn spid(call: &Call) -> String {
    match call.op.service {
        Service::ProvinceForSP => call.caller_id().to_string(),
        _ => call.get("SPID").to_string(),
    }
}

fn request(call: &Call, kind: Kind) -> Req {
    Req {
        kind,
        channel: channel(call),
        spid: spid(call),
        service_id: call.get("ServiceID").to_string(),
        item_id: call.opt("ServiceItemID").map(str::to_string),
        product_id: call.opt("ProductID").map(str::to_string),
        user_id: call.get("VNetUserID").to_string(),
    }
}

/// A ProvinceForSP call naming a user of another province: roaming consumption (6.9).
fn is_roaming(app: &App, req: &Req) -> bool {
    req.channel == Channel::Sp && !req.user_id.starts_with(app.cfg.node.province_id.as_str())
}

/// The checks of the operation that need only the catalogue (after `resolve`): the exactly-one
/// rule, Charge's FeeType and Fee. Some(code) refuses.
fn own_catalogue_rules(kind: Kind, t: &Target, fee: i64, batch: i64) -> Option<i32> {
    match kind {
        Kind::Order | Kind::Cancel | Kind::ReOrder if !bl::exactly_one(t) => Some(BAD_PARAMETER),
        Kind::Charge => {
            let item = t.item.as_ref()?;
            if item.fee_type != "1" {
                Some(BAD_FEE_TYPE)
            } else if fee != item.price * batch {
                Some(BAD_FEE)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Roaming consumption (6.9): a local SP's service used by another province's user. The local
/// service must be approved for roaming out (-21001); then the centre's operation of the same name
/// answers, and on success a Charge, Order or ReOrder leaves a roaming usage row (RoamType 1) for
/// reconciliation and the day's SETTLE. No local user is charged.
fn roaming_consumption(app: &App, call: &Call, req: Req) -> Resp {
    let kind = req.kind;
    let (cal, now) = (Cal::new(app.clock.tz()), app.clock.unix());
    let province = app.cfg.node.province_id.as_str();
    let fee: i64 = call.get("Fee").parse().unwrap_or(0);
    let batch = batch_count(call);
    let txid = call.get("TransactionID").to_string();
    let checked = app.store.read(|conn| {
        let ctx = Ctx::new(conn, cal, province, now);
        Ok(match bl::resolve(&ctx, &req)? {
            Err(e) => Err(errors::code(e)),
            Ok(t) => match own_catalogue_rules(kind, &t, fee, batch) {
                Some(code) => Err(code),
                None if !txid.is_empty() && kind != Kind::Cancel && bl::txid_taken(conn, &t.svc.spid, &txid)? => Err(BAD_TRANSACTION_ID),
                None => Ok(t),
            },
        })
    });
    let t = match checked {
        Ok(Ok(t)) => t,
        Ok(Err(code)) if kind == Kind::ServiceAuth => return Resp::code(code),
        Ok(Err(code)) => return write_idempotent(app, call, move |_| Ok(Resp::code(code))),
        Err(e) => return Resp::db(&e),
    };
    // The centre's operation of the same name: the same fields after SrcDeviceNo and ProvinceID.
    let Some(op) = crate::spec::outbound::find(call.op.name) else {
        debug_assert!(false, "{} has no outgoing declaration", call.op.name);
        return Resp::code(SYSTEM_ERROR);
    };
    let fields = crate::spec::outbound::fill(op.payload(), |f| {
        debug_assert!(call.op.request.iter().any(|r| r.name == f), "{}: {f} is not a field of the request", op.name);
        Some(call.get(f).to_string())
    });
    let answer = match centre::call(app, op, fields) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let resp = centre::relay_answer(call, &answer);
    if kind == Kind::ServiceAuth {
        return resp;
    }
    let usage = (resp.result == OK && matches!(kind, Kind::Charge | Kind::Order | Kind::ReOrder)).then(|| {
        let operation = match kind {
            Kind::Charge => "RoamingCharge",
            Kind::Order => "RoamingOrder",
            _ => "RoamingReOrder",
        };
        let mut usage = t.roaming_usage(operation, &req.user_id, &txid, answer.get("OrderID"), cal, now);
        if kind == Kind::Charge {
            (usage.fee, usage.batch_count) = (fee, batch);
        }
        usage
    });
    write_idempotent(app, call, move |conn| {
        if let Some(c) = usage {
            if !bl::txid_taken(conn, &c.spid, &c.transaction_id)? {
                bl::insert_charge(conn, &c)?;
            }
        }
        Ok(resp)
    })
}

/// Run an idempotent ordering operation in the writer: resolve the request, then `f`.
fn ordering<F>(app: &App, call: &Call, kind: Kind, f: F) -> Resp
where
    F: FnOnce(&WriteCtx, Target) -> DbResult<Resp> + Send + 'static,
{
    let req = request(call, kind);
    if is_roaming(app, &req) {
        return roaming_consumption(app, call, req);
    }
    let (cal, province, now) = (Cal::new(app.clock.tz()), app.cfg.node.province_id.clone(), app.clock.unix());
    write_idempotent(app, call, move |conn| {
        let ctx = WriteCtx::new(conn, cal, &province, now);
        match bl::resolve(&ctx, &req)? {
            Err(e) => Ok(Resp::from(e)),
            // A user of another province reaches here only through another channel: unknown.
            Ok(t) if t.user.is_none() => Ok(Resp::code(ACCOUNT_UNKNOWN)),
            Ok(t) => f(&ctx, t),
        }
    })
}

fn order_times(cal: Cal, o: &bl::OrderRow) -> Resp {
    Resp::ok().with("OrderID", &o.order_id).with("StartTime", cal.ts(o.start_at)).with("EndTime", cal.ts(o.end_at))
}

pub fn service_auth(app: &App, call: &Call) -> Resp {
    let req = request(call, Kind::ServiceAuth);
    if is_roaming(app, &req) {
        return roaming_consumption(app, call, req);
    }
    let (cal, now) = (Cal::new(app.clock.tz()), app.clock.unix());
    let province = app.cfg.node.province_id.as_str();
    let r = app.store.read(|conn| {
        let ctx = Ctx::new(conn, cal, province, now);
        Ok(match bl::resolve(&ctx, &req)? {
            Err(e) => Resp::from(e),
            Ok(t) if t.user.is_none() => Resp::code(ACCOUNT_UNKNOWN),
            Ok(t) => match bl::service_auth(&ctx, &t)? {
                Ok((fee_type, end)) => Resp::ok().with("FeeType", fee_type).with("EndTime", end.map(|e| cal.ts(e)).unwrap_or_default()),
                Err(e) => Resp::from(e),
            },
        })
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}

pub fn order(app: &App, call: &Call) -> Resp {
    let (channel, contract, if_extend, txid) =
        (channel(call), call.get("ContractID").to_string(), call.get("IfExtend") == "1", call.get("TransactionID").to_string());
    ordering(app, call, Kind::Order, move |ctx, t| {
        if let Some(code) = own_catalogue_rules(Kind::Order, &t, 0, 1) {
            return Ok(Resp::code(code));
        }
        if bl::txid_taken(ctx.tx, &t.svc.spid, &txid)? {
            return Ok(Resp::code(BAD_TRANSACTION_ID));
        }
        Ok(match bl::order(ctx, &t, channel, &contract, if_extend, &txid)? {
            Ok(o) => order_times(ctx.cal, &o),
            Err(e) => Resp::from(e),
        })
    })
}

pub fn cancel_order(app: &App, call: &Call) -> Resp {
    let (channel, immediately) = (channel(call), call.get("StopType") == "2");
    ordering(app, call, Kind::Cancel, move |ctx, t| {
        if let Some(code) = own_catalogue_rules(Kind::Cancel, &t, 0, 1) {
            return Ok(Resp::code(code));
        }
        Ok(match bl::cancel(ctx, &t, channel, immediately)? {
            Ok(o) => Resp::ok().with("OrderID", &o.order_id).with("EndTime", ctx.cal.ts(o.end_at)),
            Err(e) => Resp::from(e),
        })
    })
}

pub fn reorder(app: &App, call: &Call) -> Resp {
    let (channel, txid) = (channel(call), call.get("TransactionID").to_string());
    ordering(app, call, Kind::ReOrder, move |ctx, t| {
        if let Some(code) = own_catalogue_rules(Kind::ReOrder, &t, 0, 1) {
            return Ok(Resp::code(code));
        }
        if bl::txid_taken(ctx.tx, &t.svc.spid, &txid)? {
            return Ok(Resp::code(BAD_TRANSACTION_ID));
        }
        Ok(match bl::reorder(ctx, &t, channel, &txid)? {
            Ok(o) => order_times(ctx.cal, &o),
            Err(e) => Resp::from(e),
        })
    })
}

/// BatchCount, 1 when absent (its range 1…1000 is checked with the syntax, in field order).
fn batch_count(call: &Call) -> i64 {
    call.opt("BatchCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Validation stage 2 of Charge: BatchCount 1…1000.
pub fn charge(app: &App, call: &Call) -> Resp {
    let fee: i64 = call.get("Fee").parse().unwrap_or(-1);
    let batch = batch_count(call);
    let txid = call.get("TransactionID").to_string();
    ordering(app, call, Kind::Charge, move |ctx, t| {
        if let Some(code) = own_catalogue_rules(Kind::Charge, &t, fee, batch) {
            return Ok(Resp::code(code));
        }
        if bl::txid_taken(ctx.tx, &t.svc.spid, &txid)? {
            return Ok(Resp::code(BAD_TRANSACTION_ID));
        }
        Ok(match bl::charge(ctx, &t, fee, batch, &txid)? {
            Ok(at) => Resp::ok().with("TransactionID", &txid).with("ChargeTime", ctx.cal.ts(at)),
            Err(e) => Resp::from(e),
        })
    })
}

/// Validation stage 2 of OfflineCharge: BillMonth is the current or the previous month.
pub fn check_offline_charge(call: &Call, clock: &Clock) -> Option<i32> {
    let this = Cal::new(clock.tz()).month(clock.unix());
    let ok = Ym::parse(call.get("BillMonth")).is_some_and(|m| m == this || m == this.prev());
    (!ok).then_some(BAD_BILL_MONTH)
}

pub fn offline_charge(app: &App, call: &Call) -> Resp {
    let fee: i64 = call.get("Fee").parse().unwrap_or(-1);
    let Some(month) = Ym::parse(call.get("BillMonth")) else {
        return Resp::code(BAD_BILL_MONTH);
    };
    let txid = call.get("TransactionID").to_string();
    ordering(app, call, Kind::Offline, move |ctx, t| {
        let item = t.item.as_ref().expect("ServiceItemID is required");
        if !t.svc.offline_payment {
            return Ok(Resp::code(OFFLINE_NOT_QUALIFIED));
        }
        if item.fee_type != "2" {
            return Ok(Resp::code(BAD_FEE_TYPE));
        }
        if fee != item.price {
            return Ok(Resp::code(BAD_FEE));
        }
        if bl::txid_taken(ctx.tx, &t.svc.spid, &txid)? {
            return Ok(Resp::code(BAD_TRANSACTION_ID));
        }
        Ok(match bl::offline_charge(ctx, &t, fee, month, &txid)? {
            Ok(()) => Resp::ok(),
            Err(e) => Resp::from(e),
        })
    })
}

pub fn charge_query(app: &App, call: &Call) -> Resp {
    let (sp, txid) = (spid(call), call.get("TransactionID"));
    let cal = Cal::new(app.clock.tz());
    match app.store.read(|c| bl::find_charge(c, &sp, txid)) {
        Ok(Some((user, service, item, fee, at))) => Resp::ok()
            .with("VNetUserID", user)
            .with("ServiceID", service)
            .with("ServiceItemID", item)
            .with("Fee", fee.to_string())
            .with("ChargeTime", cal.ts(at)),
        Ok(None) => Resp::code(NO_SUCH_CHARGE),
        Err(e) => Resp::db(&e),
    }
}

pub fn order_query(app: &App, call: &Call) -> Resp {
    let sp = match call.op.service {
        Service::ProvinceForSP => Some(call.caller_id().to_string()),
        _ => call.opt("SPID").map(str::to_string),
    };
    let cal = Cal::new(app.clock.tz());
    match app.store.read(|c| bl::user_orders(c, call.get("VNetUserID"), sp.as_deref(), call.opt("ServiceID"))) {
        Ok(orders) => {
            let items = orders
                .iter()
                .map(|o| {
                    vec![
                        ("OrderID".to_string(), o.order_id.clone()),
                        ("ServiceID".into(), o.service_id.clone()),
                        ("ServiceItemID".into(), o.service_item_id.clone()),
                        ("ProductID".into(), o.product_id.clone()),
                        ("Status".into(), o.status.clone()),
                        ("StartTime".into(), cal.ts(o.start_at)),
                        ("EndTime".into(), cal.ts(o.end_at)),
                        ("IfExtend".into(), if o.if_extend { "1" } else { "0" }.to_string()),
                    ]
                })
                .collect();
            Resp::ok().with_list("Orders", items)
        }
        Err(e) => Resp::db(&e),
    }
}

pub fn bill_query(app: &App, call: &Call) -> Resp {
    match app.store.read(|c| bl::bill(c, call.get("VNetUserID"), call.get("BillMonth"))) {
        Ok(lines) => {
            let total: i64 = lines.iter().map(|l| l.fee).sum();
            let items = lines
                .into_iter()
                .map(|l| {
                    vec![
                        ("SPID".to_string(), l.spid),
                        ("ServiceID".into(), l.service_id),
                        ("ServiceItemID".into(), l.service_item_id),
                        ("ServiceItemName".into(), l.service_item_name),
                        ("FeeType".into(), l.fee_type),
                        ("Count".into(), l.count.to_string()),
                        ("Fee".into(), l.fee.to_string()),
                    ]
                })
                .collect();
            Resp::ok().with("TotalFee", total.to_string()).with_list("Items", items)
        }
        Err(e) => Resp::db(&e),
    }
}

/// Reconcile and ReconDetail need a closed LedgerDate inside the window (-22003 / -22004).
fn ledger_date_open(app: &App, conn: &crate::store::Read, date8: &str) -> DbResult<Option<i32>> {
    let cal = Cal::new(app.clock.tz());
    let today = cal.date8(app.clock.unix());
    let (Some(day), Some(today_start)) = (cal.day_start(date8), cal.day_start(&today)) else {
        return Ok(Some(param_code("LedgerDate")));
    };
    if day < today_start - app.cfg.billing.recon_window_days * 86_400 {
        return Ok(Some(RECON_EXPIRED));
    }
    if !bl::day_closed(conn, date8)? {
        return Ok(Some(RECON_TOO_EARLY));
    }
    Ok(None)
}

/// Validation stage 2 of ReconDetail: pages count from 1.
pub fn check_recon_detail(call: &Call, _clock: &Clock) -> Option<i32> {
    (call.get("SequenceID").parse::<i64>().unwrap_or(0) < 1).then_some(param_code("SequenceID"))
}

pub fn reconcile(app: &App, call: &Call) -> Resp {
    let (sp, date) = (call.caller_id(), call.get("LedgerDate"));
    let (count, fee): (i64, i64) = (call.get("TotalCount").parse().unwrap_or(-1), call.get("TotalFee").parse().unwrap_or(-1));
    let r = app.store.read(|c| {
        if let Some(code) = ledger_date_open(app, c, date)? {
            return Ok(Resp::code(code));
        }
        let (local_count, local_fee) = bl::day_totals(c, sp, date)?;
        let balanced = local_count == count && (local_fee - fee).abs() <= app.cfg.billing.recon_tolerance_fen;
        let resp = if balanced { Resp::err(RECON_BALANCED, "") } else { Resp::code(RECON_UNBALANCED) };
        Ok(resp.with("LocalCount", local_count.to_string()).with("LocalFee", local_fee.to_string()))
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}

pub fn recon_detail(app: &App, call: &Call) -> Resp {
    let (sp, date) = (call.caller_id(), call.get("LedgerDate"));
    let page: i64 = call.get("SequenceID").parse().unwrap_or(1);
    let size = app.cfg.billing.recon_page_size;
    let cal = Cal::new(app.clock.tz());
    let r = app.store.read(|c| {
        if let Some(code) = ledger_date_open(app, c, date)? {
            return Ok(Resp::code(code));
        }
        let (total, _) = bl::day_totals(c, sp, date)?;
        let offset = (page - 1).saturating_mul(size);
        let lines = if offset < total { bl::day_detail(c, sp, date, offset, size)? } else { Vec::new() };
        let is_final = offset.saturating_add(lines.len() as i64) >= total;
        let records = lines
            .into_iter()
            .map(|(txid, user, service, item, fee_type, fee, at)| {
                vec![
                    ("TransactionID".to_string(), txid),
                    ("VNetUserID".into(), user),
                    ("ServiceID".into(), service),
                    ("ServiceItemID".into(), item),
                    ("FeeType".into(), fee_type),
                    ("Fee".into(), fee.to_string()),
                    ("ChargeTime".into(), cal.ts(at)),
                ]
            })
            .collect();
        Ok(Resp::ok()
            .with("SequenceID", page.to_string())
            .with("IsFinal", if is_final { "1" } else { "0" })
            .with("TotalCount", total.to_string())
            .with_list("Records", records))
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}
