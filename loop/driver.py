"""The one orchestrator: pool -> clean -> tiers -> for each cell: subset -> train -> evaluate -> track.

Every function here takes a validated `Recipe` and reports progress through a callback of `Event`s;
`loop/cli.py` turns those into a progress bar or plain log lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop import pool as pool_mod
from loop import subsets as subsets_mod
from loop.example import Example
from loop.recipe import Cell, Recipe, RecipeError, expand_cells, recipe_digest, to_dict


@dataclass(frozen=True)
class Event:
    kind: str  # message | cell_start | step | cell_done | cell_failed
    cell: str | None = None
    done: int = 0
    total: int = 0
    step: int = 0
    max_steps: int = 0
    message: str = ""
    metrics: dict[str, float] | None = None


Progress = Callable[[Event], None]


def _silent(_: Event) -> None:
    return None


def work_dir(recipe: Recipe) -> Path:
    """Working files of a recipe (cleaned pool, manifests, report) — next to the default store."""
    return Path.cwd() / "mlruns" / "work" / recipe.name


# ----------------------------------------------------------------------------------------------
# Preparation: pool, cleaning, tiers, validation set
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    raw: Any  # pool.PoolLoad
    clean: Any  # clean.CleanResult
    tiers: dict[str, list[Example]]  # training pool per tier
    val: list[Example]
    pool_digest: str

    @property
    def tier_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.tiers.items()}


def prepare(recipe: Recipe, *, progress: Progress = _silent, force_clean: bool = False) -> Prepared:
    from loop import clean, models, tiers

    progress(
        Event(
            "message",
            message=f"reading pool ({', '.join(recipe.pool.paths) or recipe.pool.hf_dataset})",
        )
    )
    raw = pool_mod.load_pool(recipe.pool)
    skipped = sum(raw.skipped_by_reason.values())
    progress(
        Event(
            "message",
            message=f"  {len(raw.examples)} records read"
            + (f", {skipped} skipped: {dict(raw.skipped_by_reason)}" if skipped else ""),
        )
    )
    tokenizer = models.load_tokenizer(recipe.model)

    def count_tokens(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    result = clean.run_clean(
        recipe,
        raw.examples,
        count_tokens=count_tokens,
        out_dir=work_dir(recipe) / "clean",
        progress=lambda msg: progress(Event("message", message=f"  {msg}")),
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


def clean(recipe: Recipe, *, progress: Progress = _silent, force: bool = False) -> Prepared:
    """`loop clean`: the funnel, its files, and a `clean` run in MLflow (once per recipe+pool)."""
    prep = prepare(recipe, progress=progress, force_clean=force)
    _log_clean_once(recipe, prep, _tracker(recipe, prep.pool_digest))
    return prep


def check_sizes(recipe: Recipe, prep: Prepared | None = None) -> Prepared:
    """Sizes against each tier's training pool: an error now, not mid-sweep."""
    prep = prep or prepare(recipe)
    errors = subsets_mod.check_sizes(prep.tier_sizes, recipe.sizes, recipe.subsets.on_too_small)
    if errors:
        raise RecipeError(recipe.path or recipe.name, errors)
    return prep


# ----------------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRow:
    cell: str
    tier: str
    size: int
    seed: int
    examples: int
    tokens: int
    steps: int
    seconds: float


@dataclass(frozen=True)
class Plan:
    rows: list[PlanRow]
    notes: list[str]
    device: str


# Measured on 2 CPU cores with SmolLM2-135M + LoRA r16 (all linear layers), fp32: 110-150
# training tokens/s through the trainer; `plan` says so when the recipe uses another model.
_CPU_TOKENS_PER_S_135M = 140.0
_GPU_SPEEDUP = 25.0


def optimizer_steps(n_examples: int, recipe: Recipe) -> int:
    from loop.train import plan_budget

    return plan_budget(n_examples, recipe.train).steps


def plan(recipe: Recipe, *, progress: Progress = _silent) -> Plan:
    import torch

    from loop import models

    prep = check_sizes(recipe, prepare(recipe, progress=progress))
    tokenizer = models.load_tokenizer(recipe.model)
    eff = recipe.train.batch_size * recipe.train.grad_accum
    gpu = torch.cuda.is_available()
    rate = _CPU_TOKENS_PER_S_135M * (_GPU_SPEEDUP if gpu else 1.0)
    rows = []
    for cell in expand_cells(recipe):
        sub = subsets_mod.take(
            prep.tiers[cell.tier],
            tier=cell.tier,
            size=cell.size,
            seed=cell.seed,
            stratify_by=recipe.subsets.stratify_by,
            on_too_small=recipe.subsets.on_too_small,
        )
        lengths = _token_lengths(tokenizer, list(sub.examples), recipe.train.max_length)
        steps = optimizer_steps(len(sub.examples), recipe)
        mean_len = sum(lengths) / max(1, len(lengths))
        tokens = int(steps * eff * mean_len)
        eval_s = _eval_seconds(recipe, len(prep.val))
        rows.append(
            PlanRow(
                cell.id,
                cell.tier,
                cell.size,
                cell.seed,
                len(sub.examples),
                tokens,
                steps,
                tokens / rate + eval_s,
            )
        )
    notes = [
        f"validation set: {len(prep.val)} examples (shared by every cell); "
        f"training pools: {prep.tier_sizes}"
    ]
    if recipe.subsets.strategy == "adaptive":
        a = recipe.subsets.adaptive
        limits = [f"at most {a.max_rounds} rounds"]
        if a.budget_tokens:
            limits.append(f"{a.budget_tokens:,} training tokens")
        if a.budget_hours:
            limits.append(f"{a.budget_hours:g} h")
        notes.append(
            "adaptive: these are the first round's cells; later rounds are chosen from the "
            f"curves ({', '.join(limits)})"
        )
    if recipe.model.name not in ("smollm2-135m-instruct", "tiny-random"):
        notes.append(
            "time estimates are scaled from SmolLM2-135M; larger models take proportionally longer"
        )
    return Plan(rows, notes, "cuda" if gpu else "cpu")


