use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// An OpenAI conversation with every part the shape models: system, text, an inline image, a
/// tool call and its answer, tools and a forced choice.
fn openai_agent_turn() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is in this picture, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "4 °C, rain"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "forecast",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
        "max_tokens": 300,
        "temperature": 0.5,
        "stop": "END",
        "stream": true,
        "user": "u-42",
    })
}

#[test]
fn an_openai_agent_turn_reads_as_anthropic_writes_it() {
    let r = openai::request_from(&obj(openai_agent_turn())).unwrap();
    let a = Value::Object(anthropic::request_to(&r, "claude-sonnet-4-5").unwrap());
    assert_eq!(a["model"], "claude-sonnet-4-5");
    assert_eq!(a["max_tokens"], 300);
    assert_eq!(a["system"], "be brief");
    assert_eq!(
        a["messages"][0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(
        a["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(
        a["messages"][2],
        json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "4 °C, rain"}]})
    );
    assert_eq!(a["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
    assert_eq!(a["tool_choice"], json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true}));
    assert_eq!((a["stop_sequences"].clone(), a["metadata"].clone()), (json!(["END"]), json!({"user_id": "u-42"})));
    assert_eq!((a["stream"].clone(), a["temperature"].clone()), (json!(true), json!(0.5)));
    assert!(a.get("stream_options").is_none() && a.get("user").is_none());
}

#[test]
fn an_anthropic_agent_turn_reads_as_openai_writes_it() {
    let body = json!({
        "model": "claude-x", "max_tokens": 64,
        "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "weather in Oslo?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "4 °C"}]}, {"type": "text", "text": "and tomorrow?"}]},
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "metadata": {"user_id": "u-7"},
        "stream": true,
    });
    let r = anthropic::request_from(&obj(body)).unwrap();
    assert!(r.system[0].cache, "the caching mark is read");
    let o = Value::Object(openai::request_to(&r, "gpt-4o").unwrap());
    assert_eq!(o["messages"][0], json!({"role": "system", "content": "rules"}));
    assert_eq!(o["messages"][1], json!({"role": "user", "content": "weather in Oslo?"}));
    assert_eq!(o["messages"][2]["content"], "Checking.");
    assert_eq!(
        o["messages"][2]["tool_calls"][0]["function"],
        json!({"name": "weather", "arguments": "{\"city\":\"Oslo\"}"})
    );
    assert_eq!(o["messages"][3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "4 °C"}));
    assert_eq!(o["messages"][4], json!({"role": "user", "content": "and tomorrow?"}));
    assert_eq!(o["tool_choice"], "required");
    assert_eq!((o["max_completion_tokens"].clone(), o["user"].clone()), (json!(64), json!("u-7")));
    assert_eq!(o["stream_options"], json!({"include_usage": true}), "metering needs the counts");
}

#[test]
fn what_the_target_cannot_honour_is_refused_by_name() {
    let with = |extra: Value| {
        let mut b = obj(openai_agent_turn());
        b.extend(obj(extra));
        openai::request_from(&b).and_then(|r| anthropic::request_to(&r, "c"))
    };
    assert_eq!(with(json!({"n": 2})).unwrap_err(), Error::Unsupported("n"));
    assert!(with(json!({"n": 1})).is_ok(), "the default choice count is no extra");
    assert_eq!(with(json!({"logit_bias": {"50256": -100}})).unwrap_err(), Error::Unsupported("logit_bias"));
    assert_eq!(
        with(json!({"response_format": {"type": "json_object"}})).unwrap_err(),
        Error::Unsupported("response_format")
    );
    assert_eq!(with(json!({"x-my-secret-field": 1})).unwrap_err(), Error::Unsupported("unknown_field"), "no echo");
    assert_eq!(with(json!({"temperature": 1.5})).unwrap_err(), Error::Unsupported("temperature"));
    // ...while the same family keeps its own fields
    let r = openai::request_from(&obj(json!({"model": "m", "messages": [], "seed": 7, "n": 3}))).unwrap();
    let o = openai::request_to(&r, "m").unwrap();
    assert_eq!((o["seed"].clone(), o["n"].clone()), (json!(7), json!(3)));

    let anth = |extra: Value| {
        let mut b = obj(json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}));
        b.extend(obj(extra));
        anthropic::request_from(&b).and_then(|r| openai::request_to(&r, "m"))
    };
    assert_eq!(anth(json!({"top_k": 5})).unwrap_err(), Error::Unsupported("top_k"));
    assert_eq!(
        anth(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})).unwrap_err(),
        Error::Unsupported("thinking")
    );
    let tool_error = json!({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": true}]}]});
    assert_eq!(anth(tool_error).unwrap_err(), Error::Unsupported("is_error"));
    let image_result = json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}]}]}]});
    assert_eq!(anth(image_result).unwrap_err(), Error::Unsupported("tool_result"));
    let thinking = json!({"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "..."}]}]});
    assert_eq!(anth(thinking).unwrap_err(), Error::Unsupported("content"));

    // inexpressible in the shape at all
    let o = |m: Value| openai::request_from(&obj(json!({"model": "m", "messages": m})));
    assert_eq!(
        o(json!([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])).unwrap_err(),
        Error::Unsupported("messages")
    );
    assert_eq!(o(json!([{"role": "user", "content": "a", "name": "bob"}])).unwrap_err(), Error::Unsupported("name"));
    let detail = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}}]}]);
    assert_eq!(o(detail).unwrap_err(), Error::Unsupported("detail"));
}

