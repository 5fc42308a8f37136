//! PassPort operations of ProvinceForSP, ProvinceForBSS and ProvinceForVNet (spec 4.1, 4.3, 4.4):
//! fields in, domain call, fields out.

use crate::app::App;
use crate::domain::passport::{self as pp, Holder, NewUser, User};
use crate::spec::codes::*;
use crate::services::write_idempotent;
use crate::services::{Call, Resp};
use crate::runtime::logging::audit;
use crate::services::centre;
use crate::store::DbError;

fn own_province(app: &App) -> &str {
    &app.cfg.node.province_id
}

fn profile(app: &App, u: &User) -> Resp {
    Resp::ok()
        .with("VNetUserID", &u.vnet_user_id)
        .with("AccountType", &u.account_type)
        .with("Account", &u.account)
        .with("Alias", &u.alias)
        .with("ProvinceID", own_province(app))
        .with("CityCode", &u.city_code)
        .with("UserType", &u.user_type)
        .with("Status", &u.status)
        .with("NumFlag", u.num_flag())
        .with("ContractID", &u.contract_id)
}

fn count_login(app: &App, result: &str) {
    app.metrics.inc_counter("vnetd_logins_total", "Password logins by outcome", &[("result", result)], 1);
}

/// Why an authentication did not produce a local user.
pub enum AuthFail {
    /// The answer to give (audited; password failures count toward lockout).
    Refused(Resp),
    /// No local user holds the account, cancelled or not: it may belong to another province.
    NotLocal,
}

impl From<Resp> for AuthFail {
    fn from(r: Resp) -> AuthFail {
        AuthFail::Refused(r)
    }
}

/// A login for an account held by no user here, and nowhere else to ask: audited, -20504.
pub fn unknown_account(app: &App, channel: &str) -> Resp {
    audit("login_failed", &[("channel", channel), ("reason", "unknown_account")]);
    count_login(app, "unknown");
    Resp::code(ACCOUNT_UNKNOWN)
}

/// The auth rules (spec 4, 11): account exists, not locked, password correct, status 00.
pub fn authenticate(app: &App, channel: &str, account_type: &str, account: &str, password: &str) -> Result<User, AuthFail> {
    let now = app.clock.unix();
    let holder = app.store.read(|c| pp::holder(c, account_type, account)).map_err(|e| Resp::db(&e))?;
    let user = match holder {
        Holder::Live(u) => u,
        Holder::Cancelled(u) => {
            audit("login_refused", &[("channel", channel), ("user", &u.vnet_user_id), ("reason", "cancelled")]);
            count_login(app, "refused");
            return Err(Resp::code(USER_ABNORMAL).into());
        }
        Holder::None => return Err(AuthFail::NotLocal),
    };
    if user.locked_until > now {
        audit("login_refused", &[("channel", channel), ("user", &user.vnet_user_id), ("reason", "locked")]);
        count_login(app, "locked");
        return Err(Resp::err(USER_ABNORMAL, "locked").into());
    }
    // An account without a password costs the same hash time as a wrong password.
    let phc = user.password_phc.clone().unwrap_or_else(|| app.dummy_phc.clone());
    let correct = match app.hasher.verify(phc, password.to_string()) {
        Ok(ok) => ok && user.password_phc.is_some(),
        Err(_) => {
            app.metrics.inc_counter("vnetd_hash_busy_total", "Logins refused because the hashing pool was full", &[], 1);
            return Err(Resp::err(SYSTEM_ERROR, "busy, try again").into());
        }
    };
    if !correct {
        let (id, threshold, lock_s) = (user.vnet_user_id.clone(), app.cfg.security.lockout_threshold, app.cfg.security.lockout_minutes * 60);
        let locked = match app.store.write(move |c| pp::record_failure(c, &id, threshold, lock_s, now)) {
            Ok(l) => l,
            Err(e) => return Err(Resp::db(&e).into()),
        };
        audit("login_failed", &[("channel", channel), ("user", &user.vnet_user_id), ("reason", "password")]);
        count_login(app, "failed");
        if locked {
            audit("lockout", &[("user", &user.vnet_user_id), ("minutes", &app.cfg.security.lockout_minutes.to_string())]);
            app.metrics.inc_counter("vnetd_lockouts_total", "Accounts locked after repeated failures", &[], 1);
        }
        return Err(Resp::code(AUTH_FAILED).into());
    }
    if user.failed_logins != 0 || user.locked_until != 0 {
        let id = user.vnet_user_id.clone();
        if let Err(e) = app.store.write(move |c| pp::reset_failures(c, &id)) {
            return Err(Resp::db(&e).into());
        }
    }
    if user.status != pp::STATUS_NORMAL {
        audit("login_refused", &[("channel", channel), ("user", &user.vnet_user_id), ("reason", "status")]);
        count_login(app, "refused");
        return Err(Resp::code(USER_ABNORMAL).into());
    }
    audit("login", &[("channel", channel), ("user", &user.vnet_user_id)]);
    count_login(app, "ok");
    Ok(user)
}

