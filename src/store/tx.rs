//! The transaction types every query function takes: `Read` (a read connection, or the writer's
//! transaction seen read-only) and `Write` (the writer's transaction). A `Write` derefs to a
//! `Read`, so every read function works inside a write; a function that changes rows takes
//! `&Write`, so no write can happen in a read transaction. Both are a reference to the
//! connection and nothing else (zero cost).

use rusqlite::Connection;

/// A read transaction: `Store::read` hands one out; a `Write` is one too (through `Deref`).
#[derive(Clone, Copy)]
pub struct Read<'a> {
    conn: &'a Connection,
}

/// The writer's transaction (one SAVEPOINT of the group commit): `Store::write` and
/// `Store::write_with` hand one out.
pub struct Write<'a> {
    read: Read<'a>,
}

impl<'a> Read<'a> {
    pub(super) fn new(conn: &'a Connection) -> Read<'a> {
        Read { conn }
    }

    /// The connection, for the query functions of `store`.
    pub(super) fn conn(&self) -> &'a Connection {
        self.conn
    }
}

impl<'a> Write<'a> {
    pub(super) fn new(conn: &'a Connection) -> Write<'a> {
        Write { read: Read { conn } }
    }
}

impl<'a> std::ops::Deref for Write<'a> {
    type Target = Read<'a>;
    fn deref(&self) -> &Read<'a> {
        &self.read
    }
}

/// A migrated in-memory database, leaked for the rest of the test run (unit tests).
#[cfg(test)]
pub(crate) fn memory_db() -> Write<'static> {
    let mut c = Connection::open_in_memory().unwrap();
    super::migrations::migrate(&mut c).unwrap();
    Write::new(Box::leak(Box::new(c)))
}

#[cfg(test)]
impl<'a> Read<'a> {
    /// The bare connection, for the fixtures and checks of unit tests.
    pub(crate) fn test_conn(&self) -> &'a Connection {
        self.conn
    }
}