#[test]
fn malformed_requests_name_the_field() {
    let o = |b: Value| openai::request_from(&obj(b)).unwrap_err();
    assert_eq!(o(json!({"messages": []})), Error::Field("model"));
    assert_eq!(o(json!({"model": "m"})), Error::Field("messages"));
    assert_eq!(o(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})), Error::Field("role"));
    assert_eq!(o(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})), Error::Field("tool_call_id"));
    assert_eq!(o(json!({"model": "m", "messages": [], "stop": 5})), Error::Field("stop"));
    assert_eq!(o(json!({"model": "m", "messages": [], "temperature": "hot"})), Error::Field("temperature"));
    let a = |b: Value| anthropic::request_from(&obj(b)).unwrap_err();
    assert_eq!(a(json!({"model": "c", "messages": []})), Error::Field("max_tokens"), "required, as the API does");
    assert_eq!(
        a(json!({"model": "c", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]})),
        Error::Field("role")
    );
    let misplaced = json!({"model": "c", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]});
    assert_eq!(a(misplaced), Error::Unsupported("content"));
    assert_eq!(
        a(json!({"model": "c", "max_tokens": 1, "messages": [], "metadata": {"email": "x"}})),
        Error::Field("metadata")
    );
}

#[test]
fn answers_translate_both_ways_with_every_input_token_counted() {
    let anthropic_answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5},
    });
    let r = anthropic::response_from(&obj(anthropic_answer)).unwrap();
    assert_eq!(r.usage, TokenUsage { prompt: 115, completion: 20, cache_read: 100, cache_write: 5 });
    assert_eq!(crate::Usage::from(r.usage).cached_tokens, 100);
    let o = openai::response_to(&r, 1_700_000_000).unwrap();
    assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(o["choices"][0]["message"]["content"], "Let me check.");
    assert_eq!(o["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(
        o["usage"],
        json!({"prompt_tokens": 115, "completion_tokens": 20, "total_tokens": 135,
                                  "prompt_tokens_details": {"cached_tokens": 100}})
    );

    let openai_answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 10}}});
    let r = openai::response_from(&obj(openai_answer)).unwrap();
    let a = anthropic::response_to(&r).unwrap();
    assert_eq!(
        (a["stop_reason"].clone(), a["content"].clone()),
        (json!("max_tokens"), json!([{"type": "text", "text": "hi"}]))
    );
    assert_eq!(
        a["usage"],
        json!({"input_tokens": 20, "output_tokens": 2, "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 10})
    );
    // an answer that is not what the API documents is the provider's failure
    assert_eq!(openai::response_from(&obj(json!({"choices": []}))).unwrap_err(), Error::Answer("choices"));
    assert_eq!(
        anthropic::response_from(&obj(json!({"content": [{"type": "x"}]}))).unwrap_err(),
        Error::Answer("content")
    );
}

// Generated conversations both families can express, to check that a request survives being
// written and read again in either family unchanged.

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ]{0,12}"
}

fn text(cache: bool) -> impl Strategy<Value = Text> {
    (word(), Just(cache)).prop_map(|(text, cache)| Text { text, cache })
}

fn image() -> impl Strategy<Value = Image> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|p| Image::Url(format!("https://img.example/{p}.png"))),
        "[A-Za-z0-9+/]{4,16}".prop_map(|data| Image::Base64 { media_type: "image/png".into(), data }),
    ]
}

fn arguments() -> impl Strategy<Value = String> {
    proptest::collection::btree_map("[a-z]{1,5}", 0i64..100, 0..3).prop_map(|m| {
        serde_json::to_string(&m.into_iter().map(|(k, v)| (k, Value::from(v))).collect::<Map<String, Value>>())
            .unwrap_or_default()
    })
}

fn message(cache: bool) -> impl Strategy<Value = Message> {
    let user_content =
        proptest::collection::vec(prop_oneof![text(cache).prop_map(Part::Text), image().prop_map(Part::Image)], 1..3);
    let results = proptest::collection::vec(
        ("[a-z0-9_]{1,8}", proptest::collection::vec(text(false).prop_map(Part::Text), 1..3))
            .prop_map(|(call_id, content)| Part::ToolResult { call_id, content, is_error: false }),
        1..3,
    );
    let assistant = (
        proptest::collection::vec(text(cache).prop_map(Part::Text), 0..2),
        proptest::collection::vec(
            ("[a-z0-9_]{1,8}", "[a-z]{1,8}", arguments()).prop_map(|(id, name, arguments)| Part::ToolCall {
                id,
                name,
                arguments,
            }),
            0..2,
        ),
    )
        .prop_filter("an assistant turn says something", |(t, c)| !t.is_empty() || !c.is_empty())
        .prop_map(|(mut t, c)| {
            t.extend(c);
            t
        });
    prop_oneof![
        user_content.prop_map(|parts| Message { role: Role::User, parts }),
        results.prop_map(|parts| Message { role: Role::User, parts }),
        assistant.prop_map(|parts| Message { role: Role::Assistant, parts }),
    ]
}

