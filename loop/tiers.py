"""Quality tiers over the cleaned training pool, and the `raw` tier.

A tier is the top fraction of the training pool by `scores['quality']` (`top: 0.3`; ties keep
pool order), every example scoring at least `min_score`, or, with neither, the whole pool; a
`where` on metadata (source, license, date, any field) narrows it first.
Tiers may overlap (top 30% is inside top 70%), so membership is a list of names in
meta['tiers'] on each training example; `tier_pool` returns a tier's training pool.

`raw` is the pool before cleaning minus the validation set and its duplicates (same record,
same prompt, or a MinHash near-duplicate; `loop.clean.split.raw_pool` forms it), for the
quality-vs-quantity comparison; those raw records carry split `train`, the removed ones
`held_out` with the reason in meta['held_out'].
The validation set is shared by every tier and cell: `validation_set`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loop.errors import DataError
from loop.example import Example
from loop.recipe import RAW_TIER, TierSpec, needs_quality

if TYPE_CHECKING:
    from loop.clean.result import CleanResult

RAW = RAW_TIER


def select(train: Sequence[Example], spec: TierSpec) -> list[int]:
    """Indices of `train` that belong to the tier `spec` (not for `raw`).

    `where` filters on metadata first (`loop.provenance.matches`); `top`/`min_score` then rank
    within what it kept, so `{where: {source: expert}, top: 0.5}` is the better half of expert.
    """
    from loop.provenance import matches

    idx = [i for i, ex in enumerate(train) if matches(ex, spec.where)] if spec.where else None
    n = len(train) if idx is None else len(idx)
    if idx is None:
        idx = list(range(n))
    if not needs_quality(spec):
        return idx
    missing = [train[i].id for i in idx if "quality" not in train[i].scores]
    if missing:
        raise DataError(
            f"tier {spec.name!r}: {len(missing)} example(s) have no quality score "
            f"(e.g. {missing[0]}); run the `quality` clean step"
        )
    if spec.min_score is not None:
        return [i for i in idx if train[i].scores["quality"] >= spec.min_score]
    k = max(1, int(n * (spec.top or 1.0) + 0.5)) if n else 0
    order = sorted(idx, key=lambda i: (-train[i].scores["quality"], i))
    return sorted(order[:k])


def assign_tiers(train: Sequence[Example], specs: Sequence[TierSpec]) -> list[Example]:
    """Copies of `train` with meta['tiers'] listing the (non-raw) tiers each belongs to."""
    members = {s.name: set(select(train, s)) for s in specs if s.name != RAW}
    out = []
    for i, ex in enumerate(train):
        names = [name for name, idx in members.items() if i in idx]
        out.append(dataclasses.replace(ex, meta={**ex.meta, "tiers": names}))
    return out


def tier_names(result: CleanResult) -> list[str]:
    return [t.name for t in result.tiers]


def tier_pool(result: CleanResult, name: str) -> list[Example]:
    """The training pool of tier `name`, in pool order."""
    if name not in tier_names(result):
        raise KeyError(f"unknown tier {name!r}; the recipe has {', '.join(tier_names(result))}")
    if name == RAW:
        return [ex for ex in result.raw if ex.split == "train"]
    return [
        ex for ex in result.examples if ex.split == "train" and name in (ex.meta.get("tiers") or ())
    ]


def validation_set(result: CleanResult) -> list[Example]:
    """The validation examples shared by every tier and cell, in pool order."""
    return [ex for ex in result.examples if ex.split == "validation"]


def tier_sizes(result: CleanResult) -> dict[str, int]:
    """Training-pool size per tier, in recipe order."""
    return {name: len(tier_pool(result, name)) for name in tier_names(result)}