def _token_lengths(tokenizer: Any, examples: list[Example], max_length: int) -> list[int]:
    if not examples:
        return []
    texts = [" ".join(m.content for m in e.messages) for e in examples]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # + ~12 tokens of chat-template headers per example
    return [min(max_length, len(x) + 12) for x in ids]


def _eval_seconds(recipe: Recipe, n_val: int) -> float:
    gen = recipe.eval.samples or n_val
    has_gen = any(e.name != "choice_loglik" for e in recipe.eval.evaluators)
    return n_val * 0.05 + (gen * 0.3 if has_gen else 0.0)


# ----------------------------------------------------------------------------------------------
# One cell
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellOutcome:
    cell: str
    metrics: dict[str, float]
    run_id: str | None = None
    error: str | None = None
    steps: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class CellResult:
    """What one fine-tune + evaluation hands back, in this process or from a Ray worker."""

    metrics: dict[str, float]  # val_loss and eval.* (what the curves use)
    history: tuple[tuple[str, int, float], ...]  # (metric, step, value) per logged step
    params: dict[str, Any]  # the budget actually used
    counters: dict[str, float]  # train_tokens, train_seconds, eval_items
    predictions: tuple[dict[str, Any], ...]
    steps: int
    seconds: float
    error: str | None = None  # set instead of the fields above when the cell raised
    # metric -> {validation item id: score}: what the paired analysis reads (item_scores.json)
    item_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    adapter: str | None = None  # the saved LoRA adapter's folder, logged as artifact "adapter"


def _subset_frame(examples: tuple[Example, ...]):
    import pandas as pd

    return pd.DataFrame(
        {
            "id": [e.id for e in examples],
            "source": [e.source for e in examples],
            "prompt": ["\n".join(f"{m.role}: {m.content}" for m in e.prompt) for e in examples],
            "answer": [e.answer for e in examples],
        }
    )


def cell_params(recipe: Recipe) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = obj

    d = to_dict(recipe)
    for section in ("model", "lora", "train"):
        walk(section, d[section])
    flat["eval.evaluators"] = ",".join(e.name for e in recipe.eval.evaluators)
    flat["eval.samples"] = recipe.eval.samples
    return flat


def adapter_dir(recipe: Recipe, cell: Cell) -> Path:
    """Where a cell's LoRA adapter is written before it is logged on the cell's run."""
    return work_dir(recipe) / "adapters" / cell.id


def train_and_evaluate(
    recipe: Recipe,
    cell: Cell,
    subset: subsets_mod.Subset,
    val: list[Example],
    base: Any,
    on_step: Callable[[int, int, dict], None],
) -> tuple[Any, Any]:
    """Fine-tune one subset and evaluate it on the shared validation set."""
    from loop import evaluate, train

    max_steps = optimizer_steps(len(subset.examples), recipe)
    result = train.train_cell(
        base,
        list(subset.examples),
        recipe.train,
        recipe.lora,
        seed=cell.seed,
        val=val if recipe.train.eval_steps else None,
        on_log=lambda step, logs: on_step(step, max_steps, logs),
    )
    try:
        ev = evaluate.evaluate(
            result.model,
            base.tokenizer,
            val,
            recipe.eval,
            max_length=recipe.train.max_length,
            as_text=recipe.train.completion_as_text,
            val_loss=result.val_loss[-1][1] if result.val_loss else None,
            item_losses=True,  # per-item validation loss for the paired analysis
        )
        # kept so `loop evaluate` can re-score the cell on more items without retraining
        train.save_adapter(result, adapter_dir(recipe, cell))
    finally:
        train.release(result)  # unwrap the adapter: the base is clean for the next cell
    return result, ev


def compute_cell(
    recipe: Recipe,
    cell: Cell,
    subset: subsets_mod.Subset,
    val: list[Example],
    base: Any,
    on_step: Callable[[int, int, dict], None],
    history: list[tuple[str, int, float]] | None = None,
) -> CellResult:
    """Train + evaluate one cell; no tracking (the caller records the result). Raises on error;
    `history` (when given) keeps the steps logged before an error."""
    t0 = time.time()
    history = [] if history is None else history

    def step_logger(step: int, max_steps: int, logs: dict) -> None:
        for key in ("train_loss", "loss", "val_loss", "eval_loss"):
            if key in logs and logs[key] is not None:
                name = {"loss": "train_loss", "eval_loss": "val_loss"}.get(key, key)
                history.append((name, step, float(logs[key])))
        on_step(step, max_steps, logs)

    shutil.rmtree(adapter_dir(recipe, cell), ignore_errors=True)  # no stale adapter of a rerun
    result, ev = train_and_evaluate(recipe, cell, subset, val, base, step_logger)
    saved = adapter_dir(recipe, cell)
    return CellResult(
        metrics=dict(ev.metrics),
        history=tuple(history),
        params={
            "budget.steps": result.steps,
            "budget.epochs": round(result.epochs, 3),
            "budget.policy": result.policy,
            "train.micro_batch_used": result.micro_batch,
            "train.grad_accum_used": result.grad_accum,
            "train.oom_retries": result.oom_retries,
        },
        counters={
            "train_tokens": result.train_tokens,
            "train_seconds": result.seconds,
            "eval_items": ev.n_sampled,
        },
        predictions=tuple(ev.predictions),
        steps=result.steps,
        seconds=time.time() - t0,
        item_scores=dict(ev.item_scores),
        adapter=str(saved) if saved.is_dir() else None,
    )


@dataclass
class _Tracker:
    """What a sweep needs from the store, resolved once."""

    client: Any
    exp_id: str
    store: Any
    recipe_digest: str
    pool_digest: str


