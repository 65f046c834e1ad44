import pytest

from loop.clean import contradictions
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import ContradictionsConfig


def ex(prompt, answer, quality=None):
    e = make_example(
        [Message("user", prompt), Message("assistant", answer)], source=prompt, format="chat"
    )
    if quality is not None:
        e.scores["quality"] = quality
    return e


def run(pool, **cfg):
    return contradictions.run(pool, ContradictionsConfig(**cfg), StepContext())


def drops(out):
    return [(d.index, d.reason) for d in out.drops]


POOL = [
    ex("What is the capital of France?", "Paris"),
    ex("what is the capital of france", "Lyon"),  # same prompt after normalization
    ex("What is the capital of France??", "paris."),  # agrees with the first
    ex("What is the capital of Italy?", "Rome"),
    ex("What is the capital of Italy, roughly?", "Milan"),  # another prompt: not compared
]


def test_keep_one_drops_only_the_disagreeing_answer():
    out = run(POOL)
    assert drops(out) == [(1, "contradiction")]
    assert out.drops[0].duplicate_of == POOL[0].id


def test_keep_one_prefers_the_higher_quality_record():
    pool = [ex("2+2?", "5", quality=0.1), ex("2 + 2?", "4", quality=0.9)]
    out = run(pool)
    assert drops(out) == [(0, "contradiction")]


def test_drop_all_and_flag():
    assert drops(run(POOL, policy="drop_all")) == [
        (0, "contradiction"),
        (1, "contradiction"),
        (2, "contradiction"),
    ]
    out = run(POOL, policy="flag")
    assert out.drops == ()
    assert [bool(e.meta.get("flags")) for e in out.examples] == [True, True, True, False, False]


def test_answer_similarity():
    sim = contradictions.answer_similarity
    assert sim("The capital is Paris.", "the capital is paris") == 1.0
    assert sim('{"a": 1, "b": [2, 3]}', '{"b": [2, 3], "a": 1}') == 1.0
    assert sim("The answer is 42.", "The answer is 43.") == pytest.approx(0.75)
    assert sim("yes", "no") == 0.0


def test_similarity_threshold_decides():
    pool = [ex("Q", "The answer is 42."), ex("q", "The answer is 43.")]
    assert drops(run(pool, similarity=0.9)) == [(1, "contradiction")]
    assert drops(run(pool, similarity=0.7)) == []


def dated(prompt, answer, date):
    e = ex(prompt, answer)
    return e.__class__(**{**e.__dict__, "meta": {"date": date} if date else {}})


def test_newest_keeps_the_latest_dated_answer():
    pool = [
        dated("Latest Python version?", "Python 3.9", "2020-10-05"),
        dated("latest python version", "Python 3.13", "2024-10-07"),
        dated("Latest Python version?", "Python 3.11", "2022-10-24"),
        dated("Latest python version!", "Python 3.13", None),  # agrees with the newest: kept
        dated("Capital of France?", "Paris", None),
        dated("capital of france", "Lyon", None),  # no dates: keep_one's choice
    ]
    out = run(pool, policy="newest")
    assert [(d.index, d.detail, d.duplicate_of) for d in out.drops] == [
        (
            0,
            f"older answer (2020-10-05) than {pool[1].id}'s (2024-10-07), similarity 0.67",
            pool[1].id,
        ),
        (
            2,
            f"older answer (2022-10-24) than {pool[1].id}'s (2024-10-07), similarity 0.67",
            pool[1].id,
        ),
        (5, f"answer differs from {pool[4].id}'s (no dates; similarity 0.00)", pool[4].id),
    ]
