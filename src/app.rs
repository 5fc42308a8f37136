//! Everything a request handler needs, built once at start-up.

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::PasswordHasher;
use crate::runtime::hashing::HashPool;
use crate::domain::peers::PeerCache;
use crate::runtime::metrics::Metrics;
use crate::store::Store;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

pub struct App {
    pub cfg: Config,
    pub clock: Clock,
    pub store: Store,
    pub peers: PeerCache,
    pub metrics: Arc<Metrics>,
    pub hasher: HashPool,
    /// Unix seconds of the outbox relay's last round (0: not running); /readyz checks it.
    pub relay_heartbeat: Arc<AtomicI64>,
    /// Keep-alive client for synchronous centre calls (RoamAuthV2, roaming consumption).
    pub centre_client: crate::soap::client::Client,
    /// What verifies the servers of `https://` peer URLs (`tls.ca_file`, else the system's roots).
    pub tls_roots: crate::soap::client::TlsRoots,
    /// A hash of a random password with the configured parameters: a login for an account that
    /// does not exist (or has no password) verifies against it, so it costs the same hash time
    /// as a wrong password (no enumeration by timing).
    pub dummy_phc: String,
    /// CSRF tokens of the browser forms, under a secret kept in the database.
    pub csrf: crate::crypto::csrf::Csrf,
    /// Info lines for refused requests, rate-limited per caller.
    pub refusal_log: crate::runtime::ratelog::RefusalLog,
    /// Which destinations (centre, SPs) are failing: a warning when one goes down or comes back.
    pub reach: crate::runtime::reach::Reachability,
    /// Settings a SIGHUP may change while running (the rest of `cfg` is fixed at start).
    pub live: Live,
}

/// Settings reloaded on SIGHUP (see README "Configuration").
pub struct Live {
    /// `[server] max_body_bytes`, checked for each request body.
    pub max_body_bytes: std::sync::atomic::AtomicU64,
}

/// Queue length of the hashing pool per thread: beyond it logins answer HTTP 503 at once. Eight
/// hashes (~150 ms at the default cost) bound what an accepted login waits in the queue (32 let
/// logins queue ~1 s under load).
const HASH_QUEUE_PER_THREAD: usize = 8;

impl App {
    /// Count `n` password hashes refused because the Argon2 pool's queue was full (0 declares
    /// the series at start-up).
    pub fn count_hash_busy(&self, n: u64) {
        self.metrics.inc_counter("vnetd_hash_busy_total", "Logins refused because the hashing pool was full", &[], n);
    }

    pub fn new(cfg: Config, clock: Clock, store: Store) -> Result<App, String> {
        let s = &cfg.security;
        let hasher = PasswordHasher::new(s.argon2_m_kib, s.argon2_t, s.argon2_p)
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        let csrf_key = store
            .write(|c| crate::domain::sso::node_secret(c, "csrf", 32))
            .map_err(|e| format!("cannot read the node secret: {e}"))?;
        // On a thread of its own: its Argon2 working memory (`argon2_m_kib`, 19 MiB by default) is
        // freed when the thread ends instead of staying with the main thread (idle memory).
        let dummy_phc = std::thread::scope(|s| s.spawn(|| hasher.hash(&crate::domain::sso::new_secret(16))).join())
            .map_err(|_| "the start-up password hash failed".to_string())?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let tls_roots = crate::soap::client::TlsRoots::load(&cfg.tls.ca_file)?;
        let peers = PeerCache::new(store.clone()).map_err(|e| format!("cannot read peers: {e}"))?;
        Ok(App {
            hasher: HashPool::new(hasher, threads, threads * HASH_QUEUE_PER_THREAD),
            peers,
            metrics: Arc::new(Metrics::default()),
            relay_heartbeat: Arc::new(AtomicI64::new(0)),
            centre_client: crate::soap::client::Client::new(std::time::Duration::from_millis(cfg.sync.centre_timeout_ms.max(100)), &tls_roots),
            tls_roots,
            dummy_phc,
            csrf: crate::crypto::csrf::Csrf::new(csrf_key),
            refusal_log: crate::runtime::ratelog::RefusalLog::new(
                cfg.log.refusal_burst,
                std::time::Duration::from_secs(cfg.log.refusal_window_s.max(1)),
            ),
            reach: Default::default(),
            live: Live { max_body_bytes: std::sync::atomic::AtomicU64::new(cfg.server.max_body_bytes) },
            cfg,
            clock,
            store,
        })
    }
}