def _tracker(recipe: Recipe, pool_digest: str) -> _Tracker:
    from loop import track

    store = track.resolve_store(recipe.tracking.uri)
    client = track.client_for(store)
    exp_id = track.ensure_experiment(store, recipe.experiment)
    return _Tracker(client, exp_id, store, recipe_digest(recipe), pool_digest)


def take_subset(recipe: Recipe, prep: Prepared, cell: Cell) -> subsets_mod.Subset:
    return subsets_mod.take(
        prep.tiers[cell.tier],
        tier=cell.tier,
        size=cell.size,
        seed=cell.seed,
        stratify_by=recipe.subsets.stratify_by,
        on_too_small=recipe.subsets.on_too_small,
    )


def _open_run(
    recipe: Recipe, tr: _Tracker, parent_id: str | None, cell: Cell, subset: subsets_mod.Subset
) -> str:
    """The cell's child run, RUNNING, with its tags, params and subset as a dataset input."""
    from loop import track

    manifest = subsets_mod.write_manifest(subset, work_dir(recipe) / "manifests")
    tags = {
        "loop.tier": cell.tier,
        "loop.size": str(cell.size),
        "loop.seed": str(cell.seed),
        "loop.recipe_digest": tr.recipe_digest,
        "loop.pool_digest": tr.pool_digest,
        "loop.capped": str(subset.capped).lower(),
        "loop.subset_sha256": subset.sha256,
    }
    run_id = track.start_cell(
        tr.client,
        tr.exp_id,
        parent_id,
        cell=cell.id,
        tags=tags,
        params={**cell_params(recipe), "subset.n_examples": len(subset.examples)},
    )
    track.log_subset_input(
        tr.client,
        run_id,
        _subset_frame(subset.examples),
        name=cell.id,
        source=manifest.resolve().as_uri(),
    )
    return run_id


def _close_run(tr: _Tracker, run_id: str, res: CellResult) -> None:
    """Write a cell's result and mark it done (or FAILED with its error)."""
    from loop import track

    if res.history:
        track.log_history(tr.client, run_id, res.history)
    if res.error:
        track.fail_cell(tr.client, run_id, res.error)
        return
    track.log_params(tr.client, run_id, res.params)
    track.log_metrics(tr.client, run_id, {**res.metrics, **res.counters}, step=res.steps)
    track.log_table(tr.client, run_id, list(res.predictions), "predictions.json")
    if res.item_scores:
        track.log_item_scores(tr.client, run_id, res.item_scores)
    if res.adapter and Path(res.adapter).is_dir():  # a Ray worker's folder may be elsewhere
        track.log_dir(tr.client, run_id, Path(res.adapter), "adapter")
    track.finish_cell(tr.client, run_id)


ZERO_SHOT = "zero-shot"  # tier tag of the base model's run (size 0): every tier's anchor


def zero_shot_cell() -> Cell:
    return Cell(ZERO_SHOT, 0, 0)


def run_zero_shot(s: _Sweep) -> None:
    """Evaluate the base model once on the validation items with the sweep's evaluators: size 0,
    logged as its own run (tier tag `zero-shot`), the anchor of every tier's curve."""
    from loop import evaluate, models, track

    cell = zero_shot_cell()
    if cell.id in _done(s):
        return
    if s.recipe.executor.kind == "ray":
        s.progress(Event("message", message="zero-shot cell runs only on the local executor"))
        return
    s.progress(Event("message", message="evaluating the base model once (size 0, zero-shot)"))
    t0 = time.time()
    if s.base is None:
        s.base = models.load_base(s.recipe.model)
    tags = {
        "loop.tier": ZERO_SHOT,
        "loop.size": "0",
        "loop.seed": "0",
        "loop.recipe_digest": s.tr.recipe_digest,
        "loop.pool_digest": s.tr.pool_digest,
        "loop.capped": "false",
    }
    run_id = track.start_cell(
        s.tr.client,
        s.tr.exp_id,
        s.parent_id,
        cell=cell.id,
        tags=tags,
        params={**cell_params(s.recipe), "subset.n_examples": 0},
    )
    try:
        ev = evaluate.evaluate(
            s.base,
            s.base.tokenizer,
            s.prep.val,
            s.recipe.eval,
            max_length=s.recipe.train.max_length,
            as_text=s.recipe.train.completion_as_text,
        )
        res = CellResult(
            metrics=dict(ev.metrics),
            history=(),
            params={},
            counters={"train_tokens": 0, "eval_items": ev.n_sampled},
            predictions=tuple(ev.predictions),
            steps=0,
            seconds=time.time() - t0,
            item_scores=dict(ev.item_scores),
        )
    except KeyboardInterrupt:
        track.fail_cell(s.tr.client, run_id, "interrupted by the user (Ctrl-C)", killed=True)
        raise
    except Exception as exc:  # the sweep goes on without an anchor
        res = failed_result(exc, [], t0)
    _close_run(s.tr, run_id, res)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"


def run_cell(
    recipe: Recipe,
    cell: Cell,
    prep: Prepared,
    base: Any,
    tr: _Tracker | None,
    parent_id: str | None,
    on_step: Callable[[int, int, dict], None],
) -> CellOutcome:
    """subset -> train -> evaluate -> track, for one cell in this process. The run is opened
    first, so the UI shows it RUNNING with live step metrics. Exceptions other than Ctrl-C
    become a FAILED run with its error; Ctrl-C marks the run KILLED and propagates."""
    from loop import track

    t0 = time.time()
    subset = take_subset(recipe, prep, cell)
    run_id = _open_run(recipe, tr, parent_id, cell, subset) if tr is not None else None
    history: list[tuple[str, int, float]] = []
    try:
        res = compute_cell(recipe, cell, subset, prep.val, base, on_step, history)
    except KeyboardInterrupt:
        if tr is not None and run_id:
            track.fail_cell(tr.client, run_id, "interrupted by the user (Ctrl-C)", killed=True)
        raise
    except Exception as exc:  # recorded, and the sweep goes on
        res = failed_result(exc, history, t0)
    if tr is not None and run_id:
        _close_run(tr, run_id, res)
    return _outcome(cell, res, run_id)


