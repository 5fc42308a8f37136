//! Signals are handled by one thread with `sigwait`: the signals are blocked in every thread
//! (the mask is set before any thread starts and inherited), so none interrupts a request.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

fn set() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGINT);
    s.add(Signal::SIGHUP);
    s
}

/// Block the shutdown signals in the calling thread (call before spawning threads).
pub fn block() -> Result<(), String> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set()), None).map_err(|e| format!("cannot block signals: {e}"))
}

/// Wait for SIGTERM or SIGINT; each SIGHUP runs `on_hup` (the configuration reload) meanwhile.
pub fn wait_for_shutdown(mut on_hup: impl FnMut()) -> Signal {
    let s = set();
    loop {
        match s.wait() {
            Ok(Signal::SIGHUP) => {
                log::info!("SIGHUP received; reloading the configuration");
                on_hup();
            }
            Ok(sig) => return sig,
            Err(e) => {
                log::error!("sigwait failed: {e}");
                return Signal::SIGTERM;
            }
        }
    }
}
