//! The single writer thread. Request threads hand it closures; it runs every closure that is
//! waiting in one transaction (each inside its own SAVEPOINT so a failing job leaves nothing
//! behind), commits once, and only then answers each caller. One fsync serves many requests.

use super::{DbError, DbResult};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a job leaves behind after it ran: a reply to send once the commit outcome is known.
type Reply = Box<dyn FnOnce(Option<&DbError>) + Send>;
/// A job runs on the connection, or is told why it cannot run.
type Job = Box<dyn FnOnce(Result<&Connection, &DbError>) -> (bool, Reply) + Send>;

/// Transactions committed and write jobs run since start (exported as metrics: jobs per commit
/// is what group commit buys).
pub static COMMITS: AtomicU64 = AtomicU64::new(0);
pub static JOBS: AtomicU64 = AtomicU64::new(0);

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 512;

pub struct Writer {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    pub fn start(conn: Connection) -> DbResult<Writer> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| DbError::Other(format!("cannot start writer thread: {e}")))?;
        Ok(Writer { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    pub fn submit<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.submit_with(move |c| f(c).map(|t| (t, true)))
    }

    /// As `submit`, but `f` also says whether its writes are kept (`true`) or rolled back
    /// (`false`, its answer is still returned).
    pub fn submit_with<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<(T, bool)> + Send + 'static,
    {
        let (reply_tx, reply_rx) = sync_channel::<DbResult<T>>(1);
        let job: Job = Box::new(move |conn: Result<&Connection, &DbError>| {
            let outcome = match conn {
                Ok(conn) => std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(DbError::Other("write job panicked".into()))),
                Err(e) => Err(DbError::Other(e.to_string())),
            };
            let keep = matches!(outcome, Ok((_, true)));
            let reply: Reply = Box::new(move |commit_err: Option<&DbError>| {
                let msg = match (outcome, commit_err) {
                    (Ok((_, true)), Some(e)) => Err(DbError::Other(format!("commit failed: {e}"))),
                    (Ok((t, _)), _) => Ok(t),
                    (Err(e), _) => Err(e),
                };
                let _ = reply_tx.send(msg);
            });
            (keep, reply)
        });
        {
            let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let sender = guard.as_ref().ok_or(DbError::WriterGone)?;
            sender.send(job).map_err(|_| DbError::WriterGone)?;
        }
        reply_rx.recv().map_err(|_| DbError::WriterGone)?
    }

    /// Close the queue and wait for the jobs already in it.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, rx: Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch);
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = DbError::Sqlite(e);
        log::error!("cannot begin write transaction: {err}");
        for job in batch.drain(..) {
            let (_, reply) = job(Err(&err));
            reply(None);
        }
        return;
    }
    for job in batch.drain(..) {
        if let Err(e) = conn.prepare_cached("SAVEPOINT job").and_then(|mut st| st.execute([])) {
            let err = DbError::Sqlite(e);
            let (_, reply) = job(Err(&err));
            replies.push(reply);
            continue;
        }
        let (ok, reply) = job(Ok(conn));
        let end = if ok { conn.prepare_cached("RELEASE job").and_then(|mut st| st.execute([])).map(|_| ()) } else { conn.execute_batch("ROLLBACK TO job; RELEASE job") };
        if let Err(e) = end {
            log::error!("savepoint end failed: {e}");
        }
        replies.push(reply);
    }
    let commit = conn.execute_batch("COMMIT").map_err(DbError::Sqlite);
    if let Err(e) = &commit {
        log::error!("commit failed, {} writes rolled back: {e}", replies.len());
        let _ = conn.execute_batch("ROLLBACK");
    }
    if commit.is_ok() {
        COMMITS.fetch_add(1, Ordering::Relaxed);
        JOBS.fetch_add(replies.len() as u64, Ordering::Relaxed);
    }
    let err = commit.err();
    for r in replies {
        r(err.as_ref());
    }
}
