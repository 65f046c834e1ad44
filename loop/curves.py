"""Learning-curve saturation analysis: cell scores (and per-item scores) in, decisions out.

Pure: numpy and scipy only; nothing here prints, plots or touches tracking.

Internally every metric is turned so that "up is better" (loss is negated), so one saturating law
`y = c - a*n^-b` (a >= 0) serves both directions and every gain is positive when things improve.
Values handed back (means, fitted curve, plateau) are in the metric's own units; gains (delta2,
gain per 1k) are in improvement units: positive = better, for loss as for accuracy.

Two inputs, one analysis per (tier, metric):

- `Record(tier, size, seed, metric, value)`: one score per cell. Each size's mean is treated as
  independent noise (seed spread, at least p(1-p)/m): the parametric path.
- `ItemScore(tier, size, seed, metric, item, score)`: per-item scores per cell. Every cell of a
  tier is scored on the same items, so one resample of item indices is shared by every cell (and
  by every tier with the same items): the correlation between sizes is kept, and a gain is far
  more precise than the two sizes' own errors suggest. Training noise is added on top, estimated
  from seeds, or with one seed from the scatter of the cell means around the fitted curve.

Size 0 is the base model (zero-shot): the anchor. A curve that has not risen above it by more
than epsilon is "not learning yet", never saturated.

The stages of one curve: data -> noise and replicates -> fit and band -> the decision as facts
(`decide`) -> what would settle an open call -> wording -> diagnostics -> `CurveResult`.
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
# why a decision was reached (facts, for code; the words are in `reason` and `summary`)
FLATTENED = "flattened"  # saturated: rose above the anchor, then Δ₂ fell below ε
STILL_GAINING = "still_gaining"  # more data pays: Δ₂ at the largest size is above ε
FEW_SIZES = "few_sizes"
NOT_LEARNING = "not_learning_yet"  # no gain over the anchor beyond ε so far
TOO_NOISY = "too_noisy"  # the interval holds ε
NEXT_SIZE = "needs_next_size"  # Δ₂ crosses ε only past the largest size run

# Data exponents seen in practice are ~0.07-0.35 (Hestness 2017); 2 still allows a sharp knee
# and 0.01 a curve that is log-linear over the range.
B_MIN, B_MAX = 0.01, 2.0
_B_GRID = np.geomspace(B_MIN, B_MAX, 100)  # 5.5% steps in b, refined by a parabola afterwards
_GRID_POINTS = 97  # dense size grid from the smallest size to 2x the largest: ~16 points a doubling
_MIN_SIZES = 3  # a 3-parameter law needs at least 3 distinct sizes
# A trained example costs about three evaluated items (forward + backward against a forward
# pass), one epoch; used only to rank the options that would settle an open call.
TRAIN_PASSES = 3.0
_POWER = 0.8  # advice aims at settling the call with this probability
_MAX_SEEDS = 16  # advice never asks for more seeds per size than this
_EPS_STEPS = (0.5, 1.0, 2.0, 5.0)  # graded answer: n* at these multiples of epsilon


@dataclass(frozen=True)
class Record:
    tier: str
    size: int  # 0 = the base model (zero-shot)
    seed: int
    metric: str
    value: float


@dataclass(frozen=True)
class ItemScore:
    """One evaluation item's score in one cell (1/0 for accuracy, a probability, a loss...)."""

    tier: str
    size: int  # 0 = the base model (zero-shot)
    seed: int
    metric: str
    item: str
    score: float


@dataclass(frozen=True)
class SizeStat:
    """One observed size: seed aggregate plus the fitted curve's view of it."""

    size: int
    n_seeds: int
    mean: float
    std: float  # across seeds; nan with one seed
    se: float  # standard error of the size's mean in the bootstrap (items and training noise)
    eval_se: float | None  # evaluation sampling error alone: items, or sqrt(p(1-p)/m)
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
    """`c - a*(n + n_l)^-b` for higher-is-better metrics, `c + a*(n + n_l)^-b` for lower ones;
    n_l = 0 is a plain power law, n_l > 0 a curve that starts flat (Lin et al. 2024)."""

    c: float
    a: float
    b: float
    n_l: float = 0.0


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
class Noise:
    """Where a curve's uncertainty comes from; what the advice and adaptive rounds read."""

    bootstrap: str  # items+seeds | items+residuals | items | seeds | parametric
    items: int | None  # evaluation items per cell (m), when known
    seeds: int  # fewest seeds at any size
    train_sd: float | None  # training noise of one cell's score, metric units; None: not estimated
    train_source: str  # seeds | residuals | none
    item_share: float | None  # share of the variance of Δ₂ at the largest size due to items


@dataclass(frozen=True)
class Settle:
    """The cheapest evidence likely to turn an open call into a decision, with a rough cost."""

    kind: str  # items, seeds, size or a mix joined by "+"; "none": nothing within reach
    items: int | None  # evaluation items per cell to score (total)
    seeds: int | None  # seeds per size (total)
    size: int | None  # the size to run next
    cost: float | None  # example passes (a trained example ~ TRAIN_PASSES evaluated items)
    likely: bool  # the power calculation expects it to settle the call
    text: str
    p_settle: float | None = None  # its probability of settling the call, when calculated


@dataclass(frozen=True)
class NStarAt:
    """The graded answer at one epsilon: n* and its interval (None: not within the sizes run)."""

    epsilon: float
    n_star: int | None
    n_star_ci: tuple[int | None, int | None] | None


@dataclass(frozen=True)
class CurveResult:
    tier: str
    metric: str
    direction: str
    accuracy_like: bool  # higher-is-better and within [0, 1]: gains are shown in points
    epsilon: float
    confidence: float
    decision: str  # saturated | more_data_pays | inconclusive
    why: str  # flattened | still_gaining | few_sizes | not_learning_yet | too_noisy | ...
    reason: str
    summary: str
    n_star: int | None
    n_star_ci: tuple[int | None, int | None] | None  # upper None: beyond 2x the largest size
    plateau: float | None
    plateau_ci: tuple[float, float] | None
    delta2_at_max: float | None
    delta2_at_max_ci: tuple[float, float] | None
    next_size: int | None
    trend: str  # improving | worsening | flat: largest vs smallest size run, `_trend`
    sizes: tuple[SizeStat, ...]
    power_law: PowerLaw | None
    log_linear: LogLinear | None
    weights: ModelWeights | None
    band: CurveBand | None
    bootstrap: str  # items+seeds | items+residuals | items | seeds | parametric
    warnings: tuple[str, ...]
    zero_shot: float | None  # the base model's score (size 0), metric units
    anchor: str  # zero-shot | first size | chance: what "has it risen" is measured against
    rise: float | None  # fitted score at the largest size minus the anchor, improvement units
    rise_ci: tuple[float, float] | None
    learning: bool  # the rise clears epsilon with `confidence`
    certified_epsilon: float | None  # smallest ε the data certifies (one-sided `confidence`)
    certified_at: int | None  # ... for doubling past this size
    n_star_by_epsilon: tuple[NStarAt, ...]
    settle: Settle | None  # for inconclusive calls
    noise: Noise | None

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
class SizeGap:
    """One size both tiers ran: tier minus reference, improvement units (positive = better)."""

    size: int
    gap: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Versus:
    """A tier against the reference tier (a selection method against random), one metric."""

    tier: str
    reference: str
    metric: str
    verdict: str  # better | no different | worse | mixed, at the sizes both ran
    sizes: tuple[SizeGap, ...]
    text: str


@dataclass(frozen=True)
class Analysis:
    curves: tuple[CurveResult, ...]
    exchanges: tuple[Exchange, ...]
    warnings: tuple[str, ...]
    confidence: float
    n_boot: int
    seed: int
    versus: tuple[Versus, ...] = ()  # with `reference`: every other tier against it

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


def _nl_grid(n: np.ndarray) -> np.ndarray:
    """Offsets n_l of the rectified law tried by the profile: 0 (a plain power law) and a range
    from half the smallest size to 4x the largest. Only with 5 sizes or more: a 4-parameter law
    on fewer points fits anything."""
    if len(n) < 5:
        return np.zeros(1)
    return np.concatenate([[0.0], np.geomspace(n[0] / 2, 4 * n[-1], 12)])


def _profile_b(n: np.ndarray, Y: np.ndarray, W: np.ndarray, c_max: float, coarse: bool = False):
    """Least-squares rectified power law `c - a*(n + n_l)^-b` for each row of Y (B, K): exact in
    (c, a) on a grid of (n_l, b), b refined by a parabola. Returns c, a, b, n_l.

    Used for every bootstrap replicate: one vectorized pass, no iterative solver, no start guess.
    `coarse`: every 4th b and n_l, 16x fewer grid points (the power calculation's many refits).
    """
    nls = _nl_grid(n)
    b_grid = _B_GRID
    if coarse:
        nls, b_grid = nls[::4], _B_GRID[::4]
    Q, G, K = len(nls), len(b_grid), len(n)
    L = np.log(n[None, :] + nls[:, None])  # (Q, K)
    X = np.exp(-b_grid[None, :, None] * L[:, None, :]).reshape(Q * G, K)
    flat = _grid_sse(X, Y, W, c_max)  # (B, Q*G)
    sse = flat.reshape(len(Y), Q, G)
    best = flat.argmin(1)
    q, ig = best // G, best % G
    i = np.clip(ig, 1, G - 2)
    rows = np.arange(len(Y))
    s0, s1, s2 = sse[rows, q, i - 1], sse[rows, q, i], sse[rows, q, i + 1]
    curv = s0 - 2 * s1 + s2
    step = np.where(curv > 0, 0.5 * (s0 - s2) / np.where(curv > 0, curv, 1.0), 0.0)
    logb = np.log(b_grid)
    b = np.exp(logb[i] + np.clip(step, -1.0, 1.0) * (logb[1] - logb[0]))
    b = np.clip(b, B_MIN, B_MAX)
    Lq = L[q]  # (B, K)
    c, a, sse_b = _fit_c_a(np.exp(-b[:, None] * Lq), Y, W, c_max)
    # keep the grid point where the parabola step did not help (flat or kinked profiles)
    better = sse_b <= flat.min(1) + 1e-12
    bg = b_grid[ig]
    cg, ag, _ = _fit_c_a(np.exp(-bg[:, None] * Lq), Y, W, c_max)
    return (
        np.where(better, c, cg),
        np.where(better, a, ag),
        np.where(better, b, bg),
        nls[q],
    )


