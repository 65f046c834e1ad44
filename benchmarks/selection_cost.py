"""Scoring cost of the selection methods on this machine (loop/select.py).

    .venv/bin/python benchmarks/selection_cost.py ifd --pool FILE.jsonl [--n 128] [--max-length 256]
    .venv/bin/python benchmarks/selection_cost.py kcenter [--rows 10000 100000]

- `ifd`: examples/s of IFD scoring (two forward passes per example, batched by length) with the
  packaged SmolLM2-135M-Instruct on the first `--n` records of a pool (any format loop reads;
  the pool's own field names are found as `loop init` finds them), cold cache. Baseline,
  measured in the same run on the same examples: one forward pass each (what validation loss
  costs), so the ratio says what the second pass adds. Also the estimate `ifd_scores` says
  before it starts, against the time it took.
- `kcenter`: greedy k-center ranking time for n unit embeddings of 384 dimensions (MiniLM's
  shape; a seeded mixture of 200 Gaussian clusters, since the time depends on n and the number
  of picks, not on the text), for `selection.diversity_greedy_max` picks (10,000 by default,
  so a 10k pool is ranked greedily in full). Baseline in the same run: the cosine pair search
  semantic dedup runs on the same embeddings (`semantic.similar_pairs` at 0.92; exact search up
  to 20k rows, IVF above).

Prints one JSON document (command, date, machine, figures); `--out` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> dict:
    import torch

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "platform": platform.platform(),
        "python": platform.python_version(),
        # the 2 cores are shared: the load when the figures were taken
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def bench_ifd(pool_path: str, n: int, max_length: int, batch_size: int) -> dict:
    from loop import init, models, select
    from loop.evaluate import validation_item_losses
    from loop.pool import load_pool
    from loop.recipe import FieldMap, ModelConfig, PoolConfig

    records = [json.loads(line) for line in Path(pool_path).read_text().splitlines()[:n] if line]
    found = init.detect_fields(records)
    cfg_pool = PoolConfig(
        paths=(pool_path,), limit=n, format=found.format, fields=FieldMap(**found.fields)
    )
    examples = list(load_pool(cfg_pool).examples)[:n]
    cfg = ModelConfig()
    t0 = time.perf_counter()
    base = models.load_base(cfg)
    load_s = time.perf_counter() - t0
    tok = base.tokenizer
    lengths = [len(models.encode_example(tok, ex, max_length=max_length)[0]) for ex in examples]
    # warm-up: one batch, so neither measurement pays for first-call allocations
    select.score_ifd(base.model, tok, examples[:batch_size], batch_size=batch_size,
                     max_length=max_length)  # fmt: skip
    t0 = time.perf_counter()
    validation_item_losses(base.model, tok, examples, max_length=max_length, batch_size=batch_size)
    one_pass_s = time.perf_counter() - t0
    events: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        scores, run = select.ifd_scores(
            examples,
            cfg,
            folder=Path(tmp),
            batch_size=batch_size,
            max_length=max_length,
            progress=lambda e: events.append(e.message),
        )
        total_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, again = select.ifd_scores(
            examples, cfg, folder=Path(tmp), batch_size=batch_size, max_length=max_length
        )
        cached_s = time.perf_counter() - t0
    ifds = [s.ifd for s in scores.values() if s.tokens]
    return {
        "pool": pool_path,
        "examples": len(examples),
        "tokens_per_example_mean": round(sum(lengths) / len(lengths), 1),
        "max_length": max_length,
        "batch_size": batch_size,
        "model_load_s": round(load_s, 2),
        "ifd_seconds": round(run.seconds, 2),
        "ifd_examples_per_s": round(run.examples_per_s, 3),
        "one_pass_seconds": round(one_pass_s, 2),
        "one_pass_examples_per_s": round(len(examples) / one_pass_s, 3),
        "ratio_ifd_to_one_pass": round(run.seconds / one_pass_s, 2),
        "estimate_said_s": round(run.estimate_s, 1),
        "estimate_over_actual": round(run.estimate_s / run.seconds, 2),
        "call_seconds_with_cache_writes": round(total_s, 2),
        "rerun_from_cache_seconds": round(cached_s, 3),
        "rerun_scored": again.scored,
        "ifd_median": round(float(np.median(ifds)), 4),
        "ifd_at_or_above_1": int(sum(x >= 1 for x in ifds)),
        "said": events,
    }


def clustered(n: int, dim: int = 384, clusters: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_kcenter(rows: list[int], greedy_max: int) -> list[dict]:
    from loop import select
    from loop.clean import semantic

    out = []
    for n in rows:
        emb = clustered(n)
        t0 = time.perf_counter()
        order, radius = select.k_center_order(emb, greedy_max)
        rank_s = time.perf_counter() - t0
        assert sorted(order.tolist()) == list(range(n))
        t0 = time.perf_counter()
        semantic.similar_pairs(emb, 0.92)
        search_s = time.perf_counter() - t0
        picks = min(n, greedy_max)
        out.append(
            {
                "rows": n,
                "greedy_picks": picks,
                "kcenter_seconds": round(rank_s, 2),
                "ms_per_pick": round(1000 * rank_s / picks, 3),
                "pair_search_seconds": round(search_s, 2),
                "ratio_kcenter_to_pair_search": round(rank_s / search_s, 2),
                "radius_after_100_picks": round(float(radius[min(99, n - 1)]), 4),
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("ifd")
    a.add_argument("--pool", required=True)
    a.add_argument("--n", type=int, default=128)
    a.add_argument("--max-length", type=int, default=256)
    a.add_argument("--batch-size", type=int, default=16)
    k = sub.add_parser("kcenter")
    k.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    k.add_argument("--greedy-max", type=int, default=10_000)
    for p in (a, k):
        p.add_argument("--out")
    args = ap.parse_args()
    doc = {
        "command": "benchmarks/selection_cost.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
    }
    if args.what == "ifd":
        doc["ifd"] = bench_ifd(args.pool, args.n, args.max_length, args.batch_size)
    else:
        doc["kcenter"] = bench_kcenter(args.rows, args.greedy_max)
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
