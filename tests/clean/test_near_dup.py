import numpy as np
import pytest

from loop.clean import near_dup
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import NearDedupConfig

WORDS = [
    "river", "stone", "amber", "quiet", "harbor", "lantern", "meadow", "copper", "violet",
    "thunder", "maple", "orbit", "canvas", "falcon", "velvet", "ember", "glacier", "saffron",
    "willow", "prism", "tundra", "cobalt", "marble", "jasmine", "summit", "breeze", "cedar",
    "onyx", "quartz", "lagoon",
]  # fmt: skip


def text(seed, n=60):
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n))


def ex(prompt, answer, quality=None):
    e = make_example(
        [Message("user", prompt), Message("assistant", answer)], source=prompt[:10], format="chat"
    )
    if quality is not None:
        e.scores["quality"] = quality
    return e


def jaccard(a, b, n=3):
    wa, wb = a.lower().split(), b.lower().split()
    sa = {tuple(wa[i : i + n]) for i in range(len(wa) - n + 1)}
    sb = {tuple(wb[i : i + n]) for i in range(len(wb) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def edit(t, positions):
    w = t.split()
    for p in positions:
        w[p] = "zzz" + str(p)
    return " ".join(w)


def test_drops_near_duplicates_and_keeps_near_misses():
    base = text(1)
    close = edit(base, [59])  # one word changed at the end
    far = edit(base, range(0, 60, 6))  # ten words changed: shares few 3-grams
    assert jaccard(base, close) > 0.9 and jaccard(base, far) < 0.5
    pool = [
        ex("Tell me a story.", base),
        ex("Tell me a story.", close),
        ex("Tell me a story.", far),
    ]
    pool.append(ex("Another prompt entirely.", text(2)))
    out = near_dup.run(pool, NearDedupConfig(), StepContext())
    assert [(d.index, d.reason) for d in out.drops] == [(1, "near_duplicate")]
    assert out.drops[0].duplicate_of == pool[0].id
    assert "estimated Jaccard" in out.drops[0].detail


def test_keeps_the_highest_quality_member():
    base = text(3)
    pool = [ex("P", base, quality=0.3), ex("P", edit(base, [10]), quality=0.8)]
    out = near_dup.run(pool, NearDedupConfig(), StepContext())
    assert [(d.index, d.duplicate_of) for d in out.drops] == [(0, pool[1].id)]


def test_words_ignore_case_and_punctuation_and_short_texts_compare_on_words():
    flat, off = near_dup.shingle_hashes(["Hello, World!", "hello world", "b a", "a b", ""], ngram=3)
    rows = [set(flat[int(off[i]) : int(off[i + 1])].tolist()) for i in range(5)]
    assert rows[0] == rows[1] and rows[2] == rows[3] and len(rows[0]) == 2
    assert len(rows[4]) == 1 and rows[4] != rows[0]
    flat, off = near_dup.shingle_hashes(["one two three four", "one two three five"], ngram=3)
    a, b = set(flat[: int(off[1])].tolist()), set(flat[int(off[1]) :].tolist())
    assert len(a) == 2 and len(a & b) == 1  # "one two three" shared, the last 3-gram differs


def test_long_words_hash_on_all_their_bytes():
    long_a = "x" * 40 + "a"
    long_b = "x" * 40 + "b"
    flat, off = near_dup.shingle_hashes([long_a, long_b, long_a], ngram=1)
    assert flat[0] != flat[1] and flat[0] == flat[2]


def test_char_shingles_catch_typos():
    base = "The quick brown fox jumps over the lazy dog near the riverbank at dawn."
    typo = base.replace("quick", "quikc")
    pool = [ex("p", base), ex("p", typo), ex("p", "An unrelated sentence about compilers.")]
    cfg = NearDedupConfig(shingle="char", ngram=5, threshold=0.7)
    out = near_dup.run(pool, cfg, StepContext())
    assert [(d.index, d.reason) for d in out.drops] == [(1, "near_duplicate")]


def test_estimated_jaccard_tracks_the_true_value():
    cfg = NearDedupConfig(num_perm=256)
    pairs = [(text(s), edit(text(s), range(0, 60, k))) for s, k in [(4, 60), (5, 12), (6, 5)]]
    sig = near_dup.signatures([t for p in pairs for t in p], cfg)
    for k, (a, b) in enumerate(pairs):
        est = float((sig[2 * k] == sig[2 * k + 1]).mean())
        assert abs(est - jaccard(a, b)) < 0.1


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_band_params_make_threshold_pairs_likely_candidates(threshold):
    bands, rows = near_dup.band_params(threshold, 128)
    assert bands * rows <= 128
    assert 1 - (1 - threshold**rows) ** bands >= 0.97
    wider = rows + 1
    assert 1 - (1 - threshold**wider) ** (128 // wider) < 0.97  # the widest band that does


def test_cross_pairs_find_a_corpus_row_near_a_query():
    base, other = text(7), text(8)
    cfg = NearDedupConfig()
    q = near_dup.signatures([base], cfg)
    c = near_dup.signatures([other, edit(base, [30]), base.upper()], cfg)
    qi, ci, jac = near_dup.cross_pairs(q, c, cfg.threshold)
    assert sorted(ci.tolist()) == [1, 2] and set(qi.tolist()) == {0}
    assert jac.min() >= cfg.threshold


def test_empty_pool():
    out = near_dup.run([], NearDedupConfig(), StepContext())
    assert out.drops == ()


SYSTEM = (
    "You are a careful assistant for a physics course. Read the statement, think about how the "
    "quantities relate, and answer the multiple choice question by typing only the letter of the "
    "correct option, with no explanation and nothing else before or after it."
)
QUESTIONS = [
    "Eric adds more resistors to the series circuit. The resistance",
    "A ball is dropped from a taller building. Its speed at the ground is",
    "Mia moves the magnets further apart. The force between them",
    "The river water gets colder. The amount of oxygen it can hold",
    "Sam stretches the guitar string tighter. The pitch of the note",
    "The planet is further from its star. Its orbital period",
]


def mcq(question, answer, options=("increases", "decreases")):
    body = f"{question}\n\n A: {options[0]}\n B: {options[1]}"
    return make_example(
        [Message("system", SYSTEM), Message("user", body), Message("assistant", answer)],
        source=question[:12],
        format="chat",
    )


def test_a_shared_system_prompt_does_not_make_records_near_duplicates():
    pool = [mcq(q, "A") for q in QUESTIONS]
    with_system = near_dup.texts_of(pool, "prompt")
    assert jaccard(with_system[0], with_system[1]) > 0.6  # the shared prompt dominates
    cfg = NearDedupConfig(on="prompt", threshold=0.6)
    kept_all = near_dup.run(pool, cfg, StepContext())
    assert kept_all.drops == ()
    assert kept_all.counts["shared_lines_ignored"] >= 1
    # the old behaviour, for contrast: hashing the system prompt makes them duplicates
    keep = near_dup.run(
        pool, NearDedupConfig(on="prompt", threshold=0.6, shared_text="keep"), StepContext()
    )
    assert len(keep.drops) >= 3


def test_minimal_pairs_survive_and_are_counted():
    stem = "resistors to the long series circuit on the bench in the physics lab. The resistance"
    up = mcq(f"Eric adds more {stem}", "A")
    down = mcq(f"Eric adds fewer {stem}", "B")  # one word apart, the other answer
    twin = mcq(f"Eric adds more {stem}!", "A")
    others = [mcq(q, "A") for q in QUESTIONS[1:]]
    pool = [up, down, twin, *others]
    cfg = NearDedupConfig(on="prompt", threshold=0.5)
    out = near_dup.run(pool, cfg, StepContext())
    # the twin (same answer) goes; the pair with the other answer stays
    assert [(d.index, d.reason) for d in out.drops] == [(2, "near_duplicate")]
    assert out.counts["minimal_pairs"] == 1  # up~down (twin~down shares a bucket head with up)
    dropped = near_dup.run(
        pool, NearDedupConfig(on="prompt", threshold=0.5, minimal_pairs="drop"), StepContext()
    )
    assert sorted(d.index for d in dropped.drops) == [1, 2]


def test_same_prompt_different_answer_is_left_to_contradictions():
    a, b = mcq(QUESTIONS[0], "A"), mcq(QUESTIONS[0], "B")
    out = near_dup.run(
        [a, b, *(mcq(q, "A") for q in QUESTIONS[1:])],
        NearDedupConfig(on="prompt"),
        StepContext(),
    )
    assert out.drops == ()
    assert out.counts["same_prompt_pairs"] == 1
    assert out.counts["minimal_pairs"] == 0


def test_the_same_letter_for_differently_ordered_options_is_a_different_answer():
    stem = "A small object rolling down the long ramp in the physics lab will have _____ momentum"
    small = mcq(stem, "B", options=("more", "less"))  # B = less
    swapped = mcq(stem + ".", "B", options=("less", "more"))  # B = more: the other meaning
    same = mcq(stem + "!", "A", options=("less", "more"))  # A = less: the same meaning as `small`
    pool = [small, swapped, same, *(mcq(q, "A") for q in QUESTIONS[1:])]
    out = near_dup.run(pool, NearDedupConfig(on="prompt", threshold=0.5), StepContext())
    assert [d.index for d in out.drops] == [2]
    assert out.counts["minimal_pairs"] >= 1


def test_options_a_word_apart_are_different_answers():
    stem = "Ian compares an object with many colliding particles to one with few of them. Which is true"
    high = "the object with many colliding particles has a higher concentration of particles"
    low = "the object with many colliding particles has a lower concentration of particles"
    a = mcq(stem, "B", options=(low, high))
    b = mcq(stem.replace("many", "few", 1), "A", options=(low, high))
    out = near_dup.run(
        [a, b, *(mcq(q, "A") for q in QUESTIONS[1:])],
        NearDedupConfig(on="prompt", threshold=0.5),
        StepContext(),
    )
    assert out.drops == () and out.counts["minimal_pairs"] == 1


def test_a_chain_does_not_drop_a_record_further_than_the_threshold_from_the_kept_one():
    # A~B and B~C clear the threshold, A~C does not: C is no duplicate of the record kept (A)
    a = text(7, n=200)
    b = edit(a, [20, 90, 160])
    c = edit(b, [50, 120, 190])
    cfg = NearDedupConfig(threshold=0.87)
    assert jaccard(a, b) > 0.9 and jaccard(b, c) > 0.9 and jaccard(a, c) < 0.84
    pool = [ex("Tell me a story.", t) for t in (a, b, c)]
    out = near_dup.run(pool, cfg, StepContext())
    assert [(d.index, d.duplicate_of) for d in out.drops] == [(1, pool[0].id)]
    assert out.counts["chained_kept"] == 1
