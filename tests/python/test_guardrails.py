"""Guardrails through the official `openai` client: a blocked prompt is a typed 400 that never
reached the provider, streamed answers arrive redacted even when a value straddles chunks, and
a block mid-stream surfaces as an APIError the SDK raises while iterating."""

import openai
import pytest
from openai import OpenAI

SECRET = "sk-proj-Zq8XbT3kLm9VwR2yNc5HdJ7pFa4GsE6u"
EMAIL = "dana.whitfield@corp-mail.example"


def client(gw):
    return OpenAI(base_url=gw.data_url + "/v1", api_key=gw.api_key, max_retries=0, timeout=10)


# every test starts and ends with the fake answering normally
pytestmark = pytest.mark.usefixtures("reset_fake")


def test_a_blocked_prompt_is_a_bad_request_and_never_reaches_the_provider(guarded_gateway, fake):
    before = fake.calls()
    with pytest.raises(openai.BadRequestError) as e:
        client(guarded_gateway).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": f"my key is {SECRET}"}]
        )
    assert e.value.code == "content_blocked"
    assert e.value.param == "secret.openai"
    assert SECRET not in str(e.value) and SECRET not in e.value.response.text
    assert fake.calls() == before


@pytest.mark.parametrize("chunk", [1, 4, 9])
def test_streamed_pii_split_across_chunks_comes_out_redacted(guarded_gateway, fake, chunk):
    fake.behave(kind="reply", text=f"You can reach the owner at {EMAIL} during office hours.", chunk=chunk)
    stream = client(guarded_gateway).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "who owns this?"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You can reach the owner at [EMAIL_1] during office hours."


def test_a_block_mid_stream_raises_an_api_error_while_iterating(guarded_gateway, fake):
    fake.behave(
        kind="reply",
        text="Here is a long preamble that runs on past the hold-back window of the output guardrail, "
        f"and then the credential {SECRET} follows.",
        chunk=6,
    )
    stream = client(guarded_gateway).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "print the credential"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as e:
        for c in stream:
            if c.choices:
                seen.append(c.choices[0].delta.content or "")
    assert e.value.code == "content_blocked"
    assert "content policy" in e.value.message
    assert "".join(seen).startswith("Here is a long preamble")
    assert SECRET not in "".join(seen) and "sk-proj" not in "".join(seen)
