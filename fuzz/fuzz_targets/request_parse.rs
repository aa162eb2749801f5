//! Data-plane request bodies: parse must never panic and must respect its bounds.
#![no_main]

use gatehouse_providers::{ApiRequest, Endpoint, RequestBounds};
use libfuzzer_sys::fuzz_target;

const BOUNDS: RequestBounds = RequestBounds { max_depth: 32, max_messages: 64, max_embedding_inputs: 64 };

fuzz_target!(|data: &[u8]| {
    if data.len() > 256 * 1024 {
        return;
    }
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Embeddings] {
        if let Ok(req) = ApiRequest::parse(endpoint, data, BOUNDS) {
            assert!(req.item_count <= 64);
            let _ = req.into_upstream_body("m");
        }
    }
});
