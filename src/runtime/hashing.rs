//! A bounded pool for Argon2id work (ENGINEERING.md): as many threads as cores; when the queue
//! is full the caller is told "busy" at once instead of waiting behind a growing queue.

use crate::crypto::PasswordHasher;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce(&PasswordHasher) + Send>;

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
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    job(&hasher);
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
