"""Learning-curve saturation analysis: (tier, size, seed, metric, value) records in, decisions out.

Pure: numpy and scipy only; nothing here prints, plots or touches tracking.

Internally every metric is turned so that "up is better" (loss is negated), so one saturating law
`y = c - a*n^-b` (a >= 0) serves both directions and every gain is positive when things improve.
Values handed back (means, fitted curve, plateau) are in the metric's own units; gains (delta2,
gain per 1k) are in improvement units: positive = better, for loss as for accuracy.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import optimize, stats

from loop.errors import CurveInputError  # defined with every user error

HIGHER, LOWER = "higher", "lower"
SATURATED, MORE_DATA_PAYS, INCONCLUSIVE = "saturated", "more_data_pays", "inconclusive"

# Data exponents seen in practice are ~0.07-0.35 (Hestness 2017); 2 still allows a sharp knee
# and 0.01 a curve that is log-linear over the range.
B_MIN, B_MAX = 0.01, 2.0
_B_GRID = np.geomspace(B_MIN, B_MAX, 100)  # 5.5% steps in b, refined by a parabola afterwards
_GRID_POINTS = 97  # dense size grid from the smallest size to 2x the largest: ~16 points a doubling
_MIN_SIZES = 3  # a 3-parameter law needs at least 3 distinct sizes


@dataclass(frozen=True)
class Record:
    tier: str
    size: int
    seed: int
    metric: str
    value: float


@dataclass(frozen=True)
class SizeStat:
    """One observed size: seed aggregate plus the fitted curve's view of it."""

    size: int
    n_seeds: int
    mean: float
    std: float  # across seeds; nan with one seed
    se: float  # standard error of the mean used by the bootstrap
    eval_se: float | None  # sqrt(p(1-p)/m) of a single evaluation, when m is known
    mean_ci: tuple[float, float]
    values: tuple[float, ...]  # per-seed values, in seed order
    fitted: float
    gain_per_1k: float  # improvement units
    gain_per_1k_ci: tuple[float, float]
    delta2: float  # gain from doubling this size, improvement units
    delta2_ci: tuple[float, float]
    p_delta2_below_eps: float


@dataclass(frozen=True)
class PowerLaw:
    """`c - a*n^-b` for higher-is-better metrics, `c + a*n^-b` for lower-is-better ones."""

    c: float
    a: float
    b: float


@dataclass(frozen=True)
class LogLinear:
    """`alpha + beta*log2(n)` in the metric's own units."""

    alpha: float
    beta: float


@dataclass(frozen=True)
class ModelWeights:
    """How much the power law and the log-linear rival count, from held-out largest sizes."""

    power_law: float
    log_linear: float
    held_out: tuple[int, ...]  # sizes predicted from all smaller ones; empty -> equal weights
    z_power_law: tuple[float, ...]  # standardized prediction errors at those sizes
    z_log_linear: tuple[float, ...]
    # the same weight re-derived on every bootstrap replicate, averaged: how settled the choice is
    power_law_boot_mean: float = float("nan")


@dataclass(frozen=True)
class CurveBand:
    """The model-averaged fit on a dense size grid (smallest size to 2x the largest)."""

    n: tuple[float, ...]
    fitted: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    delta2: tuple[float, ...]
    delta2_lo: tuple[float, ...]
    delta2_hi: tuple[float, ...]
    p_below: tuple[float, ...]  # P(delta2 < epsilon)


@dataclass(frozen=True)
class CurveResult:
    tier: str
    metric: str
    direction: str
    accuracy_like: bool  # higher-is-better and within [0, 1]: gains are shown in points
    epsilon: float
    confidence: float
    decision: str  # saturated | more_data_pays | inconclusive
    reason: str
    summary: str
    n_star: int | None
    n_star_ci: tuple[int | None, int | None] | None  # upper None: beyond 2x the largest size
    plateau: float | None
    plateau_ci: tuple[float, float] | None
    delta2_at_max: float | None
    delta2_at_max_ci: tuple[float, float] | None
    next_size: int | None
    trend: str  # improving | worsening | flat: fitted largest vs smallest size, at `confidence`
    sizes: tuple[SizeStat, ...]
    power_law: PowerLaw | None
    log_linear: LogLinear | None
    weights: ModelWeights | None
    band: CurveBand | None
    bootstrap: str  # parametric | seeds
    warnings: tuple[str, ...]

    @property
    def max_size(self) -> int:
        return self.sizes[-1].size


@dataclass(frozen=True)
class ExchangeRow:
    size: int  # examples of the better tier
    target: float  # the better tier's fitted score there
    other_size: float | None  # examples of the other tier reaching the same score
    other_size_ci: tuple[float | None, float | None] | None
    ratio: float | None  # other_size / size
    reason: str  # why other_size is None; empty otherwise


@dataclass(frozen=True)
class Exchange:
    """Quality vs quantity: examples of `other` that buy the score of N examples of `better`."""

    metric: str
    better: str
    other: str
    rows: tuple[ExchangeRow, ...]
    summary: str


@dataclass(frozen=True)
class Analysis:
    curves: tuple[CurveResult, ...]
    exchanges: tuple[Exchange, ...]
    warnings: tuple[str, ...]
    confidence: float
    n_boot: int
    seed: int

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.tier for c in self.curves))

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.metric for c in self.curves))

    def curve(self, tier: str, metric: str) -> CurveResult:
        for c in self.curves:
            if c.tier == tier and c.metric == metric:
                return c
        raise KeyError(f"no curve for tier {tier!r}, metric {metric!r}")


# ----------------------------------------------------------------------------- fitting


def _fit_c_a(X: np.ndarray, Y: np.ndarray, W: np.ndarray, c_max: float):
    """Weighted least squares for (c, a) of `y = c - a*x` with a >= 0 and c <= c_max.

    X and Y broadcast over leading axes; the last axis is the sizes. Returns c, a, weighted SSE.
    """
    sw = W.sum()
    xm = (X * W).sum(-1) / sw
    ym = (Y * W).sum(-1) / sw
    Xc = X - xm[..., None]
    Yc = Y - ym[..., None]
    sxx = (W * Xc**2).sum(-1)
    sxy = (W * Xc * Yc).sum(-1)
    a = np.maximum(-sxy / np.where(sxx > 0, sxx, np.inf), 0.0)
    c = ym + a * xm
    if np.isfinite(c_max) and np.any(c > c_max):
        over = c > c_max
        a_fix = (W * X * (c_max - Y)).sum(-1) / (W * X**2).sum(-1)
        a = np.where(over, np.maximum(a_fix, 0.0), a)
        c = np.where(over, c_max, c)
    r = Y - c[..., None] + a[..., None] * X
    return c, a, (W * r**2).sum(-1)