fn request(family: Family, cache: bool) -> impl Strategy<Value = ChatRequest> {
    let choice = prop_oneof![
        Just(ToolChoice::Auto),
        Just(ToolChoice::None),
        Just(ToolChoice::Required),
        "[a-z]{1,6}".prop_map(ToolChoice::Tool)
    ];
    (
        proptest::collection::vec(text(cache), 0..2),
        proptest::collection::vec(message(cache), 0..5),
        proptest::collection::vec(("[a-z]{1,6}", proptest::option::of(word())), 0..2),
        proptest::option::of(choice),
        (proptest::option::of(any::<bool>()), 1u64..10_000, proptest::option::of(0u8..=10)),
        (proptest::collection::vec(word(), 0..2), any::<bool>(), proptest::option::of("[a-z0-9-]{1,8}")),
    )
        .prop_map(move |(system, messages, tools, tool_choice, (parallel, max, temp), (stop, stream, user))| {
            ChatRequest {
                model: "m".into(),
                system,
                messages: merge_tool_answers(messages),
                tools: tools
                    .into_iter()
                    .map(|(name, description)| Tool { name, description, parameters: json!({"type": "object"}) })
                    .collect(),
                tool_choice,
                parallel_tool_calls: parallel,
                max_output: Some(max),
                temperature: temp.map(|t| f64::from(t) / 10.0),
                top_p: None,
                top_k: None,
                stop,
                stream,
                user,
                extra: Extra::new(family),
            }
        })
}

/// Consecutive turns of tool answers are one turn, and so is what the user says right after
/// them (OpenAI writes each answer and the user's words as messages of their own, so reading
/// cannot tell them apart).
fn merge_tool_answers(messages: Vec<Message>) -> Vec<Message> {
    let answers = |m: &Message| m.role == Role::User && m.parts.iter().all(|p| matches!(p, Part::ToolResult { .. }));
    let mut out: Vec<Message> = Vec::new();
    for m in messages {
        match out.last_mut() {
            Some(last) if answers(last) && m.role == Role::User => last.parts.extend(m.parts),
            _ => out.push(m),
        }
    }
    out
}

/// What reading gives back for a tool choice that was only a parallel-call setting.
fn as_anthropic_reads(mut r: ChatRequest) -> ChatRequest {
    if r.tool_choice.is_none() && r.parallel_tool_calls.is_some() {
        r.tool_choice = Some(ToolChoice::Auto);
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_request_survives_openai_and_back(r in request(Family::OpenAi, false)) {
        let written = openai::request_to(&r, "m").unwrap();
        let mut back = openai::request_from(&written).unwrap();
        back.extra.fields.remove("stream_options");
        prop_assert_eq!(back, r);
    }

    #[test]
    fn a_request_survives_anthropic_and_back(r in request(Family::Anthropic, true)) {
        let written = anthropic::request_to(&r, "m").unwrap();
        let back = anthropic::request_from(&written).unwrap();
        prop_assert_eq!(back, as_anthropic_reads(r));
    }

    #[test]
    fn a_request_survives_the_trip_across_families(r in request(Family::OpenAi, false)) {
        // OpenAI -> shape -> Anthropic -> shape -> OpenAI writes what OpenAI wrote first
        let shape = openai::request_from(&openai::request_to(&r, "m").unwrap()).unwrap();
        let across = anthropic::request_from(&anthropic::request_to(&shape, "m").unwrap()).unwrap();
        let back = openai::request_to(&ChatRequest { extra: Extra::new(Family::OpenAi), ..across }, "m").unwrap();
        prop_assert_eq!(back, openai::request_to(&as_anthropic_reads(r), "m").unwrap());
    }

    #[test]
    fn readers_never_panic_on_any_json(v in arbitrary_json()) {
        if let Value::Object(o) = v {
            let _ = openai::request_from(&o);
            let _ = anthropic::request_from(&o);
            let _ = openai::response_from(&o);
            let _ = anthropic::response_from(&o);
        }
    }

    #[test]
    fn readers_never_panic_on_near_misses(r in request(Family::OpenAi, false), cut in any::<prop::sample::Index>()) {
        // a valid request with one value somewhere replaced by null
        let mut v = Value::Object(openai::request_to(&r, "m").unwrap());
        let mut paths = Vec::new();
        collect_paths(&v, String::new(), &mut paths);
        if !paths.is_empty()
            && let Some(slot) = v.pointer_mut(&paths[cut.index(paths.len())])
        {
            *slot = Value::Null;
        }
        if let Value::Object(o) = v
            && let Ok(shape) = openai::request_from(&o)
        {
            let _ = anthropic::request_to(&shape, "m");
        }
    }
}

fn collect_paths(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                collect_paths(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                collect_paths(c, p, out);
            }
        }
        _ => {}
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("tool"),
            Just("text"),
            Just("tool_use"),
            Just("tool_result"),
            Just("image_url"),
            Just("function")
        ]
        .prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("model".to_owned()),
                        Just("messages".to_owned()),
                        Just("role".to_owned()),
                        Just("content".to_owned()),
                        Just("type".to_owned()),
                        Just("choices".to_owned()),
                        Just("message".to_owned()),
                        Just("tool_calls".to_owned()),
                        Just("function".to_owned()),
                        Just("max_tokens".to_owned()),
                        "[a-z_]{1,6}"
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The (event, data) pairs of Anthropic frames.
fn frames(out: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(out)
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (event, data) = f.split_once('\n').unwrap_or_default();
            let data = data.strip_prefix("data: ").unwrap_or_default();
            (event.trim_start_matches("event: ").to_owned(), serde_json::from_str(data).unwrap_or(Value::Null))
        })
        .collect()
}

