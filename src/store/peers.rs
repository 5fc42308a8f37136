//! The `peer` and `peer_key` tables (spec 1, 2.4, 2.6).

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// A `peer` row.
pub struct PeerRow {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub status: String,
    pub url: Option<String>,
    /// One prefix a line.
    pub return_urls: String,
    /// Comma-separated; None: every operation of its service.
    pub ops: Option<String>,
    pub encoding: String,
}

/// A `peer_key` row.
pub struct KeyRow {
    pub peer_id: String,
    pub version: i64,
    pub key_hex: String,
    pub iv_hex: String,
    pub effect_at: i64,
    pub emergency: bool,
}

/// What `peer add` takes.
pub struct NewPeer {
    pub id: String,
    pub kind: String,
    pub key_hex: String,
    pub iv_hex: String,
    pub name: String,
    pub url: Option<String>,
    pub return_urls: Vec<String>,
    pub ops: Option<Vec<String>>,
    pub encoding: String,
}

/// Every key version, by peer, effect time and version.
pub fn keys(tx: &Read) -> DbResult<Vec<KeyRow>> {
    let mut st = tx.conn().prepare("SELECT peer_id, version, key_hex, iv_hex, effect_at, emergency FROM peer_key ORDER BY peer_id, effect_at, version")?;
    let rows = st.query_map([], |r| {
        Ok(KeyRow { peer_id: r.get(0)?, version: r.get(1)?, key_hex: r.get(2)?, iv_hex: r.get(3)?, effect_at: r.get(4)?, emergency: r.get(5)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every peer.
pub fn all(tx: &Read) -> DbResult<Vec<PeerRow>> {
    let mut st = tx.conn().prepare("SELECT id, kind, name, status, url, return_urls, ops, encoding FROM peer")?;
    let rows = st.query_map([], |r| {
        Ok(PeerRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            name: r.get(2)?,
            status: r.get(3)?,
            url: r.get(4)?,
            return_urls: r.get(5)?,
            ops: r.get(6)?,
            encoding: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The kind of a peer, if it exists.
pub fn kind_of(tx: &Read, id: &str) -> DbResult<Option<String>> {
    Ok(tx.conn().query_row("SELECT kind FROM peer WHERE id = ?1", [id], |r| r.get(0)).optional()?)
}

pub fn exists(tx: &Read, id: &str) -> DbResult<bool> {
    let found: Option<String> = tx.conn().query_row("SELECT id FROM peer WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    Ok(found.is_some())
}

/// Is the SP an active peer with a URL (OrderNotify goes to it)?
pub fn sp_has_url(tx: &Read, spid: &str) -> DbResult<bool> {
    let mut st = tx.conn().prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM peer WHERE id = ?1 AND kind = 'sp' AND status = 'active' AND url IS NOT NULL AND url <> '')",
    )?;
    Ok(st.query_row([spid], |r| r.get(0))?)
}

/// Active centre peers other than `id`.
pub fn other_active_centres(tx: &Read, id: &str) -> DbResult<i64> {
    Ok(tx.conn().query_row("SELECT count(*) FROM peer WHERE kind = 'centre' AND status = 'active' AND id <> ?1", [id], |r| r.get(0))?)
}

pub fn set_name(tx: &Write, id: &str, name: &str) -> DbResult<()> {
    tx.conn().execute("UPDATE peer SET name = ?2 WHERE id = ?1", params![id, name])?;
    Ok(())
}

pub fn set_url(tx: &Write, id: &str, url: Option<&str>) -> DbResult<()> {
    tx.conn().execute("UPDATE peer SET url = ?2 WHERE id = ?1", params![id, url])?;
    Ok(())
}

/// `return_urls`: one prefix a line.
pub fn set_return_urls(tx: &Write, id: &str, return_urls: &str) -> DbResult<()> {
    tx.conn().execute("UPDATE peer SET return_urls = ?2 WHERE id = ?1", params![id, return_urls])?;
    Ok(())
}

/// `ops`: comma-separated; None: every operation of its service.
pub fn set_ops(tx: &Write, id: &str, ops: Option<&str>) -> DbResult<()> {
    tx.conn().execute("UPDATE peer SET ops = ?2 WHERE id = ?1", params![id, ops])?;
    Ok(())
}

pub fn set_encoding(tx: &Write, id: &str, encoding: &str) -> DbResult<()> {
    tx.conn().execute("UPDATE peer SET encoding = ?2 WHERE id = ?1", params![id, encoding])?;
    Ok(())
}

pub fn touch(tx: &Write, id: &str, now: i64) -> DbResult<()> {
    tx.conn().execute("UPDATE peer SET updated_at = ?2 WHERE id = ?1", params![id, now])?;
    Ok(())
}

/// Set a peer's status; returns the rows changed (0: no such peer).
pub fn set_status(tx: &Write, id: &str, status: &str, now: i64) -> DbResult<usize> {
    Ok(tx.conn().execute("UPDATE peer SET status = ?3, updated_at = ?2 WHERE id = ?1", params![id, now, status])?)
}

/// Delete a peer and every key version of it.
pub fn delete(tx: &Write, id: &str) -> DbResult<()> {
    tx.conn().execute("DELETE FROM peer_key WHERE peer_id = ?1", [id])?;
    tx.conn().execute("DELETE FROM peer WHERE id = ?1", [id])?;
    Ok(())
}

/// Insert an active peer and its key version 1 in effect from `now`.
pub fn insert(tx: &Write, p: &NewPeer, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "INSERT INTO peer(id, kind, name, status, url, return_urls, ops, encoding, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7, ?8, ?8)",
        params![p.id, p.kind, p.name, p.url, p.return_urls.join("\n"), p.ops.as_ref().map(|o| o.join(",")), p.encoding, now],
    )?;
    tx.conn().execute(
        "INSERT INTO peer_key(peer_id, version, key_hex, iv_hex, effect_at, emergency, created_at) VALUES (?1, 1, ?2, ?3, ?4, 0, ?4)",
        params![p.id, p.key_hex.to_ascii_lowercase(), p.iv_hex.to_ascii_lowercase(), now],
    )?;
    Ok(())
}

/// The newest key version of a peer: version, key, IV, effect time.
pub fn newest_key(tx: &Read, peer_id: &str) -> DbResult<Option<(i64, String, String, i64)>> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT version, key_hex, iv_hex, effect_at FROM peer_key WHERE peer_id = ?1 ORDER BY version DESC LIMIT 1",
            [peer_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

pub fn insert_key(tx: &Write, k: &KeyRow, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "INSERT INTO peer_key(peer_id, version, key_hex, iv_hex, effect_at, emergency, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![k.peer_id, k.version, k.key_hex, k.iv_hex, k.effect_at, k.emergency, now],
    )?;
    Ok(())
}
