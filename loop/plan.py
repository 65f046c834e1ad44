"""`loop plan`, and the one estimate of a cell's optimizer steps and training tokens.

The estimate is what the adaptive budget charges a cell before it runs and what `loop plan`
prints: optimizer steps (`train.plan_budget`) x effective batch x the subset's mean example
length in tokens, each example's contents counted by the recipe model's tokenizer plus what its
chat template adds (`models.template_overhead`), truncated at `train.max_length`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def plan(recipe: Recipe, *, progress: Progress = silent) -> Plan:
    import torch

    from loop import models

    prep = prepare(recipe, progress=progress)
    recipe = resolve_evaluators(recipe, prep.raw.examples, progress=progress)  # `auto` only
    prep = check_sizes(recipe, prep)
    tokenizer = models.load_tokenizer(recipe.model)
    gpu = torch.cuda.is_available()
    rate = _CPU_TOKENS_PER_S_135M * (_GPU_SPEEDUP if gpu else 1.0)
    rows = []
    repeats = repeated_tiers(prep) if recipe.subsets.strategy != "adaptive" else {}
    for cell in expand_cells(recipe):
        if cell.tier in repeats:
            continue
        sub = take_subset(recipe, prep.tiers[cell.tier], cell)
        steps, tokens = cell_estimate(tokenizer, recipe, sub.examples)
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
    if recipe.model.name not in ("smollm2-135m-instruct", "tiny-random"):
        notes.append(
            "time estimates are scaled from SmolLM2-135M; larger models take proportionally longer"
        )
    return Plan(rows, notes, "cuda" if gpu else "cpu")


def _eval_seconds(recipe: Recipe, n_val: int) -> float:
    gen = recipe.eval.samples or n_val
    has_gen = any(e.name != "choice_loglik" for e in recipe.eval.evaluators)
    return n_val * 0.05 + (gen * 0.3 if has_gen else 0.0)