#[test]
fn an_openai_stream_is_written_as_messages_events() {
    let chunks = [
        json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "Let me "}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "check."}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"ci"}}]}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "ty\":\"Oslo\"}"}}]}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 9,
               "prompt_tokens_details": {"cached_tokens": 30}}}),
    ];
    let mut w = anthropic::MessagesStream::new("req", "fallback");
    let mut out = Vec::new();
    for c in &chunks {
        w.chunk(&serde_json::to_vec(c).unwrap(), &mut out).unwrap();
    }
    w.finish(&mut out);
    w.finish(&mut out);
    let f = frames(&out);
    let names: Vec<&str> = f.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(f.iter().all(|(e, d)| d["type"] == e.as_str()), "each frame's data names its event");
    assert_eq!(
        (f[0].1["message"]["id"].clone(), f[0].1["message"]["model"].clone()),
        (json!("chatcmpl-1"), json!("gpt-4o"))
    );
    assert_eq!(f[4].1["delta"], json!({"type": "text_delta", "text": "check."}));
    assert_eq!(f[6].1["content_block"], json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}));
    assert_eq!((f[6].1["index"].clone(), f[8].1["delta"]["partial_json"].clone()), (json!(1), json!("ty\":\"Oslo\"}")));
    assert_eq!(f[10].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(f[10].1["usage"], json!({"output_tokens": 9, "input_tokens": 10, "cache_read_input_tokens": 30}));
}

/// The output guardrail holds an answer back and releases text and every call's arguments in
/// one final chunk, after the calls were announced: blocks still come one after another, each
/// call's arguments in its own block.
#[test]
fn text_and_arguments_released_together_become_blocks_in_order() {
    let head = |i: u64, id: &str| {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": i, "id": id, "type": "function", "function": {"name": format!("tool{i}"), "arguments": ""}}]}}]})
    };
    let release = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {"content": "Checking.",
        "tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}, {"index": 1, "function": {"arguments": "{}"}}]}}]});
    let mut w = anthropic::MessagesStream::new("r", "m");
    let mut out = Vec::new();
    for c in [head(0, "call_a"), head(1, "call_b"), release] {
        w.chunk(&serde_json::to_vec(&c).unwrap(), &mut out).unwrap();
    }
    w.finish(&mut out);
    let f = frames(&out);
    let blocks: Vec<Value> =
        f.iter().filter(|(e, _)| e == "content_block_start").map(|(_, d)| d["content_block"].clone()).collect();
    assert_eq!(
        blocks,
        [
            json!({"type": "text", "text": ""}),
            json!({"type": "tool_use", "id": "call_a", "name": "tool0", "input": {}}),
            json!({"type": "tool_use", "id": "call_b", "name": "tool1", "input": {}})
        ]
    );
    let deltas: Vec<(u64, Value)> = f
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .map(|(_, d)| (d["index"].as_u64().unwrap(), d["delta"].clone()))
        .collect();
    assert_eq!(
        deltas,
        [
            (0, json!({"type": "text_delta", "text": "Checking."})),
            (1, json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"})),
            (2, json!({"type": "input_json_delta", "partial_json": "{}"}))
        ]
    );
    // text after a call's arguments started waits for its block to close
    let mut w = anthropic::MessagesStream::new("r", "m");
    let mut out = Vec::new();
    let args = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "t", "arguments": "{"}}]}}]});
    let mixed = json!({"choices": [{"index": 0, "delta": {"content": "later", "tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}}]});
    for c in [args, mixed] {
        w.chunk(&serde_json::to_vec(&c).unwrap(), &mut out).unwrap();
    }
    w.finish(&mut out);
    let starts: Vec<String> = frames(&out)
        .iter()
        .filter(|(e, _)| e == "content_block_start")
        .map(|(_, d)| d["content_block"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(starts, ["tool_use", "text"]);
    // arguments for a call that was never announced are the provider's failure
    let orphan =
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 3, "function": {"arguments": "{}"}}]}}]});
    let mut w = anthropic::MessagesStream::new("r", "m");
    assert_eq!(w.chunk(&serde_json::to_vec(&orphan).unwrap(), &mut Vec::new()), Err(Error::Answer("stream")));
}

#[test]
fn a_cut_or_empty_stream_still_ends_as_the_messages_api_ends_one() {
    let mut w = anthropic::MessagesStream::new("req", "m");
    let mut out = Vec::new();
    w.chunk(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}"#, &mut out).unwrap();
    w.chunk(br#"{"error":{"message":"the provider went quiet","type":"upstream_timeout"}}"#, &mut out).unwrap();
    w.finish(&mut out);
    let names: Vec<String> = frames(&out).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        names,
        ["message_start", "ping", "content_block_start", "content_block_delta", "error"],
        "nothing after the error"
    );
    let mut w = anthropic::MessagesStream::new("req", "m");
    let mut out = Vec::new();
    w.finish(&mut out);
    let names: Vec<String> = frames(&out).into_iter().map(|(e, _)| e).collect();
    assert_eq!(names, ["message_start", "ping", "message_delta", "message_stop"]);
    assert_eq!(anthropic::MessagesStream::new("r", "m").chunk(b"{oops", &mut Vec::new()), Err(Error::Answer("stream")));
}

proptest! {
    #[test]
    fn both_stream_writers_never_panic_and_stay_proportional(chunks in proptest::collection::vec(arbitrary_json(), 0..12)) {
        let (mut messages, mut chat) = (anthropic::MessagesStream::new("r", "m"), anthropic::EventDecoder::new(openai::ChunkStream::new("r", "m", 1)));
        let (mut out_m, mut out_c) = (Vec::new(), Vec::new());
        let mut fed = 0;
        for c in &chunks {
            let data = serde_json::to_vec(c).unwrap();
            fed += data.len();
            let _ = messages.chunk(&data, &mut out_m);
            let _ = chat.event(&data, &mut out_c);
        }
        messages.finish(&mut out_m);
        chat.end(&mut out_c);
        // a few frames per event at most, each a constant plus what the event carried
        for out in [&out_m, &out_c] {
            prop_assert!(out.len() <= 4 * fed + 600 * (chunks.len() + 3), "{} bytes out of {}", out.len(), fed);
        }
    }
}