/// The use rules for a ServiceID named in an authentication (spec 4, 11): the service exists and
/// is the calling SP's own (-20004), it is active (-20005), and the region rule (-21001): a local
/// user may use another province's or the centre's service only if approved for this province; a
/// user of another province may use a local service only if it is approved for roaming out.
pub(crate) fn check_service(app: &App, call: &Call, local_user: bool) -> Option<Resp> {
    let id = call.opt("ServiceID")?;
    let info = match app.store.read(|c| crate::domain::catalog::service(c, id)) {
        Ok(i) => i,
        Err(e) => return Some(Resp::db(&e)),
    };
    match info {
        Some(s) if s.spid != call.caller_id() => Some(Resp::err(SERVICE_UNKNOWN, "service unknown")),
        None => Some(Resp::err(SERVICE_UNKNOWN, "service unknown")),
        Some(s) if !s.active => Some(Resp::code(SERVICE_ABNORMAL)),
        Some(s) if local_user && !s.local && !s.roams_in => Some(Resp::code(REGION_NOT_ALLOWED)),
        Some(s) if !local_user && s.local && !s.roams_out => Some(Resp::code(REGION_NOT_ALLOWED)),
        Some(_) => None,
    }
}

fn auth_resp(app: &App, u: &User) -> Resp {
    Resp::ok()
        .with("VNetUserID", &u.vnet_user_id)
        .with("ProvinceID", own_province(app))
        .with("CityCode", &u.city_code)
        .with("UserType", &u.user_type)
        .with("Status", &u.status)
}

/// RoamAuthV2 (6.1) for an account no local user holds: the centre's answer, audited and
/// counted; `Err` when the centre cannot be reached (-22500). The caller has checked that a
/// centre is configured.
pub fn roam_auth_v2(app: &App, channel: &str, r: &RoamLogin) -> Result<crate::soap::client::Answer, Resp> {
    let txid = format!("RA{}", crate::crypto::random_bytes(12).iter().map(|b| format!("{b:02x}")).collect::<String>());
    let op = &crate::spec::outbound::ROAM_AUTH_V2;
    let fields = crate::spec::outbound::fill(op.payload(), |f| {
        Some(match f {
            "SPID" => r.spid,
            "ServiceID" => r.service_id,
            "AccountType" => r.account_type,
            "Account" => r.account,
            "Password" => r.password,
            "UserIP" => r.user_ip,
            "RoamType" => "1",
            "TransactionID" => &txid,
            _ => return None,
        }
        .to_string())
    });
    let a = centre::call(app, op, fields)?;
    let outcome = if a.result == OK { "ok" } else { "refused" };
    audit("login_roaming", &[("channel", channel), ("result", &a.result.to_string()), ("user", a.get("VNetUserID"))]);
    count_login(app, &format!("roaming_{outcome}"));
    Ok(a)
}

/// A login to send to the centre.
pub struct RoamLogin<'a> {
    pub spid: &'a str,
    pub service_id: &'a str,
    pub account_type: &'a str,
    pub account: &'a str,
    pub password: &'a str,
    pub user_ip: &'a str,
}

