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
use crate::spec::incoming::{
    BillQuery, CancelOrder, Charge, ChargeQuery, OfflineCharge, Order, OrderQuery, ReOrder, ReconDetail, Reconcile, Reply, ServiceAuth,
    UserOrderQuery,
};
use crate::spec::outbound::{self, OutOp};
use crate::store::DbResult;

fn channel(call: &Call) -> Channel {
    match call.op.service {
        Service::ProvinceForSP => Channel::Sp,
        Service::ProvinceForBSS => Channel::Bss,
        Service::ProvinceForVNet => Channel::Centre,
        // No billing operation is declared for these services (spec::incoming).
        Service::ProvinceForAAA | Service::ProvinceFor168 => unreachable!("billing call on {}", call.op.service.name()),
    }
}

/// What a billing request names: the SP, service, item, package and user.
fn target(call: &Call, kind: Kind, spid: String, service_id: String, item_id: Option<String>, product_id: Option<String>, user_id: String) -> Req {
    Req { kind, channel: channel(call), spid, service_id, item_id, product_id, user_id }
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

/// What a roaming consumption call bills besides its target: Charge's Fee and BatchCount, and
/// the TransactionID (empty for ServiceAuth).
struct Billed {
    fee: i64,
    batch: i64,
    txid: String,
}

impl Billed {
    fn txid(txid: &str) -> Billed {
        Billed { fee: 0, batch: 1, txid: txid.to_string() }
    }
}

/// Roaming consumption (6.9): a local SP's service used by another province's user. The local
/// service must be approved for roaming out (-21001); then the centre's operation of the same name
/// (`op`, whose fields are the request's after SrcDeviceNo and ProvinceID) answers as `R`, and on
/// success a Charge, Order or ReOrder leaves a roaming usage row (RoamType 1) for reconciliation and
/// the day's SETTLE. No local user is charged.
fn roaming_consumption<R: Reply>(app: &App, call: &Call, req: Req, op: &'static OutOp, billed: Billed) -> Resp {
    let kind = req.kind;
    let (cal, now) = (Cal::new(app.clock.tz()), app.clock.unix());
    let province = app.cfg.node.province_id.as_str();
    let Billed { fee, batch, txid } = billed;
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
    // Declaration-driven forwarding: every field the centre's operation declares, by name.
    let fields = crate::spec::outbound::fill(op.payload(), |f| {
        debug_assert!(call.op.request.iter().any(|r| r.name == f), "{}: {f} is not a field of the request", op.name);
        Some(call.raw(f).to_string())
    });
    let answer = match centre::call(app, op, fields) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let resp = centre::relay::<R>(&answer, |_| {});
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

/// Run an idempotent ordering operation of a local user in the writer: resolve the request,
/// then `f`. The time is read in the writer, in the transaction: an order queued before 00:00
/// on the 1st and written after the month rollover's marker must belong to the new month, or
/// no rollover would ever renew or expire it (the rollover's chunks go through the same writer).
fn ordering<F>(app: &App, call: &Call, req: Req, f: F) -> Resp
where
    F: FnOnce(&WriteCtx, Target) -> DbResult<Resp> + Send + 'static,
{
    let (cal, province, clock) = (Cal::new(app.clock.tz()), app.cfg.node.province_id.clone(), app.clock.clone());
    write_idempotent(app, call, move |conn| {
        let ctx = WriteCtx::new(conn, cal, &province, clock.unix());
        match bl::resolve(&ctx, &req)? {
            Err(e) => Ok(Resp::from(e)),
            // A user of another province reaches here only through another channel: unknown.
            Ok(t) if t.user.is_none() => Ok(Resp::code(ACCOUNT_UNKNOWN)),
            Ok(t) => f(&ctx, t),
        }
    })
}

fn order_times(cal: Cal, o: &bl::OrderRow) -> Resp {
    Order::Response { OrderID: o.order_id.clone(), StartTime: cal.ts(o.start_at), EndTime: cal.ts(o.end_at) }.into()
}

pub fn service_auth(app: &App, call: &Call, r: ServiceAuth::Request) -> Resp {
    let req = target(call, Kind::ServiceAuth, r.SPID, r.ServiceID, r.ServiceItemID, None, r.VNetUserID);
    if is_roaming(app, &req) {
        return roaming_consumption::<ServiceAuth::Response>(app, call, req, &outbound::SERVICE_AUTH, Billed::txid(""));
    }
    let (cal, now) = (Cal::new(app.clock.tz()), app.clock.unix());
    let province = app.cfg.node.province_id.as_str();
    let r = app.store.read(|conn| {
        let ctx = Ctx::new(conn, cal, province, now);
        Ok(match bl::resolve(&ctx, &req)? {
            Err(e) => Resp::from(e),
            Ok(t) if t.user.is_none() => Resp::code(ACCOUNT_UNKNOWN),
            Ok(t) => match bl::service_auth(&ctx, &t)? {
                Ok((fee_type, end)) => {
                    ServiceAuth::Response { FeeType: fee_type, EndTime: end.map(|e| cal.ts(e)).unwrap_or_default() }.into()
                }
                Err(e) => Resp::from(e),
            },
        })
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}

pub fn order(app: &App, call: &Call, r: Order::Request) -> Resp {
    let req = target(call, Kind::Order, r.SPID, r.ServiceID, r.ServiceItemID, r.ProductID, r.VNetUserID);
    let txid = r.TransactionID;
    if is_roaming(app, &req) {
        return roaming_consumption::<Order::Response>(app, call, req, &outbound::ORDER, Billed::txid(&txid));
    }
    let (channel, contract, if_extend) = (req.channel, r.ContractID.unwrap_or_default(), r.IfExtend == "1");
    ordering(app, call, req, move |ctx, t| {
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

pub fn cancel_order(app: &App, call: &Call, r: CancelOrder::Request) -> Resp {
    let req = target(call, Kind::Cancel, r.SPID, r.ServiceID, r.ServiceItemID, r.ProductID, r.VNetUserID);
    if is_roaming(app, &req) {
        return roaming_consumption::<CancelOrder::Response>(app, call, req, &outbound::CANCEL_ORDER, Billed::txid(&r.TransactionID));
    }
    let (channel, immediately) = (req.channel, r.StopType.as_deref() == Some("2"));
    ordering(app, call, req, move |ctx, t| {
        if let Some(code) = own_catalogue_rules(Kind::Cancel, &t, 0, 1) {
            return Ok(Resp::code(code));
        }
        Ok(match bl::cancel(ctx, &t, channel, immediately)? {
            Ok(o) => CancelOrder::Response { OrderID: o.order_id, EndTime: ctx.cal.ts(o.end_at) }.into(),
            Err(e) => Resp::from(e),
        })
    })
}

pub fn reorder(app: &App, call: &Call, r: ReOrder::Request) -> Resp {
    let req = target(call, Kind::ReOrder, r.SPID, r.ServiceID, r.ServiceItemID, r.ProductID, r.VNetUserID);
    let txid = r.TransactionID;
    if is_roaming(app, &req) {
        return roaming_consumption::<ReOrder::Response>(app, call, req, &outbound::RE_ORDER, Billed::txid(&txid));
    }
    let channel = req.channel;
    ordering(app, call, req, move |ctx, t| {
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

pub fn charge(app: &App, call: &Call, r: Charge::Request) -> Resp {
    let req = target(call, Kind::Charge, r.SPID.clone(), r.ServiceID.clone(), Some(r.ServiceItemID.clone()), None, r.VNetUserID.clone());
    let (fee, batch) = (r.fee(), r.batch_count());
    if is_roaming(app, &req) {
        return roaming_consumption::<Charge::Response>(app, call, req, &outbound::CHARGE, Billed { fee, batch, txid: r.TransactionID });
    }
    ordering(app, call, req, move |ctx, t| {
        if let Some(code) = own_catalogue_rules(Kind::Charge, &t, fee, batch) {
            return Ok(Resp::code(code));
        }
        if bl::txid_taken(ctx.tx, &t.svc.spid, &r.TransactionID)? {
            return Ok(Resp::code(BAD_TRANSACTION_ID));
        }
        Ok(match bl::charge(ctx, &t, &r)? {
            Ok(at) => Charge::Response { ChargeTime: ctx.cal.ts(at), TransactionID: r.TransactionID }.into(),
            Err(e) => Resp::from(e),
        })
    })
}

/// Validation stage 2 of OfflineCharge: BillMonth is the current or the previous month.
pub fn check_offline_charge(r: &OfflineCharge::Request, clock: &Clock) -> Option<i32> {
    let this = Cal::new(clock.tz()).month(clock.unix());
    let ok = Ym::parse(&r.BillMonth).is_some_and(|m| m == this || m == this.prev());
    (!ok).then_some(BAD_BILL_MONTH)
}

/// OfflineCharge is not a roaming consumption operation (6.9): a user of another province meets
/// the use rules (-21001 unless the service may roam out), then is unknown here (-20504).
pub fn offline_charge(app: &App, call: &Call, r: OfflineCharge::Request) -> Resp {
    let fee: i64 = r.Fee.parse().unwrap_or(-1);
    let Some(month) = Ym::parse(&r.BillMonth) else {
        return Resp::code(BAD_BILL_MONTH);
    };
    let req = target(call, Kind::Offline, call.caller_id().to_string(), r.ServiceID, Some(r.ServiceItemID), None, r.VNetUserID);
    let txid = r.TransactionID;
    ordering(app, call, req, move |ctx, t| {
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

pub fn charge_query(app: &App, _call: &Call, r: ChargeQuery::Request) -> Resp {
    let cal = Cal::new(app.clock.tz());
    match app.store.read(|c| bl::find_charge(c, &r.SPID, &r.TransactionID)) {
        Ok(Some((user, service, item, fee, at))) => ChargeQuery::Response {
            VNetUserID: user,
            ServiceID: service,
            ServiceItemID: item,
            Fee: fee.to_string(),
            ChargeTime: cal.ts(at),
        }
        .into(),
        Ok(None) => Resp::code(NO_SUCH_CHARGE),
        Err(e) => Resp::db(&e),
    }
}

/// A user's orders, newest first, optionally of one SP or service.
fn orders(app: &App, user: &str, sp: Option<&str>, service: Option<&str>) -> Resp {
    let cal = Cal::new(app.clock.tz());
    match app.store.read(|c| bl::user_orders(c, user, sp, service)) {
        Ok(orders) => OrderQuery::Response {
            Orders: orders
                .into_iter()
                .map(|o| OrderQuery::Order {
                    StartTime: cal.ts(o.start_at),
                    EndTime: cal.ts(o.end_at),
                    IfExtend: if o.if_extend { "1" } else { "0" }.to_string(),
                    OrderID: o.order_id,
                    ServiceID: o.service_id,
                    ServiceItemID: o.service_item_id,
                    ProductID: o.product_id,
                    Status: o.status,
                })
                .collect(),
        }
        .into(),
        Err(e) => Resp::db(&e),
    }
}

/// ProvinceForSP OrderQuery: the user's orders of the calling SP's services.
pub fn order_query(app: &App, call: &Call, r: OrderQuery::Request) -> Resp {
    orders(app, &r.VNetUserID, Some(call.caller_id()), r.ServiceID.as_deref())
}

/// ProvinceForBSS OrderQuery: any SP's.
pub fn user_order_query(app: &App, _call: &Call, r: UserOrderQuery::Request) -> Resp {
    orders(app, &r.VNetUserID, r.SPID.as_deref(), r.ServiceID.as_deref())
}

pub fn bill_query(app: &App, _call: &Call, r: BillQuery::Request) -> Resp {
    match app.store.read(|c| bl::bill(c, &r.VNetUserID, &r.BillMonth)) {
        Ok(lines) => BillQuery::Response {
            TotalFee: lines.iter().map(|l| l.fee).sum::<i64>().to_string(),
            Items: lines
                .into_iter()
                .map(|l| BillQuery::Item {
                    SPID: l.spid,
                    ServiceID: l.service_id,
                    ServiceItemID: l.service_item_id,
                    ServiceItemName: l.service_item_name,
                    FeeType: l.fee_type,
                    Count: l.count.to_string(),
                    Fee: l.fee.to_string(),
                })
                .collect(),
        }
        .into(),
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
pub fn check_recon_detail(r: &ReconDetail::Request, _clock: &Clock) -> Option<i32> {
    (r.SequenceID.parse::<i64>().unwrap_or(0) < 1).then_some(param_code("SequenceID"))
}

pub fn reconcile(app: &App, call: &Call, r: Reconcile::Request) -> Resp {
    let (sp, date) = (call.caller_id(), r.LedgerDate.as_str());
    let (count, fee): (i64, i64) = (r.TotalCount.parse().unwrap_or(-1), r.TotalFee.parse().unwrap_or(-1));
    let r = app.store.read(|c| {
        if let Some(code) = ledger_date_open(app, c, date)? {
            return Ok(Resp::code(code));
        }
        let (local_count, local_fee) = bl::day_totals(c, sp, date)?;
        let balanced = local_count == count && (local_fee - fee).abs() <= app.cfg.billing.recon_tolerance_fen;
        let totals = Reconcile::Response { LocalCount: local_count.to_string(), LocalFee: local_fee.to_string() };
        Ok(if balanced { Resp::from(totals).with_result(RECON_BALANCED, "") } else { Resp::coded(RECON_UNBALANCED, totals) })
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}

pub fn recon_detail(app: &App, call: &Call, r: ReconDetail::Request) -> Resp {
    let (sp, date) = (call.caller_id(), r.LedgerDate.as_str());
    let page: i64 = r.SequenceID.parse().unwrap_or(1);
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
            .map(|(txid, user, service, item, fee_type, fee, at)| ReconDetail::Record {
                TransactionID: txid,
                VNetUserID: user,
                ServiceID: service,
                ServiceItemID: item,
                FeeType: fee_type,
                Fee: fee.to_string(),
                ChargeTime: cal.ts(at),
            })
            .collect();
        Ok(ReconDetail::Response {
            SequenceID: page.to_string(),
            IsFinal: if is_final { "1" } else { "0" }.to_string(),
            TotalCount: total.to_string(),
            Records: records,
        }
        .into())
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}
