#!/usr/bin/env python3
"""Generates tests/data/guardrails/pii_secrets_classes.jsonl: the PII and secret classes issue #21
named as missed, and hard negatives of the kinds it named as false positives, in the format of
pii_secrets.jsonl ({"text", "spans": [{"start", "end", "detector"}]}, exact UTF-8 byte spans).
Standard library only; deterministic (fixed seed). `cargo test -p gatehouse-guardrails --test
corpus` measures both files.

    python3 scripts/guardrails-corpus-classes.py

Values are synthetic strings of each provider's documented shape, made here; none is real.
"""

import base64
import json
import os
import random
import string

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "guardrails", "pii_secrets_classes.jsonl")
rnd = random.Random(20261206)

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"


def pick(alphabet, n):
    return "".join(rnd.choice(alphabet) for _ in range(n))


def mixed(alphabet, n):
    """Random, but with a digit, an upper- and a lower-case letter where the alphabet has them."""
    while True:
        s = pick(alphabet, n)
        kinds = [any(c.isdigit() for c in s), any(c.isupper() for c in s), any(c.islower() for c in s)]
        want = [any(c.isdigit() for c in alphabet), any(c.isupper() for c in alphabet), any(c.islower() for c in alphabet)]
        if kinds == want and not any(s[i] * 6 == s[i : i + 6] for i in range(len(s) - 5)):
            return s


def password():
    words = ["Summer", "Winter", "Falcon", "Harbor", "Maple", "Copper", "Orbit", "Velvet", "Tiger", "Cobalt"]
    return rnd.choice(words) + str(rnd.randint(10, 9999)) + rnd.choice("!#%&*?+") + pick(string.ascii_lowercase, rnd.randint(0, 3))


