import numpy as np
import pytest

from loop.clean import split
from loop.example import Message, make_example
from loop.recipe import NearDedupConfig, SplitConfig

WORDS = [f"w{i}" for i in range(400)]


def text(rng, n=70):
    return " ".join(rng.choice(WORDS, n))


def ex(prompt, answer, **meta):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)],
        source="t",
        format="chat",
        meta=meta,
    )


def shingles(t):
    w = t.split()
    return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}


def jaccard(a, b):
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def full(e):
    return "\n".join(m.content for m in e.messages)


def pool_with_near_duplicates(seed=0, groups=15, singles=60):
    """Groups of 3 near-duplicates (the same word changed, ~75 words: Jaccard ~0.9) + unique rows."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(groups):
        prompt, answer = f"Question {g}: " + text(rng, 5), text(rng)
        for k in range(3):
            words = answer.split()
            words[10] = f"edit{k}"
            out.append(ex(prompt if k != 2 else prompt + " please", " ".join(words)))
    out += [ex(f"Single {i}: " + text(rng, 5), text(rng)) for i in range(singles)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def test_validation_has_no_near_duplicate_of_a_training_example():
    pool = pool_with_near_duplicates()
    out = split.split_validation(pool, SplitConfig(validation=0.2), NearDedupConfig())
    assert len(out.validation) == 21  # 20% of 105
    worst = max(jaccard(full(t), full(v)) for t in out.train for v in out.validation)
    assert worst < 0.8
    removed = {d.index for d in out.drops}
    assert all(d.reason == "near_validation" for d in out.drops)
    assert len(out.train) + len(out.validation) + len(removed) == len(pool)
    assert removed  # the planted groups did straddle the split
    assert {e.split for e in out.train} == {"train"}
    assert {e.split for e in out.validation} == {"validation"}
    # Without the leak check, planted near-duplicates would straddle the split:
    train_all = [pool[i] for i in range(len(pool)) if i not in set(out.validation_index)]
    assert max(jaccard(full(t), full(v)) for t in train_all for v in out.validation) >= 0.8


def test_same_prompt_counts_as_a_leak():
    pool = [ex(f"Prompt {i}", f"Answer number {i} is here") for i in range(10)]
    out = split.split_validation(pool, SplitConfig(validation=0.1), NearDedupConfig())
    v = out.validation[0]
    twin = ex(v.messages[0].content.upper(), "A completely different answer")
    again = split.split_validation(pool + [twin], SplitConfig(validation=0.1), NearDedupConfig())
    assert again.validation == out.validation
    assert [(d.index, d.reason) for d in again.drops] == [(10, "near_validation")]
    assert "same prompt as validation" in again.drops[0].detail


def test_choice_is_seeded_and_independent_of_pool_order():
    pool = [ex(f"p{i}", f"a{i}") for i in range(50)]
    cfg = SplitConfig(validation=0.1, seed=3)
    ids = {pool[i].id for i in split.choose_validation(pool, cfg)}
    shuffled = pool[::-1]
    assert {shuffled[i].id for i in split.choose_validation(shuffled, cfg)} == ids
    other = {pool[i].id for i in split.choose_validation(pool, SplitConfig(validation=0.1, seed=4))}
    assert other != ids and len(ids) == 5


def test_sizes_caps_and_stratification():
    pool = [ex(f"p{i}", "a", task="a" if i < 40 else "b") for i in range(50)]
    assert len(split.choose_validation(pool, SplitConfig(validation=0.2, max_validation=3))) == 3
    chosen = split.choose_validation(pool, SplitConfig(validation=0.2, stratify_by="task"))
    tasks = [pool[i].meta["task"] for i in chosen]
    assert (tasks.count("a"), tasks.count("b")) == (8, 2)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        split.choose_validation(pool[:1], SplitConfig())


def test_raw_pool_holds_out_validation_and_its_duplicates():
    def rec(i, answer=None):
        return ex(f"prompt {i}", answer or f"answer {i}")

    long = " ".join(f"word{i}" for i in range(60))
    raw = [rec(0), rec(1), rec(2, long), rec(3, long.replace("word30", "other")), rec(4)]
    validation = [rec(0), rec(2, long)]
    out = split.raw_pool(raw, validation, NearDedupConfig())
    assert [e.split for e in out] == ["held_out", "train", "held_out", "held_out", "train"]
    assert "near-duplicate of validation" in out[3].meta["held_out"]
    assert out[1].meta["tiers"] == ["raw"]
    # what the semantic test found is held out too, where no cheaper test caught it first
    why = {1: "paraphrase of validation x", 0: "paraphrase of validation y"}
    out = split.raw_pool(raw, validation, NearDedupConfig(), paraphrases=why)
    assert [e.split for e in out] == ["held_out", "held_out", "held_out", "held_out", "train"]
    assert out[1].meta["held_out"] == why[1]
    assert out[0].meta["held_out"].startswith("same record as validation")
