//! Shared by the stream_* targets (not a target itself): a provider's stream through its
//! family's decoder into Chat Completions chunks, split at arbitrary points: never a panic,
//! output bounded by the input, nothing after the end.

use gatehouse_providers::chat::{Family, chunk_decoder};

pub fn run(family: Family, data: &[u8]) {
    if data.is_empty() || data.len() > 256 * 1024 {
        return;
    }
    // the first byte picks the chunk size, the rest is the stream
    let chunk = usize::from(data[0]).max(1);
    let Some(mut decoder) = chunk_decoder(family, "req", "model", 1) else { return };
    let mut out = Vec::new();
    let mut events = 0;
    for piece in data[1..].chunks(chunk) {
        decoder.feed(piece, &mut out);
        events += 1;
        if decoder.ended() {
            let after = out.len();
            decoder.feed(piece, &mut out);
            assert_eq!(out.len(), after, "nothing after the end");
            break;
        }
    }
    decoder.end(&mut out);
    assert!(out.len() <= 4 * data.len() + 600 * (events + 4));
}