/// What a client makes of an OpenAI stream: text, tool calls (id, name, arguments), finish
/// reason, usage.
fn accumulate(frames: &str) -> (String, Vec<(String, String, String)>, String, Value) {
    let (mut text, mut calls, mut finish, mut usage) =
        (String::new(), Vec::<(String, String, String)>::new(), String::new(), Value::Null);
    for f in frames.split("\n\n").filter(|f| f.starts_with("data: {")) {
        let v: Value = serde_json::from_str(&f[6..]).unwrap();
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
        let Some(c) = v["choices"].get(0) else { continue };
        text.push_str(c["delta"]["content"].as_str().unwrap_or_default());
        for t in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = usize::try_from(t["index"].as_u64().unwrap()).unwrap();
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            if let Some(id) = t["id"].as_str() {
                calls[i].0 = id.to_owned();
                calls[i].1 = t["function"]["name"].as_str().unwrap().to_owned();
            }
            calls[i].2.push_str(t["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(r) = c["finish_reason"].as_str() {
            r.clone_into(&mut finish);
        }
    }
    (text, calls, finish, usage)
}

#[test]
fn a_stream_survives_the_trip_to_messages_events_and_back() {
    let chunks = [
        json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me "}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "check."}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"ci"}}]}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\":1}"}}]}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49,
               "prompt_tokens_details": {"cached_tokens": 30}}}),
    ];
    let mut original = String::new();
    let mut m = anthropic::MessagesStream::new("r", "m");
    let mut events = Vec::new();
    for c in &chunks {
        original.push_str(&format!("data: {c}\n\n"));
        m.chunk(&serde_json::to_vec(c).unwrap(), &mut events).unwrap();
    }
    m.finish(&mut events);
    let mut back = anthropic::EventDecoder::new(openai::ChunkStream::new("r", "m", 1));
    let mut out = Vec::new();
    for (_, data) in frames(&events) {
        back.event(&serde_json::to_vec(&data).unwrap(), &mut out).unwrap();
    }
    assert!(back.ended(), "message_stop ends it");
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with("data: [DONE]\n\n"));
    let (want, got) = (accumulate(&original), accumulate(&out));
    assert_eq!((got.0, got.1, got.2), (want.0, want.1, want.2));
    assert_eq!((got.3["prompt_tokens"].clone(), got.3["completion_tokens"].clone()), (json!(40), json!(9)));
    assert_eq!(got.3["prompt_tokens_details"]["cached_tokens"], 30);
}

#[test]
fn messages_events_that_break_the_protocol_are_the_providers_failure() {
    let mut s = anthropic::EventDecoder::new(openai::ChunkStream::new("r", "m", 1));
    let mut out = Vec::new();
    let delta =
        json!({"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "{}"}});
    assert_eq!(
        s.event(&serde_json::to_vec(&delta).unwrap(), &mut out),
        Err(Error::Answer("stream")),
        "no such tool block"
    );
    assert_eq!(s.event(br#"{"type":"mystery"}"#, &mut out), Err(Error::Answer("stream")));
    s.event(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, &mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).contains("\"error\"") && s.ended());
}

// Gemini, as a provider.

/// An OpenAI agent turn as a Gemini provider gets it (no `parallel_tool_calls` or `user`:
/// Gemini has no place for them).
fn gemini_request() -> Map<String, Value> {
    let mut turn = obj(openai_agent_turn());
    turn.remove("parallel_tool_calls");
    turn.remove("user");
    request_for(&turn, None, Family::Gemini, "gemini-2.5-flash").unwrap()
}

#[test]
fn an_openai_agent_turn_is_written_as_gemini_contents() {
    let g = Value::Object(gemini_request());
    assert!(g.get("model").is_none() && g.get("stream").is_none(), "the model and streaming are in the URL");
    assert_eq!(g["systemInstruction"], json!({"parts": [{"text": "be brief"}]}));
    let contents = g["contents"].as_array().unwrap();
    let roles: Vec<&str> = contents.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(contents[0]["parts"][1], json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}));
    assert_eq!(
        contents[1]["parts"][0]["functionCall"],
        json!({"id": "call_1", "name": "weather", "args": {"city": "Oslo"}})
    );
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"id": "call_1", "name": "weather", "response": {"content": "4 °C, rain"}}),
        "a tool result is answered by the name of the call it answers"
    );
    let decl = &g["tools"][0]["functionDeclarations"][0];
    assert_eq!((decl["name"].as_str(), decl["description"].as_str()), (Some("weather"), Some("forecast")));
    assert_eq!(decl["parametersJsonSchema"]["properties"]["city"]["type"], "string");
    assert_eq!(g["toolConfig"]["functionCallingConfig"], json!({"mode": "ANY", "allowedFunctionNames": ["weather"]}));
}

