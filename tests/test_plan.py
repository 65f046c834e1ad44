"""The one estimate of a cell's training tokens: what `loop plan` prints and the adaptive budget
charges, from example lengths that match the tokens the trainer sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_driver import tiny_recipe

from loop import models
from loop import plan as plan_mod
from loop.cell import take_subset
from loop.prepare import prepare
from loop.recipe import expand_cells, load_recipe


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_example_lengths_are_the_trained_lengths(in_tmp: Path):
    r = load_recipe(tiny_recipe(in_tmp, sizes=(8,), seeds=(0,)))
    prep = prepare(r)
    tok = models.load_tokenizer(r.model)
    examples = prep.tiers["high"][:8]
    trained = [len(models.encode_example(tok, e, max_length=None)[0]) for e in examples]
    assert plan_mod.example_lengths(tok, examples, r) == trained


def test_plan_and_the_adaptive_budget_use_one_estimate(in_tmp: Path):
    r = load_recipe(tiny_recipe(in_tmp, sizes=(4, 8), seeds=(0,)))
    prep = prepare(r)
    cost = plan_mod.cell_cost(r, prep)
    rows = {row.cell: row for row in plan_mod.plan(r).rows}
    tok = models.load_tokenizer(r.model)
    for cell in expand_cells(r):
        sub = take_subset(r, prep.tiers[cell.tier], cell)
        steps, tokens = plan_mod.cell_estimate(tok, r, sub.examples)
        assert rows[cell.id].tokens == tokens == cost(cell)
        assert rows[cell.id].steps == steps == plan_mod.optimizer_steps(cell.size, r)
