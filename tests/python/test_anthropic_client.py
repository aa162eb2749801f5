"""The official `anthropic` package against Gatehouse's Messages ingress: it must work
unmodified against any model the caller may use (the mock, an OpenAI-compatible upstream), and
every refusal must surface as the SDK's typed error."""

import anthropic
import pytest
from anthropic import Anthropic


def client(gateway, key=None):
    # the SDK sends the key as x-api-key and appends /v1/messages itself
    return Anthropic(base_url=gateway.data_url, api_key=key or gateway.api_key, max_retries=0, timeout=10)


MESSAGES = [{"role": "user", "content": "hello"}]


# every test starts and ends with the fake answering normally
pytestmark = pytest.mark.usefixtures("reset_fake")


@pytest.mark.parametrize("model, expected", [("mock", "mock provider"), ("fake-model", "fake provider")])
def test_messages_create(gateway, model, expected):
    msg = client(gateway).messages.create(model=model, max_tokens=100, system="be brief", messages=MESSAGES)
    assert msg.type == "message" and msg.role == "assistant"
    assert expected in msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model, expected", [("mock", "mock provider"), ("fake-model", "reply-canary")])
def test_messages_stream(gateway, model, expected):
    with client(gateway).messages.stream(model=model, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert expected in text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


TOOLS = [{"name": "lookup", "description": "look something up", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(gateway, fake, stream):
    fake.behave(kind="reply", text="Checking.", tool_args='{"q": "weather in Oslo"}', chunk=4)
    c = client(gateway)
    kwargs = dict(model="fake-model", max_tokens=200, tools=TOOLS, messages=MESSAGES)
    if stream:
        with c.messages.stream(**kwargs) as s:
            msg = s.get_final_message()
    else:
        msg = c.messages.create(**kwargs)
    assert msg.stop_reason == "tool_use"
    call = [b for b in msg.content if b.type == "tool_use"][0]
    assert call.name == "lookup" and call.input == {"q": "weather in Oslo"}
    # the tool's answer goes back, and the model answers in text
    fake.behave(kind="ok")
    follow = c.messages.create(
        model="fake-model",
        max_tokens=200,
        tools=TOOLS,
        messages=MESSAGES
        + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain"}]},
        ],
    )
    assert follow.stop_reason == "end_turn" and "fake provider" in follow.content[0].text


@pytest.mark.parametrize(
    "kwargs, key, error",
    [
        (dict(model="mock"), "gth_not_a_key", anthropic.AuthenticationError),
        (dict(model="no-such-model"), None, anthropic.NotFoundError),
        (dict(model="mock", extra_body={"top_k": 5}), None, anthropic.BadRequestError),
        (dict(model="mock", messages=[{"role": "user", "content": "key sk-proj-abcdefghijklmnopqrstuvwxyz0123"}]), None, anthropic.BadRequestError),
    ],
)
def test_refusals_are_typed_errors(gateway, kwargs, key, error):
    body = dict(max_tokens=50, messages=MESSAGES) | kwargs
    with pytest.raises(error) as e:
        client(gateway, key).messages.create(**body)
    assert e.value.body["type"] == "error"
    assert "sk-proj" not in str(e.value.body)


def test_an_upstream_rate_limit_is_a_rate_limit_error(gateway, fake):
    fake.behave(kind="status", status=429)
    with pytest.raises(anthropic.RateLimitError):
        client(gateway).messages.create(model="fake-model", max_tokens=50, messages=MESSAGES)


@pytest.mark.parametrize("model", ["mock", "fake-model"])
def test_count_tokens(gateway, fake, model):
    before = fake.calls()
    c = client(gateway)
    short = c.messages.count_tokens(model=model, messages=MESSAGES)
    longer = c.messages.count_tokens(
        model=model, system="be brief", messages=[{"role": "user", "content": "hello " * 200}]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    assert fake.calls() == before, "counting reaches no provider"


def test_count_tokens_refusals_are_typed_errors(gateway):
    with pytest.raises(anthropic.NotFoundError):
        client(gateway).messages.count_tokens(model="no-such-model", messages=MESSAGES)
    with pytest.raises(anthropic.AuthenticationError):
        client(gateway, "gth_not_a_key").messages.count_tokens(model="mock", messages=MESSAGES)


def test_a_token_without_the_chat_scope_is_a_permission_error(gateway):
    minted = gateway.admin_post(
        "/admin/v1/capabilities", {"name": "embed-only", "scopes": ["embeddings:create"], "expires_in_seconds": 600}
    )
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client(gateway, minted["token"]).messages.create(model="mock", max_tokens=50, messages=MESSAGES)
    assert e.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gateway, minted["token"]).messages.count_tokens(model="mock", messages=MESSAGES)


def test_a_body_over_the_limit_is_request_too_large(gateway):
    huge = [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]
    with pytest.raises(anthropic.APIStatusError) as e:
        client(gateway).messages.create(model="mock", max_tokens=50, messages=huge)
    assert e.value.status_code == 413
    assert e.value.body["error"]["type"] == "request_too_large"


def test_provider_failures_and_timeouts_are_server_errors(gateway, fake):
    fake.behave(kind="status", status=500)
    with pytest.raises(anthropic.InternalServerError) as e:
        client(gateway).messages.create(model="fake-model", max_tokens=50, messages=MESSAGES)
    assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"
    assert "sk-upstream" not in str(e.value.body)
    fake.behave(kind="hang")
    with pytest.raises(anthropic.InternalServerError) as e:
        client(gateway).messages.create(model="fake-model", max_tokens=50, messages=MESSAGES)
    assert e.value.status_code == 504 and e.value.body["error"]["type"] == "timeout_error"
