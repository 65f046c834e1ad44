"""The cheapest way to a target: exchange rates between source tiers and the cost of a score.

Pure: reads an `Analysis` (`loop.curves`) and each tier's sources (`loop.provenance.TierSources`).

- Exchange rate: from `Analysis.exchanges`, the row at the largest size of the better tier whose
  equal score the other tier reaches inside its own sizes: "1 expert ≈ 6.5 synthetic", with the
  bootstrap interval of the other tier's size divided by the better tier's size. With a cost per
  example on both, the same score costs `rate × other's cost` against the better one's cost.
  When no such row exists because the other tier's best fitted score stays below the better
  tier's at its smallest size, the rate gets a floor instead (`ratio_floor`: the other's
  largest size over the better's smallest, "1 expert is worth more than 8 synthetic"), read
  from the sizes run alone.
- Cost of a target: the smallest n where a tier's fitted curve (`CurveResult.band`) reaches the
  target, log-interpolated on the band's grid; its interval inverts the band's bounds (for a
  family of rising curves, P(n_T ≤ n) = P(score(n) ≥ T), so the band's upper bound gives the
  lower end of n_T and its lower bound the upper end). A target reached only past the largest
  size run gets no number: the curve is never extrapolated past the data; a target above the
  plateau's interval is "never".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loop.curves import HIGHER, SATURATED, Analysis, CurveResult
from loop.provenance import TierSources

REACHED, AT_SMALLEST, BEYOND, NEVER, UNKNOWN = (
    "reached",
    "at_smallest_size",
    "beyond_sizes_run",
    "never",
    "not_reached",
)


@dataclass(frozen=True)
class Rate:
    """Examples of `other` that buy the score of one example of `better`."""

    metric: str
    better: str
    other: str
    ratio: float | None
    ci: tuple[float | None, float | None] | None  # None end: beyond one doubling of `other`
    at_size: int | None  # examples of `better` the rate was read at
    cost_ratio: float | None  # cost of the score with `other` / with `better`
    text: str
    # no rate within the sizes run, but `other`'s best score stays below `better`'s at its
    # smallest size: one `better` example is worth more than this many of `other`
    ratio_floor: float | None = None


@dataclass(frozen=True)
class TargetCost:
    metric: str
    target: float
    tier: str
    status: str  # reached | at_smallest_size | beyond_sizes_run | never | not_reached
    n: float | None
    n_ci: tuple[float | None, float | None] | None  # None upper end: past the largest size
    cost: float | None
    cost_ci: tuple[float | None, float | None] | None
    text: str


@dataclass(frozen=True)
class CostTable:
    sources: tuple[TierSources, ...]
    rates: tuple[Rate, ...]
    targets: tuple[TargetCost, ...]
    plateau: tuple[str, ...]  # per metric: which tier reaches its plateau
    confidence: float

    def summary(self) -> list[str]:
        """The answer in plain words, one line each: rates, then each target."""
        lines = [r.text for r in self.rates]
        by_target: dict[tuple[str, float], list[TargetCost]] = {}
        for t in self.targets:
            by_target.setdefault((t.metric, t.target), []).append(t)
        for (metric, target), rows in by_target.items():
            parts = "; ".join(f"tier {t.tier}: {t.text}" for t in rows)
            lines.append(f"{metric} {_score(target)}: {parts}")
        return lines + list(self.plateau)


def _score(x: float) -> str:
    # three significant digits: a loss of 0.0014 is not "0.001", an accuracy of 0.8 is "0.8"
    return f"{x:.3g}"


def count(x: float) -> str:
    if x >= 1000:  # three significant digits: 2,048 -> 2,050
        return f"{int(round(x, -int(math.floor(math.log10(x))) + 2)):,}"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def money(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:,.2f}"


def _first_reach(grid: np.ndarray, values: np.ndarray, target: float, higher: bool) -> float:
    """Smallest n on `grid` where `values` reach `target` (log-interpolated); -inf at the
    grid's start, inf when never on the grid."""
    v = values if higher else -values
    t = target if higher else -target
    reached = v >= t
    if not reached.any():
        return math.inf
    j = int(reached.argmax())
    if j == 0:
        return -math.inf
    v0, v1 = v[j - 1], v[j]
    frac = (t - v0) / (v1 - v0) if v1 > v0 else 1.0
    lg = np.log(grid)
    return float(np.exp(lg[j - 1] + min(max(frac, 0.0), 1.0) * (lg[j] - lg[j - 1])))


