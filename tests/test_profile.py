"""Profiling a pool and the defaults derived from it: labels, options, JSON, free text."""

from __future__ import annotations

import json
import random

from loop.example import Message, make_example
from loop.profile import default_evaluators, derived_defaults, length_bounds, profile_pool


def ex(prompt: str, answer: str, system: str | None = None):
    msgs = [Message("user", prompt), Message("assistant", answer)]
    if system:
        msgs.insert(0, Message("system", system))
    return make_example(msgs, source="t", format="chat")


def words(texts):
    return [len(t.split()) for t in texts]


def test_label_pool():
    rng = random.Random(0)
    labels = ["positive", "negative", "neutral"]
    pool = [
        ex(f"Review {i}: the film was {rng.random():.3f} good", rng.choice(labels))
        for i in range(90)
    ]
    p = profile_pool(pool, words)
    assert (p.kind, p.task) == ("labels", "classification")
    assert set(p.labels) == set(labels) and sum(p.label_counts.values()) == 90
    assert length_bounds(p) == (1, 17)  # one-word answers: floor 1, ceiling 1 + 16
    settings = {d.setting: d.value for d in derived_defaults(p)}
    assert settings == {
        "clean.length.min_answer_tokens": 1,
        "clean.length.max_answer_tokens": 17,
        "clean.format.answer_format": "none",
    }
    names = [e["name"] for e in default_evaluators(p)]
    assert names == ["normalized_match", "choice_loglik"]
    assert default_evaluators(p)[1]["params"] == {"choices": list(p.labels)}


def test_option_letter_pool():
    pool = [
        ex(
            f"Question {i}: more or less?\n\n A: more\n B: less",
            "AB"[i % 2],
            system="Answer with a letter.",
        )
        for i in range(40)
    ]
    p = profile_pool(pool, words)
    assert (p.kind, p.labels, p.choice_share, p.shared_system) == ("choice", ("A", "B"), 1.0, 1.0)
    assert default_evaluators(p) == [{"name": "choice_loglik", "params": {"letters": True}}]


def test_json_pool():
    pool = [
        ex(f"Extract: name=n{i} age={i}", json.dumps({"name": f"n{i}", "age": i}))
        for i in range(30)
    ]
    p = profile_pool(pool, words)
    assert p.kind == "json" and p.json_share == 1.0
    settings = {d.setting: d.value for d in derived_defaults(p)}
    assert settings["clean.format.answer_format"] == "json"
    assert default_evaluators(p) == [{"name": "json_match", "params": {}}]


def test_free_text_pool_bounds_follow_the_lengths():
    rng = random.Random(1)
    vocab = [
        "the",
        "a",
        "river",
        "stone",
        "ran",
        "over",
        "quickly",
        "under",
        "bright",
        "cold",
        "warm",
        "light",
    ]
    pool = [
        ex(f"Describe scene {i}.", " ".join(rng.choice(vocab) for _ in range(rng.randint(20, 60))))
        for i in range(200)
    ]
    p = profile_pool(pool, words)
    assert (p.kind, p.task) == ("text", "qa")
    lo, hi = length_bounds(p)
    q05, q95 = p.answer_tokens["q05"], p.answer_tokens["q95"]
    assert 20 <= q05 <= 25 and 55 <= q95 <= 60
    assert lo == int(q05 // 4) and hi == max(int(-(-4 * q95 // 1)), int(-(-q95 // 1)) + 16)
    assert default_evaluators(p) == [{"name": "rouge_l", "params": {}}]
    long = [ex(f"Write essay {i}.", " ".join(["word"] * 300)) for i in range(10)]
    assert profile_pool(long, words).task == "generation"


def test_settings_the_recipe_gives_are_not_derived():
    p = profile_pool([ex("q", "A")] * 10, words)
    assert (
        derived_defaults(p, min_answer_tokens=3, max_answer_tokens=0, answer_format_set="none")
        == []
    )


def test_answer_meaning_reads_the_option_a_letter_points_to():
    from loop.profile import answer_meaning

    assert answer_meaning(ex("Speed?\n\n A: higher\n B: lower", "B")) == "lower"
    assert answer_meaning(ex("Speed?\n\n (A) higher\n (B) lower", "(A)")) == "higher"
    assert answer_meaning(ex("No options here.", "B")) == "B"
    assert answer_meaning(ex("Speed?\n\n A: higher\n B: lower", "Both")) == "Both"
