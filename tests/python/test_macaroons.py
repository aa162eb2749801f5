"""Macaroon interop with pymacaroons, both ways, in every encoding.

Gatehouse's side is the `macaroon-interop` binary (crates/gatehouse-testkit), which drives the
same library the gateway verifies tokens with.
"""

import base64
import json
import os
import subprocess

import pytest
from pymacaroons import Macaroon, MACAROON_V2, Verifier
from pymacaroons.exceptions import MacaroonException
from pymacaroons.serializers import BinarySerializer, JsonSerializer

KEY = "a root key of thirty-two bytes!!"
TP_KEY = "shared with the third party"
CAVEATS = ["org = acme", "scope chat:*", "models in [gpt-4o]", "expires < 2030-01-01T00:00:00Z"]


def gatehouse(req):
    out = subprocess.run(
        [os.environ["MACAROON_INTEROP_BIN"]],
        input=json.dumps(req),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout)


def py_encodings(m):
    raw = BinarySerializer().serialize_raw(m)
    return {
        "url": m.serialize(),
        "std": base64.standard_b64encode(raw).decode(),
        "json": m.serialize(JsonSerializer()),
    }


def py_token(third_party=False):
    m = Macaroon(location="https://gatehouse.example", identifier="tok_py", key=KEY, version=MACAROON_V2)
    for c in CAVEATS:
        m.add_first_party_caveat(c)
    discharges = []
    if third_party:
        m.add_third_party_caveat("https://auth.example", TP_KEY, "user-is-alice")
        d = Macaroon(location="https://auth.example", identifier="user-is-alice", key=TP_KEY, version=MACAROON_V2)
        d.add_first_party_caveat("expires < 2031-01-01T00:00:00Z")
        discharges.append(m.prepare_for_request(d))
    return m, discharges


@pytest.mark.parametrize("enc", ["url", "std", "json"])
def test_python_mints_gatehouse_verifies(enc):
    m, _ = py_token()
    text = py_encodings(m)[enc]
    if enc == "std":
        assert "-" not in text and "_" not in text
    got = gatehouse({"op": "verify", "key": KEY, "token": text})
    assert got == {"ok": True, "predicates": CAVEATS}
    wrong = gatehouse({"op": "verify", "key": "not the key", "token": text})
    assert wrong["ok"] is False and "signature" in wrong["error"]


@pytest.mark.parametrize("enc", ["url", "std", "json"])
def test_python_third_party_discharge_verifies_in_gatehouse(enc):
    m, discharges = py_token(third_party=True)
    got = gatehouse(
        {
            "op": "verify",
            "key": KEY,
            "token": py_encodings(m)[enc],
            "discharges": [py_encodings(d)[enc] for d in discharges],
        }
    )
    assert got["ok"], got
    assert got["predicates"] == CAVEATS + ["expires < 2031-01-01T00:00:00Z"]
    # Without its discharge, or with an unbound one, the token is refused.
    assert not gatehouse({"op": "verify", "key": KEY, "token": py_encodings(m)[enc]})["ok"]
    unbound = Macaroon(location="https://auth.example", identifier="user-is-alice", key=TP_KEY, version=MACAROON_V2)
    unbound.add_first_party_caveat("expires < 2031-01-01T00:00:00Z")
    bad = gatehouse(
        {"op": "verify", "key": KEY, "token": py_encodings(m)[enc], "discharges": [py_encodings(unbound)[enc]]}
    )
    assert not bad["ok"]


def test_python_tampering_is_caught_by_gatehouse():
    m, _ = py_token()
    doc = json.loads(m.serialize(JsonSerializer()))
    for mutate in (
        lambda d: d["c"].pop(1),  # caveat stripped
        lambda d: d["c"].reverse(),  # re-ordered
        lambda d: d["c"][1].update(i="scope *"),  # widened
    ):
        d = json.loads(json.dumps(doc))
        mutate(d)
        got = gatehouse({"op": "verify", "key": KEY, "token": json.dumps(d)})
        assert got == {"ok": False, "error": "macaroon signature does not verify"}
    truncated = m.serialize()[:-6]
    assert not gatehouse({"op": "verify", "key": KEY, "token": truncated})["ok"]


