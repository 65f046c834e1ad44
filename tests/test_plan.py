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


# ----------------------------------------------------------------------------- time


def test_calibrate_takes_the_rates_the_finished_cells_measured():
    prior = plan_mod.default_rates(gpu=False)
    # the zero-shot run measures evaluation only: training keeps the prior's rate
    zero = plan_mod.CellTime(0.0, 0.0, eval_prior_s=10.0, eval_s=25.0)
    r = plan_mod.calibrate(prior, [zero])
    assert r.tokens_per_s == prior.tokens_per_s and r.eval_scale == pytest.approx(2.5)
    # a trained cell: 6,000 estimated tokens in 100 s -> 60 tokens/s; from then on evaluation
    # follows the trained cells only (the zero-shot run generates every answer in full)
    cell = plan_mod.CellTime(6000.0, 100.0, eval_prior_s=10.0, eval_s=15.0)
    r = plan_mod.calibrate(prior, [zero, cell])
    assert r.tokens_per_s == pytest.approx(60.0) and r.eval_scale == pytest.approx(1.5)
    other = plan_mod.CellTime(3000.0, 50.0, eval_prior_s=10.0, eval_s=25.0)
    assert plan_mod.calibrate(prior, [zero, cell, other]).eval_scale == pytest.approx(2.0)
    assert r.cells == 2 and "measured" in r.source
    assert plan_mod.cell_seconds(1200, 5.0, r) == pytest.approx(1200 / 60 + 5.0 * 1.5)
    assert plan_mod.calibrate(prior, []) is prior


def test_wall_seconds_schedules_the_longest_cells_first_over_the_workers():
    assert plan_mod.wall_seconds([10, 20, 30]) == 60
    assert plan_mod.wall_seconds([10, 20, 30], parallel=2) == 30  # 30 | 20 + 10
    assert plan_mod.wall_seconds([5, 5, 5, 5], parallel=3) == 10
    assert plan_mod.wall_seconds([], parallel=2) == 0


def _executor(kind="ray", **kw):
    from types import SimpleNamespace

    ex = {"kind": kind, "num_cpus": None, "num_gpus": None, "workers": None, **kw}
    return SimpleNamespace(executor=SimpleNamespace(**ex))


def test_parallel_cells_for_local_ray_on_cpu_and_gpus():
    assert plan_mod.parallel_cells(_executor("local"), gpus=0, cores=2) == (1, 1.0)
    # two Ray workers of one thread on 2 cores: two cells at once, each at half the machine
    assert plan_mod.parallel_cells(_executor(), gpus=0, cores=2) == (2, 2.0)
    # four workers on 2 cores share them: each at a quarter
    assert plan_mod.parallel_cells(_executor(workers=4), gpus=0, cores=2) == (4, 4.0)
    # one GPU per cell on 4 GPUs: four cells at GPU speed; half a GPU each: eight at half speed
    assert plan_mod.parallel_cells(_executor(), gpus=4) == (4, 1.0)
    assert plan_mod.parallel_cells(_executor(num_gpus=0.5), gpus=4) == (8, 2.0)


def test_rates_are_kept_per_model_and_device_for_the_next_plan(in_tmp: Path, monkeypatch):
    monkeypatch.setenv("LOOP_CACHE", str(in_tmp / "cache"))
    r = load_recipe(tiny_recipe(in_tmp, sizes=(4,), seeds=(0,)))
    assert plan_mod.load_rates(r, "cpu") is None
    plan_mod.save_rates(r, "cpu", plan_mod.Rates(42.0, 1.5, "x", 3))
    got = plan_mod.load_rates(r, "cpu")
    assert (got.tokens_per_s, got.eval_scale, got.cells) == (42.0, 1.5, 3)
    assert "last sweep here" in got.source
    assert plan_mod.load_rates(r, "cuda") is None
    # the next plan uses them: twice the rate of the defaults is half the training time
    rows = plan_mod.plan(r).rows
    plan_mod.save_rates(r, "cpu", plan_mod.Rates(84.0, 1.5, "x", 3))
    faster = plan_mod.plan(r).rows
    eval_s = plan_mod.eval_prior_seconds(r, len(prepare(r).val)) * 1.5
    for a, b in zip(rows, faster, strict=True):
        assert b.seconds - eval_s == pytest.approx((a.seconds - eval_s) / 2)
    (plan_mod.rates_file()).write_text("not json")
    assert plan_mod.load_rates(r, "cpu") is None  # unreadable: the defaults, no error
