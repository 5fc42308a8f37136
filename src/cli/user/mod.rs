//! `vnetd user add|show|unlock|set-password|set-status|import`.

mod import;

use import::{import, parse_row};
pub use import::{check_csv, split_csv};

use super::{open_store, print_table, CliResult, Failed};
use crate::config::Config;
use crate::crypto::PasswordHasher;
use crate::domain::passport::{self as pp, NewUser, User};
use crate::domain::Error;
use crate::runtime::logging::audit;
use crate::store::DbError;
use clap::Subcommand;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user; prints the VNetUserID
    Add {
        /// Account type: 01, 02, 03, 04 or 09 (mobile number)
        #[arg(long = "account-type", value_parser = ["01", "02", "03", "04", "09"])]
        account_type: String,
        /// The account (1 to 64 characters; for type 09 an 11-digit mobile number)
        #[arg(long)]
        account: String,
        /// City code, 1 to 6 digits
        #[arg(long = "city-code")]
        city_code: String,
        /// 1 postpaid, 2 prepaid
        #[arg(long = "user-type", default_value = "1", value_parser = ["1", "2"])]
        user_type: String,
        /// Monthly credit limit in fen (postpaid)
        #[arg(long = "credit-limit")]
        credit_limit: Option<i64>,
        /// Read the password from standard input (one line)
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
    /// Show a user by VNetUserID or account
    Show {
        /// A VNetUserID (12 digits) or an account of any type
        who: String,
    },
    /// Import users from CSV: every row is checked first (nothing is imported if any row is
    /// wrong), then rows are committed in short transactions; a rerun skips the users already
    /// imported
    #[command(after_help = IMPORT_HELP)]
    Import {
        /// The CSV file (UTF-8, header line first)
        file: PathBuf,
    },
    /// End a user's lockout (failed-login count and lock)
    Unlock {
        /// A VNetUserID (12 digits) or an account of any type
        who: String,
    },
    /// Set a user's password, read from standard input (one line), with the effects of
    /// PasswordReset: lock cleared, SSO sessions ended, PasswordReset queued for the centre
    #[command(name = "set-password")]
    SetPassword {
        /// A VNetUserID (12 digits) or an account of any type
        who: String,
    },
    /// Change a user's status with the effects of UserStatusChange (PUserInfoNotify to the
    /// centre; SSO sessions end unless 00; 03 cancels the user for good and ends its orders)
    #[command(name = "set-status")]
    SetStatus {
        /// A VNetUserID (12 digits) or an account of any type
        who: String,
        /// 00 normal, 01 suspended, 02 frozen, 03 cancelled (final)
        #[arg(value_parser = ["00", "01", "02", "03"])]
        status: String,
        /// Why (written to the audit log)
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub const CSV_HEADER: &str = "account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no";

const IMPORT_HELP: &str = "CSV header (line 1), optionally with a last column `password`:
  account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no[,password]

account_type 01|02|03|04|09; user_type 1 (postpaid, default) or 2; credit_limit and balance in fen
(empty: the configured default credit limit, balance 0). password: plain text (hashed with the
configured Argon2 parameters; the weak-password rule applies), an Argon2id PHC string
($argon2id$v=19$...) stored as it is, or empty (set it later with PasswordReset or
`vnetd user set-password`). Quoting as in RFC 4180; the password column takes the rest of the line,
so a PHC string's commas need no quotes. A user whose account already exists with the
same values is skipped (passwords are not compared), so an interrupted import can be run again.
Only the first 20 errors are listed, then their count.";

pub fn run(cfg: &Config, cmd: UserCmd) -> CliResult {
    match cmd {
        UserCmd::Add { account_type, account, city_code, user_type, credit_limit, password_stdin } => {
            let row = [account_type, account, city_code, user_type, credit_limit.map(|c| c.to_string()).unwrap_or_default(), String::new(), String::new(), String::new()];
            let mut new = parse_row(cfg, &row).map_err(Failed)?;
            if password_stdin {
                let pw = super::tools::read_line()?;
                if pp::weak_password(&pw, &new.account) {
                    return Err(Failed("password too simple: at least 6 characters, not one repeated character, not the account".into()));
                }
                let s = &cfg.security;
                let h = PasswordHasher::new(s.argon2_m_kib, s.argon2_t, s.argon2_p)?;
                new.password_phc = Some(h.hash(&pw));
            }
            let store = open_store(cfg)?;
            let clock = cfg.clock();
            let province = cfg.node.province_id.clone();
            let id = store.write(move |c| {
                let now = clock.unix();
                if pp::account_taken(c, &new.account_type, &new.account)? {
                    return Err(DbError::Other(format!("account {} (type {}) is already held by a user", new.account, new.account_type)));
                }
                let u = pp::create(c, &province, &new, now)?;
                pp::queue_info_notify(c, &clock, &u, "1", now)?;
                Ok(u.vnet_user_id)
            })?;
            audit("user_open", &[("by", "cli"), ("user", &id)]);
            println!("{id}");
        }
        UserCmd::Show { who } => {
            let store = open_store(cfg)?;
            let users = store.read(|c| find(c, &who))?;
            if users.is_empty() {
                return Err(Failed(format!("no user {who}")));
            }
            let now = cfg.clock().unix();
            let rows: Vec<Vec<String>> = users.iter().map(|u| show_row(u, now)).collect();
            print_table(
                &["vnet_user_id", "account_type", "account", "status", "city_code", "user_type", "credit_limit", "balance", "alias", "binding_access_no", "contract_id", "password", "locked"],
                &rows,
            );
        }
        UserCmd::Import { file } => import(cfg, &file)?,
        UserCmd::Unlock { who } => {
            let store = open_store(cfg)?;
            let u = target(&store, &who)?;
            let id = u.vnet_user_id.clone();
            let was_locked = u.locked_until > cfg.clock().unix();
            store.write(move |c| match pp::changeable(c, &id)? {
                Ok(_) => pp::reset_failures(c, &id),
                Err(e) => Err(DbError::Other(not_changeable(&id, e))),
            })?;
            audit("user_unlock", &[("by", "cli"), ("user", &u.vnet_user_id), ("was_locked", if was_locked { "1" } else { "0" })]);
            println!("user {}: lock and failed-login count cleared{}", u.vnet_user_id, if was_locked { "" } else { " (it was not locked)" });
        }
        UserCmd::SetPassword { who } => {
            let store = open_store(cfg)?;
            let u = target(&store, &who)?;
            if u.is_cancelled() {
                return Err(Failed(not_changeable(&u.vnet_user_id, Error::Cancelled)));
            }
            let pw = super::tools::read_line()?;
            if pp::weak_password(&pw, &u.account) {
                return Err(Failed("password too simple: at least 6 characters, not one repeated character, not the account".into()));
            }
            let s = &cfg.security;
            let phc = PasswordHasher::new(s.argon2_m_kib, s.argon2_t, s.argon2_p)?.hash(&pw);
            let clock = cfg.clock();
            let now = clock.unix();
            // As PasswordReset (6.4): the new password goes to the centre encrypted under its key.
            let peers = store.read(crate::domain::peers::load_all)?;
            let to_centre = peers.values().find(|p| p.kind == "centre" && p.active).and_then(|centre| {
                centre.current_key(now).map(|k| pp::ResetToCentre {
                    enc_password: k.key.encrypt_b64(pw.as_bytes()),
                    key_version: k.version,
                    transaction_id: format!("CLI{}", crate::crypto::random_bytes(12).iter().map(|b| format!("{b:02x}")).collect::<String>()),
                })
            });
            drop(pw);
            let id = u.vnet_user_id.clone();
            store.write(move |c| pp::reset_password(c, &id, &phc, to_centre, now)?.map_err(|e| DbError::Other(not_changeable(&id, e))))?;
            audit("password_reset", &[("by", "cli"), ("user", &u.vnet_user_id)]);
            println!("user {}: password set; lock cleared, sessions ended", u.vnet_user_id);
        }
        UserCmd::SetStatus { who, status, reason } => {
            let store = open_store(cfg)?;
            let u = target(&store, &who)?;
            let clock = cfg.clock();
            let province = cfg.node.province_id.clone();
            let (id, st) = (u.vnet_user_id.clone(), status.clone());
            let changed = store.write(move |c| {
                let now = clock.unix();
                pp::change_status(c, &clock, &province, &id, &st, now)?.map_err(|e| DbError::Other(not_changeable(&id, e)))
            })?;
            if changed {
                audit("status_change", &[("by", "cli"), ("user", &u.vnet_user_id), ("from", &u.status), ("status", &status), ("reason", &reason)]);
                println!("user {}: status {} -> {status}", u.vnet_user_id, u.status);
            } else {
                println!("user {}: status is already {status}", u.vnet_user_id);
            }
        }
    }
    Ok(())
}

fn not_changeable(id: &str, e: Error) -> String {
    match e {
        Error::UnknownUser => format!("no user {id}"),
        Error::Cancelled => format!("user {id} is cancelled (status 03 is final)"),
        other => format!("user {id}: {other}"),
    }
}

/// The one user a changing command acts on: by VNetUserID, else the holder of the account who is
/// not cancelled (an account held under several types must be named by VNetUserID), else the
/// most recently cancelled holder.
fn target(store: &crate::store::Store, who: &str) -> Result<User, Failed> {
    let users = store.read(|c| find(c, who))?;
    let live: Vec<&User> = users.iter().filter(|u| !u.is_cancelled()).collect();
    match (live.len(), users.first()) {
        (1, _) => Ok(live[0].clone()),
        (0, Some(u)) => Ok(u.clone()),
        (0, None) => Err(Failed(format!("no user {who}"))),
        _ => Err(Failed(format!(
            "account {who} is held by several users ({}); name one by its VNetUserID",
            live.iter().map(|u| format!("{} type {}", u.vnet_user_id, u.account_type)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn show_row(u: &User, now: i64) -> Vec<String> {
    vec![
        u.vnet_user_id.clone(),
        u.account_type.clone(),
        u.account.clone(),
        u.status.clone(),
        u.city_code.clone(),
        u.user_type.clone(),
        u.credit_limit.to_string(),
        u.balance.to_string(),
        u.alias.clone(),
        u.binding_access_no.clone(),
        u.contract_id.clone(),
        if u.password_phc.is_some() { "set".into() } else { "none".into() },
        if u.locked_until > now { "yes".into() } else { "no".into() },
    ]
}

/// A 12-digit argument is tried as a VNetUserID first, then as an account of any type.
fn find(c: &crate::store::Read, who: &str) -> Result<Vec<User>, DbError> {
    if who.len() == 12 && who.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(u) = pp::by_id(c, who)? {
            return Ok(vec![u]);
        }
    }
    let mut out = Vec::new();
    for t in pp::LOOKUP_ORDER {
        match pp::holder(c, t, who)? {
            pp::Holder::Live(u) | pp::Holder::Cancelled(u) => out.push(u),
            pp::Holder::None => {}
        }
    }
    Ok(out)
}