def failed_result(exc: BaseException, history: list, t0: float) -> CellResult:
    return CellResult({}, tuple(history), {}, {}, (), 0, time.time() - t0, _error_text(exc))


def _outcome(cell: Cell, res: CellResult, run_id: str | None) -> CellOutcome:
    error = res.error.splitlines()[0] if res.error else None
    return CellOutcome(cell.id, res.metrics, run_id, error, res.steps, res.seconds)


def record_cell(
    recipe: Recipe,
    cell: Cell,
    subset: subsets_mod.Subset,
    tr: _Tracker,
    parent_id: str | None,
    res: CellResult,
) -> CellOutcome:
    """Track a cell computed elsewhere (a Ray worker): open, fill and close its run in one go, so
    a worker that dies mid-cell leaves nothing in the store and its retry cannot duplicate it."""
    run_id = _open_run(recipe, tr, parent_id, cell, subset)
    _close_run(tr, run_id, res)
    return _outcome(cell, res, run_id)


# ----------------------------------------------------------------------------------------------
# Sweep
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportOutcome:
    table: list[dict]
    paths: Any  # report.ReportPaths
    analysis: Any


@dataclass(frozen=True)
class SweepOutcome:
    ran: int
    skipped: int
    failed: int
    interrupted_before: list[str]
    report: ReportOutcome | None
    url: str
    outcomes: list[CellOutcome] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # adaptive sweeps: one row per decision


@dataclass
class _Sweep:
    """State shared by the rounds of one sweep: where results go and what ran."""

    recipe: Recipe
    prep: Prepared
    tr: _Tracker
    parent_id: str
    progress: Progress
    base: Any = None  # loaded on the first local cell
    outcomes: list[CellOutcome] = field(default_factory=list)
    skipped: int = 0


def _done(s: _Sweep) -> set[str]:
    from loop import track

    runs = track.cell_runs(s.tr.client, s.tr.exp_id, s.tr.recipe_digest, s.tr.pool_digest)
    return set(track.done_cells(runs))


def _run_cells(s: _Sweep, cells: list[Cell]) -> None:
    """Run the cells of `cells` that the store does not hold as done, on the recipe's executor."""
    done = _done(s)
    pending = [c for c in cells if c.id not in done]
    total, finished = len(cells), len(cells) - len(pending)
    s.skipped += finished
    if finished:
        s.progress(
            Event("message", message=f"{finished} of {total} cells already finished: skipping them")
        )
    if not pending:
        return
    counter = {"done": finished}

    def finished_cell(out: CellOutcome) -> None:
        s.outcomes.append(out)
        counter["done"] += 1
        if out.error:
            s.progress(
                Event(
                    "cell_failed",
                    cell=out.cell,
                    done=counter["done"],
                    total=total,
                    message=out.error,
                )
            )
        else:
            shown = {k: v for k, v in out.metrics.items() if k == "val_loss" or k.count(".") == 1}
            s.progress(
                Event("cell_done", cell=out.cell, done=counter["done"], total=total, metrics=shown)
            )

    def started(cell: Cell) -> None:
        what = f"{cell.size} examples of tier {cell.tier}, seed {cell.seed}"
        s.progress(
            Event("cell_start", cell=cell.id, done=counter["done"], total=total, message=what)
        )

    if s.recipe.executor.kind == "ray":
        from loop import cluster

        def result(cell: Cell, res: CellResult) -> None:
            finished_cell(record_cell(s.recipe, cell, subsets[cell], s.tr, s.parent_id, res))

        subsets = {c: take_subset(s.recipe, s.prep, c) for c in pending}  # drawn once, shipped
        jobs = list(subsets.items())
        cluster.run_cells(
            s.recipe,
            jobs,
            s.prep.val,
            on_submit=lambda c: s.progress(
                Event(
                    "message", message=f"queued on Ray: {c.id} ({c.size} examples, tier {c.tier})"
                )
            ),
            on_result=result,
        )
        return

    from loop import models

    if s.base is None:
        s.base = models.load_base(s.recipe.model)
    for cell in pending:
        started(cell)

        def on_step(
            step: int, max_steps: int, logs: dict, cell: Cell = cell, done: int = counter["done"]
        ) -> None:
            loss = logs.get("loss", logs.get("train_loss"))
            s.progress(
                Event(
                    "step",
                    cell=cell.id,
                    done=done,
                    total=total,
                    step=step,
                    max_steps=max_steps,
                    message=f"loss {loss:.3f}" if isinstance(loss, (int, float)) else "",
                )
            )

        finished_cell(run_cell(s.recipe, cell, s.prep, s.base, s.tr, s.parent_id, on_step))


