//! A bounded pool for Argon2id work (ENGINEERING.md): as many threads as cores; when the queue
//! is full the caller is told "busy" at once instead of waiting behind a growing queue.

use crate::crypto::PasswordHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce(&PasswordHasher) + Send>;

pub struct HashPool {
    tx: SyncSender<Job>,
    /// Jobs queued and not yet taken by a hashing thread.
    waiting: Arc<AtomicUsize>,
    queue: usize,
}

/// The pool's queue is full.
#[derive(Debug, PartialEq)]
pub struct Busy;

impl HashPool {
    pub fn new(hasher: PasswordHasher, threads: usize, queue: usize) -> HashPool {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let hasher = Arc::new(hasher);
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let (rx, hasher, waiting) = (rx.clone(), hasher.clone(), waiting.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    job(&hasher);
                })
                .expect("cannot start hashing thread");
        }
        HashPool { tx, waiting, queue }
    }

    /// Is the queue full, so that a hash asked for now would be refused? (A login can then be
    /// refused before the work that leads to its hash: parsing, the Authenticator, the lookup.)
    pub fn full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= self.queue
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce(&PasswordHasher) -> T + Send + 'static) -> Result<T, Busy> {
        let (rtx, rrx) = sync_channel(1);
        let job: Job = Box::new(move |h| {
            let _ = rtx.send(f(h));
        });
        // Counted before the send: the thread that takes it may run first.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => rrx.recv().map_err(|_| Busy),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }

    pub fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move |h| h.hash(&password))
    }

    pub fn verify(&self, phc: String, password: String) -> Result<bool, Busy> {
        self.run(move |h| h.verify(&phc, &password))
    }
}
