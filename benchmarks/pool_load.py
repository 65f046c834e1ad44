"""Pool loading speed: `load_pool` on a 100k-record mixed-format JSONL pool vs a bare json.loads loop.

    .venv/bin/python benchmarks/pool_load.py [--records 100000] [--repeat 3]

The baseline reads the same file line by line with `json.loads` and does nothing else, so the
ratio is what reading, format detection, validation, normalization and content ids cost on top.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from loop.pool import load_pool
from loop.recipe import PoolConfig

WORDS = [
    "the",
    "a",
    "data",
    "model",
    "answer",
    "question",
    "quickly",
    "small",
    "large",
    "token",
    "learn",
    "curve",
    "pool",
    "tier",
]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def make_pool(path: Path, n: int, seed: int = 0) -> None:
    """n records, a third in each format, with a task label and an extra field."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            kind = i % 3
            if kind == 0:
                rec = {
                    "instruction": _text(rng, 5, 30),
                    "input": _text(rng, 0, 20),
                    "output": _text(rng, 10, 80),
                }
            elif kind == 1:
                rec = {
                    "messages": [
                        {"role": "system", "content": "You are helpful."},
                        {"role": "user", "content": _text(rng, 5, 30)},
                        {"role": "assistant", "content": _text(rng, 10, 80)},
                    ]
                }
            else:
                rec = {"prompt": _text(rng, 5, 30), "completion": _text(rng, 10, 80)}
            rec["task"] = rng.choice(["qa", "math", "chat"])
            rec["origin"] = f"gen-{i}"
            f.write(json.dumps(rec) + "\n")


def baseline(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        for line in f:
            json.loads(line)
            n += 1
    return n


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.jsonl"
        make_pool(path, args.records)
        size_mb = path.stat().st_size / 1e6
        cfg = PoolConfig(paths=(str(path),), task_field="task")
        t_base, n_base = best_of(args.repeat, lambda: baseline(path))
        t_load, result = best_of(args.repeat, lambda: load_pool(cfg))
    n = len(result.examples)
    assert n == n_base == args.records, (n, n_base)
    print(f"pool: {n} records, {size_mb:.1f} MB, formats {result.counts_by_format}")
    print(f"json.loads loop : {t_base:6.2f} s  {n_base / t_base:10,.0f} records/s")
    print(f"load_pool       : {t_load:6.2f} s  {n / t_load:10,.0f} records/s")
    print(f"ratio load_pool / json.loads: {t_load / t_base:.2f}x (best of {args.repeat})")


if __name__ == "__main__":
    main()
