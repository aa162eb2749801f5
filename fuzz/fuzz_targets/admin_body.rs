//! Control-plane request bodies: the strict reading (size, depth, unknown fields) into every
//! body type and the store-free spec checks must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gatehouse_admin::body::reads_admin_body(data);
});
