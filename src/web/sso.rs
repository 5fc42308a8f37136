//! SSO login and logout (spec 5.1, 5.2, 11 "Browser").

use super::pages::{self, Login};
use super::tokens::{self, Opened, SSO_LOGOUT_REQUEST, SSO_REQUEST};
use super::{Ctx, WebResponse};
use crate::app::App;
use crate::domain::passport::{self as pp, Holder};
use crate::domain::sso::{self as store_sso, Session, SessionUser};
use crate::spec::codes::{DISK_ERROR, OK, SYSTEM_ERROR};
use crate::runtime::logging::audit;
use crate::services::{centre, passport as auth};

/// The one message for every refused login: no hint whether the account exists (spec 5.1).
pub const LOGIN_FAILED: &str = "帐号或密码错误，或该帐号暂时无法登录。连续多次输错密码，帐号将被暂时锁定。";
pub const BUSY: &str = "系统繁忙，请稍后再试。";

/// Why a login did not produce a session.
pub enum SignInError {
    /// Wrong credentials, unknown account, locked, not in status 00: one generic message.
    Refused,
    /// The node or the centre could not answer (busy hashing pool, database, centre down).
    Busy,
}

/// The account type of a login string (spec 11): 11 digits starting with 1 → `09`; otherwise the
/// first of `01`…`04` under which a local user (also a cancelled one) holds it. None: held by no
/// local user; it goes to the centre as `09` or `01`.
fn local_account_type(app: &App, account: &str) -> Result<Option<&'static str>, crate::store::DbError> {
    let candidates: &[&'static str] = if pp::is_mobile(account) { &["09"] } else { &["01", "02", "03", "04"] };
    app.store.read(|c| {
        for at in candidates {
            if !matches!(pp::holder(c, at, account)?, Holder::None) {
                return Ok(Some(*at));
            }
        }
        Ok(None)
    })
}

/// Log a browser user in: local accounts by the auth rules (lockout shared with every channel),
/// others through the centre (RoamAuthV2). An unknown account costs the same hash time as a wrong
/// password.
pub fn sign_in(app: &App, spid: &str, account: &str, password: &str, client_ip: &str) -> Result<SessionUser, SignInError> {
    let channel = if spid.is_empty() { "web".to_string() } else { format!("web:{spid}") };
    if account.is_empty() || password.is_empty() || account.chars().count() > 64 {
        return Err(SignInError::Refused);
    }
    let busy = |r: &crate::services::Resp| if r.result == SYSTEM_ERROR || r.result == DISK_ERROR { SignInError::Busy } else { SignInError::Refused };
    let at = local_account_type(app, account).map_err(|e| {
        log::error!("login: database error: {e}");
        SignInError::Busy
    })?;
    if let Some(at) = at {
        match auth::authenticate(app, &channel, at, account, password) {
            Ok(u) => return Ok(SessionUser::from_local(&u, &app.cfg.node.province_id)),
            Err(auth::AuthFail::Refused(r)) => return Err(busy(&r)),
            Err(auth::AuthFail::NotLocal) => {} // cancelled between the two reads: as not local
        }
    }
    let roam_type = if pp::is_mobile(account) { "09" } else { "01" };
    if !centre::configured(app) {
        // Same work as a wrong password, then the same answer.
        let _ = app.hasher.verify(app.dummy_phc.clone(), password.to_string());
        auth::unknown_account(app, &channel);
        return Err(SignInError::Refused);
    }
    let ip = if client_ip.parse::<std::net::IpAddr>().is_ok() { client_ip } else { "" };
    let login = auth::RoamLogin { spid, service_id: "", account_type: roam_type, account, password, user_ip: ip };
    let a = auth::roam_auth_v2(app, &channel, &login).map_err(|_| SignInError::Busy)?;
    if a.result != OK {
        return Err(if a.result == SYSTEM_ERROR { SignInError::Busy } else { SignInError::Refused });
    }
    Ok(SessionUser {
        vnet_user_id: a.get("VNetUserID").to_string(),
        local: false,
        account_type: roam_type.to_string(),
        account: account.to_string(),
        province_id: a.get("ProvinceID").to_string(),
        city_code: a.get("CityCode").to_string(),
        user_type: a.get("UserType").to_string(),
        status: a.get("Status").to_string(),
    })
}

/// The message a failed sign-in shows.
pub fn sign_in_message(e: &SignInError) -> &'static str {
    match e {
        SignInError::Refused => LOGIN_FAILED,
        SignInError::Busy => BUSY,
    }
}

/// Send the user back to the SP with a fresh ticket: `302 ReturnURL?SSOResponse=…`.
fn back_with_ticket(ctx: Ctx, s: &Session, req: &Opened) -> WebResponse {
    let app = ctx.app;
    let (spid, now, ttl) = (req.sp.id.clone(), app.clock.unix(), app.cfg.security.ticket_ttl_s);
    let s2 = s.clone();
    let ticket = match app.store.write(move |c| store_sso::issue_ticket(c, &s2, &spid, now, ttl)) {
        Ok(t) => t,
        Err(e) => return ctx.db_error(&e),
    };
    let Some(tok) = tokens::sso_response(app, &req.sp, OK, &ticket) else {
        log::error!("SSO: SP {} has no key in effect; cannot answer", req.sp.id);
        return ctx.message(500, "系统繁忙", BUSY, true);
    };
    audit("sso_ticket", &[("sp", &req.sp.id), ("user", &s.user.vnet_user_id)]);
    let location = tokens::append(req.return_url(), "SSOResponse", &tok);
    ctx.redirect(302, location)
}

