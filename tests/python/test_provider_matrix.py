"""The provider matrix (issue #17): {official OpenAI SDK, official Anthropic SDK} x every provider
kind x {plain, streamed, tool call, refused by a guardrail, over budget}. Each cell goes through
the real gatehouse binary over real HTTP to the fake provider process, which answers each
provider kind in that API's own wire format (OpenAI, Anthropic Messages, Azure deployment URLs,
Gemini generateContent, SigV4-signed Bedrock Converse with event-stream framing), scripted by
one behaviour."""

import json

import anthropic
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

from conftest import start_gateway

# provider kind -> the model that reaches it
MODELS = {
    "openai": "m-openai",
    "openai_compatible": "fake-model",
    "anthropic": "m-anthropic",
    "azure_openai": "m-azure",
    "gemini": "m-gemini",
    "bedrock": "m-bedrock",
}

# the SigV4 key the fake provider's Bedrock door verifies signatures with (gatehouse-testkit's
# BEDROCK_ACCESS_KEY_ID and BEDROCK_SECRET_ACCESS_KEY)
AWS_ENV = {"AWS_ID": "AKIAGATEHOUSEFAKE01", "AWS_SECRET": "fake/bedrock/secret+key/for/tests/0000"}

SDKS = ["openai", "anthropic"]

pytestmark = pytest.mark.usefixtures("reset_fake")


@pytest.fixture(scope="module")
def matrix(fake):
    root = fake.base_url.rsplit("/v1", 1)[0]
    extra = f"""
[[providers]]
name = "p-openai"
kind = "openai"
base_url = "{fake.base_url}"
api_key = "env:FAKE_KEY"

[[providers]]
name = "p-anthropic"
kind = "anthropic"
base_url = "{fake.base_url}"
api_key = "env:FAKE_KEY"

[[providers]]
name = "p-azure"
kind = "azure_openai"
base_url = "{root}"
api_key = "env:FAKE_KEY"

[[providers]]
name = "p-gemini"
kind = "gemini"
base_url = "{root}/v1beta"
api_key = "env:FAKE_KEY"

[[providers]]
name = "p-bedrock"
kind = "bedrock"
base_url = "{root}"
region = "us-east-1"
aws_access_key_id = "env:AWS_ID"
aws_secret_access_key = "env:AWS_SECRET"
"""
    for kind, model in MODELS.items():
        if kind != "openai_compatible":
            extra += f'\n[[models]]\nname = "{model}"\nprovider = "p-{kind.split("_")[0]}"\n'
    proc, gw = start_gateway(fake, extra=extra, env_extra=AWS_ENV)
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


def sdk_client(sdk, gw, key=None):
    key = key or gw.api_key
    if sdk == "openai":
        return OpenAI(base_url=gw.data_url + "/v1", api_key=key, max_retries=0, timeout=10)
    return Anthropic(base_url=gw.data_url, api_key=key, max_retries=0, timeout=10)


def ask(sdk, client, model, content="hello", stream=False, tools=False):
    """One turn through `sdk`: (text, tool calls as (name, arguments), finish)."""
    messages = [{"role": "user", "content": content}]
    if sdk == "openai":
        kwargs = dict(model=model, messages=messages, max_tokens=100)
        if tools:
            kwargs["tools"] = [
                {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
            ]
        if not stream:
            r = client.chat.completions.create(**kwargs)
            assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
            m = r.choices[0].message
            calls = [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []]
            return m.content or "", calls, r.choices[0].finish_reason
        text, args, name, finish, usage = "", "", None, None, None
        for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs):
            usage = chunk.usage or usage
            if not chunk.choices:
                continue
            d = chunk.choices[0].delta
            text += d.content or ""
            for c in d.tool_calls or []:
                name = c.function.name or name
                args += c.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert usage is not None and usage.completion_tokens > 0
        return text, [(name, json.loads(args))] if name else [], finish
    kwargs = dict(model=model, messages=messages, max_tokens=100)
    if tools:
        kwargs["tools"] = [{"name": "lookup", "input_schema": {"type": "object"}}]
    if stream:
        with client.messages.stream(**kwargs) as s:
            text = "".join(s.text_stream)
            msg = s.get_final_message()
        assert text == "".join(b.text for b in msg.content if b.type == "text")
    else:
        msg = client.messages.create(**kwargs)
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    text = "".join(b.text for b in msg.content if b.type == "text")
    calls = [(b.name, b.input) for b in msg.content if b.type == "tool_use"]
    return text, calls, msg.stop_reason


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sdk", SDKS)
def test_plain(matrix, sdk, kind):
    text, calls, finish = ask(sdk, sdk_client(sdk, matrix), MODELS[kind])
    assert "fake provider" in text and calls == []
    assert finish == ("stop" if sdk == "openai" else "end_turn")


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sdk", SDKS)
def test_streamed(matrix, fake, sdk, kind):
    words = "Streamed words from the fake provider, in pieces."
    fake.behave(kind="reply", text=words, chunk=5)
    text, calls, finish = ask(sdk, sdk_client(sdk, matrix), MODELS[kind], stream=True)
    assert text == words and calls == []
    assert finish == ("stop" if sdk == "openai" else "end_turn")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sdk", SDKS)
def test_tool_call(matrix, fake, sdk, kind, stream):
    fake.behave(kind="reply", text="Checking.", tool_args='{"q": "weather in Oslo"}', chunk=4)
    text, calls, finish = ask(sdk, sdk_client(sdk, matrix), MODELS[kind], stream=stream, tools=True)
    assert text == "Checking."
    assert calls == [("lookup", {"q": "weather in Oslo"})]
    assert finish == ("tool_calls" if sdk == "openai" else "tool_use")


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sdk", SDKS)
def test_refused_by_a_guardrail(matrix, fake, sdk, kind):
    before = fake.calls()
    secret = "deploy with sk-proj-abcdefghijklmnopqrstuvwxyz0123 please"
    error = openai.BadRequestError if sdk == "openai" else anthropic.BadRequestError
    with pytest.raises(error) as e:
        ask(sdk, sdk_client(sdk, matrix), MODELS[kind], content=secret)
    assert "sk-proj" not in str(e.value.body), "a refusal never echoes what it refused"
    assert fake.calls() == before, "refused before any provider"


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sdk", SDKS)
def test_over_budget(matrix, fake, sdk, kind):
    key = matrix.create_key(name=f"budget-{sdk}-{kind}")
    matrix.admin_post("/admin/v1/keys/%s/limits" % key["id"], {"budgets": [{"period": "daily", "tokens": 50}]}, method="PUT")
    before = fake.calls()
    error = openai.RateLimitError if sdk == "openai" else anthropic.RateLimitError
    with pytest.raises(error) as e:
        ask(sdk, sdk_client(sdk, matrix, key["key"]), MODELS[kind])
    assert e.value.status_code == 429
    if sdk == "openai":
        assert e.value.code == "insufficient_quota"
    assert fake.calls() == before
