from loop.clean import exact
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import ExactDedupConfig


def ex(prompt, answer, **scores):
    e = make_example(
        [Message("user", prompt), Message("assistant", answer)], source=prompt, format="chat"
    )
    e.scores.update(scores)
    return e


def drops(out):
    return [(d.index, d.reason) for d in out.drops]


def test_case_whitespace_and_unicode_variants_are_dropped():
    pool = [
        ex("What is the capital of France?", "Paris."),
        ex("what is  the capital of\nFrance?", "paris."),  # case + whitespace
        ex("What is the capital of France?", "Ｐａｒｉｓ."),  # full-width: NFKC folds it
        ex("What is the capital of France?", "Paris!"),  # near miss: punctuation differs
        ex("What is the capital of Spain?", "Madrid."),
    ]
    out = exact.run(pool, ExactDedupConfig(), StepContext())
    assert drops(out) == [(1, "exact_duplicate"), (2, "exact_duplicate")]
    assert {d.duplicate_of for d in out.drops} == {pool[0].id}
    assert out.examples == pool  # the step never rewrites records


def test_normalization_switches():
    pool = [ex("Hello", "World"), ex("hello", "world"), ex("ﬁle", "x"), ex("file", "x")]
    out = exact.run(pool, ExactDedupConfig(lowercase=False, unicode="none"), StepContext())
    assert drops(out) == []  # case and the ﬁ ligature now count
    out = exact.run(pool, ExactDedupConfig(), StepContext())
    assert drops(out) == [(1, "exact_duplicate"), (3, "exact_duplicate")]


def test_prompt_key_keeps_the_higher_quality_record():
    pool = [
        ex("Name a primary colour.", "Red.", quality=0.2),
        ex("Name a primary colour.", "Blue is one of the three primary colours.", quality=0.9),
        ex("Name a secondary colour.", "Green.", quality=0.1),
    ]
    assert drops(exact.run(pool, ExactDedupConfig(), StepContext())) == []
    out = exact.run(pool, ExactDedupConfig(on="prompt"), StepContext())
    assert drops(out) == [(0, "exact_duplicate")]
    assert out.drops[0].duplicate_of == pool[1].id


def test_ties_keep_the_first_seen():
    pool = [ex("Q", "A", quality=0.5), ex("q", "a", quality=0.5), ex("Q ", "A", quality=0.5)]
    assert drops(exact.run(pool, ExactDedupConfig(), StepContext())) == [
        (1, "exact_duplicate"),
        (2, "exact_duplicate"),
    ]


def test_whitespace_collapses_as_the_whitespace_regex_does():
    # normalize joins str.split(); the dedup keys were built with re.sub(r"\s+", " ").strip():
    # the same on every character Python calls whitespace, alone, in runs and between words
    import re
    import sys

    from loop.clean.base import normalize

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(r"\s", chr(c))]
    assert len(spaces) == 29
    texts = ["", "a", " a ", "a  b\n\nc\t", "\u200b zero width is no space \ufeff"]
    texts += [f"{s}x{s}{s}y{t}z{s}" for s in spaces for t in spaces[::5]]
    for t in texts:
        assert normalize(t, unicode="none", lowercase=False) == re.sub(r"\s+", " ", t).strip()
