//! The durable outbox queue (spec 6, 7.1): messages for the centre and SPs are written in the same
//! transaction as the change that causes them; `crate::sync::relay` delivers them.

use super::{DbResult, Read, Write};
use crate::spec::outbound::{self, OutOp, Stream};
use rusqlite::{params, OptionalExtension};

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
    tx: &Write,
    destination: &str,
    operation: &str,
    order_key: &str,
    payload: &[(&str, String)],
    key_version: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    let conn = tx.conn();
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
/// in declared order (a typed payload's `values()` builds it); debug builds panic when it does not.
pub fn enqueue_op(
    tx: &Write,
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
    enqueue(tx, destination, op.name, order_key, payload, key_version, now)
}

/// Queue one record of a BatchSync stream: `record` holds `stream.fields` in declared order,
/// RecordSeq first (a typed record's `values()` builds it); debug builds panic when it does not.
pub fn enqueue_record(tx: &Write, stream: &Stream, record: &[(&str, String)], now: i64) -> DbResult<i64> {
    debug_assert!(
        record.iter().map(|(n, _)| *n).eq(stream.fields.iter().copied()),
        "{} record {:?} is not the declared {:?}",
        stream.name,
        record.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        stream.fields
    );
    enqueue(tx, CENTRE, BATCH_SYNC, &stream_key(stream.name), record, None, now)
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
pub fn prune_delivered(tx: &Write, cutoff: i64, limit: i64) -> DbResult<usize> {
    let conn = tx.conn();
    Ok(conn
        .prepare_cached(PRUNE_DELIVERED)?
        .execute(params![cutoff, limit])?)
}

/// By the partial index of delivered messages (schema v8): only the old ones are read, not every
/// delivered message of the retention period. The planner would take `outbox_pending` (state =
/// 'delivered') without statistics, hence INDEXED BY.
const PRUNE_DELIVERED: &str = "DELETE FROM outbox WHERE id IN
    (SELECT id FROM outbox INDEXED BY outbox_delivered WHERE state = 'delivered' AND delivered_at < ?1 LIMIT ?2)";

/// Every message kept, whatever its state (`vnetd bench scale`'s report).
pub fn count_all(tx: &Read) -> DbResult<i64> {
    Ok(tx.conn().query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?)
}

/// Mark every waiting message delivered at `at`, as if its destination had acknowledged it: the
/// stand-in for the centre of `vnetd bench scale`, which generates a province's history through
/// the daemon's own billing code. Returns how many.
pub fn deliver_all_pending(tx: &Write, at: i64) -> DbResult<usize> {
    Ok(tx
        .conn()
        .prepare_cached("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?1, last_error = '' WHERE state = 'pending'")?
        .execute([at])?)
}

/// What waits, per destination and operation.
pub fn status(tx: &Read) -> DbResult<Vec<StatusLine>> {
    let conn = tx.conn();
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
pub fn retry_now(tx: &Write, dead: bool, now: i64) -> DbResult<(usize, usize)> {
    let conn = tx.conn();
    let revived = if dead { conn.execute("UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?1 WHERE state = 'dead'", [now])? } else { 0 };
    let pending = conn.execute("UPDATE outbox SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1", [now])?;
    super::job_state::set(tx, RETRY_MARKER, &now.to_string())?;
    Ok((revived, pending))
}

/// Waiting and dead messages per destination: (destination, state, count, oldest created_at).
pub fn backlog(tx: &Read) -> DbResult<Vec<(String, String, i64, i64)>> {
    let conn = tx.conn();
    let mut st = conn.prepare_cached(
        "SELECT destination, state, count(*), coalesce(min(created_at), 0) FROM outbox WHERE state IN ('pending', 'dead') GROUP BY destination, state",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

// ---- the relay's reads and writes (crate::sync::relay)

/// A waiting message as the relay delivers it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub destination: String,
    pub operation: String,
    pub order_key: String,
    pub payload: String,
    pub key_version: Option<i64>,
    pub attempts: i64,
    pub created_at: i64,
}

/// Destinations with a waiting message outside the BatchSync streams: a skip scan over the heads
/// index, one look-up per destination however long the backlog.
pub fn destinations_waiting(tx: &Read) -> DbResult<Vec<String>> {
    let conn = tx.conn();
    let mut st = conn.prepare_cached(
        "SELECT destination FROM outbox INDEXED BY outbox_heads WHERE state = 'pending' AND seq IS NULL AND destination > ?1 ORDER BY destination LIMIT 1",
    )?;
    let mut out: Vec<String> = Vec::new();
    while let Some(d) = st.query_row([out.last().map(String::as_str).unwrap_or("")], |r| r.get::<_, String>(0)).optional()? {
        out.push(d);
    }
    Ok(out)
}

/// Does anything wait for `dest`?
pub fn has_pending(tx: &Read, dest: &str) -> DbResult<bool> {
    let conn = tx.conn();
    Ok(conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM outbox WHERE state = 'pending' AND destination = ?1)")?.query_row([dest], |r| r.get(0))?)
}

/// A BatchSync stream as the relay sees it.
pub struct StreamState {
    /// Records waiting, counted up to the limit asked for.
    pub waiting: i64,
    /// The head record's next attempt time and attempts so far.
    pub head: Option<(i64, i64)>,
    /// A record of the stream is dead: the stream waits for `outbox retry --dead`.
    pub stalled: bool,
}

pub fn stream_state(tx: &Read, key: &str, limit: i64) -> DbResult<StreamState> {
    let conn = tx.conn();
    let waiting: i64 = conn
        .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM outbox WHERE state = 'pending' AND destination = 'centre' AND order_key = ?1 LIMIT ?2)")?
        .query_row(params![key, limit], |r| r.get(0))?;
    let head: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT next_attempt_at, attempts FROM outbox WHERE state = 'pending' AND destination = 'centre' AND order_key = ?1 ORDER BY id LIMIT 1",
        )?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let stalled: bool = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM outbox WHERE state = 'dead' AND destination = 'centre' AND order_key = ?1)")?
        .query_row([key], |r| r.get(0))?;
    Ok(StreamState { waiting, head, stalled })
}

