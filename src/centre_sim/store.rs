//! The centre simulator's own SQLite file (`vnetd centre-sim --db FILE`): one connection behind a
//! mutex, WAL, `synchronous=FULL`; everything an answer depends on is committed before the answer
//! is written. Tests and operators read it (read-only) with any SQLite client.
//!
//! Schema (times are `yyyy-MM-dd HH:mm:ss` in the simulator's local time, UTC+08:00):
//!
//! ```sql
//! -- Every accepted (Result 0) message except BatchSync: PUserInfoNotify, PUserPasswordNotify,
//! -- PasswordReset, RoamServiceRevoke, ClockSync, RoamAuthV2, ServiceAuth, Order, CancelOrder,
//! -- ReOrder, Charge, OrderNotify.
//! CREATE TABLE message (
//!     id            INTEGER PRIMARY KEY,   -- arrival order
//!     operation     TEXT NOT NULL,
//!     src_device_no TEXT NOT NULL,         -- SrcDeviceNo (the SPID for OrderNotify)
//!     fields        TEXT NOT NULL,         -- JSON object of the request fields except Authenticator;
//!                                          -- a Password / NewPassword is replaced by "password ok"
//!     response      TEXT NOT NULL,         -- JSON object of the answered fields after Result, ErrDescription
//!     received_at   TEXT NOT NULL
//! );
//! -- BatchSync records, once per (stream, RecordSeq): duplicates are dropped, never stored twice.
//! CREATE TABLE record (
//!     stream      TEXT NOT NULL,           -- ORDER, CHARGE, SETTLE
//!     record_seq  INTEGER NOT NULL,
//!     fields      TEXT NOT NULL,           -- JSON array of the record's values in the 6.5 order
//!                                          -- (RecordSeq first), exactly as received
//!     received_at TEXT NOT NULL,
//!     PRIMARY KEY (stream, record_seq)
//! );
//! CREATE TABLE stream_state (
//!     stream     TEXT PRIMARY KEY,
//!     last_seq   INTEGER NOT NULL,         -- LastSequenceID: highest RecordSeq durably accepted
//!     duplicates INTEGER NOT NULL          -- records dropped because RecordSeq <= last_seq
//! );
//! -- Every request answered with a non-zero Result (SOAP Faults are not recorded).
//! CREATE TABLE rejected (
//!     id            INTEGER PRIMARY KEY,
//!     operation     TEXT NOT NULL,
//!     src_device_no TEXT NOT NULL,         -- as sent (may be malformed)
//!     result        INTEGER NOT NULL,
//!     reason        TEXT NOT NULL,         -- the ErrDescription answered
//!     received_at   TEXT NOT NULL
//! );
//! -- Users of other provinces the simulated centre knows (RoamAuthV2, 6.9), from --users CSV.
//! CREATE TABLE user (
//!     account_type  TEXT NOT NULL,
//!     account       TEXT NOT NULL,
//!     password_sha1 TEXT NOT NULL,         -- Base64(SHA1(password)); the plaintext is not stored
//!     vnet_user_id  TEXT NOT NULL,
//!     province_id   TEXT NOT NULL,
//!     city_code     TEXT NOT NULL,
//!     PRIMARY KEY (account_type, account)
//! );
//! ```

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS message (
    id            INTEGER PRIMARY KEY,
    operation     TEXT NOT NULL,
    src_device_no TEXT NOT NULL,
    fields        TEXT NOT NULL,
    response      TEXT NOT NULL,
    received_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS message_op ON message(operation, src_device_no);
CREATE TABLE IF NOT EXISTS record (
    stream      TEXT NOT NULL,
    record_seq  INTEGER NOT NULL,
    fields      TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (stream, record_seq)
);
CREATE TABLE IF NOT EXISTS stream_state (
    stream     TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected (
    id            INTEGER PRIMARY KEY,
    operation     TEXT NOT NULL,
    src_device_no TEXT NOT NULL,
    result        INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    received_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user (
    account_type  TEXT NOT NULL,
    account       TEXT NOT NULL,
    password_sha1 TEXT NOT NULL,
    vnet_user_id  TEXT NOT NULL,
    province_id   TEXT NOT NULL,
    city_code     TEXT NOT NULL,
    PRIMARY KEY (account_type, account)
);
CREATE INDEX IF NOT EXISTS user_vnet ON user(vnet_user_id);
";

/// A user of the simulated centre (one CSV row).
#[derive(Debug, Clone, PartialEq)]
pub struct SimUser {
    pub account_type: String,
    pub account: String,
    /// Base64(SHA1(password)).
    pub password_sha1: String,
    pub vnet_user_id: String,
    pub province_id: String,
    pub city_code: String,
}

impl SimUser {
    /// Does `password` match the stored digest (constant time)?
    pub fn password_matches(&self, password: &str) -> bool {
        crate::crypto::ct_eq(crate::crypto::sha1_b64(password.as_bytes()).as_bytes(), self.password_sha1.as_bytes())
    }
}

/// The header `--users` files must have.
pub const USERS_HEADER: &str = "account_type,account,password,vnet_user_id,province_id,city_code";

/// Parse a `--users` CSV (header [`USERS_HEADER`], plain comma-separated values, no quoting).
/// Errors name the line.
pub fn parse_users_csv(text: &str) -> Result<Vec<SimUser>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim().trim_start_matches('\u{feff}').replace(' ', "") == USERS_HEADER => {}
        _ => return Err(format!("the first line must be the header `{USERS_HEADER}`")),
    }
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut users = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let cols: Vec<&str> = line.trim_end_matches('\r').split(',').map(str::trim).collect();
        if cols.len() != 6 {
            return Err(format!("line {n}: expected 6 comma-separated values, found {}", cols.len()));
        }
        let (account_type, account, password, vnet_user_id, province_id, city_code) = (cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]);
        if !digits(account_type, 2) {
            return Err(format!("line {n}: account_type must be 2 digits"));
        }
        if account.is_empty() || account.chars().count() > 64 {
            return Err(format!("line {n}: account must be 1 to 64 characters"));
        }
        if password.is_empty() {
            return Err(format!("line {n}: password is empty"));
        }
        if !digits(vnet_user_id, 12) {
            return Err(format!("line {n}: vnet_user_id must be 12 digits"));
        }
        if !digits(province_id, 2) {
            return Err(format!("line {n}: province_id must be 2 digits"));
        }
        if city_code.is_empty() || city_code.len() > 6 || !city_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("line {n}: city_code must be 1 to 6 digits"));
        }
        users.push(SimUser {
            account_type: account_type.into(),
            account: account.into(),
            password_sha1: crate::crypto::sha1_b64(password.as_bytes()),
            vnet_user_id: vnet_user_id.into(),
            province_id: province_id.into(),
            city_code: city_code.into(),
        });
    }
    Ok(users)
}

