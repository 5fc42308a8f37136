//! The access network and the 168 platform (spec 4.1 IPAuth, 4.2, 4.5, 4.6, 11): OnlineNotify
//! from the AAA, IPAuth for SPs, the legacy getUserProduct, CrossAuth for the 168 platform.

use crate::app::App;
use crate::domain::access::{self, Event, Outcome};
use crate::domain::passport::{Holder, User, STATUS_NORMAL};
use crate::spec::codes::*;
use crate::services::{Call, Resp};
use crate::spec::incoming::{CrossAuth, IPAuth, OnlineNotify};
use crate::runtime::logging::audit;
use crate::services::passport::{authenticate, check_service, unknown_account, AuthFail};
use std::net::IpAddr;

/// How long a session lives without an event (`access.session_stale_h`).
fn stale_s(app: &App) -> i64 {
    app.cfg.access.session_stale_h * 3600
}

/// ProvinceForAAA OnlineNotify: start (1), stop (2), interim (3).
pub fn online_notify(app: &App, call: &Call, req: OnlineNotify::Request) -> Resp {
    let (Ok(ip), Some(at)) = (req.UserIP.parse::<IpAddr>(), app.clock.parse_ts(&req.EventTime)) else {
        // The syntax stage has checked both; this is unreachable for a well-formed call.
        return Resp::code(BAD_PARAMETER);
    };
    let now = app.clock.unix();
    let e = Event {
        aaa: call.caller_id().to_string(),
        session_id: req.SessionID,
        ip,
        account: req.Account,
        nas_ip: req.NASIP.unwrap_or_default(),
        nas_port: req.NASPort.unwrap_or_default(),
        at: at.min(now),
    };
    let action = req.ActionType;
    let ev = e.clone();
    let r = app.store.write(move |c| match action.as_str() {
        "1" => access::start(c, &ev, now),
        "2" => access::stop(c, &ev.aaa, &ev.session_id),
        _ => access::interim(c, &ev, now),
    });
    let outcome = match r {
        Ok(o) => o,
        Err(err) => return Resp::db(&err),
    };
    let what = match outcome {
        Outcome::Started { replaced: 0 } => "start",
        Outcome::Started { .. } => "start_replacing",
        Outcome::Superseded => "late_start_ignored",
        Outcome::Stopped => "stop",
        Outcome::UnknownStop => "stop_unknown",
        Outcome::Refreshed => "interim",
    };
    log::debug!("OnlineNotify from {}: {what} session {} at {}", e.aaa, e.session_id, access::canonical_ip(e.ip));
    app.metrics.inc_counter("vnetd_online_events_total", "OnlineNotify events by outcome", &[("outcome", what)], 1);
    Resp::ok()
}

/// Why an online IP gives no broadband user.
enum Online {
    User(User),
    Refused(Resp),
}

/// The local broadband user online at `ip` (spec 4.1 IPAuth, 11): no session → -20507; account
/// held by no local user → -20504; held by a user of another type → -20505; status → -20502.
fn online_user(app: &App, ip: IpAddr) -> Online {
    let (now, stale) = (app.clock.unix(), stale_s(app));
    let r = app.store.read(|c| {
        let Some(account) = access::account_at(c, ip, now, stale)? else { return Ok(None) };
        Ok(Some(access::holder_of_account(c, &account)?))
    });
    let u = match r {
        Err(e) => return Online::Refused(Resp::db(&e)),
        Ok(None) => return Online::Refused(Resp::code(NOT_ONLINE)),
        Ok(Some(Holder::None)) => return Online::Refused(Resp::code(ACCOUNT_UNKNOWN)),
        Ok(Some(Holder::Live(u) | Holder::Cancelled(u))) => u,
    };
    if u.account_type != "01" && u.account_type != "02" {
        return Online::Refused(Resp::code(NO_IP_AUTH_FOR_TYPE));
    }
    if u.status != STATUS_NORMAL {
        return Online::Refused(Resp::code(USER_ABNORMAL));
    }
    Online::User(u)
}

/// ProvinceForSP IPAuth: the broadband user online at UserIP; with a ServiceID, the use rules.
pub fn ip_auth(app: &App, call: &Call, req: IPAuth::Request) -> Resp {
    let Ok(ip) = req.UserIP.parse::<IpAddr>() else { return Resp::code(BAD_PARAMETER) };
    let u = match online_user(app, ip) {
        Online::User(u) => u,
        Online::Refused(r) => return r,
    };
    if let Some(r) = check_service(app, call, req.ServiceID.as_deref(), true) {
        return r;
    }
    audit("ip_auth", &[("sp", call.caller_id()), ("user", &u.vnet_user_id)]);
    IPAuth::Response {
        AccountType: u.account_type,
        Account: u.account,
        VNetUserID: u.vnet_user_id,
        ProvinceID: app.cfg.node.province_id.clone(),
        CityCode: u.city_code,
        UserType: u.user_type,
    }
    .into()
}

/// ProvinceFor168 CrossAuth: the auth rules, local users only (an account held by no local user
/// is -20504; it is never sent to the centre).
pub fn cross_auth(app: &App, _call: &Call, req: CrossAuth::Request) -> Resp {
    match authenticate(app, "168", &req.AccountType, &req.Account, &req.Password) {
        Ok(u) => CrossAuth::Response {
            VNetUserID: u.vnet_user_id,
            CityCode: u.city_code,
            BindingAccessNo: u.binding_access_no,
            Status: u.status,
        }
        .into(),
        Err(AuthFail::Refused(r)) => r,
        Err(AuthFail::NotLocal) => unknown_account(app, "168"),
    }
}

/// The legacy getUserProduct (spec 4.2): `0|CityCode|Account` for a local broadband user in
/// status 00 online at `ip`, `-999||` for none, `-998||` for bad input (an element missing, an
/// address that does not parse, a productid over 64 characters). `productid` is not otherwise
/// interpreted: the deployed service answered by IP alone. `Err` is a failure inside the node,
/// which the string cannot express (a Server fault).
pub fn get_user_product(app: &App, productid: Option<&str>, ip: Option<&str>) -> Result<String, String> {
    let ip = match (productid, ip.map(|s| s.trim().parse::<IpAddr>())) {
        (Some(p), Some(Ok(ip))) if p.chars().count() <= 64 => ip,
        _ => return Ok("-998||".to_string()),
    };
    match online_user(app, ip) {
        Online::User(u) => Ok(format!("0|{}|{}", u.city_code, u.account)),
        Online::Refused(r) if r.result == SYSTEM_ERROR || r.result == DISK_ERROR => Err(r.desc),
        Online::Refused(_) => Ok("-999||".to_string()),
    }
}
