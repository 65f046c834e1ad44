"""Nested, seeded subsets per tier, with manifests that are byte-identical on any machine.

For each tier and seed there is one ordering of that tier's training pool; size n takes its first n,
so every smaller subset is contained in the larger one. The ordering is by sha256(seed, example id),
so it does not depend on the order records were read in, on numpy's RNG, or on the platform, and a
tier nested in another (top 30% within top 70%) sees its examples in the same relative order.

A ranked tier (`select: ifd | length | diversity | quality`, loop/select.py) has one ordering,
its ranking, and size n takes its top n for every seed (`take_ranked`): the ranking is
deterministic, so a seed there varies only what training draws from it (the LoRA initialisation
and the order batches are drawn in), not which examples are in the subset. Seeds of a ranked
tier therefore measure training noise alone; a random tier's seeds measure the draw as well.
`subsets.stratify_by` applies to random tiers only.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from loop.errors import DataError
from loop.example import Example
from loop.recipe import cell_id


@dataclass(frozen=True)
class Subset:
    tier: str
    size: int  # the size asked for
    seed: int
    examples: tuple[Example, ...]
    capped: bool  # the tier had fewer examples than `size`; all of them are used
    select: str = "random"  # random: a seeded draw; else the method whose top `size` this is

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.examples)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(manifest_bytes(self)).hexdigest()


def _key(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()


def ordering(pool: list[Example], seed: int, stratify_by: str | None = None) -> list[Example]:
    """The seeded order a tier's pool is consumed in.

    With `stratify_by`, each example is placed at its quantile position inside its stratum, so any
    prefix keeps the pool's mix (within one example per stratum).
    """
    ranked = sorted(pool, key=lambda e: _key(seed, e.id))
    if not stratify_by:
        return ranked
    strata: dict[str, list[Example]] = defaultdict(list)
    for e in ranked:
        strata[str(e.meta.get(stratify_by, ""))].append(e)
    keyed = []
    for members in strata.values():
        m = len(members)
        keyed.extend(((i + 0.5) / m, _key(seed, e.id), e) for i, e in enumerate(members))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in keyed]


def take(
    pool: list[Example],
    *,
    tier: str,
    size: int,
    seed: int,
    stratify_by: str | None = None,
    on_too_small: str = "error",
) -> Subset:
    """The first `size` examples of the tier's seeded ordering."""
    if size > len(pool) and on_too_small == "error":
        raise DataError(
            f"tier {tier!r} has {len(pool)} training examples, fewer than size {size} "
            "(set subsets.on_too_small: cap to use the whole tier)"
        )
    order = ordering(pool, seed, stratify_by)
    return Subset(tier, size, seed, tuple(order[:size]), capped=size > len(pool))


def take_ranked(
    ranking: list[Example],
    *,
    tier: str,
    size: int,
    seed: int,
    select: str,
    on_too_small: str = "error",
) -> Subset:
    """The top `size` examples of a ranked tier's `ranking` (best first), the same for every
    seed, so every smaller subset is the start of every larger one."""
    if size > len(ranking) and on_too_small == "error":
        raise DataError(
            f"tier {tier!r} has {len(ranking)} training examples, fewer than size {size} "
            "(set subsets.on_too_small: cap to use the whole tier)"
        )
    return Subset(tier, size, seed, tuple(ranking[:size]), size > len(ranking), select)


def check_sizes(tier_sizes: dict[str, int], sizes: tuple[int, ...], on_too_small: str) -> list[str]:
    """Errors for sizes a tier cannot supply (empty when on_too_small is `cap`)."""
    if on_too_small == "cap":
        return []
    errors = []
    for tier, available in tier_sizes.items():
        too_big = [n for n in sizes if n > available]
        if too_big:
            errors.append(
                f"subsets.sizes: must be within (0, {available}] (training pool of tier {tier!r}), "
                f"got {too_big}"
            )
    return errors


def manifest(subset: Subset) -> dict:
    out = {
        "tier": subset.tier,
        "size": subset.size,
        "seed": subset.seed,
        "capped": subset.capped,
        "n_examples": len(subset.examples),
        "ids": list(subset.ids),
        "ids_sha256": hashlib.sha256("\n".join(subset.ids).encode()).hexdigest(),
    }
    if subset.select != "random":  # a random subset's manifest (and sha256) stays as it was
        out["select"] = subset.select
    return out


def manifest_bytes(subset: Subset) -> bytes:
    return (json.dumps(manifest(subset), sort_keys=True, indent=1) + "\n").encode()


def write_manifest(subset: Subset, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cell_id(subset.tier, subset.size, subset.seed)}.json"
    path.write_bytes(manifest_bytes(subset))
    return path
