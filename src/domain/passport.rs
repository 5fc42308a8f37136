//! The provincial PassPort's users (spec 3, 4, 11): accounts, statuses, passwords, lockout,
//! VNetUserID assignment.

use super::Error;
use crate::spec::outbound;
use crate::store::{outbox, users};
use crate::store::{next_counter, DbResult};
use crate::store::{Read, Write};

pub const STATUS_NORMAL: &str = "00";
pub const STATUS_SUSPENDED: &str = "01";
pub const STATUS_FROZEN: &str = "02";
pub const STATUS_CANCELLED: &str = "03";

/// Account types tried for account-only look-ups (spec 11).
pub const LOOKUP_ORDER: [&str; 5] = ["01", "02", "03", "04", "09"];

pub use crate::store::users::{NewUser, User};
pub use crate::store::users::{reset_failures, save_profile, set_contract_id, set_password, set_status_at};

impl User {
    pub fn num_flag(&self) -> &'static str {
        num_flag(&self.account_type)
    }
    pub fn is_cancelled(&self) -> bool {
        self.status == STATUS_CANCELLED
    }
}

/// NumFlag from the account type (spec 11).
pub fn num_flag(account_type: &str) -> &'static str {
    match account_type {
        "03" => "1",
        "09" => "2",
        "04" => "3",
        _ => "",
    }
}

pub use crate::spec::is_mobile;

/// Weak: fewer than 6 characters, one character repeated, or equal to the account (spec 11).
pub fn weak_password(password: &str, account: &str) -> bool {
    let mut chars = password.chars();
    let first = chars.clone().next();
    password.chars().count() < 6 || chars.all(|c| Some(c) == first) || password == account
}

pub fn by_id(tx: &Read, id: &str) -> DbResult<Option<User>> {
    users::by_id(tx, id)
}

/// Who holds an account, for authentication (spec 11).
#[derive(Debug)]
pub enum Holder {
    /// The holder who is not cancelled.
    Live(User),
    /// Only cancelled holders exist: the most recently cancelled one.
    Cancelled(User),
    /// No local user ever held it.
    None,
}

pub fn holder(tx: &Read, account_type: &str, account: &str) -> DbResult<Holder> {
    let u = users::latest_holder(tx, account_type, account)?;
    Ok(match u {
        Some(u) if u.is_cancelled() => Holder::Cancelled(u),
        Some(u) => Holder::Live(u),
        None => Holder::None,
    })
}

/// Is the account held by a user who is not cancelled?
pub fn account_taken(tx: &Read, account_type: &str, account: &str) -> DbResult<bool> {
    users::account_taken(tx, account_type, account)
}

/// Create a user with the next VNetUserID (ProvinceID + 10-digit sequence, never reused).
/// The caller has checked that the account is free.
pub fn create(conn: &Write, province_id: &str, u: &NewUser, now: i64) -> DbResult<User> {
    let seq = next_counter(conn, "vnet_user_id")?;
    if seq > 9_999_999_999 {
        return Err(crate::store::DbError::Other("VNetUserID sequence exhausted".into()));
    }
    let id = format!("{province_id}{seq:010}");
    users::insert(conn, &id, u, now)?;
    Ok(by_id(conn, &id)?.expect("just inserted"))
}

/// Record a failed login; returns true if this failure locked the account.
pub fn record_failure(conn: &Write, id: &str, threshold: u32, lock_s: i64, now: i64) -> DbResult<bool> {
    let Some(u) = by_id(conn, id)? else { return Ok(false) };
    // A lock that has ended resets the counter (spec 11).
    let base = if u.locked_until != 0 && u.locked_until <= now { 0 } else { u.failed_logins };
    let failed = base + 1;
    if failed >= threshold as i64 {
        users::lock(conn, id, now + lock_s)?;
        Ok(true)
    } else {
        users::set_failures(conn, id, failed)?;
        Ok(false)
    }
}

/// The fields of a user that PUserInfoNotify carries (spec 6.2), after the SrcDeviceNo and
/// ProvinceID the relay adds, in the declared order.
pub fn info_notify_payload(u: &User, action: &str, change_time: &str) -> Vec<(&'static str, String)> {
    outbound::PUserInfoNotify::Payload {
        ActionType: action.to_string(),
        VNetUserID: u.vnet_user_id.clone(),
        AccountType: u.account_type.clone(),
        Account: u.account.clone(),
        Alias: u.alias.clone(),
        CityCode: u.city_code.clone(),
        UserType: u.user_type.clone(),
        Status: u.status.clone(),
        NumFlag: u.num_flag().to_string(),
        BindingAccessNo: u.binding_access_no.clone(),
        ChangeTime: change_time.to_string(),
    }
    .values()
}

