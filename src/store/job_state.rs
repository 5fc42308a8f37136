//! Progress markers of the background jobs and the operator's signals to them (`job_state`).

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

pub fn get(tx: &Read, name: &str) -> DbResult<Option<String>> {
    let conn = tx.conn();
    Ok(conn.query_row("SELECT value FROM job_state WHERE name = ?1", [name], |r| r.get(0)).optional()?)
}

pub fn set(tx: &Write, name: &str, value: &str) -> DbResult<()> {
    let conn = tx.conn();
    conn.execute("INSERT INTO job_state(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2", params![name, value])?;
    Ok(())
}