#[test]
fn sampling_parameters_become_a_generation_config() {
    let body = obj(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "temperature": 1.5,
        "top_p": 0.9, "max_completion_tokens": 77, "stop": ["END"], "tool_choice": "required"}));
    let g = Value::Object(request_for(&body, None, Family::Gemini, "g").unwrap());
    assert_eq!(
        g["generationConfig"],
        json!({"temperature": 1.5, "topP": 0.9, "maxOutputTokens": 77, "stopSequences": ["END"]})
    );
    assert_eq!(g["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
}

#[test]
fn what_gemini_cannot_honour_is_refused_by_name() {
    let base = || json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
    let with = |k: &str, v: Value| {
        let mut b = obj(base());
        b.insert(k.to_owned(), v);
        request_for(&b, None, Family::Gemini, "g")
    };
    assert_eq!(with("seed", json!(7)), Err(Error::Unsupported("seed")));
    assert_eq!(with("user", json!("u-1")), Err(Error::Unsupported("user")));
    assert_eq!(with("parallel_tool_calls", json!(false)), Err(Error::Unsupported("parallel_tool_calls")));
    let url = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]);
    assert_eq!(with("messages", url), Err(Error::Unsupported("image_url")));
    let orphan = json!([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]);
    assert_eq!(with("messages", orphan), Err(Error::Unsupported("tool_call_id")), "no call to name the result");
    // an Anthropic caller's own fields are refused for Gemini too
    let messages = obj(json!({"model": "g", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024}}));
    let shape = anthropic::request_from(&messages).unwrap();
    assert_eq!(gemini::request_to(&shape), Err(Error::Unsupported("thinking")));
}

#[test]
fn a_gemini_answer_reads_back_with_calls_finish_and_usage() {
    let answer = obj(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"text": "Checking."},
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 9, "thoughtsTokenCount": 3,
                          "cachedContentTokenCount": 30, "totalTokenCount": 52},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}));
    let r = gemini::response_from(&answer).unwrap();
    assert_eq!((r.id.as_str(), r.model.as_str(), r.finish), ("resp-1", "gemini-2.5-flash", Finish::ToolCalls));
    assert_eq!(r.content.len(), 2, "the thought is not part of the answer");
    assert_eq!(
        r.content[1],
        Part::ToolCall { id: "call_1".into(), name: "weather".into(), arguments: "{\"city\":\"Oslo\"}".into() }
    );
    assert_eq!(r.usage, TokenUsage { prompt: 40, completion: 12, cache_read: 30, cache_write: 0 });
    let v = openai::response_to(&r, 1).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let filtered = obj(json!({"candidates": [{"finishReason": "SAFETY"}]}));
    assert_eq!(gemini::response_from(&filtered).unwrap().finish, Finish::ContentFilter);
    let blocked = obj(json!({"promptFeedback": {"blockReason": "SAFETY"}}));
    assert_eq!(gemini::response_from(&blocked).unwrap().finish, Finish::ContentFilter);
    assert_eq!(gemini::response_from(&obj(json!({"x": 1}))), Err(Error::Answer("candidates")));
    let code = obj(json!({"candidates": [{"content": {"parts": [{"executableCode": {"code": "1"}}]}}]}));
    assert_eq!(gemini::response_from(&code), Err(Error::Answer("parts")));
}

/// A Gemini stream as its provider frames it: text in pieces, a whole call, then the finish
/// and usage.
fn gemini_stream() -> String {
    let events = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me "}]}}], "modelVersion": "gemini-x", "responseId": "r-9"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "check."}]}}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": 1}}}]},
               "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}}),
    ];
    events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect()
}

#[test]
fn a_gemini_stream_becomes_chat_chunks_in_any_split() {
    let stream = gemini_stream();
    for step in [1, 7, stream.len()] {
        let mut d = chunk_decoder(Family::Gemini, "req", "g", 1).unwrap();
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(step) {
            d.feed(piece, &mut out);
        }
        assert!(!d.ended(), "no end marker: the stream ends when the connection closes");
        d.end(&mut out);
        assert!(d.ended());
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
        let (text, calls, finish, usage) = accumulate(&out);
        assert_eq!(text, "Let me check.");
        assert_eq!(calls, [("call_0".to_owned(), "weather".to_owned(), "{\"city\":1}".to_owned())]);
        assert_eq!(finish, "tool_calls");
        assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(12), Some(5)));
        assert!(out.contains("\"id\":\"r-9\"") && out.contains("\"model\":\"gemini-x\""));
    }
}

#[test]
fn a_gemini_stream_cut_or_broken_does_not_finish() {
    let stream = gemini_stream();
    let cut = &stream[..stream.find("functionCall").unwrap()];
    let mut d = chunk_decoder(Family::Gemini, "req", "g", 1).unwrap();
    let mut out = Vec::new();
    d.feed(cut.as_bytes(), &mut out);
    d.end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"), "cut before a finish reason: no [DONE]");

    for bad in [&b"data: {oops\n\n"[..], b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"video\":1}]}}]}\n\n"] {
        let mut d = chunk_decoder(Family::Gemini, "req", "g", 1).unwrap();
        let mut out = Vec::new();
        d.feed(bad, &mut out);
        assert!(d.ended() && String::from_utf8_lossy(&out).contains("upstream_error"));
    }
    let mut d = chunk_decoder(Family::Gemini, "req", "g", 1).unwrap();
    let mut out = Vec::new();
    d.feed(b"data: {\"error\": {\"code\": 429, \"message\": \"Resource exhausted\"}}\n\n", &mut out);
    assert!(d.ended() && String::from_utf8_lossy(&out).contains("Resource exhausted"));
}