def gatehouse_token(third_party=False):
    caveats = [{"first": c} for c in CAVEATS]
    discharges = []
    if third_party:
        caveats.append({"third": {"location": "https://auth.example", "key": TP_KEY, "id": "user-is-alice"}})
        discharges.append({"key": TP_KEY, "id": "user-is-alice", "caveats": [{"first": "mfa = yes"}]})
    return gatehouse(
        {
            "op": "mint",
            "key": KEY,
            "id": "tok_gh",
            "location": "https://gatehouse.example",
            "caveats": caveats,
            "discharges": discharges,
        }
    )


def py_verifier(predicates):
    v = Verifier()
    for p in predicates:
        v.satisfy_exact(p)
    return v


def py_decode(text, enc):
    if enc == "json":
        return Macaroon.deserialize(text, JsonSerializer())
    return Macaroon.deserialize(text)


@pytest.mark.parametrize("enc", ["url", "std", "json"])
def test_gatehouse_mints_python_verifies(enc):
    minted = gatehouse_token()
    text = minted["root"][enc]
    if enc == "std":
        assert "-" not in text and "_" not in text
    m = py_decode(text, enc)
    assert m.identifier_bytes == b"tok_gh" and m.location == "https://gatehouse.example"
    assert [c.caveat_id_bytes.decode() for c in m.caveats] == CAVEATS
    assert py_verifier(CAVEATS).verify(m, KEY)
    with pytest.raises(MacaroonException):
        py_verifier(CAVEATS[:-1]).verify(m, KEY)
    with pytest.raises(MacaroonException):
        py_verifier(CAVEATS).verify(m, "not the key")


@pytest.mark.parametrize("enc", ["url", "std", "json"])
def test_gatehouse_third_party_discharge_verifies_in_python(enc):
    minted = gatehouse_token(third_party=True)
    m = py_decode(minted["root"][enc], enc)
    d = py_decode(minted["discharges"][0][enc], enc)
    assert py_verifier(CAVEATS + ["mfa = yes"]).verify(m, KEY, [d])
    with pytest.raises(MacaroonException):
        py_verifier(CAVEATS + ["mfa = yes"]).verify(m, KEY, [])


def test_python_attenuates_a_gatehouse_token():
    minted = gatehouse_token()
    m = Macaroon.deserialize(minted["root"]["url"])
    m.add_first_party_caveat("rpm <= 5")
    got = gatehouse({"op": "verify", "key": KEY, "token": m.serialize()})
    assert got == {"ok": True, "predicates": CAVEATS + ["rpm <= 5"]}


def test_pymacaroons_attenuates_a_gateway_token_that_the_openai_client_then_uses(gateway):
    """The real thing: a token minted by the gateway, narrowed by pymacaroons, presented by
    the official openai client."""
    import openai

    minted = gateway.admin_post(
        "/admin/v1/capabilities",
        {"name": "py", "scopes": ["chat:*", "embeddings:create"], "expires_in_seconds": 600},
    )
    m = Macaroon.deserialize(minted["token"])
    m.add_first_party_caveat("scope = chat:completions")
    for text in (m.serialize(), m.serialize(JsonSerializer())):
        client = openai.OpenAI(base_url=gateway.data_url + "/v1", api_key=text, max_retries=0)
        reply = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError):
            client.embeddings.create(model="fake-embed", input="hi")
    # A caveat pymacaroons can write but the gateway does not know is a denial, not a pass.
    m.add_first_party_caveat("account = 3735928559")
    client = openai.OpenAI(base_url=gateway.data_url + "/v1", api_key=m.serialize(), max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
