"""Interval coverage and decision rates of the saturation analysis on many simulated sweeps.

    .venv/bin/python benchmarks/curve_coverage.py [--runs 200] [--n-boot 500]

The shapes of tests/fixtures_curves.py, simulated with seeds 0..runs-1 (the tests use the first
40 of these). Per shape: the decisions; how often the 90% interval of the gain from doubling at the
largest size covers the true gain; how often the 90% interval of n* covers the true crossing (the
size on the analysis's own grid from which the true gain stays below epsilon), over the runs that
call it saturated. Each rate is printed with the range of counts a 90% interval gives over that many
independent runs (two-sided binomial, alpha 0.001), the check tests/test_curves.py applies.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures_curves import SHAPES, simulate, true_crossing, true_delta2  # noqa: E402

from loop.curves import analyze  # noqa: E402

NAMES = ("fast", "fast_hard", "slow", "loglinear", "loss_fast")


def accepted(n: int, nominal: float = 0.9, alpha: float = 0.001) -> str:
    lo = int(stats.binom.ppf(alpha / 2, n, nominal))
    hi = int(stats.binom.isf(alpha / 2, n, nominal))
    return f"{lo}..{hi}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=500)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"runs per shape {args.runs}, n_boot {args.n_boot}, nominal coverage 0.90")
    print(f"{'shape':10} {'decisions':52} {'delta2(max) covered':>24} {'n* covered':>22}")
    d2_all = ns_all = ns_n = 0
    for name in NAMES:
        shape = SHAPES[name]
        truth = true_delta2(shape, shape.sizes[-1])
        dec: Counter = Counter()
        d2 = ns = n_sat = 0
        for seed in range(args.runs):
            c = analyze(
                simulate(shape, seed),
                direction=shape.direction,
                eval_size=shape.eval_size,
                n_boot=args.n_boot,
                seed=seed,
            ).curves[0]
            dec[c.decision] += 1
            lo, hi = c.delta2_at_max_ci
            d2 += lo <= truth <= hi
            if c.n_star_ci is not None:
                cross = true_crossing(shape, c.band.n)
                lo, hi = c.n_star_ci
                ns += lo <= cross and (hi is None or cross <= hi)
                n_sat += 1
        rates = ", ".join(f"{k} {v / args.runs:.3f}" for k, v in sorted(dec.items()))
        d2_txt = f"{d2}/{args.runs} = {d2 / args.runs:.3f}"
        ns_txt = f"{ns}/{n_sat} = {ns / n_sat:.3f}" if n_sat else "-"
        print(f"{name:10} {rates:52} {d2_txt:>24} {ns_txt:>22}", flush=True)
        d2_all, ns_all, ns_n = d2_all + d2, ns_all + ns, ns_n + n_sat
    n_d2 = args.runs * len(NAMES)
    print(
        f"pooled: delta2(max) {d2_all}/{n_d2} = {d2_all / n_d2:.3f} "
        f"(90% gives {accepted(n_d2)}); n* {ns_all}/{ns_n} = {ns_all / ns_n:.3f} "
        f"(90% gives {accepted(ns_n)})"
    )
    print(f"took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
