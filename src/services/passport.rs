//! PassPort operations of ProvinceForSP, ProvinceForBSS and ProvinceForVNet (spec 4.1, 4.3, 4.4):
//! fields in, domain call, fields out.

use crate::app::App;
use crate::domain::passport::{self as pp, Holder, NewUser, User};
use crate::spec::codes::*;
use crate::services::write_idempotent;
use crate::services::{Call, Resp};
use crate::spec::incoming::{
    GetTime, GetUserinfo, MPhoneRegistry, PUserStatusNotify, PasswordReset, PhoneNumAuth, UserAuth, UserInfoQueryV3, UserModify,
    UserOpen, UserStatusChange,
};
use crate::runtime::logging::audit;
use crate::services::centre;
use crate::store::DbError;

fn own_province(app: &App) -> &str {
    &app.cfg.node.province_id
}

fn profile(app: &App, u: User) -> GetUserinfo::Response {
    GetUserinfo::Response {
        NumFlag: u.num_flag().to_string(),
        VNetUserID: u.vnet_user_id,
        AccountType: u.account_type,
        Account: u.account,
        Alias: u.alias,
        ProvinceID: own_province(app).to_string(),
        CityCode: u.city_code,
        UserType: u.user_type,
        Status: u.status,
        ContractID: u.contract_id,
    }
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
            app.count_hash_busy(1);
            return Err(Resp::overloaded().into());
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
pub(crate) fn check_service(app: &App, call: &Call, service_id: Option<&str>, local_user: bool) -> Option<Resp> {
    let id = service_id.filter(|s| !s.is_empty())?;
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

/// The answer to a successful authentication (UserAuth, RoamAuthV2).
pub fn auth_result(app: &App, u: User) -> UserAuth::Response {
    UserAuth::Response {
        VNetUserID: u.vnet_user_id,
        ProvinceID: own_province(app).to_string(),
        CityCode: u.city_code,
        UserType: u.user_type,
        Status: u.status,
    }
}

/// RoamAuthV2 (6.1) for an account no local user holds: the centre's answer, audited and
/// counted; `Err` when the centre cannot be reached (-22500). The caller has checked that a
/// centre is configured.
pub fn roam_auth_v2(app: &App, channel: &str, r: &RoamLogin) -> Result<crate::soap::client::Answer, Resp> {
    let txid = format!("RA{}", crate::crypto::random_bytes(12).iter().map(|b| format!("{b:02x}")).collect::<String>());
    let login = crate::spec::outbound::RoamAuthV2::Payload {
        SPID: r.spid.to_string(),
        ServiceID: r.service_id.to_string(),
        AccountType: r.account_type.to_string(),
        Account: r.account.to_string(),
        Password: r.password.to_string(),
        UserIP: r.user_ip.to_string(),
        RoamType: "1".to_string(),
        TransactionID: txid,
    };
    let a = centre::call(app, &crate::spec::outbound::ROAM_AUTH_V2, login.values())?;
    let outcome = if a.result == OK { "ok" } else { "refused" };
    audit("login_roaming", &[("channel", channel), ("result", &a.result.to_string()), ("user", a.get("VNetUserID"))]);
    count_login(app, &format!("roaming_{outcome}"));
    Ok(a)
}

/// A login: checked here, or sent to the centre for an account no local user holds.
pub struct RoamLogin<'a> {
    pub spid: &'a str,
    pub service_id: &'a str,
    pub account_type: &'a str,
    pub account: &'a str,
    pub password: &'a str,
    pub user_ip: &'a str,
}

/// How an SP's login ended.
enum Login {
    /// A local user passed the auth rules and the use rules.
    Local(User),
    /// The centre answered for an account no local user holds.
    Roaming(crate::soap::client::Answer),
    Refused(Resp),
}

/// An SP's login (UserAuth, PhoneNumAuth): the auth rules here; an account no local user holds
/// goes to the centre with RoamAuthV2 (spec 4.1, 6.1, 11) when a centre peer with a URL exists.
fn login(app: &App, call: &Call, l: &RoamLogin) -> Login {
    let channel = format!("sp:{}", call.caller_id());
    let service_id = Some(l.service_id);
    match authenticate(app, &channel, l.account_type, l.account, l.password) {
        Ok(u) => match check_service(app, call, service_id, true) {
            Some(r) => Login::Refused(r),
            None => Login::Local(u),
        },
        Err(AuthFail::Refused(r)) => Login::Refused(r),
        Err(AuthFail::NotLocal) if !centre::configured(app) => Login::Refused(unknown_account(app, &channel)),
        Err(AuthFail::NotLocal) => match check_service(app, call, service_id, false) {
            Some(r) => Login::Refused(r),
            None => match roam_auth_v2(app, &channel, l) {
                Ok(a) => Login::Roaming(a),
                Err(r) => Login::Refused(r),
            },
        },
    }
}

pub fn user_auth(app: &App, call: &Call, req: UserAuth::Request) -> Resp {
    let l = RoamLogin {
        spid: call.caller_id(),
        service_id: req.ServiceID.as_deref().unwrap_or(""),
        account_type: &req.AccountType,
        account: &req.Account,
        password: &req.Password,
        user_ip: req.UserIP.as_deref().unwrap_or(""),
    };
    match login(app, call, &l) {
        Login::Local(u) => auth_result(app, u).into(),
        Login::Roaming(a) => centre::relay::<UserAuth::Response>(&a, |_| {}),
        Login::Refused(r) => r,
    }
}

pub fn phone_num_auth(app: &App, call: &Call, req: PhoneNumAuth::Request) -> Resp {
    let l = RoamLogin {
        spid: call.caller_id(),
        service_id: req.ServiceID.as_deref().unwrap_or(""),
        account_type: "09",
        account: &req.PhoneNum,
        password: &req.Password,
        user_ip: "",
    };
    match login(app, call, &l) {
        Login::Local(u) => {
            let num_flag = u.num_flag().to_string();
            let a = auth_result(app, u);
            PhoneNumAuth::Response {
                VNetUserID: a.VNetUserID,
                ProvinceID: a.ProvinceID,
                CityCode: a.CityCode,
                UserType: a.UserType,
                Status: a.Status,
                NumFlag: num_flag,
            }
            .into()
        }
        // The centre's RoamAuthV2 answer has no NumFlag: an 09 account is a mobile number.
        Login::Roaming(a) => centre::relay::<PhoneNumAuth::Response>(&a, |r| r.NumFlag = pp::num_flag("09").to_string()),
        Login::Refused(r) => r,
    }
}

pub fn get_userinfo(app: &App, _call: &Call, req: GetUserinfo::Request) -> Resp {
    match app.store.read(|c| pp::by_id(c, &req.VNetUserID)) {
        Ok(Some(u)) => profile(app, u).into(),
        Ok(None) => Resp::code(NO_MATCH),
        Err(e) => Resp::db(&e),
    }
}

pub fn user_info_query(app: &App, _call: &Call, req: UserInfoQueryV3::Request) -> Resp {
    match app.store.read(|c| pp::holder(c, &req.AccountType, &req.Account)) {
        Ok(Holder::Live(u)) | Ok(Holder::Cancelled(u)) => UserInfoQueryV3::Response {
            NumFlag: u.num_flag().to_string(),
            VNetUserID: u.vnet_user_id,
            ProvinceID: own_province(app).to_string(),
            CityCode: u.city_code,
            Status: u.status,
            UserType: u.user_type,
            ContractID: u.contract_id,
        }
        .into(),
        Ok(Holder::None) => Resp::code(NO_MATCH),
        Err(e) => Resp::db(&e),
    }
}

pub fn get_time(app: &App, _call: &Call, _req: GetTime::Request) -> Resp {
    GetTime::Response { ServerTime: app.clock.now_ts() }.into()
}

/// Hash a password on the bounded pool.
fn hash(app: &App, password: &str) -> Result<String, Resp> {
    app.hasher.hash(password.to_string()).map_err(|_| {
        app.count_hash_busy(1);
        Resp::overloaded()
    })
}

/// AccountType 09 accounts are mobile numbers (validation stage 2).
pub fn check_user_open(req: &UserOpen::Request, _clock: &crate::clock::Clock) -> Option<i32> {
    (req.AccountType == "09" && !pp::is_mobile(&req.Account)).then_some(param_code("Account"))
}

pub fn user_open(app: &App, call: &Call, req: UserOpen::Request) -> Resp {
    let (at, account) = (req.AccountType, req.Account);
    match app.store.read(|c| pp::account_taken(c, &at, &account)) {
        Ok(true) => return write_idempotent(app, call, |_| Ok(Resp::code(ACCOUNT_EXISTS))),
        Ok(false) => {}
        Err(e) => return Resp::db(&e),
    }
    let phc = match req.Password.as_deref() {
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
        city_code: req.CityCode,
        user_type: req.UserType,
        credit_limit: req.CreditLimit.and_then(|v| v.parse().ok()).unwrap_or(app.cfg.billing.default_credit_limit_fen),
        balance: req.Balance.and_then(|v| v.parse().ok()).unwrap_or(0),
        alias: req.Alias.unwrap_or_default(),
        binding_access_no: req.BindingAccessNo.unwrap_or_default(),
    };
    let (province, clock, now) = (app.cfg.node.province_id.clone(), app.clock.clone(), app.clock.unix());
    let caller = call.caller_id().to_string();
    let opened = std::sync::Arc::new(std::sync::OnceLock::new());
    let created = opened.clone();
    let resp = write_idempotent(app, call, move |c| {
        if pp::account_taken(c, &new.account_type, &new.account)? {
            return Ok(Resp::code(ACCOUNT_EXISTS));
        }
        let u = pp::create(c, &province, &new, now)?;
        pp::queue_info_notify(c, &clock, &u, "1", now)?;
        let _ = created.set(u.vnet_user_id.clone());
        Ok(UserOpen::Response { VNetUserID: u.vnet_user_id }.into())
    });
    // Audited once the user is committed (not for the stored answer to a repeat).
    if let (OK, Some(id)) = (resp.result, opened.get()) {
        audit("user_open", &[("by", &caller), ("user", id)]);
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

pub fn user_modify(app: &App, call: &Call, req: UserModify::Request) -> Resp {
    let id = req.VNetUserID;
    let (city, utype, alias, binding) = (req.CityCode, req.UserType, req.Alias, req.BindingAccessNo);
    let credit: Option<i64> = req.CreditLimit.and_then(|v| v.parse().ok());
    let balance: Option<i64> = req.Balance.and_then(|v| v.parse().ok());
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

pub fn user_status_change(app: &App, call: &Call, req: UserStatusChange::Request) -> Resp {
    let (id, status) = (req.VNetUserID, req.Status);
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
        let reason = req.Reason.unwrap_or_default();
        audit("status_change", &[("by", call.caller_id()), ("user", &id), ("status", &status), ("reason", &reason)]);
    }
    resp
}

pub fn password_reset(app: &App, call: &Call, req: PasswordReset::Request) -> Resp {
    let id = req.VNetUserID;
    let user = match app.store.read(|c| changeable(c, &id)) {
        Ok(Ok(u)) => u,
        Ok(Err(r)) => return write_idempotent(app, call, move |_| Ok(r)),
        Err(e) => return Resp::db(&e),
    };
    let password = req.NewPassword.as_str();
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
    let txid = req.TransactionID;
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

pub fn mphone_registry(app: &App, call: &Call, req: MPhoneRegistry::Request) -> Resp {
    let phone = req.PhoneNum;
    let registered = |id: String| Resp::from(MPhoneRegistry::Response { UserID: id });
    let existing = |h: Holder| match h {
        Holder::Live(u) => Some(u.vnet_user_id),
        _ => None,
    };
    match app.store.read(|c| pp::holder(c, "09", &phone)) {
        Ok(h) => {
            if let Some(id) = existing(h) {
                return registered(id);
            }
        }
        Err(e) => return Resp::db(&e),
    }
    let phc = match req.Password.as_deref() {
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
        city_code: req.CityCode.unwrap_or_else(|| app.cfg.node.default_city_code.clone()),
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
            registered(id)
        }
        Err(e) => Resp::db(&e),
    }
}

pub fn p_user_status_notify(app: &App, call: &Call, req: PUserStatusNotify::Request) -> Resp {
    let (id, status) = (req.VNetUserID, req.Status);
    let Some(at) = app.clock.parse_ts(&req.StatusTime) else {
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
