import pytest

from loop.clean import length
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import LengthConfig


def words(texts):
    return [len(t.split()) for t in texts]


def ex(prompt_words, answer_words):
    return make_example(
        [
            Message("user", " ".join(["p"] * prompt_words)),
            Message("assistant", " ".join(["a"] * answer_words)),
        ],
        source="t",
        format="chat",
    )


def five_per_message(roles):
    return 5 * len(roles)  # a stand-in for a chat template's role markers


def drops(out):
    return [(d.index, d.reason) for d in out.drops]


def test_short_answers_and_long_examples():
    # total = prompt + answer + 5 per message (2 messages) = prompt + answer + 10
    pool = [ex(5, 9), ex(5, 10), ex(80, 10), ex(81, 10), ex(1, 0)]
    ctx = StepContext(count_tokens=words, template_tokens=five_per_message, max_tokens=100)
    out = length.run(pool, LengthConfig(min_answer_tokens=10, max_answer_tokens=0), ctx)
    assert drops(out) == [(0, "answer_too_short"), (3, "too_long"), (4, "answer_too_short")]
    assert out.drops[1].detail == "example has 101 tokens > 100"


def test_unset_answer_bounds_follow_the_pool():
    # one-word answers everywhere: a fixed 10-token floor would drop them all; the derived one
    # (a quarter of the 5th percentile, at least 1) keeps them and drops only the empty answer
    letters = [ex(5, 1) for _ in range(40)] + [ex(5, 0)]
    out = length.run(letters, LengthConfig(), StepContext(count_tokens=words, max_tokens=1000))
    assert drops(out) == [(40, "answer_too_short")]
    assert out.drops[0].detail == "answer has 0 tokens < 1"
    # free text of 40-60 words: floor 40 // 4 = 10, ceiling max(4 * 59, 59 + 16) = 236
    texts = [ex(5, 40 + i % 20) for i in range(60)] + [ex(5, 3), ex(5, 300)]
    out = length.run(texts, LengthConfig(), StepContext(count_tokens=words, max_tokens=1000))
    assert drops(out) == [(60, "answer_too_short"), (61, "answer_too_long")]
    assert [d.detail for d in out.drops] == [
        "answer has 3 tokens < 10",
        "answer has 300 tokens > 236",
    ]


def test_recipe_max_tokens_overrides_the_training_context():
    pool = [ex(40, 20), ex(10, 20)]
    ctx = StepContext(count_tokens=words, template_tokens=five_per_message, max_tokens=1000)
    assert drops(length.run(pool, LengthConfig(max_tokens=50), ctx)) == [(0, "too_long")]
    assert drops(length.run(pool, LengthConfig(max_answer_tokens=19), ctx)) == [
        (0, "answer_too_long"),
        (1, "answer_too_long"),
    ]
    assert drops(length.run(pool, LengthConfig(min_answer_tokens=0), ctx)) == []


def test_needs_a_tokenizer_that_counts_every_text():
    with pytest.raises(ValueError, match="count_tokens"):
        length.run([ex(1, 20)], LengthConfig(), StepContext())
    bad = StepContext(count_tokens=lambda texts: [1], max_tokens=10)
    with pytest.raises(ValueError, match="returned 1 counts for 2 texts"):
        length.run([ex(1, 20), ex(1, 20)], LengthConfig(), bad)


def test_word_chunk_counter_drops_what_whole_text_counting_drops(gpt2_style_tokenizer):
    # the same pool through the length step with the word-chunk counter, skipping prompts whose
    # bytes cannot make the example too long, and with every text tokenized whole (as the step
    # counted before): the same drops, details and counts
    from loop import models

    tok = gpt2_style_tokenizer
    assert models._cuts_at_spaces(tok)

    def whole(texts):
        return [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]

    answers = ["ok", "Yes.", "the quick brown fox  jumps", "It's 12 of 345,  we'll see",
               "a\n b\n\n  c", "Grüße aus 東京 😀", "", "word " * 40, "<|im_end|> done",
               "the lazy dog. " * 12]  # fmt: skip
    prompts = ["What?", "Say  it", "tab\t here", "don't   stop", "x", "Why is it so? " * 6]
    pool = [
        make_example(
            [Message("user", prompts[i % len(prompts)] * (1 + i % 4)), Message("assistant", a)],
            source=f"t:{i}",
            format="chat",
        )
        for i, a in enumerate(answers * 3)
    ]
    fast = models.token_counter(tok)
    assert fast([e.answer for e in pool]) == whole([e.answer for e in pool])
    assert models.tokens_within_bytes(tok)
    for cfg in (LengthConfig(), LengthConfig(min_answer_tokens=3, max_answer_tokens=20)):
        results = [
            length.run(
                pool,
                cfg,
                StepContext(
                    count_tokens=count,
                    template_tokens=five_per_message,
                    max_tokens=60,
                    tokens_within_bytes=within,  # True: prompts under max_tokens in bytes skipped
                ),
            )
            for count, within in ((fast, True), (whole, False))
        ]
        got, want = ([(d.index, d.reason, d.detail) for d in r.drops] for r in results)
        assert got == want
        assert {reason for _, reason, _ in got} >= {"answer_too_short", "too_long"}


def test_prompts_are_counted_exactly_where_their_bytes_could_pass_max_tokens(tiny_cfg):
    # the tiny tokenizer has one token per ASCII byte: bytes are the count, the edge is exact
    from loop import models

    tok = models.load_tokenizer(tiny_cfg)
    assert models.tokens_within_bytes(tok)
    seen: list[str] = []

    def whole(texts):
        seen.extend(texts)
        return [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]

    pool = [
        make_example(
            [Message("user", "p" * k), Message("assistant", "a" * 20)], source="t", format="chat"
        )
        for k in (1, 69, 70, 71, 72, 200)
    ]
    cfg = LengthConfig(min_answer_tokens=1, max_answer_tokens=0)
    outs = [
        length.run(
            pool,
            cfg,
            StepContext(
                count_tokens=whole,
                template_tokens=five_per_message,
                max_tokens=100,
                tokens_within_bytes=within,
            ),
        )
        for within in (True, False)
    ]
    # 20 answer + 10 template: a prompt of 70 bytes fits exactly, 71 does not
    assert [(d.index, d.detail) for d in outs[0].drops] == [
        (3, "example has 101 tokens > 100"),
        (4, "example has 102 tokens > 100"),
        (5, "example has 230 tokens > 100"),
    ]
    assert outs[0].drops == outs[1].drops
    prompts_counted = [t for t in seen if t.startswith("p")]
    assert sorted(map(len, prompts_counted)) == [1, 69, 70, 71, 71, 72, 72, 200, 200]
