"""What `loop clean` hands on: the kept and dropped records, the funnel, the files written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loop.clean.funnel import DroppedRecord, StepFunnel
from loop.example import Example
from loop.recipe import TierSpec


@dataclass(frozen=True)
class CleanResult:
    """What `loop clean` produced.

    `examples`: kept records in pool order, each with split `train` or `validation`, scores,
    and (training ones) meta['tiers']. `raw`: the raw pool with split `train`/`held_out` when
    the recipe has a `raw` tier, else empty. Use `loop.tiers.tier_pool` / `validation_set`.
    `dropped`: every removed record with step, reason and detail (the `raw_tier` rows are raw
    records held out of the raw tier only). `funnel`: one row per step (then `review`, `split`,
    `raw_tier`) with in/out counts, drops by reason and up to 3 removed examples per reason.
    """

    examples: tuple[Example, ...]
    raw: tuple[Example, ...]
    dropped: tuple[DroppedRecord, ...]
    funnel: tuple[StepFunnel, ...]
    files: tuple[Path, ...]  # written into out_dir: cleaned/dropped/raw JSONL, funnel.json/.md
    tiers: tuple[TierSpec, ...]
    key: str
    reused: bool = False
    derived: tuple[str, ...] = ()  # settings the recipe left unset, derived from the pool, with why
