//! A bounded pool for Argon2id work (ENGINEERING.md): as many threads as cores; when the queue
//! is full the caller is told "busy" at once instead of waiting behind a growing queue.

use crate::crypto::PasswordHasher;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce(&PasswordHasher) + Send>;

/// The nice value of the hashing threads (the request workers keep 0).
const HASH_NICE: i32 = 10;

pub struct HashPool {
    tx: SyncSender<Job>,
}

/// The pool's queue is full.
#[derive(Debug, PartialEq)]
pub struct Busy;

impl HashPool {
    pub fn new(hasher: PasswordHasher, threads: usize, queue: usize) -> HashPool {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let hasher = Arc::new(hasher);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let hasher = hasher.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // Hashing is throughput work: at a lower priority than the request workers,
                    // so a refusal or a GetUserinfo is not queued behind Argon2 on a busy CPU.
                    // (On Linux this sets the calling thread's nice value.)
                    if let Err(e) = rustix::process::setpriority_process(None, HASH_NICE) {
                        log::debug!("argon2 thread: cannot lower its priority: {e}");
                    }
                    loop {
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        job(&hasher);
                    }
                })
                .expect("cannot start hashing thread");
        }
        HashPool { tx }
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce(&PasswordHasher) -> T + Send + 'static) -> Result<T, Busy> {
        let (rtx, rrx) = sync_channel(1);
        let job: Job = Box::new(move |h| {
            let _ = rtx.send(f(h));
        });
        match self.tx.try_send(job) {
            Ok(()) => rrx.recv().map_err(|_| Busy),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    pub fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move |h| h.hash(&password))
    }

    pub fn verify(&self, phc: String, password: String) -> Result<bool, Busy> {
        self.run(move |h| h.verify(&phc, &password))
    }
}
