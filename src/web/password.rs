//! Password change (spec 5.4): for a user with a live SSO session; the new password is stored and
//! PUserPasswordNotify (6.3) queued in the same transaction.

use super::pages::{self, Password};
use super::{Ctx, WebResponse};
use crate::domain::passport as pp;
use crate::domain::sso::{self as store_sso, Session};
use crate::runtime::logging::audit;
use crate::store::outbox;
use crate::services::passport::{authenticate, AuthFail};

fn form(ctx: Ctx, s: &Session, error: &str, notice: &str) -> WebResponse {
    let (csrf, logout_csrf) = (ctx.csrf("password", &s.id_hash), ctx.csrf("logout", ""));
    let html = pages::render(&Password { account: &s.user.account, error, notice, csrf: &csrf, logout_csrf: &logout_csrf });
    ctx.page(200, html, &[])
}

/// The live session, or the answer to give: a login first (303 to /sso/login).
fn live(ctx: Ctx) -> Result<(Ctx, Session), WebResponse> {
    match ctx.session() {
        Ok(Some(s)) => Ok((ctx, s)),
        Ok(None) => Err(ctx.redirect(303, "/sso/login".into())),
        Err(e) => Err(ctx.db_error(&e)),
    }
}

/// `GET /account/password`.
pub fn page(ctx: Ctx) -> WebResponse {
    match live(ctx) {
        Ok((ctx, s)) => form(ctx, &s, "", ""),
        Err(r) => r,
    }
}

/// Why a new password is refused, in the user's words; None: acceptable.
fn refusal(account: &str, new: &str, again: &str) -> Option<&'static str> {
    if new != again {
        Some("两次输入的新密码不一致。")
    } else if new.chars().count() > 64 {
        Some("新密码太长（最多 64 个字符）。")
    } else if pp::weak_password(new, account) {
        Some("新密码过于简单：至少 6 位，不能全部是同一个字符，也不能与帐号相同。")
    } else {
        None
    }
}

/// `POST /account/password`: old_password, new_password, new_password2, csrf.
pub fn submit(ctx: Ctx) -> WebResponse {
    let (ctx, s) = match live(ctx) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !ctx.csrf_ok("password", &s.id_hash) {
        return ctx.csrf_refused();
    }
    if !s.user.local {
        return form(ctx, &s, "您的帐号属于其他省份，请在归属省修改密码。", "");
    }
    let (old, new, again) = (ctx.field("old_password").to_string(), ctx.field("new_password").to_string(), ctx.field("new_password2").to_string());
    if let Some(msg) = refusal(&s.user.account, &new, &again) {
        return form(ctx, &s, msg, "");
    }
    let app = ctx.app;
    // The old password is checked like any login: a wrong one counts toward the lockout.
    match authenticate(app, "web:password", &s.user.account_type, &s.user.account, &old) {
        Ok(_) => {}
        Err(AuthFail::Refused(r)) if r.result == crate::spec::codes::SYSTEM_ERROR => return form(ctx, &s, super::sso::BUSY, ""),
        Err(_) => return form(ctx, &s, "原密码错误，或帐号暂时无法使用。", ""),
    }
    let Ok(phc) = app.hasher.hash(new.clone()) else {
        return form(ctx, &s, super::sso::BUSY, "");
    };
    let now = app.clock.unix();
    // With no centre peer (or sync_passwords off) nothing is queued; the outbox holds the
    // password only encrypted under the centre key, with that key's version.
    let to_centre = app.cfg.sync.sync_passwords.then(|| app.peers.centre()).flatten().and_then(|centre| {
        centre.current_key(now).map(|k| (k.key.encrypt_b64(new.as_bytes()), k.version))
    });
    let (id, keep, change_time) = (s.user.vnet_user_id.clone(), s.id_hash.clone(), app.clock.format_ts(now));
    let w = app.store.write(move |c| {
        crate::domain::passport::set_password(c, &id, &phc, now)?;
        // Other sessions of the user end; the one the change was made in stays.
        store_sso::end_user(c, &id, Some(&keep))?;
        if let Some((enc, version)) = to_centre {
            use crate::spec::outbound::{PUserPasswordNotify, P_USER_PASSWORD_NOTIFY as op};
            let payload = PUserPasswordNotify::Payload { VNetUserID: id.clone(), Password: enc, ChangeTime: change_time }.values();
            outbox::enqueue_op(c, &op, outbox::CENTRE, &outbox::user_key(&id), &payload, Some(version), now)?;
        }
        Ok(())
    });
    match w {
        Ok(()) => {
            audit("password_change", &[("user", &s.user.vnet_user_id), ("via", "web")]);
            form(ctx, &s, "", "密码已修改。下次登录请使用新密码。")
        }
        Err(e) => ctx.db_error(&e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusals() {
        assert!(super::refusal("fz001", "Good-Pass1", "Good-Pass2").is_some());
        assert!(super::refusal("fz001", "abc", "abc").is_some());
        assert!(super::refusal("fz001", "aaaaaaa", "aaaaaaa").is_some());
        assert!(super::refusal("fz001xx", "fz001xx", "fz001xx").is_some());
        assert!(super::refusal("fz001", "Good-Pass1", "Good-Pass1").is_none());
    }
}
