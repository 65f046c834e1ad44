"""Preparation: pool -> clean -> tiers -> the shared validation set, before any cell runs.

`prepare` reads the pool, runs the cleaning funnel (reusing its stored result when nothing
changed) and hands back every tier's training pool, the validation set and the digest that
identifies finished cells. `clean` is `loop clean`: the same, plus its run in the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loop import pool as pool_mod
from loop import subsets as subsets_mod
from loop.clean.result import CleanResult
from loop.events import Progress, say, silent
from loop.example import Example
from loop.pool import PoolLoad
from loop.recipe import EvaluatorSpec, Recipe, RecipeError, is_ranked, to_dict, validate

if TYPE_CHECKING:
    from loop.select import Ranking
    from loop.track import Tracker


def work_dir(recipe: Recipe) -> Path:
    """Working files of a recipe (cleaned pool, manifests, report) — next to the default store."""
    return Path.cwd() / "mlruns" / "work" / recipe.name


def resolve_evaluators(
    recipe: Recipe, examples: list[Example] | None = None, *, progress: Progress = silent
) -> Recipe:
    """`eval.evaluators: auto` replaced by the evaluators that fit the pool's answers, as
    `loop init` chooses them (loop.profile.default_evaluators), and said in words. A recipe
    with evaluators (or none: validation loss only) comes back as it is. `examples`: the pool
    already read (else it is read here)."""
    import dataclasses

    from loop import profile

    asked = recipe.eval.evaluators
    if asked != "auto" and (asked or progress is silent):
        return recipe
    if examples is None:
        examples = pool_mod.load_pool(recipe.pool).examples
    prof = profile.profile_pool(examples)
    specs = tuple(EvaluatorSpec(**spec) for spec in profile.default_evaluators(prof))
    names = ", ".join(e.name + (f" {e.params}" if e.params else "") for e in specs)
    if asked != "auto":
        say(
            progress,
            "eval.evaluators: none set, so only validation loss is measured; "
            f"`evaluators: auto` would score {names} ({prof.describe()})",
        )
        return recipe
    say(progress, f"eval.evaluators (auto): {names}, for {prof.describe()}")
    out = dataclasses.replace(recipe, eval=dataclasses.replace(recipe.eval, evaluators=specs))
    validate(out)  # the chosen evaluators pass the checks a written list would
    return out


@dataclass(frozen=True)
class Prepared:
    raw: PoolLoad
    clean: CleanResult
    tiers: dict[str, list[Example]]  # training pool per tier; a ranked tier's in ranking order
    val: list[Example]
    pool_digest: str
    rankings: dict[str, Ranking] = field(default_factory=dict)  # the ranked tiers (loop.select)

    @property
    def tier_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.tiers.items()}


def prepare(
    recipe: Recipe, *, progress: Progress = silent, force_clean: bool = False, rank: bool = True
) -> Prepared:
    """`rank=False`: leave the ranked tiers unranked (their pools in pool order), for what needs
    only the tiers' sizes; no subset may be taken from such a Prepared."""
    from loop import clean, models, tiers

    shown = [*recipe.pool.paths, *(s.path for s in recipe.pool.sources)]
    say(progress, f"reading pool ({', '.join(shown) or recipe.pool.hf_dataset})")
    raw = pool_mod.load_pool(recipe.pool)
    check_provenance(recipe, raw.examples, progress)
    skipped = sum(raw.skipped_by_reason.values())
    say(
        progress,
        f"  {len(raw.examples)} records read"
        + (f", {skipped} skipped: {dict(raw.skipped_by_reason)}" if skipped else ""),
    )
    tokenizer = models.load_tokenizer(recipe.model)

    count_tokens = models.token_counter(tokenizer)

    result = clean.run_clean(
        recipe,
        raw.examples,
        count_tokens=count_tokens,
        template_tokens=models.template_overhead(tokenizer),
        tokens_within_bytes=models.tokens_within_bytes(tokenizer),
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
    rankings = {}
    if rank and any(is_ranked(t) for t in recipe.tiers):
        from loop import select

        say(progress, "ranking the tiers that select by a score")
        rankings = select.rank_tiers(
            recipe, pools, folder=work_dir(recipe) / "select", tokenizer=tokenizer,
            progress=progress,
        )  # fmt: skip
        for name, ranking in rankings.items():
            pools[name] = list(ranking.order)
    return Prepared(raw, result, pools, val, digest, rankings)


def repeated_tiers(prep: Prepared) -> dict[str, str]:
    """Tiers whose training pool holds exactly the examples of an earlier tier: {tier: earlier}.
    Their cells would train on what the earlier tier's cells train on (e.g. `raw` when cleaning
    removed nothing but the validation split), so a grid sweep does not run them."""
    first: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for name, examples in prep.tiers.items():
        # a ranked tier takes its subsets by its order: it repeats only the same order
        r = prep.rankings.get(name)
        ids = (
            (r.method, tuple(ex.id for ex in examples))
            if r
            else ("random", frozenset(ex.id for ex in examples))
        )
        if ids in first:
            out[name] = first[ids]
        else:
            first[ids] = name
    return out


def repeated_tiers_text(repeats: dict[str, str], prep: Prepared) -> str:
    return "; ".join(
        f"tier {t} holds the same {prep.tier_sizes[t]:,} examples as tier {same}: its cells would "
        f"repeat {same}'s, so they are not run (cleaning changed nothing that {t} keeps)"
        for t, same in repeats.items()
    )


def check_provenance(recipe: Recipe, examples: tuple[Example, ...], progress: Progress) -> None:
    """Tier filters against the fields the records have, and the records' own licenses:
    a RecipeError before anything is cleaned (a warning instead with licenses.policy: warn)."""
    from loop import provenance

    errors = provenance.where_errors(
        recipe.tiers, examples, extra={"clean.split.where": recipe.clean.split.where}
    )
    licenses = provenance.record_license_problems(recipe, examples)
    if recipe.licenses.policy == "refuse":
        errors += licenses
    else:
        licenses += provenance.license_problems(recipe)
        for line in licenses:
            say(progress, f"warning: {line} (licenses.policy: warn)")
    if errors:
        raise RecipeError(recipe.path or recipe.name, errors)


def check_sizes(recipe: Recipe, prep: Prepared | None = None) -> Prepared:
    """Sizes against each tier's training pool, and every evaluator on the validation records
    it will score (`evaluate.dry_run`): an error now, not after the first cell has trained.
    `loop validate --pool`, `plan`, `sweep` and `train` all pass here before training."""
    from loop import evaluate

    prep = prep or prepare(recipe, rank=False)  # sizes only: a ranking changes none
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

    # the funnel and the tiers' sizes only: rankings (IFD's forward passes) wait for the sweep
    prep = prepare(recipe, progress=progress, force_clean=force, rank=False)
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
        for source, reasons in step.dropped_by_source.items():
            for reason, n in reasons.items():
                metrics[f"source.{_metric_name(source)}.dropped.{step.name}.{reason}"] = n
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


def _metric_name(text: str) -> str:
    """A source name as an MLflow metric key part (letters, digits, _ - . / and space)."""
    import re

    return re.sub(r"[^\w\-./ ]", "_", text)


def _flat_clean(recipe: Recipe):
    d = to_dict(recipe.clean)
    for section, value in d.items():
        if isinstance(value, dict):
            for k, v in value.items():
                yield f"clean.{section}.{k}", v
        else:
            yield f"clean.{section}", value
