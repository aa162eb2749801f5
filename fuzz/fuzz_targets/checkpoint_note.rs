//! Audit checkpoints from untrusted files: the bounded parser must never panic.
#![no_main]

use gatehouse_security::checkpoint::CheckpointVerifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = CheckpointVerifier::new("gatehouse/audit", [7; 32]).verify(s);
    }
});
