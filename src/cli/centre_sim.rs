//! `vnetd centre-sim`: run the centre simulator (spec 9; see `crate::centre_sim`).

use super::{CliResult, Failed};
use crate::centre_sim::{self, store};
use crate::crypto::TdesKey;
use crate::domain::peers::DEFAULT_IV;
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct CentreSimArgs {
    /// Address to listen on, e.g. 127.0.0.1:9090 (port 0: a free port, printed once ready as
    /// `centre-sim listening on ADDR` on stderr)
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The simulator's SQLite file (created if missing)
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// The simulated centre's DeviceNo, 16 digits
    #[arg(long, value_name = "N", value_parser = device_no)]
    device_no: String,
    /// Centre key, 48 hex digits, optionally `:IV` (16 hex digits); repeat it to accept several
    /// keys (any of them verifies, for key-rotation tests)
    #[arg(long = "key", value_name = "HEX48[:HEX16]", required = true, value_parser = key_spec)]
    keys: Vec<String>,
    /// IV of the keys given without one
    #[arg(long, value_name = "HEX16", default_value = DEFAULT_IV, value_parser = iv_hex)]
    iv: String,
    /// Users for RoamAuthV2 and roaming consumption, CSV with the header
    /// account_type,account,password,vnet_user_id,province_id,city_code (inserted or replaced)
    #[arg(long, value_name = "FILE.csv")]
    users: Option<PathBuf>,
    /// Share of requests (0.0–1.0) answered with HTTP 500 and a Server fault, storing nothing
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = fail_rate)]
    fail_rate: f64,
    /// Sleep this many milliseconds before handling each request
    #[arg(long, value_name = "N", default_value_t = 0)]
    delay_ms: u64,
    /// Simulate an SP's OrderNotify endpoint for SPID with this key (`:IV` optional); repeatable
    #[arg(long = "sp-key", value_name = "SPID:HEX48[:HEX16]", value_parser = sp_key_spec)]
    sp_keys: Vec<String>,
    /// Seconds added to the ServerTime ClockSync answers (to provoke the node's clock alarm)
    #[arg(long, value_name = "N", default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_s: i64,
    /// Seconds added to the simulator's clock for everything (TimeStamp checks, answered and
    /// stored times): match a node run with `[node] time_offset_s`
    #[arg(long, value_name = "N", default_value_t = 0, allow_hyphen_values = true)]
    time_offset_s: i64,
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn device_no(s: &str) -> Result<String, String> {
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err("must be 16 digits".into())
    }
}

fn iv_hex(s: &str) -> Result<String, String> {
    if is_hex(s, 16) {
        Ok(s.to_string())
    } else {
        Err("must be 16 hex digits".into())
    }
}

/// `HEX48` or `HEX48:HEX16`.
fn key_spec(s: &str) -> Result<String, String> {
    let (k, iv) = s.split_once(':').map_or((s, None), |(k, iv)| (k, Some(iv)));
    if !is_hex(k, 48) || iv.is_some_and(|iv| !is_hex(iv, 16)) {
        return Err("must be 48 hex digits, optionally followed by :IV of 16 hex digits".into());
    }
    Ok(s.to_string())
}

/// `SPID:HEX48` or `SPID:HEX48:HEX16`.
fn sp_key_spec(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((spid, rest)) if spid.len() == 8 && spid.bytes().all(|b| b.is_ascii_digit()) => {
            key_spec(rest).map(|_| s.to_string()).map_err(|_| "must be SPID:HEX48 or SPID:HEX48:HEX16".into())
        }
        _ => Err("must be SPID:HEX48 (SPID 8 digits) or SPID:HEX48:HEX16".into()),
    }
}

fn fail_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err("must be a number from 0.0 to 1.0".into()),
    }
}

/// A key from `HEX48[:HEX16]` (already checked), with `iv` when it has none.
fn key(spec: &str, iv: &str) -> Result<TdesKey, Failed> {
    let (k, own_iv) = spec.split_once(':').map_or((spec, iv), |(k, i)| (k, i));
    TdesKey::from_hex(k, own_iv).map_err(|_| Failed("a --key or --sp-key is not valid hex".into()))
}

pub fn run(a: CentreSimArgs) -> CliResult {
    let keys = a.keys.iter().map(|k| key(k, &a.iv)).collect::<Result<Vec<_>, _>>()?;
    let mut sp_keys = HashMap::new();
    for s in &a.sp_keys {
        let (spid, rest) = s.split_once(':').ok_or_else(|| Failed("bad --sp-key".into()))?;
        sp_keys.insert(spid.to_string(), key(rest, &a.iv)?);
    }
    let users = match &a.users {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Failed(format!("cannot read {}: {e}", path.display())))?;
            Some(store::parse_users_csv(&text).map_err(|e| Failed(format!("{}: {e}", path.display())))?)
        }
        None => None,
    };
    centre_sim::run(centre_sim::Options {
        listen: a.listen,
        db: a.db,
        device_no: a.device_no,
        keys,
        sp_keys,
        users,
        fail_rate: a.fail_rate,
        delay_ms: a.delay_ms,
        clock_offset_s: a.clock_offset_s,
        time_offset_s: a.time_offset_s,
    })
    .map_err(Failed)
}
