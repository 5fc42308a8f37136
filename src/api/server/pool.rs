//! The worker pool: a fixed number of threads running the blocking handlers (SOAP pipeline,
//! WSDL, browser pages, admin endpoints) off a bounded queue. `try_submit` never blocks: a full
//! queue is the caller's 503.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

pub type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Pool {
    tx: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// `workers` threads named `{name}-{i}`, and room for `queue` jobs waiting for one.
    pub fn new(name: &str, workers: usize, queue: usize) -> Result<Pool, String> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&rx))
                .map_err(|e| format!("cannot start a {name} worker thread: {e}"))?;
            threads.push(t);
        }
        Ok(Pool { tx: Mutex::new(Some(tx)), threads: Mutex::new(threads) })
    }

    /// Queues `job`; false when the queue is full or the pool is stopped.
    pub fn try_submit(&self, job: Job) -> bool {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        match tx.as_ref().map(|tx| tx.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    /// Takes no more jobs; the workers finish the queued ones and end. Waits for them.
    pub fn stop(&self) {
        self.tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn full_queue_refuses_and_stop_runs_what_was_queued() {
        let pool = Pool::new("t", 1, 2).unwrap();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        assert!(pool.try_submit(Box::new(move || {
            let _ = go_rx.recv();
            d.fetch_add(1, Ordering::SeqCst);
        })));
        // The worker may not have taken the first job yet: the queue holds two jobs.
        let mut queued = 0;
        for _ in 0..4 {
            let d = done.clone();
            if pool.try_submit(Box::new(move || {
                d.fetch_add(1, Ordering::SeqCst);
            })) {
                queued += 1;
            }
        }
        assert!((1..=2).contains(&queued), "{queued} queued");
        go_tx.send(()).unwrap();
        pool.stop();
        assert_eq!(done.load(Ordering::SeqCst), 1 + queued);
        assert!(!pool.try_submit(Box::new(|| {})));
    }
}
