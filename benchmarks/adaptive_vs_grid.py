"""Adaptive sweeps vs the full grid on simulated learning curves with known truth.

    .venv/bin/python benchmarks/adaptive_vs_grid.py [--sims 60] [--n-boot 1000] [--quick]
        [--max-size 1024] [--eval-items 2000] [--seed-sd 0.005]

Each simulation is one sweep of four tiers, accuracy `A(n) = c - a*n^-b` plus seed noise
(--seed-sd) and binomial noise on --eval-items evaluation items (the `SimulatedTrainer` of
tests/test_adaptive.py), drawn at random per simulation: `fast` (true n* 40-300), `slow` (true n*
300-900) and `rising` (true n* 5x-50x the largest size: still gaining there). A fourth family,
`late`, is a shape the analysis does not assume: a logistic in log2 n that sits near its
zero-shot level, rises late and then flattens (the "pre-power" phase of fine-tuning curves).
True n* is where the true gain from doubling falls to epsilon (1 point), after the rise.

Baseline: the grid 16..max-size (doubling) x seeds 0-2, analysed once. Adaptive: round 0 runs
16, 32, 64 with the same seeds, then `loop.adaptive.run_rounds` steers up to the same cap
(max_rounds = grid sizes + 1: two rounds to spare, so the round cap rarely decides). Both analyse with `curves.analyze`, the same
n_boot and bootstrap seed; a cell both run scores the same in both.

Compute is training examples processed: optimizer steps x micro-batch, as `train.plan_budget`
plans them with the default train config (2 epochs, at least 30 steps, batch 8: a 16-example
cell costs 240). The '2ep' column: a plain 2-epochs policy (2 x size).

A verdict is correct when: truth saturated within the range -> `saturated` with the estimated
n* within one doubling of the true n*; truth past twice the range -> `more_data_pays` (adaptive:
`pool_exhausted`); in between either. `inconclusive` is never correct. "agree" = adaptive and
grid give the same verdict (for saturated: n* estimates within one doubling of each other).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_adaptive import SimulatedTrainer, make_recipe, true_n_star  # noqa: E402

from loop import adaptive, curves  # noqa: E402
from loop.recipe import Cell, TrainConfig  # noqa: E402
from loop.train import plan_budget  # noqa: E402

FIRST = (16, 32, 64)
SEEDS = (0, 1, 2)
EPS = 0.01
FAMILIES = {  # name -> (true n* range, exponent range); drawn log-uniform / uniform
    "fast": ((40, 300), (0.5, 0.9)),
    "slow": ((300, 900), (0.3, 0.6)),
    "rising": (None, (0.1, 0.3)),  # n* 5x-50x the largest size
    "late": None,  # logistic in log2 n: (floor, top, steepness, midpoint); see draw_late
}
_TRAIN = TrainConfig()


def examples_processed(cell: Cell) -> float:
    b = plan_budget(cell.size, _TRAIN)
    return float(b.steps * b.micro_batch * b.grad_accum)


def two_epochs(cell: Cell) -> float:
    return 2.0 * cell.size


class MixedTrainer(SimulatedTrainer):
    """The simulated trainer, with `late` tiers on a logistic curve instead of a power law."""

    def true_value(self, tier: str, n: float) -> float:
        p = self.tiers[tier]
        if p[0] == "late":
            return logistic(p, n)
        return super().true_value(tier, n)


def logistic(p: tuple, n: float) -> float:
    _, floor, top, k, mid = p
    return floor + (top - floor) / (1 + math.exp(-k * (math.log2(n) - mid)))


def late_n_star(p: tuple, eps: float = EPS) -> float:
    """Smallest n past the steepest doubling where the true gain from doubling is below eps."""
    grid = np.geomspace(1, 2**24, 4000)
    gain = np.array([logistic(p, 2 * n) - logistic(p, n) for n in grid])
    past = np.arange(len(grid)) >= int(np.argmax(gain))
    return float(grid[np.flatnonzero(past & (gain < eps))[0]])


def draw_late(rng: np.random.Generator, cap: int) -> tuple:
    floor, top = rng.uniform(0.05, 0.3), rng.uniform(0.6, 0.9)
    k = rng.uniform(1.0, 2.5)  # rise over ~2-4 doublings
    mid = rng.uniform(math.log2(32), math.log2(cap))  # the rise starts inside the range
    return ("late", floor, top, k, mid)


def truth_of(params: tuple) -> float:
    return late_n_star(params) if params[0] == "late" else true_n_star(*params, EPS)


def draw(rng: np.random.Generator, family: str, cap: int) -> tuple:
    """(c, a, b) whose true n* falls in the family's range (`late`: logistic parameters)."""
    if family == "late":
        return draw_late(rng, cap)
    span, (b_lo, b_hi) = FAMILIES[family]
    lo, hi = span or (5 * cap, 50 * cap)
    n_star = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    b = rng.uniform(b_lo, b_hi)
    a = EPS * n_star**b / (1 - 2**-b)
    c = min(0.97, max(rng.uniform(0.6, 0.9), a * 16**-b + 0.1))  # A(16) at least 10 points
    return c, a, b


