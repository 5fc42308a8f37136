//! The access network (spec 4.5, 4.2, 11): who is online at which IP address, as the AAA reports
//! it, and the account-only look-up that IPAuth and the legacy service make from there.

use super::passport::{self, Holder};
use crate::store::DbResult;
use crate::store::{Read, Write};
use crate::store::access as db;
use std::net::IpAddr;

/// Account types tried, in this order, when only an account string is known (spec 11).
pub const LOOKUP_ORDER: [&str; 5] = ["01", "02", "03", "04", "09"];

/// One OnlineNotify event.
#[derive(Debug, Clone)]
pub struct Event {
    pub aaa: String,
    pub session_id: String,
    pub ip: IpAddr,
    pub account: String,
    pub nas_ip: String,
    pub nas_port: String,
    /// EventTime, unix seconds, at most the node time of arrival (the service caps it, so a
    /// future-dated start cannot hold an IP against the starts that follow it).
    pub at: i64,
}

/// What an event did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A session was opened; `replaced` older sessions on its IP were closed.
    Started { replaced: usize },
    /// The start is older than the session that holds its IP now: nothing changed.
    Superseded,
    Stopped,
    /// A stop for a session that is not open (already stopped, replaced or stale).
    UnknownStop,
    Refreshed,
}

/// The canonical text of an address: IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is written as IPv4, so
/// an AAA and a caller that spell the same address differently meet.
pub fn canonical_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string()),
        v4 => v4.to_string(),
    }
}

/// Start (ActionType 1): record IP → account; an older session on the same IP is closed. A start
/// from the same AAA whose EventTime is earlier than the start of the session holding the IP
/// arrived late (a retry overtaken by the next start) and changes nothing; between different AAAs,
/// whose clocks need not agree, the later arrival wins. A repeated start of the same session is
/// refreshed, not duplicated.
pub fn start(conn: &Write, e: &Event, now: i64) -> DbResult<Outcome> {
    let ip = canonical_ip(e.ip);
    let holder = db::holder_of_ip(conn, &ip)?;
    let mut replaced = 0;
    if let Some((aaa, sid, started)) = holder {
        let same = aaa == e.aaa && sid == e.session_id;
        if !same && aaa == e.aaa && started > e.at {
            return Ok(Outcome::Superseded);
        }
        if !same {
            replaced += db::close_ip(conn, &ip)?;
        }
    }
    // The same session may have been open on another address: it moves.
    let o = db::Online {
        aaa: &e.aaa,
        session_id: &e.session_id,
        ip: &ip,
        account: &e.account,
        nas_ip: &e.nas_ip,
        nas_port: &e.nas_port,
        started_at: e.at,
    };
    db::open(conn, &o, now)?;
    Ok(Outcome::Started { replaced })
}

/// Stop (ActionType 2): close the session by its SessionID.
pub fn stop(conn: &Write, aaa: &str, session_id: &str) -> DbResult<Outcome> {
    let n = db::close(conn, aaa, session_id)?;
    Ok(if n > 0 { Outcome::Stopped } else { Outcome::UnknownStop })
}

/// Interim (ActionType 3): the session is alive. An interim for a session this node does not know
/// (its start was lost upstream, or it went stale here) opens it, under the rules of a start.
pub fn interim(conn: &Write, e: &Event, now: i64) -> DbResult<Outcome> {
    let ip = canonical_ip(e.ip);
    if db::refresh(conn, &e.aaa, &e.session_id, &ip, now)? > 0 {
        return Ok(Outcome::Refreshed);
    }
    start(conn, e, now)
}

/// The account online at `ip` now: a session with an event within `stale_s`.
pub fn account_at(conn: &Read, ip: IpAddr, now: i64, stale_s: i64) -> DbResult<Option<String>> {
    db::account_at(conn, &canonical_ip(ip), now - stale_s)
}

/// Close sessions with no event for `stale_s` (7.5). Returns how many.
pub fn close_stale(conn: &Write, now: i64, stale_s: i64, limit: i64) -> DbResult<usize> {
    db::close_stale(conn, now - stale_s, limit)
}