def _grid_sse(X: np.ndarray, Y: np.ndarray, W: np.ndarray, c_max: float) -> np.ndarray:
    """Weighted SSE of the best (c, a) for every row of Y (B, K) and every row of X (G, K).

    `_fit_c_a` written with matrix products, so no (B, G, K) array is ever built.
    """
    sw = W.sum()
    WX = W * X  # (G, K)
    sx = WX.sum(1)  # (G,)
    sx2 = (WX * X).sum(1)
    xm = sx / sw
    ym = Y @ W / sw  # (B,)
    Yc = Y - ym[:, None]  # centred, so the expanded SSE below does not cancel catastrophically
    syy = (Yc**2) @ W
    sxy = Yc @ WX.T  # (B, G)
    sxx = sx2 - sw * xm**2
    a = np.maximum(-sxy / np.where(sxx > 0, sxx, np.inf)[None, :], 0.0)
    cc = a * xm[None, :]  # c - ym
    if np.isfinite(c_max):
        over = ym[:, None] + cc > c_max
        if over.any():
            c_fix = c_max - ym[:, None]
            a_fix = np.maximum((c_fix * sx[None, :] - sxy) / sx2[None, :], 0.0)
            a = np.where(over, a_fix, a)
            cc = np.where(over, c_fix, cc)
    return syy[:, None] + cc**2 * sw + a**2 * sx2 + 2 * a * sxy - 2 * a * cc * sx


def _profile_b(logn: np.ndarray, Y: np.ndarray, W: np.ndarray, c_max: float):
    """Least-squares power law for each row of Y (B, K): exact in (c, a) on a grid of b.

    Used for every bootstrap replicate: one vectorized pass, no iterative solver, no start guess.
    """
    sse = _grid_sse(np.exp(-_B_GRID[:, None] * logn[None, :]), Y, W, c_max)  # (B, G)
    i = np.clip(sse.argmin(1), 1, len(_B_GRID) - 2)
    rows = np.arange(len(Y))
    s0, s1, s2 = sse[rows, i - 1], sse[rows, i], sse[rows, i + 1]
    curv = s0 - 2 * s1 + s2
    step = np.where(curv > 0, 0.5 * (s0 - s2) / np.where(curv > 0, curv, 1.0), 0.0)
    logb = np.log(_B_GRID)
    b = np.exp(logb[i] + np.clip(step, -1.0, 1.0) * (logb[1] - logb[0]))
    b = np.clip(b, B_MIN, B_MAX)
    c, a, sse_b = _fit_c_a(np.exp(-b[:, None] * logn[None, :]), Y, W, c_max)
    # keep the grid point where the parabola step did not help (flat or kinked profiles)
    better = sse_b <= sse.min(1) + 1e-12
    bg = _B_GRID[sse.argmin(1)]
    cg, ag, _ = _fit_c_a(np.exp(-bg[:, None] * logn[None, :]), Y, W, c_max)
    return np.where(better, c, cg), np.where(better, a, ag), np.where(better, b, bg)


def _fit_power_law(n: np.ndarray, y: np.ndarray, se: np.ndarray, c_max: float):
    """Robust fit of `y = c - a*n^-b` (improvement orientation); returns (c, a, b).

    Starts come from two profiles, neither needing a guess: over the plateau c (for fixed c,
    log(c - y) = log a - b log n is a linear regression) and over b (exact in c and a). The best
    few are refined by least squares with a soft-L1 loss on standardized residuals, so one wild
    mean counts linearly rather than quadratically.
    """
    logn = np.log(n)
    W = 1.0 / se**2
    starts: list[tuple[float, float, float, float]] = []

    span = max(float(y.max() - y.min()), 3.0 * float(se.max()))
    cs = y.max() + span * np.geomspace(1e-2, 30.0, 60)
    cs = cs[cs <= c_max]
    if np.isfinite(c_max) and c_max > y.max():
        cs = np.append(cs, c_max)
    if len(cs):
        gap = cs[:, None] - y[None, :]  # (C, K), all > 0
        z = np.log(gap)
        wz = (gap / se[None, :]) ** 2  # delta method: sd of log(c - y) is se / (c - y)
        xm = (wz * logn).sum(1) / wz.sum(1)
        zm = (wz * z).sum(1) / wz.sum(1)
        slope = (wz * (logn - xm[:, None]) * (z - zm[:, None])).sum(1) / (
            wz * (logn - xm[:, None]) ** 2
        ).sum(1)
        b_c = np.clip(-slope, B_MIN, B_MAX)
        X = np.exp(-b_c[:, None] * logn[None, :])
        a_c = np.maximum((W * X * (cs[:, None] - y)).sum(1) / (W * X**2).sum(1), 0.0)
        sse_c = (W * (y - cs[:, None] + a_c[:, None] * X) ** 2).sum(1)
        for j in np.argsort(sse_c)[:3]:
            starts.append((float(sse_c[j]), float(cs[j]), float(a_c[j]), float(b_c[j])))

    X = np.exp(-_B_GRID[:, None] * logn[None, :])
    c_b, a_b, sse_b = _fit_c_a(X, y[None, :], W, c_max)
    for j in np.argsort(sse_b)[:3]:
        starts.append((float(sse_b[j]), float(c_b[j]), float(a_b[j]), float(_B_GRID[j])))

    def resid(p: np.ndarray) -> np.ndarray:
        c, a, b = p
        return (y - c + a * n**-b) / se

    lower = [-np.inf, 0.0, B_MIN]
    upper = [c_max, np.inf, B_MAX]
    best: tuple[float, float, np.ndarray] | None = None
    for _, c0, a0, b0 in sorted(starts)[:4]:
        x0 = np.array(
            [
                min(c0, c_max - 1e-9 * max(1.0, abs(c_max))) if np.isfinite(c_max) else c0,
                max(a0, 1e-12),
                min(max(b0, B_MIN * 1.0001), B_MAX * 0.9999),
            ]
        )
        try:
            fit = optimize.least_squares(
                resid, x0, bounds=(lower, upper), loss="soft_l1", f_scale=1.0, x_scale="jac"
            )
        except (ValueError, FloatingPointError):
            continue
        cand = (float(fit.cost), float((fit.fun**2).sum()), fit.x)
        if best is None or cand[:2] < best[:2]:
            best = cand
    if best is None:  # every refinement failed: fall back to the best profile point
        _, c0, a0, b0 = min(starts)
        return c0, a0, b0
    c, a, b = best[2]
    return float(c), float(a), float(b)