def verdict(curve: curves.CurveResult) -> tuple[str, int | None]:
    return curve.decision, curve.n_star


def correct(v: tuple[str, int | None], truth: float, cap: int) -> bool:
    decision, n_star = v
    if truth <= cap:
        return decision == curves.SATURATED and truth / 2 <= n_star <= 2 * truth
    if truth > 2 * cap:
        return decision == curves.MORE_DATA_PAYS
    # between the cap and one doubling past it either answer is right
    return decision == curves.MORE_DATA_PAYS or (
        decision == curves.SATURATED and truth / 2 <= n_star <= 2 * truth
    )


def agree(x: tuple[str, int | None], y: tuple[str, int | None]) -> bool:
    if x[0] != y[0]:
        return False
    return x[0] != curves.SATURATED or max(x[1], y[1]) <= 2 * min(x[1], y[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=60)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--max-size", type=int, default=1024, help="the grid's largest size and the cap"
    )
    ap.add_argument("--eval-items", type=int, default=2000)
    ap.add_argument("--seed-sd", type=float, default=0.005)
    ap.add_argument("--quick", action="store_true", help="12 simulations, n_boot 300")
    args = ap.parse_args()
    sims, n_boot = (12, 300) if args.quick else (args.sims, args.n_boot)
    cap = args.max_size
    grid_sizes = tuple(16 * 2**i for i in range(int(math.log2(cap / 16)) + 1))

    recipe = make_recipe(
        list(FAMILIES), sizes=FIRST, seeds=SEEDS, max_rounds=len(grid_sizes) + 1, max_size=cap
    )
    pools = dict.fromkeys(FAMILIES, cap)
    grid_cells = [Cell(t, n, s) for t in FAMILIES for n in grid_sizes for s in SEEDS]

    cost = {k: defaultdict(float) for k in ("grid", "adaptive")}  # [who][(family, policy)]
    ok = {k: defaultdict(int) for k in ("grid", "adaptive")}
    same = defaultdict(int)
    rounds, finals = defaultdict(list), defaultdict(lambda: defaultdict(int))
    secs = {"grid": 0.0, "adaptive": 0.0}
    for sim in range(sims):
        rng = np.random.default_rng([20240, sim])
        tiers = {f: draw(rng, f, cap) for f in FAMILIES}
        truth = {f: truth_of(tiers[f]) for f in FAMILIES}

        grid = MixedTrainer(tiers, args.eval_items, args.seed_sd, sim_seed=sim, n_boot=n_boot)
        t0 = time.perf_counter()
        grid.run_cells(grid_cells)
        g_an = grid.analyze(frozenset(grid_cells))
        secs["grid"] += time.perf_counter() - t0

        ada = MixedTrainer(
            tiers,
            args.eval_items,
            args.seed_sd,
            sim_seed=sim,
            n_boot=n_boot,
            results=dict(grid.results),
        )
        t0 = time.perf_counter()  # results are shared: the same cell scores the same in both
        out = adaptive.run_rounds(
            recipe, pools, run_cells=ada.run_cells, analyze=ada.analyze, cost=examples_processed
        )
        secs["adaptive"] += time.perf_counter() - t0

        for f in FAMILIES:
            gv = verdict(g_an.curve(f, "eval.acc"))
            av = verdict(out.analysis.curve(f, "eval.acc"))
            ok["grid"][f] += correct(gv, truth[f], cap)
            ok["adaptive"][f] += correct(av, truth[f], cap)
            same[f] += agree(av, gv)
            finals[f][out.final[f].decision] += 1
            rounds[f].append(max(d.round for d in out.decisions if d.tier == f))
            for who, cells in (("grid", grid_cells), ("adaptive", out.cells)):
                mine = [c for c in cells if c.tier == f]
                cost[who][(f, "steps")] += sum(map(examples_processed, mine))
                cost[who][(f, "2ep")] += sum(map(two_epochs, mine))

    print(
        f"{sims} simulations x {len(FAMILIES)} tiers, n_boot={n_boot}, eval {args.eval_items:,} items, seed sd "
        f"{100 * args.seed_sd:g} points, seeds {list(SEEDS)}, grid {grid_sizes[0]}..{cap:,} "
        f"doubling; adaptive starts at {list(FIRST)}, "
        f"max_rounds {len(grid_sizes) + 1}"
    )
    print(
        f"{'tier':<8} {'grid ok':>8} {'adapt ok':>8} {'agree':>6} {'compute':>8} {'2ep':>6} "
        f"{'rounds':>6}  adaptive final decisions"
    )
    tot = defaultdict(float)
    for f in FAMILIES:
        r = {k: cost["adaptive"][(f, k)] / cost["grid"][(f, k)] for k in ("steps", "2ep")}
        for k in ("steps", "2ep"):
            tot[("adaptive", k)] += cost["adaptive"][(f, k)]
            tot[("grid", k)] += cost["grid"][(f, k)]
        fin = ", ".join(f"{k} {v}" for k, v in sorted(finals[f].items()))
        print(
            f"{f:<8} {ok['grid'][f] / sims:>8.2f} {ok['adaptive'][f] / sims:>8.2f} "
            f"{same[f] / sims:>6.2f} {r['steps']:>8.2f} {r['2ep']:>6.2f} "
            f"{np.mean(rounds[f]):>6.1f}  {fin}"
        )
    n = sims * len(FAMILIES)
    print(
        f"{'all':<8} {sum(ok['grid'].values()) / n:>8.2f} {sum(ok['adaptive'].values()) / n:>8.2f} "
        f"{sum(same.values()) / n:>6.2f} "
        f"{tot[('adaptive', 'steps')] / tot[('grid', 'steps')]:>8.2f} "
        f"{tot[('adaptive', '2ep')] / tot[('grid', '2ep')]:>6.2f}"
    )
    agree_all = sum(same.values()) / n
    ratio = tot[("adaptive", "steps")] / tot[("grid", "steps")]
    met = agree_all >= 0.9 and ratio <= 0.5
    print(
        f"goal (same verdict as the grid >= 0.90 with <= 0.50 of its compute): "
        f"{'met' if met else 'missed'} ({agree_all:.2f}, {ratio:.2f})"
    )
    print(
        f"compute = adaptive / grid training examples processed (plan_budget defaults; '2ep': "
        f"2 x size). time per sweep: grid {secs['grid'] / sims:.2f} s, adaptive "
        f"{secs['adaptive'] / sims:.2f} s (analysis only; training simulated)"
    )


if __name__ == "__main__":
    main()
