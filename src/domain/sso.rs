//! SSO sessions, tickets and browser payments (spec 5, 4.1 TicketValidate/UserLogout/
//! PaymentQuery, 11 "Browser"). Cookie values and tickets are stored only as SHA-1 digests, so a
//! copy of the database does not hand out live sessions.

use crate::crypto::{random_bytes, sha1_b64};
use crate::domain::passport::User;
use crate::store::DbResult;
use base64::Engine;
use crate::store::{Read, Write};
use rusqlite::{params, OptionalExtension};

/// A new random secret of `n` bytes, base64url without padding (VNETSSO: 32 bytes, spec 11).
pub fn new_secret(n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// The digest a cookie value or ticket is stored under.
pub fn digest(secret: &str) -> String {
    sha1_b64(secret.as_bytes())
}

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

impl SessionUser {
    pub fn from_local(u: &User, province_id: &str) -> SessionUser {
        SessionUser {
            vnet_user_id: u.vnet_user_id.clone(),
            local: true,
            account_type: u.account_type.clone(),
            account: u.account.clone(),
            province_id: province_id.to_string(),
            city_code: u.city_code.clone(),
            user_type: u.user_type.clone(),
            status: u.status.clone(),
        }
    }
}

/// A live session: its digest and user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub user: SessionUser,
}

/// Timeouts of a session (spec 5): idle and absolute, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_s: i64,
    pub max_s: i64,
}

