//! What translating a chat request between API families costs, beside what the same-family
//! path already pays to write the body out again:
//!   baseline:          the OpenAI body (as the gateway holds it) serialised for the provider;
//!   openai_to_anthropic: read into the shape, written as a Messages request, serialised;
//!   anthropic_to_openai: the reverse, for the Messages ingress calling an OpenAI model;
//!   openai_to_gemini, openai_to_bedrock: the route gate's work for those providers;
//!   answer_*:          a whole answer read in one family and written in the other.
//! Run: cargo bench -p gatehouse-providers --bench translate

#![expect(clippy::expect_used, reason = "benchmark setup: a failure must stop the run")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_providers::chat::{Family, anthropic, openai, request_for};
use serde_json::{Map, Value, json};

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// About 1 KiB: a system prompt, three turns, one tool call and its answer, one tool.
fn openai_request() -> Map<String, Value> {
    let long = "Summarise the quarterly figures below in three bullet points for the board. ".repeat(6);
    object(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a careful analyst. Answer briefly and cite the table row."},
            {"role": "user", "content": long},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"quarter\":\"Q3\",\"table\":\"revenue\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Q3 revenue 12.4M, up 8% on Q2"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "read a table row",
            "parameters": {"type": "object", "properties": {"quarter": {"type": "string"}, "table": {"type": "string"}}}}}],
        "max_tokens": 400,
        "temperature": 0.2,
    }))
}

fn bench(c: &mut Criterion) {
    let oa = openai_request();
    let shape = openai::request_from(&oa).expect("reads");
    let an = anthropic::request_to(&shape, "claude-x").expect("writes");
    c.bench_function("baseline_reserialise", |b| b.iter(|| serde_json::to_vec(black_box(&oa))));
    c.bench_function("openai_to_anthropic", |b| {
        b.iter(|| {
            let r = openai::request_from(black_box(&oa)).expect("reads");
            serde_json::to_vec(&anthropic::request_to(&r, "claude-x").expect("writes"))
        });
    });
    for (name, family) in [("openai_to_gemini", Family::Gemini), ("openai_to_bedrock", Family::Bedrock)] {
        c.bench_function(name, |b| {
            b.iter(|| serde_json::to_vec(&request_for(black_box(&oa), None, family, "m").expect("writes")));
        });
    }
    c.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            let r = anthropic::request_from(black_box(&an)).expect("reads");
            serde_json::to_vec(&openai::request_to(&r, "gpt-4o").expect("writes"))
        });
    });
    let answer = object(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Revenue rose 8% quarter on quarter to 12.4M. ".repeat(4)}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 310, "output_tokens": 48},
    }));
    c.bench_function("answer_anthropic_to_openai", |b| {
        b.iter(|| {
            let r = anthropic::response_from(black_box(&answer)).expect("reads");
            serde_json::to_vec(&openai::response_to(&r, 1_700_000_000).expect("writes"))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
