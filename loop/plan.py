"""`loop plan`, and the one estimate of a cell's optimizer steps, training tokens and time.

The estimate is what the adaptive budget charges a cell before it runs and what `loop plan`
prints: optimizer steps (`train.plan_budget`) x effective batch x the subset's mean example
length in tokens, each example's contents counted by the recipe model's tokenizer plus what its
chat template adds (`models.template_overhead`), truncated at `train.max_length`.

Time: a cell's training tokens / a tokens-per-second rate, plus its evaluation (validation loss
on every item, generation on the sampled ones). The rates start from figures measured on 2 CPU
cores; every finished cell calibrates them (`calibrate`: measured seconds over the prior's, for
training and for evaluation apart), the sweep's ETA uses the calibrated rates from its first
cell on, and the last sweep's rates are kept per model and device (`$LOOP_CACHE/rates.json`), so
`loop plan` on the same machine starts calibrated. Cells that run at once (Ray workers, one GPU
per cell) are scheduled longest first over the workers (`wall_seconds`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loop.cell import take_subset
from loop.events import Progress, silent
from loop.example import Example
from loop.prepare import (
    Prepared,
    check_sizes,
    prepare,
    repeated_tiers,
    repeated_tiers_text,
    resolve_evaluators,
)
from loop.recipe import Cell, Recipe, expand_cells

# Training tokens/s through the trainer on 2 CPU cores, SmolLM2-135M + LoRA r16 (all linear
# layers), fp32: loop's side of benchmarks/train_overhead.py on a quiet machine, 131 and 117 real
# tokens/s in its two runs (48 examples of 83-143 tokens, batch 8;
# benchmarks/results/figures/train_overhead.txt). `plan` says so when the recipe uses another model.
_CPU_TOKENS_PER_S_135M = 130.0
_GPU_SPEEDUP = 25.0  # assumed, not measured: no GPU run of this is stored yet


def optimizer_steps(n_examples: int, recipe: Recipe) -> int:
    from loop.train import plan_budget

    return plan_budget(n_examples, recipe.train).steps


def example_lengths(tokenizer: Any, examples: Sequence[Example], recipe: Recipe) -> list[int]:
    """Tokens per example as trained: each message's content + what the template adds around
    them (`models.template_overhead`), cut at train.max_length."""
    from loop import models

    if not examples:
        return []
    overhead = models.template_overhead(tokenizer, as_text=recipe.train.completion_as_text)
    texts = [m.content for e in examples for m in e.messages]
    ids = iter(tokenizer(texts, add_special_tokens=False)["input_ids"])
    out = []
    for e in examples:
        content = sum(len(next(ids)) for _ in e.messages)
        roles = [m.role for m in e.messages]
        out.append(min(recipe.train.max_length, content + overhead(roles)))
    return out


def cell_estimate(tokenizer: Any, recipe: Recipe, examples: Sequence[Example]) -> tuple[int, int]:
    """(optimizer steps, training tokens) of a cell on `examples`, before it runs."""
    lengths = example_lengths(tokenizer, examples, recipe)
    steps = optimizer_steps(len(examples), recipe)
    mean_len = sum(lengths) / max(1, len(lengths))
    eff = recipe.train.batch_size * recipe.train.grad_accum
    return steps, int(steps * eff * mean_len)


def cell_cost(recipe: Recipe, prep: Prepared) -> Callable[[Cell], float]:
    """Training tokens of a cell by `cell_estimate`, cached per cell: the adaptive budget."""
    from loop import models

    tokenizer = models.load_tokenizer(recipe.model)
    cache: dict[str, float] = {}

    def cost(cell: Cell) -> float:
        if cell.id not in cache:
            sub = take_subset(recipe, prep.tiers[cell.tier], cell)
            cache[cell.id] = cell_estimate(tokenizer, recipe, sub.examples)[1]
        return cache[cell.id]

    return cost


# ----------------------------------------------------------------------------- time


@dataclass(frozen=True)
class Rates:
    """How fast cells run here: training tokens/s of one cell, and evaluation seconds as a
    multiple of `_eval_seconds`'s prior. `source` says where the figures come from."""

    tokens_per_s: float
    eval_scale: float = 1.0
    source: str = "defaults measured on 2 CPU cores"
    cells: int = 0  # finished cells behind the calibration (0: the defaults)