/// Create a session for `user`; returns the cookie value (only the digest is stored).
pub fn create_session(conn: &Write, user: &SessionUser, now: i64) -> DbResult<String> {
    let cookie = new_secret(32);
    conn.prepare_cached(
        "INSERT INTO sso_session(id_hash, vnet_user_id, local, account_type, account, province_id, city_code, user_type, status,
                                 created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        digest(&cookie),
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
    Ok(cookie)
}

fn session_by_hash(conn: &Read, id_hash: &str, now: i64, lim: Limits) -> DbResult<Option<Session>> {
    let row = conn
        .prepare_cached(
            "SELECT vnet_user_id, local, account_type, account, province_id, city_code, user_type, status
             FROM sso_session WHERE id_hash = ?1 AND last_seen_at > ?2 AND created_at > ?3",
        )?
        .query_row(params![id_hash, now - lim.idle_s, now - lim.max_s], |r| {
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
        .optional()?;
    Ok(row.map(|user| Session { id_hash: id_hash.to_string(), user }))
}

/// The live session of a cookie value (within both timeouts), or None.
pub fn session(conn: &Read, cookie: &str, now: i64, lim: Limits) -> DbResult<Option<Session>> {
    session_by_hash(conn, &digest(cookie), now, lim)
}

/// Use of a session: its idle timeout starts again.
pub fn touch(conn: &Write, id_hash: &str, now: i64) -> DbResult<()> {
    conn.prepare_cached("UPDATE sso_session SET last_seen_at = ?2 WHERE id_hash = ?1")?.execute(params![id_hash, now])?;
    Ok(())
}

/// Issue a single-use ticket for `spid` from a session; returns the ticket (only its digest is
/// stored). Touches the session.
pub fn issue_ticket(conn: &Write, s: &Session, spid: &str, now: i64, ttl_s: i64) -> DbResult<String> {
    let ticket = new_secret(24);
    conn.prepare_cached(
        "INSERT INTO sso_ticket(ticket_hash, session_hash, spid, vnet_user_id, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![digest(&ticket), s.id_hash, spid, s.user.vnet_user_id, now + ttl_s])?;
    touch(conn, &s.id_hash, now)?;
    Ok(ticket)
}

/// Consume a ticket (any attempt consumes it, spec 11) and return its session's user when the
/// ticket was issued to `spid`, has not expired and its session is still live.
pub fn redeem_ticket(conn: &Write, ticket: &str, spid: &str, now: i64, lim: Limits) -> DbResult<Option<SessionUser>> {
    let h = digest(ticket);
    let row: Option<(String, String, i64)> = conn
        .prepare_cached("DELETE FROM sso_ticket WHERE ticket_hash = ?1 RETURNING session_hash, spid, expires_at")?
        .query_row([&h], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((session_hash, for_spid, expires_at)) = row else { return Ok(None) };
    if for_spid != spid || expires_at <= now {
        return Ok(None);
    }
    Ok(session_by_hash(conn, &session_hash, now, lim)?.map(|s| s.user))
}

/// End one session and its unused tickets.
pub fn end_session(conn: &Write, id_hash: &str) -> DbResult<()> {
    conn.prepare_cached("DELETE FROM sso_ticket WHERE session_hash = ?1")?.execute([id_hash])?;
    conn.prepare_cached("DELETE FROM sso_session WHERE id_hash = ?1")?.execute([id_hash])?;
    Ok(())
}

/// End every session of a user and revoke the unused tickets; `keep` spares one session (the
/// one a password change was made in). Returns the sessions and tickets ended.
pub fn end_user(conn: &Write, vnet_user_id: &str, keep: Option<&str>) -> DbResult<usize> {
    let keep = keep.unwrap_or("");
    let t = conn
        .prepare_cached("DELETE FROM sso_ticket WHERE vnet_user_id = ?1 AND session_hash <> ?2")?
        .execute(params![vnet_user_id, keep])?;
    let s = conn
        .prepare_cached("DELETE FROM sso_session WHERE vnet_user_id = ?1 AND id_hash <> ?2")?
        .execute(params![vnet_user_id, keep])?;
    Ok(s + t)
}

/// Does anything of the user's live here (a session or a ticket)? UserLogout for a user of
/// another province is known by its sessions.
pub fn has_sessions(conn: &Read, vnet_user_id: &str) -> DbResult<bool> {
    let n: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM sso_session WHERE vnet_user_id = ?1) + (SELECT count(*) FROM sso_ticket WHERE vnet_user_id = ?1)",
        [vnet_user_id],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Housekeeping (7.5): drop expired tickets and sessions. Returns the rows deleted.
pub fn expire(conn: &Write, now: i64, lim: Limits) -> DbResult<usize> {
    let t = conn.execute("DELETE FROM sso_ticket WHERE expires_at <= ?1", [now])?;
    let s = conn.execute(
        "DELETE FROM sso_session WHERE last_seen_at <= ?1 OR created_at <= ?2",
        params![now - lim.idle_s, now - lim.max_s],
    )?;
    // Tickets of sessions that ended above are useless: redeem_ticket needs the session.
    Ok(t + s)
}

// ---- payments ----

pub const PAY_PAID: &str = "0";
pub const PAY_PENDING: &str = "1";
pub const PAY_CANCELLED: &str = "2";
pub const PAY_FAILED: &str = "3";

/// A browser payment by the SP's OrderID.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub status: String,
    pub result: i32,
    pub transaction_id: String,
    pub fee: i64,
    pub pay_at: Option<i64>,
}

pub fn payment(conn: &Read, spid: &str, order_id: &str) -> DbResult<Option<Payment>> {
    Ok(conn
        .prepare_cached("SELECT status, result, transaction_id, fee, pay_at FROM payment WHERE spid = ?1 AND order_id = ?2")?
        .query_row(params![spid, order_id], |r| {
            Ok(Payment { status: r.get(0)?, result: r.get(1)?, transaction_id: r.get(2)?, fee: r.get(3)?, pay_at: r.get(4)? })
        })
        .optional()?)
}

/// What a payment is for, as the PayRequest names it.
#[derive(Debug, Clone)]
pub struct PayFor {
    pub spid: String,
    pub order_id: String,
    pub service_id: String,
    pub item_id: String,
    pub fee: i64,
}

/// Note a payment page shown (PaymentStatus 1) unless the OrderID is known already.
pub fn note_pending(conn: &Write, p: &PayFor, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO payment(spid, order_id, status, service_id, service_item_id, fee, created_at, updated_at)
         VALUES (?1, ?2, '1', ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![p.spid, p.order_id, p.service_id, p.item_id, p.fee, now])?;
    Ok(())
}

/// Record the outcome of a payment attempt (paid, cancelled or failed). A paid OrderID is never
/// overwritten: the caller checks `payment` first in the same transaction.
pub fn record_outcome(conn: &Write, p: &PayFor, user: &str, status: &str, result: i32, txid: &str, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "INSERT INTO payment(spid, order_id, status, result, transaction_id, service_id, service_item_id, fee, vnet_user_id,
                             pay_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)
         ON CONFLICT(spid, order_id) DO UPDATE SET status = excluded.status, result = excluded.result,
             transaction_id = excluded.transaction_id, service_id = excluded.service_id,
             service_item_id = excluded.service_item_id, fee = excluded.fee, vnet_user_id = excluded.vnet_user_id,
             pay_at = excluded.pay_at, updated_at = excluded.updated_at
         WHERE payment.status <> '0'",
    )?
    .execute(params![p.spid, p.order_id, status, result, txid, p.service_id, p.item_id, p.fee, user, now])?;
    Ok(())
}

/// A confirmation's hold on a payment charged through the centre.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// Paid already: answer with the first result.
    Paid(Payment),
    /// Send the charge under this TransactionID.
    Mine(String),
    /// Another confirmation of the same OrderID is waiting for the centre.
    Busy,
}

/// Claim a payment for a charge through the centre (spec 6.9). An attempt started less than
/// `in_flight_s` ago belongs to its confirmation (Busy); an older one, or one whose answer was
/// never known (a timeout), is taken over under its own TransactionID; otherwise `fresh` is used.
pub fn claim_attempt(conn: &Write, p: &PayFor, user: &str, fresh: &str, now: i64, in_flight_s: i64) -> DbResult<Claim> {
    if let Some(first) = payment(conn, &p.spid, &p.order_id)?.filter(|x| x.status == PAY_PAID) {
        return Ok(Claim::Paid(first));
    }
    let held: Option<(String, i64)> = conn
        .prepare_cached("SELECT attempt_txid, attempt_at FROM payment WHERE spid = ?1 AND order_id = ?2")?
        .query_row(params![p.spid, p.order_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let txid = match held {
        Some((t, at)) if !t.is_empty() && at != 0 && at > now - in_flight_s => return Ok(Claim::Busy),
        Some((t, _)) if !t.is_empty() => t,
        _ => fresh.to_string(),
    };
    conn.prepare_cached(
        "INSERT INTO payment(spid, order_id, status, service_id, service_item_id, fee, vnet_user_id, attempt_txid, attempt_at,
                             created_at, updated_at)
         VALUES (?1, ?2, '1', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8)
         ON CONFLICT(spid, order_id) DO UPDATE SET status = '1', vnet_user_id = excluded.vnet_user_id,
             attempt_txid = excluded.attempt_txid, attempt_at = excluded.attempt_at, updated_at = excluded.updated_at",
    )?
    .execute(params![p.spid, p.order_id, p.service_id, p.item_id, p.fee, user, txid, now])?;
    Ok(Claim::Mine(txid))
}

/// End an attempt with the centre's `result`: paid (0, with `txid`) or failed. The attempt's
/// TransactionID is kept for the next try when the centre's answer is not a stored business
/// outcome (`keep_txid`: a timeout, a parameter or system error), else forgotten.
pub fn finish_attempt(conn: &Write, p: &PayFor, user: &str, result: i32, txid: &str, keep_txid: bool, now: i64) -> DbResult<()> {
    let status = if result == 0 { PAY_PAID } else { PAY_FAILED };
    record_outcome(conn, p, user, status, result, txid, now)?;
    conn.prepare_cached(
        "UPDATE payment SET attempt_at = 0, attempt_txid = CASE WHEN ?3 THEN attempt_txid ELSE '' END WHERE spid = ?1 AND order_id = ?2",
    )?
    .execute(params![p.spid, p.order_id, keep_txid])?;
    Ok(())
}

/// The node's secret `name` of `len` random bytes, made on first use and kept in the database.
pub fn node_secret(conn: &Write, name: &str, len: usize) -> DbResult<Vec<u8>> {
    conn.execute("INSERT OR IGNORE INTO node_secret(name, value) VALUES (?1, ?2)", params![name, random_bytes(len)])?;
    Ok(conn.query_row("SELECT value FROM node_secret WHERE name = ?1", [name], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Write<'static> {
        crate::store::memory_db()
    }

    fn user(id: &str) -> SessionUser {
        SessionUser {
            vnet_user_id: id.into(),
            local: true,
            account_type: "01".into(),
            account: "a".into(),
            province_id: "35".into(),
            city_code: "0591".into(),
            user_type: "1".into(),
            status: "00".into(),
        }
    }

    const LIM: Limits = Limits { idle_s: 1800, max_s: 8 * 3600 };

    #[test]
    fn centre_payment_attempts_are_claimed_once_and_retried_under_their_id() {
        let c = db();
        let p = PayFor { spid: "35000001".into(), order_id: "O1".into(), service_id: "s".into(), item_id: "i".into(), fee: 200 };
        let u = "440000000001";
        assert_eq!(claim_attempt(&c, &p, u, "PYA", 100, 10).unwrap(), Claim::Mine("PYA".into()));
        assert_eq!(claim_attempt(&c, &p, u, "PYB", 105, 10).unwrap(), Claim::Busy, "in flight");
        // A crash left the attempt: after in_flight_s it is taken over under the same id.
        assert_eq!(claim_attempt(&c, &p, u, "PYC", 111, 10).unwrap(), Claim::Mine("PYA".into()));
        // The answer was lost (timeout): the id is kept for the next try, which is not Busy.
        finish_attempt(&c, &p, u, -22500, "", true, 112).unwrap();
        assert_eq!(payment(&c, "35000001", "O1").unwrap().unwrap().status, PAY_FAILED);
        assert_eq!(claim_attempt(&c, &p, u, "PYD", 113, 10).unwrap(), Claim::Mine("PYA".into()));
        // A business refusal: the id is forgotten, the next try gets a fresh one.
        finish_attempt(&c, &p, u, -20509, "", false, 114).unwrap();
        assert_eq!(claim_attempt(&c, &p, u, "PYE", 115, 10).unwrap(), Claim::Mine("PYE".into()));
        finish_attempt(&c, &p, u, 0, "PYE", false, 116).unwrap();
        let paid = payment(&c, "35000001", "O1").unwrap().unwrap();
        assert_eq!((paid.status.as_str(), paid.transaction_id.as_str()), (PAY_PAID, "PYE"));
        assert_eq!(claim_attempt(&c, &p, u, "PYF", 117, 10).unwrap(), Claim::Paid(paid));
    }

    #[test]
    fn session_timeouts() {
        let c = db();
        let cookie = create_session(&c, &user("350000000001"), 1000).unwrap();
        assert_eq!(cookie.len(), 43, "32 bytes base64url without padding");
        let stored: String = c.query_row("SELECT id_hash FROM sso_session", [], |r| r.get(0)).unwrap();
        assert_ne!(stored, cookie, "only the digest is stored");
        assert!(session(&c, &cookie, 1000 + 1799, LIM).unwrap().is_some());
        assert!(session(&c, &cookie, 1000 + 1800, LIM).unwrap().is_none(), "idle timeout");
        // Touched every 20 minutes, it still ends at the absolute limit.
        let mut t = 1000;
        while t + 1200 < 1000 + 8 * 3600 {
            t += 1200;
            touch(&c, &digest(&cookie), t).unwrap();
        }
        assert!(session(&c, &cookie, 1000 + 8 * 3600 - 1, LIM).unwrap().is_some());
        assert!(session(&c, &cookie, 1000 + 8 * 3600, LIM).unwrap().is_none(), "absolute timeout");
        assert!(session(&c, "other", 1001, LIM).unwrap().is_none());
    }

    #[test]
    fn tickets_are_single_use_bound_and_expire() {
        let c = db();
        let cookie = create_session(&c, &user("350000000001"), 1000).unwrap();
        let s = session(&c, &cookie, 1000, LIM).unwrap().unwrap();
        let t1 = issue_ticket(&c, &s, "35000001", 1000, 60).unwrap();
        assert_eq!(redeem_ticket(&c, &t1, "35000001", 1010, LIM).unwrap().unwrap().vnet_user_id, "350000000001");
        assert!(redeem_ticket(&c, &t1, "35000001", 1010, LIM).unwrap().is_none(), "single use");
        let t2 = issue_ticket(&c, &s, "35000001", 1000, 60).unwrap();
        assert!(redeem_ticket(&c, &t2, "35000002", 1010, LIM).unwrap().is_none(), "other SP");
        assert!(redeem_ticket(&c, &t2, "35000001", 1010, LIM).unwrap().is_none(), "consumed by the failed attempt");
        let t3 = issue_ticket(&c, &s, "35000001", 1000, 60).unwrap();
        assert!(redeem_ticket(&c, &t3, "35000001", 1060, LIM).unwrap().is_none(), "expired");
        let t4 = issue_ticket(&c, &s, "35000001", 1000, 60).unwrap();
        assert_eq!(end_user(&c, "350000000001", None).unwrap(), 2);
        assert!(redeem_ticket(&c, &t4, "35000001", 1001, LIM).unwrap().is_none(), "revoked by logout");
        assert!(!has_sessions(&c, "350000000001").unwrap());
    }

    #[test]
    fn paid_is_final() {
        let c = db();
        let p = PayFor { spid: "35000001".into(), order_id: "O1".into(), service_id: "S".into(), item_id: "I".into(), fee: 200 };
        note_pending(&c, &p, 10).unwrap();
        assert_eq!(payment(&c, "35000001", "O1").unwrap().unwrap().status, PAY_PENDING);
        record_outcome(&c, &p, "u", PAY_CANCELLED, -20512, "", 11).unwrap();
        record_outcome(&c, &p, "u", PAY_PAID, 0, "PYX", 12).unwrap();
        record_outcome(&c, &p, "u", PAY_FAILED, -21003, "", 13).unwrap();
        let got = payment(&c, "35000001", "O1").unwrap().unwrap();
        assert_eq!((got.status.as_str(), got.result, got.transaction_id.as_str(), got.pay_at), (PAY_PAID, 0, "PYX", Some(12)));
    }
}
