"""One cell: subset -> train -> evaluate -> `CellResult`, with no tracking.

What Ray and torchrun workers import (see `loop/cluster.py`): nothing here writes to the store or
knows about the sweep; the caller records the result (`loop/track.py`).
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop import subsets as subsets_mod
from loop.example import Example
from loop.recipe import Cell, Recipe, is_ranked, to_dict

OnStep = Callable[[int, int, dict], None]
"""(optimizer step, planned steps, the trainer's log dict) after each logged step."""


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


@dataclass(frozen=True)
class CellOutcome:
    """A cell's result as the sweep reports it: first line of the error only, and its run."""

    cell: str
    metrics: dict[str, float]
    run_id: str | None = None
    error: str | None = None
    steps: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0  # of `seconds`: the rest is evaluation and set-up


def outcome(cell: Cell, res: CellResult, run_id: str | None) -> CellOutcome:
    error = res.error.splitlines()[0] if res.error else None
    train_s = float(res.counters.get("train_seconds", 0.0))
    return CellOutcome(cell.id, res.metrics, run_id, error, res.steps, res.seconds, train_s)


def take_subset(recipe: Recipe, pool: list[Example], cell: Cell) -> subsets_mod.Subset:
    """The cell's subset of its tier's training pool `pool` (nested, seeded: see subsets). For a
    ranked tier `pool` is its ranking, best first (`Prepared.tiers` holds it so), and the subset
    is its top `size` whatever the seed."""
    spec = next((t for t in recipe.tiers if t.name == cell.tier), None)
    if spec is not None and is_ranked(spec):
        return subsets_mod.take_ranked(
            pool,
            tier=cell.tier,
            size=cell.size,
            seed=cell.seed,
            select=spec.select,
            on_too_small=recipe.subsets.on_too_small,
        )
    return subsets_mod.take(
        pool,
        tier=cell.tier,
        size=cell.size,
        seed=cell.seed,
        stratify_by=recipe.subsets.stratify_by,
        on_too_small=recipe.subsets.on_too_small,
    )


def cell_params(recipe: Recipe) -> dict[str, Any]:
    """The recipe fields that shape one cell, flat (`train.budget.min_steps`), as run params."""
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


def train_and_evaluate(
    recipe: Recipe,
    cell: Cell,
    subset: subsets_mod.Subset,
    val: list[Example],
    base: Any,
    on_step: OnStep,
    save_to: Path | None = None,
) -> tuple[Any, Any]:
    """Fine-tune one subset and evaluate it on the shared validation set; `save_to`: keep the
    LoRA adapter there (half precision), for re-scoring without retraining."""
    from loop import evaluate, train

    max_steps = train.plan_budget(len(subset.examples), recipe.train).steps
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
        if save_to is not None:
            train.save_adapter(result, save_to)
    finally:
        train.release(result)  # unwrap the adapter: the base is clean for the next cell
    return result, ev


def compute_cell(
    recipe: Recipe,
    cell: Cell,
    subset: subsets_mod.Subset,
    val: list[Example],
    base: Any,
    on_step: OnStep,
    history: list[tuple[str, int, float]] | None = None,
    adapter_dir: Path | None = None,
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

    kw = {}
    if adapter_dir is not None:
        shutil.rmtree(adapter_dir, ignore_errors=True)  # no stale adapter of a rerun
        kw["save_to"] = adapter_dir
    result, ev = train_and_evaluate(recipe, cell, subset, val, base, step_logger, **kw)
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
        adapter=str(adapter_dir) if adapter_dir is not None and adapter_dir.is_dir() else None,
    )


def failed_result(exc: BaseException, history: list, t0: float) -> CellResult:
    """The result of a cell that raised: its error text and the steps logged before it."""
    error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    return CellResult({}, tuple(history), {}, {}, (), 0, time.time() - t0, error)
