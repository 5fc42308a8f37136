//! The access network and the 168 platform (spec 4.1 IPAuth, 4.2, 4.5, 4.6, 11): OnlineNotify
//! from the AAA, IPAuth for SPs, the legacy getUserProduct, CrossAuth for the 168 platform.

use crate::app::App;
use crate::domain::access::{self, Event, Outcome};
use crate::domain::passport::{Holder, User, STATUS_NORMAL};
use crate::spec::codes::*;
use crate::services::{Call, Resp};
use crate::runtime::logging::audit;
use crate::services::passport::{authenticate, check_service, unknown_account, AuthFail};
use std::net::IpAddr;

/// How long a session lives without an event (`access.session_stale_h`).
fn stale_s(app: &App) -> i64 {
    app.cfg.access.session_stale_h * 3600
}

/// ProvinceForAAA OnlineNotify: start (1), stop (2), interim (3).
pub fn online_notify(app: &App, call: &Call) -> Resp {
    let (Ok(ip), Some(at)) = (call.get("UserIP").parse::<IpAddr>(), app.clock.parse_ts(call.get("EventTime"))) else {
        // The syntax stage has checked both; this is unreachable for a well-formed call.
        return Resp::code(BAD_PARAMETER);
    };
    let now = app.clock.unix();
    let e = Event {
        aaa: call.caller_id().to_string(),
        session_id: call.get("SessionID").to_string(),
        ip,
        account: call.get("Account").to_string(),
        nas_ip: call.get("NASIP").to_string(),
        nas_port: call.get("NASPort").to_string(),
        at: at.min(now),
    };
    let action = call.get("ActionType").to_string();
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
pub fn ip_auth(app: &App, call: &Call) -> Resp {
    let Ok(ip) = call.get("UserIP").parse::<IpAddr>() else { return Resp::code(BAD_PARAMETER) };
    let u = match online_user(app, ip) {
        Online::User(u) => u,
        Online::Refused(r) => return r,
    };
    if let Some(r) = check_service(app, call, true) {
        return r;
    }
    audit("ip_auth", &[("sp", call.caller_id()), ("user", &u.vnet_user_id)]);
    Resp::ok()
        .with("AccountType", &u.account_type)
        .with("Account", &u.account)
        .with("VNetUserID", &u.vnet_user_id)
        .with("ProvinceID", &app.cfg.node.province_id)
        .with("CityCode", &u.city_code)
        .with("UserType", &u.user_type)
}

/// ProvinceFor168 CrossAuth: the auth rules, local users only (an account held by no local user
/// is -20504; it is never sent to the centre).
pub fn cross_auth(app: &App, call: &Call) -> Resp {
    let password = call.plain.get("Password").map(String::as_str).unwrap_or("");
    match authenticate(app, "168", call.get("AccountType"), call.get("Account"), password) {
        Ok(u) => Resp::ok()
            .with("VNetUserID", &u.vnet_user_id)
            .with("CityCode", &u.city_code)
            .with("BindingAccessNo", &u.binding_access_no)
            .with("Status", &u.status),
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
