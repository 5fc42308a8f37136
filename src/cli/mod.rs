//! The command line (spec 9). Exit codes: 0 ok, 1 error, 2 usage.

mod backup;
mod bench;
pub mod child;
mod catalog;
mod centre_sim;
mod outbox;
mod peer;
mod ledger;
mod recon;
mod reload;
mod restore;
mod roam;
mod run;
mod tools;
mod user;
mod watchdog;

/// `user import`'s row checks, for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub use user::{check_csv as user_import_check, split_csv as user_import_split_csv};

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// An error already worth one line on stderr.
pub struct Failed(pub String);

impl<E: std::fmt::Display> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed(e.to_string())
    }
}

pub type CliResult = Result<(), Failed>;

#[derive(Parser)]
#[command(name = "vnetd", version, about = "ChinaVNet (互联星空) province node: PassPort, authentication, ordering, charging, centre sync")]
pub struct Cli {
    /// Config file (else $VNETD_CONFIG, else /etc/vnetd/vnetd.toml if it exists, else built-in defaults)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon
    ///
    /// SIGTERM or SIGINT stop it. SIGHUP re-reads the configuration file and applies, without
    /// closing connections: log.level, log.refusal_burst, log.refusal_window_s,
    /// server.max_body_bytes, server.max_connections (up to the worker pool started with the
    /// daemon) and the peer table (read from the database at once). Other keys need a restart;
    /// an invalid file is logged and ignored.
    Run,
    /// Read and validate the configuration, then exit
    CheckConfig,
    /// Exit 0 iff the running daemon answers healthy
    Healthcheck,
    /// Manage peers (SPs, the centre, BSS, AAA, 168) and their keys
    #[command(subcommand)]
    Peer(peer::PeerCmd),
    /// Manage PassPort users
    #[command(subcommand)]
    User(user::UserCmd),
    /// Write an online, consistent copy of the database to FILE
    Backup {
        /// The copy to write (must not exist; written with mode 0600)
        file: PathBuf,
    },
    /// Replace the database with a backup FILE (stop the daemon first)
    ///
    /// Refused while a daemon holds the database lock (<db>.lock). Checks FILE (integrity_check,
    /// a vnetd schema version this binary supports), keeps the replaced database as
    /// <db>.replaced-<UTC time>, and installs the checked copy atomically (mode 0600).
    Restore {
        /// A database written by `vnetd backup`
        file: PathBuf,
    },
    /// Print the Authenticator of a request: Base64(3DES(SHA1(values concatenated)))
    Authenticator(tools::AuthenticatorArgs),
    /// Print the `enc` form of a value (Base64 of 3DES under the key), for Password fields
    Encrypt(tools::EncryptArgs),
    /// Benchmarks: SOAP load (also Charge/Order), any HTTP server, Argon2id, the SQLite commit ceiling, sync to centre-sim
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// The service catalogue: SPs, services, items, packages
    #[command(subcommand)]
    Catalog(catalog::CatalogCmd),
    /// Roaming of services between provinces
    #[command(subcommand)]
    Roam(roam::RoamCmd),
    /// The outbox: what waits for delivery; re-queue dead letters
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
    /// Reconciliation: export one SP's charges of one LedgerDate
    #[command(subcommand)]
    Recon(recon::ReconCmd),
    /// The charge ledger's hash chain: verify it
    #[command(subcommand)]
    Ledger(ledger::LedgerCmd),
    /// The centre simulator: serves the centre's side of the outbound operations (and SPs' OrderNotify) for tests and checks
    #[command(name = "centre-sim")]
    CentreSim(centre_sim::CentreSimArgs),
}

pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, Failed> {
    let cfg = Config::load(path).map_err(Failed)?;
    // Log lines carry the node's UTC offset (`[node] timezone`).
    if let Some(tz) = crate::clock::parse_utc_offset(&cfg.node.timezone) {
        crate::runtime::logging::set_utc_offset(tz);
    }
    Ok(cfg)
}

/// Open the database named by the config (for operator commands). It must exist: only `run`
/// creates a database, so a command run with the wrong configuration creates nothing.
pub fn open_store(cfg: &Config) -> Result<crate::store::Store, Failed> {
    let path = &cfg.storage.path;
    crate::store::Store::open_existing(path).map_err(|e| match e {
        crate::store::DbError::Missing(_) => Failed(no_database(path)),
        e => Failed(format!("cannot open database {}: {e}", path.display())),
    })
}

/// The refusal of a command that needs an existing database.
pub fn no_database(path: &std::path::Path) -> String {
    format!("no database at {}; is --config right?", path.display())
}

pub fn dispatch(cli: Cli) -> CliResult {
    let path = cli.config.as_deref();
    match cli.cmd {
        Cmd::Run => run::run(load_config(path)?),
        Cmd::CheckConfig => {
            let cfg = load_config(path)?;
            crate::soap::client::TlsRoots::load(&cfg.tls.ca_file)?;
            if cfg.tls.inbound() {
                crate::api::server::tls::load(&cfg.tls.cert_file, &cfg.tls.key_file)?;
            }
            match &cfg.source {
                Some(p) => println!("configuration {} is valid", p.display()),
                None => println!("no configuration file; built-in defaults are valid"),
            }
            Ok(())
        }
        Cmd::Healthcheck => run::healthcheck(&load_config(path)?),
        Cmd::Peer(c) => peer::run(&load_config(path)?, c),
        Cmd::User(c) => user::run(&load_config(path)?, c),
        Cmd::Backup { file } => backup::run(&load_config(path)?, &file),
        Cmd::Restore { file } => restore::run(&load_config(path)?, &file),
        Cmd::Authenticator(a) => tools::authenticator(a),
        Cmd::Encrypt(a) => tools::encrypt(a),
        Cmd::Bench(c) => bench::run(c),
        Cmd::Catalog(c) => catalog::run(&load_config(path)?, c),
        Cmd::Recon(c) => recon::run(&load_config(path)?, c),
        Cmd::Ledger(c) => ledger::run(&load_config(path)?, c),
        Cmd::Roam(c) => roam::run(&load_config(path)?, c),
        Cmd::Outbox(c) => outbox::run(&load_config(path)?, c),
        Cmd::CentreSim(a) => centre_sim::run(a),
    }
}

/// Print rows tab-separated with a header row (spec 11 listings).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", header.join("\t"));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace(['\t', '\n'], " ")).collect();
        let _ = writeln!(out, "{}", cells.join("\t"));
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every option and argument of every command has a help line (issue 9).
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "vnetd", &mut missing);
        assert!(missing.is_empty(), "without a help line:\n{}", missing.join("\n"));
    }
}
