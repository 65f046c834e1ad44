"""The Ray executor: a local Ray instance with 2 CPU workers runs a 2 tiers x 2 sizes x 2 seeds
sweep on the tiny model; the store ends with exactly 8 finished child runs, also when a worker
process is killed mid-cell."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from test_driver import children, tiny_recipe  # noqa: E402

from loop import cell as cell_mod  # noqa: E402
from loop import cluster, driver  # noqa: E402
from loop.prepare import prepare  # noqa: E402
from loop.recipe import ExecutorConfig, expand_cells, load_recipe  # noqa: E402


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray workers inherit the environment: the tests' one-thread pin (conftest) holds there too.
    return tmp_path


def ray_recipe(tmp: Path, **executor):
    path = tiny_recipe(tmp, sizes=(4, 8), seeds=(0, 1))
    text = path.read_text() + "executor:\n  kind: ray\n  workers: 2\n"
    for k, v in executor.items():
        text += f"  {k}: {v}\n"
    path.write_text(text)
    return load_recipe(path)


def _finished_cells() -> Counter:
    _parent, kids = children("tiny")
    done = kids[kids["status"] == "FINISHED"]
    return Counter(done["tags.loop.cell"])


def test_resources_default_to_one_gpu_per_cell_on_a_gpu_cluster():
    cfg = ExecutorConfig(kind="ray")
    assert cluster._resources(cfg, cluster_gpus=8) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert cluster._resources(cfg, cluster_gpus=0) == {"num_cpus": 1.0, "num_gpus": 0.0}
    two = ExecutorConfig(kind="ray", num_gpus=2, num_cpus=4)
    assert cluster._resources(two, cluster_gpus=8) == {"num_cpus": 4, "num_gpus": 2}
    half = ExecutorConfig(kind="ray", num_gpus=0.5)  # two cells share a GPU
    assert cluster._resources(half, cluster_gpus=1)["num_gpus"] == 0.5
    with pytest.raises(ValueError, match="executor.num_gpus: above 1 it must be a whole number"):
        cluster._resources(ExecutorConfig(kind="ray", num_gpus=1.5), cluster_gpus=8)


def test_ray_sweep_records_each_cell_exactly_once(in_tmp: Path):
    recipe = ray_recipe(in_tmp)
    out = driver.sweep(recipe)
    assert (out.ran, out.failed) == (8, 0)
    assert _finished_cells() == Counter({c.id: 1 for c in expand_cells(recipe)})
    _parent, kids = children("tiny")
    assert len(kids) == 8  # no orphan or duplicate run of any status
    assert kids["metrics.val_loss"].notna().all()
    # a second run finds everything done in the store and submits nothing
    again = driver.sweep(recipe)
    assert (again.ran, again.skipped) == (0, 8)


def _cell_workers() -> list[psutil.Process]:
    """Ray worker processes executing a cell (Ray sets their title to `ray::loop-cell`)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::loop-cell"):
            found.append(p)
    return found


def test_a_worker_killed_mid_cell_is_retried_and_nothing_is_lost(in_tmp: Path):
    recipe = ray_recipe(in_tmp, max_retries=3)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            busy = _cell_workers()
            if busy:
                time.sleep(1.0)  # let it get into training
                for p in _cell_workers():
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
                    break
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    out = driver.sweep(recipe)
    t.join(timeout=5)
    assert killed, "no Ray worker was seen running a cell"
    assert out.failed == 0
    assert _finished_cells() == Counter({c.id: 1 for c in expand_cells(recipe)})
    _parent, kids = children("tiny")
    assert len(kids) == 8


def test_a_data_parallel_cell_trains_like_the_single_process_cell(in_tmp: Path):
    """2 processes over gloo on CPU (the multi-GPU path without GPUs): each takes half of every
    global batch, so the optimizer steps and losses match one process's."""
    from loop import models

    r = load_recipe(tiny_recipe(in_tmp, sizes=(8,), seeds=(0,), min_steps=4))
    prep = prepare(r)
    cell = expand_cells(r)[0]
    sub = cell_mod.take_subset(r, prep.tiers[cell.tier], cell)
    ddp = cluster.run_data_parallel(r, cell, sub, prep.val, processes=2, cpu=True)
    base = models.load_base(r.model)
    one = cell_mod.compute_cell(r, cell, sub, prep.val, base, lambda *_: None)
    assert ddp.error is None
    assert ddp.params["train.micro_batch_used"] * 2 == one.params["train.micro_batch_used"]
    assert ddp.steps == one.steps == 4
    ddp_loss = [v for k, _, v in ddp.history if k == "train_loss"]
    one_loss = [v for k, _, v in one.history if k == "train_loss"]
    assert len(ddp_loss) == len(one_loss) > 0
    assert ddp_loss == pytest.approx(one_loss, rel=1e-4)
    assert ddp.metrics["val_loss"] == pytest.approx(one.metrics["val_loss"], rel=1e-4)
