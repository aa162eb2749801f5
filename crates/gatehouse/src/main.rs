//! `gatehouse`: the binary. Parses the command line and wires the crates together; it holds
//! no policy of its own.

mod advisories;
mod audit_cmd;
mod backup_cmd;
mod cli;
mod client;
mod credentials_cmd;
mod doctor;
mod guardrails_cmd;
mod keyring;
mod master_key_cmd;
mod mcp_cmd;
mod otel;
mod profile;
mod recover_cmd;
mod reload;
mod serve;
mod token_cmd;

use clap::Parser;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // One crypto provider for every TLS user in the process (reqwest/rustls); installing it
    // explicitly avoids a panic if a dependency ever enables a second one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return cli::fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(cli::run(cli))
}
