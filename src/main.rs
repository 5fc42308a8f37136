//! vnetd — the ChinaVNet (互联星空) province node. CLI parsing and dispatch only.

use clap::Parser;
use vnetd::{cli, runtime};

fn main() {
    runtime::logging::init_stderr(log::LevelFilter::Info);
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
