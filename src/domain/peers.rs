//! Peers (spec 1, 2.4, 2.6): every system that calls the node or is called by it, with its key
//! versions. The daemon reads them through a cache refreshed every second, so what the CLI changes
//! takes effect within 2 seconds without a restart.

use crate::crypto::TdesKey;
use crate::store::{DbError, DbResult, Store};
use crate::store::outbox;
use crate::store::peers::{self as db, KeyRow};
use crate::store::{Read, Write};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub const KINDS: [&str; 5] = ["sp", "centre", "bss", "aaa", "p168"];
pub const DEFAULT_IV: &str = "0102030405060708";

#[derive(Clone)]
pub struct KeyVersion {
    pub version: i64,
    pub key: TdesKey,
    pub effect_at: i64,
    /// The previous key stops verifying at this key's effect time (emergency rotation).
    pub emergency: bool,
}

impl std::fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyVersion {{ version: {}, effect_at: {} }}", self.version, self.effect_at)
    }
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub active: bool,
    pub url: Option<String>,
    pub return_urls: Vec<String>,
    /// None: every operation of its service.
    pub ops: Option<Vec<String>>,
    pub gb2312: bool,
    /// Oldest first.
    pub keys: Vec<KeyVersion>,
}

impl Peer {
    /// The keys an inbound message may be signed with at `now`: the newest key in effect, and
    /// during the grace period after it took effect, the previous one (spec 2.6, 11).
    pub fn verify_keys(&self, now: i64, grace_s: i64) -> Vec<&KeyVersion> {
        let in_effect: Vec<&KeyVersion> = self.keys.iter().filter(|k| k.effect_at <= now).collect();
        let mut out = Vec::with_capacity(2);
        if let Some(newest) = in_effect.last() {
            out.push(*newest);
            if in_effect.len() >= 2 && !newest.emergency && now < newest.effect_at + grace_s {
                out.push(in_effect[in_effect.len() - 2]);
            }
        }
        out
    }

    /// The key for outbound messages: the newest in effect.
    pub fn current_key(&self, now: i64) -> Option<&KeyVersion> {
        self.keys.iter().rev().find(|k| k.effect_at <= now)
    }

    pub fn may_call(&self, op: &str) -> bool {
        self.ops.as_ref().is_none_or(|ops| ops.iter().any(|o| o == op))
    }
}

/// Is `id` well formed for `kind` (SPID 8 digits, DeviceNo 16)?
pub fn valid_id(kind: &str, id: &str) -> bool {
    let n = if kind == "sp" { 8 } else { 16 };
    id.len() == n && id.bytes().all(|b| b.is_ascii_digit())
}

pub fn load_all(conn: &Read) -> DbResult<HashMap<String, Arc<Peer>>> {
    let mut keys: HashMap<String, Vec<KeyVersion>> = HashMap::new();
    for k in db::keys(conn)? {
        match TdesKey::from_hex(&k.key_hex, &k.iv_hex) {
            Ok(key) => keys.entry(k.peer_id).or_default().push(KeyVersion { version: k.version, key, effect_at: k.effect_at, emergency: k.emergency }),
            Err(_) => log::error!("peer {} key version {} is malformed in the database; ignored", k.peer_id, k.version),
        }
    }
    let mut out = HashMap::new();
    for r in db::all(conn)? {
        let p = Peer {
            keys: keys.remove(&r.id).unwrap_or_default(),
            active: r.status == "active",
            return_urls: r.return_urls.lines().map(str::to_string).filter(|s| !s.is_empty()).collect(),
            ops: r.ops.map(|s| s.split(',').map(|o| o.trim().to_string()).collect()),
            gb2312: r.encoding == "gb2312",
            id: r.id,
            kind: r.kind,
            name: r.name,
            url: r.url,
        };
        out.insert(p.id.clone(), Arc::new(p));
    }
    Ok(out)
}

type PeerMap = Arc<HashMap<String, Arc<Peer>>>;

/// A read-through cache of the peer table, refreshed at most every `REFRESH`.
pub struct PeerCache {
    store: Store,
    /// When the map was read, and the map.
    state: RwLock<(Instant, PeerMap)>,
}

const REFRESH: Duration = Duration::from_millis(1000);

impl PeerCache {
    pub fn new(store: Store) -> DbResult<PeerCache> {
        let all = store.read(load_all)?;
        Ok(PeerCache { store, state: RwLock::new((Instant::now(), Arc::new(all))) })
    }

