//! vnetd — the ChinaVNet (互联星空) province node. CLI parsing and dispatch only.

mod app;
mod cli;
mod clock;
mod config;
mod crypto;
mod domain;
mod http;
mod ops;
mod ops_support;
mod outbox;
mod services;
mod soap;
mod store;

use clap::Parser;

fn main() {
    ops_support::logging::init_stderr(log::LevelFilter::Info);
    let args = cli::Cli::parse();
    let code = match cli::dispatch(args) {
        Ok(()) => 0,
        Err(cli::Failed(msg)) => {
            if !msg.is_empty() {
                eprintln!("vnetd: {msg}");
            }
            1
        }
    };
    std::process::exit(code);
}
