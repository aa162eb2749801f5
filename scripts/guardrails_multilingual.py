"""Multilingual prompt-injection and benign rows for the guardrail corpus, composed from the
phrase tables in scripts/guardrails-multilingual/<lang>.json (25 languages, written for this
repository; its licence).

Each table has: `hijack` (override the instructions), `payload` (what the attacker wants),
`persona` (jailbreak framings), `smuggle_intro` (instructions addressed to the model inside a
document), `carrier` (ordinary document sentences) and `benign` (hard negatives: legitimate
"ignore my last e-mail", questions about prompt injection, harmless role-play, code).

Rows carry a `group`: the phrase a row was made from. scripts/guardrails-corpus.py holds out a
fifth of the groups, so held-out rows use hijack, persona and smuggling phrases (and benign
texts) the learned scorer never saw in training.

    python3 scripts/guardrails_multilingual.py    # counts per language and a few samples
"""

import json
import os
import random

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guardrails-multilingual")
SOURCE = "gatehouse:multilingual"
SEPARATORS = [" ", ". ", "\n", ", ", " - ", "\n\n"]


def tables():
    out = {}
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".json"):
            with open(os.path.join(HERE, name), encoding="utf-8") as f:
                out[name[:-5]] = json.load(f)
    return out


def rows(rnd):
    t = tables()
    english_carriers = t.get("en", {}).get("carrier", [])
    out = []

    def add(text, label, category, lang, group):
        if 20 <= len(text) <= 4000:
            out.append({"text": text, "label": label, "category": category, "source": SOURCE,
                        "lang": lang, "group": f"ml:{lang}:{group}"})

    for lang, d in t.items():
        hijack, payload, persona = d["hijack"], d["payload"], d["persona"]
        intro, carrier = d["smuggle_intro"], d["carrier"]
        for i, h in enumerate(hijack):
            # each hijack phrase with two payloads, one of them on its own line now and then
            for p in rnd.sample(payload, 2):
                add(h + rnd.choice(SEPARATORS) + p, "injection", "instruction_hijacking", lang, f"hijack:{i}")
        for i, p in enumerate(persona):
            add(p + rnd.choice(SEPARATORS) + rnd.choice(payload), "injection", "role_confusion", lang, f"persona:{i}")
            add(p, "injection", "role_confusion", lang, f"persona:{i}")
            add(rnd.choice(hijack) + rnd.choice(SEPARATORS) + p, "injection", "role_confusion", lang, f"persona:{i}")
        for k, s in enumerate(intro):
            for _ in range(2):
                before = rnd.sample(carrier, rnd.randint(1, 2))
                attack = rnd.choice([rnd.choice(hijack) + " " + rnd.choice(payload), rnd.choice(payload)])
                after = rnd.sample(carrier, rnd.randint(0, 1))
                sep = rnd.choice(["\n", " ", "\n\n"])
                add(sep.join(before + [s + " " + attack] + after), "injection", "context_smuggling", lang, f"smuggle:{k}")
            if english_carriers and lang != "en":
                add(rnd.choice(english_carriers) + "\n" + s + " " + rnd.choice(payload), "injection",
                    "context_smuggling", lang, f"smuggle:{k}")
        for i, b in enumerate(d["benign"]):
            add(b, "benign", "benign", lang, f"benign:{i}")
        # documents of ordinary sentences, as many as the documents that smuggle instructions
        # among the same sentences: the sentences themselves must not read as an attack
        for i in range(len(carrier)):
            for _ in range(2):
                others = rnd.sample([c for j, c in enumerate(carrier) if j != i], rnd.randint(1, 3))
                add(rnd.choice(["\n", " "]).join([carrier[i]] + others), "benign", "benign", lang, f"carrier:{i}")
    return out


if __name__ == "__main__":
    rs = rows(random.Random(1))
    counts = {}
    for r in rs:
        counts[(r["lang"], r["label"])] = counts.get((r["lang"], r["label"]), 0) + 1
    for k in sorted(counts):
        print(*k, counts[k])
    for r in random.Random(2).sample(rs, 3):
        print(json.dumps(r, ensure_ascii=False)[:300])