/// The simulator's database.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Open (creating if missing) the database file.
    pub fn open(path: &Path) -> Result<Store, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| format!("cannot set WAL: {e}"))?;
        Store::init(conn)
    }

    /// A throw-away in-memory database (unit tests).
    pub fn in_memory() -> Result<Store, String> {
        Store::init(Connection::open_in_memory().map_err(|e| e.to_string())?)
    }

    fn init(conn: Connection) -> Result<Store, String> {
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
        conn.execute_batch(SCHEMA).map_err(|e| format!("cannot create the schema: {e}"))?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// Run `f` in one transaction (committed when it returns Ok), holding the only connection.
    pub fn with_tx<T>(&self, f: impl FnOnce(&Transaction) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Insert or replace users (by account type and account); returns how many.
    pub fn load_users(&self, users: &[SimUser]) -> rusqlite::Result<usize> {
        self.with_tx(|tx| {
            let mut st = tx.prepare(
                "INSERT INTO user(account_type, account, password_sha1, vnet_user_id, province_id, city_code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(account_type, account) DO UPDATE SET password_sha1 = excluded.password_sha1,
                   vnet_user_id = excluded.vnet_user_id, province_id = excluded.province_id, city_code = excluded.city_code",
            )?;
            for u in users {
                st.execute(params![u.account_type, u.account, u.password_sha1, u.vnet_user_id, u.province_id, u.city_code])?;
            }
            Ok(users.len())
        })
    }

    /// Record a request answered with a non-zero Result.
    pub fn reject(&self, operation: &str, src: &str, result: i32, reason: &str, at: &str) -> rusqlite::Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO rejected(operation, src_device_no, result, reason, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![operation, src, result, reason, at],
            )
            .map(|_| ())
        })
    }
}

fn user_from_row(r: &rusqlite::Row) -> rusqlite::Result<SimUser> {
    Ok(SimUser {
        account_type: r.get(0)?,
        account: r.get(1)?,
        password_sha1: r.get(2)?,
        vnet_user_id: r.get(3)?,
        province_id: r.get(4)?,
        city_code: r.get(5)?,
    })
}

