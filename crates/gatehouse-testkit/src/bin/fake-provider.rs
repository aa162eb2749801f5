//! `fake-provider`: the test upstream as a process, for load runs and the Python suite.
//! Usage: fake-provider [ADDR] [STREAM_CHUNKS] [CHUNK_DELAY_MS]   (default 127.0.0.1:0 8 0)
//! With a delay, every streamed chunk waits that long (a model producing tokens), for
//! time-to-first-token measurements.
//! Prints `listening on http://ADDR/v1` once bound.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let chunks = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let delay_ms: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
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
        if delay_ms > 0 {
            fake.set(gatehouse_testkit::Behavior::SlowStream(std::time::Duration::from_millis(delay_ms)));
        }
        let _ = writeln!(std::io::stdout(), "listening on {}", fake.base_url());
        let _ = std::io::stdout().flush();
        let _ = tokio::signal::ctrl_c().await;
        std::process::ExitCode::SUCCESS
    })
}
