//! Presented credentials: the structural check must never panic on any string.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = gatehouse_security::check_format(s);
    }
});
