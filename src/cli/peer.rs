//! `vnetd peer add|list|set|set-key|disable|enable|remove`.

use super::{open_store, print_table, CliResult, Failed};
use crate::config::Config;
use crate::domain::peers::{self, NewPeer, PeerChange, Removed, DEFAULT_IV};
use crate::runtime::logging::audit;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// Where the key comes from: exactly one of --key, --key-file, --key-stdin.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct KeySource {
    /// 3DES key, 48 hex digits (visible to other local users in the process list: prefer
    /// --key-file or --key-stdin)
    #[arg(long, value_name = "HEX48")]
    key: Option<String>,
    /// Read the key (48 hex digits; surrounding whitespace ignored) from FILE, which must be
    /// readable by its owner only (mode 0600 or 0400)
    #[arg(long = "key-file", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Read the key (48 hex digits) from the first line of standard input
    #[arg(long = "key-stdin")]
    pub(super) key_stdin: bool,
}

/// Largest key file read (a key is 48 characters).
const MAX_KEY_FILE: u64 = 4096;

impl KeySource {
    /// The key as 48 lowercase hex digits. Errors never contain the key.
    pub(super) fn read(&self) -> Result<String, Failed> {
        let raw = if let Some(k) = &self.key {
            k.clone()
        } else if let Some(f) = &self.key_file {
            read_key_file(f)?
        } else {
            super::tools::read_line()?
        };
        let k = raw.trim();
        if k.len() != 48 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failed("the key must be 48 hex digits".into()));
        }
        Ok(k.to_ascii_lowercase())
    }
}

fn read_key_file(path: &Path) -> Result<String, Failed> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let f = std::fs::File::open(path).map_err(|e| Failed(format!("cannot read key file {}: {e}", path.display())))?;
    let meta = f.metadata().map_err(|e| Failed(format!("cannot read key file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failed(format!("key file {} is not a regular file", path.display())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failed(format!(
            "key file {} is accessible to group or others (mode {mode:03o}); chmod 600 it",
            path.display()
        )));
    }
    let mut text = String::new();
    f.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(|e| Failed(format!("cannot read key file {}: {e}", path.display())))?;
    Ok(text)
}

