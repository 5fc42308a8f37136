//! `vnetd peer add|list|set-key|disable`.

use super::{open_store, print_table, CliResult, Failed};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::peers::{self, NewPeer, DEFAULT_IV};
use crate::ops_support::logging::audit;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PeerCmd {
    /// Add a peer with its first key
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, value_parser = ["sp", "centre", "bss", "aaa", "p168"])]
        kind: String,
        /// 3DES key, 48 hex digits
        #[arg(long)]
        key: String,
        /// IV, 16 hex digits
        #[arg(long, default_value = DEFAULT_IV)]
        iv: String,
        #[arg(long, default_value = "")]
        name: String,
        /// URL for calls the node makes to this peer
        #[arg(long)]
        url: Option<String>,
        /// Permitted ReturnURL prefix (SPs); repeatable
        #[arg(long = "return-url")]
        return_url: Vec<String>,
        /// Operations this peer may call (default: every operation of its service)
        #[arg(long, value_delimiter = ',')]
        ops: Option<Vec<String>>,
        #[arg(long, default_value = "utf-8", value_parser = ["utf-8", "gb2312"])]
        encoding: String,
    },
    /// List peers (never their keys)
    List,
    /// Add a new key version for a peer
    SetKey {
        id: String,
        #[arg(long)]
        key: String,
        /// When the key takes effect, node time "yyyy-MM-dd HH:mm:ss" (default: now)
        #[arg(long)]
        effect: Option<String>,
    },
    /// Disable a peer: its calls answer -20001
    Disable { id: String },
}

pub fn run(cfg: &Config, cmd: PeerCmd) -> CliResult {
    let clock = Clock::from_config(cfg);
    let now = clock.unix();
    match cmd {
        PeerCmd::Add { id, kind, key, iv, name, url, return_url, ops, encoding } => {
            if let Some(ops) = &ops {
                let known = |o: &str| crate::ops::table::OPS.iter().any(|d| d.name == o);
                if let Some(bad) = ops.iter().find(|o| !known(o)) {
                    return Err(Failed(format!("--ops: unknown operation {bad:?}")));
                }
            }
            let p = NewPeer { id: id.clone(), kind: kind.clone(), key_hex: key, iv_hex: iv, name, url, return_urls: return_url, ops, encoding };
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
        PeerCmd::SetKey { id, key, effect } => {
            let effect_at = match effect {
                None => now,
                Some(e) => clock.parse_ts(&e).ok_or_else(|| Failed("--effect must be \"yyyy-MM-dd HH:mm:ss\"".into()))?,
            };
            crate::crypto::TdesKey::from_hex(&key, DEFAULT_IV).map_err(|_| Failed("--key must be 48 hex digits".into()))?;
            let store = open_store(cfg)?;
            let id2 = id.clone();
            let v = store.write(move |c| peers::add_key(c, &id2, &key, None, effect_at, false, now))?;
            match v {
                Some(v) => {
                    audit("key_change", &[("peer", &id), ("version", &v.to_string()), ("effect", &clock.format_ts(effect_at))]);
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
    }
    Ok(())
}
