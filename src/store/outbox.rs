//! The durable outbox queue (spec 6, 7.1): messages for the centre and SPs are written in the same
//! transaction as the change that causes them; `crate::sync::relay` delivers them.

use super::DbResult;
use crate::spec::outbound::{self, OutOp, Stream};
use rusqlite::{params, Connection};

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