const USER_COLS: &str = "account_type, account, password_sha1, vnet_user_id, province_id, city_code";

/// The user holding (account type, account); failing that, the holder of the account under any
/// type, in the order 01, 02, 03, 04, 09, others.
pub fn user_by_account(c: &Connection, account_type: &str, account: &str) -> rusqlite::Result<Option<SimUser>> {
    let exact = c
        .query_row(&format!("SELECT {USER_COLS} FROM user WHERE account_type = ?1 AND account = ?2"), params![account_type, account], user_from_row)
        .optional()?;
    if exact.is_some() {
        return Ok(exact);
    }
    c.query_row(
        &format!(
            "SELECT {USER_COLS} FROM user WHERE account = ?1
             ORDER BY CASE account_type WHEN '01' THEN 1 WHEN '02' THEN 2 WHEN '03' THEN 3 WHEN '04' THEN 4 WHEN '09' THEN 5 ELSE 6 END, account_type
             LIMIT 1"
        ),
        params![account],
        user_from_row,
    )
    .optional()
}

/// Is there a user with this VNetUserID?
pub fn user_exists(c: &Connection, vnet_user_id: &str) -> rusqlite::Result<bool> {
    c.query_row("SELECT EXISTS(SELECT 1 FROM user WHERE vnet_user_id = ?1)", params![vnet_user_id], |r| r.get(0))
}

/// Store an accepted message; returns its id.
pub fn insert_message(c: &Connection, operation: &str, src: &str, fields_json: &str, response_json: &str, at: &str) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO message(operation, src_device_no, fields, response, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![operation, src, fields_json, response_json, at],
    )?;
    Ok(c.last_insert_rowid())
}

/// The id the next message row will get (OrderIDs are derived from it inside the same transaction).
pub fn next_message_id(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM message", [], |r| r.get(0))
}