/// Load a user for a change by the BSS or an operator: unknown (`UnknownUser`) and cancelled
/// (`Cancelled`) users cannot be changed.
pub fn changeable(conn: &Read, id: &str) -> DbResult<Result<User, Error>> {
    Ok(match by_id(conn, id)? {
        None => Err(Error::UnknownUser),
        Some(u) if u.is_cancelled() => Err(Error::Cancelled),
        Some(u) => Ok(u),
    })
}

/// Queue PUserInfoNotify (6.2) for `u`: ActionType 1 open, 2 modify, 3 status.
pub fn queue_info_notify(conn: &Write, clock: &crate::clock::Clock, u: &User, action: &str, now: i64) -> DbResult<()> {
    let payload = info_notify_payload(u, action, &clock.format_ts(now));
    outbox::enqueue_op(conn, &outbound::P_USER_INFO_NOTIFY, outbox::CENTRE, &outbox::user_key(&u.vnet_user_id), &payload, None, now)?;
    Ok(())
}

/// The effects of UserStatusChange (4.4), inside the caller's write transaction: the new status,
/// every order ended when it is 03 (cancelled, terminal), the user's SSO sessions ended when it
/// is not 00, and PUserInfoNotify ActionType 3 queued. Returns whether the status changed (the
/// same status again is a no-op).
pub fn change_status(
    conn: &Write,
    clock: &crate::clock::Clock,
    province: &str,
    id: &str,
    status: &str,
    now: i64,
) -> DbResult<Result<bool, Error>> {
    let mut u = match changeable(conn, id)? {
        Ok(u) => u,
        Err(e) => return Ok(Err(e)),
    };
    if u.status == status {
        return Ok(Ok(false));
    }
    users::set_status(conn, id, status, now)?;
    if status == STATUS_CANCELLED {
        // Cancelling the account ends every order now (OrderNotify ActionType 5).
        let ctx = super::billing::WriteCtx::new(conn, super::calendar::Cal::new(clock.tz()), province, now);
        super::billing::end_orders_of_user(&ctx, id)?;
    }
    if status != STATUS_NORMAL {
        super::sso::end_user(conn, id, None)?;
    }
    u.status = status.to_string();
    queue_info_notify(conn, clock, &u, "3", now)?;
    Ok(Ok(true))
}

/// The new password of a PasswordReset for the centre (6.4): encrypted under the centre key, with
/// that key's version and the TransactionID to send.
pub struct ResetToCentre {
    pub enc_password: String,
    pub key_version: i64,
    pub transaction_id: String,
}

/// The effects of PasswordReset (4.4), inside the caller's write transaction: the new hash, the
/// failure count and lock cleared, every SSO session ended, and PasswordReset (6.4) queued for the
/// centre when `to_centre` is given (no centre peer: nothing is queued).
pub fn reset_password(conn: &Write, id: &str, phc: &str, to_centre: Option<ResetToCentre>, now: i64) -> DbResult<Result<(), Error>> {
    let u = match changeable(conn, id)? {
        Ok(u) => u,
        Err(e) => return Ok(Err(e)),
    };
    users::reset_password(conn, id, phc, now)?;
    super::sso::end_user(conn, id, None)?;
    if let Some(c) = to_centre {
        let payload =
            outbound::PasswordReset::Payload { VNetUserID: u.vnet_user_id.clone(), NewPassword: c.enc_password, TransactionID: c.transaction_id };
        outbox::enqueue_op(conn, &outbound::PASSWORD_RESET, outbox::CENTRE, &outbox::user_key(id), &payload.values(), Some(c.key_version), now)?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords() {
        assert!(weak_password("abc12", "x"));
        assert!(weak_password("aaaaaaaa", "x"));
        assert!(weak_password("fz12345678", "fz12345678"));
        assert!(!weak_password("s3cret-Pass", "fz12345678"));
        assert!(weak_password("互互互互互互", "x"));
        assert!(!weak_password("互联星空互联", "x"));
    }

    #[test]
    fn num_flags() {
        assert_eq!(num_flag("03"), "1");
        assert_eq!(num_flag("09"), "2");
        assert_eq!(num_flag("04"), "3");
        assert_eq!(num_flag("01"), "");
        assert_eq!(num_flag("02"), "");
    }
}
