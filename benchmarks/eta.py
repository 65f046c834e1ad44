"""Time estimates against the clock: `loop plan` and the sweep's ETA on a small real sweep.

A JSON-extraction pool (the toy task the other benchmarks train on), one tier, sizes 8/16/32,
the packaged SmolLM2-135M on this machine. Two sweeps run one after the other in a fresh store
and a fresh rates file:

1. seed 0: `loop plan`'s estimate with the built-in rates, then the sweep. After each cell the
   sweep prints its ETA from the cells measured so far; the script compares each with the time
   the rest of the sweep then took.
2. seed 1 (new cells, same sizes): `loop plan` again, now with the rates the first sweep kept,
   then the sweep.

Prints estimate, actual and estimate/actual per line; the goal is within +-25% (0.75-1.25) once
calibrated. The actual time of a sweep is from its "estimated time" line to its last cell, so
cleaning (cached by then) and the report are not in it; the zero-shot evaluation is.

    python benchmarks/eta.py            # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptive_real import write_pool  # noqa: E402  (the same pool as that benchmark)


def recipe_file(folder: Path, seed: int, sizes: list[int], samples: int) -> Path:
    recipe = {
        "name": "eta",
        "pool": {"paths": [str(folder / "pool.jsonl")], "system_prompt": "Reply with JSON."},
        "clean": {"steps": ["exact_dedup", "length", "format"], "split": {"max_validation": 60}},
        "tiers": [{"name": "all", "top": 1.0}],
        "subsets": {"sizes": sizes, "seeds": [seed]},
        "model": {"name": "smollm2-135m-instruct"},
        "lora": {"r": 16, "alpha": 32},
        "train": {
            "learning_rate": 1e-3,
            "batch_size": 8,
            "max_length": 96,
            "budget": {"policy": "epochs", "epochs": 2},
        },
        "eval": {"evaluators": [{"name": "json_match"}], "samples": samples, "max_new_tokens": 24},
    }
    path = folder / f"eta-s{seed}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: time a shared host gave another tenant."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (parts[7] if len(parts) > 7 else 0), sum(parts)


def steal_words(before: tuple[int, int]) -> str:
    steal, total = (a - b for a, b in zip(cpu_times(), before, strict=True))
    if total <= 0:
        return "steal time: not readable here"
    return f"steal time {100 * steal / total:.0f}% of CPU time (cycles the host gave other tenants)"


def ratio(est: float, act: float) -> str:
    r = est / act if act > 0 else float("nan")
    mark = "ok" if 0.75 <= r <= 1.25 else "OFF"
    return f"{est:7.0f} s  {act:7.0f} s  {r:5.2f}  {mark}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="8,16,32")
    ap.add_argument("--samples", type=int, default=30, help="generated evaluation items per cell")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    folder = Path(tempfile.mkdtemp(prefix="loop-eta-"))
    os.chdir(folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["LOOP_RATES"] = str(folder / "rates.json")  # start from the built-in rates
    write_pool(folder / "pool.jsonl")

    from loop import driver
    from loop import plan as plan_mod
    from loop.recipe import load_recipe

    print(f"# python benchmarks/eta.py --sizes {args.sizes} --samples {args.samples}")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("                                   estimate   actual  ratio")
    for seed in (0, 1):
        r = load_recipe(recipe_file(folder, seed, sizes, args.samples))
        p = plan_mod.plan(r)  # also cleans, so the sweep below reuses the cleaning
        marks: list[tuple[str, float, float | None]] = []  # (what, when, eta)

        def log(e, marks=marks) -> None:
            now = time.perf_counter()
            if e.kind == "message" and e.message.startswith("estimated time"):
                marks.append(("start", now, None))
            elif e.kind == "cell_done":
                marks.append((e.cell, now, e.eta_s))

        stolen = cpu_times()
        driver.sweep(r, progress=log)
        t_start, t_end = marks[0][1], marks[-1][1]
        print(f"seed {seed}: loop plan ({p.rates.source}); {steal_words(stolen)}")
        print(f"  whole sweep                    {ratio(p.wall_s, t_end - t_start)}")
        for what, when, eta in marks[1:-1]:
            print(f"  ETA after {what:<20} {ratio(eta, t_end - when)}")
        rates = plan_mod.load_rates(r, p.device)
        print(
            f"  kept for the next plan: {rates.tokens_per_s:.0f} training tokens/s, evaluation "
            f"x{rates.eval_scale:.2f} of the prior"
        )
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
