//! The `user` table: the provincial PassPort's accounts (spec 3, 4, 11).

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension, Row};

/// A user row.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub vnet_user_id: String,
    pub account_type: String,
    pub account: String,
    pub password_phc: Option<String>,
    pub city_code: String,
    pub user_type: String,
    pub credit_limit: i64,
    pub balance: i64,
    pub alias: String,
    pub binding_access_no: String,
    pub contract_id: String,
    pub status: String,
    pub status_at: i64,
    pub failed_logins: i64,
    pub locked_until: i64,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub account_type: String,
    pub account: String,
    pub password_phc: Option<String>,
    pub city_code: String,
    pub user_type: String,
    pub credit_limit: i64,
    pub balance: i64,
    pub alias: String,
    pub binding_access_no: String,
}

const COLUMNS: &str = "vnet_user_id, account_type, account, password_phc, city_code, user_type, credit_limit, balance, \
     alias, binding_access_no, contract_id, status, status_at, failed_logins, locked_until";

fn from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        vnet_user_id: r.get(0)?,
        account_type: r.get(1)?,
        account: r.get(2)?,
        password_phc: r.get(3)?,
        city_code: r.get(4)?,
        user_type: r.get(5)?,
        credit_limit: r.get(6)?,
        balance: r.get(7)?,
        alias: r.get(8)?,
        binding_access_no: r.get(9)?,
        contract_id: r.get(10)?,
        status: r.get(11)?,
        status_at: r.get(12)?,
        failed_logins: r.get(13)?,
        locked_until: r.get(14)?,
    })
}

pub fn by_id(tx: &Read, id: &str) -> DbResult<Option<User>> {
    let mut st = tx.conn().prepare_cached(&format!("SELECT {COLUMNS} FROM user WHERE vnet_user_id = ?1"))?;
    Ok(st.query_row([id], from_row).optional()?)
}

/// The holder of an account: the one who is not cancelled, else the most recently cancelled.
pub fn latest_holder(tx: &Read, account_type: &str, account: &str) -> DbResult<Option<User>> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {COLUMNS} FROM user WHERE account_type = ?1 AND account = ?2 ORDER BY status = '03', status_at DESC LIMIT 1"
    ))?;
    Ok(st.query_row(params![account_type, account], from_row).optional()?)
}

/// Is the account held by a user who is not cancelled?
pub fn account_taken(tx: &Read, account_type: &str, account: &str) -> DbResult<bool> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT 1 FROM user WHERE account_type = ?1 AND account = ?2 AND status <> '03'",
            params![account_type, account],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Insert a user with status 00 under `id`.
pub fn insert(tx: &Write, id: &str, u: &NewUser, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "INSERT INTO user(vnet_user_id, account_type, account, password_phc, city_code, user_type, credit_limit, balance,
                          alias, binding_access_no, status, status_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '00', ?11, ?11, ?11)",
        params![id, u.account_type, u.account, u.password_phc, u.city_code, u.user_type, u.credit_limit, u.balance, u.alias, u.binding_access_no, now],
    )?;
    Ok(())
}

/// Keep the ContractID the centre answered to a PUserInfoNotify (6.2).
pub fn set_contract_id(tx: &Write, id: &str, contract_id: &str) -> DbResult<()> {
    tx.conn().prepare_cached("UPDATE user SET contract_id = ?2 WHERE vnet_user_id = ?1")?.execute(params![id, contract_id])?;
    Ok(())
}

/// Store a user's profile fields (UserModify): CityCode, UserType, Alias, BindingAccessNo,
/// CreditLimit, Balance.
pub fn save_profile(tx: &Write, u: &User, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "UPDATE user SET city_code = ?2, user_type = ?3, alias = ?4, binding_access_no = ?5, credit_limit = ?6,
         balance = ?7, updated_at = ?8 WHERE vnet_user_id = ?1",
        )?
        .execute(params![u.vnet_user_id, u.city_code, u.user_type, u.alias, u.binding_access_no, u.credit_limit, u.balance, now])?;
    Ok(())
}

/// Set a user's status as of `status_at` (PUserStatusNotify: the centre's StatusTime).
pub fn set_status_at(tx: &Write, id: &str, status: &str, status_at: i64, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached("UPDATE user SET status = ?2, status_at = ?3, updated_at = ?4 WHERE vnet_user_id = ?1")?
        .execute(params![id, status, status_at, now])?;
    Ok(())
}

/// Set a user's status as of now (UserStatusChange).
pub fn set_status(tx: &Write, id: &str, status: &str, now: i64) -> DbResult<()> {
    tx.conn().execute("UPDATE user SET status = ?2, status_at = ?3, updated_at = ?3 WHERE vnet_user_id = ?1", params![id, status, now])?;
    Ok(())
}

/// Store a new password hash and end any lockout (the user's own change, spec 5.4).
pub fn set_password(tx: &Write, id: &str, phc: &str, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached("UPDATE user SET password_phc = ?2, failed_logins = 0, locked_until = 0, updated_at = ?3 WHERE vnet_user_id = ?1")?
        .execute(params![id, phc, now])?;
    Ok(())
}

/// As `set_password` (PasswordReset, 4.4).
pub fn reset_password(tx: &Write, id: &str, phc: &str, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "UPDATE user SET password_phc = ?2, failed_logins = 0, locked_until = 0, updated_at = ?3 WHERE vnet_user_id = ?1",
        params![id, phc, now],
    )?;
    Ok(())
}

/// Lock the account until `until`; the failure count starts again.
pub fn lock(tx: &Write, id: &str, until: i64) -> DbResult<()> {
    tx.conn().execute("UPDATE user SET failed_logins = 0, locked_until = ?2 WHERE vnet_user_id = ?1", params![id, until])?;
    Ok(())
}

/// Set the failure count (and end an ended lock).
pub fn set_failures(tx: &Write, id: &str, failed: i64) -> DbResult<()> {
    tx.conn().execute("UPDATE user SET failed_logins = ?2, locked_until = 0 WHERE vnet_user_id = ?1", params![id, failed])?;
    Ok(())
}

pub fn reset_failures(tx: &Write, id: &str) -> DbResult<()> {
    tx.conn().execute("UPDATE user SET failed_logins = 0, locked_until = 0 WHERE vnet_user_id = ?1", [id])?;
    Ok(())
}

/// UserType, CreditLimit and Balance of a user, for the credit check (spec 11 "Credit").
pub fn credit(tx: &Read, id: &str) -> DbResult<(String, i64, i64)> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT user_type, credit_limit, balance FROM user WHERE vnet_user_id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?)
}

/// Take `fee` off a prepaid user's balance.
pub fn debit_balance(tx: &Write, id: &str, fee: i64) -> DbResult<()> {
    tx.conn().prepare_cached("UPDATE user SET balance = balance - ?2 WHERE vnet_user_id = ?1")?.execute(params![id, fee])?;
    Ok(())
}

/// The VNetUserIDs of the accounts starting with `prefix`, by account (the benchmarks' users).
pub fn ids_with_account_prefix(tx: &Read, prefix: &str) -> DbResult<Vec<String>> {
    let mut st = tx.conn().prepare("SELECT vnet_user_id FROM user WHERE account LIKE ?1 ORDER BY account")?;
    let ids = st.query_map([format!("{prefix}%")], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}
