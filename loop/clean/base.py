"""What every cleaning step shares: the step output, the context, normalization and keep-one.

This module imports no step: every step imports it. A step is `run(examples, cfg, ctx) -> StepOutput`. It returns the input list (items possibly
rewritten: anonymized, flagged, scored) plus the drops, each naming the input index, a short
reason code and a detail. The orchestrator in `loop.clean` removes the dropped items, so a step
never has to rebuild lists and a review decision can overrule a drop.
"""

from __future__ import annotations

import dataclasses
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loop.example import Example
from loop.recipe import QualityConfig


@dataclass(frozen=True)
class CleanProgress:
    """One progress report: `str()` gives a log line, the fields feed a progress bar."""

    step: str
    done: int
    total: int
    note: str = ""

    def __str__(self) -> str:
        return f"{self.step}: {self.note or f'{self.done:,}/{self.total:,}'}"


Progress = Callable[[CleanProgress], None]
"""Called at the start and end of each step, and every few seconds inside long ones."""

CountTokens = Callable[[list[str]], list[int]]
"""Token counts of a batch of texts, in the recipe model's tokenizer."""

TemplateTokens = Callable[[Sequence[str]], int]
"""Tokens the chat template adds to an example, by the roles of its messages
(`loop.models.template_overhead`)."""

AnswerLoss = Callable[[list[Example]], list[float]]
"""Base-model mean per-token loss on each example's answer (optional quality signal)."""


@dataclass(frozen=True)
class Drop:
    """One dropped record: index into the step's input, reason code, detail, kept twin if any."""

    index: int
    reason: str
    detail: str = ""
    duplicate_of: str | None = None


@dataclass(frozen=True)
class StepOutput:
    examples: list[Example]  # same length and order as the input
    drops: tuple[Drop, ...] = ()
    flagged: dict[str, int] = field(default_factory=dict)  # flag -> records flagged
    modified: dict[str, int] = field(default_factory=dict)  # e.g. anonymized kind -> records
    counts: dict[str, int] = field(default_factory=dict)  # step totals, e.g. minimal_pairs


@dataclass(frozen=True)
class StepContext:
    """What a step may need beyond its own config; the orchestrator fills it from the recipe."""

    count_tokens: CountTokens | None = None
    # count_tokens never gives a text more tokens than its UTF-8 bytes (loop.models.
    # tokens_within_bytes): the length step skips prompts that cannot make an example too long
    tokens_within_bytes: bool = False
    template_tokens: TemplateTokens | None = None  # None: the template adds nothing
    max_tokens: int | None = None  # training context (train.max_length) unless the recipe says
    quality: QualityConfig = QualityConfig()
    answer_format: str = "json"
    cache_dir: Path | None = None
    device: str | None = None
    progress: Progress | None = None
    answer_loss: AnswerLoss | None = None
    interval_s: float = 5.0  # least time between two reports inside a step
    _last: list[float] = field(default_factory=lambda: [0.0], compare=False, repr=False)

    def tick(
        self, step: str, done: int, total: int, *, note: str = "", force: bool = False
    ) -> None:
        """Report progress: always when `force`, else at most every `interval_s` mid-step."""
        if self.progress is None:
            return
        now = time.monotonic()
        if force or (0 < done < total and now - self._last[0] >= self.interval_s):
            self._last[0] = now
            self.progress(CleanProgress(step, done, total, note))


def normalize(
    text: str, *, lowercase: bool = True, collapse_whitespace: bool = True, unicode: str = "NFKC"
) -> str:
    """The comparison form of a text: Unicode-normalized, case-folded, whitespace collapsed."""
    if unicode != "none":
        text = unicodedata.normalize(unicode, text)
    if lowercase:
        text = text.lower()
    if collapse_whitespace:
        # the same as re.sub(r"\s+", " ", text).strip() (re's \s and str.split both take what
        # str.isspace takes) about 5x faster: the regex was half of exact dedup's time
        # (benchmarks/clean_pool.py)
        text = " ".join(text.split())
    return text


def prompt_text(ex: Example) -> str:
    """Every message before the answer, role-tagged so a system prompt is not a user turn."""
    return "\n".join(f"{m.role}: {m.content}" for m in ex.prompt)


def full_text(ex: Example) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in ex.messages)


def flags_of(ex: Example) -> list[str]:
    return list(ex.meta.get("flags") or [])


def add_flags(ex: Example, flags: Sequence[str]) -> Example:
    """A copy of `ex` with `flags` appended to meta['flags'] (no duplicates, input untouched)."""
    current = flags_of(ex)
    new = current + [f for f in flags if f not in current]
    return dataclasses.replace(ex, meta={**ex.meta, "flags": new})


def with_meta(ex: Example, **values: Any) -> Example:
    return dataclasses.replace(ex, meta={**ex.meta, **values})


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected-component label per node of the undirected graph with edges left[k]-right[k]."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(left) == 0:
        return np.arange(n)
    graph = coo_matrix(
        (np.ones(len(left), dtype=np.int8), (left.astype(np.int64), right.astype(np.int64))),
        shape=(n, n),
    )
    return connected_components(graph, directed=False)[1]


def groups_from_labels(labels: np.ndarray) -> list[np.ndarray]:
    """Index groups of size > 1 sharing a label, each sorted, ordered by their first member."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    cuts = np.flatnonzero(sorted_labels[1:] != sorted_labels[:-1]) + 1
    groups = [g for g in np.split(order, cuts) if len(g) > 1]
    groups.sort(key=lambda g: int(g[0]))
    return groups


# --------------------------------------------------------------------------------------------
# What dedup compares: the text without what most records share
# --------------------------------------------------------------------------------------------

SHARED_SHARE = 0.5  # a prompt line in at least this share of records is template text
SHARED_MIN_RECORDS = 4  # below this many records nothing counts as shared


def _prompt_lines(ex: Example) -> set[str]:
    return {line.strip() for m in ex.prompt for line in m.content.splitlines() if line.strip()}


def shared_lines(examples: Sequence[Example]) -> frozenset[str]:
    """Prompt lines (stripped) found in at least half of the records: a shared system prompt,
    a template's fixed instructions and labels. One pass with a counter."""
    n = len(examples)
    if n < SHARED_MIN_RECORDS:
        return frozenset()
    counts: dict[str, int] = {}
    for ex in examples:
        for line in _prompt_lines(ex):
            counts[line] = counts.get(line, 0) + 1
    need = max(2, SHARED_SHARE * n)
    return frozenset(line for line, c in counts.items() if c >= need)


def compare_text(ex: Example, on: str, shared: frozenset[str] = frozenset()) -> str:
    """The prompt's contents (and the answer when `on` is full) without the `shared` lines."""
    parts = []
    for m in ex.prompt:
        if shared:
            kept = [line for line in m.content.splitlines() if line.strip() not in shared]
            text = "\n".join(kept)
        else:
            text = m.content
        if text.strip():
            parts.append(text)
    if on != "prompt":
        parts.append(ex.answer)
    return "\n".join(parts)