/// An account no local user holds goes to the centre with RoamAuthV2 (spec 4.1, 6.1, 11) when a
/// centre peer with a URL exists; the centre's answer is returned unchanged.
fn roam_auth(app: &App, call: &Call, channel: &str, account_type: &str, account: &str, password: &str) -> Resp {
    if !centre::configured(app) {
        return unknown_account(app, channel);
    }
    if let Some(r) = check_service(app, call, false) {
        return r;
    }
    let login = RoamLogin {
        spid: call.caller_id(),
        service_id: call.get("ServiceID"),
        account_type,
        account,
        password,
        user_ip: call.get("UserIP"),
    };
    match roam_auth_v2(app, channel, &login) {
        Ok(a) => {
            let mut r = centre::relay_answer(call, &a);
            if r.result == OK && call.op.response.contains(&"NumFlag") {
                r = r.with("NumFlag", pp::num_flag(account_type));
            }
            r
        }
        Err(r) => r,
    }
}

fn login(app: &App, call: &Call, account_type: &str, account: &str, numflag: bool) -> Resp {
    let channel = format!("sp:{}", call.caller_id());
    let password = call.plain("Password").unwrap_or("");
    match authenticate(app, &channel, account_type, account, password) {
        Ok(u) => check_service(app, call, true).unwrap_or_else(|| {
            let r = auth_resp(app, &u);
            if numflag { r.with("NumFlag", u.num_flag()) } else { r }
        }),
        Err(AuthFail::Refused(r)) => r,
        Err(AuthFail::NotLocal) => roam_auth(app, call, &channel, account_type, account, password),
    }
}

pub fn user_auth(app: &App, call: &Call) -> Resp {
    login(app, call, call.get("AccountType"), call.get("Account"), false)
}

pub fn phone_num_auth(app: &App, call: &Call) -> Resp {
    login(app, call, "09", call.get("PhoneNum"), true)
}

pub fn get_userinfo(app: &App, call: &Call) -> Resp {
    match app.store.read(|c| pp::by_id(c, call.get("VNetUserID"))) {
        Ok(Some(u)) => profile(app, &u),
        Ok(None) => Resp::code(NO_MATCH),
        Err(e) => Resp::db(&e),
    }
}

pub fn user_info_query(app: &App, call: &Call) -> Resp {
    match app.store.read(|c| pp::holder(c, call.get("AccountType"), call.get("Account"))) {
        Ok(Holder::Live(u)) | Ok(Holder::Cancelled(u)) => Resp::ok()
            .with("VNetUserID", &u.vnet_user_id)
            .with("ProvinceID", own_province(app))
            .with("CityCode", &u.city_code)
            .with("Status", &u.status)
            .with("UserType", &u.user_type)
            .with("ContractID", &u.contract_id)
            .with("NumFlag", u.num_flag()),
        Ok(Holder::None) => Resp::code(NO_MATCH),
        Err(e) => Resp::db(&e),
    }
}

pub fn get_time(app: &App, _call: &Call) -> Resp {
    Resp::ok().with("ServerTime", app.clock.now_ts())
}

/// Hash a password on the bounded pool.
fn hash(app: &App, password: &str) -> Result<String, Resp> {
    app.hasher.hash(password.to_string()).map_err(|_| Resp::err(SYSTEM_ERROR, "busy, try again"))
}

/// AccountType 09 accounts are mobile numbers (validation stage 2).
pub fn check_user_open(call: &Call, _clock: &crate::clock::Clock) -> Option<i32> {
    (call.get("AccountType") == "09" && !pp::is_mobile(call.get("Account"))).then_some(param_code("Account"))
}