/// An earlier accepted message of this operation and caller carrying this TransactionID (and
/// this SPID, when the operation has one): its (fields, response) JSON.
pub fn find_transaction(c: &Connection, operation: &str, src: &str, spid: Option<&str>, transaction_id: &str) -> rusqlite::Result<Option<(String, String)>> {
    c.query_row(
        "SELECT fields, response FROM message
         WHERE operation = ?1 AND src_device_no = ?2 AND json_extract(fields, '$.SPID') IS ?3
           AND json_extract(fields, '$.TransactionID') = ?4
         ORDER BY id LIMIT 1",
        params![operation, src, spid, transaction_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// The OrderID answered to the latest accepted Order of this user and SP service item/product.
pub fn latest_order_id(c: &Connection, vnet_user_id: &str, spid: &str, service_id: &str, item: &str, product: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT json_extract(response, '$.OrderID') FROM message
         WHERE operation = 'Order' AND json_extract(fields, '$.VNetUserID') = ?1 AND json_extract(fields, '$.SPID') = ?2
           AND json_extract(fields, '$.ServiceID') = ?3 AND json_extract(fields, '$.ServiceItemID') = ?4
           AND json_extract(fields, '$.ProductID') = ?5
         ORDER BY id DESC LIMIT 1",
        params![vnet_user_id, spid, service_id, item, product],
        |r| r.get(0),
    )
    .optional()
}

/// (last_seq, duplicates) of a stream; (0, 0) before its first record.
pub fn stream_state(c: &Connection, stream: &str) -> rusqlite::Result<(i64, i64)> {
    Ok(c
        .query_row("SELECT last_seq, duplicates FROM stream_state WHERE stream = ?1", params![stream], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStored {
    pub last_seq: i64,
    pub stored: usize,
    pub duplicates: usize,
    /// Duplicates whose values differ from the stored record (a node bug worth a warning).
    pub differing: usize,
}

/// Store the records of a batch (each `values[0]` is its RecordSeq, `seqs[i]` parsed) whose
/// RecordSeq is above the stream's last one; the others are counted as duplicates. The caller
/// has checked that the batch does not start beyond last + 1.
pub fn store_batch(c: &Connection, stream: &str, seqs: &[i64], records: &[Vec<String>], at: &str) -> rusqlite::Result<BatchStored> {
    let (last, dups_before) = stream_state(c, stream)?;
    let mut out = BatchStored { last_seq: last, stored: 0, duplicates: 0, differing: 0 };
    let mut insert = c.prepare_cached("INSERT INTO record(stream, record_seq, fields, received_at) VALUES (?1, ?2, ?3, ?4)")?;
    for (seq, rec) in seqs.iter().zip(records) {
        let json = serde_json::to_string(rec).unwrap_or_default();
        if *seq <= last {
            out.duplicates += 1;
            let same: Option<bool> = c
                .query_row("SELECT fields = ?3 FROM record WHERE stream = ?1 AND record_seq = ?2", params![stream, seq, json], |r| r.get(0))
                .optional()?;
            if same == Some(false) {
                out.differing += 1;
            }
            continue;
        }
        insert.execute(params![stream, seq, json, at])?;
        out.stored += 1;
        out.last_seq = out.last_seq.max(*seq);
    }
    c.execute(
        "INSERT INTO stream_state(stream, last_seq, duplicates) VALUES (?1, ?2, ?3)
         ON CONFLICT(stream) DO UPDATE SET last_seq = excluded.last_seq, duplicates = excluded.duplicates",
        params![stream, out.last_seq, dups_before + out.duplicates as i64],
    )?;
    Ok(out)
}

/// A read-only connection to a simulator's file while it runs (the sync benchmark watches the
/// records arrive).
pub struct Reader(Connection);

impl Reader {
    pub fn open(path: &Path) -> rusqlite::Result<Reader> {
        let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Reader(c))
    }

    /// The stream's last RecordSeq (0 before its first record or when it cannot be read).
    pub fn last_seq(&self, stream: &str) -> i64 {
        stream_state(&self.0, stream).map(|s| s.0).unwrap_or(0)
    }

    /// RecordSeq and fields (JSON) of the stream's records after `last`, in order (none when
    /// they cannot be read).
    pub fn records_after(&self, stream: &str, last: i64) -> Vec<(i64, String)> {
        self.0
            .prepare_cached("SELECT record_seq, fields FROM record WHERE stream = ?1 AND record_seq > ?2 ORDER BY record_seq")
            .and_then(|mut st| st.query_map(params![stream, last], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_csv() {
        let u = parse_users_csv("account_type,account,password,vnet_user_id,province_id,city_code\n01,alice,secret1,110000000001,11,010\n\n09,13900000000,pw,110000000002,11,010\n").unwrap();
        assert_eq!(u.len(), 2);
        assert!(u[0].password_matches("secret1"));
        assert!(!u[0].password_matches("secret2"));
        assert!(!u[0].password_sha1.contains("secret"));
        assert!(parse_users_csv("a,b\n").is_err());
        let e = parse_users_csv(&format!("{USERS_HEADER}\n01,alice,pw,1100,11,010\n")).unwrap_err();
        assert!(e.contains("line 2") && e.contains("vnet_user_id"), "{e}");
    }

    #[test]
    fn batches_and_duplicates() {
        let s = Store::in_memory().unwrap();
        let rec = |n: i64| vec![n.to_string(), format!("v{n}")];
        let r = s.with_tx(|tx| store_batch(tx, "ORDER", &[1, 2, 3], &[rec(1), rec(2), rec(3)], "t")).unwrap();
        assert_eq!(r, BatchStored { last_seq: 3, stored: 3, duplicates: 0, differing: 0 });
        let mut changed = rec(3);
        changed[1] = "other".into();
        let r = s.with_tx(|tx| store_batch(tx, "ORDER", &[2, 3, 4], &[rec(2), changed, rec(4)], "t")).unwrap();
        assert_eq!(r, BatchStored { last_seq: 4, stored: 1, duplicates: 2, differing: 1 });
        assert_eq!(s.with_tx(|tx| stream_state(tx, "ORDER")).unwrap(), (4, 2));
        assert_eq!(s.with_tx(|tx| stream_state(tx, "CHARGE")).unwrap(), (0, 0));
    }

    #[test]
    fn account_lookup_falls_back_to_any_type() {
        let s = Store::in_memory().unwrap();
        let u = parse_users_csv(&format!("{USERS_HEADER}\n03,0591123,pw,110000000001,11,010\n")).unwrap();
        s.load_users(&u).unwrap();
        s.load_users(&u).unwrap();
        let found = s.with_tx(|tx| user_by_account(tx, "01", "0591123")).unwrap().unwrap();
        assert_eq!(found.vnet_user_id, "110000000001");
        assert!(s.with_tx(|tx| user_by_account(tx, "01", "nobody")).unwrap().is_none());
        assert!(s.with_tx(|tx| user_exists(tx, "110000000001")).unwrap());
    }
}