def sweep(
    recipe: Recipe,
    *,
    progress: Progress = _silent,
    cells: list[Cell] | None = None,
    prep: Prepared | None = None,
) -> SweepOutcome:
    """Run every cell not yet finished for this recipe+pool (grid), or round after round as the
    curves ask (adaptive); then write the report."""
    from loop import track

    prep = check_sizes(recipe, prep or prepare(recipe, progress=progress))
    tr = _tracker(recipe, prep.pool_digest)
    _log_clean_once(recipe, prep, tr)
    runs = track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest)
    interrupted = track.mark_interrupted(tr.client, runs)
    if interrupted:
        progress(
            Event(
                "message",
                message=f"marked {len(interrupted)} interrupted cell(s) KILLED; rerunning: "
                + ", ".join(interrupted),
            )
        )
    adaptive = recipe.subsets.strategy == "adaptive" and cells is None
    if adaptive:
        _check_steering_metric(recipe)
    parent_id = track.sweep_parent(
        tr.client,
        tr.exp_id,
        recipe_digest=tr.recipe_digest,
        pool_digest=tr.pool_digest,
        name=f"sweep-{tr.recipe_digest[:6]}",
        params={
            **cell_params(recipe),
            "tiers": ",".join(prep.tiers),
            "sizes": ",".join(map(str, recipe.sizes)),
            "seeds": ",".join(map(str, recipe.subsets.seeds)),
            "validation.n": len(prep.val),
            "strategy": "adaptive" if adaptive else "grid",
            "executor": recipe.executor.kind,
        },
        tags={"loop.recipe": recipe.name},
    )
    s = _Sweep(recipe, prep, tr, parent_id, progress)
    decisions: list[dict] = []
    try:
        run_zero_shot(s)
        if adaptive:
            decisions = _adaptive(s)
        else:
            _run_cells(s, cells if cells is not None else expand_cells(recipe))
    except BaseException:  # Ctrl-C or an error outside any cell: the parent must not stay RUNNING
        track.finish_parent(
            tr.client, parent_id, failed=sum(1 for o in s.outcomes if o.error), interrupted=True
        )
        raise
    failed = sum(1 for o in s.outcomes if o.error)
    rep = report(recipe, prep=prep, tr=tr, parent_id=parent_id, decisions=decisions or None)
    track.finish_parent(tr.client, parent_id, failed=failed)
    return SweepOutcome(
        len(s.outcomes),
        s.skipped,
        failed,
        interrupted,
        rep,
        track.experiment_url(tr.client, recipe.experiment),
        s.outcomes,
        decisions,
    )


def _adaptive(s: _Sweep) -> list[dict]:
    """Rounds chosen by `loop/adaptive.py` from the curves so far; each decision is printed and
    the table is logged on the parent run after every round (a crash keeps it)."""
    from loop import adaptive, track

    recipe, prep = s.recipe, s.prep
    cost = _cell_cost(recipe, prep)
    decisions: list[dict] = []

    def on_decision(d: Any) -> None:
        row = adaptive.decisions_table([d])[0]
        decisions.append(row)
        sizes = ",".join(map(str, d.next_sizes)) or "—"
        s.progress(
            Event(
                "message",
                message=f"round {d.round} · {d.tier}: {d.decision} → next sizes {sizes}; {d.why}",
            )
        )

    def run_round(cells: list[Cell]) -> None:
        if decisions:
            _save_decisions(recipe, s.tr, decisions)
            track.log_rows(s.tr.client, s.parent_id, decisions, "adaptive_decisions.json")
        _run_cells(s, cells)

    def analyze(cells: frozenset[Cell]) -> Any:
        # Only the cells scheduled so far: a resumed sweep replays its rounds on the same data
        # even though the store already holds later rounds (or an earlier grid's cells).
        out = report(recipe, prep=prep, tr=s.tr, write=False, cells=cells)
        return out.analysis if out else None

    outcome = adaptive.run_rounds(
        recipe,
        prep.tier_sizes,
        run_cells=run_round,
        analyze=analyze,
        cost=cost,
        on_decision=on_decision,
    )
    _save_decisions(recipe, s.tr, decisions)
    track.log_rows(s.tr.client, s.parent_id, decisions, "adaptive_decisions.json")
    track.log_metrics(
        s.tr.client,
        s.parent_id,
        {
            "adaptive.rounds": len(outcome.rounds),
            "adaptive.cost_tokens": outcome.cost,
        },
    )
    return decisions


def _check_steering_metric(recipe: Recipe) -> None:
    """`subsets.adaptive.metric` must be a metric the sweep will analyse: an error now, not
    after the first round has trained."""
    metric = recipe.subsets.adaptive.metric
    if metric is None:
        return
    known = ["val_loss"] + [
        f"eval.{e.label or e.name.rsplit(':', 1)[-1]}" for e in recipe.eval.evaluators
    ]
    wanted = list(recipe.saturation.metrics)
    allowed = [m for m in known if not wanted or m in wanted]
    if metric not in allowed:
        raise RecipeError(
            recipe.path or recipe.name,
            [
                f"subsets.adaptive.metric: must be one of {', '.join(allowed)} (the metrics the "
                f"sweep analyses), got {metric!r}"
            ],
        )


def _cell_cost(recipe: Recipe, prep: Prepared) -> Callable[[Cell], float]:
    """Training tokens of a cell, estimated before it runs the way `loop plan` does: optimizer
    steps x effective batch x the subset's mean (truncated) length."""
    from loop import models

    tokenizer = models.load_tokenizer(recipe.model)
    eff = recipe.train.batch_size * recipe.train.grad_accum
    cache: dict[str, float] = {}

    def cost(cell: Cell) -> float:
        if cell.id not in cache:
            sub = take_subset(recipe, prep, cell)
            lengths = _token_lengths(tokenizer, list(sub.examples), recipe.train.max_length)
            mean_len = sum(lengths) / max(1, len(lengths))
            cache[cell.id] = optimizer_steps(len(sub.examples), recipe) * eff * mean_len
        return cache[cell.id]

    return cost


