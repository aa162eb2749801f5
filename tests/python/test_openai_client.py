"""The official `openai` package against Gatehouse: it must work unmodified, and every
refusal must surface as the SDK's typed error."""

import openai
import pytest
from openai import OpenAI


def client(gateway, key=None):
    return OpenAI(base_url=gateway.data_url + "/v1", api_key=key or gateway.api_key, max_retries=0, timeout=10)


MESSAGES = [{"role": "user", "content": "hello"}]


# every test starts and ends with the fake answering normally
pytestmark = pytest.mark.usefixtures("reset_fake")


@pytest.mark.parametrize("model, expected", [("mock", "mock provider"), ("fake-model", "fake provider")])
def test_chat_completion(gateway, model, expected):
    resp = client(gateway).chat.completions.create(model=model, messages=MESSAGES)
    assert expected in resp.choices[0].message.content
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["mock", "fake-model"])
def test_streamed_chat_completion(gateway, model):
    stream = client(gateway).chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, usage, chunks = "", None, 0
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    # output guardrails are on by default (secrets redacted): a short answer is held back whole
    # and arrives in its last chunk, and held-back chunks are not sent as empty deltas
    assert chunks >= 2
    assert text
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["mock-embedding", "fake-embed"])
def test_embeddings(gateway, model):
    resp = client(gateway).embeddings.create(model=model, input=["one", "two"])
    assert len(resp.data) == 2
    assert len(resp.data[0].embedding) > 0


def test_models_list_and_retrieve(gateway):
    c = client(gateway)
    ids = [m.id for m in c.models.list()]
    assert ids == ["mock", "mock-embedding", "fake-model", "fake-embed"]
    assert c.models.retrieve("fake-model").id == "fake-model"


def test_wrong_key_is_authentication_error(gateway, fake):
    before = fake.calls()
    with pytest.raises(openai.AuthenticationError) as e:
        client(gateway, key="gth_not-a-real-key").chat.completions.create(model="fake-model", messages=MESSAGES)
    assert e.value.code == "invalid_api_key"
    assert fake.calls() == before


def test_unknown_and_forbidden_models_are_not_found(gateway, fake):
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert e.value.code == "model_not_found"
    limited = gateway.create_key(name="py-limited", models=["mock"])["key"]
    before = fake.calls()
    with pytest.raises(openai.NotFoundError):
        client(gateway, key=limited).chat.completions.create(model="fake-model", messages=MESSAGES)
    assert fake.calls() == before
    assert [m.id for m in client(gateway, key=limited).models.list()] == ["mock"]


def test_bad_request_is_bad_request_error(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).chat.completions.create(model="fake-model", messages=[])
    assert e.value.code == "invalid_request"
    assert e.value.param == "messages"


def test_upstream_rate_limit_is_rate_limit_error(gateway, fake):
    fake.behave(kind="status", status=429)
    with pytest.raises(openai.RateLimitError) as e:
        client(gateway).chat.completions.create(model="fake-model", messages=MESSAGES)
    assert e.value.code == "upstream_rate_limited"
    assert "sk-" not in str(e.value), "provider error text must not be relayed"


def test_upstream_failure_and_timeout_are_server_errors(gateway, fake):
    fake.behave(kind="status", status=500)
    with pytest.raises(openai.InternalServerError) as e:
        client(gateway).chat.completions.create(model="fake-model", messages=MESSAGES)
    assert e.value.status_code == 502
    fake.behave(kind="hang")
    with pytest.raises(openai.InternalServerError) as e:
        client(gateway).chat.completions.create(model="fake-model", messages=MESSAGES)
    assert e.value.status_code == 504


def test_a_stream_cut_mid_way_raises_an_api_error(gateway, fake):
    fake.behave(kind="disconnect")
    stream = client(gateway).chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "provider" in str(e.value)


def test_a_rate_limited_token_is_a_rate_limit_error_with_openais_headers(gateway):
    minted = gateway.admin_post(
        "/admin/v1/capabilities", {"name": "slow", "scopes": ["chat:*"], "expires_in_seconds": 600, "rpm": 2}
    )
    c = client(gateway, minted["token"])
    ok = c.chat.completions.with_raw_response.create(model="mock", messages=MESSAGES)
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="mock", messages=MESSAGES)
    assert e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1


def test_an_exhausted_budget_is_a_rate_limit_error_with_insufficient_quota(gateway, fake):
    fake.behave(kind="ok")
    key = gateway.create_key(name="budgeted")
    # a token budget too small for even one worst case (the body's bytes + max_tokens)
    spec = {"budgets": [{"period": "daily", "tokens": 50}]}
    gateway.admin_post("/admin/v1/keys/%s/limits" % key["id"], spec, method="PUT")
    c = client(gateway, key["key"])
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=100)
    assert e.value.code == "insufficient_quota"
    assert e.value.status_code == 429


def test_token_rate_headers_reach_the_client(gateway, fake):
    fake.behave(kind="ok")
    key = gateway.create_key(name="tpm")
    gateway.admin_post("/admin/v1/keys/%s/limits" % key["id"], {"tpm": 10000}, method="PUT")
    raw = client(gateway, key["key"]).chat.completions.with_raw_response.create(
        model="fake-model", messages=MESSAGES, max_tokens=50
    )
    assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
    assert 0 < int(raw.headers["x-ratelimit-remaining-tokens"]) < 10000
    assert raw.parse().usage.total_tokens == 12


def test_a_cached_stream_replays_through_the_client_as_a_stream(gateway, fake):
    """A project with the response cache on: the second identical streamed request is
    answered from the cache, and the official client reads it as the same stream."""
    org = gateway.admin_get("/admin/v1/orgs")["data"][0]["id"]
    project = gateway.admin_post(f"/admin/v1/orgs/{org}/projects", {"name": "cached-stream"})["id"]
    key = gateway.create_key(name="cached-stream", project="cached-stream")["key"]
    gateway.admin_post(f"/admin/v1/orgs/{org}/projects/{project}/routing", {"cache_ttl_seconds": 300}, method="PUT")
    fake.behave(kind="reply", text="a cached answer, replayed chunk by chunk", chunk=5)

    def read(raw):
        assert raw.headers["content-type"].startswith("text/event-stream")
        text, usage, chunks, finish = "", None, 0, None
        for chunk in raw.parse():
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            if chunk.usage:
                usage = chunk.usage
        return raw.headers.get("x-gatehouse-cache"), text, usage, chunks, finish

    def ask():
        return read(
            client(gateway, key).chat.completions.with_raw_response.create(
                model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )

    before = fake.calls()
    first = ask()
    second = ask()
    assert fake.calls() - before == 1, "one provider call for two streams"
    assert first[0] is None and second[0] == "hit"
    assert second[1:] == first[1:]
    assert second[1] == "a cached answer, replayed chunk by chunk"
    assert second[2] is not None and second[2].completion_tokens > 0
    # the same chunks as the first time (held back whole by the default output guardrail: this
    # answer is shorter than the hold-back, so it arrives in the final chunk, without empty deltas)
    assert second[3] >= 2 and second[4] == "stop"
