"""A synthetic English-like corpus, so the demo runs anywhere (no data folder needed).

Sentences come from a small probabilistic grammar over real words with agreement (singular/plural
subjects and verbs) and topic-dependent vocabulary, so a model has structure to learn at several
scales (spelling, agreement, topic). Deterministic: document i of seed s is always the same text.
"""

from __future__ import annotations

import random

TOPICS = {
    "sea": (["sailor", "ship", "captain", "wave", "harbour", "gull"], ["sails", "drifts", "anchors", "watches", "rows"],
            ["grey", "salty", "calm", "stormy", "distant"]),
    "farm": (["farmer", "horse", "field", "barn", "lamb", "orchard"], ["ploughs", "grazes", "harvests", "feeds", "waits"],
             ["green", "muddy", "golden", "quiet", "early"]),
    "city": (["clerk", "street", "tram", "lamp", "market", "bridge"], ["hurries", "sells", "crosses", "glows", "closes"],
             ["busy", "narrow", "crowded", "wet", "bright"]),
    "house": (["mother", "child", "kettle", "window", "garden", "letter"], ["sings", "sleeps", "boils", "opens", "reads"],
              ["warm", "small", "old", "open", "patient"]),
}
DETS = ["the", "a", "every", "that", "one"]
PREPS = ["near", "beyond", "under", "beside", "towards"]
ADVS = ["slowly", "again", "quietly", "at last", "every morning"]
CONJ = ["and", "but", "while", "because"]


IRREGULAR_PLURALS = {"child": "children"}


def plural_verb(v: str) -> str:
    """The plural form of a third-person singular verb: hurries -> hurry, watches -> watch, sails -> sail."""
    if v.endswith("ies"):
        return v[:-3] + "y"
    return v[:-2] if v.endswith(("shes", "ches", "sses")) else v[:-1]


def plural_noun(n: str) -> str:
    if n in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[n]
    return n + ("es" if n.endswith(("sh", "ch", "s")) else "s")


def _np(rng: random.Random, topic: str, plural: bool) -> str:
    nouns, _, adjs = TOPICS[topic]
    noun = rng.choice(nouns)
    noun = plural_noun(noun) if plural else noun
    phrase = f"{rng.choice(adjs)} {noun}" if rng.random() < 0.5 else noun
    det = rng.choice(["the", "some", "those", "many"]) if plural else rng.choice(DETS)
    if det == "a" and phrase[0] in "aeiou":
        det = "an"
    return f"{det} {phrase}"


def _clause(rng: random.Random, topic: str) -> str:
    plural = rng.random() < 0.4
    _, verbs, _ = TOPICS[topic]
    verb = rng.choice(verbs)
    verb = plural_verb(verb) if plural else verb
    parts = [_np(rng, topic, plural), verb]
    if rng.random() < 0.5:
        parts.append(f"{rng.choice(PREPS)} {_np(rng, topic, rng.random() < 0.3)}")
    if rng.random() < 0.3:
        parts.append(rng.choice(ADVS))
    return " ".join(parts)


def synthetic_sentence(rng: random.Random, topic: str) -> str:
    s = _clause(rng, topic)
    if rng.random() < 0.35:
        s += f", {rng.choice(CONJ)} {_clause(rng, topic)}"
    return s[0].upper() + s[1:] + rng.choice([".", ".", ".", "!", "?"] if rng.random() < 0.1 else ["."])


def synthetic_document(seed: int, index: int) -> str:
    rng = random.Random(f"{seed}:{index}")
    topic = rng.choice(sorted(TOPICS))
    paragraphs = []
    for _ in range(rng.randint(3, 8)):
        paragraphs.append(" ".join(synthetic_sentence(rng, topic) for _ in range(rng.randint(3, 7))))
    return "\n\n".join(paragraphs) + "\n"