def _log_clean_once(recipe: Recipe, prep: Prepared, tr: _Tracker) -> None:
    """A `clean` run per recipe+pool, with the funnel and the raw pool as a dataset input."""
    from loop import track

    existing = tr.client.search_runs(
        [tr.exp_id],
        filter_string=f"tags.`loop.kind` = 'clean' and tags.`loop.pool_digest` = '{tr.pool_digest}' "
        f"and tags.`loop.recipe_digest` = '{tr.recipe_digest}'",
        max_results=1,
    )
    if existing:
        return
    metrics = {
        "raw.records": len(prep.raw.examples),
        "validation.n": len(prep.val),
        **{f"tier.{k}.n": v for k, v in prep.tier_sizes.items()},
    }
    for step in prep.clean.funnel:
        metrics[f"funnel.{step.name}.out"] = step.n_out
        for reason, n in step.dropped.items():
            metrics[f"dropped.{step.name}.{reason}"] = n
    frame = _subset_frame(tuple(prep.raw.examples))
    source = ",".join(str(p) for p in prep.raw.files) or str(recipe.pool.hf_dataset)
    rid = track.log_clean_run(
        tr.client,
        tr.exp_id,
        pool_digest=tr.pool_digest,
        params=dict(_flat_clean(recipe)),
        metrics=metrics,
        files=[Path(p) for p in prep.clean.files if Path(p).is_file()],
        pool_frame=frame,
        pool_source=source,
    )
    tr.client.set_tag(rid, "loop.recipe_digest", tr.recipe_digest)


def _flat_clean(recipe: Recipe):
    d = to_dict(recipe.clean)
    for section, value in d.items():
        if isinstance(value, dict):
            for k, v in value.items():
                yield f"clean.{section}.{k}", v
        else:
            yield f"clean.{section}", value


# ----------------------------------------------------------------------------------------------
# Status, report, UI
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    cell: str
    state: str  # done | failed | killed | running | pending
    metrics: dict[str, float]
    note: str | None


def status(recipe: Recipe) -> list[StatusRow]:
    from loop import track

    tr = _tracker(recipe, prepare(recipe).pool_digest)
    runs = track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest)
    latest: dict[str, Any] = {}
    for r in runs:  # newest first; a DONE run wins over later failures
        if r.cell not in latest or (r.status == "DONE" and latest[r.cell].status != "DONE"):
            latest[r.cell] = r
    planned = expand_cells(recipe)
    ids = {c.id for c in planned}
    # cells of later adaptive rounds (or an earlier, larger grid) that the store holds
    extra = sorted(
        {
            Cell(r.tags["loop.tier"], int(r.tags["loop.size"]), int(r.tags["loop.seed"]))
            for r in runs
        }
        - set(planned),
        key=lambda c: (c.size, c.seed, c.tier),
    )
    rows = []
    for cell in planned + [c for c in extra if c.id not in ids]:
        r = latest.get(cell.id)
        if r is None:
            rows.append(StatusRow(cell.id, "pending", {}, None))
            continue
        state = {"DONE": "done", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}.get(
            r.status, r.status.lower()
        )
        shown = {
            k: v
            for k, v in r.metrics.items()
            if k == "val_loss" or (k.startswith("eval.") and k.count(".") == 1)
        }
        rows.append(
            StatusRow(cell.id, state, shown, (r.error or "").splitlines()[0] if r.error else None)
        )
    return rows


def _metric_direction(name: str) -> str | None:
    """'lower' / 'higher' for the metrics the curves use, None for the rest.

    val_loss, eval.<label> (the evaluator's direction) and eval.<label>.prob (the probability of
    the correct option, a continuous score beside 0/1 accuracy).
    """
    import evals

    if name == "val_loss":
        return "lower"
    parts = name.split(".")
    if parts[0] != "eval" or len(parts) not in (2, 3):
        return None
    if len(parts) == 3:
        return "higher" if parts[2] == "prob" else None
    try:
        return "higher" if evals.get(parts[1]).higher_is_better else "lower"
    except KeyError:
        return "higher"


def _records(
    recipe: Recipe,
    runs: list[Any],
    default_items: int | None = None,
    client: Any = None,
) -> tuple[list[Any], list[Any], dict[str, str], dict[str, int]]:
    """Per-cell records and (with `client`) per-item scores of every finished run.

    The zero-shot run (size 0) is every tier's anchor: its scores are repeated in each tier.
    """
    from loop import curves, track

    records, items, direction, eval_size = [], [], {}, {}
    wanted = set(recipe.saturation.metrics)
    tiers = [t.name for t in recipe.tiers]
    for r in runs:
        if r.status != "DONE":
            continue
        tier, size, seed = r.tags["loop.tier"], int(r.tags["loop.size"]), int(r.tags["loop.seed"])
        as_tiers = tiers if tier == ZERO_SHOT else [tier]
        names = []
        for name, value in r.metrics.items():
            d = _metric_direction(name)
            if d is None or (wanted and name not in wanted):
                continue
            names.append(name)
            direction[name] = d
            records.extend(curves.Record(t, size, seed, name, float(value)) for t in as_tiers)
            if name != "val_loss":
                # items each eval score averages over: the sampling-error floor of the intervals
                n = r.metrics.get("eval_items") or default_items
                if n:
                    eval_size[name] = int(n)
        if client is not None:
            per_item = track.load_item_scores(client, r.run_id)
            for name in names:
                for item, score in per_item.get(name, {}).items():
                    items.extend(
                        curves.ItemScore(t, size, seed, name, item, score) for t in as_tiers
                    )
    return records, items, direction, eval_size


def item_rows(recipe: Recipe, prep: Prepared | None = None) -> list[dict[str, Any]]:
    """The long item table of every finished cell (tier, metric, size, seed, item, score), the
    zero-shot run repeated per tier: what `loop export --items` writes and `loop curve` reads."""
    from loop import track

    prep = prep or prepare(recipe)
    tr = _tracker(recipe, prep.pool_digest)
    runs = track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest)
    latest = track.done_cells(runs)
    _, items, _, _ = _records(recipe, list(latest.values()), None, tr.client)
    return [
        {
            "tier": i.tier,
            "metric": i.metric,
            "size": i.size,
            "seed": i.seed,
            "item": i.item,
            "score": i.score,
        }
        for i in sorted(items, key=lambda i: (i.tier, i.metric, i.size, i.seed, i.item))
    ]


