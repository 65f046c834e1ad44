"""Simulated learning curves with known truth, shared by the curve and report tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loop.curves import Record

LADDER = (100, 200, 400, 800, 1600, 3200)


@dataclass(frozen=True)
class Shape:
    name: str
    kind: str  # power | loglinear
    c: float = 0.0
    a: float = 0.0
    b: float = 0.0
    direction: str = "higher"
    seed_sd: float = 0.005  # seed-to-seed spread of the true score
    eval_size: int | None = 2000  # binomial evaluation noise for accuracy-like shapes
    dip_at: int | None = None  # a size whose true score is pushed down by `dip`
    dip: float = 0.0
    sizes: tuple[int, ...] = LADDER


def true_value(shape: Shape, n: float) -> float:
    if shape.kind == "loglinear":
        v = shape.c + shape.a * math.log2(n / shape.sizes[0])
    elif shape.direction == "higher":
        v = shape.c - shape.a * n**-shape.b
    else:
        v = shape.c + shape.a * n**-shape.b
    if shape.dip_at is not None and n == shape.dip_at:
        v -= shape.dip
    return v


def true_epsilon(shape: Shape) -> float:
    """The default epsilon the analysis uses, computed from the true curve."""
    if shape.direction == "higher":
        return 0.01
    return 0.01 * true_value(shape, shape.sizes[-1])


def true_delta2(shape: Shape, n: float) -> float:
    """Gain from doubling, positive = better, on the smooth curve (no dip)."""
    smooth = Shape(**{**shape.__dict__, "dip_at": None})
    gain = true_value(smooth, 2 * n) - true_value(smooth, n)
    return gain if shape.direction == "higher" else -gain


def true_n_star(shape: Shape) -> int | None:
    """Smallest n on the ladder (sizes run plus one doubling) where the true delta2 < epsilon."""
    eps = true_epsilon(shape)
    for n in (*shape.sizes, 2 * shape.sizes[-1]):
        if true_delta2(shape, n) < eps:
            return n
    return None


def true_crossing(shape: Shape, grid) -> int | None:
    """First n of `grid` from which the true delta2 stays below epsilon, rounded as the analysis
    rounds its n* interval; None when it never does on the grid."""
    eps = true_epsilon(shape)
    below = [true_delta2(shape, n) < eps for n in grid]
    for i, n in enumerate(grid):
        if all(below[i:]):
            return int(round(n))
    return None


def simulate(shape: Shape, seed: int, n_seeds: int = 3, tier: str = "all") -> list[Record]:
    """One sweep: `n_seeds` seeds per size, seed noise plus binomial evaluation noise."""
    rng = np.random.default_rng(seed)
    metric = "accuracy" if shape.direction == "higher" else "val_loss"
    out = []
    for s in range(n_seeds):
        for n in shape.sizes:
            v = true_value(shape, n) + shape.seed_sd * rng.standard_normal()
            if shape.direction == "higher" and shape.eval_size:
                v = rng.binomial(shape.eval_size, min(max(v, 0.0), 1.0)) / shape.eval_size
            out.append(Record(tier, n, s, metric, float(v)))
    return out


SHAPES = {
    # true delta2 falls below 1 point at ~330: ladder n* = 400, well inside 100..3200
    "fast": Shape("fast", "power", c=0.75, a=1.5, b=0.7, seed_sd=0.003, eval_size=10_000),
    # saturated by 800, but late gains (0.8, 0.55, 0.4 points) sit near the noise (0.65 points)
    "fast_hard": Shape("fast_hard", "power", c=0.75, a=0.76, b=0.5),
    # keeps gaining >2.5 points a doubling up to 6,400; true n* ~ 180k
    "slow": Shape("slow", "power", c=0.95, a=2.0, b=0.3),
    # 3 points per doubling forever
    "loglinear": Shape("loglinear", "loglinear", c=0.30, a=0.03),
    # a 6-point dip at 800 on a curve with ~1-point standard errors: should be flagged
    "dip": Shape(
        "dip", "power", c=0.6, a=0.5, b=0.5, seed_sd=0.01, eval_size=1000, dip_at=800, dip=0.06
    ),
    # 3-point seed spread and 500 eval items: per-size SE ~2 points, twice epsilon
    "noisy_dip": Shape(
        "noisy_dip",
        "power",
        c=0.6,
        a=0.5,
        b=0.5,
        seed_sd=0.03,
        eval_size=500,
        dip_at=800,
        dip=0.06,
    ),
    "two_sizes": Shape("two_sizes", "power", c=0.75, a=1.5, b=0.7, sizes=(400, 800)),
    # validation loss, epsilon = 1% of ~0.80; ladder n* = 400
    "loss_fast": Shape(
        "loss_fast",
        "power",
        c=0.8,
        a=3.0,
        b=0.9,
        direction="lower",
        seed_sd=0.002,
        eval_size=None,
    ),
}


def demo_records(seed: int = 0) -> list[Record]:
    """Three tiers, two metrics: the better the tier, the fewer examples a score costs.

    Tier mid scores like tier high with half the data, low like high with a quarter (accuracy);
    low's loss keeps falling past 3,200 while high's flattens early.
    """
    rng = np.random.default_rng(seed)
    out = []
    for tier, shift in (("high", 1.0), ("mid", 2.0), ("low", 4.0)):
        for s in range(3):
            for n in LADDER:
                m = n / shift
                acc = 0.78 - 1.6 * m**-0.55 + 0.004 * rng.standard_normal()
                acc = rng.binomial(5000, min(max(acc, 0.0), 1.0)) / 5000
                loss = 0.85 + 2.5 * m**-0.6 + 0.003 * rng.standard_normal()
                out.append(Record(tier, n, s, "accuracy", float(acc)))
                out.append(Record(tier, n, s, "val_loss", float(loss)))
    return out
