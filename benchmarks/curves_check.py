"""Saturation analysis on simulated sweeps: plateau recovery vs a bare curve_fit, and decisions.

    .venv/bin/python benchmarks/curves_check.py [--runs 40] [--n-boot 1000]

The baseline fits the same seed means with `scipy.optimize.curve_fit` and no starting guess
(every parameter starts at 1), the fragile fit the design notes warn about. Printed per shape:
how often each fit fails or lands more than 10 points from the true plateau, the median and 90th
percentile plateau error of each (base / ours), time per fit of each and their ratio, then the decision rates of
the full analysis (bootstrap included) against the true n*.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures_curves import SHAPES, Shape, simulate, true_n_star  # noqa: E402

from loop.curves import _fit_power_law, analyze  # noqa: E402

# Two more where curve_fit's start (c, a, b) = (1, 1, 1) is far from the truth: a loss measured
# on larger sizes, and the shallow exponent typical of fine-tuning curves.
EXTRA = {
    "loss_big": Shape(
        "loss_big", "power", c=1.9, a=25.0, b=0.45, direction="lower", seed_sd=0.003,
        eval_size=None, sizes=(1000, 2000, 4000, 8000, 16000, 32000),
    ),
    "shallow": Shape("shallow", "power", c=0.62, a=0.9, b=0.2, seed_sd=0.004, eval_size=5000),
}  # fmt: skip
SHAPE_NAMES = ("fast", "fast_hard", "slow", "loss_fast", "loss_big", "shallow")


def _means(records):
    by = {}
    for r in records:
        by.setdefault(r.size, []).append(r.value)
    n = np.array(sorted(by), dtype=float)
    vals = [np.array(by[int(s)]) for s in n]
    return n, np.array([v.mean() for v in vals]), np.array([v.std(ddof=1) for v in vals])


def _baseline(n, y, higher: bool) -> float:
    def law(n, c, a, b):
        return c - a * n**-b if higher else c + a * n**-b

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            (c, _, _), _ = optimize.curve_fit(law, n, y, maxfev=2000)
        except (RuntimeError, ValueError):
            return float("nan")
    return float(c)


def _ours(n, y, sd, higher: bool) -> float:
    sign = 1.0 if higher else -1.0
    se = np.full(len(n), np.sqrt(np.mean(sd**2) / 3))  # pooled over sizes, as analyze() does
    c, _, _ = _fit_power_law(n, sign * y, se, 1.0 if higher else 0.0)
    return sign * c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()

    print("plateau recovery (seed means of one simulated sweep, 6 sizes x 3 seeds)")
    print(f"{'shape':<10} {'fail base':>9} {'fail ours':>9} {'med base':>9} {'med ours':>9} "
          f"{'p90 base':>9} {'p90 ours':>9} {'ms base':>8} {'ms ours':>8} {'ratio':>6}")  # fmt: skip
    for name in SHAPE_NAMES:
        shape = {**SHAPES, **EXTRA}[name]
        higher = shape.direction == "higher"
        errs = {"base": [], "ours": []}
        secs = {"base": 0.0, "ours": 0.0}
        for seed in range(args.runs):
            n, y, sd = _means(simulate(shape, seed))
            for who in ("base", "ours"):
                t0 = time.perf_counter()
                c = _baseline(n, y, higher) if who == "base" else _ours(n, y, sd, higher)
                secs[who] += time.perf_counter() - t0
                errs[who].append(abs(c - shape.c) if np.isfinite(c) else np.inf)
        fail = {k: sum(e > 0.1 for e in v) for k, v in errs.items()}  # 10 points off, or no fit
        med = {k: float(np.median(v)) for k, v in errs.items()}
        p90 = {k: float(np.percentile(v, 90)) for k, v in errs.items()}
        ms = {k: 1000 * v / args.runs for k, v in secs.items()}
        print(
            f"{name:<10} {fail['base']:>9} {fail['ours']:>9} {med['base']:>9.4f} "
            f"{med['ours']:>9.4f} {p90['base']:>9.4f} {p90['ours']:>9.4f} {ms['base']:>8.2f} "
            f"{ms['ours']:>8.2f} {ms['ours'] / ms['base']:>6.1f}"
        )

    print(f"\ndecisions of analyze() over {args.runs} sweeps (n_boot={args.n_boot})")
    for name in ("fast", "fast_hard", "slow", "loglinear", "noisy_dip", "loss_fast"):
        shape = SHAPES[name]
        t0 = time.perf_counter()
        got = Counter()
        for seed in range(args.runs):
            a = analyze(
                simulate(shape, seed),
                direction=shape.direction,
                eval_size=shape.eval_size,
                n_boot=args.n_boot,
                seed=seed,
            )
            got[a.curves[0].decision] += 1
        per = (time.perf_counter() - t0) / args.runs
        print(
            f"{name:<10} true n*={true_n_star(shape)!s:<5} "
            + ", ".join(f"{k} {v / args.runs:.2f}" for k, v in sorted(got.items()))
            + f"  ({per:.2f} s/sweep)"
        )


if __name__ == "__main__":
    main()
