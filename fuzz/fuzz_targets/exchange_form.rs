//! The RFC 8693 token-exchange form from an unauthenticated client: parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gatehouse_proxy::exchange::reads_exchange_form(data);
});
