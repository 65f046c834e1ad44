"""A real adaptive sweep on the packaged SmolLM2-135M (CPU), then the full grid over the same range.

One tier of a small JSON-extraction task (name, age, city from one sentence), sizes 4..256
doubling, one seed. First the adaptive sweep runs in a fresh store (round 0: 4, 8, 16; then as
the curve asks). Then the grid runs in the same store: cells the adaptive sweep already finished
are shared (same cell, same result), so only the sizes it skipped are trained. Prints the cells
and the training compute (examples x epochs as trained) of each, and both decisions.

    python benchmarks/adaptive_real.py            # no timed run of it is stored yet
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import yaml

# the same people and places as the toy task the other benchmarks train on
from loop.toy import CITIES, NAMES, TEMPLATES


def write_pool(path: Path, n: int = 400) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            name, city, age = rng.choice(NAMES), rng.choice(CITIES), rng.randint(18, 90)
            rec = {
                "instruction": "Extract name, age and city as JSON.",
                "input": rng.choice(TEMPLATES).format(name=name, age=age, city=city),
                "output": json.dumps({"name": name, "age": age, "city": city}),
            }
            f.write(json.dumps(rec) + "\n")


def recipe_file(folder: Path, strategy: str, max_size: int) -> Path:
    sizes = (
        [4, 8, 16] if strategy == "adaptive" else [2**k for k in range(2, 9) if 2**k <= max_size]
    )
    recipe = {
        "name": "adaptive-real",
        "pool": {"paths": [str(folder / "pool.jsonl")], "system_prompt": "Reply with JSON."},
        "clean": {"steps": ["exact_dedup", "length", "format"], "split": {"max_validation": 40}},
        "tiers": [{"name": "all", "top": 1.0}],
        "subsets": {
            "sizes": sizes,
            "seeds": [0],
            "strategy": strategy,
            "adaptive": {"max_size": max_size, "max_rounds": 8},
        },
        "model": {"name": "smollm2-135m-instruct"},
        "lora": {"r": 16, "alpha": 32},
        "train": {
            "learning_rate": 1e-3,
            "batch_size": 8,
            "max_length": 96,
            "budget": {"policy": "min_steps", "epochs": 2, "min_steps": 6},
        },
        "eval": {"evaluators": [{"name": "json_match"}], "samples": 40, "max_new_tokens": 24},
    }
    path = folder / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--max-size", type=int, default=256)
    args = ap.parse_args()

    from loop import driver
    from loop.plan import optimizer_steps
    from loop.recipe import expand_cells, load_recipe

    folder = Path(tempfile.mkdtemp(prefix="loop-adaptive-real-"))
    os.chdir(folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    write_pool(folder / "pool.jsonl")

    def log(e) -> None:
        if e.kind in ("message", "cell_done", "cell_failed"):
            text = e.message or (f"{e.cell} {e.metrics}" if e.metrics else e.cell)
            print(f"  {text}", flush=True)

    results = {}
    for strategy in ("adaptive", "grid"):
        r = load_recipe(recipe_file(folder, strategy, args.max_size))
        print(f"== {strategy}", flush=True)
        t0 = time.perf_counter()
        out = driver.sweep(r, progress=log)
        results[strategy] = (out, time.perf_counter() - t0)

    adaptive, grid = results["adaptive"][0], results["grid"][0]
    ran_adaptive = {o.cell for o in adaptive.outcomes}
    grid_cells = expand_cells(load_recipe(recipe_file(folder, "grid", args.max_size)))

    def cost(cell_ids) -> int:
        r = load_recipe(recipe_file(folder, "grid", args.max_size))
        by_id = {c.id: c for c in grid_cells}
        extra = [c for c in cell_ids if c not in by_id]
        assert not extra, extra
        return sum(optimizer_steps(by_id[c].size, r) * r.train.batch_size for c in cell_ids)

    grid_ids = [c.id for c in grid_cells]
    print()
    print(
        f"adaptive: {len(ran_adaptive)} cells ({', '.join(sorted(ran_adaptive, key=lambda c: int(c.split('-n')[1].split('-')[0])))})"
    )
    print(f"grid:     {len(grid_ids)} cells ({', '.join(grid_ids)})")
    print(
        f"compute (examples x epochs): adaptive {cost(ran_adaptive)}, grid {cost(grid_ids)}, "
        f"ratio {cost(ran_adaptive) / cost(grid_ids):.2f}"
    )
    print(
        f"wall: adaptive {results['adaptive'][1]:.0f} s; grid's extra cells {results['grid'][1]:.0f} s"
    )
    final = [d for d in adaptive.decisions if not d["next_sizes"]]
    for d in final:
        print(f"adaptive final: {d['tier']}: {d['decision']} — {d['why']}")
    for row in grid.report.table:
        if row["metric"] == "eval.json_match":
            print(
                f"grid decision:  {row['tier']}: {row['decision']} (n* {row['n_star']}) — {row.get('summary', '')}"
            )
    for row in adaptive.report.table:
        if row["metric"] == "eval.json_match":
            print(f"adaptive curve: {row['tier']}: {row['decision']} (n* {row['n_star']})")


if __name__ == "__main__":
    main()
