//! Caveat predicates from a token (one per line here): parsing and folding must never panic,
//! and a parent can be compared with any child.
#![no_main]

use gatehouse_tokens::{Caveat, Folded, check_not_wider};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').take(64).collect();
    let parsed: Vec<Caveat> = lines.iter().filter_map(|l| Caveat::parse(l).ok()).collect();
    if let Ok(parent) = Folded::fold(lines.iter().copied()) {
        let _ = check_not_wider(&parent, &parsed);
        let _ = parent.min_budget();
        let _ = parent.min_rpm();
    }
});