    fn snapshot(&self) -> PeerMap {
        {
            let g = self.state.read().unwrap_or_else(|e| e.into_inner());
            if g.0.elapsed() < REFRESH {
                return g.1.clone();
            }
        }
        let mut g = self.state.write().unwrap_or_else(|e| e.into_inner());
        if g.0.elapsed() >= REFRESH {
            match self.store.read(load_all) {
                Ok(all) => *g = (Instant::now(), Arc::new(all)),
                // Keep serving the last good table; try again at the next refresh.
                Err(e) => {
                    log::error!("cannot reload peers: {e}");
                    g.0 = Instant::now();
                }
            }
        }
        g.1.clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Peer>> {
        self.snapshot().get(id).cloned()
    }

    /// Every peer.
    pub fn all(&self) -> Vec<Arc<Peer>> {
        self.snapshot().values().cloned().collect()
    }

    /// The (single) centre peer, if any.
    pub fn centre(&self) -> Option<Arc<Peer>> {
        self.snapshot().values().find(|p| p.kind == "centre" && p.active).cloned()
    }

    /// Drop the cache so the next look-up reads the database (after the daemon's own changes).
    pub fn invalidate(&self) {
        let mut g = self.state.write().unwrap_or_else(|e| e.into_inner());
        g.0 = Instant::now() - REFRESH * 2;
    }
}

pub use crate::store::peers::NewPeer;

pub fn validate_new(p: &NewPeer) -> Result<(), String> {
    if !KINDS.contains(&p.kind.as_str()) {
        return Err(format!("kind must be one of {}", KINDS.join(", ")));
    }
    if !valid_id(&p.kind, &p.id) {
        return Err(format!("id of a peer of kind {} must be {} digits", p.kind, if p.kind == "sp" { 8 } else { 16 }));
    }
    TdesKey::from_hex(&p.key_hex, &p.iv_hex).map_err(|_| "key must be 48 hex digits and iv 16 hex digits".to_string())?;
    if p.encoding != "utf-8" && p.encoding != "gb2312" {
        return Err("encoding must be utf-8 or gb2312".into());
    }
    if let Some(u) = &p.url {
        validate_url(u)?;
    }
    for r in &p.return_urls {
        validate_return_url(r)?;
    }
    Ok(())
}

/// A URL the node calls (`--url`): an absolute `http://` or `https://` URL with a host (over
/// TLS the server is verified against `tls.ca_file` or the system's roots).
pub fn validate_url(u: &str) -> Result<(), String> {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(format!("url {u:?} must be an absolute http:// or https:// URL"));
    }
    absolute_http(u).map_err(|e| format!("url {u:?}: {e}"))
}

/// A permitted ReturnURL prefix (`--return-url`): an absolute `http://` or `https://` URL with a
/// host (the browser follows it, not the node).
pub fn validate_return_url(r: &str) -> Result<(), String> {
    if !(r.starts_with("http://") || r.starts_with("https://")) {
        return Err(format!("return-url prefix {r:?} must start with http:// or https://"));
    }
    absolute_http(r).map_err(|e| format!("return-url prefix {r:?}: {e}"))
}

/// Syntax of an absolute http(s) URL: no spaces or control characters, a host, a valid port.
fn absolute_http(u: &str) -> Result<(), String> {
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains a space or a control character".into());
    }
    if u.split_once("://").is_some_and(|(_, rest)| rest.starts_with('/')) {
        return Err("has no host".into());
    }
    let uri: ureq::http::Uri = u.parse().map_err(|e| format!("not a valid URL ({e})"))?;
    let host = uri.host().unwrap_or("");
    if host.is_empty() {
        return Err("has no host".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry credentials (user@)".into());
    }
    // The port: after the last ':' that follows the host (an IPv6 host is in brackets).
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let after_host = authority.rfind(']').map_or(authority, |i| &authority[i + 1..]);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        if !port.parse::<u16>().is_ok_and(|p| p != 0) {
            return Err("has an invalid port".into());
        }
    }
    Ok(())
}

/// What `peer set` changes; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct PeerChange {
    pub name: Option<String>,
    /// `Some(None)`: no URL.
    pub url: Option<Option<String>>,
    pub return_urls: Option<Vec<String>>,
    /// `Some(None)`: every operation of its service.
    pub ops: Option<Option<Vec<String>>>,
    pub encoding: Option<String>,
}

