//! `fake-provider`: the test upstream as a process, for load runs and the Python suite.
//! Usage: fake-provider [ADDR] [STREAM_CHUNKS]   (default 127.0.0.1:0 8)
//! Prints `listening on http://ADDR/v1` once bound.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let chunks = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    // A small runtime: the fake should not compete with the gateway for the machine's cores.
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(r) => r,
        Err(_) => return std::process::ExitCode::FAILURE,
    };
    rt.block_on(async move {
        let fake = match gatehouse_testkit::FakeProvider::spawn_on(&addr, chunks).await {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "cannot listen on {addr}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let _ = writeln!(std::io::stdout(), "listening on {}", fake.base_url());
        let _ = std::io::stdout().flush();
        let _ = tokio::signal::ctrl_c().await;
        std::process::ExitCode::SUCCESS
    })
}
