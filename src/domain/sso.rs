//! SSO sessions, tickets and browser payments (spec 5, 4.1 TicketValidate/UserLogout/
//! PaymentQuery, 11 "Browser"). Cookie values and tickets are stored only as SHA-1 digests, so a
//! copy of the database does not hand out live sessions.

use crate::crypto::{random_bytes, sha1_b64};
use crate::domain::passport::User;
use crate::store::DbResult;
use base64::Engine;
use crate::store::{Read, Write};
use crate::store::{payments, sso as db};

/// A new random secret of `n` bytes, base64url without padding (VNETSSO: 32 bytes, spec 11).
pub fn new_secret(n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// The digest a cookie value or ticket is stored under.
pub fn digest(secret: &str) -> String {
    sha1_b64(secret.as_bytes())
}

pub use crate::store::payments::{note_pending, payment, record_outcome, PayFor, Payment};
pub use crate::store::sso::SessionUser;

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
    db::insert_session(conn, &digest(&cookie), user, now)?;
    Ok(cookie)
}

fn session_by_hash(conn: &Read, id_hash: &str, now: i64, lim: Limits) -> DbResult<Option<Session>> {
    let row = db::session_user(conn, id_hash, now - lim.idle_s, now - lim.max_s)?;
    Ok(row.map(|user| Session { id_hash: id_hash.to_string(), user }))
}

/// The live session of a cookie value (within both timeouts), or None.
pub fn session(conn: &Read, cookie: &str, now: i64, lim: Limits) -> DbResult<Option<Session>> {
    session_by_hash(conn, &digest(cookie), now, lim)
}

/// Use of a session: its idle timeout starts again.
pub fn touch(conn: &Write, id_hash: &str, now: i64) -> DbResult<()> {
    db::touch(conn, id_hash, now)
}

/// Issue a single-use ticket for `spid` from a session; returns the ticket (only its digest is
/// stored). Touches the session.
pub fn issue_ticket(conn: &Write, s: &Session, spid: &str, now: i64, ttl_s: i64) -> DbResult<String> {
    let ticket = new_secret(24);
    db::insert_ticket(conn, &digest(&ticket), &s.id_hash, spid, &s.user.vnet_user_id, now + ttl_s)?;
    touch(conn, &s.id_hash, now)?;
    Ok(ticket)
}

/// Consume a ticket (any attempt consumes it, spec 11) and return its session's user when the
/// ticket was issued to `spid`, has not expired and its session is still live.
pub fn redeem_ticket(conn: &Write, ticket: &str, spid: &str, now: i64, lim: Limits) -> DbResult<Option<SessionUser>> {
    let row = db::take_ticket(conn, &digest(ticket))?;
    let Some((session_hash, for_spid, expires_at)) = row else { return Ok(None) };
    if for_spid != spid || expires_at <= now {
        return Ok(None);
    }
    Ok(session_by_hash(conn, &session_hash, now, lim)?.map(|s| s.user))
}

/// End one session and its unused tickets.
pub fn end_session(conn: &Write, id_hash: &str) -> DbResult<()> {
    db::delete_session(conn, id_hash)
}

/// End every session of a user and revoke the unused tickets; `keep` spares one session (the
/// one a password change was made in). Returns the sessions and tickets ended.
pub fn end_user(conn: &Write, vnet_user_id: &str, keep: Option<&str>) -> DbResult<usize> {
    db::delete_user_sessions(conn, vnet_user_id, keep.unwrap_or(""))
}

/// Does anything of the user's live here (a session or a ticket)? UserLogout for a user of
/// another province is known by its sessions.
pub fn has_sessions(conn: &Read, vnet_user_id: &str) -> DbResult<bool> {
    Ok(db::count_of_user(conn, vnet_user_id)? > 0)
}

/// Housekeeping (7.5): drop expired tickets and sessions. Returns the rows deleted.
pub fn expire(conn: &Write, now: i64, lim: Limits) -> DbResult<usize> {
    // Tickets of sessions that ended here are useless: redeem_ticket needs the session.
    db::delete_expired(conn, now, now - lim.idle_s, now - lim.max_s)
}

// ---- payments ----

pub const PAY_PAID: &str = "0";
pub const PAY_PENDING: &str = "1";
pub const PAY_CANCELLED: &str = "2";
pub const PAY_FAILED: &str = "3";

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
    let held = payments::attempt(conn, &p.spid, &p.order_id)?;
    let txid = match held {
        Some((t, at)) if !t.is_empty() && at != 0 && at > now - in_flight_s => return Ok(Claim::Busy),
        Some((t, _)) if !t.is_empty() => t,
        _ => fresh.to_string(),
    };
    payments::start_attempt(conn, p, user, &txid, now)?;
    Ok(Claim::Mine(txid))
}

/// End an attempt with the centre's `result`: paid (0, with `txid`) or failed. The attempt's
/// TransactionID is kept for the next try when the centre's answer is not a stored business
/// outcome (`keep_txid`: a timeout, a parameter or system error), else forgotten.
pub fn finish_attempt(conn: &Write, p: &PayFor, user: &str, result: i32, txid: &str, keep_txid: bool, now: i64) -> DbResult<()> {
    let status = if result == 0 { PAY_PAID } else { PAY_FAILED };
    record_outcome(conn, p, user, status, result, txid, now)?;
    payments::end_attempt(conn, &p.spid, &p.order_id, keep_txid)
}

/// The node's secret `name` of `len` random bytes, made on first use and kept in the database.
pub fn node_secret(conn: &Write, name: &str, len: usize) -> DbResult<Vec<u8>> {
    db::node_secret(conn, name, random_bytes(len))
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
        let stored: String = c.test_conn().query_row("SELECT id_hash FROM sso_session", [], |r| r.get(0)).unwrap();
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