pub fn user_open(app: &App, call: &Call) -> Resp {
    let (at, account) = (call.get("AccountType").to_string(), call.get("Account").to_string());
    match app.store.read(|c| pp::account_taken(c, &at, &account)) {
        Ok(true) => return write_idempotent(app, call, |_| Ok(Resp::code(ACCOUNT_EXISTS))),
        Ok(false) => {}
        Err(e) => return Resp::db(&e),
    }
    let phc = match call.plain("Password") {
        Some(p) if pp::weak_password(p, &account) => {
            return write_idempotent(app, call, |_| Ok(Resp::code(PASSWORD_TOO_SIMPLE)));
        }
        Some(p) => match hash(app, p) {
            Ok(h) => Some(h),
            Err(r) => return r,
        },
        None => None,
    };
    let new = NewUser {
        account_type: at,
        account,
        password_phc: phc,
        city_code: call.get("CityCode").to_string(),
        user_type: call.get("UserType").to_string(),
        credit_limit: call.opt("CreditLimit").and_then(|v| v.parse().ok()).unwrap_or(app.cfg.billing.default_credit_limit_fen),
        balance: call.opt("Balance").and_then(|v| v.parse().ok()).unwrap_or(0),
        alias: call.get("Alias").to_string(),
        binding_access_no: call.get("BindingAccessNo").to_string(),
    };
    let (province, clock, now) = (app.cfg.node.province_id.clone(), app.clock.clone(), app.clock.unix());
    let caller = call.caller_id().to_string();
    let resp = write_idempotent(app, call, move |c| {
        if pp::account_taken(c, &new.account_type, &new.account)? {
            return Ok(Resp::code(ACCOUNT_EXISTS));
        }
        let u = pp::create(c, &province, &new, now)?;
        pp::queue_info_notify(c, &clock, &u, "1", now)?;
        Ok(Resp::ok().with("VNetUserID", &u.vnet_user_id))
    });
    if resp.result == OK {
        if let Some(crate::soap::Value::Text(id)) = resp.values.get("VNetUserID") {
            audit("user_open", &[("by", &caller), ("user", id)]);
        }
    }
    resp
}

/// Load a user for a BSS change: unknown -20504, cancelled -20502.
fn changeable(conn: &crate::store::Read, id: &str) -> Result<Result<User, Resp>, DbError> {
    Ok(pp::changeable(conn, id)?.map_err(refusal))
}

fn refusal(e: crate::domain::Error) -> Resp {
    Resp::from(e)
}

pub fn user_modify(app: &App, call: &Call) -> Resp {
    let id = call.get("VNetUserID").to_string();
    let field = |n: &str| call.opt(n).map(str::to_string);
    let (city, utype, alias, binding) = (field("CityCode"), field("UserType"), field("Alias"), field("BindingAccessNo"));
    let credit: Option<i64> = call.opt("CreditLimit").and_then(|v| v.parse().ok());
    let balance: Option<i64> = call.opt("Balance").and_then(|v| v.parse().ok());
    let (clock, now) = (app.clock.clone(), app.clock.unix());
    write_idempotent(app, call, move |c| {
        let mut u = match changeable(c, &id)? {
            Ok(u) => u,
            Err(r) => return Ok(r),
        };
        let before = u.clone();
        if let Some(v) = city { u.city_code = v; }
        if let Some(v) = utype { u.user_type = v; }
        if let Some(v) = alias { u.alias = v; }
        if let Some(v) = binding { u.binding_access_no = v; }
        if let Some(v) = credit { u.credit_limit = v; }
        if let Some(v) = balance { u.balance = v; }
        if u != before {
            pp::save_profile(c, &u, now)?;
            pp::queue_info_notify(c, &clock, &u, "2", now)?;
        }
        Ok(Resp::ok())
    })
}

pub fn user_status_change(app: &App, call: &Call) -> Resp {
    let id = call.get("VNetUserID").to_string();
    let status = call.get("Status").to_string();
    let (clock, now) = (app.clock.clone(), app.clock.unix());
    let province = app.cfg.node.province_id.clone();
    let resp = write_idempotent(app, call, {
        let (id, status) = (id.clone(), status.clone());
        move |c| Ok(match pp::change_status(c, &clock, &province, &id, &status, now)? {
            Ok(_) => Resp::ok(),
            Err(e) => refusal(e),
        })
    });
    if resp.result == OK {
        let reason = call.get("Reason");
        audit("status_change", &[("by", call.caller_id()), ("user", &id), ("status", &status), ("reason", reason)]);
    }
    resp
}

