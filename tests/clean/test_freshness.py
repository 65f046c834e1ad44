"""The freshness step: dates against not_before / max_age, and deprecated terms."""

from __future__ import annotations

import datetime as dt

import pytest

from loop.clean import freshness
from loop.clean.base import StepContext
from loop.errors import RecipeError
from loop.example import Message, make_example
from loop.recipe import DeprecatedTerm, FreshnessConfig, parse_recipe


def ex(answer: str, date=None, prompt: str = "q"):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)],
        source=answer[:12],
        format="chat",
        meta={"date": date} if date is not None else {},
    )


def run(pool, today=None, **cfg):
    return freshness.run(pool, FreshnessConfig(**cfg), StepContext(), today=today)


POOL = [
    ex("old answer", "2021-04-02"),
    ex("recent answer", "2024-06-30T12:00:00+00:00"),
    ex("no date"),
    ex("edge", "2023-01-01"),
]


def test_not_before_drops_older_records_with_the_date_in_the_reason():
    out = run(POOL, not_before="2023-01-01")
    assert [(d.index, d.reason, d.detail) for d in out.drops] == [
        (0, "outdated", "dated 2021-04-02, before not_before 2023-01-01")
    ]
    assert out.counts == {"dated": 3, "undated": 1}


def test_max_age_counts_back_from_as_of_or_today():
    out = run(POOL, max_age_days=365, as_of="2025-01-01")
    assert [(d.index, d.detail) for d in out.drops] == [
        (0, "dated 2021-04-02, more than 365 days old (cut-off 2024-01-02)"),
        (3, "dated 2023-01-01, more than 365 days old (cut-off 2024-01-02)"),
    ]
    out = run(POOL, max_age_days=30, today=dt.date(2024, 7, 15))
    assert [d.index for d in out.drops] == [0, 3]
    # the later of the two cut-offs wins
    out = run(POOL, max_age_days=3650, not_before="2022-01-01", as_of="2025-01-01")
    assert [d.index for d in out.drops] == [0]


def test_flag_policy_and_undated():
    out = run(POOL, not_before="2023-01-01", policy="flag", undated="flag")
    assert out.drops == ()
    assert [e.meta.get("flags") for e in out.examples] == [["outdated"], None, ["undated"], None]
    out = run(POOL, undated="drop")
    assert [(d.index, d.reason) for d in out.drops] == [(2, "undated")]


def test_deprecated_terms_flag_with_a_replacement_hint():
    pool = [
        ex("Use tf.contrib.layers for that."),
        ex("Run it with Python 2.7 and print 'x'."),
        ex("Python 3.12 is fine."),
        ex("Call the PyTorch API."),
    ]
    terms = (
        DeprecatedTerm("tf.contrib", replacement="tf.keras"),
        DeprecatedTerm(r"python\s*2(\.\d+)?\b", regex=True, replacement="Python 3"),
    )
    out = run(pool, deprecated=terms)
    assert out.drops == ()
    assert [e.meta.get("flags") for e in out.examples] == [
        ["deprecated:tf.contrib"],
        [r"deprecated:python\s*2(\.\d+)?\b"],
        None,
        None,
    ]
    assert out.examples[0].meta["deprecated"] == [
        {"term": "tf.contrib", "found": "tf.contrib", "replacement": "tf.keras"}
    ]
    dropped = run(pool, deprecated=terms, deprecated_policy="drop")
    assert [(d.index, d.reason, d.detail) for d in dropped.drops] == [
        (0, "deprecated", "mentions 'tf.contrib'; use 'tf.keras'"),
        (1, "deprecated", "mentions 'Python 2.7'; use 'Python 3'"),
    ]


def test_a_phrase_matches_whole_words_only():
    pool = [ex("the mxnet way"), ex("mxnetwork is new")]
    out = run(pool, deprecated=(DeprecatedTerm("MXNet"),))
    assert [bool(e.meta.get("flags")) for e in out.examples] == [True, False]


def test_recipe_checks_name_the_field():
    with pytest.raises(RecipeError) as err:
        parse_recipe(
            {
                "name": "t",
                "pool": {"paths": ["a.jsonl"]},
                "clean": {
                    "steps": ["freshness"],
                    "freshness": {
                        "not_before": "someday",
                        "deprecated": [{"pattern": "(", "regex": True}],
                    },
                },
            }
        )
    errors = err.value.errors
    assert "clean.freshness.not_before: expected a date such as 2025-01-01, got 'someday'" in errors
    assert any(
        e.startswith("clean.freshness.deprecated[0].pattern: not a valid regex") for e in errors
    )
    with pytest.raises(RecipeError, match="clean.freshness: the step is in clean.steps but checks"):
        parse_recipe({"name": "t", "pool": {"paths": ["a"]}, "clean": {"steps": ["freshness"]}})


def test_review_rows_show_the_replacement_hint():
    from loop.review import _row

    out = run([ex("Use tf.contrib here")], deprecated=(DeprecatedTerm("tf.contrib", "tf.keras"),))
    assert _row("tier all", out.examples[0])["detail"] == "mentions 'tf.contrib', use 'tf.keras'"