def target_cost(c: CurveResult, target: float, cost: float | None, conf: str) -> TargetCost:
    higher = c.direction == HIGHER
    if c.band is None:
        return TargetCost(
            c.metric,
            target,
            c.tier,
            UNKNOWN,
            None,
            None,
            None,
            None,
            "no fitted curve (fewer than 3 sizes)",
        )
    grid = np.asarray(c.band.n, dtype=float)
    point = _first_reach(grid, np.asarray(c.band.fitted), target, higher)
    soon = _first_reach(grid, np.asarray(c.band.hi if higher else c.band.lo), target, higher)
    late = _first_reach(grid, np.asarray(c.band.lo if higher else c.band.hi), target, higher)
    smallest, largest = c.sizes[0].size, c.max_size

    def priced(n: float) -> str:
        return f" ({money(n * cost)})" if cost is not None else ""

    if point == -math.inf or point <= smallest:
        text = f"reached already at its smallest size, {smallest:,}{priced(smallest)}"
        n = float(smallest)
        return TargetCost(
            c.metric,
            target,
            c.tier,
            AT_SMALLEST,
            n,
            (None, n),
            None if cost is None else n * cost,
            None,
            text,
        )
    if point > largest * (1 + 1e-9):  # a default target is a tier's own score at `largest`
        above_plateau = c.plateau_ci is not None and (
            target > c.plateau_ci[1] if higher else target < c.plateau_ci[0]
        )
        if above_plateau:
            lo, hi = c.plateau_ci  # type: ignore[misc]
            status, text = (
                NEVER,
                (
                    f"never: its curve levels off at {_score(c.plateau)} ({conf} CI "
                    f"{_score(lo)}–{_score(hi)})"
                ),
            )
        elif point < math.inf:
            status, text = (
                BEYOND,
                (
                    f"not reached by {largest:,} (the largest size run); the fit reaches it within "
                    f"one doubling, so run {2 * largest:,} to know"
                ),
            )
        else:
            status, text = (
                UNKNOWN,
                (
                    f"not reached by {largest:,} (the largest size run), nor within one doubling of "
                    "the fitted curve"
                ),
            )
        return TargetCost(c.metric, target, c.tier, status, None, None, None, None, text)
    lo_n = None if soon == -math.inf else max(soon, float(smallest))
    hi_n = late if late <= largest * (1 + 1e-9) else None
    ci_text = (
        f"{count(lo_n) if lo_n is not None else f'≤{smallest:,}'}–"
        f"{count(hi_n) if hi_n is not None else f'more than {largest:,}'}"
    )
    text = f"about {count(point)}{priced(point)} ({conf} CI {ci_text} examples)"
    cost_ci = None
    if cost is not None:
        cost_ci = (None if lo_n is None else lo_n * cost, None if hi_n is None else hi_n * cost)
    return TargetCost(
        c.metric,
        target,
        c.tier,
        REACHED,
        point,
        (lo_n, hi_n),
        None if cost is None else point * cost,
        cost_ci,
        text,
    )


def ratio_ci(ci: tuple[float | None, float | None] | None) -> str:
    """An exchange rate's interval in words: an open end (the other tier's curve never gets there
    within one doubling, or starts above it already) is said as a bound."""
    lo, hi = ci or (None, None)
    if lo is not None and hi is not None:
        return f"{lo:.2g}–{hi:.2g}"
    if lo is not None:
        return f"at least {lo:.2g}"
    if hi is not None:
        return f"at most {hi:.2g}"
    return "open at both ends"


