"""Preparation: pool -> clean -> tiers -> the shared validation set, before any cell runs.

`prepare` reads the pool, runs the cleaning funnel (reusing its stored result when nothing
changed) and hands back every tier's training pool, the validation set and the digest that
identifies finished cells. `clean` is `loop clean`: the same, plus its run in the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loop import pool as pool_mod
from loop import subsets as subsets_mod
from loop.clean.result import CleanResult
from loop.events import Progress, say, silent
from loop.example import Example
from loop.pool import PoolLoad
from loop.recipe import Recipe, RecipeError, to_dict

if TYPE_CHECKING:
    from loop.track import Tracker


def work_dir(recipe: Recipe) -> Path:
    """Working files of a recipe (cleaned pool, manifests, report) — next to the default store."""
    return Path.cwd() / "mlruns" / "work" / recipe.name


@dataclass(frozen=True)
class Prepared:
    raw: PoolLoad
    clean: CleanResult
    tiers: dict[str, list[Example]]  # training pool per tier
    val: list[Example]
    pool_digest: str

    @property
    def tier_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.tiers.items()}


def prepare(recipe: Recipe, *, progress: Progress = silent, force_clean: bool = False) -> Prepared:
    from loop import clean, models, tiers

    say(progress, f"reading pool ({', '.join(recipe.pool.paths) or recipe.pool.hf_dataset})")
    raw = pool_mod.load_pool(recipe.pool)
    skipped = sum(raw.skipped_by_reason.values())
    say(
        progress,
        f"  {len(raw.examples)} records read"
        + (f", {skipped} skipped: {dict(raw.skipped_by_reason)}" if skipped else ""),
    )
    tokenizer = models.load_tokenizer(recipe.model)

    def count_tokens(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    result = clean.run_clean(
        recipe,
        raw.examples,
        count_tokens=count_tokens,
        template_tokens=models.template_overhead(tokenizer),
        out_dir=work_dir(recipe) / "clean",
        progress=lambda msg: say(progress, f"  {msg}"),
        force=force_clean,
    )
    val = tiers.validation_set(result)
    pools = {t.name: tiers.tier_pool(result, t.name) for t in recipe.tiers}
    # The cells' data depend on the raw pool and on the cleaning result (which also covers review
    # decisions): both go into the digest that identifies finished cells.
    digest = hashlib.sha256(
        f"{pool_mod.pool_digest(raw.examples)}:{result.key}".encode()
    ).hexdigest()[:16]
    return Prepared(raw, result, pools, val, digest)


def check_sizes(recipe: Recipe, prep: Prepared | None = None) -> Prepared:
    """Sizes against each tier's training pool, and every evaluator on the validation records
    it will score (`evaluate.dry_run`): an error now, not after the first cell has trained.
    `loop validate --pool`, `plan`, `sweep` and `train` all pass here before training."""
    from loop import evaluate

    prep = prep or prepare(recipe)
    errors = subsets_mod.check_sizes(prep.tier_sizes, recipe.sizes, recipe.subsets.on_too_small)
    if errors:
        raise RecipeError(recipe.path or recipe.name, errors)
    if recipe.eval.evaluators and prep.val:
        evaluate.dry_run(
            recipe.eval.evaluators, evaluate.sample_for_generation(prep.val, recipe.eval)
        )
    return prep


def clean(recipe: Recipe, *, progress: Progress = silent, force: bool = False) -> Prepared:
    """`loop clean`: the funnel, its files, and a `clean` run in MLflow (once per recipe+pool)."""
    from loop import track

    prep = prepare(recipe, progress=progress, force_clean=force)
    tr = track.tracker(recipe, prep.pool_digest)
    warn_raw_records(recipe, tr, progress)
    log_clean(recipe, prep, tr)
    return prep


def warn_raw_records(recipe: Recipe, tr: Tracker, progress: Progress) -> None:
    """Say so when `tracking.log_raw_records` sends personal data to the store."""
    if recipe.tracking.log_raw_records:
        from loop.server import redact

        say(
            progress,
            "warning: tracking.log_raw_records is on: the raw and cleaned pools, the dropped "
            f"records and every prediction go to the tracking store "
            f"{redact(tr.store.tracking_uri)} unmasked, personal data included",
        )


def log_clean(recipe: Recipe, prep: Prepared, tr: Tracker) -> None:
    """The `clean` run of this recipe+pool (written once): the funnel and the raw pool."""
    from loop import track

    metrics = {
        "raw.records": len(prep.raw.examples),
        "validation.n": len(prep.val),
        **{f"tier.{k}.n": v for k, v in prep.tier_sizes.items()},
    }
    for step in prep.clean.funnel:
        metrics[f"funnel.{step.name}.out"] = step.n_out
        for reason, n in step.dropped.items():
            metrics[f"dropped.{step.name}.{reason}"] = n
    from loop.clean import publish

    profile = publish.pool_profile(
        prep.raw, recipe.clean.pii, pool_mod.pool_digest(prep.raw.examples)
    )
    local = {Path(p).name: Path(p) for p in prep.clean.files if Path(p).is_file()}
    raw_records = recipe.tracking.log_raw_records
    if raw_records:
        files = list(local.values())
    else:  # no record text with personal data: masked copies, the pool as a reference
        files = list(
            publish.store_copies(
                prep.clean.dropped,
                local["funnel.json"],
                local["clean_key.json"],
                recipe.clean.pii,
                work_dir(recipe) / "clean" / publish.STORE_FOLDER,
            )
        )
    track.log_clean_once(
        tr,
        params=dict(_flat_clean(recipe)),
        metrics=metrics,
        files=files,
        pool_profile=profile,
        pool_source=",".join(str(p) for p in prep.raw.files) or str(recipe.pool.hf_dataset),
        pool=tuple(prep.raw.examples) if raw_records else None,
    )


def _flat_clean(recipe: Recipe):
    d = to_dict(recipe.clean)
    for section, value in d.items():
        if isinstance(value, dict):
            for k, v in value.items():
                yield f"clean.{section}.{k}", v
        else:
            yield f"clean.{section}", value
