//! The event loops: one thread per core, each with its own epoll instance and its own run
//! queue of tasks (smol's `async-task`), as nginx runs one event loop per worker process.
//!
//! Why not async-io's reactor (smol's default, used here first): it is one epoll instance for
//! the whole process. Only one thread can wait on it; the events it returns for connections
//! of the other event-loop threads are handed over by waking those threads (a futex system
//! call and a context switch each), and every wait costs five system calls (a timerfd is
//! armed, the notification eventfd drained and both re-registered) plus an `epoll_ctl` per
//! socket wait, because sockets are registered one-shot. Measured with GetUserinfo on two
//! cores: ~31k req/s at 1,024 connections and ~40k at 64.
//!
//! Here a connection belongs to one loop for its life: its socket is registered once,
//! edge-triggered, for reading and writing; a task that finds the socket not ready keeps its
//! waker and the next edge wakes it, on the same thread. Another thread wakes a task (a worker
//! handing over an answer, the deadline sweeper) by queueing it and, only when the loop is
//! waiting in `epoll_wait`, writing the loop's eventfd.

use async_task::Runnable;
use atomic_waker::AtomicWaker;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use smol::io::{AsyncRead, AsyncWrite};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

/// The epoll token of a loop's eventfd.
const WAKE: u64 = u64::MAX;
/// Tasks run before the loop looks at its sockets again.
const BATCH: usize = 256;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a socket's task waits for: readable or writable, each with the waker to call and a
/// count of the edges seen (a task that registers its waker after an edge retries at once).
#[derive(Default)]
struct Readiness {
    read: AtomicWaker,
    write: AtomicWaker,
    read_edges: AtomicU64,
    write_edges: AtomicU64,
}

/// The sockets registered with a loop, by epoll token.
#[derive(Default)]
struct Sources {
    slots: Vec<Option<Arc<Readiness>>>,
    free: Vec<usize>,
}

impl Sources {
    fn insert(&mut self, r: Arc<Readiness>) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(r);
                i
            }
            None => {
                self.slots.push(Some(r));
                self.slots.len() - 1
            }
        }
    }
    /// Frees `token` if it still holds `r`.
    fn remove(&mut self, token: usize, r: &Arc<Readiness>) {
        if self.slots.get(token).and_then(Option::as_ref).is_some_and(|x| Arc::ptr_eq(x, r)) {
            self.slots[token] = None;
            self.free.push(token);
        }
    }
}

/// One event loop: its epoll instance, its run queue, its sockets.
pub(super) struct Loop {
    epoll: Epoll,
    wake: EventFd,
    queue: Mutex<VecDeque<Runnable>>,
    /// In (or about to enter) `epoll_wait`: a task queued from elsewhere must write `wake`.
    sleeping: AtomicBool,
    /// `wake` written since the loop last woke (one write is enough).
    notified: AtomicBool,
    sources: Mutex<Sources>,
    stop: AtomicBool,
}

