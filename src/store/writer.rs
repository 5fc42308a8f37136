//! The single writer thread. Request threads hand it closures; it runs every closure that is
//! waiting in one transaction (each inside its own SAVEPOINT so a failing job leaves nothing
//! behind), commits once, and only then answers each caller. One fsync serves many requests.
//! The answers are sent by a second thread (`db-replies`): waking each waiting caller costs a
//! syscall, ~13 % of the writer's time per Charge in a profile, and the writer can meanwhile
//! start the next batch.
//!
//! A batch that cannot commit (disk full, read-only, an I/O error) answers every job of it with
//! that error at once (SQLite's code kept: the callers answer -22501); nothing of it is kept.
//! While such a refused write is held (`health`), a commit that wrote rows ends it, and every
//! `PROBE_EVERY` the writer commits a probe between batches (the counter `PROBE_COUNTER`), so
//! the node notices that space was freed without waiting for traffic that writes.

use super::health::PROBE_EVERY;
use super::{DbError, DbResult, Health};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a job leaves behind after it ran: a reply to send once the commit outcome is known.
type Reply = Box<dyn FnOnce(Option<&DbError>) + Send>;
/// A job runs on the connection, or is told why it cannot run.
type Job = Box<dyn FnOnce(Result<&Connection, &DbError>) -> (bool, Reply) + Send>;

/// What the writer thread is handed.
enum Msg {
    Job(Job),
    /// Answer when between batches: the watchdog's proof that the writer makes progress.
    Ping(std::sync::mpsc::SyncSender<()>),
}

/// Transactions committed and write jobs run since start (exported as metrics: jobs per commit
/// is what group commit buys).
pub static COMMITS: AtomicU64 = AtomicU64::new(0);
pub static JOBS: AtomicU64 = AtomicU64::new(0);

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 512;

/// A committed (or failed) batch: its replies and the commit's error.
type Done = (Vec<Reply>, Option<DbError>);