#[derive(Subcommand)]
pub enum PeerCmd {
    /// Add a peer with its first key
    Add {
        /// Peer id: SPID (8 digits) for an SP, DeviceNo (16 digits) otherwise
        #[arg(long)]
        id: String,
        /// What the peer is; decides the SOAP service it may call
        #[arg(long, value_parser = ["sp", "centre", "bss", "aaa", "p168"])]
        kind: String,
        #[command(flatten)]
        key: KeySource,
        /// IV, 16 hex digits
        #[arg(long, default_value = DEFAULT_IV)]
        iv: String,
        /// A name for listings
        #[arg(long, default_value = "")]
        name: String,
        /// URL for calls the node makes to this peer (http:// only: no outbound TLS yet)
        #[arg(long)]
        url: Option<String>,
        /// Permitted ReturnURL prefix (SPs), an absolute http(s) URL; repeatable
        #[arg(long = "return-url", value_name = "PREFIX")]
        return_url: Vec<String>,
        /// Operations this peer may call, comma-separated (default: every operation of its service)
        #[arg(long, value_delimiter = ',', value_name = "OP,OP…")]
        ops: Option<Vec<String>>,
        /// Character encoding of the peer's messages
        #[arg(long, default_value = "utf-8", value_parser = ["utf-8", "gb2312"])]
        encoding: String,
    },
    /// List peers (never their keys)
    List,
    /// Change a peer's name, URL, ReturnURL prefixes, operations or encoding (not its key: set-key)
    Set {
        /// Peer id
        id: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New URL for calls the node makes to this peer (http:// only)
        #[arg(long, conflicts_with = "no_url")]
        url: Option<String>,
        /// Remove the URL (the node makes no calls to this peer)
        #[arg(long = "no-url")]
        no_url: bool,
        /// Permitted ReturnURL prefix, an absolute http(s) URL; repeatable; replaces the whole list
        #[arg(long = "return-url", value_name = "PREFIX")]
        return_url: Vec<String>,
        /// Remove every ReturnURL prefix
        #[arg(long = "no-return-urls", conflicts_with = "return_url")]
        no_return_urls: bool,
        /// Operations this peer may call, comma-separated; replaces the list
        #[arg(long, value_delimiter = ',', value_name = "OP,OP…", conflicts_with = "all_ops")]
        ops: Option<Vec<String>>,
        /// Allow every operation of the peer's service
        #[arg(long = "all-ops")]
        all_ops: bool,
        /// Character encoding of the peer's messages
        #[arg(long, value_parser = ["utf-8", "gb2312"])]
        encoding: Option<String>,
    },
    /// Add a new key version for a peer
    SetKey {
        /// Peer id
        id: String,
        #[command(flatten)]
        key: KeySource,
        /// When the key takes effect, node time "yyyy-MM-dd HH:mm:ss" (default: now)
        #[arg(long)]
        effect: Option<String>,
    },
    /// Disable a peer: its calls answer -20001
    Disable {
        /// Peer id
        id: String,
    },
    /// Enable a disabled peer again
    Enable {
        /// Peer id
        id: String,
    },
    /// Remove a peer and all its keys; refused while outbox messages wait for it
    Remove {
        /// Peer id
        id: String,
        /// Dead-letter the messages waiting for the peer, then remove it
        #[arg(long)]
        force: bool,
    },
}

/// Every name in `ops` is an operation of the service a peer of `kind` calls.
fn check_ops(kind: &str, ops: &[String]) -> Result<(), Failed> {
    use crate::spec::Service;
    let service = Service::ALL.into_iter().find(|s| s.caller_kind() == kind);
    let declared: Vec<&str> = service.map(|s| crate::spec::incoming::of(s).map(|o| o.message.name).collect()).unwrap_or_default();
    if ops.is_empty() || ops.iter().any(|o| o.trim().is_empty()) {
        return Err(Failed("--ops: an empty operation name (use --all-ops for every operation)".into()));
    }
    if let Some(bad) = ops.iter().find(|o| !declared.contains(&o.trim())) {
        let svc = service.map(|s| s.name()).unwrap_or("?");
        return Err(Failed(format!("--ops: {bad:?} is not an operation of {svc}, the service a peer of kind {kind} calls (operations: {})", declared.join(", "))));
    }
    Ok(())
}

pub fn run(cfg: &Config, cmd: PeerCmd) -> CliResult {
    let clock = cfg.clock();
    let now = clock.unix();
    match cmd {
        PeerCmd::Add { id, kind, key, iv, name, url, return_url, ops, encoding } => {
            if let Some(ops) = &ops {
                check_ops(&kind, ops)?;
            }
            let ops = ops.map(|o| o.into_iter().map(|s| s.trim().to_string()).collect());
            let key_hex = key.read()?;
            let p = NewPeer { id: id.clone(), kind: kind.clone(), key_hex, iv_hex: iv, name, url, return_urls: return_url, ops, encoding };
            peers::validate_new(&p).map_err(Failed)?;
            let store = open_store(cfg)?;
            peers::add(&store, p, now)?;
            audit("peer_add", &[("peer", &id), ("kind", &kind)]);
            println!("peer {id} added");
        }
        PeerCmd::List => {
            let store = open_store(cfg)?;
            let all = store.read(peers::load_all)?;
            let mut list: Vec<_> = all.values().collect();
            list.sort_by(|a, b| a.id.cmp(&b.id));
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    let cur = p.current_key(now).map(|k| k.version.to_string()).unwrap_or_default();
                    vec![
                        p.id.clone(),
                        p.kind.clone(),
                        p.name.clone(),
                        if p.active { "active".into() } else { "disabled".into() },
                        p.url.clone().unwrap_or_default(),
                        if p.gb2312 { "gb2312".into() } else { "utf-8".into() },
                        p.ops.as_ref().map(|o| o.join(",")).unwrap_or_else(|| "*".into()),
                        p.return_urls.join(" "),
                        cur,
                        p.keys.len().to_string(),
                    ]
                })
                .collect();
            print_table(&["id", "kind", "name", "status", "url", "encoding", "ops", "return_urls", "key_version", "key_versions"], &rows);
        }
        PeerCmd::Set { id, name, url, no_url, return_url, no_return_urls, ops, all_ops, encoding } => {
            let change = PeerChange {
                name,
                url: if no_url { Some(None) } else { url.map(Some) },
                return_urls: if no_return_urls { Some(Vec::new()) } else if return_url.is_empty() { None } else { Some(return_url) },
                ops: if all_ops { Some(None) } else { ops.map(|o| Some(o.into_iter().map(|s| s.trim().to_string()).collect())) },
                encoding,
            };
            if change.is_empty() {
                return Err(Failed("nothing to change: give at least one of --name, --url, --no-url, --return-url, --no-return-urls, --ops, --all-ops, --encoding".into()));
            }
            change.validate().map_err(Failed)?;
            let store = open_store(cfg)?;
            let kind = store.read(|c| peers::kind_of(c, &id))?.ok_or_else(|| Failed(format!("peer {id} does not exist")))?;
            if let Some(Some(ops)) = &change.ops {
                check_ops(&kind, ops)?;
            }
            let fields = change.fields().join(",");
            let id2 = id.clone();
            store.write(move |c| peers::set(c, &id2, &change, now))?;
            audit("peer_set", &[("peer", &id), ("fields", &fields)]);
            println!("peer {id} changed ({fields}); the daemon uses it within 2 s");
        }
        PeerCmd::SetKey { id, key, effect } => {
            let effect_at = match effect {
                None => now,
                Some(e) => clock.parse_ts(&e).ok_or_else(|| Failed("--effect must be \"yyyy-MM-dd HH:mm:ss\"".into()))?,
            };
            let key = key.read()?;
            crate::crypto::TdesKey::from_hex(&key, DEFAULT_IV).map_err(|_| Failed("the key must be 48 hex digits".into()))?;
            let store = open_store(cfg)?;
            let id2 = id.clone();
            let v = store.write(move |c| peers::add_key(c, &id2, &key, None, effect_at, false, now))?;
            match v {
                Some(v) => {
                    audit("key_change", &[("peer", &id), ("version", &v.to_string()), ("effect", &clock.format_ts(effect_at)), ("by", "cli")]);
                    println!("peer {id}: key version {v} takes effect at {}", clock.format_ts(effect_at));
                }
                None => println!("peer {id}: key unchanged"),
            }
        }
        PeerCmd::Disable { id } => {
            let store = open_store(cfg)?;
            peers::disable(&store, id.clone(), now)?;
            audit("peer_disable", &[("peer", &id)]);
            println!("peer {id} disabled");
        }
        PeerCmd::Enable { id } => {
            let store = open_store(cfg)?;
            peers::enable(&store, id.clone(), now)?;
            audit("peer_enable", &[("peer", &id)]);
            println!("peer {id} enabled");
        }
        PeerCmd::Remove { id, force } => {
            let store = open_store(cfg)?;
            let id2 = id.clone();
            match store.write(move |c| peers::remove(c, &id2, force, now))? {
                Removed::Waiting(n) => {
                    return Err(Failed(format!(
                        "peer {id} has {n} outbox message(s) waiting for delivery; let them be delivered (vnetd outbox status), or use --force to dead-letter them"
                    )));
                }
                Removed::Done { dead_lettered } => {
                    if dead_lettered > 0 {
                        log::error!("peer remove --force: {dead_lettered} waiting outbox message(s) for peer {id} dead-lettered");
                    }
                    audit("peer_remove", &[("peer", &id), ("force", if force { "1" } else { "0" }), ("dead_lettered", &dead_lettered.to_string())]);
                    println!("peer {id} removed with its keys; {dead_lettered} waiting message(s) dead-lettered");
                }
            }
        }
    }
    Ok(())
}