pub fn password_reset(app: &App, call: &Call) -> Resp {
    let id = call.get("VNetUserID").to_string();
    let user = match app.store.read(|c| changeable(c, &id)) {
        Ok(Ok(u)) => u,
        Ok(Err(r)) => return write_idempotent(app, call, move |_| Ok(r)),
        Err(e) => return Resp::db(&e),
    };
    let password = call.plain("NewPassword").unwrap_or("");
    if pp::weak_password(password, &user.account) {
        return write_idempotent(app, call, |_| Ok(Resp::code(PASSWORD_TOO_SIMPLE)));
    }
    let phc = match hash(app, password) {
        Ok(h) => h,
        Err(r) => return r,
    };
    // The outbound PasswordReset (6.4) carries the password only encrypted under the centre key;
    // without a centre peer nothing is queued.
    let now = app.clock.unix();
    let to_centre = app.peers.centre().and_then(|centre| {
        centre.current_key(now).map(|k| (k.key.encrypt_b64(password.as_bytes()), k.version))
    });
    let txid = call.get("TransactionID").to_string();
    let resp = write_idempotent(app, call, {
        let id = id.clone();
        move |c| {
            let to_centre = to_centre.map(|(enc_password, key_version)| pp::ResetToCentre { enc_password, key_version, transaction_id: txid });
            Ok(match pp::reset_password(c, &id, &phc, to_centre, now)? {
                Ok(()) => Resp::ok(),
                Err(e) => refusal(e),
            })
        }
    });
    if resp.result == OK {
        audit("password_reset", &[("by", call.caller_id()), ("user", &id)]);
    }
    resp
}

pub fn mphone_registry(app: &App, call: &Call) -> Resp {
    let phone = call.get("PhoneNum").to_string();
    let existing = |h: Holder| match h {
        Holder::Live(u) => Some(u.vnet_user_id),
        _ => None,
    };
    match app.store.read(|c| pp::holder(c, "09", &phone)) {
        Ok(h) => {
            if let Some(id) = existing(h) {
                return Resp::ok().with("UserID", id);
            }
        }
        Err(e) => return Resp::db(&e),
    }
    let phc = match call.plain("Password") {
        Some(p) if pp::weak_password(p, &phone) => return Resp::code(PASSWORD_TOO_SIMPLE),
        Some(p) => match hash(app, p) {
            Ok(h) => Some(h),
            Err(r) => return r,
        },
        None => None,
    };
    let new = NewUser {
        account_type: "09".into(),
        account: phone.clone(),
        password_phc: phc,
        city_code: call.opt("CityCode").unwrap_or(&app.cfg.node.default_city_code).to_string(),
        user_type: "1".into(),
        credit_limit: app.cfg.billing.default_credit_limit_fen,
        balance: 0,
        alias: String::new(),
        binding_access_no: String::new(),
    };
    let (province, clock, now) = (app.cfg.node.province_id.clone(), app.clock.clone(), app.clock.unix());
    let r = app.store.write(move |c| {
        if let Holder::Live(u) = pp::holder(c, "09", &new.account)? {
            return Ok((u.vnet_user_id, false));
        }
        let u = pp::create(c, &province, &new, now)?;
        pp::queue_info_notify(c, &clock, &u, "1", now)?;
        Ok((u.vnet_user_id, true))
    });
    match r {
        Ok((id, created)) => {
            if created {
                audit("user_open", &[("by", call.caller_id()), ("user", &id), ("via", "MPhoneRegistry")]);
            }
            Resp::ok().with("UserID", id)
        }
        Err(e) => Resp::db(&e),
    }
}

pub fn p_user_status_notify(app: &App, call: &Call) -> Resp {
    let id = call.get("VNetUserID").to_string();
    let status = call.get("Status").to_string();
    let Some(at) = app.clock.parse_ts(call.get("StatusTime")) else {
        return Resp::code(param_code("StatusTime"));
    };
    let now = app.clock.unix();
    let r = app.store.write({
        let (id, status) = (id.clone(), status.clone());
        move |c| {
            let u = match pp::by_id(c, &id)? {
                None => return Ok((Resp::code(ACCOUNT_UNKNOWN), false)),
                Some(u) if u.is_cancelled() => return Ok((Resp::code(USER_ABNORMAL), false)),
                Some(u) => u,
            };
            // Older than the last change, or a 00 that would lift a local suspension: no change.
            let applies = at > u.status_at && u.status != status && (status != pp::STATUS_NORMAL || u.status == pp::STATUS_FROZEN);
            if applies {
                pp::set_status_at(c, &id, &status, at, now)?;
                if status != pp::STATUS_NORMAL {
                    crate::domain::sso::end_user(c, &id, None)?;
                }
            }
            Ok((Resp::ok(), applies))
        }
    });
    match r {
        Ok((resp, applied)) => {
            if applied {
                audit("status_change", &[("by", call.caller_id()), ("user", &id), ("status", &status), ("source", "centre")]);
            }
            resp
        }
        Err(e) => Resp::db(&e),
    }
}