/// Who holds an account known only as a string (spec 11): the account types are tried in
/// `LOOKUP_ORDER`; the first type with a holder who is not cancelled wins, else the first type with
/// a cancelled holder.
pub fn holder_of_account(conn: &Read, account: &str) -> DbResult<Holder> {
    let mut cancelled = None;
    for t in LOOKUP_ORDER {
        match passport::holder(conn, t, account)? {
            Holder::Live(u) => return Ok(Holder::Live(u)),
            Holder::Cancelled(u) if cancelled.is_none() => cancelled = Some(u),
            _ => {}
        }
    }
    Ok(cancelled.map(Holder::Cancelled).unwrap_or(Holder::None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::access::open_count;

    fn db() -> Write<'static> {
        crate::store::memory_db()
    }

    fn ev(sid: &str, ip: &str, account: &str, at: i64) -> Event {
        Event {
            aaa: "3500000000000301".into(),
            session_id: sid.into(),
            ip: ip.parse().unwrap(),
            account: account.into(),
            nas_ip: String::new(),
            nas_port: String::new(),
            at,
        }
    }

    #[test]
    fn a_start_on_an_ip_closes_the_older_session_there() {
        let c = db();
        assert_eq!(start(&c, &ev("s1", "10.0.0.1", "a", 100), 100).unwrap(), Outcome::Started { replaced: 0 });
        assert_eq!(start(&c, &ev("s2", "10.0.0.1", "b", 200), 200).unwrap(), Outcome::Started { replaced: 1 });
        assert_eq!(account_at(&c, "10.0.0.1".parse().unwrap(), 200, 3600).unwrap().as_deref(), Some("b"));
        assert_eq!(stop(&c, "3500000000000301", "s1").unwrap(), Outcome::UnknownStop);
        assert_eq!(open_count(&c).unwrap(), 1);
    }

    #[test]
    fn a_late_start_does_not_take_the_ip_from_a_newer_session() {
        let c = db();
        start(&c, &ev("s2", "10.0.0.1", "b", 200), 200).unwrap();
        assert_eq!(start(&c, &ev("s1", "10.0.0.1", "a", 100), 201).unwrap(), Outcome::Superseded);
        assert_eq!(account_at(&c, "10.0.0.1".parse().unwrap(), 201, 3600).unwrap().as_deref(), Some("b"));
        // Another AAA's clock is not comparable: its start, arriving later, takes the IP.
        let other = Event { aaa: "3500000000000302".into(), ..ev("t1", "10.0.0.1", "c", 100) };
        assert_eq!(start(&c, &other, 202).unwrap(), Outcome::Started { replaced: 1 });
        assert_eq!(account_at(&c, "10.0.0.1".parse().unwrap(), 202, 3600).unwrap().as_deref(), Some("c"));
    }

    #[test]
    fn mapped_ipv6_meets_ipv4() {
        let c = db();
        start(&c, &ev("s1", "::ffff:10.0.0.9", "a", 1), 1).unwrap();
        assert_eq!(account_at(&c, "10.0.0.9".parse().unwrap(), 1, 3600).unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn interim_refreshes_and_stale_sessions_are_not_online() {
        let c = db();
        start(&c, &ev("s1", "10.0.0.1", "a", 0), 0).unwrap();
        assert_eq!(interim(&c, &ev("s1", "10.0.0.1", "a", 0), 3000).unwrap(), Outcome::Refreshed);
        assert!(account_at(&c, "10.0.0.1".parse().unwrap(), 3000 + 3599, 3600).unwrap().is_some());
        assert!(account_at(&c, "10.0.0.1".parse().unwrap(), 3000 + 3600, 3600).unwrap().is_none());
        assert_eq!(close_stale(&c, 3000 + 3600, 3600, 100).unwrap(), 1);
        // An interim for an unknown session opens it.
        assert_eq!(interim(&c, &ev("s9", "10.0.0.2", "c", 0), 9000).unwrap(), Outcome::Started { replaced: 0 });
    }
}
