//! SSO sessions and tickets (spec 5, 11 "Browser"), stored by the digests of their secrets, and
//! the node's own secrets (`node_secret`).

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// The user an SSO session belongs to, as TicketValidate answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUser {
    pub vnet_user_id: String,
    /// A user of this province (else logged in through the centre).
    pub local: bool,
    pub account_type: String,
    pub account: String,
    pub province_id: String,
    pub city_code: String,
    pub user_type: String,
    pub status: String,
}

pub fn insert_session(tx: &Write, id_hash: &str, user: &SessionUser, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "INSERT INTO sso_session(id_hash, vnet_user_id, local, account_type, account, province_id, city_code, user_type, status,
                                 created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )?
        .execute(params![
            id_hash,
            user.vnet_user_id,
            user.local,
            user.account_type,
            user.account,
            user.province_id,
            user.city_code,
            user.user_type,
            user.status,
            now
        ])?;
    Ok(())
}

/// The user of a session last seen after `seen_after` and created after `created_after`.
pub fn session_user(tx: &Read, id_hash: &str, seen_after: i64, created_after: i64) -> DbResult<Option<SessionUser>> {
    Ok(tx
        .conn()
        .prepare_cached(
            "SELECT vnet_user_id, local, account_type, account, province_id, city_code, user_type, status
             FROM sso_session WHERE id_hash = ?1 AND last_seen_at > ?2 AND created_at > ?3",
        )?
        .query_row(params![id_hash, seen_after, created_after], |r| {
            Ok(SessionUser {
                vnet_user_id: r.get(0)?,
                local: r.get(1)?,
                account_type: r.get(2)?,
                account: r.get(3)?,
                province_id: r.get(4)?,
                city_code: r.get(5)?,
                user_type: r.get(6)?,
                status: r.get(7)?,
            })
        })
        .optional()?)
}

/// Use of a session: its idle timeout starts again.
pub fn touch(tx: &Write, id_hash: &str, now: i64) -> DbResult<()> {
    tx.conn().prepare_cached("UPDATE sso_session SET last_seen_at = ?2 WHERE id_hash = ?1")?.execute(params![id_hash, now])?;
    Ok(())
}

pub fn insert_ticket(tx: &Write, ticket_hash: &str, session_hash: &str, spid: &str, vnet_user_id: &str, expires_at: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached("INSERT INTO sso_ticket(ticket_hash, session_hash, spid, vnet_user_id, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![ticket_hash, session_hash, spid, vnet_user_id, expires_at])?;
    Ok(())
}

/// Delete a ticket; returns its session digest, SPID and expiry if it existed.
pub fn take_ticket(tx: &Write, ticket_hash: &str) -> DbResult<Option<(String, String, i64)>> {
    Ok(tx
        .conn()
        .prepare_cached("DELETE FROM sso_ticket WHERE ticket_hash = ?1 RETURNING session_hash, spid, expires_at")?
        .query_row([ticket_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// Delete one session and its unused tickets.
pub fn delete_session(tx: &Write, id_hash: &str) -> DbResult<()> {
    tx.conn().prepare_cached("DELETE FROM sso_ticket WHERE session_hash = ?1")?.execute([id_hash])?;
    tx.conn().prepare_cached("DELETE FROM sso_session WHERE id_hash = ?1")?.execute([id_hash])?;
    Ok(())
}

/// Delete every session of a user but `keep` ('' none) and their unused tickets. Returns the
/// sessions and tickets deleted.
pub fn delete_user_sessions(tx: &Write, vnet_user_id: &str, keep: &str) -> DbResult<usize> {
    let t = tx
        .conn()
        .prepare_cached("DELETE FROM sso_ticket WHERE vnet_user_id = ?1 AND session_hash <> ?2")?
        .execute(params![vnet_user_id, keep])?;
    let s = tx
        .conn()
        .prepare_cached("DELETE FROM sso_session WHERE vnet_user_id = ?1 AND id_hash <> ?2")?
        .execute(params![vnet_user_id, keep])?;
    Ok(s + t)
}

/// The user's sessions and tickets.
pub fn count_of_user(tx: &Read, vnet_user_id: &str) -> DbResult<i64> {
    Ok(tx.conn().query_row(
        "SELECT (SELECT count(*) FROM sso_session WHERE vnet_user_id = ?1) + (SELECT count(*) FROM sso_ticket WHERE vnet_user_id = ?1)",
        [vnet_user_id],
        |r| r.get(0),
    )?)
}

/// Delete tickets expired at `now` and sessions last seen at or before `seen_by` or created at or
/// before `created_by`. Returns the rows deleted.
pub fn delete_expired(tx: &Write, now: i64, seen_by: i64, created_by: i64) -> DbResult<usize> {
    let t = tx.conn().execute("DELETE FROM sso_ticket WHERE expires_at <= ?1", [now])?;
    let s = tx.conn().execute("DELETE FROM sso_session WHERE last_seen_at <= ?1 OR created_at <= ?2", params![seen_by, created_by])?;
    Ok(t + s)
}

/// The node's secret `name`; `fresh` is stored first when it has none.
pub fn node_secret(tx: &Write, name: &str, fresh: Vec<u8>) -> DbResult<Vec<u8>> {
    tx.conn().execute("INSERT OR IGNORE INTO node_secret(name, value) VALUES (?1, ?2)", params![name, fresh])?;
    Ok(tx.conn().query_row("SELECT value FROM node_secret WHERE name = ?1", [name], |r| r.get(0))?)
}
