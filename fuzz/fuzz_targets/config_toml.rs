//! Config files: parse and validate must never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = gatehouse_config::Config::from_toml(s);
    }
});
