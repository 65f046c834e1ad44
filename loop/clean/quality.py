"""Quality score in [0, 1]: a weighted mean of cheap, documented per-example signals.

Each signal is in [0, 1], higher is better, and is stored in `Example.scores` under its name;
the weighted mean is stored as `scores['quality']`. Weights come from `clean.quality.weights`
(default 1 each; 0 switches a signal off).

Signals
- `length`: answer length, saturating: log1p(words) / log1p(50), capped at 1. Longer, fuller
  answers tend to train better (the LIMA / "long is more" findings); a one-word answer is not
  wrong, it just scores lower here, so a classification pool should weigh this signal down.
- `repetition`: 1 - max(fraction of answer characters in repeated lines, fraction of repeated
  word 3-grams) — Gopher's repetition rules as a continuous value.
- `overlap`: 1 - the fraction of answer word 3-grams that also occur in the prompt, so an
  answer that parrots the prompt scores low (extractive tasks will score lower by design).
- `format`: 0 when a JSON-looking answer does not parse or code fences are unbalanced, else 1.
- `charset`: 1 - 10 x the fraction of replacement, control or mojibake characters.
- `ending`: 1 when an answer of 10+ words ends like a finished sentence, block or list item,
  0.5 when it ends mid-word, 0 when it ends on a comma, colon or connective (truncated).
- `model_loss` (only with `clean.quality.model_loss`): 1 - the percentile rank of the base
  model's mean per-token loss on the answer within the pool; the loss itself comes from the
  caller (`answer_loss`), since the cleaning stage loads no model.

Used by the dedup steps to pick which duplicate to keep (`best_index`), then as the `quality` step.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from loop.clean.base import StepContext, StepOutput
from loop.clean.format_check import json_problem
from loop.example import Example
from loop.recipe import OPTIONAL_QUALITY_SIGNALS, QUALITY_SIGNALS, QualityConfig

SIGNALS: tuple[str, ...] = QUALITY_SIGNALS
OPTIONAL_SIGNALS: tuple[str, ...] = OPTIONAL_QUALITY_SIGNALS

_WORD = re.compile(r"\w+")
_BAD_CHARS = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|Ã.|â€")
_END_OK = set(".!?)]}\"'`*>|;")
_END_BAD = set(",:-–(")
_CONNECTIVES = {"and", "or", "but", "the", "a", "an", "of", "to", "with", "because"}


def _trigrams(words: list[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + 3]) for i in range(len(words) - 2)]


def signals(ex: Example, answer_format: str = "json") -> dict[str, float]:
    """Every built-in signal of one example, each in [0, 1]."""
    answer = ex.answer
    words = _WORD.findall(answer.lower())
    n = len(words)

    length = min(1.0, math.log1p(n) / math.log1p(50))

    lines = [ln.strip() for ln in answer.splitlines() if ln.strip()]
    line_counts = Counter(lines)
    dup_line_chars = sum(len(ln) * (c - 1) for ln, c in line_counts.items() if c > 1)
    dup_line_frac = dup_line_chars / max(1, sum(len(ln) for ln in lines))
    grams = _trigrams(words)
    gram_counts = Counter(grams)
    dup_gram_frac = sum(c - 1 for c in gram_counts.values() if c > 1) / max(1, len(grams))
    repetition = 1.0 - min(1.0, max(dup_line_frac, dup_gram_frac))

    prompt_words = _WORD.findall(ex.user_text.lower())
    if len(grams) == 0:
        overlap = 0.0 if words and words == prompt_words else 1.0
    else:
        prompt_grams = set(_trigrams(prompt_words))
        overlap = 1.0 - sum(g in prompt_grams for g in grams) / len(grams)

    unbalanced_fence = answer.count("```") % 2 == 1
    bad_json = answer_format == "json" and json_problem(answer, required=False) is not None
    fmt = 0.0 if unbalanced_fence or bad_json else 1.0

    bad = len(_BAD_CHARS.findall(answer))
    charset = max(0.0, 1.0 - 10.0 * bad / max(1, len(answer)))

    stripped = answer.rstrip()
    if n < 10 or not stripped or stripped[-1] in _END_OK:
        ending = 1.0
    elif stripped[-1] in _END_BAD or words[-1] in _CONNECTIVES:
        ending = 0.0
    else:
        ending = 0.5

    return {
        "length": round(length, 6),
        "repetition": round(repetition, 6),
        "overlap": round(overlap, 6),
        "format": fmt,
        "charset": round(charset, 6),
        "ending": ending,
    }


def combine(values: dict[str, float], cfg: QualityConfig) -> float:
    """Weighted mean of the signals present in `values` (weights default to 1)."""
    total = weight_sum = 0.0
    for name, value in values.items():
        w = cfg.weights.get(name, 1.0)
        total += w * value
        weight_sum += w
    return round(total / weight_sum, 6) if weight_sum > 0 else 0.0


def quality_score(ex: Example, cfg: QualityConfig, answer_format: str = "json") -> float:
    """The combined score of one example from the built-in signals."""
    return combine(signals(ex, answer_format), cfg)


def run(examples: list[Example], cfg: QualityConfig, ctx: StepContext) -> StepOutput:
    """Score every example; drops nothing."""
    per_example = [signals(ex, ctx.answer_format) for ex in examples]
    if cfg.model_loss:
        if ctx.answer_loss is None:
            raise ValueError(
                "clean.quality.model_loss: true needs the base model's answer losses, "
                "but no answer_loss function was given to run_clean"
            )
        losses = np.asarray(ctx.answer_loss(examples), dtype=float)
        if len(losses) != len(examples):
            raise ValueError(
                f"answer_loss returned {len(losses)} values for {len(examples)} examples"
            )
        # Percentile rank, lowest loss -> 1.0; ties share their average rank.
        from scipy.stats import rankdata

        ranks = rankdata(losses) - 1
        rel = 1.0 - ranks / max(1, len(losses) - 1)
        for values, r in zip(per_example, rel, strict=True):
            values["model_loss"] = round(float(r), 6)
    out = []
    for i, (ex, values) in enumerate(zip(examples, per_example, strict=True)):
        score = combine(values, cfg)
        out.append(dataclasses.replace(ex, scores={**ex.scores, **values, "quality": score}))
        if i % 50_000 == 0:
            ctx.tick("quality", i, len(examples))
    ctx.tick("quality", len(examples), len(examples))
    return StepOutput(out)


def best_first(indices: Sequence[int], examples: Sequence[Example], ctx: StepContext) -> list[int]:
    """A duplicate group in the order its members are kept: highest quality score, then first
    seen."""

    def key(i: int) -> tuple[float, int]:
        ex = examples[i]
        score = ex.scores.get("quality")
        if score is None:
            score = quality_score(ex, ctx.quality, ctx.answer_format)
        return (-score, i)

    return sorted((int(i) for i in indices), key=key)


def best_index(indices: Sequence[int], examples: Sequence[Example], ctx: StepContext) -> int:
    """The representative kept from a duplicate group: highest quality score, then first seen."""
    return best_first(indices, examples, ctx)[0]
