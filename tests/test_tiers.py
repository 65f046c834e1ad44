import pytest

from loop.clean.result import CleanResult
from loop.example import Message, make_example
from loop.recipe import TierSpec
from loop.tiers import (
    assign_tiers,
    select,
    tier_pool,
    tier_sizes,
    validation_set,
)


def ex(i, score=None, split=None, answer=None):
    e = make_example(
        [Message("user", f"prompt {i}"), Message("assistant", answer or f"answer {i}")],
        source=f"p:{i}",
        format="chat",
    )
    if score is not None:
        e.scores["quality"] = score
    if split:
        e = e.__class__(**{**e.__dict__, "split": split})
    return e


SCORES = [0.5, 0.9, 0.1, 0.7, 0.9, 0.3, 0.6, 0.2, 0.8, 0.4]


def test_top_fraction_min_score_and_all():
    train = [ex(i, s) for i, s in enumerate(SCORES)]
    assert select(train, TierSpec("top", top=0.3)) == [1, 4, 8]
    assert select(train, TierSpec("top", top=0.25)) == [1, 4, 8]  # 2.5 rounds to 3
    assert select(train, TierSpec("tie", top=0.1)) == [1]  # equal scores: the first seen
    assert select(train, TierSpec("good", min_score=0.6)) == [1, 3, 4, 6, 8]
    assert select(train, TierSpec("all")) == list(range(10))
    assert select(train, TierSpec("all", top=1.0)) == list(range(10))


def test_overlapping_membership():
    train = [ex(i, s) for i, s in enumerate(SCORES)]
    specs = [TierSpec("top30", top=0.3), TierSpec("top70", top=0.7), TierSpec("raw")]
    out = assign_tiers(train, specs)
    assert out[1].meta["tiers"] == ["top30", "top70"]
    assert out[0].meta["tiers"] == ["top70"]
    assert out[2].meta["tiers"] == []
    assert sum("top70" in e.meta["tiers"] for e in out) == 7
    assert "tiers" not in train[1].meta


def test_scores_are_required_for_score_tiers():
    with pytest.raises(ValueError, match="no quality score"):
        select([ex(0)], TierSpec("top", top=0.5))


TIERS = (TierSpec("top", top=0.5), TierSpec("raw"))


def result_with(examples, raw=(), tiers=TIERS):
    return CleanResult(tuple(examples), tuple(raw), (), (), {}, tuple(tiers), "k")


def test_tier_pool_and_validation_set():
    train = assign_tiers(
        [ex(i, s, "train") for i, s in enumerate(SCORES[:4])], [TierSpec("top", top=0.5)]
    )
    val = [ex(9, 0.99, "validation")]
    raw = [ex(20, split="train"), ex(21, split="held_out")]
    result = result_with(train + val, raw)
    assert [e.source for e in tier_pool(result, "top")] == ["p:1", "p:3"]
    assert validation_set(result) == val
    assert tier_pool(result, "raw") == raw[:1]
    assert tier_sizes(result) == {"top": 2, "raw": 1}
    with pytest.raises(KeyError, match="unknown tier 'best'"):
        tier_pool(result, "best")