@dataclass(frozen=True)
class Rescored:
    cell: str
    items_before: int
    items_after: int
    error: str | None = None


def rescore(
    recipe: Recipe, *, samples: int | None = None, progress: Progress = _silent
) -> list[Rescored]:
    """Score every finished cell again on `samples` validation items (default: the recipe's
    eval.samples; all of validation when unset) without retraining: the cell's LoRA adapter (a
    run artifact) goes back on the base model. New metrics, eval_items and per-item scores are
    logged to the same runs; the training history is untouched. Cells logged without an adapter
    are reported and left alone."""
    import tempfile

    from loop import evaluate, models, track, train

    prep = prepare(recipe, progress=progress)
    tr = _tracker(recipe, prep.pool_digest)
    runs = track.done_cells(track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest))
    cfg = dataclasses.replace(recipe.eval, samples=samples) if samples else recipe.eval
    base = models.load_base(recipe.model)
    out: list[Rescored] = []
    for cell_id, r in sorted(runs.items(), key=lambda kv: int(kv[1].tags["loop.size"])):
        before = int(r.metrics.get("eval_items", 0))
        zero = r.tags.get("loop.tier") == ZERO_SHOT
        with tempfile.TemporaryDirectory() as tmp:
            folder = None if zero else track.download_dir(tr.client, r.run_id, "adapter", Path(tmp))
            if not zero and folder is None:
                out.append(Rescored(cell_id, before, before, "no adapter logged on this run"))
                continue
            progress(
                Event("message", message=f"re-scoring {cell_id} on {cfg.samples or 'all'} items")
            )
            model = base if zero else train.load_adapter(base, folder)
            try:
                ev = evaluate.evaluate(
                    model,
                    base.tokenizer,
                    prep.val,
                    cfg,
                    max_length=recipe.train.max_length,
                    as_text=recipe.train.completion_as_text,
                )
            finally:
                if not zero:
                    train.release(model)
        # after the training steps, so the new values are the run's latest; val_loss covers
        # all of validation already and is unchanged
        params = track.run_params(tr.client, r.run_id)
        step = int(params.get("budget.steps", 0)) + 1
        metrics = {k: v for k, v in ev.metrics.items() if k != "val_loss"}
        track.log_metrics(tr.client, r.run_id, {**metrics, "eval_items": ev.n_sampled}, step=step)
        track.log_item_scores(tr.client, r.run_id, dict(ev.item_scores))
        out.append(Rescored(cell_id, before, ev.n_sampled))
    return out


def export_items(recipe: Recipe, out: Path) -> int:
    """Write `item_rows` as CSV; returns the number of rows."""
    import csv

    rows = item_rows(recipe)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tier", "metric", "size", "seed", "item", "score"])
        w.writeheader()
        for row in rows:
            w.writerow({**row, "score": repr(float(row["score"]))})
    return len(rows)


def report(
    recipe: Recipe,
    *,
    prep: Prepared | None = None,
    tr: _Tracker | None = None,
    parent_id: str | None = None,
    decisions: list[dict] | None = None,
    write: bool = True,
    cells: frozenset[Cell] | None = None,
) -> ReportOutcome | None:
    """Analyse every finished cell, write plots + Markdown/HTML + JSON, log them on the parent run.
    `write=False`: the analysis only (an adaptive sweep's between-rounds look)."""
    from loop import curves, track
    from loop import report as report_mod

    prep = prep or prepare(recipe)
    if tr is None:
        tr = _tracker(recipe, prep.pool_digest)
    runs = track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest)
    if cells is not None:
        ids = {c.id for c in cells} | {zero_shot_cell().id}  # the anchor belongs to every round
        runs = [r for r in runs if r.cell in ids]
    runs = list(track.done_cells(runs).values())  # one run per cell: the newest finished
    n_val = len(prep.val)
    default_items = min(recipe.eval.samples or n_val, n_val)
    records, items, direction, eval_size = _records(recipe, runs, default_items, tr.client)
    if not any(r.size > 0 for r in records):
        return None
    analysis = curves.analyze(
        records,
        items=items,
        direction=direction,
        epsilon=recipe.saturation.epsilon,
        confidence=recipe.saturation.confidence,
        eval_size=eval_size or None,
        max_items=n_val,
    )
    if not write:
        return ReportOutcome(report_mod.decision_table(analysis), None, analysis)
    if decisions is None:
        decisions = _saved_decisions(recipe, tr)
    capped = sorted(
        {r.cell for r in runs if r.tags.get("loop.capped") == "true" and r.status == "DONE"}
    )
    notes = [
        f"recipe {recipe.name} (digest {tr.recipe_digest}), pool digest {tr.pool_digest}; "
        f"{len({r.cell for r in runs if r.status == 'DONE'})} finished cells."
    ]
    if capped:
        notes.append(f"capped cells (tier smaller than the size asked): {', '.join(capped)}")
    paths = report_mod.write_report(
        analysis,
        work_dir(recipe) / "report",
        title=f"loop report — {recipe.name}",
        notes=notes,
        rounds=decisions,
    )
    if parent_id is None:
        found = tr.client.search_runs(
            [tr.exp_id],
            filter_string=(
                f"tags.`loop.kind` = 'sweep' and tags.`loop.recipe_digest` = '{tr.recipe_digest}' "
                f"and tags.`loop.pool_digest` = '{tr.pool_digest}'"
            ),
            max_results=1,
            order_by=["start_time DESC"],
        )
        parent_id = found[0].info.run_id if found else None
    if parent_id:
        track.parent_artifacts(tr.client, parent_id, work_dir(recipe) / "report")
        track.log_metrics(tr.client, parent_id, _graded_metrics(analysis))
    return ReportOutcome(report_mod.decision_table(analysis), paths, analysis)