fn login_form(ctx: Ctx, req: Option<&Opened>, raw: &str, error: &str, account: &str) -> WebResponse {
    let csrf = ctx.csrf("login", raw);
    let sp_name = req.map(|r| if r.sp.name.is_empty() { r.sp.id.as_str() } else { r.sp.name.as_str() }).unwrap_or("");
    let html = pages::render(&Login { sp_name, error, csrf: &csrf, sso_request: raw, account });
    let origins = req.map(|r| tokens::sp_origins(&r.sp)).unwrap_or_default();
    ctx.page(200, html, &origins)
}

/// `GET /sso/login[?SSORequest=…]`: with a live session, straight back to the SP with a ticket;
/// otherwise the login form. Without SSORequest: a login to this node's own pages.
pub fn login_page(ctx: Ctx) -> WebResponse {
    let raw = ctx.field("SSORequest").to_string();
    let req = if raw.is_empty() {
        None
    } else {
        match tokens::open(ctx.app, &raw, &SSO_REQUEST, true) {
            Ok(r) => Some(r),
            Err(e) => return ctx.refused("SSORequest", e),
        }
    };
    let session = match ctx.session() {
        Ok(s) => s,
        Err(e) => return ctx.db_error(&e),
    };
    match (session, &req) {
        (Some(s), Some(r)) => back_with_ticket(ctx, &s, r),
        (Some(_), None) => ctx.redirect(303, "/account/password".into()),
        (None, _) => login_form(ctx, req.as_ref(), &raw, "", ""),
    }
}

/// `POST /sso/login`: account, password, csrf and the original SSORequest.
pub fn login_submit(mut ctx: Ctx) -> WebResponse {
    let raw = ctx.field("SSORequest").to_string();
    if !ctx.csrf_ok("login", &raw) {
        return ctx.csrf_refused();
    }
    // The token's age was checked at the GET; the form is bound by its csrf token (spec 11).
    let req = if raw.is_empty() {
        None
    } else {
        match tokens::open(ctx.app, &raw, &SSO_REQUEST, false) {
            Ok(r) => Some(r),
            Err(e) => return ctx.refused("SSORequest", e),
        }
    };
    let account = ctx.field("account").trim().to_string();
    let password = ctx.field("password").to_string();
    let spid = req.as_ref().map(|r| r.sp.id.clone()).unwrap_or_default();
    match sign_in(ctx.app, &spid, &account, &password, &ctx.rq.client_ip) {
        Ok(user) => {
            let s = match ctx.start_session(user) {
                Ok(s) => s,
                Err(e) => return ctx.db_error(&e),
            };
            match req {
                Some(r) => back_with_ticket(ctx, &s, &r),
                None => ctx.redirect(303, "/account/password".into()),
            }
        }
        Err(e) => login_form(ctx, req.as_ref(), &raw, sign_in_message(&e), &account),
    }
}

/// `GET /sso/logout?SSOLogoutRequest=…`: end every session of the user, then 302 to ReturnURL.
pub fn logout_redirect(mut ctx: Ctx) -> WebResponse {
    let raw = ctx.field("SSOLogoutRequest").to_string();
    if raw.is_empty() {
        return ctx.message(400, "请求无效", "缺少退出请求。请回到商户网站重新操作。", true);
    }
    let req = match tokens::open(ctx.app, &raw, &SSO_LOGOUT_REQUEST, true) {
        Ok(r) => r,
        Err(e) => return ctx.refused("SSOLogoutRequest", e),
    };
    let user = req.get("VNetUserID").to_string();
    let u = user.clone();
    if let Err(e) = ctx.app.store.write(move |c| store_sso::end_user(c, &u, None)) {
        return ctx.db_error(&e);
    }
    audit("logout", &[("by", &req.sp.id), ("user", &user), ("via", "sso")]);
    ctx.clear_session_cookie();
    ctx.redirect(302, req.return_url().to_string())
}

/// `POST /sso/logout` from this node's own page (csrf): end the user's sessions here.
pub fn logout_submit(mut ctx: Ctx) -> WebResponse {
    if !ctx.csrf_ok("logout", "") {
        return ctx.csrf_refused();
    }
    let session = match ctx.session() {
        Ok(s) => s,
        Err(e) => return ctx.db_error(&e),
    };
    if let Some(s) = session {
        let id = s.user.vnet_user_id.clone();
        if let Err(e) = ctx.app.store.write(move |c| store_sso::end_user(c, &id, None)) {
            return ctx.db_error(&e);
        }
        audit("logout", &[("user", &s.user.vnet_user_id), ("via", "web")]);
    }
    ctx.clear_session_cookie();
    ctx.message(200, "已退出", "您已安全退出互联星空。", false)
}