@dataclass(frozen=True)
class CellTime:
    """A finished cell's measured seconds beside what the estimate counted for it."""

    train_tokens: float  # estimated training tokens (`cell_estimate`; 0 for the zero-shot run)
    train_s: float
    eval_prior_s: float  # `_eval_seconds` for its evaluation
    eval_s: float


def default_rates(gpu: bool) -> Rates:
    if gpu:
        return Rates(_CPU_TOKENS_PER_S_135M * _GPU_SPEEDUP, 1 / _GPU_SPEEDUP, "assumed GPU speed-up")
    return Rates(_CPU_TOKENS_PER_S_135M)


def calibrate(prior: Rates, timings: Sequence[CellTime]) -> Rates:
    """Rates that explain the finished cells: estimated tokens over measured training seconds,
    measured over prior evaluation seconds, summed over the cells (a part that no cell has
    measured yet keeps the prior's rate). Calibrating on the estimate's own tokens also takes
    out any bias of the token estimate.

    The zero-shot run (no training tokens) calibrates evaluation only until a trained cell has
    run: the untrained model never writes the reference, so every answer is generated in full,
    while a trained cell's answers are mostly read from the validation pass or stop early. On
    benchmarks/eta.py's JSON task it took 12.8 s against 5.6-8.2 s for the trained cells, and
    counting it made the ETA after the first cell 31% too long."""
    if not timings:
        return prior
    tokens, train_s = sum(t.train_tokens for t in timings), sum(t.train_s for t in timings)
    evals = [t for t in timings if t.train_tokens > 0] or list(timings)
    ep, em = sum(t.eval_prior_s for t in evals), sum(t.eval_s for t in evals)
    tokens_per_s = tokens / train_s if tokens > 0 and train_s > 0 else prior.tokens_per_s
    eval_scale = em / ep if ep > 0 and em > 0 else prior.eval_scale
    n = len(timings)
    return Rates(tokens_per_s, eval_scale, f"measured on {n} finished cell(s) here", n)


def cell_seconds(train_tokens: float, eval_prior_s: float, rates: Rates) -> float:
    return train_tokens / rates.tokens_per_s + eval_prior_s * rates.eval_scale


def wall_seconds(seconds: Sequence[float], parallel: int = 1) -> float:
    """Wall time of cells run `parallel` at once, longest first onto the least busy worker."""
    if parallel <= 1:
        return float(sum(seconds))
    busy = [0.0] * parallel
    for s in sorted(seconds, reverse=True):
        busy[busy.index(min(busy))] += s
    return max(busy)


def parallel_cells(recipe: Recipe, gpus: int, cores: int | None = None) -> tuple[int, float]:
    """(cells at once, slow-down of one cell against the rate measured with the whole machine).

    Local: one cell with the whole machine. Ray on GPUs: `num_gpus` per cell (default 1) share
    the GPUs. Ray on CPU: `workers` cells (default 2) of `num_cpus` threads (default 1) each, so
    one cell gets the smaller of num_cpus / cores and 1 / workers of the machine (the machine's
    throughput is the same; the cells only share it).
    """
    ex = recipe.executor
    if ex.kind != "ray":
        return 1, 1.0
    if gpus:
        per = ex.num_gpus or 1.0
        n = max(1, int(gpus / per))
        n = min(n, ex.workers) if ex.workers else n
        return n, max(1.0, 1 / per) if per < 1 else 1.0
    cores = cores or os.cpu_count() or 1
    n = ex.workers or 2
    share = min((ex.num_cpus or 1.0) / cores, 1 / n)
    return n, 1 / share


def rates_file() -> Path:
    """`$LOOP_RATES` when set (the tests keep theirs apart), else `$LOOP_CACHE/rates.json`."""
    from loop.models import cache_root

    env = os.environ.get("LOOP_RATES")
    return Path(env) if env else cache_root() / "rates.json"


def _rates_key(recipe: Recipe, device: str) -> str:
    return f"{recipe.model.name}|{device}|{recipe.executor.kind}|{os.cpu_count()}"


