"""Train/validation split of the cleaned pool, before tiers are formed.

The validation set is `clean.split.validation` of the cleaned pool (at least 1 example, at most
`max_validation`), optionally stratified on a meta field with largest-remainder quotas; with
`where` (e.g. `{source: expert}`) it is drawn only from the matching records, so every source is
scored on the answers one trusts. Records
are ranked by BLAKE2b(seed, example id), so the choice does not depend on pool order and a grown
pool keeps most of its validation set.

Then every training example that leaks a validation example is removed and counted
(`near_validation`): the same id (or original id before anonymization), the same normalized
prompt, or a MinHash near-duplicate under the recipe's `clean.near_dedup` settings (estimated
Jaccard >= threshold, compared without the prompt lines most records share; a near-duplicate
whose answer differs materially is a minimal pair, not a leak, unless `minimal_pairs: drop`).
The same test builds the `raw` tier (`raw_pool`); when the recipe runs semantic dedup, the raw
tier also loses the paraphrases of validation examples (cleaning removed them from the clean
tiers before the split; in the demo pool they were 3% of the raw tier).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loop.clean import near_dup
from loop.clean.base import Drop, normalize, prompt_text, shared_lines
from loop.clean.pairs import answers_differ
from loop.errors import DataError
from loop.example import Example
from loop.recipe import RAW_TIER, NearDedupConfig, SplitConfig


@dataclass(frozen=True)
class SplitOutput:
    train: list[Example]
    validation: list[Example]
    drops: tuple[Drop, ...]  # indices into the split's input, reason `near_validation`
    train_index: tuple[int, ...]  # input index of each training example
    validation_index: tuple[int, ...]


def validation_size(n: int, cfg: SplitConfig) -> int:
    if n < 2:
        raise DataError(
            f"clean.split: the cleaned pool has {n} example(s); at least 2 are needed to hold "
            "out a validation set"
        )
    k = max(1, int(n * cfg.validation + 0.5))
    if cfg.max_validation is not None:
        k = min(k, cfg.max_validation)
    return min(k, n - 1)


def _rank(ex: Example, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{ex.id}".encode(), digest_size=8).digest()


def choose_validation(examples: Sequence[Example], cfg: SplitConfig) -> list[int]:
    """Sorted indices of the validation examples (drawn from those matching `cfg.where`)."""
    candidates = list(range(len(examples)))
    if cfg.where:
        from loop.provenance import matches

        candidates = [i for i in candidates if matches(examples[i], cfg.where)]
        if len(candidates) < 2:
            raise DataError(
                f"clean.split.where: {len(candidates)} cleaned record(s) match {cfg.where}; at "
                "least 2 are needed to hold out a validation set"
            )
    n = len(candidates)
    k = validation_size(n, cfg)
    ranked = sorted(candidates, key=lambda i: (_rank(examples[i], cfg.seed), i))
    if cfg.stratify_by is None:
        return sorted(ranked[:k])
    strata: dict[str, list[int]] = defaultdict(list)
    for i in ranked:
        strata[str(examples[i].meta.get(cfg.stratify_by, ""))].append(i)
    names = sorted(strata)
    exact = {s: k * len(strata[s]) / n for s in names}
    quota = {s: int(exact[s]) for s in names}
    by_remainder = sorted(names, key=lambda s: (-(exact[s] - quota[s]), s))
    for s in by_remainder[: k - sum(quota.values())]:
        quota[s] += 1
    return sorted(i for s in names for i in strata[s][: quota[s]])


def leaks(
    validation: Sequence[Example], others: Sequence[Example], near: NearDedupConfig
) -> dict[int, str]:
    """Index in `others` -> why it duplicates a validation example (id, prompt, or near-dup)."""
    found: dict[int, str] = {}
    by_id: dict[str, str] = {}
    by_prompt: dict[str, str] = {}
    for v in validation:
        by_id[v.id] = v.id
        if "original_id" in v.meta:
            by_id[str(v.meta["original_id"])] = v.id
        by_prompt.setdefault(normalize(prompt_text(v)), v.id)
    for i, ex in enumerate(others):
        vid = by_id.get(ex.id) or by_id.get(str(ex.meta.get("original_id", "")))
        if vid is not None:
            found[i] = f"same record as validation {vid}"
            continue
        vid = by_prompt.get(normalize(prompt_text(ex)))
        if vid is not None:
            found[i] = f"same prompt as validation {vid}"
    if validation and others:
        shared = shared_lines([*validation, *others]) if near.shared_text == "drop" else frozenset()
        vsig = near_dup.signatures(near_dup.texts_of(validation, near.on, shared), near)
        osig = near_dup.signatures(near_dup.texts_of(others, near.on, shared), near)
        q, c, jac = near_dup.cross_pairs(vsig, osig, near.threshold)
        order = np.lexsort((-jac, c))  # best match per corpus row first
        for qi, ci, s in zip(q[order], c[order], jac[order], strict=True):
            if near.minimal_pairs == "keep" and answers_differ(
                validation[int(qi)], others[int(ci)], near.answer_similarity
            ):
                continue
            if int(ci) not in found:
                vid = validation[int(qi)].id
                found[int(ci)] = f"near-duplicate of validation {vid} (estimated Jaccard {s:.2f})"
    return found


def split_validation(
    examples: Sequence[Example], cfg: SplitConfig, near: NearDedupConfig
) -> SplitOutput:
    """Hold out the validation set and remove training examples that leak it."""
    chosen = set(choose_validation(examples, cfg))
    validation = [dataclasses.replace(examples[i], split="validation") for i in sorted(chosen)]
    rest = [i for i in range(len(examples)) if i not in chosen]
    leaked = leaks(validation, [examples[i] for i in rest], near)
    drops = tuple(Drop(rest[j], "near_validation", why) for j, why in sorted(leaked.items()))
    train_index = tuple(i for j, i in enumerate(rest) if j not in leaked)
    train = [dataclasses.replace(examples[i], split="train") for i in train_index]
    return SplitOutput(train, validation, drops, train_index, tuple(sorted(chosen)))


def raw_pool(
    raw: Sequence[Example],
    validation: Sequence[Example],
    near: NearDedupConfig,
    paraphrases: dict[int, str] | None = None,
) -> list[Example]:
    """The raw pool with split `train`, or `held_out` when it duplicates a validation example.

    `paraphrases`: index in `raw` -> why it paraphrases a validation example (the semantic test,
    `semantic.validation_leaks`), held out as well where no cheaper test caught it first."""
    found = {**(paraphrases or {}), **leaks(validation, raw, near)}
    out = []
    for i, ex in enumerate(raw):
        if i in found:
            out.append(
                dataclasses.replace(ex, split="held_out", meta={**ex.meta, "held_out": found[i]})
            )
        else:
            out.append(
                dataclasses.replace(ex, split="train", meta={**ex.meta, "tiers": [RAW_TIER]})
            )
    return out