def _fit_log_linear(log2n: np.ndarray, Y: np.ndarray, W: np.ndarray):
    """Weighted least squares of `y = alpha + beta*log2 n` for each row of Y (..., K)."""
    sw = W.sum()
    xm = (W * log2n).sum() / sw
    ym = (Y * W).sum(-1) / sw
    beta = ((W * (log2n - xm)) * (Y - ym[..., None])).sum(-1) / (W * (log2n - xm) ** 2).sum()
    return ym - beta * xm, beta


def _holdout_weights(n, y, se, c_max) -> ModelWeights:
    """Pseudo-BMA weights from predicting each of the two largest sizes from all smaller ones.

    Alabdulmohsin et al. 2022: judge scaling-law estimators by extrapolation to held-out larger
    sizes, not by in-sample fit. Weight of a model is proportional to exp(-sum z^2 / 2).
    """
    K = len(n)
    held = list(range(max(_MIN_SIZES, K - 2), K))
    if not held:
        return ModelWeights(0.5, 0.5, (), (), ())
    z_pl, z_ll = [], []
    for j in held:
        c, a, b = _fit_power_law(n[:j], y[:j], se[:j], c_max)
        al, be = _fit_log_linear(np.log2(n[:j]), y[:j], 1.0 / se[:j] ** 2)
        z_pl.append(float((y[j] - (c - a * n[j] ** -b)) / se[j]))
        z_ll.append(float((y[j] - (al + be * np.log2(n[j]))) / se[j]))
    d = 0.5 * (sum(z**2 for z in z_ll) - sum(z**2 for z in z_pl))
    w_pl = 1.0 / (1.0 + math.exp(-min(max(d, -700.0), 700.0)))
    return ModelWeights(w_pl, 1.0 - w_pl, tuple(int(n[j]) for j in held), tuple(z_pl), tuple(z_ll))


def _holdout_weights_boot(n, Y, se, c_max) -> np.ndarray:
    """`_holdout_weights` for every bootstrap replicate (rows of Y), with the fast profile fit."""
    K = len(n)
    d = np.zeros(len(Y))
    for j in range(max(_MIN_SIZES, K - 2), K):
        c, a, b = _profile_b(np.log(n[:j]), Y[:, :j], 1.0 / se[:j] ** 2, c_max)
        al, be = _fit_log_linear(np.log2(n[:j]), Y[:, :j], 1.0 / se[:j] ** 2)
        z_pl = (Y[:, j] - (c - a * n[j] ** -b)) / se[j]
        z_ll = (Y[:, j] - (al + be * np.log2(n[j]))) / se[j]
        d += 0.5 * (z_ll**2 - z_pl**2)
    return 1.0 / (1.0 + np.exp(-np.clip(d, -700, 700)))


# ----------------------------------------------------------------------------- helpers


