//! The SOAP side of the browser flows (spec 4.1): TicketValidate, UserLogout, PaymentQuery.
//! The pages themselves are `crate::web`.

use crate::app::App;
use crate::domain::passport::{self as pp, num_flag};
use crate::domain::sso;
use crate::spec::codes::*;
use crate::services::{Call, Resp};
use crate::spec::incoming::{PaymentQuery, TicketValidate, UserLogout};
use crate::runtime::logging::audit;

/// Session timeouts from the configuration.
pub fn limits(app: &App) -> sso::Limits {
    sso::Limits { idle_s: app.cfg.security.sso_idle_minutes * 60, max_s: app.cfg.security.sso_max_hours * 3600 }
}

/// TicketValidate: any attempt consumes the ticket; a ticket not issued to this SP, expired,
/// already used or whose session ended answers -20501.
pub fn ticket_validate(app: &App, call: &Call, req: TicketValidate::Request) -> Resp {
    let (ticket, spid, now, lim) = (req.Ticket, call.caller_id().to_string(), app.clock.unix(), limits(app));
    let r = app.store.write(move |c| {
        let Some(su) = sso::redeem_ticket(c, &ticket, &spid, now, lim)? else { return Ok(None) };
        // For a local user the user table is authoritative (status, alias may have changed).
        let local = if su.local { pp::by_id(c, &su.vnet_user_id)? } else { None };
        Ok(Some((su, local)))
    });
    match r {
        Ok(None) => {
            app.metrics.inc_counter("vnetd_tickets_total", "TicketValidate outcomes", &[("result", "refused")], 1);
            Resp::code(AUTH_FAILED)
        }
        Ok(Some((su, local))) => {
            app.metrics.inc_counter("vnetd_tickets_total", "TicketValidate outcomes", &[("result", "ok")], 1);
            match local {
                Some(u) if u.status != pp::STATUS_NORMAL => Resp::code(AUTH_FAILED),
                Some(u) => TicketValidate::Response {
                    NumFlag: u.num_flag().to_string(),
                    VNetUserID: u.vnet_user_id,
                    AccountType: u.account_type,
                    Account: u.account,
                    ProvinceID: app.cfg.node.province_id.clone(),
                    CityCode: u.city_code,
                    UserType: u.user_type,
                    Alias: u.alias,
                    Status: u.status,
                }
                .into(),
                None if su.local => Resp::code(AUTH_FAILED),
                None => TicketValidate::Response {
                    NumFlag: num_flag(&su.account_type).to_string(),
                    VNetUserID: su.vnet_user_id,
                    AccountType: su.account_type,
                    Account: su.account,
                    ProvinceID: su.province_id,
                    CityCode: su.city_code,
                    UserType: su.user_type,
                    Alias: String::new(),
                    Status: su.status,
                }
                .into(),
            }
        }
        Err(e) => Resp::db(&e),
    }
}

/// UserLogout: ends every SSO session of the user and revokes unused tickets. A user neither
/// local nor with a session here is unknown (-20504).
pub fn user_logout(app: &App, call: &Call, req: UserLogout::Request) -> Resp {
    let id = req.VNetUserID;
    let r = app.store.write({
        let id = id.clone();
        move |c| {
            if pp::by_id(c, &id)?.is_none() && !sso::has_sessions(c, &id)? {
                return Ok(None);
            }
            Ok(Some(sso::end_user(c, &id, None)?))
        }
    });
    match r {
        Ok(None) => Resp::code(ACCOUNT_UNKNOWN),
        Ok(Some(n)) => {
            audit("logout", &[("by", call.caller_id()), ("user", &id), ("ended", &n.to_string())]);
            Resp::ok()
        }
        Err(e) => Resp::db(&e),
    }
}

/// PaymentQuery: the state of a browser payment by this SP's OrderID; unknown -21004.
pub fn payment_query(app: &App, call: &Call, req: PaymentQuery::Request) -> Resp {
    match app.store.read(|c| sso::payment(c, call.caller_id(), &req.OrderID)) {
        Ok(None) => Resp::code(NO_SUCH_CHARGE),
        Ok(Some(p)) => PaymentQuery::Response {
            PaymentStatus: p.status,
            TransactionID: p.transaction_id,
            Fee: p.fee.to_string(),
            PayTime: p.pay_at.map(|t| app.clock.format_ts(t)).unwrap_or_default(),
        }
        .into(),
        Err(e) => Resp::db(&e),
    }
}
