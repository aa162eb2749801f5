//! Presented JWTs (header, unverified issuer, claims) and JWKS documents from an issuer: the
//! parsers in front of signature checking must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let _ = gatehouse_oidc::usable_keys(data);
    if let Ok(s) = std::str::from_utf8(data) {
        gatehouse_oidc::read_untrusted_token(s);
    }
});