proptest! {
    #[test]
    fn every_stream_decoder_never_panics_and_stays_proportional(
        events in proptest::collection::vec(arbitrary_json(), 0..12),
        noise in proptest::collection::vec(any::<u8>(), 0..256),
        step in 1usize..64,
    ) {
        for family in [Family::Anthropic, Family::Gemini, Family::Bedrock] {
            let mut input: Vec<u8> = match family {
                Family::Bedrock => events.iter().enumerate().flat_map(|(i, e)| {
                    let kinds = ["messageStart", "contentBlockStart", "contentBlockDelta", "messageStop", "metadata", "x"];
                    converse_frame(kinds[i % kinds.len()], e)
                }).collect(),
                _ => events.iter().flat_map(|e| format!("data: {e}\n\n").into_bytes()).collect(),
            };
            input.extend_from_slice(&noise);
            let mut d = chunk_decoder(family, "r", "m", 1).unwrap();
            let mut out = Vec::new();
            for piece in input.chunks(step) {
                d.feed(piece, &mut out);
            }
            d.end(&mut out);
            prop_assert!(out.len() <= 4 * input.len() + 600 * (events.len() + 4), "{} bytes out of {}", out.len(), input.len());
        }
    }
}

// Bedrock Converse, as a provider.

/// One event-stream frame of a ConverseStream answer.
fn converse_frame(event: &str, payload: &Value) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let m = Message::new(serde_json::to_vec(payload).unwrap())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String(event.to_owned().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&m, &mut out).unwrap();
    out
}

#[test]
fn an_openai_agent_turn_is_written_as_a_converse_request() {
    let mut turn = obj(openai_agent_turn());
    turn.remove("parallel_tool_calls");
    turn.remove("user");
    let b =
        Value::Object(request_for(&turn, None, Family::Bedrock, "anthropic.claude-3-5-sonnet-20240620-v1:0").unwrap());
    assert!(b.get("modelId").is_none() && b.get("model").is_none(), "the model is in the URL");
    assert_eq!(b["system"], json!([{"text": "be brief"}]));
    let m = b["messages"].as_array().unwrap();
    assert_eq!(m[0]["content"][1], json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}));
    assert_eq!(
        m[1],
        json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}}]})
    );
    assert_eq!(
        m[2]["content"][0],
        json!({"toolResult": {"toolUseId": "call_1", "content": [{"text": "4 °C, rain"}], "status": "success"}})
    );
    let tools = &b["toolConfig"];
    assert_eq!(tools["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["city"]["type"], "string");
    assert_eq!(tools["toolChoice"], json!({"tool": {"name": "weather"}}));
}

#[test]
fn what_converse_cannot_honour_is_refused_by_name() {
    let base = || {
        obj(json!({"model": "b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9,
        "temperature": 0.5, "stop": "END"}))
    };
    let b = Value::Object(request_for(&base(), None, Family::Bedrock, "b").unwrap());
    assert_eq!(b["inferenceConfig"], json!({"maxTokens": 9, "temperature": 0.5, "stopSequences": ["END"]}));
    let with = |k: &str, v: Value| {
        let mut b = base();
        b.insert(k.to_owned(), v);
        request_for(&b, None, Family::Bedrock, "b")
    };
    assert_eq!(with("logprobs", json!(true)), Err(Error::Unsupported("logprobs")));
    assert_eq!(with("user", json!("u")), Err(Error::Unsupported("user")));
    assert_eq!(with("tool_choice", json!("required")), Err(Error::Unsupported("tool_choice")), "no tools to require");
    let url = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]);
    assert_eq!(with("messages", url), Err(Error::Unsupported("image_url")));
    let messages =
        obj(json!({"model": "b", "max_tokens": 10, "top_k": 5, "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(bedrock::request_to(&anthropic::request_from(&messages).unwrap()), Err(Error::Unsupported("top_k")));
    // an Anthropic caller's cache marks become Converse cache points
    let cached = obj(json!({"model": "b", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
        "system": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]}));
    let b = bedrock::request_to(&anthropic::request_from(&cached).unwrap()).unwrap();
    assert_eq!(b["system"], json!([{"text": "long rules"}, {"cachePoint": {"type": "default"}}]));
}

#[test]
fn a_converse_answer_reads_back_with_calls_finish_and_usage() {
    let answer = obj(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Oslo"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 6, "totalTokens": 16, "cacheReadInputTokens": 30, "cacheWriteInputTokens": 2},
        "metrics": {"latencyMs": 120}}));
    let r = bedrock::response_from(&answer).unwrap();
    assert_eq!(r.finish, Finish::ToolCalls);
    assert_eq!(r.content.len(), 2, "reasoning is not part of the answer");
    assert_eq!(r.usage, TokenUsage { prompt: 42, completion: 6, cache_read: 30, cache_write: 2 });
    let filtered = obj(json!({"output": {"message": {"content": []}}, "stopReason": "guardrail_intervened"}));
    assert_eq!(bedrock::response_from(&filtered).unwrap().finish, Finish::ContentFilter);
    assert_eq!(bedrock::response_from(&obj(json!({"x": 1}))), Err(Error::Answer("output")));
}

fn converse_stream() -> Vec<u8> {
    [
        converse_frame("messageStart", &json!({"role": "assistant"})),
        converse_frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Let me "}})),
        converse_frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "check."}})),
        converse_frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
        converse_frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "weather"}}}),
        ),
        converse_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\""}}}),
        ),
        converse_frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": ":1}"}}})),
        converse_frame("contentBlockStop", &json!({"contentBlockIndex": 1})),
        converse_frame("messageStop", &json!({"stopReason": "tool_use"})),
        converse_frame(
            "metadata",
            &json!({"usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17}, "metrics": {"latencyMs": 9}}),
        ),
    ]
    .concat()
}

