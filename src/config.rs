//! Configuration (spec section 9): TOML, built-in defaults, unknown keys rejected by name.

pub mod cidr;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/vnetd/vnetd.toml";
/// Largest `node.time_offset_s` either way: node time stays a four-digit year (`ts`), and the
/// clock's arithmetic cannot leave the date range (a larger offset panicked on the first read).
const MAX_TIME_OFFSET_S: u64 = 100 * 31_557_600;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: Node,
    pub server: Server,
    pub storage: Storage,
    pub security: Security,
    pub billing: Billing,
    pub access: Access,
    pub sync: Sync,
    pub log: Log,
    pub tls: Tls,
    /// Where the config came from (None = built-in defaults). Not a TOML key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Node {
    pub province_id: String,
    pub device_no: String,
    pub timezone: String,
    pub default_city_code: String,
    pub time_offset_s: i64,
}
impl Default for Node {
    fn default() -> Self {
        Node {
            province_id: "35".into(),
            device_no: "3500000000000101".into(),
            timezone: "+08:00".into(),
            default_city_code: "0591".into(),
            time_offset_s: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    pub admin_listen: String,
    pub max_body_bytes: u64,
    pub max_connections: u64,
    pub read_timeout_s: u64,
    /// Worker threads running the SOAP listener's handlers.
    pub workers: u64,
    /// Requests waiting for a worker; beyond them a request gets 503 with Retry-After.
    pub queue: u64,
    pub legacy_allow: Vec<String>,
}
impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            max_body_bytes: 65536,
            max_connections: 512,
            read_timeout_s: 10,
            workers: 64,
            queue: 1024,
            legacy_allow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub path: PathBuf,
    /// Seconds the start-up `PRAGMA quick_check` may take before it is stopped (the part checked
    /// must be sound; a larger database is checked partly); 0 skips the check.
    pub quick_check_s: u64,
}
impl Default for Storage {
    fn default() -> Self {
        Storage { path: PathBuf::from("./vnetd-data/vnetd.db"), quick_check_s: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    pub clock_tolerance_s: i64,
    pub lockout_threshold: u32,
    pub lockout_minutes: i64,
    pub key_grace_h: i64,
    pub ticket_ttl_s: i64,
    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    pub argon2_p: u32,
    pub sso_idle_minutes: i64,
    pub sso_max_hours: i64,
    pub idempotency_days: i64,
}
impl Default for Security {
    fn default() -> Self {
        Security {
            clock_tolerance_s: 300,
            lockout_threshold: 5,
            lockout_minutes: 15,
            key_grace_h: 24,
            ticket_ttl_s: 60,
            argon2_m_kib: 19456,
            argon2_t: 2,
            argon2_p: 1,
            sso_idle_minutes: 30,
            sso_max_hours: 8,
            idempotency_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Billing {
    pub default_credit_limit_fen: i64,
    pub recon_window_days: i64,
    pub recon_tolerance_fen: i64,
    pub recon_page_size: i64,
    pub day_close_minute: i64,
}
impl Default for Billing {
    fn default() -> Self {
        Billing {
            default_credit_limit_fen: 50000,
            recon_window_days: 62,
            recon_tolerance_fen: 0,
            recon_page_size: 500,
            day_close_minute: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    pub session_stale_h: i64,
}
impl Default for Access {
    fn default() -> Self {
        Access { session_stale_h: 48 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sync {
    pub batch_max_records: u32,
    pub flush_interval_ms: u64,
    pub retry_max_s: u64,
    pub dead_letter_after_h: u64,
    pub centre_timeout_ms: u64,
    pub clock_sync_minutes: u64,
    pub clock_alarm_s: i64,
    pub sync_passwords: bool,
}
impl Default for Sync {
    fn default() -> Self {
        Sync {
            batch_max_records: 500,
            flush_interval_ms: 1000,
            retry_max_s: 300,
            dead_letter_after_h: 72,
            centre_timeout_ms: 3000,
            clock_sync_minutes: 10,
            clock_alarm_s: 60,
            sync_passwords: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "syslog" or "stderr"; None = decided at start-up (stderr on a terminal or without a
    /// config file, else syslog).
    pub target: Option<String>,
    pub level: String,
    /// Refused requests logged per caller (or source address) per `refusal_window_s`; the
    /// rest are counted in one summary line per window.
    pub refusal_burst: u32,
    pub refusal_window_s: u64,
}
impl Default for Log {
    fn default() -> Self {
        Log { target: None, level: "info".into(), refusal_burst: 10, refusal_window_s: 60 }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// CA certificates (PEM) that verify the servers of `https://` peer URLs; empty = the
    /// system's trusted roots.
    pub ca_file: String,
    /// The SOAP/pages listener's certificate chain (PEM, leaf first); with `key_file`, the
    /// listener speaks HTTPS only. Both empty (the default): plain HTTP.
    pub cert_file: String,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: String,
}

impl Tls {
    /// Whether the SOAP/pages listener serves HTTPS.
    pub fn inbound(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// Which file to read: `--config` beats `VNETD_CONFIG`, which beats the default path when it
/// exists; otherwise built-in defaults.
pub fn resolve_path(cli: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("VNETD_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    default.exists().then(|| default.to_path_buf())
}

impl Config {
    /// Load from the resolved path (or defaults) and validate.
    pub fn load(cli: Option<&Path>) -> Result<Config, String> {
        let cfg = match resolve_path(cli) {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
                let mut cfg = Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                cfg.source = Some(path);
                cfg
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    pub fn validate(&self) -> Result<(), String> {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let mut errs = Vec::new();
        if !digits(&self.node.province_id, 2) {
            errs.push("node.province_id must be 2 digits".to_string());
        }
        if !digits(&self.node.device_no, 16) {
            errs.push("node.device_no must be 16 digits".into());
        }
        if crate::clock::parse_utc_offset(&self.node.timezone).is_none() {
            errs.push("node.timezone must look like +08:00".into());
        }
        if self.node.time_offset_s.unsigned_abs() > MAX_TIME_OFFSET_S {
            errs.push(format!("node.time_offset_s must be within ±{MAX_TIME_OFFSET_S} (100 years)"));
        }
        let cc = &self.node.default_city_code;
        if cc.is_empty() || cc.len() > 6 || !cc.bytes().all(|b| b.is_ascii_digit()) {
            errs.push("node.default_city_code must be 1 to 6 digits".into());
        }
        for (key, val) in [("server.listen", &self.server.listen), ("server.admin_listen", &self.server.admin_listen)] {
            if val.parse::<SocketAddr>().is_err() {
                errs.push(format!("{key} must be an address like 127.0.0.1:8080"));
            }
        }
        if self.storage.quick_check_s > 3600 {
            errs.push("storage.quick_check_s must be at most 3600 (0 skips the start-up check)".into());
        }
        if self.storage.path.as_os_str().is_empty() {
            errs.push("storage.path must not be empty".into());
        }
        for c in &self.server.legacy_allow {
            if crate::config::cidr::Cidr::parse(c).is_none() {
                errs.push(format!("server.legacy_allow: {c:?} is not a CIDR"));
            }
        }
        if self.server.workers > 1024 {
            errs.push("server.workers must be at most 1024".into());
        }
        let positive: [(&str, i64); 17] = [
            ("server.max_body_bytes", self.server.max_body_bytes as i64),
            ("server.max_connections", self.server.max_connections as i64),
            ("server.read_timeout_s", self.server.read_timeout_s as i64),
            ("server.workers", self.server.workers as i64),
            ("server.queue", self.server.queue as i64),
            ("security.clock_tolerance_s", self.security.clock_tolerance_s),
            ("security.lockout_threshold", self.security.lockout_threshold as i64),
            ("security.lockout_minutes", self.security.lockout_minutes),
            ("security.ticket_ttl_s", self.security.ticket_ttl_s),
            ("security.argon2_t", self.security.argon2_t as i64),
            ("security.argon2_p", self.security.argon2_p as i64),
            ("security.idempotency_days", self.security.idempotency_days),
            ("billing.recon_page_size", self.billing.recon_page_size),
            ("sync.batch_max_records", self.sync.batch_max_records as i64),
            ("sync.flush_interval_ms", self.sync.flush_interval_ms as i64),
            ("sync.retry_max_s", self.sync.retry_max_s as i64),
            ("sync.centre_timeout_ms", self.sync.centre_timeout_ms as i64),
        ];
        for (k, v) in positive {
            if v <= 0 {
                errs.push(format!("{k} must be greater than 0"));
            }
        }
        if self.security.argon2_m_kib < 8 * self.security.argon2_p {
            errs.push("security.argon2_m_kib must be at least 8 × argon2_p".into());
        }
        for (k, v) in [
            ("security.key_grace_h", self.security.key_grace_h),
            ("billing.default_credit_limit_fen", self.billing.default_credit_limit_fen),
            ("billing.recon_window_days", self.billing.recon_window_days),
            ("billing.recon_tolerance_fen", self.billing.recon_tolerance_fen),
            ("access.session_stale_h", self.access.session_stale_h),
        ] {
            if v < 0 {
                errs.push(format!("{k} must not be negative"));
            }
        }
        if self.access.session_stale_h < 1 {
            errs.push("access.session_stale_h must be at least 1".into());
        }
        if !(0..1440).contains(&self.billing.day_close_minute) {
            errs.push("billing.day_close_minute must be 0..1439".into());
        }
        if let Some(t) = &self.log.target {
            if t != "syslog" && t != "stderr" {
                errs.push(format!("log.target must be \"syslog\" or \"stderr\", not {t:?}"));
            }
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            errs.push("tls.cert_file and tls.key_file must be set together (both empty: plain HTTP)".into());
        }
        if self.log.refusal_window_s == 0 {
            errs.push("log.refusal_window_s must be at least 1".into());
        }
        if self.log.level.parse::<log::LevelFilter>().is_err() {
            errs.push(format!("log.level {:?} is not one of error, warn, info, debug, trace", self.log.level));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
    }

    /// The node's clock: system time in `node.timezone`, shifted by `node.time_offset_s`.
    pub fn clock(&self) -> crate::clock::Clock {
        let tz = crate::clock::parse_utc_offset(&self.node.timezone).unwrap_or(time::UtcOffset::UTC);
        crate::clock::Clock::system(tz, self.node.time_offset_s)
    }

    pub fn level(&self) -> log::LevelFilter {
        self.log.level.parse().unwrap_or(log::LevelFilter::Info)
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().expect("validated")
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_listen.parse().expect("validated")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec() {
        let c = Config::default();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.admin_listen, "127.0.0.1:8081");
        assert_eq!(c.storage.path, PathBuf::from("./vnetd-data/vnetd.db"));
        assert_eq!(c.storage.quick_check_s, 10);
        assert_eq!(c.security.argon2_m_kib, 19456);
        assert_eq!(c.billing.day_close_minute, 30);
        assert!(c.sync.sync_passwords);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[node]\nprovince_idd = \"35\"\n").unwrap_err();
        assert!(e.contains("province_idd"), "{e}");
        let e = Config::parse("[nodes]\n").unwrap_err();
        assert!(e.contains("nodes"), "{e}");
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c = Config::parse("[security]\nargon2_m_kib = 64\n").unwrap();
        assert_eq!(c.security.argon2_m_kib, 64);
        assert_eq!(c.security.argon2_t, 2);
        assert_eq!(c.node.province_id, "35");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config::parse("[node]\nprovince_id = \"3\"\n").unwrap();
        assert!(c.validate().unwrap_err().contains("node.province_id"));
        // Found by fuzz/ config: an offset past the date range panicked at the first clock read,
        // and a large negative one gave a five-character year.
        for off in ["9000000000000", "-64000000000", "3155760001"] {
            let c = Config::parse(&format!("[node]\ntime_offset_s = {off}\n")).unwrap();
            assert!(c.validate().unwrap_err().contains("node.time_offset_s"), "{off}");
        }
        let c = Config::parse("[node]\ntime_offset_s = -3155760000\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.clock().now_ts().len(), 19);
        let c = Config::parse("[log]\ntarget = \"file\"\n").unwrap();
        assert!(c.validate().unwrap_err().contains("log.target"));
        let e = Config::parse("[server]\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert!(e.contains("max_body_bytes"), "{e}");
        let c = Config::parse("[tls]\ncert_file = \"/etc/vnetd/cert.pem\"\n").unwrap();
        assert!(c.validate().unwrap_err().contains("tls.cert_file and tls.key_file"));
        let c = Config::parse("[tls]\nkey_file = \"/etc/vnetd/key.pem\"\n").unwrap();
        assert!(c.validate().unwrap_err().contains("tls.cert_file and tls.key_file"));
        let c = Config::parse("[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n").unwrap();
        assert!(c.validate().is_ok() && c.tls.inbound());
        assert!(Config::parse("[tls]\ncert = \"c.pem\"\n").unwrap_err().contains("cert"));
    }
}
