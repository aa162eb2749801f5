//! Capability tokens as presented (text, binary and JSON forms): bounded decoding must never
//! panic, and whatever decodes re-encodes.
#![no_main]

use gatehouse_tokens::macaroon::{Encoding, Limits, Macaroon};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(m) = Macaroon::from_binary(data, &limits) {
        let _ = m.encode(Encoding::Base64Url);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(m) = Macaroon::decode(s, &limits) {
            let _ = m.to_json();
        }
        let _ = Macaroon::from_json(s, &limits);
    }
});