impl PeerChange {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.url.is_none() && self.return_urls.is_none() && self.ops.is_none() && self.encoding.is_none()
    }

    /// The names of the fields it changes (for the audit line).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.name.is_some() { out.push("name"); }
        if self.url.is_some() { out.push("url"); }
        if self.return_urls.is_some() { out.push("return_urls"); }
        if self.ops.is_some() { out.push("ops"); }
        if self.encoding.is_some() { out.push("encoding"); }
        out
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(Some(u)) = &self.url {
            validate_url(u)?;
        }
        for r in self.return_urls.iter().flatten() {
            validate_return_url(r)?;
        }
        if let Some(e) = &self.encoding {
            if e != "utf-8" && e != "gb2312" {
                return Err("encoding must be utf-8 or gb2312".into());
            }
        }
        if let Some(n) = &self.name {
            if n.chars().count() > 128 || n.chars().any(char::is_control) {
                return Err("name must be at most 128 characters without control characters".into());
            }
        }
        Ok(())
    }
}

pub use crate::store::peers::kind_of;

/// Apply a `peer set` (inside the caller's write transaction). The caller has validated it.
pub fn set(conn: &Write, id: &str, ch: &PeerChange, now: i64) -> DbResult<()> {
    if kind_of(conn, id)?.is_none() {
        return Err(DbError::Other(format!("peer {id} does not exist")));
    }
    if let Some(n) = &ch.name {
        db::set_name(conn, id, n)?;
    }
    if let Some(u) = &ch.url {
        db::set_url(conn, id, u.as_deref())?;
    }
    if let Some(r) = &ch.return_urls {
        db::set_return_urls(conn, id, &r.join("\n"))?;
    }
    if let Some(o) = &ch.ops {
        db::set_ops(conn, id, o.as_ref().map(|o| o.join(",")).as_deref())?;
    }
    if let Some(e) = &ch.encoding {
        db::set_encoding(conn, id, e)?;
    }
    db::touch(conn, id, now)?;
    Ok(())
}

/// The outbox destination condition for the messages meant for peer `id` of `kind`: its own id,
/// and for the centre the `centre` destination when no other enabled centre peer would take them.
fn destinations(conn: &Read, id: &str, kind: &str) -> DbResult<Vec<String>> {
    let mut out = vec![id.to_string()];
    if kind == "centre" {
        let other = db::other_active_centres(conn, id)?;
        if other == 0 {
            out.push(crate::store::outbox::CENTRE.to_string());
        }
    }
    Ok(out)
}

/// Outbox messages waiting (pending) for peer `id`.
pub fn waiting_messages(conn: &Read, id: &str, kind: &str) -> DbResult<i64> {
    let mut n = 0;
    for d in destinations(conn, id, kind)? {
        n += outbox::pending_count(conn, &d)?;
    }
    Ok(n)
}

/// What `remove` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// The peer and its keys are gone; this many waiting messages were dead-lettered.
    Done { dead_lettered: i64 },
    /// Refused: this many messages wait for the peer (and `force` was not given).
    Waiting(i64),
}

/// Remove a peer and every key version of it (inside the caller's write transaction). While
/// messages wait for it, refused unless `force`, which dead-letters them first (the same
/// transaction: all or nothing).
pub fn remove(conn: &Write, id: &str, force: bool, now: i64) -> DbResult<Removed> {
    let Some(kind) = kind_of(conn, id)? else {
        return Err(DbError::Other(format!("peer {id} does not exist")));
    };
    let waiting = waiting_messages(conn, id, &kind)?;
    if waiting > 0 && !force {
        return Ok(Removed::Waiting(waiting));
    }
    let mut dead = 0i64;
    for d in destinations(conn, id, &kind)? {
        dead += outbox::dead_letter_destination(conn, &d, &format!("peer {id} removed by the operator (peer remove --force)"), now)? as i64;
    }
    db::delete(conn, id)?;
    Ok(Removed::Done { dead_lettered: dead })
}

pub fn add(store: &Store, p: NewPeer, now: i64) -> DbResult<()> {
    validate_new(&p).map_err(DbError::Other)?;
    store.write(move |c| {
        if db::exists(c, &p.id)? {
            return Err(DbError::Other(format!("peer {} already exists (use peer set-key to change its key)", p.id)));
        }
        db::insert(c, &p, now)
    })
}