def _fit_power_law(
    n: np.ndarray, y: np.ndarray, se: np.ndarray, c_max: float, rectified: bool = True
):
    """Robust fit of `y = c - a*(n + n_l)^-b` (improvement orientation); returns (c, a, b, n_l).

    n_l > 0 (Lin et al. 2024's pre-learned data size) lets a curve start flat and rise late,
    which a plain power law (n_l = 0) cannot: it would read the flat start as the plateau. Tried
    only with 5 sizes or more (`_nl_grid`), and never with `rectified=False`.

    Starts come from profiles, none needing a guess: over the plateau c (for fixed c,
    log(c - y) = log a - b log n is a linear regression) and over (n_l, b) (exact in c and a).
    The best few are refined by least squares with a soft-L1 loss on standardized residuals, so
    one wild mean counts linearly rather than quadratically.
    """
    logn = np.log(n)
    W = 1.0 / se**2
    starts: list[tuple[float, float, float, float, float]] = []

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
            starts.append((float(sse_c[j]), float(cs[j]), float(a_c[j]), float(b_c[j]), 0.0))

    nls = _nl_grid(n) if rectified else np.zeros(1)
    for nl in nls:
        X = np.exp(-_B_GRID[:, None] * np.log(n + nl)[None, :])
        c_b, a_b, sse_b = _fit_c_a(X, y[None, :], W, c_max)
        for j in np.argsort(sse_b)[:2]:
            starts.append(
                (float(sse_b[j]), float(c_b[j]), float(a_b[j]), float(_B_GRID[j]), float(nl))
            )

    best: tuple[float, float, np.ndarray, float] | None = None
    for _, c0, a0, b0, nl in sorted(starts)[:5]:
        # n_l stays at its profile value: refining it too made the solver crawl
        def resid(p: np.ndarray, nl=nl) -> np.ndarray:
            return (y - p[0] + p[1] * (n + nl) ** -p[2]) / se

        def jac(p: np.ndarray, nl=nl) -> np.ndarray:
            pw = (n + nl) ** -p[2]
            return np.stack([-1.0 / se, pw / se, -p[1] * pw * np.log(n + nl) / se], 1)

        x0 = np.array(
            [
                min(c0, c_max - 1e-9 * max(1.0, abs(c_max))) if np.isfinite(c_max) else c0,
                max(a0, 1e-12),
                min(max(b0, B_MIN * 1.0001), B_MAX * 0.9999),
            ]
        )
        try:
            fit = optimize.least_squares(
                resid,
                x0,
                jac=jac,
                bounds=([-np.inf, 0.0, B_MIN], [c_max, np.inf, B_MAX]),
                loss="soft_l1",
                f_scale=1.0,
                x_scale="jac",
            )
        except (ValueError, FloatingPointError):
            continue
        cand = (float(fit.cost), float((fit.fun**2).sum()), fit.x, nl)
        if best is None or cand[:2] < best[:2]:
            best = cand
    if best is None:  # every refinement failed: fall back to the best profile point
        _, c0, a0, b0, nl0 = min(starts)
        return c0, a0, b0, nl0
    x = best[2]
    return float(x[0]), float(x[1]), float(x[2]), float(best[3])


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
        c, a, b, nl = _fit_power_law(n[:j], y[:j], se[:j], c_max)
        al, be = _fit_log_linear(np.log2(n[:j]), y[:j], 1.0 / se[:j] ** 2)
        z_pl.append(float((y[j] - (c - a * (n[j] + nl) ** -b)) / se[j]))
        z_ll.append(float((y[j] - (al + be * np.log2(n[j]))) / se[j]))
    d = 0.5 * (sum(z**2 for z in z_ll) - sum(z**2 for z in z_pl))
    w_pl = 1.0 / (1.0 + math.exp(-min(max(d, -700.0), 700.0)))
    return ModelWeights(w_pl, 1.0 - w_pl, tuple(int(n[j]) for j in held), tuple(z_pl), tuple(z_ll))


def _holdout_weights_boot(n, Y, se, c_max) -> np.ndarray:
    """`_holdout_weights` for every bootstrap replicate (rows of Y), with the fast profile fit."""
    K = len(n)
    d = np.zeros(len(Y))
    for j in range(max(_MIN_SIZES, K - 2), K):
        c, a, b, nl = _profile_b(n[:j], Y[:, :j], 1.0 / se[:j] ** 2, c_max)
        al, be = _fit_log_linear(np.log2(n[:j]), Y[:, :j], 1.0 / se[:j] ** 2)
        z_pl = (Y[:, j] - (c - a * (n[j] + nl) ** -b)) / se[j]
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


def _bound_phrase(bound: float, curve: CurveResult | _Units) -> str:
    """ "gains < 1.8 points" / "lowers val_loss by < 0.003": an upper bound on a gain."""
    if curve.accuracy_like:
        return f"gains < {format_gain(bound, curve)}"
    verb = "lowers" if curve.direction == LOWER else "raises"
    return f"{verb} {curve.metric} by < {format_gain(bound, curve)}"


def _as_map(value, metrics: Iterable[str]) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    return {m: value for m in metrics}


# ----------------------------------------------------------------------------- one curve: data


@dataclass(frozen=True)
class _Boot:
    """Bootstrap replicates of one curve, kept for the cross-tier exchange rates."""

    grid: np.ndarray
    pred: np.ndarray  # (B, G) improvement orientation
    point: np.ndarray  # (G,)
    sign: float
    max_size: int


@dataclass(frozen=True)
class _Data:
    """One curve's observations. Per-item arrays are None on the parametric path."""

    sizes: np.ndarray  # (K,) positive sizes, ascending
    vals: tuple[np.ndarray, ...]  # per size: cell scores in seed order, metric units
    zero: float | None  # the base model's score (size 0), metric units
    items: np.ndarray | None  # (C, m) per-item scores of the trained cells, metric units
    cell_size: np.ndarray | None  # (C,) index into `sizes` of each row of `items`
    zero_items: np.ndarray | None  # (m,) the base model's item scores
    item_key: int  # checksum of the item ids: curves with the same items share one draw
    dropped_items: int  # items some cell lacks, left out of every cell


def _curve_data(
    by_size: Mapping[int, list[tuple[int, float]]],
    by_cell: Mapping[tuple[int, int], Mapping[str, float]] | None,
) -> _Data:
    if by_cell:
        common = set.intersection(*(set(v) for v in by_cell.values()))
        every = set.union(*(set(v) for v in by_cell.values()))
        ids = sorted(common)
        if not ids:
            raise ValueError("no evaluation item is shared by every cell of the curve")
        cells = sorted(k for k in by_cell if k[0] > 0)
        sizes = np.array(sorted({s for s, _ in cells}), dtype=float)
        pos = {int(s): i for i, s in enumerate(sizes)}
        items = np.array([[by_cell[c][i] for i in ids] for c in cells], dtype=float)
        cell_size = np.array([pos[s] for s, _ in cells])
        means = items.mean(1)
        vals = tuple(means[cell_size == i] for i in range(len(sizes)))
        zeros = [c for c in by_cell if c[0] == 0]
        zero_items = (
            np.mean([[by_cell[c][i] for i in ids] for c in zeros], axis=0) if zeros else None
        )
        zero = float(zero_items.mean()) if zero_items is not None else None
        key = zlib.crc32("\0".join(ids).encode())
        return _Data(sizes, vals, zero, items, cell_size, zero_items, key, len(every) - len(ids))
    sizes = np.array(sorted(s for s in by_size if s > 0), dtype=float)
    vals = tuple(np.array([v for _, v in sorted(by_size[int(s)])]) for s in sizes)
    zero = float(np.mean([v for _, v in by_size[0]])) if 0 in by_size else None
    return _Data(sizes, vals, zero, None, None, None, 0, 0)


# ----------------------------------------------------------------------------- noise, replicates


@dataclass(frozen=True)
class _Reps:
    y: np.ndarray  # (K,) observed means, improvement orientation
    y0: float | None  # the anchor's score when there is a zero-shot cell
    Y: np.ndarray  # (B, K) replicates of the means
    Y0: np.ndarray | None  # (B,) replicates of the zero-shot score, same item draws as Y
    se: np.ndarray  # (K,) standard error of each mean, for the fit weights
    eval_se: list[float | None]  # per size: the evaluation error of one cell
    noise: Noise
    warnings: tuple[str, ...]
    # the noise in parts, for the power calculation of what would settle an open call:
    dev_item: np.ndarray  # (B', K) evaluation noise of the size means (scales with m / m')
    dev0: np.ndarray | None  # (B',) the same for the zero-shot score, same item draws
    train_var: np.ndarray  # (B',) draws of one cell's training variance (scales with 1 / k)
    k: np.ndarray  # (K,) seeds per size
    rho_last: float  # correlation of the evaluation noise of the two largest sizes


