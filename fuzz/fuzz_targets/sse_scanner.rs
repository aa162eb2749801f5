//! Provider SSE streams, split at arbitrary points: never a panic, never an event over the cap.
#![no_main]

use gatehouse_providers::{SseEvent, SseScanner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() || data.len() > 256 * 1024 {
        return;
    }
    // the first byte picks the chunk size, the rest is the stream
    let chunk = usize::from(data[0]).max(1);
    let mut scanner = SseScanner::new(4096);
    for piece in data[1..].chunks(chunk) {
        let ok = scanner.feed(piece, |e| {
            if let SseEvent::Data(d) = e {
                assert!(d.len() <= 4096);
                let _ = gatehouse_providers::usage_from_chunk(d);
            }
        });
        if ok.is_err() {
            break;
        }
    }
});