/// The head message of up to `limit` ordering keys of `dest`, walked round-robin from the key
/// after `start` (a skip scan: one index look-up per key), with its next attempt time and whether
/// it is a BatchSync record.
pub fn heads(tx: &Read, dest: &str, start: &str, limit: usize) -> DbResult<Vec<(Message, i64, bool)>> {
    let conn = tx.conn();
    let mut st = conn.prepare_cached(
        "SELECT id, destination, operation, order_key, payload, key_version, attempts, created_at, next_attempt_at, seq IS NOT NULL
         FROM outbox WHERE state = 'pending' AND destination = ?1 AND order_key > ?2 ORDER BY order_key, id LIMIT 1",
    )?;
    let mut out: Vec<(Message, i64, bool)> = Vec::new();
    let (mut after, mut wrapped) = (start.to_string(), start.is_empty());
    while out.len() < limit {
        let head = st
            .query_row(params![dest, after], |r| {
                Ok((
                    Message {
                        id: r.get(0)?,
                        destination: r.get(1)?,
                        operation: r.get(2)?,
                        order_key: r.get(3)?,
                        payload: r.get(4)?,
                        key_version: r.get(5)?,
                        attempts: r.get(6)?,
                        created_at: r.get(7)?,
                    },
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .optional()?;
        match head {
            // Round the circle once: stop at the key the walk started after.
            Some(h) if wrapped && !start.is_empty() && h.0.order_key.as_str() > start => break,
            Some(h) => {
                after = h.0.order_key.clone();
                out.push(h);
            }
            None if !wrapped => {
                wrapped = true;
                after = String::new();
            }
            None => break,
        }
    }
    Ok(out)
}

/// Messages waiting (pending) for a destination.
pub fn pending_count(tx: &Read, destination: &str) -> DbResult<i64> {
    Ok(tx.conn().query_row("SELECT count(*) FROM outbox WHERE state = 'pending' AND destination = ?1", [destination], |r| r.get::<_, i64>(0))?)
}

/// Dead-letter every message waiting for a destination, with `why`. Returns how many.
pub fn dead_letter_destination(tx: &Write, destination: &str, why: &str, now: i64) -> DbResult<usize> {
    Ok(tx.conn().execute(
        "UPDATE outbox SET state = 'dead', last_error = ?3, next_attempt_at = ?2 WHERE state = 'pending' AND destination = ?1",
        params![destination, now, why],
    )?)
}

/// Errors are kept to this many characters.
fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// A message was delivered.
pub fn mark_delivered(tx: &Write, id: i64, now: i64) -> DbResult<()> {
    let conn = tx.conn();
    conn.prepare_cached("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = '' WHERE id = ?1 AND state = 'pending'")?
        .execute(params![id, now])?;
    Ok(())
}

/// A delivery attempt failed: try again at `at`.
pub fn mark_retry(tx: &Write, id: i64, at: i64, why: &str) -> DbResult<()> {
    let conn = tx.conn();
    conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1 AND state = 'pending'")?
        .execute(params![id, at, truncate(why)])?;
    Ok(())
}

/// A delivery attempt ended the message (a definitive rejection, too old): dead, kept, visible,
/// re-queueable.
pub fn mark_dead_after_attempt(tx: &Write, id: i64, why: &str) -> DbResult<()> {
    let conn = tx.conn();
    conn.prepare_cached("UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE id = ?1 AND state = 'pending'")?
        .execute(params![id, truncate(why)])?;
    Ok(())
}

/// A BatchSync record is dead (rejected definitively, unreadable): its stream stalls.
pub fn mark_dead(tx: &Write, id: i64, why: &str) -> DbResult<()> {
    let conn = tx.conn();
    conn.prepare_cached("UPDATE outbox SET state = 'dead', last_error = ?2 WHERE id = ?1")?.execute(params![id, truncate(why)])?;
    Ok(())
}

/// The head record of a batch failed: the batch goes again at `at`.
pub fn retry_batch_head(tx: &Write, id: i64, at: i64, why: &str) -> DbResult<()> {
    let conn = tx.conn();
    conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1")?
        .execute(params![id, at, truncate(why)])?;
    Ok(())
}

/// The next up to `limit` waiting records of a stream: (id, RecordSeq, payload, attempts).
pub fn stream_batch(tx: &Read, key: &str, limit: i64) -> DbResult<Vec<(i64, i64, String, i64)>> {
    let conn = tx.conn();
    let mut st = conn.prepare_cached(
        "SELECT id, seq, payload, attempts FROM outbox WHERE state = 'pending' AND destination = 'centre' AND order_key = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = st.query_map(params![key, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The centre holds a stream up to RecordSeq `l`: the waiting records from `first` to `l` are
/// delivered. Returns how many records after `l` that were marked delivered go again (the centre
/// holds less than was sent); 0 when `l` covers `sent_last`.
pub fn acknowledge(tx: &Write, key: &str, first: i64, l: i64, sent_last: i64, now: i64) -> DbResult<Option<usize>> {
    let conn = tx.conn();
    conn.prepare_cached(
        "UPDATE outbox SET state = 'delivered', delivered_at = ?4, attempts = attempts + 1, last_error = ''
         WHERE order_key = ?1 AND seq >= ?2 AND seq <= ?3 AND state = 'pending'",
    )?
    .execute(params![key, first, l, now])?;
    if l >= sent_last {
        return Ok(None);
    }
    Ok(Some(
        conn.prepare_cached("UPDATE outbox SET state = 'pending', next_attempt_at = ?3, delivered_at = NULL WHERE order_key = ?1 AND seq > ?2 AND state = 'delivered'")?
            .execute(params![key, l, now])?,
    ))
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    /// Housekeeping reads only the delivered messages past the retention (schema v8), not every
    /// delivered message.
    #[test]
    fn pruning_reads_only_the_old_messages() {
        let db = crate::store::memory_db();
        let plan = crate::store::query_plan(&db, PRUNE_DELIVERED);
        assert!(plan.contains("INDEX outbox_delivered (delivered_at<?)"), "{plan}");
        assert!(!plan.contains("outbox_pending"), "{plan}");
    }
}
