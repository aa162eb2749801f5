//! A Gemini provider's stream (SSE events) through its decoder (see stream_decoder.rs).
#![no_main]

#[path = "stream_decoder.rs"]
mod stream_decoder;

use gatehouse_providers::chat::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stream_decoder::run(Family::Gemini, data));
