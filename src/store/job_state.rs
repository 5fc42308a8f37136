//! Progress markers of the background jobs and the operator's signals to them (`job_state`).

use super::DbResult;
use rusqlite::{params, Connection, OptionalExtension};

pub fn get(conn: &Connection, name: &str) -> DbResult<Option<String>> {
    Ok(conn.query_row("SELECT value FROM job_state WHERE name = ?1", [name], |r| r.get(0)).optional()?)
}

pub fn set(conn: &Connection, name: &str, value: &str) -> DbResult<()> {
    conn.execute("INSERT INTO job_state(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2", params![name, value])?;
    Ok(())
}
