//! A Bedrock provider's stream (AWS event-stream frames) through its decoder (see stream_decoder.rs).
#![no_main]

#[path = "stream_decoder.rs"]
mod stream_decoder;

use gatehouse_providers::chat::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stream_decoder::run(Family::Bedrock, data));