impl Loop {
    fn new() -> io::Result<Loop> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(Loop {
            epoll,
            wake,
            queue: Mutex::new(VecDeque::new()),
            sleeping: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            sources: Mutex::new(Sources::default()),
            stop: AtomicBool::new(false),
        })
    }

    /// Runs `fut` on this loop.
    pub(super) fn spawn(self: &Arc<Self>, fut: impl Future<Output = ()> + Send + 'static) {
        let me = self.clone();
        let (runnable, task) = async_task::spawn(fut, move |r| me.schedule(r));
        runnable.schedule();
        task.detach();
    }

    fn schedule(&self, r: Runnable) {
        lock(&self.queue).push_back(r);
        self.notify();
    }

    /// Wakes the loop if it waits in `epoll_wait`.
    fn notify(&self) {
        // Pairs with the fence in `run`: either the loop sees the queued task before it
        // sleeps, or this sees it sleeping.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && !self.notified.swap(true, Ordering::SeqCst) {
            let _ = self.wake.write(1);
        }
    }

    fn run(&self, hooks: Hooks) {
        (hooks.start)();
        let mut events = vec![EpollEvent::empty(); EVENTS];
        let mut wakers = Vec::with_capacity(EVENTS);
        while !self.stop.load(Ordering::SeqCst) {
            for _ in 0..BATCH {
                let Some(r) = lock(&self.queue).pop_front() else { break };
                r.run();
            }
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let idle = lock(&self.queue).is_empty() && !self.stop.load(Ordering::SeqCst);
            if idle {
                (hooks.idle)();
            } else {
                self.sleeping.store(false, Ordering::SeqCst);
            }
            let n = match self.epoll.wait(&mut events, if idle { EpollTimeout::NONE } else { EpollTimeout::ZERO }) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    log::error!("event loop: epoll_wait: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    0
                }
            };
            self.sleeping.store(false, Ordering::SeqCst);
            self.notified.store(false, Ordering::SeqCst);
            {
                let sources = lock(&self.sources);
                for ev in &events[..n] {
                    if ev.data() == WAKE {
                        let _ = self.wake.read();
                        continue;
                    }
                    let Some(Some(r)) = sources.slots.get(ev.data() as usize) else { continue };
                    let f = ev.events();
                    let gone = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
                    if f.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | gone) {
                        r.read_edges.fetch_add(1, Ordering::SeqCst);
                        wakers.extend(r.read.take());
                    }
                    if f.intersects(EpollFlags::EPOLLOUT | gone) {
                        r.write_edges.fetch_add(1, Ordering::SeqCst);
                        wakers.extend(r.write.take());
                    }
                }
            }
            // Their tasks are queued on this loop (no system call: it is awake).
            for w in wakers.drain(..) {
                w.wake();
            }
        }
        // Stopped: every socket operation now fails (`poll_io`); the tasks waiting on one are
        // woken to see it and end, closing their connections, here on their thread.
        let wakers: Vec<std::task::Waker> =
            lock(&self.sources).slots.iter().flatten().flat_map(|r| [r.read.take(), r.write.take()]).flatten().collect();
        for w in wakers {
            w.wake();
        }
        for _ in 0..16 {
            let queued = std::mem::take(&mut *lock(&self.queue));
            if queued.is_empty() {
                break;
            }
            for r in queued {
                r.run();
            }
        }
        // Whatever is left (a task that waits on something else) is dropped with the loop.
        (hooks.idle)();
    }

    fn register(self: &Arc<Self>, fd: impl std::os::fd::AsFd, flags: EpollFlags) -> io::Result<(usize, Arc<Readiness>)> {
        let ready = Arc::new(Readiness::default());
        let token = lock(&self.sources).insert(ready.clone());
        if let Err(e) = self.epoll.add(fd, EpollEvent::new(flags | EpollFlags::EPOLLET, token as u64)) {
            lock(&self.sources).remove(token, &ready);
            return Err(e.into());
        }
        Ok((token, ready))
    }

    fn deregister(&self, fd: impl std::os::fd::AsFd, token: usize, ready: &Arc<Readiness>) {
        let _ = self.epoll.delete(fd);
        lock(&self.sources).remove(token, ready);
    }
}

/// A non-blocking socket operation: ready, or the waker kept for the next edge.
fn poll_io<T>(lp: &Loop, edges: &AtomicU64, waker: &AtomicWaker, cx: &Context<'_>, mut op: impl FnMut() -> io::Result<T>) -> Poll<io::Result<T>> {
    loop {
        if lp.stop.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the event loop stopped")));
        }
        let seen = edges.load(Ordering::SeqCst);
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                waker.register(cx.waker());
                if edges.load(Ordering::SeqCst) == seen {
                    return Poll::Pending;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return Poll::Ready(r),
        }
    }
}

/// A TCP connection registered with a loop (futures-io `AsyncRead`/`AsyncWrite`).
pub(super) struct Tcp {
    stream: TcpStream,
    token: usize,
    ready: Arc<Readiness>,
    lp: Arc<Loop>,
}

impl Tcp {
    pub(super) fn new(stream: TcpStream, lp: &Arc<Loop>) -> io::Result<Tcp> {
        stream.set_nonblocking(true)?;
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP;
        let (token, ready) = lp.register(&stream, flags)?;
        Ok(Tcp { stream, token, ready, lp: lp.clone() })
    }
    pub(super) fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl Drop for Tcp {
    fn drop(&mut self) {
        self.lp.deregister(&self.stream, self.token, &self.ready);
    }
}

impl AsyncRead for Tcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let s = &me.stream;
        poll_io(&me.lp, &me.ready.read_edges, &me.ready.read, cx, || (&*s).read(buf))
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let s = &me.stream;
        poll_io(&me.lp, &me.ready.write_edges, &me.ready.write, cx, || (&*s).write(buf))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.stream.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        })
    }
}

