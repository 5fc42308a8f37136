//! The access network's sessions (spec 4.5, 11): `online_session`, IP address → account as the
//! AAA reports it. Addresses are in their canonical text (`domain::access::canonical_ip`).

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// A session to open.
pub struct Online<'a> {
    pub aaa: &'a str,
    pub session_id: &'a str,
    pub ip: &'a str,
    pub account: &'a str,
    pub nas_ip: &'a str,
    pub nas_port: &'a str,
    pub started_at: i64,
}

/// The session holding an address: AAA, SessionID, start.
pub fn holder_of_ip(tx: &Read, ip: &str) -> DbResult<Option<(String, String, i64)>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT aaa, session_id, started_at FROM online_session WHERE ip = ?1")?
        .query_row([ip], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// Close the sessions on an address; returns how many.
pub fn close_ip(tx: &Write, ip: &str) -> DbResult<usize> {
    Ok(tx.conn().prepare_cached("DELETE FROM online_session WHERE ip = ?1")?.execute([ip])?)
}

/// Open a session (the same session open on another address moves).
pub fn open(tx: &Write, o: &Online, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "INSERT INTO online_session(aaa, session_id, ip, account, nas_ip, nas_port, started_at, last_event_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(aaa, session_id) DO UPDATE SET ip = excluded.ip, account = excluded.account,
           nas_ip = excluded.nas_ip, nas_port = excluded.nas_port, started_at = excluded.started_at,
           last_event_at = excluded.last_event_at",
        )?
        .execute(params![o.aaa, o.session_id, o.ip, o.account, o.nas_ip, o.nas_port, o.started_at, now])?;
    Ok(())
}

/// Close a session by its SessionID; returns how many (0 or 1).
pub fn close(tx: &Write, aaa: &str, session_id: &str) -> DbResult<usize> {
    Ok(tx.conn().prepare_cached("DELETE FROM online_session WHERE aaa = ?1 AND session_id = ?2")?.execute(params![aaa, session_id])?)
}

/// Note an event of a session open on `ip`; returns how many (0: not open there).
pub fn refresh(tx: &Write, aaa: &str, session_id: &str, ip: &str, now: i64) -> DbResult<usize> {
    Ok(tx
        .conn()
        .prepare_cached("UPDATE online_session SET last_event_at = ?1 WHERE aaa = ?2 AND session_id = ?3 AND ip = ?4")?
        .execute(params![now, aaa, session_id, ip])?)
}

/// The account of the session on `ip` with an event after `seen_after`.
pub fn account_at(tx: &Read, ip: &str, seen_after: i64) -> DbResult<Option<String>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT account FROM online_session WHERE ip = ?1 AND last_event_at > ?2")?
        .query_row(params![ip, seen_after], |r| r.get(0))
        .optional()?)
}

/// Close up to `limit` sessions with no event after `seen_by`. Returns how many.
pub fn close_stale(tx: &Write, seen_by: i64, limit: i64) -> DbResult<usize> {
    Ok(tx
        .conn()
        .prepare_cached("DELETE FROM online_session WHERE rowid IN (SELECT rowid FROM online_session WHERE last_event_at <= ?1 LIMIT ?2)")?
        .execute(params![seen_by, limit])?)
}

/// Open sessions.
pub fn open_count(tx: &Read) -> DbResult<i64> {
    Ok(tx.conn().query_row("SELECT count(*) FROM online_session", [], |r| r.get(0))?)
}
