//! Helpers for operators and integrators: compute an Authenticator or an `enc` value, so a first
//! SOAP call can be made with curl.

use super::{CliResult, Failed};
use crate::crypto::{self, TdesKey};
use crate::domain::peers::DEFAULT_IV;
use super::peer::KeySource;
use clap::Args;

#[derive(Args)]
pub struct AuthenticatorArgs {
    #[command(flatten)]
    key: KeySource,
    /// IV, 16 hex digits
    #[arg(long, default_value = DEFAULT_IV)]
    iv: String,
    /// The request's field values in the operation's order, without the Authenticator
    /// (an absent optional field is an empty string "")
    #[arg(required = true, allow_hyphen_values = true)]
    values: Vec<String>,
}

#[derive(Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    key: KeySource,
    /// IV, 16 hex digits
    #[arg(long, default_value = DEFAULT_IV)]
    iv: String,
    /// Read the value from standard input (one line) instead of the argument
    #[arg(long)]
    stdin: bool,
    /// The value to encrypt
    value: Option<String>,
}

/// The key from --key, --key-file or --key-stdin. Errors never contain it.
fn key(k: &KeySource, iv: &str) -> Result<TdesKey, Failed> {
    TdesKey::from_hex(&k.read()?, iv).map_err(|_| Failed("--iv must be 16 hex digits".into()))
}

pub fn authenticator(a: AuthenticatorArgs) -> CliResult {
    let k = key(&a.key, &a.iv)?;
    let values: Vec<&str> = a.values.iter().map(String::as_str).collect();
    println!("{}", crypto::authenticator(&k, &values));
    Ok(())
}

pub fn encrypt(a: EncryptArgs) -> CliResult {
    if a.stdin && a.key.key_stdin {
        return Err(Failed("--stdin and --key-stdin both read standard input: give the key with --key-file".into()));
    }
    let k = key(&a.key, &a.iv)?;
    let value = match (a.stdin, a.value) {
        (true, _) => read_line()?,
        (false, Some(v)) => v,
        (false, None) => return Err(Failed("give a value or --stdin".into())),
    };
    println!("{}", k.encrypt_b64(value.as_bytes()));
    Ok(())
}

/// One line from standard input without its line ending.
pub fn read_line() -> Result<String, Failed> {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}