def _best_in_range(c: CurveResult) -> float | None:
    """The curve's best fitted score within the sizes run (None without a fit)."""
    if c.band is None:
        return None
    grid = np.asarray(c.band.n, dtype=float)
    fitted = np.asarray(c.band.fitted, dtype=float)[grid <= c.max_size * (1 + 1e-9)]
    if not len(fitted):
        return None
    return float(fitted.max() if c.direction == HIGHER else fitted.min())


def _floor(better: CurveResult | None, other: CurveResult | None) -> float | None:
    """`other`'s largest size over `better`'s smallest, when `other`'s best fitted score within
    its sizes stays short of `better`'s fitted score at its smallest size: a lower bound on the
    exchange rate that needs no extrapolation."""
    if better is None or other is None or not better.sizes:
        return None
    best = _best_in_range(other)
    if best is None:
        return None
    start = float(better.sizes[0].fitted)
    short = best < start if better.direction == HIGHER else best > start
    return other.max_size / better.sizes[0].size if short else None


def _rate(
    e,
    costs: Mapping[str, float | None],
    conf: str,
    curves: Mapping[tuple[str, str], CurveResult],
) -> Rate:
    largest_other = curves[(e.other, e.metric)].max_size
    inside = [r for r in e.rows if r.other_size is not None and r.other_size <= largest_other]
    cb, co = costs.get(e.better), costs.get(e.other)
    if not inside:
        text = (
            f"{e.metric}: tier {e.other} does not reach tier {e.better}'s scores within "
            f"its sizes run (up to {largest_other:,}); no exchange rate"
        )
        better = curves.get((e.better, e.metric))
        floor = _floor(better, curves.get((e.other, e.metric)))
        if floor is None:
            return Rate(e.metric, e.better, e.other, None, None, None, None, text)
        smallest = better.sizes[0].size  # type: ignore[union-attr]
        text += (
            f", but 1 {e.better} is worth more than {floor:.2g} {e.other}: tier {e.other}'s "
            f"fitted score at {largest_other:,} stays below tier {e.better}'s at {smallest:,}"
        )
        cost_floor = None
        if cb and co is not None:
            cost_floor = floor * co / cb
            text += (
                f"; the same score costs {money(cb)} with {e.better} or more than "
                f"{money(floor * co)} with {e.other}: "
                + (
                    f"{e.better} is cheaper"
                    if cost_floor >= 1
                    else f"run {e.other} past {largest_other:,} to know which is cheaper"
                )
            )
        return Rate(
            e.metric, e.better, e.other, None, None, smallest, None, text, ratio_floor=floor
        )
    r = inside[-1]
    ratio = r.ratio
    ci = None
    if r.other_size_ci is not None:
        lo, hi = r.other_size_ci
        ci = (None if lo is None else lo / r.size, None if hi is None else hi / r.size)
    ci_text = f", {conf} CI {ratio_ci(ci)}" if ci is not None else ""
    text = (
        f"1 {e.better} ≈ {ratio:.2g} {e.other} at equal {e.metric}{ci_text} "
        f"(read at {r.size:,} {e.better} examples)"
    )
    cost_ratio = None
    if cb and co is not None:
        cost_ratio = ratio * co / cb
        cheaper = e.other if cost_ratio < 1 else e.better
        text += (
            f"; the same score costs {money(cb)} with {e.better} or {money(ratio * co)} with "
            f"{e.other}: {cheaper} is cheaper"
        )
    return Rate(e.metric, e.better, e.other, ratio, ci, r.size, cost_ratio, text)


