"""Length filter in tokens of the recipe model's tokenizer.

Drops answers shorter than `min_answer_tokens` (`answer_too_short`), answers longer than
`max_answer_tokens` (`answer_too_long`; 0: no bound) and examples longer than `max_tokens`
(default: the training context, `train.max_length`) (`too_long`). Answer bounds left unset are
derived from this pool's answer lengths (loop.profile.length_bounds); `loop clean` derives and
prints them before the steps run, so here they are only derived for a direct call. The example
length is prompt tokens + answer tokens + what the chat template adds (`ctx.template_tokens`, by
the roles of the messages: `loop.models.template_overhead` measures it on the recipe model's
template). Tokens are counted by the caller's `count_tokens` (loop.models.token_counter), in
batches of 10k texts.
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


def run(examples: list[Example], cfg: LengthConfig, ctx: StepContext) -> StepOutput:
    if ctx.count_tokens is None:
        raise ValueError("clean step `length` needs a count_tokens function (the model tokenizer)")
    max_tokens = cfg.max_tokens or ctx.max_tokens
    overhead = ctx.template_tokens or (lambda roles: 0)
    n = len(examples)
    answers = _count([ex.answer for ex in examples], ctx, 0, 2 * n)
    prompts = _count(["\n".join(m.content for m in ex.prompt) for ex in examples], ctx, n, 2 * n)
    lo, hi = cfg.min_answer_tokens, cfg.max_answer_tokens
    if lo is None or hi is None:
        from loop.profile import bounds_from_lengths

        derived = bounds_from_lengths(answers)
        lo = derived[0] if lo is None else lo
        hi = derived[1] if hi is None else hi
    drops = []
    for i, ex in enumerate(examples):
        a = answers[i]
        total = prompts[i] + a + overhead([m.role for m in ex.messages])
        if a < lo:
            drops.append(Drop(i, "answer_too_short", f"answer has {a} tokens < {lo}"))
        elif hi and a > hi:
            drops.append(Drop(i, "answer_too_long", f"answer has {a} tokens > {hi}"))
        elif max_tokens is not None and total > max_tokens:
            drops.append(Drop(i, "too_long", f"example has {total} tokens > {max_tokens}"))
    return StepOutput(list(examples), tuple(drops))
