//! Versioned migrations. `PRAGMA user_version` holds the schema version; a database newer than
//! this binary is refused rather than touched.

use rusqlite::Connection;

/// Every migration in order; index + 1 is the version it produces.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("cannot read schema version: {e}"))?;
    if current > LATEST {
        return Err(format!(
            "database schema version {current} is newer than this vnetd supports ({LATEST}); refusing to open it"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql).map_err(|e| format!("migration to version {version} failed: {e}"))?;
        tx.pragma_update(None, "user_version", version).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| format!("migration to version {version} failed: {e}"))?;
        log::info!("database migrated to schema version {version}");
    }
    Ok(())
}