#[test]
fn a_converse_stream_becomes_chat_chunks_in_any_split() {
    let stream = converse_stream();
    for step in [1, 5, 64, stream.len()] {
        let mut d = chunk_decoder(Family::Bedrock, "req", "claude", 1).unwrap();
        let mut out = Vec::new();
        for piece in stream.chunks(step) {
            d.feed(piece, &mut out);
        }
        assert!(d.ended(), "metadata after messageStop ends it");
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
        let (text, calls, finish, usage) = accumulate(&out);
        assert_eq!(text, "Let me check.");
        assert_eq!(calls, [("t1".to_owned(), "weather".to_owned(), "{\"city\":1}".to_owned())]);
        assert_eq!(finish, "tool_calls");
        assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(12), Some(5)));
    }
}

#[test]
fn a_converse_stream_cut_corrupt_or_failed_is_not_finished() {
    let stream = converse_stream();
    let mut d = chunk_decoder(Family::Bedrock, "req", "m", 1).unwrap();
    let mut out = Vec::new();
    d.feed(&stream[..stream.len() / 2], &mut out);
    d.end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"), "cut before messageStop: no [DONE]");

    let mut corrupt = converse_stream();
    corrupt[20] ^= 0xff;
    let mut d = chunk_decoder(Family::Bedrock, "req", "m", 1).unwrap();
    let mut out = Vec::new();
    d.feed(&corrupt, &mut out);
    assert!(d.ended() && String::from_utf8_lossy(&out).contains("upstream_error"), "a CRC mismatch ends it");

    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let m = Message::new(&b"{\"message\":\"Rate exceeded for key AKIA-SECRET\"}"[..])
        .add_header(Header::new(":message-type", HeaderValue::String("exception".into())))
        .add_header(Header::new(":exception-type", HeaderValue::String("throttlingException".into())));
    let mut frame = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&m, &mut frame).unwrap();
    let mut d = chunk_decoder(Family::Bedrock, "req", "m", 1).unwrap();
    let mut out = Vec::new();
    d.feed(&frame, &mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(d.ended() && out.contains("throttlingException") && !out.contains("AKIA"), "{out}");

    // a frame claiming more than any event may hold is refused before it is buffered whole
    let mut d = chunk_decoder(Family::Bedrock, "req", "m", 1).unwrap();
    let big = converse_frame("contentBlockDelta", &json!({"delta": {"text": "x".repeat(MAX_EVENT_BYTES + 10)}}));
    let mut out = Vec::new();
    for piece in big.chunks(64 * 1024) {
        d.feed(piece, &mut out);
    }
    assert!(d.ended() && String::from_utf8_lossy(&out).contains("upstream_error"));
}

// What a Messages caller says beside the chain's request.

/// A Messages request using what only the Messages API has.
fn messages_with_extras() -> Map<String, Value> {
    obj(json!({
        "model": "claude-x", "max_tokens": 256, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "service_tier": "auto",
        "system": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "station offline", "is_error": true},
                {"type": "text", "text": "and tomorrow?", "cache_control": {"type": "ephemeral"}}]},
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
    }))
}

/// The chain's view of it: the Chat Completions body, and what rides beside it.
fn split_messages() -> (Map<String, Value>, Origin) {
    let mut shape = anthropic::request_from(&messages_with_extras()).unwrap();
    let origin = Origin::split(&mut shape).unwrap();
    (openai::request_to(&shape, &shape.model).unwrap(), origin)
}

#[test]
fn a_messages_callers_own_fields_reach_an_anthropic_provider_unchanged() {
    let (chat, origin) = split_messages();
    assert!(
        chat.get("top_k").is_none() && chat.get("thinking").is_none(),
        "the chain's body is plain Chat Completions"
    );
    assert_eq!(
        Origin::split(&mut openai::request_from(&chat).unwrap()),
        None,
        "a plain request carries nothing beside"
    );
    let sent = Value::Object(request_for(&chat, Some(&origin), Family::Anthropic, "claude-x").unwrap());
    let original = Value::Object(messages_with_extras());
    for field in ["top_k", "thinking", "service_tier", "system", "tools"] {
        assert_eq!(sent[field], original[field], "{field}");
    }
    let last = &sent["messages"][2]["content"];
    assert_eq!(last[0]["is_error"], true);
    assert_eq!(last[1]["cache_control"], json!({"type": "ephemeral"}));
    assert!(last[0].get("cache_control").is_none(), "marks stay where the caller put them");
}

#[test]
fn a_messages_callers_own_fields_are_refused_by_other_families_by_name() {
    let (chat, origin) = split_messages();
    // each family refuses the first thing it cannot say
    for (family, first) in
        [(Family::OpenAi, "top_k"), (Family::Gemini, "service_tier"), (Family::Bedrock, "service_tier")]
    {
        assert_eq!(request_for(&chat, Some(&origin), family, "m"), Err(Error::Unsupported(first)), "{family:?}");
    }
    let only = |o: Origin| request_for(&chat, Some(&o), Family::OpenAi, "m");
    let bare = Origin { fields: Map::new(), ..origin.clone() };
    assert_eq!(only(Origin { top_k: None, ..bare.clone() }), Err(Error::Unsupported("is_error")));
    assert_eq!(only(bare.clone()), Err(Error::Unsupported("top_k")));
    // Gemini has top_k and tool errors; cache marks are hints it does without
    let g = Value::Object(request_for(&chat, Some(&bare), Family::Gemini, "m").unwrap());
    assert_eq!(g["generationConfig"]["topK"], 5);
    assert_eq!(g["contents"][2]["parts"][0]["functionResponse"]["response"], json!({"error": "station offline"}));
    let cache_only = Origin { top_k: None, tool_errors: Vec::new(), ..bare };
    assert!(request_for(&chat, Some(&cache_only), Family::OpenAi, "m").is_ok(), "a cache mark is not a refusal");
}
