"""Length filter in tokens of the recipe model's tokenizer.

Drops answers shorter than `min_answer_tokens` (`answer_too_short`), answers longer than
`max_answer_tokens` (`answer_too_long`; 0: no bound) and examples longer than `max_tokens`
(default: the training context, `train.max_length`) (`too_long`). Answer bounds left unset are
derived from this pool's answer lengths (loop.profile.length_bounds); `loop clean` derives and
prints them before the steps run, so here they are only derived for a direct call. The example
length is prompt tokens + answer tokens + what the chat template adds (`ctx.template_tokens`, by
the roles of the messages: `loop.models.template_overhead` measures it on the recipe model's
template). Tokens are counted by the caller's `count_tokens` (loop.models.token_counter), in
batches of 10k texts. A prompt is counted only where its count can decide: not for an answer
already out of bounds, nor, when no count exceeds a text's UTF-8 bytes
(`ctx.tokens_within_bytes`), where the prompt's bytes + answer + template fit `max_tokens`.
"""

from __future__ import annotations

from loop.clean.base import Drop, StepContext, StepOutput
from loop.example import Example
from loop.recipe import LengthConfig

BATCH = 10_000


def _count(texts: list[str], ctx: StepContext, done: int, total: int) -> list[int]:
    assert ctx.count_tokens is not None
    out: list[int] = []
    for lo in range(0, len(texts), BATCH):
        part = texts[lo : lo + BATCH]
        counts = list(ctx.count_tokens(part))
        if len(counts) != len(part):
            raise ValueError(f"count_tokens returned {len(counts)} counts for {len(part)} texts")
        out.extend(counts)
        ctx.tick("length", done + lo + len(part), total)
    return out


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def run(examples: list[Example], cfg: LengthConfig, ctx: StepContext) -> StepOutput:
    if ctx.count_tokens is None:
        raise ValueError("clean step `length` needs a count_tokens function (the model tokenizer)")
    max_tokens = cfg.max_tokens or ctx.max_tokens
    overhead = ctx.template_tokens or (lambda roles: 0)
    n = len(examples)
    answers = _count([ex.answer for ex in examples], ctx, 0, 2 * n)
    lo, hi = cfg.min_answer_tokens, cfg.max_answer_tokens
    if lo is None or hi is None:
        from loop.profile import bounds_from_lengths

        derived = bounds_from_lengths(answers)
        lo = derived[0] if lo is None else lo
        hi = derived[1] if hi is None else hi
    extra = [overhead([m.role for m in ex.messages]) for ex in examples]
    prompt_texts = ["\n".join(m.content for m in ex.prompt) for ex in examples]
    # A prompt is counted only where its count decides: its answer passed both bounds and, when
    # no count exceeds its bytes, bytes + answer + template could pass max_tokens (with SmolLM2
    # and a 512-token context that is almost no prompt: half the texts, a third of the time).
    asked = [
        i
        for i, a in enumerate(answers)
        if a >= lo
        and not (hi and a > hi)
        and max_tokens is not None
        and not (
            ctx.tokens_within_bytes and _utf8_len(prompt_texts[i]) + a + extra[i] <= max_tokens
        )
    ]
    counted = _count([prompt_texts[i] for i in asked], ctx, n, n + len(asked))
    prompts = dict(zip(asked, counted, strict=True))
    drops = []
    for i, a in enumerate(answers):
        if a < lo:
            drops.append(Drop(i, "answer_too_short", f"answer has {a} tokens < {lo}"))
        elif hi and a > hi:
            drops.append(Drop(i, "answer_too_long", f"answer has {a} tokens > {hi}"))
        elif i in prompts and (total := prompts[i] + a + extra[i]) > max_tokens:
            drops.append(Drop(i, "too_long", f"example has {total} tokens > {max_tokens}"))
    return StepOutput(list(examples), tuple(drops))
