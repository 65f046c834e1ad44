"""Exact dedup on normalized content.

The key is a BLAKE2b digest of the role-tagged messages (all of them, or the prompt only with
`on: prompt`) after the configured Unicode normalization, case folding and whitespace
collapsing. From each group of equal keys the highest-quality record is kept, then the first
seen; the others are dropped as `exact_duplicate`.
"""

from __future__ import annotations

import hashlib

from loop.clean.base import (
    Drop,
    StepContext,
    StepOutput,
    full_text,
    normalize,
    prompt_text,
)
from loop.clean.quality import best_index
from loop.example import Example
from loop.recipe import ExactDedupConfig


def key(ex: Example, cfg: ExactDedupConfig) -> bytes:
    """The dedup key of one example under `cfg`."""
    text = prompt_text(ex) if cfg.on == "prompt" else full_text(ex)
    norm = normalize(
        text,
        lowercase=cfg.lowercase,
        collapse_whitespace=cfg.collapse_whitespace,
        unicode=cfg.unicode,
    )
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()


def run(examples: list[Example], cfg: ExactDedupConfig, ctx: StepContext) -> StepOutput:
    first: dict[bytes, int] = {}
    groups: dict[int, list[int]] = {}  # first index -> all indices, only for duplicated keys
    for i, ex in enumerate(examples):
        k = key(ex, cfg)
        j = first.setdefault(k, i)
        if j != i:
            groups.setdefault(j, [j]).append(i)
        if i % 100_000 == 0:
            ctx.tick("exact_dedup", i, len(examples))
    drops = []
    for members in groups.values():
        keep = best_index(members, examples, ctx)
        kept = examples[keep]
        for i in members:
            if i != keep:
                detail = f"same {cfg.on} text as {kept.id} ({kept.source})"
                drops.append(Drop(i, "exact_duplicate", detail, duplicate_of=kept.id))
    drops.sort(key=lambda d: d.index)
    ctx.tick("exact_dedup", len(examples), len(examples))
    return StepOutput(list(examples), tuple(drops))