def _scaled_var(var: float, dof: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of a variance estimated with `dof` degrees of freedom (scaled inverse chi-square).

    With 3 sizes of one seed (dof 0-3) a point estimate is off by 2x often; drawing it per
    replicate makes the intervals as wide as that uncertainty.
    """
    if dof <= 0 or var <= 0:
        return np.full(n, max(var, 0.0))
    return var * dof / rng.chisquare(dof, n)


def _residual_operator(n: np.ndarray, se: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    """R = I - H of the weighted power-law fit `c - a*n^-b`, linearized at the fit: the
    residuals are R @ y, so the part of their spread due to any noise e is E|R e|^2."""
    pw = n**-b
    J = np.stack([np.ones_like(n), -pw, a * pw * np.log(n)], 1)
    W = np.diag(1.0 / se**2)
    H = J @ np.linalg.pinv(J.T @ W @ J) @ J.T @ W
    return np.eye(len(n)) - H


def _training_var(d: _Data, y, cell, M, Mbar, k, item_se, floor, c_max):
    """One cell's training variance from the cells' scatter, less the part the items explain.

    The scatter of the cell means (between seeds of a size, or with one seed around the fitted
    curve) holds each cell's own evaluation noise as well as its training noise. The item
    bootstrap measures that evaluation part directly (the same linear scatter of the item-only
    deviations, averaged over replicates), so it is subtracted: counting it twice made paired
    intervals as wide as unpaired ones. With seeds and more than 3 sizes, the larger of the two
    estimates is kept: the spread between seeds, or the misfit around the curve (lack of fit).
    Returns (ss, ss_item, trace, dof, source), ss and ss_item in one cell's units.
    """
    K = len(d.sizes)
    dof = int((k - 1).sum())
    around = None
    if K > _MIN_SIZES:
        se = np.maximum(item_se, floor)
        c, a, b, _ = _fit_power_law(d.sizes, y, se, c_max, False)
        R = _residual_operator(d.sizes, se, c, a, b)
        # size means: training variance / k, so the per-cell scale is k times (R's rows weight
        # the sizes; the harmonic mean of k is exact for equal seeds)
        kh = len(k) / float((1.0 / k).sum())
        ss = kh * float(((y - (c - a * d.sizes**-b)) ** 2).sum())
        ss_item = kh * float((((Mbar - y[None, :]) @ R.T) ** 2).sum(1).mean())
        around = (ss, ss_item, float(np.trace(R @ R.T)), K - 3, "residuals")
    if dof > 0:
        onehot = (d.cell_size[:, None] == np.arange(K)[None, :]) / k[None, :]
        within = cell - y[d.cell_size]
        dev = M - cell[None, :]
        dev_within = dev - (dev @ onehot)[:, d.cell_size]
        ss_item = float((dev_within**2).sum(1).mean())
        seeds = (float((within**2).sum()), ss_item, float(dof), dof, "seeds")
        # the curve's misfit beyond the seeds' spread counts as noise too (lack of fit): a
        # power law that misses a size by more than seeds and items explain is that uncertain
        if around is not None and _var_of(around) > _var_of(seeds):
            return around
        return seeds
    if around is not None:
        return around
    return 0.0, 0.0, 1.0, 0, "none"


def _var_of(est: tuple) -> float:
    ss, ss_item, trace = est[:3]
    return max(ss - ss_item, 0.0) / trace


def _paired_reps(d: _Data, sign, eps, c_max, n_boot, rng, item_rng) -> _Reps:
    S = sign * d.items  # (C, m)
    C, m = S.shape
    K = len(d.sizes)
    k = np.array([len(v) for v in d.vals])
    counts = item_rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(float)
    M = counts @ S.T / m  # (B, C) cell means on the same resampled items
    onehot = (d.cell_size[:, None] == np.arange(K)[None, :]) / k[None, :]  # (C, K)
    Mbar = M @ onehot  # (B, K)
    cell = S.mean(1)
    y = cell @ onehot
    Y0 = counts @ (sign * d.zero_items) / m if d.zero_items is not None else None
    y0 = float(sign * d.zero) if d.zero is not None else None
    item_se = Mbar.std(0)
    floor = eps / 10  # noise far below epsilon cannot change a decision
    warnings: list[str] = []

    ss, ss_item, trace, dof, source = _training_var(d, y, cell, M, Mbar, k, item_se, floor, c_max)
    var = _var_of((ss, ss_item, trace))
    # the scatter's own uncertainty (dof) is drawn on the whole scatter; the evaluation part
    # is known from the items and comes off every draw
    vB = np.maximum(_scaled_var(ss / trace, dof, n_boot, rng) - ss_item / trace, 0.0)
    if source == "residuals":
        if int(k.max()) == 1:
            warnings.append(
                "only one training run per size: the run-to-run noise is guessed from the "
                "scatter around the curve, less the part the evaluation items explain; "
                "add `seeds: [0, 1, 2]` under `subsets` to measure it"
            )
        else:
            warnings.append(
                "the sizes scatter around the fitted curve more than the seeds do: training "
                "noise estimated from that scatter, less the part the evaluation items explain"
            )
    elif source == "none":
        warnings.append(
            "only one training run per size, and 3 sizes: the run-to-run noise is not measured, "
            "so the intervals cover the evaluation items only and are too narrow; "
            "add `seeds: [0, 1, 2]` under `subsets` to measure it"
        )
    if 0 < dof < 3:
        # a variance on 1-2 degrees of freedom has a very long upper tail (Cauchy-like at 1)
        warnings.append(
            f"training noise rests on {dof} degree{'s' if dof > 1 else ''} of freedom, so the "
            "intervals are very wide; a second seed or more sizes would narrow them"
        )
    if bool(np.all(k >= 4)):
        # enough seeds to resample them: two levels, items (shared draw) then seeds per size
        Y = np.empty((n_boot, K))
        rows = np.arange(n_boot)[:, None]
        for i in range(K):
            cols = np.nonzero(d.cell_size == i)[0]
            pick = cols[rng.integers(0, len(cols), size=(n_boot, len(cols)))]
            Y[:, i] = M[rows, pick].mean(1)
        kind = "items+seeds"
    else:
        Y = Mbar + np.sqrt(vB[:, None] / k[None, :]) * rng.standard_normal((n_boot, K))
        kind = "items+seeds" if source == "seeds" else f"items+{source}" if dof else "items"
    nb = min(n_boot, 200)  # replicates kept for the power calculation
    se = np.maximum(Y.std(0), floor)
    noise = Noise(kind, m, int(k.min()), math.sqrt(var) if source != "none" else None, source, None)
    if d.dropped_items:
        warnings.append(
            f"{d.dropped_items} evaluation item(s) missing from some cells were left out of all"
        )
    dev = Mbar[:nb] - y[None, :]
    rho = (
        float(np.corrcoef(dev[:, -1], dev[:, -2])[0, 1]) if K > 1 and dev[:, -1].std() > 0 else 1.0
    )
    return _Reps(
        y,
        y0,
        Y,
        Y0,
        se,
        [float(s) for s in item_se],
        noise,
        tuple(warnings),
        dev,
        (Y0[:nb] - y0) if Y0 is not None else None,
        vB[:nb],
        k,
        rho if math.isfinite(rho) else 1.0,
    )


def _parametric_reps(
    d: _Data, sign, eps, c_max, accuracy_like, eval_size, metric, n_boot, rng
) -> _Reps:
    """Each size's mean as independent noise: seed spread, at least p(1-p)/m and epsilon/10."""
    vals, sizes = d.vals, d.sizes
    K = len(sizes)
    means = np.array([v.mean() for v in vals])
    k = np.array([len(v) for v in vals])
    y = sign * means
    warnings: list[str] = []
    seed_var = np.array([v.var(ddof=1) if len(v) > 1 else np.nan for v in vals])
    dof = np.maximum(k - 1, 0)
    source = "seeds"
    if dof.sum() > 0:
        pooled = float(np.nansum(seed_var * dof) / dof.sum())
        # With 3 seeds a per-size variance has 2 d.o.f. and is off by more than 2x about half the
        # time (P = 0.53; its sd one time in 4: benchmarks/results/figures/seed_variance_2dof.txt);
        # shrinking toward the pooled variance (4 pseudo-d.o.f.) keeps one lucky size from
        # getting a spuriously tight interval.
        shrunk = (np.nan_to_num(seed_var) * dof + 4.0 * pooled) / (dof + 4.0)
    else:
        shrunk = np.full(K, np.nan)
    eval_var = np.zeros(K)
    eval_se: list[float | None] = [None] * K
    if eval_size and not accuracy_like:
        warnings.append(
            f"eval_size ignored for {metric}: p(1-p)/m needs a higher-is-better score in [0, 1]"
        )
    if eval_size and accuracy_like:
        p = np.clip(means, 0.0, 1.0)
        eval_var = p * (1 - p) / eval_size
        eval_se = [float(math.sqrt(v)) for v in eval_var]
    floor_var = (eps / 10) ** 2
    if np.all(np.isnan(shrunk)):
        if K > _MIN_SIZES:
            se0 = np.sqrt(np.maximum(eval_var, floor_var))
            c, a, b, _ = _fit_power_law(sizes, y, se0, c_max, False)
            resid = y - (c - a * sizes**-b)
            shrunk = np.full(K, float((resid**2).sum() / (K - 3)))
            source = "residuals"
            warnings.append(
                "only one training run per size: the run-to-run noise is guessed from the "
                "scatter around the curve; add `seeds: [0, 1, 2]` under `subsets` to measure it"
            )
        else:
            shrunk = np.zeros(K)
            source = "none"
            if not eval_size:
                warnings.append(
                    "only one training run per size and no count of evaluation items: the "
                    "intervals are too narrow to trust; add `seeds: [0, 1, 2]` under `subsets`, "
                    "or give the number of items each score averages (`loop curve --eval-size`)"
                )
    cell_var = np.maximum.reduce([shrunk, eval_var, np.full(K, floor_var)])
    se = np.sqrt(cell_var / k)
    if bool(np.any(k < 4)):
        Y = y[None, :] + se[None, :] * rng.standard_normal((n_boot, K))
        kind = "parametric"
    else:
        cols = []
        for i, v in enumerate(vals):
            pick = rng.integers(0, len(v), size=(n_boot, len(v)))
            col = sign * v[pick].mean(1)
            extra = (
                max(float(cell_var[i]) - float(seed_var[i]), 0.0) / k[i]
            )  # eval noise seeds miss
            cols.append(col + math.sqrt(extra) * rng.standard_normal(n_boot))
        Y = np.stack(cols, 1)
        kind = "seeds"
    y0 = Y0 = None
    if d.zero is not None:
        y0 = float(sign * d.zero)
        v0 = floor_var
        if eval_size and accuracy_like:
            v0 = max(v0, min(max(d.zero, 0.0), 1.0) * (1 - min(max(d.zero, 0.0), 1.0)) / eval_size)
        Y0 = y0 + math.sqrt(v0) * rng.standard_normal(n_boot)
    nb = min(n_boot, 200)  # replicates kept for the power calculation
    ev = np.maximum(eval_var, floor_var)
    tv = np.maximum(cell_var - ev, 0.0)
    dev = np.sqrt(ev / k)[None, :] * rng.standard_normal((nb, K))  # sizes independent
    dev0 = None if Y0 is None else Y0[:nb] - y0
    train_sd = None if source == "none" else float(math.sqrt(np.mean(shrunk)))
    noise = Noise(kind, int(eval_size) if eval_size else None, int(k.min()), train_sd, source, None)
    return _Reps(
        y,
        y0,
        Y,
        Y0,
        se,
        eval_se,
        noise,
        tuple(warnings),
        dev,
        dev0,
        np.full(nb, float(tv.mean())),
        k,
        0.0,
    )


# ----------------------------------------------------------------------------- fit and band


def _predict(c, a, b, nl, al, be, w, n: np.ndarray, c_max: float):
    """Model-averaged score, Δ₂ and gain per 1k at sizes n, for scalars or per-replicate arrays."""
    c, a, b, nl, al, be, w = (
        np.asarray(t, dtype=float)[..., None] for t in (c, a, b, nl, al, be, w)
    )
    pw = np.exp(-b * np.log(n + nl))
    pw2 = np.exp(-b * np.log(2 * n + nl))
    ll = al + be * np.log2(n)
    # a straight line in log n would walk through a bounded score's ceiling (accuracy 1)
    ll_n, ll_2n = np.minimum(ll, c_max), np.minimum(ll + be, c_max)
    ll_slope = np.where(ll < c_max, be / (n * math.log(2)), 0.0)
    pred = w * (c - a * pw) + (1 - w) * ll_n
    d2 = w * a * (pw - pw2) + (1 - w) * (ll_2n - ll_n)
    g1k = 1000 * (w * a * b * pw / (n + nl) + (1 - w) * ll_slope)
    return pred, d2, g1k


@dataclass(frozen=True)
class _Fit:
    point: tuple[float, ...]  # c, a, b, n_l, alpha, beta, w
    weights: ModelWeights
    grid: np.ndarray
    at: np.ndarray  # positions of the observed sizes in the grid
    pred_p: np.ndarray
    d2_p: np.ndarray
    g1k_p: np.ndarray
    predB: np.ndarray
    d2B: np.ndarray
    g1kB: np.ndarray
    cB: np.ndarray


def _fit_band(sizes: np.ndarray, y: np.ndarray, se: np.ndarray, Y: np.ndarray, c_max) -> _Fit:
    W = 1.0 / se**2
    log2n = np.log2(sizes)
    c, a, b, nl = _fit_power_law(sizes, y, se, c_max)
    al, be = _fit_log_linear(log2n, y, W)
    weights = _holdout_weights(sizes, y, se, c_max)
    w = weights.power_law
    # refit every replicate; weights re-derived too, so intervals carry the model choice
    cB, aB, bB, nlB = _profile_b(sizes, Y, W, c_max)
    alB, beB = _fit_log_linear(log2n, Y, W)
    wB = _holdout_weights_boot(sizes, Y, se, c_max) if weights.held_out else np.full(len(Y), w)
    weights = replace(weights, power_law_boot_mean=float(wB.mean()))
    grid = np.unique(np.concatenate([np.geomspace(sizes[0], 2 * sizes[-1], _GRID_POINTS), sizes]))
    pred_p, d2_p, g1k_p = _predict(c, a, b, nl, al, be, w, grid, c_max)
    predB, d2B, g1kB = _predict(cB, aB, bB, nlB, alB, beB, wB, grid, c_max)
    at = np.searchsorted(grid, sizes)
    return _Fit(
        (c, a, b, nl, al, be, w), weights, grid, at, pred_p, d2_p, g1k_p, predB, d2B, g1kB, cB
    )


def _d2_max_and_rise(sizes, Y, W, c_max, w, Y0, at: float | None = None):
    """Δ₂ at the largest size (or at `at`) and the rise there over the anchor, per replicate
    (coarse refit, fixed w)."""
    cB, aB, bB, nlB = _profile_b(sizes, Y, W, c_max, coarse=True)
    alB, beB = _fit_log_linear(np.log2(sizes), Y, W)
    wB = np.full(len(Y), w)
    n = np.array([sizes[0], sizes[-1] if at is None else at], dtype=float)
    pred, d2, _ = _predict(cB, aB, bB, nlB, alB, beB, wB, n, c_max)
    base = pred[:, 0] if Y0 is None else Y0
    return d2[:, 1], pred[:, 1] - base


# ----------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Evidence:
    """What a decision reads, in improvement units (positive = better)."""

    n: tuple[float, ...]  # sizes, ascending (the fit's grid, or just the sizes run)
    delta2_hi: tuple[float, ...]  # one-sided `confidence` upper bound of Δ₂ at each n
    delta2_lo: tuple[float, ...]  # one-sided lower bound
    max_size: int  # the largest size run; n beyond it are extrapolations
    rise: float  # the fitted score at max_size minus the anchor (zero-shot, else first size)
    rise_lo: float  # its one-sided lower bound
    epsilon: float
    n_sizes: int  # distinct sizes run


@dataclass(frozen=True)
class Verdict:
    decision: str
    why: str
    n_star: int | None  # saturated: the smallest n where the upper bound of Δ₂ is below ε


def decide(ev: Evidence) -> Verdict:
    """The decision rule, on the fitted curve's interval (no per-size gate).

    - saturated: the upper bound of Δ₂ is below ε at some size run, and the curve has risen
      above its anchor by more than ε (lower bound): "no gain so far" is not saturation;
    - more data pays: the lower bound of Δ₂ at the largest size is above ε;
    - otherwise inconclusive, with why: few sizes, not learning yet, the crossing lies past the
      largest size, or the interval holds ε.
    """
    if ev.n_sizes < _MIN_SIZES:
        return Verdict(INCONCLUSIVE, FEW_SIZES, None)
    n = np.asarray(ev.n, dtype=float)
    hi = np.asarray(ev.delta2_hi, dtype=float)
    lo = np.asarray(ev.delta2_lo, dtype=float)
    i_max = int(np.argmin(np.abs(n - ev.max_size)))
    eps = ev.epsilon
    if lo[i_max] > eps:
        return Verdict(MORE_DATA_PAYS, STILL_GAINING, None)
    if not ev.rise_lo > eps:
        return Verdict(INCONCLUSIVE, NOT_LEARNING if ev.rise < eps else TOO_NOISY, None)
    inside = n <= ev.max_size * (1 + 1e-9)
    # Δ₂ must stay below ε from n* up to the largest size: a curve that starts flat and rises
    # later has its smallest Δ₂ at the start
    below = np.nonzero(_stays_below(hi, eps, inside))[0]
    if len(below):
        return Verdict(SATURATED, FLATTENED, int(round(n[below[0]])))
    if np.any((hi < eps) & ~inside):
        return Verdict(INCONCLUSIVE, NEXT_SIZE, None)
    return Verdict(INCONCLUSIVE, TOO_NOISY, None)


def _stays_below(x: np.ndarray, eps: float, inside: np.ndarray | None = None) -> np.ndarray:
    """True at positions (last axis) from which x stays below eps up to the last `inside` one."""
    ok = x < eps
    if inside is not None:
        ok = ok | ~inside  # sizes past the largest run do not count
    suffix = np.flip(np.logical_and.accumulate(np.flip(ok, -1), axis=-1), -1)
    return suffix if inside is None else suffix & inside


def _crossing_ci(grid, d2B, eps, confidence, limit):
    """n* per replicate (first grid n from which Δ₂ stays < ε) -> interval; None past `limit`."""
    hit = _stays_below(d2B, eps)
    crossing = np.where(hit.any(1), grid[hit.argmax(1)], np.inf)
    lo, hi = _interval(crossing, confidence)
    lo_i = int(round(lo)) if np.isfinite(lo) else None
    hi_i = int(round(hi)) if np.isfinite(hi) and hi <= limit else None
    return (lo_i, hi_i)


def _graded(fit: _Fit, q_hi: np.ndarray, eps, confidence, learning, max_n):
    """certified ε (smallest bound on Δ₂ at a size run) and n* at a few ε, when learning."""
    if not learning:
        return None, None, ()
    inside = fit.grid <= max_n * (1 + 1e-9)
    # the bound that holds from each size on, up to the largest: max of q_hi over [n, max]
    tail = np.where(inside, q_hi, -np.inf)
    suffix = np.flip(np.maximum.accumulate(np.flip(tail)))
    suffix = np.where(inside, suffix, np.inf)
    j = int(np.argmin(suffix))
    cert, at = float(suffix[j]), int(round(fit.grid[j]))
    rows = []
    for f in _EPS_STEPS:
        e = f * eps
        ok = np.nonzero(suffix < e)[0]
        if len(ok):
            n = int(round(fit.grid[ok[0]]))
            rows.append(NStarAt(e, n, _crossing_ci(fit.grid, fit.d2B, e, confidence, 2 * max_n)))
        else:
            rows.append(NStarAt(e, None, None))
    return max(cert, 0.0), at, tuple(rows)


# ----------------------------------------------------------------------------- what would settle it


def _settle(
    why: str,
    d: _Data,
    reps: _Reps,
    fit: _Fit | None,
    eps: float,
    confidence: float,
    c_max: float,
    max_items: int | None,
    units,
    rng: np.random.Generator,
    certified: str | None,
) -> tuple[Settle, float | None]:
    """The cheapest evidence (more items, more seeds, the next size, or a mix) that a power
    calculation on the fitted noise expects to settle the call with probability `_POWER`, and
    the share of the deciding statistic's variance due to items. When nothing within reach
    (the validation set, 16 seeds, one doubling) is expected to, a Settle of kind "none" says
    so, with what the data certifies instead."""
    sizes = d.sizes
    k = reps.k
    m = reps.noise.items
    nxt = int(2 * sizes[-1])
    if fit is None:  # fewer than 3 sizes: nothing to calculate on, a third size is needed first
        cost = float(k.max()) * (nxt * TRAIN_PASSES + (m or 0))
        text = f"run n={nxt:,}: a curve needs at least {_MIN_SIZES} sizes before it can decide"
        return Settle("size", None, None, nxt, cost, False, text), None
    calc = _Power(d, reps, fit, eps, confidence, c_max, rng)
    share = calc.item_share()
    kmin = int(k.min())
    cap_m = (max_items if max_items is not None else 64 * m) if m else None
    m_opts: list[int | None] = [m]
    if m and cap_m and cap_m > m:
        grid = {min(int(_round_sig(m * 2 ** (j / 2))), cap_m) for j in range(1, 13)}
        m_opts += sorted(x for x in grid if x > m)
    k_opts = sorted(
        x for x in {kmin, kmin + 1, kmin + 2, 2 * kmin, 4 * kmin, 8, 16} if kmin <= x <= _MAX_SEEDS
    )
    cells = int(k.sum()) + (d.zero is not None)

    def cost_of(mm, kk, size) -> float:
        cost = float(((mm or 0) - (m or 0)) * cells)
        cost += float(
            sum(
                max(kk - int(ks), 0) * (s * TRAIN_PASSES + (mm or 0))
                for s, ks in zip(sizes, k, strict=True)
            )
        )
        return cost + (kk * (size * TRAIN_PASSES + (mm or 0)) if size is not None else 0.0)

    # per (seeds, size): the fewest items that settle it, found by bisection (the chance rises
    # with the items); a group whose largest item count does not settle it is skipped
    best_p, found = 0.0, []
    for kk in k_opts:
        for size in (None, nxt):
            lo, hi = 0, len(m_opts) - 1
            if kk == kmin and size is None:
                lo = 1
                if hi < lo:
                    continue
            p_hi = calc.p_settle(m_opts[hi], kk, size)
            best_p = max(best_p, p_hi)
            if p_hi < _POWER:
                continue
            ps = {hi: p_hi}
            while lo < hi:
                mid = (lo + hi) // 2
                ps[mid] = calc.p_settle(m_opts[mid], kk, size)
                if ps[mid] >= _POWER:
                    hi = mid
                else:
                    lo = mid + 1
            mm = m_opts[hi]
            found.append((cost_of(mm, kk, size), mm, kk, size, ps[hi]))
    if found:
        cost, mm, kk, size, p = min(found, key=lambda o: o[0])
        parts, kind = [], []
        if mm != m:
            parts.append(f"score every cell on {mm:,} evaluation items instead of {m:,}")
            kind.append("items")
        if kk != kmin:
            extra = kk - kmin
            parts.append(f"add {extra} seed{'s' if extra > 1 else ''} at every size ({kk} in all)")
            kind.append("seeds")
        if size is not None:
            parts.append(f"run n={size:,}")
            kind.append("size")
        text = (
            " and ".join(parts)
            + f" (~{_fmt_n(cost)} example passes; {100 * p:.0f}% likely to settle it)"
        )
        settle = Settle(
            "+".join(kind),
            mm if mm != m else None,
            kk if kk != kmin else None,
            size,
            cost,
            True,
            text,
            round(p, 3),
        )
        return settle, share
    reach = [f"{cap_m:,} items"] if cap_m and cap_m > (m or 0) else []
    reach += [f"{_MAX_SEEDS} seeds", f"n={nxt:,}"]
    if why == NOT_LEARNING:
        text = (
            "nothing within reach is expected to ("
            + ", ".join(reach)
            + f": at most {100 * best_p:.0f}% likely); the curve has not left its anchor, so "
            "the levers are a larger size, the learning rate or training steps, a bigger model"
        )
    else:
        text = (
            "nothing within reach is expected to ("
            + ", ".join(reach)
            + f": at most {100 * best_p:.0f}% likely)"
        )
        if certified:
            text += f"; what the data certifies: {certified}"
    return Settle("none", None, None, None, None, False, text, round(best_p, 3)), share


def _certified_words(cert, cert_at, rise_B, anchor, confidence, units) -> str | None:
    """What the data certify when nothing settles the call: the graded bound on Δ₂, or else
    an upper bound on the gain over the anchor."""
    conf = f"{100 * confidence:.0f}%"
    if cert is not None and cert_at is not None:
        return f"doubling past {cert_at:,} {_bound_phrase(cert, units)} ({conf})"
    if rise_B is not None:
        hi = float(_quantiles(rise_B, [confidence])[0])
        return f"the gain over the {anchor} is below {format_gain(hi, units)} ({conf})"
    return None


class _Power:
    """The power calculation: how the deciding statistics would spread under another design.

    The noise comes in parts (`_Reps`): evaluation noise scales with m / m', training noise
    with 1 / k'; a new size gets the evaluation noise of the largest size, correlated with it
    as the two largest sizes are, and fresh training noise. Each design's replicates are refit
    (the fast profile fit, the current model weight) and the spread of Δ₂ at the largest size
    and of the rise is scaled by how much wider the full bootstrap is than this fast refit on
    the current design (model choice). The truth is not taken to be the fitted curve: it is as
    uncertain as the data leave it (sd_now), so the new estimate spreads by sd_now and the new
    design's sd together, and the call settles when it clears ε by z new standard errors:
    P = Φ((Δ₂ − ε − z·sd) / √(sd_now² + sd²)) for "more data pays", plus the same the other way
    times the same for the rise for "saturated" (assurance, not power at the point estimate,
    which over-promised in an earlier run of benchmarks/decisions.py that is not stored; with
    assurance the stored run promised 80.8% and delivered 69.2%: benchmarks/results/decisions.txt).
    """

    def __init__(self, d: _Data, reps: _Reps, fit: _Fit, eps, confidence, c_max, rng):
        self.d, self.reps, self.fit, self.eps, self.c_max = d, reps, fit, eps, c_max
        self.z = float(stats.norm.ppf(confidence))
        nb = len(reps.dev_item)
        # fresh training noise, the same draw for every design compared
        self.e_train = rng.standard_normal((nb, len(d.sizes) + 1))
        self.perm = rng.permutation(nb)
        self.w = fit.point[6]
        i_max, i0 = int(fit.at[-1]), int(fit.at[0])
        self.anchor_p = reps.y0 if reps.y0 is not None else float(fit.pred_p[i0])
        anchor_B = reps.Y0 if reps.Y0 is not None else fit.predB[:, i0]
        self.d2_p = float(fit.d2_p[i_max])
        self.rise_p = float(fit.pred_p[i_max] - self.anchor_p)
        sd_d, sd_r = self._sd(reps.noise.items, int(reps.k.min()), None)
        self.f_d = _robust_sd(fit.d2B[:, i_max]) / sd_d if sd_d > 0 else 1.0
        self.f_r = _robust_sd(fit.predB[:, i_max] - anchor_B) / sd_r if sd_r > 0 else 1.0
        self.f_d, self.f_r = max(self.f_d, 1.0), max(self.f_r, 1.0)
        self.now_d = _robust_sd(fit.d2B[:, i_max])
        self.now_r = _robust_sd(fit.predB[:, i_max] - anchor_B)
        self._cache: dict[int, tuple[float, float, float, float]] = {}

    def _reps(self, m_new, k_new, size, item=1.0, train=1.0):
        reps, d = self.reps, self.d
        m = reps.noise.items
        si = item * (math.sqrt(m / m_new) if m and m_new else 1.0)
        kk = np.maximum(reps.k, k_new).astype(float)
        tsd = train * np.sqrt(reps.train_var)[:, None]
        Y = reps.y[None, :] + reps.dev_item * si + tsd / np.sqrt(kk)[None, :] * self.e_train[:, :-1]
        sizes = d.sizes
        if size is not None:
            y_new = float(_predict(*self.fit.point, np.array([float(size)]), self.c_max)[0][0])
            last = reps.dev_item[:, -1]
            rho = min(max(reps.rho_last, 0.0), 1.0)
            dev = rho * last + math.sqrt(1 - rho**2) * last[self.perm]
            col = y_new + dev * si + tsd[:, 0] / math.sqrt(k_new) * self.e_train[:, -1]
            Y = np.concatenate([Y, col[:, None]], 1)
            sizes = np.append(sizes, float(size))
        Y0 = None
        if reps.y0 is not None:
            Y0 = np.full(len(Y), reps.y0) if reps.dev0 is None else reps.y0 + reps.dev0 * si
        return sizes, Y, Y0

    def _sd(self, m_new, k_new, size, item=1.0, train=1.0):
        sizes, Y, Y0 = self._reps(m_new, k_new, size, item, train)
        se = np.maximum(Y.std(0), self.eps / 10)
        d2, rise = _d2_max_and_rise(sizes, Y, 1.0 / se**2, self.c_max, self.w, Y0)
        return _robust_sd(d2), _robust_sd(rise)

    def item_share(self) -> float | None:
        m, k = self.reps.noise.items, int(self.reps.k.min())
        di, ri = self._sd(m, k, None, train=0.0)
        dt, rt = self._sd(m, k, None, item=0.0)
        rise_open = not self.rise_p - self.z * self.f_r * math.hypot(ri, rt) > self.eps
        vi, vt = (ri**2, rt**2) if rise_open else (di**2, dt**2)
        return float(vi / (vi + vt)) if vi + vt > 0 else None

    def p_settle(self, m_new, k_new, size) -> float:
        """The chance that the new design settles the call, averaged over what the data say
        the truth may be (assurance): the new estimate spreads by the current uncertainty and
        the new design's noise together, and must clear ε by z new standard errors."""
        sd_d, sd_r = self._sd(m_new, k_new, size)
        sd_d, sd_r = max(sd_d * self.f_d, 1e-12), max(sd_r * self.f_r, 1e-12)
        d2_p, rise_p, now_d, now_r = self.d2_p, self.rise_p, self.now_d, self.now_r
        if size is not None:
            d2_p, rise_p, now_d, now_r = self._at(size)
        Phi, z, eps = stats.norm.cdf, self.z, self.eps
        spread_d, spread_r = math.hypot(now_d, sd_d), math.hypot(now_r, sd_r)
        pays = Phi((d2_p - eps - z * sd_d) / spread_d)
        sat = Phi((eps - d2_p - z * sd_d) / spread_d) * Phi((rise_p - eps - z * sd_r) / spread_r)
        return float(pays + sat)

    def _at(self, size: int):
        """Point Δ₂ and rise at a new size, and how uncertain the data leave them there."""
        if size not in self._cache:
            pred, d2, _ = _predict(*self.fit.point, np.array([float(size)]), self.c_max)
            reps = self.reps
            Y = (
                reps.y[None, :]
                + reps.dev_item
                + np.sqrt(reps.train_var / reps.k.min())[:, None] * self.e_train[:, :-1]
            )
            Y0 = (
                None
                if reps.y0 is None
                else (np.full(len(Y), reps.y0) if reps.dev0 is None else reps.y0 + reps.dev0)
            )
            se = np.maximum(Y.std(0), self.eps / 10)
            dB, rB = _d2_max_and_rise(self.d.sizes, Y, 1.0 / se**2, self.c_max, self.w, Y0, size)
            self._cache[size] = (
                float(d2[0]),
                float(pred[0] - self.anchor_p),
                _robust_sd(dB) * self.f_d,
                _robust_sd(rB) * self.f_r,
            )
        return self._cache[size]


def _robust_sd(x: np.ndarray) -> float:
    """Half the central 68% range: an sd that a few wild refits do not blow up."""
    q16, q84 = _quantiles(x, [0.1587, 0.8413])
    return float((q84 - q16) / 2)


# ----------------------------------------------------------------------------- wording


@dataclass(frozen=True)
class _Facts:
    """The numbers the words are made of (improvement units unless noted)."""

    label: str
    verdict: Verdict
    epsilon: float
    confidence: float
    max_size: int
    n_sizes: int
    d2_max: float | None
    d2_ci: tuple[float, float] | None
    d2_at_n_star: float | None
    n_star_ci: tuple[int | None, int | None] | None
    anchor: str
    anchor_value: float | None  # metric units
    top_value: float | None  # fitted (or mean) score at the largest size, metric units
    rise: float | None
    rise_lo: float | None
    certified: float | None
    certified_at: int | None
    settle: Settle | None


def _words(f: _Facts, units: _Units) -> tuple[str, str]:
    """reason and summary for one curve, from its facts."""

    def g(x: float) -> str:
        return format_gain(x, units)

    conf = f"{100 * f.confidence:.0f}%"
    label, eps, max_n, two_max = f.label, f.epsilon, f.max_size, 2 * f.max_size
    v = f.verdict
    d2_txt = (
        f"{g(f.d2_max)} ({conf} CI {_ci_text(*f.d2_ci, units)})" if f.d2_ci is not None else "?"
    )
    rise_txt = ""
    if f.rise is not None and f.anchor_value is not None:
        rise_txt = (
            f"{f.anchor} {f.anchor_value:.4g} -> {f.top_value:.4g} at {max_n:,} "
            f"(gain {g(f.rise)}, {conf} lower bound {g(f.rise_lo)})"
        )
    cert = ""
    if f.certified is not None and f.certified_at is not None:
        cert = f"; doubling past {f.certified_at:,} {_bound_phrase(f.certified, units)} ({conf})"
    settle = f"; to settle it: {f.settle.text}" if f.settle is not None else ""
    if cert and cert[2:] in settle:  # the advice already quotes the certified bound
        cert = ""
    if v.why == FEW_SIZES:
        s = "s" if f.n_sizes != 1 else ""
        reason = (
            f"only {f.n_sizes} distinct size{s}; a saturating curve needs at least {_MIN_SIZES}"
        )
        return reason, f"{label}: inconclusive: {reason}; run {two_max:,} next."
    if v.decision == SATURATED:
        lo, hi = f.n_star_ci or (None, None)
        hi_txt = _fmt_n(hi) if hi is not None else f">{two_max:,}"
        reason = (
            f"P(delta2 < epsilon {g(eps)}) reaches {conf} at n={v.n_star:,}, within the sizes "
            f"run (largest {max_n:,}), after a rise over the {rise_txt}"
        )
        summary = (
            f"{label}: saturated at ~{_fmt_n(v.n_star)} examples ({conf} CI "
            f"{_fmt_n(lo)}–{hi_txt}); doubling to {_fmt_n(2 * v.n_star)} "
            f"{_gain_phrase(f.d2_at_n_star, units)}{cert}."
        )
        return reason, summary
    if v.decision == MORE_DATA_PAYS:
        reason = (
            f"doubling the largest size ({max_n:,}) gains {d2_txt}, above epsilon ({g(eps)}) "
            f"with {conf} confidence"
        )
        summary = (
            f"{label}: more data still pays: doubling {max_n:,} to {two_max:,} "
            f"{_gain_phrase(f.d2_max, units)} ({conf} CI {_ci_text(*f.d2_ci, units)}); "
            f"run {two_max:,} next."
        )
        return reason, summary
    if v.why == NOT_LEARNING:
        reason = (
            f"not learning yet: no gain over the {rise_txt} beyond epsilon ({g(eps)}); a flat "
            "curve at its starting level is the phase before learning, not saturation"
        )
        summary = (
            f"{label}: not learning yet at these sizes: {rise_txt}. Levers: a larger size "
            f"(n={two_max:,}), the learning rate or training steps, a bigger model."
        )
        return reason, summary
    if v.why == NEXT_SIZE:
        reason = (
            f"delta2 at n={max_n:,} is {d2_txt}: it falls below epsilon ({g(eps)}) only past the "
            f"largest size run{settle}"
        )
        return reason, f"{label}: inconclusive: {reason}{cert}."
    lean = "rise over the anchor" if f.rise_lo is not None and not f.rise_lo > eps else "delta2"
    what = (
        f"the {rise_txt} is not yet clear of epsilon ({g(eps)})"
        if lean != "delta2"
        else f"delta2 at n={max_n:,} is {d2_txt}, an interval that holds epsilon ({g(eps)})"
    )
    reason = f"too noisy: {what}{settle}"
    return reason, f"{label}: inconclusive: {reason}{cert}."


# ----------------------------------------------------------------------------- diagnostics


def _diagnostics(d: _Data, reps: _Reps, fit: _Fit, sign, c_max, eps, confidence, metric, units):
    """Warnings, the trend and the plateau: what the reader should know beyond the decision."""
    warnings: list[str] = []
    c, a, b, nl, _, _, w = fit.point
    sizes, y, se = d.sizes, reps.y, reps.se
    means = sign * y
    at_bound = np.isfinite(c_max) and abs(c - c_max) < 1e-6 * max(1.0, abs(c_max))
    # a plateau pinned to the metric's bound (accuracy 1, loss 0) is an assumption, not an estimate
    plateau = None if at_bound else float(sign * c)
    plateau_ci = (
        None if at_bound else tuple(sorted(float(sign * q) for q in _interval(fit.cB, confidence)))
    )
    flat = a * ((sizes[0] + nl) ** -b - (sizes[-1] + nl) ** -b) < eps / 10  # no rise
    b_floor = b <= B_MIN * 1.05 and not flat
    if b_floor or at_bound or w < 0.5:
        why = []
        if at_bound:
            why.append(f"at its bound {sign * c_max:g}")
        if b_floor:
            why.append(f"exponent at its floor {B_MIN}")
        if w < 0.5:
            why.append(f"power law weighted only {w:.2f}")
        warnings.append(
            "plateau weakly identified (" + "; ".join(why) + "): the level the curve tends to "
            "is a guess; run a larger size before quoting it"
        )
    for i in range(1, len(sizes)):
        drop = y[i - 1] - y[i]
        comb = math.sqrt(se[i] ** 2 + se[i - 1] ** 2)
        if drop > 2 * comb:
            warnings.append(
                f"non-monotone: mean at n={int(sizes[i]):,} ({means[i]:.4g}) is worse than at "
                f"n={int(sizes[i - 1]):,} ({means[i - 1]:.4g}) by {format_gain(drop, units)}, "
                f"more than 2x the combined SE ({format_gain(comb, units)})"
            )
    noise = float(np.median(se))
    if reps.noise.bootstrap in ("parametric", "seeds") and noise > eps:
        warnings.append(
            f"the noise of one size's score ({format_gain(noise, units)}) is larger than the "
            f"gain asked for (ε = {format_gain(eps, units)}); give per-item scores (columns "
            "item,score, as `loop export --items` writes) so the sizes are compared on the same "
            "items, or add seeds"
        )
    i0, i_max = int(fit.at[0]), int(fit.at[-1])
    trend = _trend(fit.predB[:, i_max], fit.predB[:, i0], confidence)
    return warnings, trend, plateau, plateau_ci


def _trend(top: np.ndarray, base: np.ndarray, confidence: float) -> str:
    """improving | worsening | flat: the score at the largest size against the smallest one,
    replicate by replicate (improvement units). Improving when it is better in at least
    `confidence` of the replicates, worsening when worse in as many, flat otherwise. Ties count
    half each way, so a curve that does not move at all (every replicate equal) is flat."""
    p_up = float((top > base).mean() + 0.5 * (top == base).mean())
    if p_up >= confidence:
        return "improving"
    return "worsening" if p_up <= 1 - confidence else "flat"


def _worsening_warning(metric: str, direction: str) -> str:
    worse = "rises" if direction == LOWER else "falls"
    return (
        f"{metric} {worse} as the training set grows: more of this data makes the model worse "
        "on it; check the tier's data (labels, format) and the learning rate before adding more"
    )


# ----------------------------------------------------------------------------- one curve


def _size_rows(d, reps, z, confidence, fit: _Fit | None, d2_ci=None, p_below=None, sign=1.0):
    rows = []
    nan2 = (float("nan"), float("nan"))
    for i, s in enumerate(d.sizes):
        v = d.vals[i]
        mean, se = float(v.mean()), float(reps.se[i])
        if fit is not None:
            j = int(fit.at[i])
            g_ci = _interval(fit.g1kB[:, j], confidence)
            extra = dict(
                fitted=float(sign * fit.pred_p[j]),
                gain_per_1k=float(fit.g1k_p[j]),
                gain_per_1k_ci=(float(g_ci[0]), float(g_ci[1])),
                delta2=float(fit.d2_p[j]),
                delta2_ci=(float(d2_ci[0][j]), float(d2_ci[1][j])),
                p_delta2_below_eps=float(p_below[j]),
            )
        else:
            extra = dict(
                fitted=float("nan"),
                gain_per_1k=float("nan"),
                gain_per_1k_ci=nan2,
                delta2=float("nan"),
                delta2_ci=nan2,
                p_delta2_below_eps=float("nan"),
            )
        rows.append(
            SizeStat(
                size=int(s),
                n_seeds=len(v),
                mean=mean,
                std=float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                se=se,
                eval_se=reps.eval_se[i],
                mean_ci=(mean - z * se, mean + z * se),
                values=tuple(float(x) for x in v),
                **extra,
            )
        )
    return tuple(rows)


def _analyze_curve(
    tier: str,
    metric: str,
    d: _Data,
    direction: str,
    epsilon: float | None,
    confidence: float,
    eval_size: int | None,
    max_items: int | None,
    n_boot: int,
    rng: np.random.Generator,
    item_rng: np.random.Generator,
    chance: float | None = None,
) -> tuple[CurveResult, _Boot | None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    sign = 1.0 if direction == HIGHER else -1.0
    all_vals = np.concatenate([*d.vals, [d.zero] if d.zero is not None else []])
    in_unit = bool(np.all((all_vals >= 0) & (all_vals <= 1)))
    accuracy_like = direction == HIGHER and in_unit
    if epsilon is None:
        # 1 point for accuracy-like metrics; 1% of the value at the largest size otherwise
        epsilon = 0.01 if accuracy_like else 0.01 * abs(float(d.vals[-1].mean()))
        if epsilon == 0:
            epsilon = 1e-3
    eps = float(epsilon)
    c_max = np.inf
    if accuracy_like:
        c_max = 1.0  # accuracy cannot exceed 1
    elif direction == LOWER and np.all(all_vals >= 0):
        c_max = 0.0  # loss-like plateau >= 0, i.e. -plateau <= 0
    units = _Units(accuracy_like, direction, metric)
    label = f"tier {tier} ({metric})"
    z = float(stats.norm.ppf((1 + confidence) / 2))

    # --- noise and replicates
    if d.items is not None:
        reps = _paired_reps(d, sign, eps, c_max, n_boot, rng, item_rng)
    else:
        reps = _parametric_reps(d, sign, eps, c_max, accuracy_like, eval_size, metric, n_boot, rng)
    warnings = list(reps.warnings)
    K = len(d.sizes)
    anchor = "zero-shot" if d.zero is not None else "first size"
    max_n = int(d.sizes[-1])

    # --- fit and band (3 sizes or more)
    fit = _fit_band(d.sizes, reps.y, reps.se, reps.Y, c_max) if K >= _MIN_SIZES else None
    if fit is not None:
        i0, i_max = int(fit.at[0]), int(fit.at[-1])
        top_p, top_B = float(fit.pred_p[i_max]), fit.predB[:, i_max]
        base_p = reps.y0 if reps.y0 is not None else float(fit.pred_p[i0])
        base_B = reps.Y0 if reps.Y0 is not None else fit.predB[:, i0]
        q_lo, q_hi = _quantiles(fit.d2B, [1 - confidence, confidence])
        ev_n = fit.grid
    else:
        top_p, top_B = float(reps.y[-1]), reps.Y[:, -1]
        base_p = reps.y0 if reps.y0 is not None else float(reps.y[0])
        base_B = reps.Y0 if reps.Y0 is not None else reps.Y[:, 0]
        q_lo = q_hi = np.full(K, np.nan)
        ev_n = d.sizes
    if chance is not None and direction == HIGHER and chance > base_p:
        # a rise from an untrained score below chance up to chance (e.g. from never writing a
        # bare label to always writing the majority one) is learning the format, not the task
        anchor, base_p, base_B = "chance", float(chance), np.full_like(base_B, chance)
    rise_B = top_B - base_B
    rise = float(top_p - base_p) if K > 1 or d.zero is not None or anchor == "chance" else None
    rise_lo = float(_quantiles(rise_B, [1 - confidence])[0]) if rise is not None else None
    rise_ci = tuple(map(float, _interval(rise_B, confidence))) if rise is not None else None

    # --- the decision, as facts
    ev = Evidence(
        tuple(map(float, ev_n)),
        tuple(map(float, q_hi)),
        tuple(map(float, q_lo)),
        max_n,
        rise if rise is not None else 0.0,
        rise_lo if rise_lo is not None else -np.inf,
        eps,
        K,
    )
    verdict = decide(ev)
    learning = rise_lo is not None and rise_lo > eps
    n_star_ci = None
    if verdict.decision == SATURATED and fit is not None:
        n_star_ci = _crossing_ci(fit.grid, fit.d2B, eps, confidence, 2 * max_n)
    if fit is not None:
        cert, cert_at, by_eps = _graded(fit, q_hi, eps, confidence, learning, max_n)
    else:
        cert, cert_at, by_eps = None, None, ()
    settle, share = (None, None)
    if verdict.decision == INCONCLUSIVE:
        bound = _certified_words(cert, cert_at, rise_B if rise is not None else None, anchor,
                                 confidence, units)  # fmt: skip
        settle, share = _settle(
            verdict.why, d, reps, fit, eps, confidence, c_max, max_items, units, rng, bound
        )
    noise = replace(reps.noise, item_share=share)
    next_size = None
    if verdict.decision == MORE_DATA_PAYS or (settle is not None and settle.size):
        next_size = 2 * max_n

    # --- the words
    d2_max = float(fit.d2_p[fit.at[-1]]) if fit is not None else None
    d2_ci = (
        tuple(map(float, _interval(fit.d2B[:, fit.at[-1]], confidence)))
        if fit is not None
        else None
    )
    d2_n = None
    if verdict.n_star is not None and fit is not None:
        d2_n = float(fit.d2_p[int(np.argmin(np.abs(fit.grid - verdict.n_star)))])
    facts = _Facts(
        label,
        verdict,
        eps,
        confidence,
        max_n,
        K,
        d2_max,
        d2_ci,
        d2_n,
        n_star_ci,
        anchor,
        float(sign * base_p) if rise is not None else None,
        float(sign * top_p),
        rise,
        rise_lo,
        cert,
        cert_at,
        settle,
    )
    reason, summary = _words(facts, units)

    # --- diagnostics
    plateau, plateau_ci, band, pl, ll, weights = None, None, None, None, None, None
    if K > 1:  # two sizes and no fit: the observed means at the two ends
        trend = _trend(reps.Y[:, -1], reps.Y[:, 0], confidence)
    elif reps.Y0 is not None:  # one size: against the base model
        trend = _trend(reps.Y[:, -1], reps.Y0, confidence)
    else:
        trend = "flat"
    if fit is not None:
        more, trend, plateau, plateau_ci = _diagnostics(
            d, reps, fit, sign, c_max, eps, confidence, metric, units
        )
        warnings += more
        c, a, b, nl, al, be, _ = fit.point
        pl, weights = PowerLaw(float(sign * c), float(a), float(b), float(nl)), fit.weights
        ll = LogLinear(float(sign * al), float(sign * be))
        lohi = np.sort(sign * _interval(fit.predB, confidence), axis=0)
        p_below = (fit.d2B < eps).mean(0)
        d2_two = _interval(fit.d2B, confidence)
        band = CurveBand(
            n=tuple(map(float, fit.grid)),
            fitted=tuple(map(float, sign * fit.pred_p)),
            lo=tuple(map(float, lohi[0])),
            hi=tuple(map(float, lohi[1])),
            delta2=tuple(map(float, fit.d2_p)),
            delta2_lo=tuple(map(float, d2_two[0])),
            delta2_hi=tuple(map(float, d2_two[1])),
            p_below=tuple(map(float, p_below)),
        )
        sizes = _size_rows(d, reps, z, confidence, fit, d2_two, p_below, sign)
    else:
        sizes = _size_rows(d, reps, z, confidence, None)
    if trend == "worsening":
        warnings.append(_worsening_warning(metric, direction))

    res = CurveResult(
        tier=tier,
        metric=metric,
        direction=direction,
        accuracy_like=accuracy_like,
        epsilon=eps,
        confidence=confidence,
        decision=verdict.decision,
        why=verdict.why,
        reason=reason,
        summary=summary,
        n_star=verdict.n_star,
        n_star_ci=n_star_ci,
        plateau=plateau,
        plateau_ci=plateau_ci,
        delta2_at_max=d2_max,
        delta2_at_max_ci=d2_ci,
        next_size=next_size,
        trend=trend,
        sizes=sizes,
        power_law=pl,
        log_linear=ll,
        weights=weights,
        band=band,
        bootstrap=noise.bootstrap,
        warnings=tuple(warnings),
        zero_shot=d.zero,
        anchor=anchor,
        rise=rise,
        rise_ci=rise_ci,
        learning=learning,
        certified_epsilon=cert,
        certified_at=cert_at,
        n_star_by_epsilon=by_eps,
        settle=settle,
        noise=noise,
    )
    boot = _Boot(fit.grid, fit.predB, fit.pred_p, sign, max_n) if fit is not None else None
    return res, boot, (d.sizes, reps.y, reps.Y)


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


def _exchange_ci_words(ci: tuple[float | None, float | None] | None, confidence: float) -> str:
    """' (90% CI 30–90)'; an open end (the other tier's curve never gets there in a replicate,
    or already starts above it) is said in words."""
    lo, hi = ci or (None, None)
    conf = f"{100 * confidence:.0f}%"
    if lo is not None and hi is not None:
        return f" ({conf} CI {_fmt_n(lo)}–{_fmt_n(hi)})"
    if lo is not None:
        return f" ({conf} CI: at least {_fmt_n(lo)})"
    if hi is not None:
        return f" ({conf} CI: at most {_fmt_n(hi)})"
    return f" ({conf} CI open at both ends: too noisy to bound)"


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
            f"{_exchange_ci_words(r.other_size_ci, confidence)}"
        )
    else:
        summary = (
            f"{metric}: tier {worse} does not reach tier {better}'s scores in the range fitted"
        )
    return Exchange(metric, better, worse, tuple(rows), summary)


def _disagreements(curves: list[CurveResult]) -> list[tuple[str, str]]:
    """(tier, message) where two metrics of a tier tell different stories.

    Loss vs accuracy trends, a saturated metric beside one that still pays, and one metric that
    rises over its anchor while another is not learning yet (e.g. validation loss falls while
    accuracy stays at chance: the model learns the answer format, not the task).
    """
    out = []
    by_tier: dict[str, list[CurveResult]] = defaultdict(list)
    for c in curves:
        by_tier[c.tier].append(c)
    for tier, cs in by_tier.items():
        done: set[frozenset] = set()
        losses = [c for c in cs if c.direction == LOWER]
        accs = [c for c in cs if c.accuracy_like]
        for lo in losses:
            for ac in accs:
                # trends exist for two sizes or more, with or without a fitted curve
                pair = f"{lo.metric} vs {ac.metric}"
                # an accuracy that rose clear of its anchor is learning the task, whatever its
                # tail does: a small dip after it levels off is not "learning the format"
                if lo.trend == "improving" and ac.trend == "worsening" and not ac.learning:
                    done.add(frozenset((lo.metric, ac.metric)))
                    out.append(
                        (
                            tier,
                            f"{pair}: they move in opposite directions: {lo.metric} falls while "
                            f"{ac.metric} falls too. The model is learning the answer format, "
                            "not the task; look at the answers it gives (below) and try a larger "
                            "model or a higher learning rate",
                        )
                    )
                elif lo.trend == "worsening" and ac.trend == "improving":
                    done.add(frozenset((lo.metric, ac.metric)))
                    out.append(
                        (
                            tier,
                            f"{pair}: they move in opposite directions: {lo.metric} rises while "
                            f"{ac.metric} rises too. The model grows more confident in the "
                            f"answers it gets wrong; trust {ac.metric} for the decision",
                        )
                    )
                elif (
                    lo.trend == "improving"
                    and ac.trend == "flat"
                    and not ac.learning
                    # flat, not merely noisy: the point estimate moved less than 3 epsilon
                    and ac.rise is not None
                    and abs(ac.rise) < 3 * ac.epsilon
                ):
                    done.add(frozenset((lo.metric, ac.metric)))
                    out.append(
                        (
                            tier,
                            f"{pair}: {lo.metric} falls while {ac.metric} stays flat. The model "
                            "is learning the answer format, not the task; try a larger size, a "
                            "larger model or a higher learning rate",
                        )
                    )
                elif lo.band is None or ac.band is None:
                    continue
                elif lo.trend == "worsening" and ac.decision == MORE_DATA_PAYS:
                    done.add(frozenset((lo.metric, ac.metric)))
                    out.append((tier, f"{pair}: {lo.metric} worsens while {ac.metric} still rises"))
        for i, a in enumerate(cs):
            for b in cs[i + 1 :]:
                if frozenset((a.metric, b.metric)) in done or a.band is None or b.band is None:
                    continue
                pair = f"{a.metric} vs {b.metric}"
                if {a.decision, b.decision} == {SATURATED, MORE_DATA_PAYS}:
                    sat = a if a.decision == SATURATED else b
                    pays = b if sat is a else a
                    out.append(
                        (
                            tier,
                            f"{pair}: {sat.metric} saturated at ~{_fmt_n(sat.n_star)} but "
                            f"{pays.metric} still pays at {pays.max_size:,}",
                        )
                    )
                elif a.learning != b.learning and NOT_LEARNING in (a.why, b.why):
                    up = a if a.learning else b
                    flat = b if up is a else a
                    out.append(
                        (
                            tier,
                            f"{pair}: {up.metric} improves over its {up.anchor} score while "
                            f"{flat.metric} is not learning yet (the model may be learning the "
                            "answer format, not the task)",
                        )
                    )
    return out


def _check_size(size, what) -> int:
    if int(size) != size or size < 0:
        raise ValueError(
            f"size must be a non-negative integer (0 = zero-shot), got {size!r} in {what}"
        )
    return int(size)


def analyze(
    records: Iterable[Record] = (),
    *,
    items: Iterable[ItemScore] = (),
    direction: dict[str, str] | str,
    epsilon: float | dict[str, float] | None = None,
    confidence: float = 0.9,
    eval_size: dict[str, int] | int | None = None,
    max_items: dict[str, int] | int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str | None = None,
    chance: dict[str, float] | None = None,
) -> Analysis:
    """Fit, bootstrap and decide for every (tier, metric) in `records` and `items`.

    `items`: per-item scores; a curve that has them for every cell gets the paired item
    bootstrap (its `records`, if any, are then ignored). Size 0 is the zero-shot anchor.
    `direction`: "higher" or "lower" per metric (or one for all). `epsilon`: the smallest gain
    from doubling worth paying for (default: 1 point for accuracy-like metrics, 1% of the value at
    the largest size otherwise). `eval_size`: evaluation items per accuracy-like metric, for the
    p(1-p)/m noise floor of curves without items. `max_items`: validation items available, so
    advice never asks for more. `reference`: a tier (e.g. random selection) every other tier
    is compared with at the sizes both ran (`Analysis.versus`). `chance`: per higher-is-better
    metric, the score of a model that learned nothing about the task (1/k options, always the
    majority label; loop.diagnose): a curve is measured against it when its zero-shot score is
    lower, so a curve that only climbs to chance is "not learning yet", never saturated.
    """
    records, items = list(records), list(items)
    if not records and not items:
        raise ValueError("no records to analyze")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    metrics = list(dict.fromkeys([r.metric for r in records] + [r.metric for r in items]))
    dirs = _as_map(direction, metrics)
    epss = _as_map(epsilon, metrics)
    evals = _as_map(eval_size, metrics)
    caps = _as_map(max_items, metrics)
    chances = dict(chance or {})
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
        size = _check_size(r.size, r)
        if not math.isfinite(float(r.value)):
            raise ValueError(f"value must be finite, got {r.value!r} in {r}")
        groups[(str(r.tier), str(r.metric))][size].append((int(r.seed), float(r.value)))
    cells: dict[tuple[str, str], dict[tuple[int, int], dict[str, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for it in items:
        size = _check_size(it.size, it)
        cell = cells[(str(it.tier), str(it.metric))][(size, int(it.seed))]
        if str(it.item) in cell:
            raise ValueError(
                f"duplicate item score for tier, metric, size, seed, item "
                f"{(it.tier, it.metric, size, it.seed, it.item)}"
            )
        if not math.isfinite(float(it.score)):
            raise ValueError(f"score must be finite, got {it.score!r} in {it}")
        cell[str(it.item)] = float(it.score)

    curve_warn: dict[tuple[str, str], list[str]] = defaultdict(list)
    datas: dict[tuple[str, str], _Data] = {}
    for key in dict.fromkeys([*groups, *cells]):
        by_cell = cells.get(key)
        by_size = groups.get(key, {})
        rec_cells = {(s, sd) for s, v in by_size.items() for sd, _ in v}
        if by_cell and not rec_cells <= set(by_cell):
            # some cells have a score but no items: the pairing would drop them, so use scores
            missing = sorted(rec_cells - set(by_cell))
            curve_warn[key].append(
                f"{len(missing)} cell(s) have no per-item scores (e.g. size {missing[0][0]}, "
                f"seed {missing[0][1]}): the analysis treats sizes as independent"
            )
            merged = {c: list(v) for c, v in by_size.items()}
            for (s, sd), sc in by_cell.items():
                if (s, sd) not in rec_cells:
                    merged.setdefault(s, []).append((sd, float(np.mean(list(sc.values())))))
            by_size, by_cell = merged, None
        if by_cell and not any(s > 0 for s, _ in by_cell):
            continue
        if not by_cell and not any(s > 0 for s in by_size):
            continue
        datas[key] = _curve_data(by_size, by_cell)
    if not datas:
        raise ValueError("no trained cell to analyze (only zero-shot scores)")

    results: list[CurveResult] = []
    boots: dict[tuple[str, str], _Boot] = {}
    observed: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    tiers = list(dict.fromkeys(t for t, _ in datas))
    for tier, metric in sorted(datas, key=lambda t: (metrics.index(t[1]), tiers.index(t[0]))):
        d = datas[(tier, metric)]
        rng = np.random.default_rng([seed, zlib.crc32(f"{tier}\0{metric}".encode())])
        # the same items get the same draw in every tier and metric: gains stay paired across them
        item_rng = np.random.default_rng([seed, d.item_key])
        res, boot, observed[(tier, metric)] = _analyze_curve(
            tier,
            metric,
            d,
            dirs[metric],
            epss.get(metric),
            confidence,
            evals.get(metric),
            caps.get(metric),
            n_boot,
            rng,
            item_rng,
            chances.get(metric),
        )
        if curve_warn.get((tier, metric)):
            res = replace(res, warnings=tuple(curve_warn[(tier, metric)]) + res.warnings)
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

    versus: list[Versus] = []
    if reference is not None:
        for metric in metrics:
            ref = observed.get((reference, metric))
            if ref is None:
                continue
            for r in results:
                if r.metric == metric and r.tier != reference:
                    versus.append(
                        _versus(r, reference, observed[(r.tier, metric)], ref, confidence)
                    )

    return Analysis(
        curves=tuple(results),
        exchanges=tuple(exchanges),
        warnings=tuple(global_warnings),
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        versus=tuple(versus),
    )


def _versus(c: CurveResult, reference: str, obs, ref, confidence: float) -> Versus:
    """`c`'s tier against `reference` at every size both ran: the gap of the observed means
    with a bootstrap interval (the replicates share the item draws where both curves have
    per-item scores on the same items, so the gap is paired)."""
    sizes, y, Y = obs
    r_sizes, r_y, r_Y = ref
    at = {int(n): i for i, n in enumerate(r_sizes)}
    m = min(len(Y), len(r_Y))
    gaps = []
    for i, n in enumerate(sizes):
        j = at.get(int(n))
        if j is None:
            continue
        lo, hi = _interval(Y[:m, i] - r_Y[:m, j], confidence)
        gaps.append(SizeGap(int(n), float(y[i] - r_y[j]), (float(lo), float(hi))))
    units = _Units(c.accuracy_like, c.direction, c.metric)
    eps = c.epsilon
    # a gap whose whole interval lies within ±ε is no difference worth acting on, even when it
    # excludes 0 (an equivalence test); better/worse need the interval off 0 and not inside ±ε
    within = [g for g in gaps if -eps < g.ci[0] and g.ci[1] < eps]
    better = [g for g in gaps if g.ci[0] > 0 and g not in within]
    worse = [g for g in gaps if g.ci[1] < 0 and g not in within]
    verdict = (
        "no different"
        if not better and not worse
        else "mixed"
        if better and worse
        else "better"
        if better
        else "worse"
    )
    conf = f"{100 * confidence:.0f}%"

    def sizes_text(gs: list[SizeGap]) -> str:
        return ", ".join(f"{g.size:,}" for g in gs)

    def num(x: float) -> str:
        return f"{100 * x:+.1f}" if units.accuracy_like else f"{x:+.3g}"

    def gap_text(g: SizeGap) -> str:
        unit = " points" if units.accuracy_like else ""
        return f"{num(g.gap)}{unit} at {g.size:,}, {conf} CI {num(g.ci[0])} to {num(g.ci[1])}"

    head = f"tier {c.tier} vs {reference} ({c.metric})"
    if not gaps:
        text = f"{head}: no size in common, so no comparison"
        verdict = "no different"
    elif verdict == "no different":
        big = max(gaps, key=lambda g: abs(g.gap))
        how = (
            f"every interval lies within ±ε ({format_gain(eps, units)})"
            if len(within) == len(gaps)
            else f"each interval includes 0 or lies within ±ε ({format_gain(eps, units)})"
        )
        text = (
            f"{head}: no different at the sizes run ({sizes_text(gaps)}): {how}; largest gap "
            f"{gap_text(big)}"
        )
    elif verdict == "mixed":
        text = (
            f"{head}: mixed: better at {sizes_text(better)} ({gap_text(better[-1])}), worse at "
            f"{sizes_text(worse)} ({gap_text(worse[-1])})"
        )
    else:
        clear = better or worse
        rest = [g for g in gaps if g not in clear]
        text = f"{head}: {verdict} at {sizes_text(clear)} ({gap_text(clear[-1])})" + (
            f"; no clear difference at {sizes_text(rest)}" if rest else ""
        )
    return Versus(c.tier, reference, c.metric, verdict, tuple(gaps), text)


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


def certified_text(c: CurveResult) -> str | None:
    """The graded answer in words: "doubling past 256 gains < 1.8 points (90%)"."""
    if c.certified_epsilon is None or c.certified_at is None:
        return None
    return f"doubling past {c.certified_at:,} {_bound_phrase(c.certified_epsilon, c)} ({100 * c.confidence:.0f}%)"


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
            "why": c.why,
            "zero_shot": c.zero_shot,
            "anchor": c.anchor,
            "rise": c.rise,
            "rise_ci": list(c.rise_ci) if c.rise_ci else None,
            "learning": c.learning,
            "certified_epsilon": c.certified_epsilon,
            "certified_at": c.certified_at,
            "certified_text": certified_text(c),
            "n_star_by_epsilon": [
                {
                    "epsilon": r.epsilon,
                    "n_star": r.n_star,
                    "n_star_ci": list(r.n_star_ci) if r.n_star_ci else None,
                }
                for r in c.n_star_by_epsilon
            ],
            "settle": vars(c.settle) if c.settle else None,
            "noise": vars(c.noise) if c.noise else None,
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
            **(
                {
                    "selection": {
                        "reference": analysis.versus[0].reference,
                        "verdicts": [
                            {
                                "tier": v.tier,
                                "reference": v.reference,
                                "metric": v.metric,
                                "verdict": v.verdict,
                                "text": v.text,
                                "sizes": [
                                    {"size": g.size, "gap": g.gap, "ci": list(g.ci)}
                                    for g in v.sizes
                                ],
                            }
                            for v in analysis.versus
                        ],
                    }
                }
                if analysis.versus
                else {}
            ),
        }
    )


# ----------------------------------------------------------------------------- CSV input

_OPTIONAL = {"tier": "all", "metric": "value"}


@dataclass(frozen=True)
class CurveInput:
    """What a curve CSV holds: one score per cell, or one score per item and cell."""

    records: tuple[Record, ...]
    items: tuple[ItemScore, ...]


def read_curve_csv(path: str | Path) -> list[Record]:
    """Records from a CSV with columns size,seed,value (optional tier, metric); size 0 = zero-shot."""
    got = read_curve_table(path)
    if got.items:
        raise CurveInputError(
            f"{path}: holds per-item scores (columns item, score); read it with read_curve_table",
            path=str(path),
        )
    return list(got.records)


def read_curve_table(path: str | Path) -> CurveInput:
    """A curve CSV in either shape (the header decides):

    - `size,seed,value` (optional `tier`, `metric`): one score per cell;
    - `size,seed,item,score` (optional `tier`, `metric`): one row per item and cell, the long
      table `loop export --items` writes.

    Size 0 is the base model (zero-shot). Errors name the file, line and column.
    """
    path = Path(path)
    where = str(path)

    def fail(msg: str, line: int | None = None, column: str = "") -> CurveInputError:
        loc = where if line is None else f"{where}: line {line}"
        if column:
            loc += f", column '{column}'"
        return CurveInputError(f"{loc}: {msg}", path=where, line=line, column=column)

    shapes = "size,seed,value or size,seed,item,score (optional tier, metric)"
    if not path.is_file():
        raise fail("file not found" if not path.exists() else "not a regular file")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise fail(f"empty file: expected a header row {shapes}", 1)
        header_line = reader.line_num
        names = [h.strip().lower() for h in header]
        long = "item" in names or "score" in names
        required = ("size", "seed", "item", "score") if long else ("size", "seed", "value")
        for col in required:
            if col not in names:
                raise fail(
                    f"missing required column; expected columns {shapes}, "
                    f"got {','.join(h.strip() for h in header)}",
                    header_line,
                    col,
                )
        idx = {n: i for i, n in enumerate(names)}
        records: list[Record] = []
        items: list[ItemScore] = []
        seen: dict[tuple, int] = {}
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

            def number(col: str, line=line, cell=cell) -> float:
                raw = cell(col)
                try:
                    x = float(raw)
                except ValueError:
                    raise fail(f"expected a number, got {raw!r}", line, col) from None
                if not math.isfinite(x):
                    raise fail(f"expected a finite number, got {raw!r}", line, col)
                return x

            raw_size = cell("size")
            size = integer("size", raw_size)
            if size < 0:
                raise fail(
                    f"expected a size >= 0 (0 = the base model), got {raw_size!r}", line, "size"
                )
            seed = integer("seed", cell("seed"))
            extra = {
                col: (row[idx[col]].strip() if col in idx and idx[col] < len(row) else "")
                or default
                for col, default in _OPTIONAL.items()
            }
            if long:
                item = cell("item")
                score = number("score")
                key = (extra["tier"], extra["metric"], size, seed, item)
                if key in seen:
                    raise fail(
                        f"duplicate row for tier {key[0]!r}, metric {key[1]!r}, size {size}, "
                        f"seed {seed}, item {item!r} (first on line {seen[key]})",
                        line,
                        "item",
                    )
                seen[key] = line
                items.append(ItemScore(extra["tier"], size, seed, extra["metric"], item, score))
            else:
                value = number("value")
                records.append(Record(extra["tier"], size, seed, extra["metric"], value))
            last_line = line
    n = len(items) if long else len(records)
    if n < 2:
        raise fail(
            f"expected at least 2 data rows (a curve needs several sizes), got {n}",
            last_line,
            "size",
        )
    cells_per_curve: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in (*items, *records):
        cells_per_curve[(r.tier, r.metric)].add(r.size)
    for (tier, metric), sizes in cells_per_curve.items():
        if not any(s > 0 for s in sizes):
            raise fail(
                f"tier {tier!r}, metric {metric!r} has only size 0 (zero-shot) rows; "
                "a curve needs trained sizes",
                last_line,
                "size",
            )
    return CurveInput(tuple(records), tuple(items))
