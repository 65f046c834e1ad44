"""Look at a pool before cleaning it: what the answers are, how long they are, what is shared.

`profile_pool` is pure (examples + a token counter -> `PoolProfile`). `derived_defaults` turns a
profile into the cleaning settings a recipe leaves unset, each with the reason in words, so
`loop clean` can print and log them and `loop init` can write them with a comment.

Answer kinds, tried in this order:
- `json`: at least half of the answers look like JSON (format_check.looks_like_json);
- `choice`: at least 80% of the prompts list options one per line ("A: ...", "(B) ...") and the
  answer is one of the listed letters;
- `labels`: a small set of short answers: at most 50 distinct ones (normalized), each used 3
  times or more on average, median answer at most 4 words;
- `text`: anything else.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evals.builtin import normalize, option_letters, option_texts
from loop.example import Example

CountTokens = Callable[[list[str]], list[int]]

MAX_LABELS = 50
LABEL_MIN_USES = 3  # average uses of each distinct answer for a label set
LABEL_MAX_WORDS = 4
CHOICE_SHARE = 0.8
JSON_SHARE = 0.5
LONG_ANSWER_TOKENS = 128  # median answer length above which free text counts as generation
# Length bounds from the answer-length distribution (tokens): below a quarter of the 5th
# percentile, above 4x the 95th percentile (and at least 16 tokens above it).
MIN_FACTOR, MAX_FACTOR, MAX_SLACK = 4, 4, 16
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class PoolProfile:
    records: int
    kind: str  # json | choice | labels | text
    task: str  # classification | qa | generation: how much data the task usually needs
    answer_tokens: dict[str, float]  # q01 ... q99, max: answer-length quantiles in tokens
    labels: tuple[str, ...] = ()  # the label set (labels) or option letters seen (choice)
    label_counts: dict[str, int] = field(default_factory=dict)
    json_share: float = 0.0
    choice_share: float = 0.0
    shared_system: float = 0.0  # share of records whose system prompt is the most common one
    prompt_tokens_q95: float = 0.0
    example_tokens_max: float = 0.0  # prompt + answer (+ chat template), the longest record

    def describe(self) -> str:
        q = self.answer_tokens
        what = {
            "json": "JSON answers",
            "choice": f"multiple choice (options {', '.join(self.labels)})",
            "labels": f"labels from a set of {len(self.labels)}",
            "text": "free text",
        }[self.kind]
        return (
            f"{self.records} records, {what}; answer tokens median {q['q50']:g}, "
            f"5th-95th percentile {q['q05']:g}-{q['q95']:g}, max {q['max']:g}"
        )


@dataclass(frozen=True)
class Derived:
    """One setting the recipe left unset, the value chosen from the pool and why."""

    setting: str  # dotted recipe path
    value: object
    why: str

    def __str__(self) -> str:
        return f"{self.setting} = {self.value!r}: {self.why}"


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default method)."""
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def answer_letter(answer: str) -> str | None:
    """ "B", "(B)", "B.", "B: down" -> "B"; anything else None."""
    text = answer.strip().lstrip("(").strip()
    if not text or not ("A" <= text[0] <= "J"):
        return None
    rest = text[1:].lstrip(").:")
    return text[0] if rest == "" or rest[0] == " " else None


def answer_meaning(ex: Example) -> str:
    """The answer, or for an option letter ("B") the text of that option in the prompt
    ("decreases"): two records answering "B" to differently ordered options mean different things."""
    letter = answer_letter(ex.answer)
    if letter is None:
        return ex.answer
    return option_texts(_last_user(ex)).get(letter, ex.answer)


def _last_user(ex: Example) -> str:
    users = [m.content for m in ex.prompt if m.role == "user"]
    return users[-1] if users else ""


def _approx_tokens(texts: list[str]) -> list[int]:
    return [max(1, round(len(t.split()) * 1.3)) if t.strip() else 0 for t in texts]