def load_rates(recipe: Recipe, device: str) -> Rates | None:
    """The rates the last sweep of this model measured here, if any."""
    try:
        doc = json.loads(rates_file().read_text())
        r = doc[_rates_key(recipe, device)]
        return Rates(float(r["tokens_per_s"]), float(r["eval_scale"]), str(r["source"]), int(r["cells"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: the defaults


def save_rates(recipe: Recipe, device: str, rates: Rates) -> None:
    """Keep `rates` for the next `loop plan`; a cache that cannot be written is not an error."""
    path = rates_file()
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        doc = {}
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc[_rates_key(recipe, device)] = {
        **asdict(rates),
        "source": f"the last sweep here ({stamp}, {rates.cells} cells)",
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(path)
    except OSError:
        pass


def eval_prior_seconds(recipe: Recipe, n_val: int) -> float:
    return _eval_seconds(recipe, n_val)


def format_eta(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
    rows: list[PlanRow]  # the trained cells; `seconds` is each cell's own time
    notes: list[str]
    device: str
    rates: Rates | None = None
    zero_shot_s: float = 0.0  # the base model's one evaluation, before the cells
    parallel: int = 1  # cells at once
    wall_s: float = 0.0  # the whole sweep: zero-shot, then the cells over `parallel` workers


def plan(recipe: Recipe, *, progress: Progress = silent) -> Plan:
    import torch

    from loop import models

    prep = prepare(recipe, progress=progress)
    recipe = resolve_evaluators(recipe, prep.raw.examples, progress=progress)  # `auto` only
    prep = check_sizes(recipe, prep)
    tokenizer = models.load_tokenizer(recipe.model)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = "cuda" if gpus else "cpu"
    rates = load_rates(recipe, device) or default_rates(bool(gpus))
    parallel, slow = parallel_cells(recipe, gpus)
    eval_s = _eval_seconds(recipe, len(prep.val))
    rows = []
    repeats = repeated_tiers(prep) if recipe.subsets.strategy != "adaptive" else {}
    for cell in expand_cells(recipe):
        if cell.tier in repeats:
            continue
        sub = take_subset(recipe, prep.tiers[cell.tier], cell)
        steps, tokens = cell_estimate(tokenizer, recipe, sub.examples)
        rows.append(
            PlanRow(
                cell.id,
                cell.tier,
                cell.size,
                cell.seed,
                len(sub.examples),
                tokens,
                steps,
                cell_seconds(tokens, eval_s, rates) * slow,
            )
        )
    zero_s = eval_s * rates.eval_scale
    wall = zero_s + wall_seconds([r.seconds for r in rows], parallel)
    notes = [
        f"validation set: {len(prep.val)} examples (shared by every cell); "
        f"training pools: {prep.tier_sizes}"
    ]
    if repeats:
        notes.append(repeated_tiers_text(repeats, prep))
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
    notes.append(
        f"time: {rates.tokens_per_s:,.0f} training tokens/s a cell, evaluation x"
        f"{rates.eval_scale:.2f} of the prior ({rates.source})"
    )
    if parallel > 1:
        notes.append(
            f"Ray: {parallel} cells at once, each at 1/{slow:g} of the rate above; the total is "
            "the longest worker's share"
        )
    if recipe.model.name not in ("smollm2-135m-instruct", "tiny-random") and not rates.cells:
        notes.append(
            "time estimates are scaled from SmolLM2-135M; larger models take proportionally longer"
        )
    return Plan(rows, notes, device, rates, zero_s, parallel, wall)


# The evaluation prior, 2 CPU cores, SmolLM2-135M: validation loss ~0.05 s an item; greedy
# generation ~0.009 s per item and new token allowed; choice_loglik ~0.15 s an item (a forward
# pass per listed option). Generation was 0.022 before answers were read from the validation
# pass and rows stopped once settled (40 items of at most 40 new tokens took 35-40 s a demo
# cell); after that, benchmarks/eta.py's trained cells measured 0.42-0.47 of the old prior
# (benchmarks/results/figures/eta.txt). Every sweep replaces it with what it measures
# (`calibrate`).
_LOSS_S, _GEN_TOKEN_S, _CHOICE_S = 0.05, 0.009, 0.15


def _eval_seconds(recipe: Recipe, n_val: int) -> float:
    sampled = min(recipe.eval.samples or n_val, n_val)
    names = {e.name for e in recipe.eval.evaluators}
    gen = bool(names - {"choice_loglik"})
    return (
        n_val * _LOSS_S
        + (sampled * recipe.eval.max_new_tokens * _GEN_TOKEN_S if gen else 0.0)
        + (sampled * _CHOICE_S if "choice_loglik" in names else 0.0)
    )