def _graded_metrics(analysis: Any) -> dict[str, float]:
    """The graded answer on the parent run, per tier and metric: certified epsilon, the size it
    holds past, the zero-shot score and n* (those that exist)."""
    out: dict[str, float] = {}
    for c in analysis.curves:
        key = f"curve.{c.tier}.{c.metric}"
        for name, value in (
            ("certified_epsilon", c.certified_epsilon),
            ("certified_at", c.certified_at),
            ("zero_shot", c.zero_shot),
            ("n_star", c.n_star),
        ):
            if value is not None:
                out[f"{key}.{name}"] = float(value)
    return out


def _decisions_file(recipe: Recipe) -> Path:
    return work_dir(recipe) / "adaptive_decisions.json"


def _save_decisions(recipe: Recipe, tr: _Tracker, rows: list[dict]) -> None:
    path = _decisions_file(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"recipe_digest": tr.recipe_digest, "pool_digest": tr.pool_digest, "rows": rows}
    path.write_text(json.dumps(blob, indent=1) + "\n", encoding="utf-8")


def _saved_decisions(recipe: Recipe, tr: _Tracker) -> list[dict] | None:
    """The last adaptive sweep's decisions for this recipe+pool, for `loop report`."""
    path = _decisions_file(recipe)
    if recipe.subsets.strategy != "adaptive" or not path.is_file():
        return None
    blob = json.loads(path.read_text(encoding="utf-8"))
    same = (blob.get("recipe_digest"), blob.get("pool_digest")) == (
        tr.recipe_digest,
        tr.pool_digest,
    )
    return blob.get("rows") if same else None


def ui_command(recipe: Recipe | None, port: int = 5000) -> tuple[list[str], str]:
    from loop import track

    store = track.resolve_store(recipe.tracking.uri if recipe else None)
    client = track.client_for(store)
    name = recipe.experiment if recipe else None
    url = (
        track.experiment_url(client, name, port=port)
        if name
        else f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning"
    )
    return track.ui_command(store, port=port), url


def run_single(
    recipe: Recipe, cell: Cell, *, progress: Progress = _silent, track: bool = True
) -> CellOutcome:
    """`loop train`: one cell, tracked as a child of the sweep's parent run when `track`."""
    from loop import models
    from loop import track as track_mod

    prep = prepare(recipe, progress=progress)
    if cell.tier not in prep.tiers:
        raise RecipeError(
            recipe.path, [f"--tier: must be one of {', '.join(prep.tiers)}, got {cell.tier!r}"]
        )
    check_sizes(
        dataclasses.replace(
            recipe, subsets=dataclasses.replace(recipe.subsets, sizes=(cell.size,))
        ),
        prep,
    )
    tr = parent_id = None
    if track:
        tr = _tracker(recipe, prep.pool_digest)
        parent_id = track_mod.sweep_parent(
            tr.client,
            tr.exp_id,
            recipe_digest=tr.recipe_digest,
            pool_digest=tr.pool_digest,
            name=f"sweep-{tr.recipe_digest[:6]}",
            params=cell_params(recipe),
            tags={"loop.recipe": recipe.name},
        )
    base = models.load_base(recipe.model)

    def on_step(step: int, max_steps: int, logs: dict) -> None:
        progress(Event("step", cell=cell.id, done=0, total=1, step=step, max_steps=max_steps))

    out = run_cell(recipe, cell, prep, base, tr, parent_id, on_step)
    if tr is not None:
        tr.client.update_run(parent_id, status="FINISHED")
    if out.error:
        raise RuntimeError(f"cell {cell.id} failed: {out.error}")
    return out


# ----------------------------------------------------------------------------------------------
# Review
# ----------------------------------------------------------------------------------------------


def review_export(recipe: Recipe, out: Path, *, per_stratum: int = 10) -> Path:
    from loop import review

    prep = prepare(recipe)
    return review.export_review(prep.clean, out, per_stratum=per_stratum).path


def review_import(recipe: Recipe, path: Path) -> str:
    from loop import review

    target = (
        Path(recipe.clean.review)
        if recipe.clean.review
        else work_dir(recipe) / "review_decisions.json"
    )
    result = review.import_review(path, out=target)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items()))
    text = f"{counts}; {len(result.decisions)} decisions in {result.path}"
    if not recipe.clean.review:
        text += f"\nset `clean.review: {result.path}` in {recipe.path} so cleaning honours them"
    return text


# ----------------------------------------------------------------------------------------------
# Demo
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOutcome:
    sweep: SweepOutcome
    cleaning_score: str  # how well cleaning removed the records the generator spoiled
    pool_paths: list[Path]


DEMO_ROWS = 1200


def demo(recipe: Recipe, *, progress: Progress = _silent, rows: int | None = None) -> DemoOutcome:
    """Write the seeded demo pool where the recipe reads it, run the sweep, score the cleaning."""
    from loop import demo as demo_mod

    if not recipe.pool.paths:
        raise RecipeError(
            recipe.path, ["pool.paths: the demo writes its pool to a file; give one path"]
        )
    target = Path(recipe.pool.paths[0])
    made = demo_mod.write_demo_pool(target.parent, rows=rows or DEMO_ROWS, seed=0)
    progress(
        Event(
            "message",
            message=f"demo pool: {made.rows} records with planted defects → {target.parent}",
        )
    )
    prep = prepare(recipe, progress=progress)
    outcome = sweep(recipe, progress=progress, prep=prep)
    kept = {demo_mod.source_line(e.source) for e in prep.clean.examples}
    dropped = {
        demo_mod.source_line(d.example.source) for d in prep.clean.dropped if d.step != "raw_tier"
    }
    score = demo_mod.score_cleaning(made.truth, kept, dropped - kept)
    return DemoOutcome(outcome, demo_mod.format_score(score), list(made.paths))