def _quantiles(x: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Percentiles along axis 0 without interpolating into infinities."""
    return np.quantile(x, qs, axis=0, method="inverted_cdf")


def _interval(x: np.ndarray, confidence: float) -> np.ndarray:
    return _quantiles(x, [(1 - confidence) / 2, (1 + confidence) / 2])


def _round_sig(x: float, sig: int = 2) -> int:
    if x <= 0 or not math.isfinite(x):
        return int(x) if math.isfinite(x) else 0
    digits = sig - int(math.floor(math.log10(x))) - 1
    return int(round(x, min(digits, 0)))


def _fmt_n(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "?"
    return f"{_round_sig(x):,}"


@dataclass(frozen=True)
class _Units:
    accuracy_like: bool
    direction: str
    metric: str


def format_gain(gain: float, curve: CurveResult | _Units) -> str:
    """A gain in improvement units as people read it: points for accuracy-like metrics."""
    if curve.accuracy_like:
        return f"{100 * gain:.1f} points"
    return f"{gain:.3g}"


def _ci_text(lo: float, hi: float, curve: CurveResult | _Units) -> str:
    if curve.accuracy_like:
        return f"{100 * lo:.1f}–{100 * hi:.1f} points"
    return f"{lo:.3g}–{hi:.3g}"


def _gain_phrase(gain: float, curve: CurveResult | _Units) -> str:
    if curve.accuracy_like:
        return f"gains {format_gain(gain, curve)}"
    verb = "lowers" if curve.direction == LOWER else "raises"
    return f"{verb} {curve.metric} by {format_gain(gain, curve)}"


def _as_map(value, metrics: Iterable[str]) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    return {m: value for m in metrics}


# ----------------------------------------------------------------------------- one curve


@dataclass(frozen=True)
class _Boot:
    """Bootstrap replicates of one curve, kept for the cross-tier exchange rates."""

    grid: np.ndarray
    pred: np.ndarray  # (B, G) improvement orientation
    point: np.ndarray  # (G,)
    sign: float
    max_size: int


def _aggregate(sizes_values: dict[int, list[tuple[int, float]]]):
    sizes = np.array(sorted(sizes_values), dtype=float)
    vals = [np.array([v for _, v in sorted(sizes_values[int(s)])]) for s in sizes]
    return sizes, vals


def _analyze_curve(
    tier: str,
    metric: str,
    by_size: dict[int, list[tuple[int, float]]],
    direction: str,
    epsilon: float | None,
    confidence: float,
    eval_size: int | None,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[CurveResult, _Boot | None]:
    sizes, vals = _aggregate(by_size)
    sign = 1.0 if direction == HIGHER else -1.0
    all_vals = np.concatenate(vals)
    in_unit = bool(np.all((all_vals >= 0) & (all_vals <= 1)))
    accuracy_like = direction == HIGHER and in_unit
    warnings: list[str] = []

    means = np.array([v.mean() for v in vals])
    k = np.array([len(v) for v in vals])
    current = float(means[-1])
    if epsilon is None:
        # 1 point for accuracy-like metrics; 1% of the value at the largest size otherwise
        epsilon = 0.01 if accuracy_like else 0.01 * abs(current)
        if epsilon == 0:
            epsilon = 1e-3
    eps = float(epsilon)

    # --- noise per size -----------------------------------------------------------------
    seed_var = np.array([v.var(ddof=1) if len(v) > 1 else np.nan for v in vals])
    dof = np.maximum(k - 1, 0)
    y = sign * means
    c_max = np.inf
    if accuracy_like:
        c_max = 1.0  # accuracy cannot exceed 1
    elif direction == LOWER and np.all(all_vals >= 0):
        c_max = 0.0  # loss-like plateau >= 0, i.e. -plateau <= 0
    if dof.sum() > 0:
        pooled = float(np.nansum(seed_var * dof) / dof.sum())
        # With 3 seeds a per-size variance has 2 d.o.f. and is off by 2x about one time in 5;
        # shrinking toward the pooled variance (4 pseudo-d.o.f.) keeps one lucky size from
        # getting a spuriously tight interval.
        shrunk = (np.nan_to_num(seed_var) * dof + 4.0 * pooled) / (dof + 4.0)
    else:
        shrunk = np.full(len(sizes), np.nan)
    eval_var = np.zeros(len(sizes))
    eval_se: list[float | None] = [None] * len(sizes)
    if eval_size and not accuracy_like:
        warnings.append(
            f"eval_size ignored for {metric}: p(1-p)/m needs a higher-is-better score in [0, 1]"
        )
    if eval_size and accuracy_like:
        p = np.clip(means, 0.0, 1.0)
        eval_var = p * (1 - p) / eval_size
        eval_se = [float(math.sqrt(v)) for v in eval_var]
    floor_var = (eps / 10) ** 2  # noise far below epsilon cannot change a decision
    if np.all(np.isnan(shrunk)):
        if len(sizes) > _MIN_SIZES:
            se0 = np.sqrt(np.maximum(eval_var, floor_var))
            c, a, b = _fit_power_law(sizes, y, se0, c_max)
            resid = y - (c - a * sizes**-b)
            shrunk = np.full(len(sizes), float((resid**2).sum() / (len(sizes) - 3)))
            warnings.append(
                "one seed per size: seed noise is estimated from the scatter around the fit"
            )
        else:
            shrunk = np.zeros(len(sizes))
            if not eval_size:
                warnings.append(
                    "one seed per size and no eval size: intervals rest on a floor of "
                    "epsilon/10 per cell and are too narrow"
                )
    cell_var = np.maximum.reduce([shrunk, eval_var, np.full(len(sizes), floor_var)])
    se = np.sqrt(cell_var / k)
    z = float(stats.norm.ppf((1 + confidence) / 2))

    # --- bootstrap replicates of the per-size means (improvement orientation) ---------------
    parametric = bool(np.any(k < 4))
    if parametric:
        Y = y[None, :] + se[None, :] * rng.standard_normal((n_boot, len(sizes)))
    else:
        cols = []
        for i, v in enumerate(vals):
            pick = rng.integers(0, len(v), size=(n_boot, len(v)))
            col = sign * v[pick].mean(1)
            raw = float(seed_var[i])
            extra = max(float(cell_var[i]) - raw, 0.0) / k[i]  # eval/floor noise seeds miss
            cols.append(col + math.sqrt(extra) * rng.standard_normal(n_boot))
        Y = np.stack(cols, 1)

    def stat_rows(fitted=None, g1k=None, g1k_ci=None, d2=None, d2_ci=None, pb=None):
        rows = []
        for i, s in enumerate(sizes):
            std = float(vals[i].std(ddof=1)) if k[i] > 1 else float("nan")
            nan2 = (float("nan"), float("nan"))
            rows.append(
                SizeStat(
                    size=int(s),
                    n_seeds=int(k[i]),
                    mean=float(means[i]),
                    std=std,
                    se=float(se[i]),
                    eval_se=eval_se[i],
                    mean_ci=(float(means[i] - z * se[i]), float(means[i] + z * se[i])),
                    values=tuple(float(x) for x in vals[i]),
                    fitted=float(fitted[i]) if fitted is not None else float("nan"),
                    gain_per_1k=float(g1k[i]) if g1k is not None else float("nan"),
                    gain_per_1k_ci=tuple(map(float, g1k_ci[:, i])) if g1k_ci is not None else nan2,
                    delta2=float(d2[i]) if d2 is not None else float("nan"),
                    delta2_ci=tuple(map(float, d2_ci[:, i])) if d2_ci is not None else nan2,
                    p_delta2_below_eps=float(pb[i]) if pb is not None else float("nan"),
                )
            )
        return tuple(rows)

    base = dict(
        tier=tier,
        metric=metric,
        direction=direction,
        accuracy_like=accuracy_like,
        epsilon=eps,
        confidence=confidence,
        bootstrap="parametric" if parametric else "seeds",
    )
    label = f"tier {tier} ({metric})"

    if len(sizes) < _MIN_SIZES:
        reason = (
            f"only {len(sizes)} distinct size{'s' if len(sizes) != 1 else ''}; "
            f"a saturating curve needs at least {_MIN_SIZES}"
        )
        nxt = int(2 * sizes[-1])
        res = CurveResult(
            **base,
            decision=INCONCLUSIVE,
            reason=reason,
            summary=f"{label}: inconclusive: {reason}; run {nxt:,} next.",
            n_star=None,
            n_star_ci=None,
            plateau=None,
            plateau_ci=None,
            delta2_at_max=None,
            delta2_at_max_ci=None,
            next_size=nxt,
            trend="flat",
            sizes=stat_rows(),
            power_law=None,
            log_linear=None,
            weights=None,
            band=None,
            warnings=tuple(warnings),
        )
        return res, None

    # --- point fits and model weights ----------------------------------------------------------
    W = 1.0 / se**2
    log2n = np.log2(sizes)
    c, a, b = _fit_power_law(sizes, y, se, c_max)
    al, be = _fit_log_linear(log2n, y, W)
    weights = _holdout_weights(sizes, y, se, c_max)
    w = weights.power_law
    if not weights.held_out:
        warnings.append("only 3 sizes: power law and log-linear weighted equally")

    # --- bootstrap refits (vectorized) ----------------------------------------------------------
    cB, aB, bB = _profile_b(np.log(sizes), Y, W, c_max)
    alB, beB = _fit_log_linear(log2n, Y, W)
    # weights re-derived per replicate, so the intervals carry the model-choice uncertainty too
    wB = _holdout_weights_boot(sizes, Y, se, c_max) if weights.held_out else np.full(n_boot, w)
    weights = replace(weights, power_law_boot_mean=float(wB.mean()))

    grid = np.unique(np.concatenate([np.geomspace(sizes[0], 2 * sizes[-1], _GRID_POINTS), sizes]))
    lg = np.log(grid)

    def curves(c_, a_, b_, al_, be_, w):
        c_, a_, b_, al_, be_, w = (
            np.asarray(t, dtype=float)[..., None] for t in (c_, a_, b_, al_, be_, w)
        )
        pw = np.exp(-b_ * lg)
        ll = al_ + be_ * lg / math.log(2)
        # a straight line in log n would walk through a bounded score's ceiling (accuracy 1)
        ll_n, ll_2n = np.minimum(ll, c_max), np.minimum(ll + be_, c_max)
        ll_slope = np.where(ll < c_max, be_ / (grid * math.log(2)), 0.0)
        pred = w * (c_ - a_ * pw) + (1 - w) * ll_n
        d2 = w * a_ * pw * (1 - 2.0**-b_) + (1 - w) * (ll_2n - ll_n)
        g1k = 1000 * (w * a_ * b_ * pw / grid + (1 - w) * ll_slope)
        return pred, d2, g1k

    pred_p, d2_p, g1k_p = curves(c, a, b, al, be, w)
    predB, d2B, g1kB = curves(cB, aB, bB, alB, beB, wB)
    pred_ci = _interval(predB, confidence)
    d2_ci = _interval(d2B, confidence)
    g1k_ci = _interval(g1kB, confidence)
    p_below = (d2B < eps).mean(0)
    at = np.searchsorted(grid, sizes)  # ladder positions in the grid
    i_max = int(at[-1])

    # --- decision ----------------------------------------------------------------------------
    # Per replicate delta2(n) falls with n, so "P(delta2(n) < eps) >= confidence" is the same as
    # "the confidence-quantile of the replicate crossing points is <= n".
    hit = d2B < eps
    crossing = np.where(hit.any(1), grid[hit.argmax(1)], np.inf)
    ok = np.nonzero(p_below >= confidence)[0]
    d2_max, (d2_lo, d2_hi) = float(d2_p[i_max]), map(float, d2_ci[:, i_max])
    p_pays = float((d2B[:, i_max] >= eps).mean())
    noise = float(np.median(se))
    n_star = n_star_ci = next_size = None
    max_n, two_max = int(sizes[-1]), int(2 * sizes[-1])
    units = _Units(accuracy_like, direction, metric)  # what the text helpers need

    def g(x: float) -> str:
        return format_gain(x, units)

    conf_pct = f"{100 * confidence:.0f}%"
    d2_txt = f"{g(d2_max)} ({conf_pct} CI {_ci_text(d2_lo, d2_hi, units)})"
    # With a per-size SE above epsilon a flat-looking stretch is as likely noise as a plateau:
    # the fit (a sharp knee fits noise well) would claim saturation that the data cannot show.
    if len(ok) and noise <= eps:
        i = int(ok[0])
        n_star = int(round(grid[i]))
        lo, hi = _interval(crossing, confidence)
        n_star_ci = (int(round(lo)), int(round(hi)) if np.isfinite(hi) else None)
        decision = SATURATED
        next_size = two_max if n_star > max_n else None
        where = "within" if n_star <= max_n else "one doubling or less past"
        reason = (
            f"P(delta2 < epsilon {g(eps)}) reaches {conf_pct} at n={n_star:,}, {where} the "
            f"largest size run ({max_n:,})"
        )
        hi_txt = _fmt_n(n_star_ci[1]) if n_star_ci[1] is not None else f">{two_max:,}"
        summary = (
            f"{label}: saturated at ~{_fmt_n(n_star)} examples ({conf_pct} CI "
            f"{_fmt_n(n_star_ci[0])}–{hi_txt}); doubling to {_fmt_n(2 * n_star)} "
            f"{_gain_phrase(float(d2_p[i]), units)}."
        )
    elif p_pays >= confidence:
        decision = MORE_DATA_PAYS
        next_size = two_max
        reason = (
            f"doubling the largest size ({max_n:,}) gains {d2_txt}, at least epsilon "
            f"({g(eps)}) with P={p_pays:.2f}"
        )
        summary = (
            f"{label}: more data still pays: doubling {max_n:,} to {two_max:,} "
            f"{_gain_phrase(d2_max, units)} ({conf_pct} CI {_ci_text(d2_lo, d2_hi, units)}); "
            f"run {two_max:,} next."
        )
    else:
        decision = INCONCLUSIVE
        if noise > eps or (d2_hi - d2_lo > 2 * eps and d2_lo < eps < d2_hi):
            lean = (
                f"the fit suggests saturation near {_fmt_n(grid[ok[0]])}"
                if len(ok)
                else f"delta2 at n={max_n:,} is {d2_txt}"
            )
            reason = (
                f"too noisy to resolve epsilon ({g(eps)}): per-size SE is {g(noise)}; {lean}; "
                "add seeds or evaluation items"
            )
        elif d2_max < eps:
            next_size = two_max
            reason = (
                f"delta2 at n={max_n:,} is {d2_txt}: probably below epsilon ({g(eps)}, "
                f"P={1 - p_pays:.2f}) but not with {conf_pct} confidence; run {two_max:,} to confirm"
            )
        else:
            next_size = two_max
            reason = (
                f"delta2 at n={max_n:,} is {d2_txt}: probably above epsilon ({g(eps)}, "
                f"P={p_pays:.2f}) but not with {conf_pct} confidence; run {two_max:,} to see"
            )
        summary = f"{label}: inconclusive: {reason}."

    # --- fit diagnostics ------------------------------------------------------------------------
    at_bound = np.isfinite(c_max) and abs(c - c_max) < 1e-6 * max(1.0, abs(c_max))
    # a plateau pinned to the metric's bound (accuracy 1, loss 0) is an assumption, not an estimate
    plateau = None if at_bound else float(sign * c)
    plateau_ci = (
        None if at_bound else tuple(sorted(float(sign * q) for q in _interval(cB, confidence)))
    )
    flat = a * (sizes[0] ** -b - sizes[-1] ** -b) < eps / 10  # no rise: c is just the mean
    b_floor = b <= B_MIN * 1.05 and not flat
    if b_floor or at_bound or w < 0.5:
        why = []
        if at_bound:
            why.append(f"at its bound {sign * c_max:g}")
        if b_floor:
            why.append(f"exponent at its floor {B_MIN}")
        if w < 0.5:
            why.append(f"power law weighted only {w:.2f}")
        warnings.append("plateau weakly identified (" + "; ".join(why) + ")")
    for i in range(1, len(sizes)):
        drop = y[i - 1] - y[i]
        comb = math.sqrt(se[i] ** 2 + se[i - 1] ** 2)
        if drop > 2 * comb:
            warnings.append(
                f"non-monotone: mean at n={int(sizes[i]):,} ({means[i]:.4g}) is worse than at "
                f"n={int(sizes[i - 1]):,} ({means[i - 1]:.4g}) by {g(drop)}, "
                f"more than 2x the combined SE ({g(comb)})"
            )
    if noise > eps:
        warnings.append(
            f"per-size SE ({g(noise)}) exceeds epsilon ({g(eps)}): add seeds or evaluation items"
        )
    p_up = float((predB[:, i_max] > predB[:, 0]).mean())
    trend = "improving" if p_up >= confidence else "worsening" if p_up <= 1 - confidence else "flat"
    if trend == "worsening":
        warnings.append(f"{metric} gets worse with more data over the sizes run")

    fitted = sign * pred_p
    lohi = np.sort(sign * pred_ci, axis=0)
    band = CurveBand(
        n=tuple(map(float, grid)),
        fitted=tuple(map(float, fitted)),
        lo=tuple(map(float, lohi[0])),
        hi=tuple(map(float, lohi[1])),
        delta2=tuple(map(float, d2_p)),
        delta2_lo=tuple(map(float, d2_ci[0])),
        delta2_hi=tuple(map(float, d2_ci[1])),
        p_below=tuple(map(float, p_below)),
    )
    res = CurveResult(
        **base,
        decision=decision,
        reason=reason,
        summary=summary,
        n_star=n_star,
        n_star_ci=n_star_ci,
        plateau=plateau,
        plateau_ci=plateau_ci,
        delta2_at_max=d2_max,
        delta2_at_max_ci=(d2_lo, d2_hi),
        next_size=next_size,
        trend=trend,
        sizes=stat_rows(fitted[at], g1k_p[at], g1k_ci[:, at], d2_p[at], d2_ci[:, at], p_below[at]),
        power_law=PowerLaw(float(sign * c), float(a), float(b)),
        log_linear=LogLinear(float(sign * al), float(sign * be)),
        weights=weights,
        band=band,
        warnings=tuple(warnings),
    )
    return res, _Boot(grid, predB, pred_p, sign, int(sizes[-1]))


# ----------------------------------------------------------------------------- across curves


def _invert(grid: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Smallest n on the grid where each row of `pred` reaches `target` (log-interpolated).

    -inf: reached already at the grid's start; inf: never reached on the grid.
    """
    pred = np.atleast_2d(pred)
    target = np.broadcast_to(np.asarray(target, dtype=float), (len(pred),))
    reached = pred >= target[:, None]
    first = reached.argmax(1)
    j = np.clip(first, 1, len(grid) - 1)
    rows = np.arange(len(pred))
    p0, p1 = pred[rows, j - 1], pred[rows, j]
    rise = p1 - p0
    t = np.clip(np.where(rise > 0, (target - p0) / np.where(rise > 0, rise, 1.0), 1.0), 0, 1)
    lg = np.log(grid)
    val = np.exp(lg[j - 1] + t * (lg[j] - lg[j - 1]))
    return np.where(~reached.any(1), np.inf, np.where(first == 0, -np.inf, val))


def _exchange(metric, better, worse, bb: _Boot, bw: _Boot, cb, cw, confidence) -> Exchange:
    rows = []
    for s in cb.sizes:
        j = int(np.searchsorted(bb.grid, s.size))
        target = float(bb.point[j])
        n_pt = float(_invert(bw.grid, bw.point[None, :], np.array([target]))[0])
        tgt_txt = f"{s.fitted:.4g}"
        if n_pt == -np.inf:
            rows.append(
                ExchangeRow(
                    s.size,
                    s.fitted,
                    None,
                    None,
                    None,
                    f"tier {worse} already reaches {tgt_txt} at its smallest size "
                    f"({cw.sizes[0].size:,})",
                )
            )
            continue
        if n_pt == np.inf:
            rows.append(
                ExchangeRow(
                    s.size,
                    s.fitted,
                    None,
                    None,
                    None,
                    f"tier {worse} does not reach {tgt_txt} within one doubling past its largest "
                    f"size ({2 * cw.max_size:,})",
                )
            )
            continue
        m = min(len(bb.pred), len(bw.pred))  # independent bootstraps, paired by index
        reps = _invert(bw.grid, bw.pred[:m], bb.pred[:m, j])
        lo, hi = _interval(reps, confidence)
        ci = (
            float(lo) if np.isfinite(lo) else None,
            float(hi) if np.isfinite(hi) else None,
        )
        rows.append(ExchangeRow(s.size, s.fitted, n_pt, ci, n_pt / s.size, ""))
    usable = [r for r in rows if r.other_size is not None]
    # quote rows that need no extrapolation of the other tier when there are any
    inside = [r for r in usable if r.other_size <= cw.max_size] or usable
    if inside:
        ratios = [r.ratio for r in inside]
        r = inside[-1]
        spread = (
            f"{min(ratios):.1f}–{max(ratios):.1f}x"
            if max(ratios) - min(ratios) >= 0.05
            else f"{r.ratio:.1f}x"
        )
        where = f"tier-{better} sizes {inside[0].size:,}–{r.size:,}" if len(inside) > 1 else ""
        summary = (
            f"{metric}: tier {worse} needs {spread} as many examples as tier {better} for the "
            f"same score{f' ({where})' if where else ''}; e.g. {r.size:,} tier-{better} examples "
            f"score like ~{_fmt_n(r.other_size)} tier-{worse} examples"
        )
    else:
        summary = (
            f"{metric}: tier {worse} does not reach tier {better}'s scores in the range fitted"
        )
    return Exchange(metric, better, worse, tuple(rows), summary)


def _disagreements(curves: list[CurveResult]) -> list[tuple[str, str]]:
    """(tier, message) where a loss-like and an accuracy-like metric tell different stories."""
    out = []
    by_tier: dict[str, list[CurveResult]] = defaultdict(list)
    for c in curves:
        by_tier[c.tier].append(c)
    for tier, cs in by_tier.items():
        losses = [c for c in cs if c.direction == LOWER]
        accs = [c for c in cs if c.accuracy_like]
        for lo in losses:
            for ac in accs:
                if lo.band is None or ac.band is None:
                    continue
                pair = f"{lo.metric} vs {ac.metric}"
                if {lo.trend, ac.trend} == {"improving", "worsening"}:
                    out.append(
                        (
                            tier,
                            f"{pair}: trends disagree ({lo.metric} {lo.trend}, "
                            f"{ac.metric} {ac.trend})",
                        )
                    )
                elif lo.trend == "worsening" and ac.decision == MORE_DATA_PAYS:
                    out.append((tier, f"{pair}: {lo.metric} worsens while {ac.metric} still rises"))
                elif {lo.decision, ac.decision} == {SATURATED, MORE_DATA_PAYS}:
                    sat = lo if lo.decision == SATURATED else ac
                    pays = ac if sat is lo else lo
                    out.append(
                        (
                            tier,
                            f"{pair}: {sat.metric} saturated at ~{_fmt_n(sat.n_star)} but "
                            f"{pays.metric} still pays at {pays.max_size:,}",
                        )
                    )
    return out


def analyze(
    records: Iterable[Record],
    *,
    direction: dict[str, str] | str,
    epsilon: float | dict[str, float] | None = None,
    confidence: float = 0.9,
    eval_size: dict[str, int] | int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Analysis:
    """Fit, bootstrap and decide for every (tier, metric) in `records`.

    `direction`: "higher" or "lower" per metric (or one for all). `epsilon`: the smallest gain
    from doubling worth paying for (default: 1 point for accuracy-like metrics, 1% of the value at
    the largest size otherwise). `eval_size`: evaluation items per accuracy-like metric, for the
    p(1-p)/m noise floor.
    """
    records = list(records)
    if not records:
        raise ValueError("no records to analyze")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    metrics = list(dict.fromkeys(r.metric for r in records))
    dirs = _as_map(direction, metrics)
    epss = _as_map(epsilon, metrics)
    evals = _as_map(eval_size, metrics)
    for m in metrics:
        if dirs.get(m) not in (HIGHER, LOWER):
            raise ValueError(
                f"direction for metric {m!r} must be 'higher' or 'lower', got {dirs.get(m)!r}"
            )
    groups: dict[tuple[str, str], dict[int, list[tuple[int, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    seen: set[tuple] = set()
    for r in records:
        key = (r.tier, r.metric, r.size, r.seed)
        if key in seen:
            raise ValueError(f"duplicate record for tier, metric, size, seed {key}")
        seen.add(key)
        if int(r.size) != r.size or r.size <= 0:
            raise ValueError(f"size must be a positive integer, got {r.size!r} in {r}")
        if not math.isfinite(float(r.value)):
            raise ValueError(f"value must be finite, got {r.value!r} in {r}")
        groups[(str(r.tier), str(r.metric))][int(r.size)].append((int(r.seed), float(r.value)))

    results: list[CurveResult] = []
    boots: dict[tuple[str, str], _Boot] = {}
    tiers = list(dict.fromkeys(str(r.tier) for r in records))
    for tier, metric in sorted(groups, key=lambda t: (metrics.index(t[1]), tiers.index(t[0]))):
        rng = np.random.default_rng([seed, zlib.crc32(f"{tier}\0{metric}".encode())])
        res, boot = _analyze_curve(
            tier,
            metric,
            groups[(tier, metric)],
            dirs[metric],
            epss.get(metric),
            confidence,
            evals.get(metric),
            n_boot,
            rng,
        )
        results.append(res)
        if boot is not None:
            boots[(tier, metric)] = boot

    extra: dict[str, list[str]] = defaultdict(list)
    global_warnings: list[str] = []
    for tier, msg in _disagreements(results):
        extra[tier].append(msg)
        global_warnings.append(f"tier {tier}: {msg}")
    results = [
        replace(r, warnings=r.warnings + tuple(extra[r.tier])) if extra.get(r.tier) else r
        for r in results
    ]
    for r in results:
        global_warnings.extend(
            f"tier {r.tier} ({r.metric}): {w}" for w in r.warnings if w not in extra[r.tier]
        )

    exchanges: list[Exchange] = []
    for metric in metrics:
        fitted = [r for r in results if r.metric == metric and (r.tier, metric) in boots]
        for i, ra in enumerate(fitted):
            for rb in fitted[i + 1 :]:
                ba, bb = boots[(ra.tier, metric)], boots[(rb.tier, metric)]
                n_ref = min(ra.max_size, rb.max_size)
                va = float(np.interp(math.log(n_ref), np.log(ba.grid), ba.point))
                vb = float(np.interp(math.log(n_ref), np.log(bb.grid), bb.point))
                if va >= vb:
                    exchanges.append(
                        _exchange(metric, ra.tier, rb.tier, ba, bb, ra, rb, confidence)
                    )
                else:
                    exchanges.append(
                        _exchange(metric, rb.tier, ra.tier, bb, ba, rb, ra, confidence)
                    )

    return Analysis(
        curves=tuple(results),
        exchanges=tuple(exchanges),
        warnings=tuple(global_warnings),
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
    )


# ----------------------------------------------------------------------------- JSON


def _clean(x):
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def curve_to_dict(c: CurveResult) -> dict:
    """One curve as JSON-safe data (no NaN or infinity: None instead)."""
    return _clean(
        {
            "tier": c.tier,
            "metric": c.metric,
            "direction": c.direction,
            "decision": c.decision,
            "n_star": c.n_star,
            "n_star_ci": list(c.n_star_ci) if c.n_star_ci else None,
            "plateau": c.plateau,
            "plateau_ci": list(c.plateau_ci) if c.plateau_ci else None,
            "delta2_at_max": c.delta2_at_max,
            "delta2_at_max_ci": list(c.delta2_at_max_ci) if c.delta2_at_max_ci else None,
            "next_size": c.next_size,
            "warnings": list(c.warnings),
            "summary": c.summary,
            "reason": c.reason,
            "epsilon": c.epsilon,
            "confidence": c.confidence,
            "trend": c.trend,
            "bootstrap": c.bootstrap,
            "fit": {
                "power_law": vars(c.power_law) if c.power_law else None,
                "log_linear": vars(c.log_linear) if c.log_linear else None,
                "weights": (
                    {
                        "power_law": c.weights.power_law,
                        "log_linear": c.weights.log_linear,
                        "held_out_sizes": list(c.weights.held_out),
                        "power_law_boot_mean": c.weights.power_law_boot_mean,
                    }
                    if c.weights
                    else None
                ),
            },
            "sizes": [
                {
                    "size": s.size,
                    "n_seeds": s.n_seeds,
                    "mean": s.mean,
                    "std": s.std,
                    "se": s.se,
                    "mean_ci": list(s.mean_ci),
                    "fitted": s.fitted,
                    "gain_per_1k": s.gain_per_1k,
                    "gain_per_1k_ci": list(s.gain_per_1k_ci),
                    "delta2": s.delta2,
                    "delta2_ci": list(s.delta2_ci),
                    "p_delta2_below_eps": s.p_delta2_below_eps,
                }
                for s in c.sizes
            ],
        }
    )


def to_json(analysis: Analysis) -> dict:
    """The whole analysis as JSON-safe data: curves[tier][metric], exchanges, warnings."""
    curves: dict[str, dict[str, dict]] = defaultdict(dict)
    for c in analysis.curves:
        curves[c.tier][c.metric] = curve_to_dict(c)
    return _clean(
        {
            "confidence": analysis.confidence,
            "n_boot": analysis.n_boot,
            "seed": analysis.seed,
            "curves": dict(curves),
            "exchanges": [
                {
                    "metric": e.metric,
                    "better": e.better,
                    "other": e.other,
                    "summary": e.summary,
                    "rows": [
                        {
                            "size": r.size,
                            "target": r.target,
                            "other_size": r.other_size,
                            "other_size_ci": list(r.other_size_ci) if r.other_size_ci else None,
                            "ratio": r.ratio,
                            "reason": r.reason,
                        }
                        for r in e.rows
                    ],
                }
                for e in analysis.exchanges
            ],
            "warnings": list(analysis.warnings),
        }
    )


# ----------------------------------------------------------------------------- CSV input

_REQUIRED = ("size", "seed", "value")
_OPTIONAL = {"tier": "all", "metric": "value"}


def read_curve_csv(path: str | Path) -> list[Record]:
    """Records from a CSV with columns size,seed,value (optional tier, metric)."""
    path = Path(path)
    where = str(path)

    def fail(msg: str, line: int | None = None, column: str = "") -> CurveInputError:
        loc = where if line is None else f"{where}: line {line}"
        if column:
            loc += f", column '{column}'"
        return CurveInputError(f"{loc}: {msg}", path=where, line=line, column=column)

    if not path.is_file():
        raise fail("file not found" if not path.exists() else "not a regular file")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise fail(
                "empty file: expected a header row size,seed,value (optional tier, metric)", 1
            )
        header_line = reader.line_num
        names = [h.strip().lower() for h in header]
        for col in _REQUIRED:
            if col not in names:
                raise fail(
                    f"missing required column; expected columns {','.join(_REQUIRED)} "
                    f"(optional tier, metric), got {','.join(h.strip() for h in header)}",
                    header_line,
                    col,
                )
        idx = {n: i for i, n in enumerate(names)}
        records: list[Record] = []
        last_line = header_line
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue

            def cell(col: str, row=row, line=line) -> str:
                i = idx[col]
                if i >= len(row) or not row[i].strip():
                    raise fail("expected a value, got an empty cell", line, col)
                return row[i].strip()

            def integer(col: str, raw: str, line=line) -> int:
                try:
                    x = float(raw)
                except ValueError:
                    raise fail(f"expected an integer, got {raw!r}", line, col) from None
                if not math.isfinite(x) or x != int(x):
                    raise fail(f"expected an integer, got {raw!r}", line, col)
                return int(x)

            raw_size = cell("size")
            size = integer("size", raw_size)
            if size <= 0:
                raise fail(f"expected a positive size, got {raw_size!r}", line, "size")
            seed = integer("seed", cell("seed"))
            raw_value = cell("value")
            try:
                value = float(raw_value)
            except ValueError:
                raise fail(f"expected a number, got {raw_value!r}", line, "value") from None
            if not math.isfinite(value):
                raise fail(f"expected a finite number, got {raw_value!r}", line, "value")
            extra = {
                col: (row[idx[col]].strip() if col in idx and idx[col] < len(row) else "")
                or default
                for col, default in _OPTIONAL.items()
            }
            records.append(Record(extra["tier"], size, seed, extra["metric"], value))
            last_line = line
    if len(records) < 2:
        raise fail(
            f"expected at least 2 data rows (a curve needs several sizes), got {len(records)}",
            last_line,
            "size",
        )
    return records
