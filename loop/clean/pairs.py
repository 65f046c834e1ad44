"""Minimal pairs: near-duplicate prompts whose answers differ materially are kept, not deduped.

Near dedup, semantic dedup and the validation-leak check share this; it sits beside the steps
(it compares answers the way the contradictions step does), not in `base`, which every step
imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from loop.clean.base import normalize
from loop.clean.contradictions import answer_similarity, prompt_key
from loop.example import Example
from loop.profile import answer_letter, answer_meaning


@dataclass(frozen=True)
class PairFilter:
    """Near-duplicate edges left after minimal pairs are taken out, and what was taken."""

    left: np.ndarray
    right: np.ndarray
    minimal_pairs: int  # pairs kept apart: similar prompts, materially different answers
    same_prompt: int  # of those, pairs with the same prompt: the contradictions step's job


def answers_differ(a: Example, b: Example, similarity: float) -> bool:
    """Materially different answers. Two option letters differ unless they name the same option
    text ("B" to "A: more / B: less" equals "A" to "A: less / B: more"): options of one question
    are distinct choices even when only a word tells them apart ("higher" / "lower")."""
    if answer_letter(a.answer) and answer_letter(b.answer):
        ma, mb = answer_meaning(a), answer_meaning(b)
        if ma != a.answer and mb != b.answer:  # both letters point at listed options
            return normalize(ma) != normalize(mb)
    return answer_similarity(answer_meaning(a), answer_meaning(b)) < similarity


def split_minimal_pairs(
    examples: Sequence[Example],
    left: np.ndarray,
    right: np.ndarray,
    *,
    keep: bool,
    similarity: float,
) -> PairFilter:
    """Remove the edges whose two answers differ materially (when `keep`)."""
    if not keep or len(left) == 0:
        return PairFilter(left, right, 0, 0)
    differ = np.array(
        [
            answers_differ(examples[int(i)], examples[int(j)], similarity)
            for i, j in zip(left, right, strict=True)
        ],
        dtype=bool,
    )
    same = sum(
        prompt_key(examples[int(i)]) == prompt_key(examples[int(j)])
        for i, j in zip(left[differ], right[differ], strict=True)
    )
    return PairFilter(left[~differ], right[~differ], int(differ.sum()) - same, same)


@dataclass(frozen=True)
class GroupOutcome:
    """What one cluster of a dedup step keeps and drops."""

    drops: tuple[tuple[int, int, float], ...]  # (member, the kept record it duplicates, similarity)
    minimal_pairs: int  # members kept because their answer differs from every close kept record
    chained: int  # members kept because no kept record is close enough: linked only via others


def resolve_group(
    best_first: Sequence[int],
    similarity_to: Callable[[int, Sequence[int]], np.ndarray],
    threshold: float,
    examples: Sequence[Example],
    *,
    keep_pairs: bool,
    answer_similarity: float,
) -> GroupOutcome:
    """Which members of one connected component go, and what each one duplicates.

    Members are visited best first (quality score, then first seen). One is dropped when it is
    within `threshold` of a record already kept whose answer does not differ materially; else it
    is kept. So a dropped record is itself a duplicate, at the step's threshold, of the record
    it names: a chain A~B~C no longer drops C at A's distance (on a public pool of templated
    event messages chains had dropped records well under the threshold:
    benchmarks/results/real-pools/README.md).
    `similarity_to(m, kept)`: m's similarity to each kept record, in the step's own measure.
    """
    kept: list[int] = []
    drops: list[tuple[int, int, float]] = []
    minimal = chained = 0
    for m in best_first:
        if not kept:
            kept.append(m)
            continue
        sims = np.asarray(similarity_to(m, kept), dtype=float)
        close = [(float(sims[k]), kept[k]) for k in np.argsort(-sims) if sims[k] >= threshold]
        if not close:
            chained += 1
            kept.append(m)
            continue
        same = [
            (s, r)
            for s, r in close
            if not (keep_pairs and answers_differ(examples[m], examples[r], answer_similarity))
        ]
        if same:
            drops.append((m, same[0][1], same[0][0]))
        else:
            minimal += 1
            kept.append(m)
    return GroupOutcome(tuple(drops), minimal, chained)


def pair_counts(
    minimal: int, pairs: PairFilter, shared: Sequence[str], chained: int = 0
) -> dict[str, int]:
    """The funnel counts a dedup step reports beside its drops."""
    counts = {"minimal_pairs": minimal}
    if chained:
        counts["chained_kept"] = chained
    if pairs.same_prompt:
        counts["same_prompt_pairs"] = pairs.same_prompt
    if shared:
        counts["shared_lines_ignored"] = len(shared)
    return counts