def _plateau_lines(curves: Sequence[CurveResult]) -> list[str]:
    out = []
    for metric in dict.fromkeys(c.metric for c in curves):
        mine = [c for c in curves if c.metric == metric]
        if len(mine) < 2:
            continue
        flat = [c for c in mine if c.decision == SATURATED]
        if len(flat) == 1:
            f = flat[0]
            others = ", ".join(
                f"{c.tier} ({c.decision.replace('_', ' ')})" for c in mine if c is not f
            )
            at = f" from about {f.n_star:,} examples" if f.n_star else ""
            out.append(f"{metric}: only tier {f.tier} reaches its plateau{at}; {others} not yet")
        elif flat:
            each = ", ".join(
                f"{c.tier}" + (f" (from about {c.n_star:,} examples)" if c.n_star else "")
                for c in flat
            )
            out.append(f"{metric}: tiers {each} reach their plateau")
        else:
            out.append(f"{metric}: no tier reaches its plateau within the sizes run")
    return out


def default_targets(analysis: Analysis) -> dict[str, tuple[float, ...]]:
    """Per metric, each tier's fitted score at its largest size: what it costs to match it."""
    out: dict[str, list[float]] = {}
    for c in analysis.curves:
        if c.band is not None:
            value = float(c.sizes[-1].fitted)
            if value not in out.setdefault(c.metric, []):
                out[c.metric].append(value)
    return {m: tuple(sorted(v)) for m, v in out.items()}


def cost_table(
    analysis: Analysis,
    sources: Mapping[str, TierSources],
    targets: Mapping[str, Sequence[float]] | None = None,
) -> CostTable:
    """Rates for every pair of tiers, and the cost of each target per tier (recipe order)."""
    conf = f"{100 * analysis.confidence:.0f}%"
    costs = {name: s.cost_per_example for name, s in sources.items()}
    curves = {(c.tier, c.metric): c for c in analysis.curves}
    rates = tuple(_rate(e, costs, conf, curves) for e in analysis.exchanges)
    wanted = dict(targets) if targets else default_targets(analysis)
    order = {name: i for i, name in enumerate(sources)}  # the recipe's tier order
    ranked = sorted(analysis.curves, key=lambda c: order.get(c.tier, len(order)))
    rows = []
    for metric, values in wanted.items():
        mine = [c for c in ranked if c.metric == metric]
        for value in values:
            rows += [target_cost(c, float(value), costs.get(c.tier), conf) for c in mine]
    return CostTable(
        tuple(sources.values()),
        rates,
        tuple(rows),
        tuple(_plateau_lines(ranked)),
        analysis.confidence,
    )


def metrics(table: CostTable) -> dict[str, float]:
    """The table as MLflow metrics for the parent run."""
    out: dict[str, float] = {}
    for r in table.rates:
        key = f"exchange.{r.better}.{r.other}.{r.metric}"
        for name, value in (
            ("ratio", r.ratio),
            ("cost_ratio", r.cost_ratio),
            ("ratio_lo", r.ci[0] if r.ci else None),
            ("ratio_hi", r.ci[1] if r.ci else None),
            ("ratio_floor", r.ratio_floor),
        ):
            if value is not None:
                out[f"{key}.{name}"] = float(value)
    for t in table.targets:
        key = f"target.{t.metric}.{_score(t.target)}.{t.tier}"
        for name, value in (("n", t.n), ("cost", t.cost)):
            if value is not None:
                out[f"{key}.{name}"] = float(value)
    for s in table.sources:
        if s.cost_per_example is not None:
            out[f"tier.{s.tier}.cost_per_example"] = float(s.cost_per_example)
    return out


def to_json(table: CostTable) -> dict:
    from dataclasses import asdict

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return clean(
        {
            "sources": [asdict(s) for s in table.sources],
            "exchange_rates": [asdict(r) for r in table.rates],
            "targets": [asdict(t) for t in table.targets],
            "plateau": list(table.plateau),
            "summary": table.summary(),
        }
    )