/// A listening socket registered with a loop.
pub(super) struct Listener {
    inner: TcpListener,
    token: usize,
    ready: Arc<Readiness>,
    lp: Arc<Loop>,
}

impl Listener {
    pub(super) fn new(inner: TcpListener, lp: &Arc<Loop>) -> io::Result<Listener> {
        inner.set_nonblocking(true)?;
        let (token, ready) = lp.register(&inner, EpollFlags::EPOLLIN)?;
        Ok(Listener { inner, token, ready, lp: lp.clone() })
    }

    /// The next connection (blocking mode off).
    pub(super) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| poll_io(&self.lp, &self.ready.read_edges, &self.ready.read, cx, || self.inner.accept())).await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.lp.deregister(&self.inner, self.token, &self.ready);
    }
}

/// What a loop's thread calls besides its tasks.
#[derive(Clone, Copy)]
pub struct Hooks {
    /// Once, first.
    pub start: fn(),
    /// Before each wait for events with nothing left to run, and last.
    pub idle: fn(),
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks { start: || {}, idle: || {} }
    }
}

/// The event loop threads.
pub struct Runtime {
    loops: Arc<Loops>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The loops of a runtime, and which one takes the next connection.
pub(super) struct Loops {
    all: Vec<Arc<Loop>>,
    next: AtomicUsize,
}

impl Loops {
    /// The loop of the accept tasks.
    pub(super) fn first(&self) -> &Arc<Loop> {
        &self.all[0]
    }
    /// The loop for a new connection: each in turn.
    pub(super) fn pick(&self) -> &Arc<Loop> {
        &self.all[self.next.fetch_add(1, Ordering::Relaxed) % self.all.len()]
    }
}

impl Runtime {
    /// `threads` loops on threads named `{name}-io-{i}` (0: one per core, at most 8).
    pub fn new(name: &str, threads: usize) -> Result<Runtime, String> {
        Runtime::with_hooks(name, threads, Hooks::default())
    }

    /// As `new`, each loop's thread calling `hooks`.
    pub fn with_hooks(name: &str, threads: usize, hooks: Hooks) -> Result<Runtime, String> {
        let n = if threads > 0 { threads } else { std::thread::available_parallelism().map_or(2, |n| n.get()).min(8) };
        let all = (0..n).map(|_| Loop::new().map(Arc::new)).collect::<io::Result<Vec<_>>>().map_err(|e| format!("cannot create an event loop: {e}"))?;
        let loops = Arc::new(Loops { all, next: AtomicUsize::new(0) });
        let mut handles = Vec::with_capacity(n);
        for (i, lp) in loops.all.iter().enumerate() {
            let lp = lp.clone();
            let t = std::thread::Builder::new()
                .name(format!("{name}-io-{i}"))
                .spawn(move || lp.run(hooks))
                .map_err(|e| format!("cannot start an event loop thread: {e}"))?;
            handles.push(t);
        }
        Ok(Runtime { loops, threads: Mutex::new(handles) })
    }

    pub(super) fn loops(&self) -> &Arc<Loops> {
        &self.loops
    }

    /// Stops the event loop threads; the connections still open are closed.
    pub fn stop(&self) {
        for lp in &self.loops.all {
            lp.stop.store(true, Ordering::SeqCst);
            let _ = lp.wake.write(1);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn echo_across_loops_with_wakes_from_other_threads() {
        let rt = Runtime::new("t", 2).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let loops = rt.loops().clone();
        let l = Listener::new(listener, loops.first()).unwrap();
        let ls = loops.clone();
        loops.first().spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let lp = ls.pick().clone();
                let mut t = Tcp::new(s, &lp).unwrap();
                lp.spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = t.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // An answer that comes from another thread, as a worker's does.
                        let (tx, rx) = smol::channel::bounded(1);
                        let data = buf[..n].to_vec();
                        std::thread::spawn(move || tx.send_blocking(data));
                        let data = rx.recv().await.unwrap();
                        if t.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let clients: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    for j in 0..200 {
                        let msg = format!("{i}-{j}");
                        c.write_all(msg.as_bytes()).unwrap();
                        let mut got = vec![0u8; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        assert_eq!(got, msg.as_bytes());
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        // Stopping closes the open connections.
        let mut open = TcpStream::connect(addr).unwrap();
        open.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).unwrap();
        rt.stop();
        open.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        assert_eq!(open.read(&mut one).unwrap(), 0, "closed by stop");
    }
}