def pgp():
    body = base64.b64encode(rnd.randbytes(rnd.choice([180, 400]))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    crc = base64.b64encode(rnd.randbytes(3)).decode()
    return f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{lines}\n={crc}\n-----END PGP PRIVATE KEY BLOCK-----"


SECRETS = {
    "secret.huggingface": lambda: "hf_" + mixed(string.ascii_letters, 34),
    "secret.gitlab": lambda: rnd.choice(["glpat-", "gldt-", "glrt-"]) + mixed(URLSAFE, 20),
    "secret.slack_webhook": lambda: "https://hooks.slack.com/services/T"
    + pick(string.ascii_uppercase + string.digits, 10)
    + "/B"
    + pick(string.ascii_uppercase + string.digits, 10)
    + "/"
    + mixed(ALNUM, 24),
    "secret.discord": lambda: (
        "https://discord.com/api/webhooks/" + str(rnd.randint(10**17, 10**18)) + "/" + mixed(URLSAFE, 68)
        if rnd.random() < 0.5
        else rnd.choice("MNO") + mixed(ALNUM, 23) + "." + pick(URLSAFE, 6) + "." + mixed(URLSAFE, 27)
    ),
    "secret.telegram": lambda: str(rnd.randint(10**8, 10**10 - 1)) + ":AA" + mixed(URLSAFE, 33),
    "secret.digitalocean": lambda: rnd.choice(["dop_v1_", "doo_v1_", "dor_v1_"]) + pick("0123456789abcdef", 64),
    "secret.mailgun": lambda: "key-" + pick("0123456789abcdef", 32),
    "secret.notion": lambda: "secret_" + mixed(ALNUM, 43) if rnd.random() < 0.5 else "ntn_" + pick(string.digits, 11) + mixed(ALNUM, 35),
    "secret.private_key": pgp,
}

SECRET_TEMPLATES = [
    "export TOKEN={v}",
    "Here is the key: {v}",
    "config = {{ \"credential\": \"{v}\" }}",
    "Why does {v} return 401?",
    "2026-12-06T10:15:02Z INFO using credential {v} for the sync job",
    "I pasted this into the CI settings: {v}",
    "The deploy script reads {v} from the vault.",
]

# (template, detector): the detector labels the {v} slot
CONTEXT_SECRETS = [
    ("DefaultEndpointsProtocol=https;AccountName=prodstore;AccountKey={v};EndpointSuffix=core.windows.net",
     "secret.azure_storage", lambda: base64.b64encode(rnd.randbytes(64)).decode()),
    ("Authorization: Basic {v}", "secret.basic_auth",
     lambda: base64.b64encode(f"{rnd.choice(['admin', 'deploy', 'svc-backup', 'jenkins'])}:{password()}".encode()).decode()),
    ("curl -H 'Authorization: Basic {v}' https://ci.internal/api", "secret.basic_auth",
     lambda: base64.b64encode(f"ci:{password()}".encode()).decode()),
    ("DATABASE_URL=postgres://app:{v}@db.internal:5432/prod", "secret.url_credentials", password),
    ("git clone https://deploy:{v}@git.internal/team/repo.git", "secret.url_credentials", password),
    ("redis://:{v}@cache.internal:6379/0 is the broker", "secret.url_credentials", password),
    ("mongodb+srv://reporting:{v}@cluster0.example.net/analytics", "secret.url_credentials", password),
    ("password: {v}", "secret.password", password),
    ("DB_PASSWORD={v}", "secret.password", password),
    ("the admin pwd = '{v}' until Friday", "secret.password", password),
    ("passphrase: {v}", "secret.password", password),
    ("SECRET_KEY = '{v}'", "secret.assigned",
     lambda: "django-insecure-" + mixed(string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)", 50)),
    ("GET /v1/export?access_token={v} HTTP/1.1 200", "secret.assigned", lambda: mixed(ALNUM, 32)),
    ("Authorization: Bearer {v}", "secret.bearer", lambda: mixed(ALNUM + "._-", 40)),
    ("curl -H \"Authorization: Bearer {v}\" https://api.internal/v2/jobs", "secret.bearer",
     lambda: mixed(ALNUM, 32) + "." + mixed(ALNUM, 16)),
]

HEX = "0123456789abcdef"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

# More providers with documented token shapes (added after the first file; generated after
# everything above so the earlier rows stay as they were).
MORE_SECRETS = {
    "secret.openrouter": lambda: "sk-or-v1-" + pick(HEX, 64),
    "secret.groq": lambda: "gsk_" + mixed(ALNUM, 52),
    "secret.replicate": lambda: "r8_" + mixed(ALNUM, 37),
    "secret.perplexity": lambda: "pplx-" + mixed(ALNUM, 48),
    "secret.xai": lambda: "xai-" + mixed(ALNUM, 80),
    "secret.pinecone": lambda: "pcsk_" + mixed(ALNUM, 6) + "_" + mixed(ALNUM, 64),
    "secret.langsmith": lambda: "lsv2_" + rnd.choice(["pt", "sk"]) + "_" + pick(HEX, 32) + "_" + pick(HEX, 10),
    "secret.tavily": lambda: "tvly-" + rnd.choice(["", "dev-"]) + mixed(ALNUM, 32),
    "secret.sendgrid": lambda: "SG." + mixed(URLSAFE, 22) + "." + mixed(URLSAFE, 43),
    "secret.npm": lambda: "npm_" + mixed(ALNUM, 36),
    "secret.pypi": lambda: "pypi-AgEIcHlwaS5vcmc" + mixed(URLSAFE, 70),
    "secret.rubygems": lambda: "rubygems_" + pick(HEX, 48),
    "secret.shopify": lambda: rnd.choice(["shpat_", "shpss_", "shpca_", "shppa_"]) + pick(HEX, 32),
    "secret.twilio": lambda: "SK" + pick(HEX, 32),
    "secret.databricks": lambda: "dapi" + pick(HEX, 32),
    "secret.vault": lambda: rnd.choice(["hvs.", "hvb."]) + mixed(URLSAFE, 90),
    "secret.age": lambda: "AGE-SECRET-KEY-1" + pick(BECH32.upper(), 58),
    "secret.docker": lambda: "dckr_pat_" + mixed(URLSAFE, 27),
    "secret.atlassian": lambda: "ATATT3" + mixed(URLSAFE, 186) if rnd.random() < 0.5 else "ATBB" + mixed(ALNUM, 32),
    "secret.linear": lambda: "lin_api_" + mixed(ALNUM, 40),
    "secret.postman": lambda: "PMAK-" + pick(HEX, 24) + "-" + pick(HEX, 34),
    "secret.doppler": lambda: "dp." + rnd.choice(["pt", "st", "sa"]) + "." + mixed(ALNUM, 43),
    "secret.pulumi": lambda: "pul-" + pick(HEX, 40),
    "secret.grafana": lambda: "glsa_" + mixed(ALNUM, 32) + "_" + pick(HEX, 8) if rnd.random() < 0.5 else "glc_" + mixed(ALNUM, 120),
    "secret.newrelic": lambda: "NRAK-" + mixed(string.ascii_uppercase + DIGITS, 27),
    "secret.sentry": lambda: "sntrys_" + mixed(ALNUM, 120),
    "secret.figma": lambda: "figd_" + mixed(URLSAFE, 40),
    "secret.onepassword": lambda: "ops_eyJ" + mixed(ALNUM, 300),
    "secret.terraform": lambda: mixed(ALNUM, 14) + ".atlasv1." + mixed(ALNUM, 67),
    "secret.supabase": lambda: "sbp_" + pick(HEX, 40),
    "secret.netlify": lambda: "nfp_" + mixed(ALNUM, 36),
    "secret.flyio": lambda: "fo1_" + mixed(URLSAFE, 43),
    "secret.heroku": lambda: "HRKU-AA" + mixed(URLSAFE, 58),
    "secret.mapbox": lambda: "sk.eyJ" + mixed(ALNUM, 60) + "." + mixed(URLSAFE, 22),
    "secret.azure_ad": lambda: mixed(ALNUM, 3) + str(rnd.randint(0, 9)) + "Q~" + mixed(ALNUM + "_~.-", 34),
    "secret.alibaba": lambda: "LTAI" + mixed(ALNUM, 20),
    "secret.square": lambda: "sq0atp-" + mixed(URLSAFE, 22) if rnd.random() < 0.5 else "EAAA" + mixed(URLSAFE, 60),
    "secret.airtable": lambda: "pat" + mixed(ALNUM, 14) + "." + pick(HEX, 64),
    "secret.planetscale": lambda: "pscale_tkn_" + mixed(ALNUM, 43),
    "secret.dropbox": lambda: "sl." + mixed(URLSAFE, 140),
    "secret.resend": lambda: "re_" + mixed(ALNUM, 8) + "_" + mixed(ALNUM, 24),
    "secret.stripe": lambda: "whsec_" + mixed(ALNUM, 32),
    "secret.google": lambda: "GOCSPX-" + mixed(URLSAFE, 28) if rnd.random() < 0.5 else "ya29." + mixed(URLSAFE, 120),
    "secret.slack": lambda: "xapp-1-A" + pick(string.ascii_uppercase + DIGITS, 10) + "-" + pick(DIGITS, 13) + "-" + pick(HEX, 64),
}

MORE_CONTEXT = [
    ("GET /api/v2/export?api_key={v}&page=2&limit=50 200 31ms", "secret.assigned", lambda: mixed(ALNUM, 32)),
    ("https://files.example.net/report.pdf?token={v}&download=1", "secret.assigned", lambda: mixed(ALNUM, 40)),
    ("The wifi password is {v} for guests.", "secret.password", password),
    ("my password was {v}, please reset it", "secret.password", password),
    ("Set password={v}.", "secret.password", password),
    ("Tel. {v} (mobil)", "pii.phone", lambda: f"01{rnd.randint(50, 79)} {rnd.randint(1000000, 9999999)}"),
    ("UK mobile: {v}", "pii.phone", lambda: f"07{rnd.randint(100, 999)} {rnd.randint(100000, 999999)}"),
    ("Büro: {v}", "pii.phone", lambda: f"030 {rnd.randint(10000000, 99999999)}"),
]

MORE_NEGATIVES = [
    "export OPENROUTER_API_KEY=sk-or-v1-your-key-here",
    "GROQ_API_KEY=gsk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "NPM_TOKEN=npm_<token>",
    "Our tokens start with npm_ and are 40 characters long.",
    "Shopify admin tokens look like shpat_ followed by 32 hex characters.",
    "The SK prefix marks a Twilio API key; the AC prefix an account SID.",
    "Vault tokens begin with hvs. since 1.10.",
    "age keys start with AGE-SECRET-KEY-1; never share them.",
    "See /search?q=api+key+rotation&page=2 for the guide.",
    "The password is incorrect.",
    "Your password was reset.",
    "Call the helpdesk on extension 4411.",
]

DIGITS = string.digits


def ssn_value():
    area = rnd.randint(1, 899)
    while area == 666:
        area = rnd.randint(1, 899)
    return f"{area:03d}", f"{rnd.randint(1, 99):02d}", f"{rnd.randint(1, 9999):04d}"


PII_CONTEXT = [
    ("SSN {v} on the W-2", "pii.ssn", lambda: " ".join(ssn_value())),
    ("social security number: {v}", "pii.ssn", lambda: "".join(ssn_value())),
    ("Her SSN is {v}.", "pii.ssn", lambda: "".join(ssn_value())),
    ("Call me on {v} tomorrow.", "pii.phone",
     lambda: f"1-{rnd.randint(2, 9)}{rnd.randint(0, 99):02d}-{rnd.randint(2, 9)}{rnd.randint(0, 99):02d}-{rnd.randint(0, 9999):04d}"),
    ("The office line is {v}.", "pii.phone",
     lambda: f"0044 {rnd.randint(20, 79)} {rnd.randint(1000, 9999)} {rnd.randint(1000, 9999)}"),
    ("Reach the Berlin desk at {v}.", "pii.phone", lambda: f"0049 30 {rnd.randint(1000000, 9999999)}"),
    ("Ring {v} for the London office", "pii.phone",
     lambda: f"020 {rnd.randint(3000, 8999)} {rnd.randint(1000, 9999)}"),
    ("Mobile: {v}", "pii.phone", lambda: f"07{rnd.randint(100, 999)} {rnd.randint(100, 999)} {rnd.randint(100, 999)}"),
    ("Appelez le {v} demain.", "pii.phone", lambda: "0" + str(rnd.randint(1, 9)) + "".join(f" {rnd.randint(0, 99):02d}" for _ in range(4))),
    ("The client connected from {v} at noon.", "pii.ipv6",
     lambda: f"::ffff:{rnd.randint(11, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"),
]

HARD_NEGATIVES = [
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "export OPENAI_API_KEY=sk-your-api-key-here",
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "Set HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx before running.",
    "api_key = \"<your-api-key>\"",
    "token: ${GITLAB_TOKEN}",
    "client_secret: {{ vault_client_secret }}",
    "DATABASE_URL=postgres://user:password@localhost:5432/app",
    "redis://:changeme@localhost:6379",
    "postgres://app:${DB_PASSWORD}@db:5432/app",
    "password: ********",
    "password = changeme",
    "Authorization: Bearer <token>",
    "Authorization: Bearer YOUR_ACCESS_TOKEN",
    "use std::io::Result;",
    "impl From<Error> for io::Error { fn from(e: Error) -> Self { todo!() } }",
    "let v = Vec::<u8>::with_capacity(16);",
    "std::collections::HashMap::new()",
    "the ratio was 12:34:56 at the end of the run",
    "Meeting at 10:30:00, room 4.",
    "Use the key-value store for sessions.",
    "Our Slack is at https://hooks.slack.com/ (ask for an invite).",
    "The bot id is 123456789 and its name is helper.",
    "Order 004412345678 has shipped.",
    "PGP public key: -----BEGIN PGP PUBLIC KEY BLOCK----- (see keyserver)",
    "Basic auth is configured in the proxy, not here.",
    "See https://docs.example.com:8443/guide for the port.",
    "Pass settings as key=value pairs, e.g. retries=3.",
    "We upgraded to version 10.2.0.1 last night.",
    "release 1.4.2.7 fixes the crash",
    "Firmware 2.0.1.15 is required for the new sensor.",
    "Running build 4.18.0.240 on the canary hosts.",
    "Pin it with pip install widget==1.2.3.4 until the fix lands.",
    "requirements: requests>=2.31.0.1, urllib3~=2.0.7.1",
    "The 4.2.0.1-beta and 4.2.0.1-rc2 builds are on the mirror.",
    "Tagged 7.1.0.3+git20261201 for the release branch.",
    "Windows reports 10.0.19045.3803, the old box 6.1.7601.2.",
]


def span_of(text, start_char, value):
    start = len(text[:start_char].encode())
    return {"start": start, "end": start + len(value.encode())}


def fill(template, det, value):
    before, after = template.split("{v}")
    before = before.replace("{{", "{").replace("}}", "}")
    after = after.replace("{{", "{").replace("}}", "}")
    text = before + value + after
    return {"text": text, "spans": [dict(span_of(text, len(before), value), detector=det)]}


def rows():
    out = []
    for det, gen in SECRETS.items():
        for _ in range(40 if det != "secret.private_key" else 20):
            out.append(fill(rnd.choice(SECRET_TEMPLATES), det, gen()))
    for template, det, gen in CONTEXT_SECRETS + PII_CONTEXT:
        for _ in range(16):
            out.append(fill(template, det, gen()))
    for text in HARD_NEGATIVES:
        out.append({"text": text, "spans": []})
    for det, gen in MORE_SECRETS.items():
        for _ in range(12):
            out.append(fill(rnd.choice(SECRET_TEMPLATES), det, gen()))
    for template, det, gen in MORE_CONTEXT:
        for _ in range(12):
            out.append(fill(template, det, gen()))
    for text in MORE_NEGATIVES:
        out.append({"text": text, "spans": []})
    seen, unique = set(), []
    for r in out:
        if r["text"] not in seen:
            seen.add(r["text"])
            unique.append(r)
    return unique


def main():
    rs = rows()
    with open(OUT, "w", encoding="utf-8") as f:
        for r in rs:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"pii_secrets_classes: {len(rs)} rows, {sum(1 for r in rs if not r['spans'])} hard negatives")


if __name__ == "__main__":
    main()
