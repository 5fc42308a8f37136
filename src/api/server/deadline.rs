//! Connection deadlines without a reactor timer per wait.
//!
//! Every `smol::Timer` that is created wakes the reactor (async-io notifies its poller on each
//! insertion: an eventfd write, an `epoll_wait` return, a timerfd reset), and a connection waits
//! with a deadline three times per request (idle, head, answer): under load that was a third of
//! the system calls. Here each connection has one [`Deadline`] (an instant in an atomic and a
//! waker), and one sweeper thread per listener wakes, every [`TICK`], the connections whose
//! deadline has passed. A deadline is therefore kept to within a tick, which is plenty for
//! deadlines of seconds.

use atomic_waker::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How often the sweeper looks at the deadlines.
pub(super) const TICK: Duration = Duration::from_millis(50);

/// No deadline set.
const NONE: u64 = u64::MAX;

/// One connection's deadline: when its current wait ends.
pub(super) struct Deadline {
    base: Instant,
    /// Milliseconds after `base`, or NONE.
    at_ms: AtomicU64,
    waker: AtomicWaker,
}

impl Deadline {
    /// Sets the deadline of the next waits.
    pub(super) fn set(&self, at: Instant) {
        // Rounded up: a deadline never passes early (`passed` truncates the time now).
        let ms = at.saturating_duration_since(self.base).as_micros().div_ceil(1000).min(u128::from(NONE - 1)) as u64;
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    fn passed(&self, now: Instant) -> bool {
        let at = self.at_ms.load(Ordering::Relaxed);
        at != NONE && now.saturating_duration_since(self.base).as_millis() as u64 >= at
    }

    /// Ready once the deadline set has passed (seen by the sweeper or at a poll).
    pub(super) fn expired(&self) -> Expired<'_> {
        Expired(self)
    }

    /// `io` unless the deadline passes first: then `TimedOut`.
    pub(super) async fn bound<T>(&self, io: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
        use smol::future::FutureExt;
        io.or(async {
            self.expired().await;
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })
        .await
    }
}

pub(super) struct Expired<'a>(&'a Deadline);

impl Future for Expired<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let d = self.0;
        if d.passed(Instant::now()) {
            return Poll::Ready(());
        }
        d.waker.register(cx.waker());
        // A sweep between the check and the registration would have found no waker.
        if d.passed(Instant::now()) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The deadlines of one listener's connections.
#[derive(Default)]
pub(super) struct Deadlines {
    all: Mutex<Vec<Weak<Deadline>>>,
}

impl Deadlines {
    /// A deadline for a new connection (none set yet), swept until the connection drops it.
    pub(super) fn add(&self) -> Arc<Deadline> {
        let base = Instant::now();
        let d = Arc::new(Deadline { base, at_ms: AtomicU64::new(NONE), waker: AtomicWaker::new() });
        self.all.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&d));
        d
    }

    /// Wakes the connections whose deadline has passed and forgets the closed ones.
    fn sweep(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        self.all.lock().unwrap_or_else(PoisonError::into_inner).retain(|w| match w.upgrade() {
            Some(d) => {
                if d.passed(now) {
                    due.push(d);
                }
                true
            }
            None => false,
        });
        // Woken outside the lock: a woken task may open a connection (add) on this thread.
        for d in due {
            d.waker.wake();
        }
    }

    /// The sweeper: a thread that sweeps every TICK until `Deadlines` is dropped. A thread, not
    /// a task with a `smol::Timer`: with a timer pending, every wait of the reactor costs two
    /// more system calls (polling arms a timerfd for it).
    pub(super) fn start_sweeper(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name(format!("{name}-deadlines"))
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match me.upgrade() {
                    Some(d) => d.sweep(),
                    None => return,
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the {name} deadline thread: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::future::FutureExt;

    #[test]
    fn a_wait_ends_at_its_deadline_within_a_tick_and_not_before() {
        let ds = Arc::new(Deadlines::default());
        ds.start_sweeper("test").unwrap();
        smol::block_on(async {
            let d = ds.add();
            let start = Instant::now();
            d.set(start + Duration::from_millis(200));
            let early = async {
                smol::Timer::after(Duration::from_millis(150)).await;
                false
            };
            assert!(!async { d.expired().await; true }.or(early).await, "ended before its deadline");
            d.expired().await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(200) + 3 * TICK, "{took:?}");
            // A deadline in the past is ready at once.
            d.set(Instant::now() - Duration::from_millis(1));
            d.expired().await;
        });
    }

    #[test]
    fn closed_connections_are_forgotten() {
        let ds = Deadlines::default();
        let kept = ds.add();
        drop(ds.add());
        ds.sweep();
        assert_eq!(ds.all.lock().unwrap().len(), 1);
        drop(kept);
        ds.sweep();
        assert!(ds.all.lock().unwrap().is_empty());
    }
}