pub struct Writer {
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    replies: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by `shutdown`: checkpoint the WAL after the last batch. A store merely dropped (an
    /// operator command ending) leaves the WAL to the daemon.
    checkpoint_at_end: Arc<AtomicBool>,
}

/// The writer thread's name (what `ps -L` and the benchmarks see).
pub const THREAD_NAME: &str = "db-writer";

impl Writer {
    pub fn start(conn: Connection, health: Arc<Health>) -> DbResult<Writer> {
        let (tx, rx) = channel::<Msg>();
        let checkpoint_at_end = Arc::new(AtomicBool::new(false));
        let at_end = checkpoint_at_end.clone();
        let (done_tx, done_rx) = channel::<Done>();
        let replies = std::thread::Builder::new()
            .name("db-replies".into())
            .spawn(move || {
                for (replies, err) in done_rx {
                    for r in replies {
                        r(err.as_ref());
                    }
                }
            })
            .map_err(|e| DbError::Other(format!("cannot start the writer's reply thread: {e}")))?;
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                run(&conn, rx, &done_tx, &health);
                if at_end.load(Ordering::SeqCst) {
                    checkpoint(&conn);
                }
            })
            .map_err(|e| DbError::Other(format!("cannot start writer thread: {e}")))?;
        Ok(Writer { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), replies: Mutex::new(Some(replies)), checkpoint_at_end })
    }

    pub fn submit<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&super::Write) -> DbResult<T> + Send + 'static,
    {
        self.submit_with(move |c| f(c).map(|t| (t, true)))
    }

    /// As `submit`, but `f` also says whether its writes are kept (`true`) or rolled back
    /// (`false`, its answer is still returned).
    pub fn submit_with<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&super::Write) -> DbResult<(T, bool)> + Send + 'static,
    {
        let (reply_tx, reply_rx) = sync_channel::<DbResult<T>>(1);
        let job: Job = Box::new(move |conn: Result<&Connection, &DbError>| {
            let outcome = match conn {
                Ok(conn) => std::panic::catch_unwind(AssertUnwindSafe(|| f(&super::Write::new(conn))))
                    .unwrap_or_else(|_| Err(DbError::Other("write job panicked".into()))),
                Err(e) => Err(e.again("")),
            };
            let keep = matches!(outcome, Ok((_, true)));
            let reply: Reply = Box::new(move |commit_err: Option<&DbError>| {
                let msg = match (outcome, commit_err) {
                    (Ok((_, true)), Some(e)) => Err(e.again("commit failed: ")),
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
            sender.send(Msg::Job(job)).map_err(|_| DbError::WriterGone)?;
        }
        reply_rx.recv().map_err(|_| DbError::WriterGone)?
    }

    /// Queue a ping without waiting for it; the receiver gets `()` once the writer reached it.
    pub fn ping(&self) -> DbResult<Receiver<()>> {
        let (tx, rx) = sync_channel(1);
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or(DbError::WriterGone)?;
        sender.send(Msg::Ping(tx)).map_err(|_| DbError::WriterGone)?;
        Ok(rx)
    }

    /// Close the queue, wait for the jobs already in it, then checkpoint the WAL (TRUNCATE).
    pub fn shutdown(&self) {
        self.checkpoint_at_end.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        // The writer's end closed the replies' channel: every answer is sent when this returns.
        if let Some(t) = self.replies.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, rx: Receiver<Msg>, done: &Sender<Done>, health: &Health) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut pings = Vec::new();
    let mut probed = Instant::now();
    loop {
        // While writes are refused, a probe every PROBE_EVERY, between batches (see the module
        // doc): jobs that change nothing commit without writing and prove nothing.
        let first = if health.write_refused() {
            let due = probed + PROBE_EVERY;
            let Some(wait) = due.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) else {
                probe(conn, health);
                probed = Instant::now();
                continue;
            };
            match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        test_hook_hang();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(j) => batch.push(j),
                Msg::Ping(p) => pings.push(p),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            run_batch(conn, &mut batch, done, health);
        }
        for p in pings.drain(..) {
            let _ = p.try_send(());
        }
    }
}

/// At a clean stop, after the last commit: move everything from the WAL into the database file
/// and truncate the WAL, so `vnetd.db` alone is complete (a copy of it is a whole database).
fn checkpoint(conn: &Connection) {
    let r = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
    match r {
        Ok((0, _, _)) => log::info!("database checkpointed: the WAL is empty and the database file is complete"),
        Ok((_, log_pages, done)) => log::warn!(
            "WAL checkpoint at stop was blocked by another connection ({done} of {log_pages} pages copied); keep the -wal file with the database"
        ),
        Err(e) => log::warn!("WAL checkpoint at stop failed: {e}; keep the -wal file with the database"),
    }
}

/// Debug builds only (the integration tests): while the file named by `VNETD_TEST_HANG_WRITER`
/// exists, the writer thread stops before its next batch, as a writer stuck on a hung disk
/// would. Release builds have no such hook.
fn test_hook_hang() {
    #[cfg(debug_assertions)]
    if let Some(flag) = std::env::var_os("VNETD_TEST_HANG_WRITER") {
        let flag = std::path::PathBuf::from(flag);
        while flag.exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<Job>, done: &Sender<Done>, health: &Health) {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    // The statements of every batch stay prepared (execute_batch would parse them each time).
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut st| st.execute([])).map(|_| ());
    if let Err(e) = run("BEGIN IMMEDIATE") {
        let err = DbError::Sqlite(e);
        log::log!(err.log_level(), "cannot begin write transaction: {err}");
        if err.is_failure() {
            health.record("BEGIN of a write transaction".into(), &err);
        }
        for job in batch.drain(..) {
            let (_, reply) = job(Err(&err));
            reply(None);
        }
        return;
    }
    // Did a kept job change rows? Only then does the commit write, and prove the disk takes writes.
    let mut wrote = false;
    for job in batch.drain(..) {
        if let Err(e) = run("SAVEPOINT job") {
            let err = DbError::Sqlite(e);
            let (_, reply) = job(Err(&err));
            replies.push(reply);
            continue;
        }
        let changes = conn.total_changes();
        let (ok, reply) = job(Ok(conn));
        let end = if ok { run("RELEASE job") } else { conn.execute_batch("ROLLBACK TO job; RELEASE job") };
        if let Err(e) = end {
            log::error!("savepoint end failed: {e}");
        }
        wrote |= ok && conn.total_changes() > changes;
        replies.push(reply);
    }
    let commit = run("COMMIT").map_err(DbError::Sqlite);
    match &commit {
        Err(e) => {
            log::log!(e.log_level(), "commit failed, {} writes rolled back: {e}", replies.len());
            if e.is_failure() {
                health.record("COMMIT of a write transaction".into(), e);
            }
            let _ = conn.execute_batch("ROLLBACK");
        }
        Ok(()) => {
            COMMITS.fetch_add(1, Ordering::Relaxed);
            JOBS.fetch_add(replies.len() as u64, Ordering::Relaxed);
            if wrote {
                health.committed();
            }
        }
    }
    // The reply thread outlives the writer thread (it ends when `done` is dropped).
    let _ = done.send((replies, commit.err()));
}

/// While a refused write is held and no job came: commit one small change (the counter
/// `PROBE_COUNTER`); if it commits, the disk takes writes again and the hold ends.
fn probe(conn: &Connection, health: &Health) {
    let attempt = || -> DbResult<()> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let wrote = super::next_counter(&super::Write::new(conn), super::PROBE_COUNTER)
            .and_then(|_| Ok(conn.prepare_cached("COMMIT")?.execute([])?));
        if wrote.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        wrote.map(|_| ())
    };
    match attempt() {
        Ok(()) => {
            COMMITS.fetch_add(1, Ordering::Relaxed);
            health.committed();
        }
        Err(e) => {
            log::debug!("storage probe: {e}");
            if e.is_failure() {
                health.record("the writer's storage probe".into(), &e);
            }
        }
    }
}
