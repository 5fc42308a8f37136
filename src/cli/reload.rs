//! SIGHUP: re-read the configuration file and apply what can change while running, without
//! closing any connection. What is reloaded (README "Configuration"):
//!
//! * `[log] level`, `refusal_burst`, `refusal_window_s`;
//! * `[server] max_body_bytes` (checked per request body from then on);
//! * `[server] max_connections`, for connections accepted from then on (open ones stay);
//! * `[server] read_timeout_s`, for the requests started from then on (both listeners);
//! * `[tls] cert_file`, `key_file` when the listener already serves HTTPS: the files are read
//!   again and connections accepted from then on get the new certificate (open ones keep
//!   theirs); files that do not load leave the running certificate, with a warning naming the
//!   file. Turning HTTPS on or off (empty ↔ set) needs a restart;
//! * peers: the peer table is read from the database at once (it is otherwise re-read every
//!   second).
//!
//! Everything else (listen addresses, `workers`, `queue`, `legacy_allow`, storage, node,
//! security, billing, access, sync, log target) keeps its start-up value; a change to it is
//! named in a warning saying it needs a restart. A file that does not load or validate is
//! logged and ignored: the running configuration stays.

use crate::api::http::Listeners;
use crate::app::App;
use crate::config::Config;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Re-reads the configuration and applies the reloadable settings to `app` and the listeners.
pub fn reload(app: &App, listeners: &Listeners) {
    let path = app.cfg.source.as_deref();
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("SIGHUP: configuration not reloaded, the running one stays: {e}");
            return;
        }
    };
    let level = new.level();
    crate::runtime::logging::set_level(level);
    app.live.max_body_bytes.store(new.server.max_body_bytes, Ordering::Relaxed);
    let cap = new.server.max_connections as usize;
    listeners.soap.set_max_connections(cap);
    let timeout = Duration::from_secs(new.server.read_timeout_s);
    listeners.soap.set_read_timeout(timeout);
    listeners.admin.set_read_timeout(timeout);
    app.refusal_log.set_limits(new.log.refusal_burst, Duration::from_secs(new.log.refusal_window_s.max(1)));
    let tls = reload_tls(&app.cfg, &new, listeners);
    app.peers.invalidate();
    let peers = app.peers.all().len();
    let restart: Vec<&str> = restart_only_changes(&app.cfg, &new);
    if !restart.is_empty() {
        log::warn!("SIGHUP: {} changed; this takes effect only at a restart", restart.join(", "));
    }
    if let Some(tls) = tls {
        log::info!("SIGHUP: {tls}");
    }
    log::info!(
        "SIGHUP: configuration reloaded from {}: log level {level}, max_body_bytes {}, max_connections {cap}, read_timeout_s {}, refusal log {} per {} s, {peers} peer(s) read",
        path.map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into()),
        new.server.max_body_bytes,
        new.server.read_timeout_s,
        new.log.refusal_burst,
        new.log.refusal_window_s
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status("configuration reloaded")]);
}

/// Reloads the SOAP listener's certificate; Some: what was done, for the log.
fn reload_tls(old: &Config, new: &Config, listeners: &Listeners) -> Option<String> {
    let t = &new.tls;
    if old.tls.inbound() != t.inbound() {
        let now = if t.inbound() { "HTTPS (tls.cert_file, tls.key_file set)" } else { "plain HTTP (tls.cert_file, tls.key_file empty)" };
        log::warn!("SIGHUP: the SOAP listener would change to {now}; turning HTTPS on or off takes effect only at a restart");
        return None;
    }
    let slot = listeners.tls.as_ref()?;
    match slot.reload(&t.cert_file, &t.key_file) {
        Ok(()) => Some(format!("TLS certificate reloaded from {} and {} (for new connections)", t.cert_file, t.key_file)),
        Err(e) => {
            log::warn!("SIGHUP: TLS certificate not reloaded, the running one stays: {e}");
            None
        }
    }
}

/// Settings that differ between `old` (in force since start) and `new` and are not reloaded.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let d = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    let (o, n) = (&old.server, &new.server);
    for (name, changed) in [
        ("server.listen", o.listen != n.listen),
        ("server.admin_listen", o.admin_listen != n.admin_listen),
        ("server.workers", o.workers != n.workers),
        ("server.queue", o.queue != n.queue),
        ("server.legacy_allow", o.legacy_allow != n.legacy_allow),
        ("[storage]", d(&old.storage, &new.storage)),
        ("[node]", d(&old.node, &new.node)),
        ("[security]", d(&old.security, &new.security)),
        ("[billing]", d(&old.billing, &new.billing)),
        ("[access]", d(&old.access, &new.access)),
        ("[sync]", d(&old.sync, &new.sync)),
        ("log.target", old.log.target != new.log.target),
        ("tls.ca_file", old.tls.ca_file != new.tls.ca_file),
    ] {
        if changed {
            out.push(name);
        }
    }
    out
}
