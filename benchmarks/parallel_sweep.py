"""The same 8-cell sweep with the local executor and with Ray (2 workers), one after the other.

2 tiers x 2 sizes x 2 seeds of a small JSON-extraction task, each sweep in its own fresh
project folder (its own MLflow store, so neither finds the other's cells done). The local
executor runs one cell at a time with every core; Ray runs `--workers` cells at once with one
core each. Prints each wall time (set-up, cleaning and the report included: what a user waits
for) and the speed-up. On 2 cores expect at most ~2x: training is compute-bound.

    python benchmarks/parallel_sweep.py                    # packaged SmolLM2-135M (no run stored yet)
    python benchmarks/parallel_sweep.py --model tiny-random --workers 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# the small JSON-extraction pool of adaptive_real.py
from adaptive_real import write_pool  # noqa: E402


def write_recipe(folder: Path, model: str, executor: str, workers: int) -> Path:
    write_pool(folder / "pool.jsonl")
    recipe = {
        "name": "parallel-bench",
        "pool": {"paths": [str(folder / "pool.jsonl")]},
        "clean": {
            "steps": ["exact_dedup", "length", "format", "quality"],
            "split": {"validation": 0.1},
        },
        "tiers": [{"name": "top", "top": 0.5}, {"name": "raw"}],
        "subsets": {"sizes": [8, 16], "seeds": [0, 1]},
        "model": {"name": model},
        "lora": {"r": 8, "alpha": 16},
        "train": {
            "batch_size": 4,
            "max_length": 96,
            "budget": {"policy": "min_steps", "min_steps": 4, "epochs": 1},
        },
        "eval": {"evaluators": [{"name": "json_match"}], "samples": 8, "max_new_tokens": 24},
        "executor": {"kind": executor, "workers": workers},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run(model: str, executor: str, workers: int) -> tuple[float, str]:
    """One sweep in a fresh folder and a fresh process; returns (wall seconds, last line)."""
    folder = Path(tempfile.mkdtemp(prefix=f"loop-bench-{executor}-"))
    recipe = write_recipe(folder, model, executor, workers)
    env = {**os.environ, "CI": "1"}  # plain progress lines
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "loop.cli", "sweep", str(recipe)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{executor} sweep failed (exit {proc.returncode})")
    cells = next(line for line in proc.stdout.splitlines() if line.startswith("cells:"))
    return wall, cells


def warm_up(model: str) -> None:
    """Convert/cache the model in a separate process, as a user's first run would."""
    code = (
        "from loop import models; from loop.recipe import ModelConfig; "
        f"models.load_base(ModelConfig(name={model!r}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(f"model {args.model}; 8 cells (2 tiers x sizes 8,16 x seeds 0,1); {os.cpu_count()} CPUs")
    # One-time costs first, outside both timings: the packaged model's conversion to safetensors
    # (42 s once per machine on loaded cores: results/figures/model_load.txt) would otherwise land
    # on whichever side runs first.
    t0 = time.perf_counter()
    warm_up(args.model)
    print(f"warm-up (model cache)  : {time.perf_counter() - t0:7.1f} s  (not counted)")
    local, local_cells = run(args.model, "local", args.workers)
    print(f"local executor         : {local:7.1f} s  ({local_cells})")
    ray_s, ray_cells = run(args.model, "ray", args.workers)
    print(f"ray, {args.workers} workers          : {ray_s:7.1f} s  ({ray_cells})")
    print(f"speed-up ray / local   : {local / ray_s:.2f}x")


if __name__ == "__main__":
    main()
