"""Cells as Ray tasks: many fine-tunes at once, on one machine or a cluster.

`executor.kind: ray` in a recipe (or `loop sweep --executor ray`) sends every pending cell to Ray
as one task that asks for the recipe's resources (`executor.num_gpus`, default 1 per cell on a
cluster with GPUs; `executor.num_cpus`, default 1). `ray.init` joins `executor.address` or
$RAY_ADDRESS (`auto`, `host:6379`, `ray://host:10001`) or starts a local instance with
`executor.workers` CPUs.

Who writes to the store: the driver, never a worker (workers import `loop/cell.py`, not the
driver). A task returns its metrics, step history and predictions; the driver opens, fills and
closes the cell's child run in one go when the result arrives. So a worker that dies mid-cell leaves nothing behind, Ray's retry (`executor.max_retries`)
cannot create a second run for the same cell, workers need no credentials or network path to the
tracking store, and SQLite keeps a single writer. The price: a Ray cell shows up in the UI when it
finishes, not while it trains. Finished cells are recorded as they arrive, so a crashed driver
loses only the cells in flight, and the next `loop sweep` runs exactly those (the store decides
what is done, as in the local executor).

Cells are submitted small sizes first, so the curves fill in early.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

from loop.example import Example
from loop.recipe import Cell, ExecutorConfig, Recipe
from loop.subsets import Subset


def _resources(cfg: ExecutorConfig, cluster_gpus: float) -> dict[str, float]:
    """Per-cell resources: the recipe's, else 1 GPU per cell when the cluster has GPUs, and 1 CPU."""
    gpus = cfg.num_gpus if cfg.num_gpus is not None else (1.0 if cluster_gpus > 0 else 0.0)
    if gpus > 1 and gpus != int(gpus):
        # a fraction shares one GPU between cells; above 1 each GPU runs one training process
        raise ValueError(f"executor.num_gpus: above 1 it must be a whole number, got {gpus:g}")
    cpus = cfg.num_cpus if cfg.num_cpus is not None else 1.0
    return {"num_cpus": cpus, "num_gpus": gpus}


def connect(cfg: ExecutorConfig) -> tuple[bool, dict[str, float]]:
    """Join the configured cluster or start a local one. Returns (started here, cluster resources)."""
    import ray

    if ray.is_initialized():
        return False, dict(ray.cluster_resources())
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if address:
        ray.init(address=address, **kwargs)
    elif cfg.workers is None and _local_gpus() > 0:
        ray.init(**kwargs)  # every GPU and core here: one cell per GPU
    else:
        # A local CPU instance sized for `workers` cells at a time, `num_cpus` CPUs each.
        per_cell = cfg.num_cpus or 1.0
        ray.init(num_cpus=math.ceil((cfg.workers or 2) * per_cell), **kwargs)
    return not address, dict(ray.cluster_resources())


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_fits(res: dict[str, float], resources: dict[str, float]) -> None:
    """A request no node can meet would queue forever: say so instead."""
    for key, field in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
        have = resources.get(field, 0.0)
        if res[key] > have:
            raise ValueError(
                f"executor.{key}: each cell asks for {res[key]:g} {field}(s) but the Ray "
                f"cluster has {have:g}; lower it or add nodes"
            )


def _cell_task(
    recipe: Recipe, cell: Cell, subset: Subset, val: list[Example], threads: int, gpus: float
) -> Any:
    """Runs in a Ray worker: load the base (cached per worker process), train, evaluate.
    With more than one GPU per cell, the cell trains data-parallel over them."""
    import torch

    from loop import cell as cell_mod
    from loop import models

    history: list[tuple[str, int, float]] = []
    t0 = time.time()
    try:
        if gpus > 1:
            return run_data_parallel(recipe, cell, subset, val, processes=int(gpus))
        torch.set_num_threads(max(1, threads))
        base = models.load_base(recipe.model)
        return cell_mod.compute_cell(
            recipe, cell, subset, val, base, lambda *_: None, history=history
        )
    except Exception as exc:  # a Python error is the cell's result, not a reason to retry
        return cell_mod.failed_result(exc, history, t0)


def run_cells(
    recipe: Recipe,
    jobs: list[tuple[Cell, Subset]],
    val: list[Example],
    *,
    on_submit: Callable[[Cell], None],
    on_result: Callable[[Cell, Any], None],
) -> None:
    """Run `jobs` as Ray tasks; call `on_result(cell, CellResult)` in this process as each ends.

    A worker process that dies is retried by Ray up to `executor.max_retries` times; after that,
    or when the cell raises, the cell's result carries the error and the sweep goes on.
    Ctrl-C cancels the tasks in flight and propagates (nothing of them is in the store).
    """
    import ray

    from loop.cell import failed_result

    started_here, resources = connect(recipe.executor)
    pending: dict[Any, tuple[Cell, float]] = {}
    try:
        res = _resources(recipe.executor, resources.get("GPU", 0.0))
        _check_fits(res, resources)
        task = ray.remote(_cell_task).options(
            num_cpus=res["num_cpus"],
            num_gpus=res["num_gpus"],
            max_retries=recipe.executor.max_retries,
            retry_exceptions=False,
            name="loop-cell",
        )
        val_ref = ray.put(val)
        threads = int(res["num_cpus"])
        for cell, subset in jobs:
            ref = task.remote(recipe, cell, subset, val_ref, threads, res["num_gpus"])
            pending[ref] = (cell, time.time())
            on_submit(cell)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell, t0 = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries used up, or the task was lost
                    result = failed_result(exc, [], t0)
                on_result(cell, result)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


# ------------------------------------------------------------------------------ data parallel


def run_data_parallel(
    recipe: Recipe,
    cell: Cell,
    subset: Subset,
    val: list[Example],
    *,
    processes: int,
    cpu: bool = False,
) -> Any:
    """One cell trained by `processes` processes (one per GPU), `accelerate launch`-style: the
    trainer wraps the model in DDP, each process takes its share of every global batch
    (`train.split_batch` keeps the single-device optimizer steps), and process 0 hands back the
    `CellResult`. `cpu=True` runs the same over gloo on CPU (how the tests check it without GPUs).
    """
    import pickle
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="loop-ddp-") as tmp:
        payload, out = Path(tmp) / "cell.pkl", Path(tmp) / "result.pkl"
        payload.write_bytes(pickle.dumps((recipe, cell, subset, val)))
        # torchrun is what `accelerate launch --multi_gpu` runs underneath; calling it directly
        # works the same on CPU (gloo), where accelerate's launcher would start one process.
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            "-m",
            "loop.cluster",
            str(payload),
            str(out),
        ]
        env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if cpu else {})}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(
                f"data-parallel cell {cell.id} failed (exit {proc.returncode}):\n{tail}"
            )
        return pickle.loads(out.read_bytes())


def _data_parallel_main(payload: str, out: str) -> None:
    """Entry point of each `accelerate launch` process (see `run_data_parallel`)."""
    import pickle
    from pathlib import Path

    import torch

    from loop import cell as cell_mod
    from loop import models

    recipe, cell, subset, val = pickle.loads(Path(payload).read_bytes())
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" = this GPU
    base = models.load_base(recipe.model)
    # Every process evaluates (no collective after training, so none can hang); rank 0 reports.
    result = cell_mod.compute_cell(recipe, cell, subset, val, base, lambda *_: None)
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    import sys

    _data_parallel_main(sys.argv[1], sys.argv[2])