/// Add a key version. `iv_hex` None keeps the current IV. Returns the new version number, or
/// None when the key, IV and effect time equal the newest version's (a no-op).
pub fn add_key(
    conn: &Write,
    peer_id: &str,
    key_hex: &str,
    iv_hex: Option<&str>,
    effect_at: i64,
    emergency: bool,
    now: i64,
) -> DbResult<Option<i64>> {
    let newest = db::newest_key(conn, peer_id)?;
    let Some((version, cur_key, cur_iv, cur_effect)) = newest else {
        return Err(DbError::Other(format!("peer {peer_id} does not exist")));
    };
    let key_hex = key_hex.to_ascii_lowercase();
    let iv_hex = iv_hex.map(str::to_ascii_lowercase).unwrap_or(cur_iv.clone());
    TdesKey::from_hex(&key_hex, &iv_hex).map_err(|_| DbError::Other("key must be 48 hex digits and iv 16 hex digits".into()))?;
    // The newest key again, at its own effect time or "now" while it is already in effect (a
    // resent KeyUpdate, a repeated set-key): a no-op, so the previous key keeps its grace period.
    if key_hex == cur_key && iv_hex == cur_iv && (effect_at == cur_effect || (effect_at == now && cur_effect <= now)) {
        return Ok(None);
    }
    let k = KeyRow { peer_id: peer_id.to_string(), version: version + 1, key_hex, iv_hex, effect_at, emergency };
    db::insert_key(conn, &k, now)?;
    db::touch(conn, peer_id, now)?;
    Ok(Some(version + 1))
}

pub fn disable(store: &Store, id: String, now: i64) -> DbResult<()> {
    set_status(store, id, "disabled", now)
}

/// Undo `disable`: the peer's calls are accepted again.
pub fn enable(store: &Store, id: String, now: i64) -> DbResult<()> {
    set_status(store, id, "active", now)
}

fn set_status(store: &Store, id: String, status: &'static str, now: i64) -> DbResult<()> {
    store.write(move |c| {
        let n = db::set_status(c, &id, status, now)?;
        if n == 0 {
            return Err(DbError::Other(format!("peer {id} does not exist")));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(version: i64, effect_at: i64, emergency: bool) -> KeyVersion {
        KeyVersion { version, key: TdesKey::from_hex(&"ab".repeat(24), DEFAULT_IV).unwrap(), effect_at, emergency }
    }

    fn peer(keys: Vec<KeyVersion>) -> Peer {
        Peer { id: "35000001".into(), kind: "sp".into(), name: String::new(), active: true, url: None, return_urls: vec![], ops: None, gb2312: false, keys }
    }

    #[test]
    fn url_rules() {
        assert!(validate_url("http://10.0.0.1:8080/centre").is_ok());
        assert!(validate_url("https://centre.example/").is_ok());
        assert!(validate_url("https:///x").is_err());
        assert!(validate_url("ftp://x/").is_err());
        assert!(validate_url("http://").is_err());
        assert!(validate_url("http://a b/").is_err());
        assert!(validate_url("http://u:p@host/").is_err());
        assert!(validate_url("http://host:99999/").is_err());
        assert!(validate_url("http://[::1]:8080/x").is_ok());
        assert!(validate_url("http://[::1]/x").is_ok());
        assert!(validate_return_url("https://sp.example/back").is_ok());
        assert!(validate_return_url("/relative").is_err());
        assert!(validate_return_url("https:///x").is_err());
    }

    #[test]
    fn grace_period_rules() {
        let p = peer(vec![kv(1, 0, false), kv(2, 1000, false), kv(3, 5000, false)]);
        let v = |now| p.verify_keys(now, 100).iter().map(|k| k.version).collect::<Vec<_>>();
        assert_eq!(v(500), vec![1]);
        assert_eq!(v(1000), vec![2, 1]);
        assert_eq!(v(1099), vec![2, 1]);
        assert_eq!(v(1100), vec![2]);
        assert_eq!(p.current_key(4999).unwrap().version, 2);
        let e = peer(vec![kv(1, 0, false), kv(2, 1000, true)]);
        assert_eq!(e.verify_keys(1000, 100).len(), 1);
        assert_eq!(e.verify_keys(999, 100)[0].version, 1);
    }
}