def profile_pool(
    examples: Sequence[Example],
    count_tokens: CountTokens | None = None,
    overhead: Callable[[Sequence[str]], int] | None = None,
) -> PoolProfile:
    """What the pool's answers are and how long; `count_tokens` defaults to ~1.3 tokens a word.
    `overhead(roles)` is what the chat template adds to a record (loop.models.template_overhead)."""

    n = len(examples)
    count = count_tokens or _approx_tokens
    answers = [ex.answer for ex in examples]
    lengths = sorted(count(answers)) if answers else []
    q = {f"q{round(p * 100):02d}": quantile(lengths, p) for p in QUANTILES}
    q["max"] = float(lengths[-1]) if lengths else 0.0
    prompt_counts = count(["\n".join(m.content for m in ex.prompt) for ex in examples])
    answer_counts = count(answers)
    extra = [overhead([m.role for m in ex.messages]) if overhead else 0 for ex in examples]
    longest = max(
        (p + a + e for p, a, e in zip(prompt_counts, answer_counts, extra, strict=True)), default=0
    )
    prompt_lengths = sorted(prompt_counts)

    from loop.clean.format_check import looks_like_json  # lazy: loop.clean imports this module

    json_share = sum(looks_like_json(a) for a in answers) / n if n else 0.0
    with_options = 0
    letters_seen: Counter[str] = Counter()
    for ex in examples:
        options = option_letters(_last_user(ex))
        letter = answer_letter(ex.answer)
        if options and letter in options:
            with_options += 1
            letters_seen[letter] += 1
    choice_share = with_options / n if n else 0.0
    norm = Counter(normalize(a) for a in answers)
    words = sorted(len(a.split()) for a in answers)
    systems = Counter(ex.messages[0].content for ex in examples if ex.messages[0].role == "system")
    shared_system = systems.most_common(1)[0][1] / n if systems else 0.0

    if n and json_share >= JSON_SHARE:
        kind, labels, counts = "json", (), {}
    elif n and choice_share >= CHOICE_SHARE:
        kind = "choice"
        labels = tuple(sorted(letters_seen))
        counts = dict(sorted(letters_seen.items()))
    elif (
        n
        and len(norm) <= MAX_LABELS
        and n >= LABEL_MIN_USES * len(norm)
        and quantile(words, 0.5) <= LABEL_MAX_WORDS
    ):
        kind = "labels"
        raw = Counter(a.strip() for a in answers)
        labels = tuple(a for a, _ in raw.most_common())
        counts = dict(raw.most_common())
    else:
        kind, labels, counts = "text", (), {}
    if kind in ("choice", "labels"):
        task = "classification"
    elif kind == "text" and q["q50"] > LONG_ANSWER_TOKENS:
        task = "generation"
    else:
        task = "qa"
    return PoolProfile(
        records=n,
        kind=kind,
        task=task,
        answer_tokens=q,
        labels=labels,
        label_counts=counts,
        json_share=round(json_share, 4),
        choice_share=round(choice_share, 4),
        shared_system=round(shared_system, 4),
        prompt_tokens_q95=quantile(prompt_lengths, 0.95),
        example_tokens_max=float(longest),
    )


def length_bounds(p: PoolProfile) -> tuple[int, int]:
    """(min_answer_tokens, max_answer_tokens) from the answer-length quantiles."""
    return _bounds(p.answer_tokens["q05"], p.answer_tokens["q95"])


def bounds_from_lengths(lengths: Sequence[int]) -> tuple[int, int]:
    """The same bounds from raw answer lengths in tokens."""
    ordered = sorted(lengths)
    return _bounds(quantile(ordered, 0.05), quantile(ordered, 0.95))


def _bounds(q05: float, q95: float) -> tuple[int, int]:
    lo = max(1, math.floor(q05 / MIN_FACTOR))
    hi = max(math.ceil(MAX_FACTOR * q95), math.ceil(q95) + MAX_SLACK)
    return lo, hi


def answer_format(p: PoolProfile) -> str:
    from loop.clean.format_check import JSON_CHECK_SHARE

    return "json" if p.json_share >= JSON_CHECK_SHARE else "none"


def derived_defaults(
    p: PoolProfile,
    *,
    min_answer_tokens: int | None = None,
    max_answer_tokens: int | None = None,
    answer_format_set: str = "auto",
) -> list[Derived]:
    """The settings the recipe left unset (None / auto), derived from the profile."""
    q = p.answer_tokens
    lo, hi = length_bounds(p)
    out = []
    if min_answer_tokens is None:
        out.append(
            Derived(
                "clean.length.min_answer_tokens",
                lo,
                f"a quarter of the 5th percentile of answer length ({q['q05']:g} tokens), at least 1",
            )
        )
    if max_answer_tokens is None:
        out.append(
            Derived(
                "clean.length.max_answer_tokens",
                hi,
                f"4x the 95th percentile of answer length ({q['q95']:g} tokens), at least 16 above it",
            )
        )
    if answer_format_set == "auto":
        fmt = answer_format(p)
        why = f"{p.json_share:.0%} of answers look like JSON" + (
            " (>= 10%): check them" if fmt == "json" else " (< 10%): no JSON check"
        )
        out.append(Derived("clean.format.answer_format", fmt, why))
    return out


def default_evaluators(p: PoolProfile) -> list[dict]:
    """Evaluators that fit the answers: [{name, params}], the first is the headline metric."""
    if p.kind == "choice":
        return [{"name": "choice_loglik", "params": {"letters": True}}]
    if p.kind == "labels":
        out: list[dict] = [{"name": "normalized_match", "params": {}}]
        if len(p.labels) <= 10:
            out.append({"name": "choice_loglik", "params": {"choices": list(p.labels)}})
        return out
    if p.kind == "json":
        return [{"name": "json_match", "params": {}}]
    return [{"name": "rouge_l", "params": {}}]
