//! The durable outbox queue (spec 6, 7.1): messages for the centre and SPs are written in the same
//! transaction as the change that causes them; `crate::sync::relay` delivers them.

use super::DbResult;
use crate::spec::outbound::{self, OutOp, Stream};
use rusqlite::{params, Connection};

/// One line of `vnetd outbox status`: per destination and operation (BatchSync per stream).
pub struct StatusLine {
    pub destination: String,
    pub what: String,
    pub pending: i64,
    pub dead: i64,
    pub delivered: i64,
    pub oldest_pending: Option<i64>,
    pub next_attempt: Option<i64>,
    pub last_delivered_seq: Option<i64>,
    pub last_error: String,
}

pub const CENTRE: &str = "centre";
/// `job_state` entry `vnetd outbox retry` sets; the relay watches it and ends its destination
/// back-offs at once.
pub const RETRY_MARKER: &str = "outbox_retry_at";
/// Operation of the records of the BatchSync streams (6.5); one row per record.
pub const BATCH_SYNC: &str = outbound::BATCH_SYNC.name;

/// Queue a message. `payload` holds the operation's fields in order, without TimeStamp and
/// Authenticator (added at each delivery attempt) and, for centre operations, without SrcDeviceNo
/// and ProvinceID (OrderNotify to an SP holds its SPID and ProvinceID). A BatchSync row is one
/// record of a stream, RecordSeq first. Secret fields must
/// already be encrypted under the destination's key, whose version is `key_version`.
pub fn enqueue(
    conn: &Connection,
    destination: &str,
    operation: &str,
    order_key: &str,
    payload: &[(&str, String)],
    key_version: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    let json = serde_json::to_string(&payload.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
        .map_err(|e| super::DbError::Other(e.to_string()))?;
    let seq: Option<i64> = match (operation, payload.first()) {
        (BATCH_SYNC, Some(("RecordSeq", v))) => v.parse().ok(),
        _ => None,
    };
    conn.prepare_cached(
        "INSERT INTO outbox(destination, operation, order_key, payload, key_version, next_attempt_at, created_at, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?
    .execute(params![destination, operation, order_key, json, key_version, now, seq])?;
    Ok(conn.last_insert_rowid())
}

/// Queue the outgoing operation `op` (`spec::outbound`): `payload` holds `op.payload()`'s fields
/// in declared order ([`outbound::fill`] builds it); debug builds panic when it does not.
pub fn enqueue_op(
    conn: &Connection,
    op: &OutOp,
    destination: &str,
    order_key: &str,
    payload: &[(&str, String)],
    key_version: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    debug_assert!(
        payload.iter().map(|(n, _)| *n).eq(op.payload().iter().copied()),
        "{}: payload {:?} is not the declared {:?}",
        op.name,
        payload.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        op.payload()
    );
    debug_assert_eq!(op.dest == outbound::Dest::Centre, destination == CENTRE, "{}: destination {destination}", op.name);
    enqueue(conn, destination, op.name, order_key, payload, key_version, now)
}

/// Queue one record of a BatchSync stream: `record` holds `stream.fields` in declared order,
/// RecordSeq first ([`outbound::fill`] builds it); debug builds panic when it does not.
pub fn enqueue_record(conn: &Connection, stream: &Stream, record: &[(&str, String)], now: i64) -> DbResult<i64> {
    debug_assert!(
        record.iter().map(|(n, _)| *n).eq(stream.fields.iter().copied()),
        "{} record {:?} is not the declared {:?}",
        stream.name,
        record.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        stream.fields
    );
    enqueue(conn, CENTRE, BATCH_SYNC, &stream_key(stream.name), record, None, now)
}

/// Ordering key of PassPort messages: per user.
pub fn user_key(vnet_user_id: &str) -> String {
    format!("user:{vnet_user_id}")
}

/// Ordering key of a BatchSync stream (ORDER, CHARGE, SETTLE): per stream.
pub fn stream_key(stream: &str) -> String {
    format!("stream:{stream}")
}

/// Ordering key of OrderNotify: per SP.
pub fn sp_key(spid: &str) -> String {
    format!("sp:{spid}")
}

/// Delete up to `limit` messages delivered before `cutoff` (housekeeping, 7.5). Returns how many.
pub fn prune_delivered(conn: &Connection, cutoff: i64, limit: i64) -> DbResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'delivered' AND delivered_at < ?1 LIMIT ?2)")?
        .execute(params![cutoff, limit])?)
}

/// What waits, per destination and operation.
pub fn status(conn: &Connection) -> DbResult<Vec<StatusLine>> {
    let mut st = conn.prepare(
        "WITH o AS (SELECT *, CASE WHEN seq IS NULL THEN operation ELSE 'BatchSync ' || substr(order_key, 8) END AS what FROM outbox)
         SELECT destination, what,
                sum(state = 'pending'), sum(state = 'dead'), sum(state = 'delivered'),
                min(CASE WHEN state = 'pending' THEN created_at END),
                min(CASE WHEN state = 'pending' THEN next_attempt_at END),
                max(CASE WHEN seq IS NOT NULL AND state = 'delivered' THEN seq END),
                (SELECT o2.last_error FROM o o2 WHERE o2.destination = o.destination AND o2.what = o.what
                   AND o2.state <> 'delivered' AND o2.last_error <> '' ORDER BY o2.id DESC LIMIT 1)
         FROM o GROUP BY destination, what ORDER BY destination, what",
    )?;
    let rows = st.query_map([], |r| {
        Ok(StatusLine {
            destination: r.get(0)?,
            what: r.get(1)?,
            pending: r.get(2)?,
            dead: r.get(3)?,
            delivered: r.get(4)?,
            oldest_pending: r.get(5)?,
            next_attempt: r.get(6)?,
            last_delivered_seq: r.get(7)?,
            last_error: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// `vnetd outbox retry [--dead]`: end the back-offs of waiting messages (and re-queue dead
/// letters) and tell the relay (RETRY_MARKER). Returns (re-queued dead letters, waiting messages).
pub fn retry_now(conn: &Connection, dead: bool, now: i64) -> DbResult<(usize, usize)> {
    let revived = if dead { conn.execute("UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?1 WHERE state = 'dead'", [now])? } else { 0 };
    let pending = conn.execute("UPDATE outbox SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1", [now])?;
    super::job_state::set(conn, RETRY_MARKER, &now.to_string())?;
    Ok((revived, pending))
}

/// Waiting and dead messages per destination: (destination, state, count, oldest created_at).
pub fn backlog(conn: &Connection) -> DbResult<Vec<(String, String, i64, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT destination, state, count(*), coalesce(min(created_at), 0) FROM outbox WHERE state IN ('pending', 'dead') GROUP BY destination, state",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
