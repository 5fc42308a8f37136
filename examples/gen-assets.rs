//! Generates the packages' man pages and shell completions from the CLI definition
//! (`vnetd::cli::Cli`), so they never drift from `vnetd --help`.
//!
//!     cargo run --release --example gen-assets -- OUT_DIR
//!
//! writes `OUT_DIR/man/vnetd.1` plus one page per subcommand (`vnetd-peer.1`,
//! `vnetd-peer-add.1`, ...), and `OUT_DIR/completions/{vnetd.bash,_vnetd,vnetd.fish}`.
//! Used by `packaging/build`.

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = match (args.next(), args.next()) {
        (Some(dir), None) => PathBuf::from(dir),
        _ => {
            eprintln!("usage: gen-assets OUT_DIR");
            std::process::exit(2);
        }
    };
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let cmd = vnetd::cli::Cli::command();
    // One page per command and subcommand, section 1: vnetd.1, vnetd-peer.1, vnetd-peer-add.1, ...
    clap_mangen::generate_to(cmd.clone(), &man)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut cmd, "vnetd", &completions)?;
        println!("{}", path.display());
    }
    let mut pages: Vec<_> = std::fs::read_dir(&man)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    pages.sort();
    println!("{} man pages in {}", pages.len(), man.display());
    Ok(())
}
