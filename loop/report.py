"""An Analysis as people read it: plots, report.md, a self-contained report.html, summary.json.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module never
changes the process's backend or opens a window. Nothing here prints.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from loop import costs as costs_mod
from loop.costs import CostTable
from loop.curves import (
    FEW_SIZES,
    INCONCLUSIVE,
    MORE_DATA_PAYS,
    NEXT_SIZE,
    NOT_LEARNING,
    SATURATED,
    Analysis,
    CurveResult,
    certified_text,
    format_gain,
    to_json,
)
from loop.diagnose import Baseline, Diagnostics

# Colour-blind-safe (Okabe-Ito); tiers beyond 7 cycle.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_ZERO_LS = (0, (8, 2, 1, 2, 1, 2))  # dash-dot-dot: apart from the plateau's dots
# what the legend calls each kind of drawn artist (the artist's gid); only drawn kinds are listed
LEGEND = {
    "points": "one training run",
    "beyond": "fit beyond the largest size",
    "plateau": "plateau",
    "n_star": "n* (Δ₂ < ε)",
    "zero_shot": "untrained model",
    "chance": "chance",
    "majority": "always the most common answer",
}
_DECISION_TEXT = {
    SATURATED: "saturated",
    MORE_DATA_PAYS: "more data pays",
    INCONCLUSIVE: "inconclusive",
}


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    markdown: Path
    html: Path
    summary_json: Path
    plots: tuple[Path, ...]  # one PNG per metric, in metric order

    @property
    def files(self) -> tuple[Path, ...]:
        return (*self.plots, self.markdown, self.html, self.summary_json)


# ----------------------------------------------------------------------------- formatting


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def _num(x: float | None, sig: int = 4) -> str:
    return "—" if _missing(x) else f"{x:.{sig}g}"


def _reference_line(ax, y: float, label: str, color: str, ls, gid: str) -> None:
    """A horizontal line across the plot, labelled at its right end (chance, majority)."""
    ax.axhline(y, color=color, ls=ls, lw=1.2, gid=gid)
    ax.annotate(
        label,
        xy=(0.995, y),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        ha="right",
        fontsize=7.5,
        color=color,
    )


def _display(x: float | None, c: CurveResult) -> str:
    """A score in the units ε is in: 48.3% for accuracy-like metrics, 4 digits otherwise."""
    if _missing(x):
        return "—"
    return f"{100 * x:.3g}%" if c.accuracy_like else f"{x:.4g}"


def _g3(x: float) -> str:
    """3 significant digits; fit round-off (|x| < 1e-9, e.g. 1.4e-21 on a flat curve) reads 0."""
    return "0" if abs(x) < 1e-9 else f"{x:.3g}"


def _round2(x: float) -> int:
    """Two significant digits: 2,167 -> 2,200; a recommended size is not known to 4 digits."""
    if x <= 0:
        return int(round(x))
    return int(round(x, 1 - int(math.floor(math.log10(x)))))


def _n(x: float | None) -> str:
    return "—" if _missing(x) else f"{round(x):,}"


def _ci_n(ci, rounded: bool = False) -> str:
    if not ci:
        return "—"

    def one(x, unknown: str):
        if _missing(x):
            return unknown
        return f"{_round2(x):,}" if rounded else _n(x)

    # a missing upper end lies past the range fitted; a missing lower end below its start
    return f"{one(ci[0], '?')}–{one(ci[1], '∞')}"


def _gain(x: float | None, c: CurveResult) -> str:
    return "—" if _missing(x) else format_gain(x, c)


def _unit(c: CurveResult) -> str:
    if c.accuracy_like:
        return "points"
    return f"{c.metric} decrease" if c.direction == "lower" else c.metric


def _scale(c: CurveResult) -> float:
    return 100.0 if c.accuracy_like else 1.0


def _label(metric: str, labels: dict | None) -> str:
    return (labels or {}).get(metric, metric)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "metric"


def _colour(analysis: Analysis, tier: str) -> str:
    return _COLOURS[analysis.tiers.index(tier) % len(_COLOURS)]


# ----------------------------------------------------------------------------- plain words

_FORMAT = "answer format, not the task"  # the loss/accuracy disagreement's words (loop.curves)


def _metric_words(c: CurveResult, labels: dict | None = None) -> str:
    if labels and c.metric in labels:
        return labels[c.metric]
    if c.metric == "val_loss":
        return "validation loss"
    parts = c.metric.split(".")
    if parts[0] == "eval" and len(parts) == 2:
        return f"{'accuracy' if c.accuracy_like else 'the score'} ({parts[1]})"
    if parts[0] == "eval" and parts[2:] == ["prob"]:
        return f"the probability of the right option ({parts[1]})"
    return c.metric


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def headline(
    c: CurveResult,
    *,
    baseline: Baseline | None = None,
    answers: tuple = (),
    labels: dict | None = None,
    loss_falls: bool = False,
) -> str:
    """The one sentence a reader can act on, before any interval: what happened and what to do.

    `baseline`: the metric's chance level; `answers`: the curve's cells' answer distributions
    (loop.diagnose.CellAnswers), whose collapse at the largest size is named; `loss_falls`: the
    tier's validation loss improves over the sizes run.
    """
    m = _metric_words(c, labels)
    first, last = c.sizes[0], c.sizes[-1]
    span = (
        f"from {first.size:,} to {last.size:,} examples"
        if len(c.sizes) > 1
        else f"at {last.size:,} examples"
    )
    start = (
        f"{_display(c.zero_shot, c)} untrained"
        if c.zero_shot is not None
        else f"{_display(first.mean, c)} at {first.size:,}"
    )
    moved = f"from {start} to {_display(last.mean, c)} at {last.size:,}"
    two = f"{2 * last.size:,}"
    fmt = any(_FORMAT in w for w in c.warnings)

    def near(level: float) -> bool:
        return all(
            abs(s.mean - level) <= max((s.mean_ci[1] - s.mean_ci[0]) / 2, c.epsilon)
            for s in c.sizes
        )

    # at chance, or at what always giving the most common right answer scores (the majority)
    at_chance = baseline is not None and (near(baseline.chance) or near(baseline.floor))
    notes = []
    if fmt and c.direction == "lower":
        notes.append(f"accuracy does not follow: the model is learning the {_FORMAT}")
    top = [a for a in answers if a.size == last.size]
    for a in top[:1]:
        if a.problem:
            notes.append(a.problem)
            if baseline is not None and baseline.majority is not None:
                notes.append(
                    f"always answering {baseline.majority_label} would score "
                    f"{_display(baseline.majority, c)}"
                )
    tail = "".join(" " + _sentence(n) for n in notes)
    levers = "Try a larger size, a larger model or a higher learning rate."
    if at_chance and not c.learning and c.decision != MORE_DATA_PAYS:
        falls = fmt or loss_falls
        while_loss = " while validation loss falls" if falls else ""
        why = f": the model is learning the {_FORMAT}" if falls else ""
        level = (
            f"at chance ({_display(baseline.chance, c)})"
            if near(baseline.chance) and baseline.majority != baseline.chance
            else f"at the score of always answering {baseline.majority_label} "
            f"({_display(baseline.floor, c)})"
        )
        return f"Not learning yet: {m} stays {level} {span}{while_loss}{why}.{tail} {levers}"
    if c.why == NOT_LEARNING:
        ref = {
            "zero-shot": "the untrained model's score",
            "chance": "what a model that learned nothing scores",
        }.get(c.anchor, "its first size")
        return f"Not learning yet: {m} stays near {ref} ({moved}).{tail} {levers}"
    if fmt and c.direction == "higher" and c.trend != "improving" and not c.learning:
        verb = "falls" if c.trend == "worsening" else "does not rise clearly"
        head = (
            f"Not learning the task: {m} {verb} ({moved}) while validation loss falls: the model "
            f"is learning the {_FORMAT}."
        )
        return f"{head}{tail} {levers}"
    if c.decision == SATURATED and c.n_star is not None:
        return (
            f"Enough data: {m} stops improving at about {_round2(c.n_star):,} examples; doubling "
            f"the data past that gains less than {_gain(c.epsilon, c)}. More examples of this "
            f"tier are not worth buying.{tail}"
        )
    if c.decision == MORE_DATA_PAYS:
        gain = f" another {_gain(c.delta2_at_max, c)}" if c.delta2_at_max is not None else ""
        return (
            f"More data still pays: {m} goes {moved}, and doubling to {two} examples should "
            f"gain{gain}. Run {two} next.{tail}"
        )
    if c.why == FEW_SIZES:
        verb = {"improving": "improves", "worsening": "gets worse"}.get(c.trend, "does not move")
        sizes = len(c.sizes)
        return (
            f"Too early to call: only {sizes} size{'s' if sizes != 1 else ''} ran and {m} "
            f"{verb} ({moved}).{tail} Add {two} to `subsets.sizes` and run the sweep again."
        )
    if c.why == NEXT_SIZE:
        return (
            f"Not settled yet: {m} still gains more than {_gain(c.epsilon, c)} a doubling at "
            f"{last.size:,} examples, but less each time.{tail} Run {two} to see where it levels "
            "off."
        )
    settle = f" To settle it: {c.settle.text}." if c.settle is not None else ""
    return (
        f"Not settled yet: {m} goes {moved}, but the scores vary too much between runs and "
        f"items to tell whether more data pays.{tail}{settle}"
    )


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def headlines(
    analysis: Analysis, diagnostics: Diagnostics | None = None, labels: dict | None = None
) -> list[str]:
    """`headline` per curve, in curve order: what the CLI, the report and the parent run say."""
    out = []
    for c in analysis.curves:
        base = diagnostics.baseline(c.metric) if diagnostics else None
        cells = diagnostics.for_curve(c.tier, c.metric) if diagnostics else ()
        falls = any(
            o.tier == c.tier and o.direction == "lower" and o.trend == "improving"
            for o in analysis.curves
        )
        out.append(headline(c, baseline=base, answers=cells, labels=labels, loss_falls=falls))
    return out


# ----------------------------------------------------------------------------- tables


def decision_table(
    analysis: Analysis, diagnostics: Diagnostics | None = None
) -> list[dict[str, str]]:
    """One display-ready row per (tier, metric): all values are strings ("—" when missing).

    Keys: tier, metric, decision, n_star, n_star_ci, plateau, next_size, zero_shot, certified,
    settle, evidence, answer, summary. `decision` reads "not learning yet" where the curve has
    not left its anchor; `certified` is the graded answer; `settle` what would settle an open
    call; `answer` the plain sentence (`headline`), `summary` the technical one. Scores of
    accuracy-like metrics are in percent, as ε is in points.
    """
    rows = []
    for c, answer in zip(analysis.curves, headlines(analysis, diagnostics), strict=True):
        text = _DECISION_TEXT.get(c.decision, c.decision)
        if c.why == NOT_LEARNING:
            text = "not learning yet"
        rows.append(
            {
                "tier": c.tier,
                "metric": c.metric,
                "decision": text,
                "n_star": "—" if c.n_star is None else f"~{_round2(c.n_star):,}",
                "n_star_ci": _ci_n(c.n_star_ci, rounded=True),
                "plateau": _display(c.plateau, c),
                "next_size": _n(c.next_size),
                "zero_shot": _display(c.zero_shot, c),
                "certified": _certified_short(c),
                "settle": c.settle.text if c.settle is not None else "—",
                "evidence": "paired items" if c.bootstrap.startswith("items") else c.bootstrap,
                "answer": answer,
                "summary": c.summary,
            }
        )
    return rows


def _certified_short(c: CurveResult) -> str:
    """ "< 1.8 points past 256": the graded answer in a table cell."""
    if c.certified_epsilon is None or c.certified_at is None:
        return "—"
    return f"< {_gain(c.certified_epsilon, c)} past {c.certified_at:,}"


def _graded_text(c: CurveResult) -> str:
    """The graded answer as a sentence: the certified bound and n* at a few epsilon."""
    cert = certified_text(c)
    if cert is None:
        return ""
    parts = []
    for r in c.n_star_by_epsilon:
        where = (
            f"~{_round2(r.n_star):,} [{_ci_n(r.n_star_ci, rounded=True)}]"
            if r.n_star is not None
            else "not within the sizes run"
        )
        parts.append(f"ε = {_gain(r.epsilon, c)}: {where}")
    return f"Graded answer: {cert}. n* by ε: " + "; ".join(parts) + "."


def _size_table(c: CurveResult) -> tuple[list[str], list[list[str]]]:
    conf = f"{100 * c.confidence:.0f}%"
    unit = _unit(c)
    head = [
        "size",
        "seeds",
        f"mean ± {conf} CI",
        f"gain per 1k ({unit})",
        f"Δ₂ ({unit}) [{conf} CI]",
        "P(Δ₂ < ε)",
    ]
    k = _scale(c)
    rows = []
    for s in c.sizes:
        half = (s.mean_ci[1] - s.mean_ci[0]) / 2
        mean = f"{_display(s.mean, c)} ± {k * half:.2g}" + (" points" if c.accuracy_like else "")
        rows.append(
            [
                f"{s.size:,}",
                str(s.n_seeds),
                mean,
                "—" if _missing(s.gain_per_1k) else _g3(k * s.gain_per_1k),
                "—"
                if _missing(s.delta2)
                else f"{_g3(k * s.delta2)} [{_g3(k * s.delta2_ci[0])}, {_g3(k * s.delta2_ci[1])}]",
                "—" if _missing(s.p_delta2_below_eps) else f"{s.p_delta2_below_eps:.2f}",
            ]
        )
    return head, rows


# ----------------------------------------------------------------------------- plots


def _bounds(c: CurveResult) -> tuple[float, float]:
    """Where the metric can lie, display units: accuracy 0-100 points, a loss at or above 0."""
    if c.accuracy_like:
        return 0.0, 100.0
    values = [v for s in c.sizes for v in s.values] + [c.zero_shot or 0.0]
    if c.direction == "lower" and min(values) >= 0:
        return 0.0, math.inf
    return -math.inf, math.inf


def _zero_shot_x(curves: list[CurveResult]) -> float:
    """Where the untrained model (size 0) sits on the log axis: one doubling below the first size."""
    return min(c.sizes[0].size for c in curves) / 2


def _why_no_delta2(curves: list[CurveResult]) -> str:
    sizes = sorted({s.size for c in curves for s in c.sizes})
    ran = ", ".join(f"{n:,}" for n in sizes)
    need = 3 - len(sizes)
    more = f"{2 * sizes[-1]:,}" + (f" and {4 * sizes[-1]:,}" if need > 1 else "")
    return (
        f"No Δ₂ panel: the gain from doubling needs a fitted curve,\n"
        f"and a fit needs 3 sizes or more; this run has {len(sizes)} ({ran}).\n"
        f"Add {more} to subsets.sizes and run the sweep again."
    )


def draw_metric(
    fig: Figure,
    analysis: Analysis,
    metric: str,
    labels: dict | None = None,
    baseline: Baseline | None = None,
) -> None:
    """One metric's learning curves on `fig`: scores above, Δ₂ below.

    Accuracy-like metrics are drawn in points (percent), as ε is. Every drawn artist carries a
    `gid` naming what it is (means, points, fit, beyond, plateau, n_star, zero_shot, chance,
    epsilon) and the legend lists exactly the kinds drawn; the y-ranges hold every interval
    drawn (intervals are cut at the metric's own bounds, e.g. 0 and 100 points).
    """
    curves = [c for c in analysis.curves if c.metric == metric]
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2], "hspace": 0.08})
    first = curves[0]
    k = _scale(first)
    lo_b, hi_b = _bounds(first)

    def clip(a):
        return np.clip(np.asarray(a, dtype=float), lo_b, hi_b)

    drawn: set[str] = set()
    all_n: set[int] = set()
    ys: list[float] = []  # everything drawn on the score axis
    d2s: list[float] = []  # everything drawn on the Δ₂ axis
    x0 = _zero_shot_x(curves)
    zeros = {c.zero_shot for c in curves if c.zero_shot is not None}
    for row, c in enumerate(curves):
        col = _colour(analysis, c.tier)
        sizes = np.array([s.size for s in c.sizes], dtype=float)
        all_n.update(int(s) for s in sizes)
        # faint per-seed points, nudged apart in log space so seeds at one size do not overlap
        for s in c.sizes:
            n_seeds = len(s.values)
            if n_seeds < 2:
                continue  # one seed: the point is the mean itself
            jitter = np.exp(0.03 * (np.arange(n_seeds) - (n_seeds - 1) / 2))
            vals = k * np.array(s.values)
            ax.scatter(
                s.size * jitter, vals, s=14, color=col, alpha=0.25, lw=0, zorder=2, gid="points"
            )
            drawn.add("points")
            ys.extend(vals)
        means = k * np.array([s.mean for s in c.sizes])
        lo = clip([k * s.mean_ci[0] for s in c.sizes])
        hi = clip([k * s.mean_ci[1] for s in c.sizes])
        # tiers side by side at each size (3% apart in log space), so no interval hides another
        dodge = 2 ** (0.045 * (row - (len(curves) - 1) / 2))
        ax.errorbar(
            sizes * dodge,
            means,
            yerr=[np.maximum(means - lo, 0), np.maximum(hi - means, 0)],
            fmt="o",
            ms=5,
            color=col,
            capsize=3,
            lw=1.2,
            zorder=4,
            gid="means",
        )
        drawn.add("means")
        ys.extend([*lo, *hi, *means])
        if len(zeros) > 1 and c.zero_shot is not None:  # tiers anchored on different models
            ax.plot([x0], [k * c.zero_shot], marker="D", ms=6, color=col, ls="", gid="zero_shot")
            drawn.add("zero_shot")
            ys.append(k * c.zero_shot)
        if c.band is None:
            ax.plot(sizes, means, color=col, lw=1, alpha=0.6, zorder=3, gid="join")
            continue
        b = c.band
        n = np.array(b.n)
        inside = n <= sizes[-1] * (1 + 1e-9)
        beyond = n >= sizes[-1] * (1 - 1e-9)
        fit, blo, bhi = k * np.array(b.fitted), clip(k * np.array(b.lo)), clip(k * np.array(b.hi))
        ax.fill_between(n[inside], blo[inside], bhi[inside], color=col, alpha=0.15, lw=0, gid="fit")
        ax.fill_between(
            n[beyond], blo[beyond], bhi[beyond], color=col, alpha=0.07, lw=0, gid="beyond"
        )
        ax.plot(n[inside], fit[inside], color=col, lw=1.8, zorder=3, gid="fit")
        ax.plot(n[beyond], fit[beyond], color=col, lw=1.8, ls="--", zorder=3, gid="beyond")
        drawn.update(("fit", "beyond"))
        ys.extend([*blo, *bhi, *fit])
        all_n.add(int(round(n[-1])))
        plateau_ok = c.plateau is not None and not any("plateau weakly" in w for w in c.warnings)
        if plateau_ok and lo_b <= k * c.plateau <= hi_b:
            ax.axhline(k * c.plateau, color=col, ls=":", lw=1.2, alpha=0.9, gid="plateau")
            drawn.add("plateau")
            ys.append(k * c.plateau)
        g = _scale(c)
        d2, dlo, dhi = g * np.array(b.delta2), g * np.array(b.delta2_lo), g * np.array(b.delta2_hi)
        ax2.fill_between(
            n[inside], dlo[inside], dhi[inside], color=col, alpha=0.15, lw=0, gid="fit"
        )
        ax2.fill_between(
            n[beyond], dlo[beyond], dhi[beyond], color=col, alpha=0.07, lw=0, gid="beyond"
        )
        ax2.plot(n[inside], d2[inside], color=col, lw=1.8, gid="fit")
        ax2.plot(n[beyond], d2[beyond], color=col, lw=1.8, ls="--", gid="beyond")
        d2s.extend([*dlo, *dhi, g * c.epsilon])
        if c.n_star is not None:
            for a in (ax, ax2):
                a.axvline(c.n_star, color=col, ls="-.", lw=1.2, alpha=0.9, gid="n_star")
            drawn.add("n_star")
            ax.annotate(  # one text row per tier, so equal n* values do not print on top
                f"{c.tier}: n*≈{_round2(c.n_star):,}",
                xy=(c.n_star, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-3 if c.n_star > sizes[-1] else 3, -11 - 11 * row),
                textcoords="offset points",
                ha="right" if c.n_star > sizes[-1] else "left",  # keep text inside near the edge
                color=col,
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
    if len(zeros) == 1:
        # one untrained model anchors every tier: one point, at "0" one doubling left of the rest
        (z,) = zeros
        ax.plot([x0], [k * z], marker="D", ms=6, color="0.25", ls="", zorder=5, gid="zero_shot")
        ax.axhline(k * z, color="0.45", ls=_ZERO_LS, lw=1.0, alpha=0.8, gid="zero_shot")
        drawn.add("zero_shot")
        ys.append(k * z)
    if baseline is not None and lo_b <= k * baseline.chance <= hi_b:
        label = f"chance {_display(baseline.chance, first)} ({baseline.how})"
        _reference_line(ax, k * baseline.chance, label, "#B00000", (0, (2, 2)), "chance")
        drawn.add("chance")
        ys.append(k * baseline.chance)
    major = baseline.majority if baseline is not None else None
    if major is not None and abs(major - baseline.chance) > 1e-9 and lo_b <= k * major <= hi_b:
        label = f"always {baseline.majority_label}: {_display(major, first)}"
        _reference_line(ax, k * major, label, "#7A4E00", (0, (1, 2)), "majority")
        drawn.add("majority")
        ys.append(k * major)

    if any(c.band is not None for c in curves):
        # epsilon: one line when every tier shares it, else one per tier
        eps = {(c.tier, _scale(c) * c.epsilon) for c in curves if c.band is not None}
        values = {e for _, e in eps}
        if len(values) == 1:
            (e,) = values
            ax2.axhline(e, color="0.2", ls="--", lw=1.2, gid="epsilon")
            text = f"ε = {_gain(curves[0].epsilon, curves[0])}"
        else:
            for tier, e in eps:
                ax2.axhline(e, color=_colour(analysis, tier), ls="--", lw=1.0, gid="epsilon")
            text = f"ε per tier: {min(values):.2g}–{max(values):.2g}"
        ax2.annotate(
            text,
            xy=(0.005, max(values)),
            xycoords=("axes fraction", "data"),
            xytext=(2, 3),
            textcoords="offset points",
            ha="left",
            fontsize=8,
            color="0.2",
        )
        ax2.axhline(0, color="0.6", lw=0.6)
        d2s.append(0.0)
        top, bottom = max(d2s), min(d2s)
        pad = 0.06 * (top - bottom or 1.0)
        ax2.set_ylim(bottom - pad, top + pad)
    else:
        ax2.text(
            0.5,
            0.5,
            _why_no_delta2(curves),
            transform=ax2.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="0.25",
            gid="why_empty",
        )
        ax2.set_yticks([])
    if ys:
        lo_y, hi_y = float(np.min(ys)), float(np.max(ys))
        pad = 0.06 * (hi_y - lo_y or abs(hi_y) or 1.0)
        ax.set_ylim(lo_y - pad, hi_y + pad)

    ticks = sorted(all_n)
    if zeros:
        ticks = [x0, *ticks]
    for a in (ax, ax2):
        a.set_xscale("log", base=2)
        a.xaxis.set_major_locator(FixedLocator(ticks))
        a.xaxis.set_minor_locator(NullLocator())
        a.grid(True, which="major", color="0.9", lw=0.8)
        a.set_axisbelow(True)
        for side in ("top", "right"):
            a.spines[side].set_visible(False)
    ax2.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: "0" if zeros and abs(x - x0) < 1e-9 else f"{int(round(x)):,}")
    )
    if len(ticks) > 8:
        ax2.tick_params(axis="x", labelrotation=45)
    ax2.set_xlabel(
        "training examples (log₂ scale" + ("; 0 = the untrained model)" if zeros else ")")
    )
    better = "higher" if first.direction == "higher" else "lower"
    unit = ", %" if first.accuracy_like else ""
    ax.set_ylabel(f"{_label(metric, labels)}{unit} ({better} is better)")
    ax2.set_ylabel(f"Δ₂: gain from doubling\n({_unit(first)})")
    conf = f"{100 * analysis.confidence:.0f}%"
    ax.set_title(
        f"{_label(metric, labels)}: learning curves per tier ({conf} intervals)",
        loc="left",
        fontsize=11,
    )

    handles = [
        Line2D(
            [],
            [],
            color=_colour(analysis, c.tier),
            marker="o",
            lw=1.8 if c.band else 1.0,
            label=f"tier {c.tier}",
        )
        for c in curves
    ]
    style = {
        "points": {"color": "0.4", "marker": "o", "ls": "", "alpha": 0.4},
        "beyond": {"color": "0.4", "ls": "--", "lw": 1.5},
        "plateau": {"color": "0.4", "ls": ":", "lw": 1.2},
        "n_star": {"color": "0.4", "ls": "-.", "lw": 1.2},
        "zero_shot": {"color": "0.25", "marker": "D", "ls": _ZERO_LS, "lw": 1.0},
        "chance": {"color": "#B00000", "ls": (0, (2, 2)), "lw": 1.2},
        "majority": {"color": "#7A4E00", "ls": (0, (1, 2)), "lw": 1.2},
    }
    for kind, label in LEGEND.items():
        if kind in drawn:
            handles.append(Line2D([], [], label=label, **style[kind]))
    # above the panels, not over the data (bands can fill the whole panel)
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncols=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )


def metric_figure(
    analysis: Analysis,
    metric: str,
    labels: dict | None = None,
    baseline: Baseline | None = None,
) -> Figure:
    """The figure `draw_metric` draws, on its own Agg canvas (what the PNGs are saved from)."""
    fig = Figure(figsize=(8.5, 7.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    draw_metric(fig, analysis, metric, labels, baseline)
    return fig


def _save_metric_png(
    analysis: Analysis,
    metric: str,
    path: Path,
    labels: dict | None,
    baseline: Baseline | None = None,
) -> Path:
    fig = metric_figure(analysis, metric, labels, baseline)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_curve(
    analysis: Analysis,
    out_png: str | Path,
    *,
    metric: str | None = None,
    metric_labels: dict | None = None,
    baseline: Baseline | None = None,
) -> Path:
    """Draw one metric's learning curves (first metric by default) to a PNG file; `baseline`:
    the chance level to draw (loop.diagnose)."""
    metric = metric or analysis.metrics[0]
    if metric not in analysis.metrics:
        raise ValueError(f"no metric {metric!r} in the analysis; have {list(analysis.metrics)}")
    return _save_metric_png(analysis, metric, Path(out_png), metric_labels, baseline)


# ----------------------------------------------------------------------------- documents

# A document is a list of blocks, rendered twice: to Markdown and to HTML.
#   ("h", level, text) ("p", text) ("b", text) ("ul", [items]) ("table", head, rows) ("img", path, alt)


def _blocks(
    analysis: Analysis,
    title: str,
    labels: dict | None,
    notes: list[str] | None,
    plots: dict,
    rounds: list[dict] | None = None,
    diagnostics: Diagnostics | None = None,
) -> list[tuple]:
    conf = f"{100 * analysis.confidence:.0f}%"
    words = dict(
        zip(
            ((c.tier, c.metric) for c in analysis.curves),
            headlines(analysis, diagnostics, labels),
            strict=True,
        )
    )
    out: list[tuple] = [("h", 1, title)]
    if notes:
        out.append(("ul", list(notes)))
    out.append(("h", 2, "Decisions"))
    out.append(
        (
            "ul",
            [
                f"tier {c.tier}, {_label(c.metric, labels)}: {words[(c.tier, c.metric)]}"
                for c in analysis.curves
            ],
        )
    )
    head = [
        "tier",
        "metric",
        "decision",
        "n*",
        f"{conf} CI",
        "plateau",
        "zero-shot",
        f"certified ({conf})",
        "next size",
        "what would settle it",
    ]
    keys = (
        "tier",
        "metric",
        "decision",
        "n_star",
        "n_star_ci",
        "plateau",
        "zero_shot",
        "certified",
        "next_size",
        "settle",
    )
    out.append(("table", head, [[r[k] for k in keys] for r in decision_table(analysis)]))
    if analysis.versus:
        ref = analysis.versus[0].reference
        out.append(("h", 2, f"Selection methods against {ref}"))
        out.append(
            (
                "p",
                f"Each tier against tier {ref} at the sizes both ran: the gap of the mean "
                f"scores (positive = better, for loss as for accuracy) with its {conf} "
                "bootstrap interval. Better or worse: at one size or more the interval excludes 0 "
                "and does not lie within ±ε (a gap that small is not worth acting on); no "
                "different: at every size run it includes 0 (not proof of equality) or lies "
                "within ±ε. "
                "A ranked tier's seeds vary only training, not its examples.",
            )
        )
        out.append(
            (
                "ul",
                [
                    _sentence(v.text.replace(f"({v.metric})", f"({_label(v.metric, labels)})"))
                    for v in analysis.versus
                ],
            )
        )
    if rounds:
        out.append(("h", 2, "Adaptive rounds"))
        out.append(
            (
                "p",
                "After each round the sweep read the curves and chose what to run next; "
                "one row per tier and round.",
            )
        )
        rows = [
            [
                str(r["round"]),
                str(r["tier"]),
                str(r["decision"]),
                str(r["next_sizes"] or "—"),
                str(r["seeds"] or "—"),
                str(r["why"]),
            ]
            for r in rounds
        ]
        out.append(("table", ["round", "tier", "decision", "next sizes", "seeds", "why"], rows))

    for metric in analysis.metrics:
        curves = [c for c in analysis.curves if c.metric == metric]
        out.append(("h", 2, _label(metric, labels)))
        if metric in plots:
            out.append(("img", plots[metric], f"learning curves for {_label(metric, labels)}"))
        base = diagnostics.baseline(metric) if diagnostics else None
        if base is not None:
            out.append(
                (
                    "p",
                    f"Chance: {_display(base.chance, curves[0])} ({base.how}): the score of "
                    "a model that has learned nothing about the task."
                    + (
                        f" Always answering {base.majority_label} scores "
                        f"{_display(base.majority, curves[0])}."
                        if base.majority is not None and base.majority != base.chance
                        else ""
                    ),
                )
            )
        for c in curves:
            out.append(("h", 3, f"tier {c.tier}"))
            out.append(("b", words[(c.tier, c.metric)]))
            out.append(("p", c.summary))
            eps = f"ε = {_gain(c.epsilon, c)}"
            why = "" if c.reason in c.summary else f"Why: {c.reason}. "
            evidence = (
                f"{c.bootstrap} bootstrap: items resampled jointly across cells"
                + (
                    f", training noise from {c.noise.train_source}"
                    if c.noise and c.noise.train_source != "none"
                    else ""
                )
                if c.bootstrap.startswith("items")
                else f"{c.bootstrap} bootstrap"
            )
            anchor = (
                f"; zero-shot {_num(c.zero_shot)}"
                if c.zero_shot is not None
                else "; no zero-shot cell: the first size is the anchor"
            )
            out.append(("p", f"{why}({eps}; {evidence}{anchor}.)"))
            graded = _graded_text(c)
            if graded:
                out.append(("p", graded))
            if c.settle is not None:
                out.append(("p", f"What would settle it: {c.settle.text}."))
            out.append(("table", *_size_table(c)))
            if c.power_law is not None and c.weights is not None:
                pl, ll, w = c.power_law, c.log_linear, c.weights
                sign = "−" if c.direction == "higher" else "+"
                held = ", ".join(f"{n:,}" for n in w.held_out) or "none (3 sizes)"
                out.append(
                    (
                        "p",
                        f"Fit: power law {pl.c:.4g} {sign} {pl.a:.3g}·n^−{pl.b:.3g} (weight "
                        f"{w.power_law:.2f}); log-linear {ll.alpha:.4g} + {ll.beta:.3g}·log₂ n "
                        f"(weight {w.log_linear:.2f}); weights from predicting the held-out "
                        f"sizes {held} from smaller ones (power-law weight averaged over the "
                        f"bootstrap: {w.power_law_boot_mean:.2f}). "
                        + (
                            f"Plateau {_num(c.plateau)} ({conf} CI {_num(c.plateau_ci[0])}–"
                            f"{_num(c.plateau_ci[1])})."
                            if c.plateau_ci
                            else "Plateau not identified: the fit sits on the metric's bound."
                        ),
                    )
                )
            if c.warnings:
                out.append(("ul", [f"⚠ {w}" for w in c.warnings]))
            cells = diagnostics.for_curve(c.tier, c.metric) if diagnostics else ()
            if cells:
                rows = [
                    [
                        "0 (untrained)" if a.size == 0 else f"{a.size:,}",
                        str(a.seed),
                        a.text or "—",
                        a.problem or "",
                    ]
                    for a in cells
                ]
                out.append(("p", "What the model answered, cell by cell:"))
                out.append(("table", ["size", "seed", "answers", "note"], rows))

        exchanges = [e for e in analysis.exchanges if e.metric == metric]
        if exchanges:
            out.append(("h", 3, "Quality vs quantity"))
            for e in exchanges:
                out.append(("b", e.summary))
                rows = []
                for r in e.rows:
                    if r.other_size is None:
                        rows.append([f"{r.size:,}", _num(r.target), "—", "—", r.reason])
                    else:
                        rows.append(
                            [
                                f"{r.size:,}",
                                _num(r.target),
                                f"{_n(r.other_size)} [{_ci_n(r.other_size_ci)}]",
                                f"{r.ratio:.2g}×",
                                "",
                            ]
                        )
                head = [
                    f"tier {e.better} examples",
                    "score",
                    f"tier {e.other} examples for it [{conf} CI]",
                    "ratio",
                    "note",
                ]
                out.append(("table", head, rows))

    out.append(("h", 2, "Warnings"))
    out.append(("ul", list(analysis.warnings) or ["none"]))
    out.append(("h", 2, "How to read this"))
    out.append(
        (
            "p",
            "Δ₂(n) is the gain from doubling n examples (positive = better, for loss as for "
            "accuracy). Each tier's curve is a weighted average of a saturating power law and a "
            "log-linear rival; weights come from how well each predicts the largest sizes from the "
            f"smaller ones. Intervals are {conf} bootstrap intervals ({analysis.n_boot} "
            "replicates). With per-item scores, one resample of the evaluation items is shared "
            "by every cell (paired), and training noise comes from seeds or, with one seed, from "
            "the scatter around the fit; without them each size is independent (seed spread, at "
            "least p(1−p)/m). Saturated: Δ₂ stays below ε with "
            f"{conf} confidence from n* up to the largest size, and the curve has risen above its "
            "zero-shot score (or its first size) by more than ε first; a curve that has not is "
            "not learning yet. More data pays: Δ₂ at the largest size is above ε with "
            f"{conf} confidence. The certified bound is the smallest ε the data supports. "
            "On the plots, accuracy-like scores are in percent; the diamond at 0 is the untrained "
            "model (its score is also drawn across), the red dashed line is chance where it is "
            "known, dashed curves are the one-doubling extrapolation and dotted lines plateaus.",
        )
    )
    return out


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: list[tuple], out_dir: Path) -> str:
    lines: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            lines += ["#" * blk[1] + " " + blk[2], ""]
        elif kind == "p":
            lines += [blk[1], ""]
        elif kind == "b":
            lines += [f"**{blk[1]}**", ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in blk[1]] + [""]
        elif kind == "table":
            head, rows = blk[1], blk[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
            lines.append("|" + "|".join("---" for _ in head) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{blk[2]}]({Path(blk[1]).relative_to(out_dir).as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 980px; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: right; }
th { background: #f4f6f8; }
td:first-child, th:first-child { text-align: left; }
p.decision { font-weight: 600; background: #f7f9fc; border-left: 4px solid #0072B2;
             padding: .4rem .7rem; }
img { max-width: 100%; border: 1px solid #eee; }
li { margin: .15rem 0; }
"""


def _to_html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    body: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            body.append(f"<h{blk[1]}>{e(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            body.append(f"<p>{e(blk[1])}</p>")
        elif kind == "b":
            body.append(f'<p class="decision">{e(blk[1])}</p>')
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in blk[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in blk[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(blk[1]).read_bytes()).decode("ascii")
            body.append(f'<img alt="{e(blk[2])}" src="data:image/png;base64,{data}">')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(
    analysis: Analysis,
    out_dir: Path,
    *,
    title: str,
    metric_labels: dict | None = None,
    notes: list[str] | None = None,
    rounds: list[dict] | None = None,
    costs: CostTable | None = None,
    diagnostics: Diagnostics | None = None,
) -> ReportPaths:
    """Write one PNG per metric, report.md, report.html (images inlined) and summary.json;
    `rounds`: an adaptive sweep's decisions (round, tier, decision, next_sizes, seeds, why);
    `costs`: each tier's sources and licenses, exchange rates and the cost of targets;
    `diagnostics`: chance levels and what each cell answered (loop.diagnose)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    used: set[str] = set()
    for metric in analysis.metrics:
        name = _slug(metric)
        while name in used:  # two metrics that slug alike still get their own file
            name += "_"
        used.add(name)
        plots[metric] = _save_metric_png(
            analysis,
            metric,
            out_dir / f"curve_{name}.png",
            metric_labels,
            diagnostics.baseline(metric) if diagnostics else None,
        )
    blocks = _blocks(analysis, title, metric_labels, notes, plots, rounds, diagnostics)
    if costs is not None:  # before the warnings: the answer's last part
        at = next((i for i, b in enumerate(blocks) if b[:3] == ("h", 2, "Warnings")), len(blocks))
        blocks[at:at] = cost_blocks(costs)
    md = out_dir / "report.md"
    md.write_text(_to_markdown(blocks, out_dir), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(_to_html(blocks, title), encoding="utf-8")
    summary = out_dir / "summary.json"
    doc = to_json(analysis)
    for c, answer in zip(analysis.curves, headlines(analysis, diagnostics), strict=True):
        entry = doc["curves"][c.tier][c.metric]
        entry["answer"] = answer
        base = diagnostics.baseline(c.metric) if diagnostics else None
        entry["chance"] = {"value": base.chance, "how": base.how} if base else None
        cells = diagnostics.for_curve(c.tier, c.metric) if diagnostics else ()
        entry["answers"] = [
            {
                "size": a.size,
                "seed": a.seed,
                "answers": dict(a.answers),
                "references": dict(a.references),
                "collapsed": a.collapsed,
                "never": list(a.never),
                "unparseable": a.unparseable,
            }
            for a in cells
        ]
    summary.write_text(
        json.dumps(
            {
                **doc,
                **({"adaptive_rounds": rounds} if rounds else {}),
                **({"sources": costs_mod.to_json(costs)} if costs is not None else {}),
            },
            indent=2,
            allow_nan=False,
        )
        + "\n",
        encoding="utf-8",
    )
    return ReportPaths(out_dir, md, page, summary, tuple(plots.values()))


# ----------------------------------------------------------------------------- the MLflow view

# Metric names on a sweep's parent run, per tier and metric (`<name>.<tier>.<metric>`): the
# curve itself (step = size), the fitted curve on a denser grid, and one value per decision.
CURVE, FIT = "curve", "fit"
SCALARS = ("n_star", "certified_epsilon", "certified_at", "plateau", "zero_shot")
DECISION_TAG, WHY_TAG = "loop.decision", "loop.why"
# every name the view owns: what it no longer has is removed from the parent
VIEW_NAMES = tuple(f"{n}." for n in (CURVE, FIT, *SCALARS, DECISION_TAG, WHY_TAG))
DECISIONS_TABLE = "report/decisions.json"  # the table artifact, beside report.html


@dataclass(frozen=True)
class ParentView:
    """What a sweep's parent run shows in the MLflow UI, as plain data.

    series: `curve.<tier>.<metric>` (the per-size mean at step = size) and `fit.<tier>.<metric>`
    (the fitted curve at integer sizes from the smallest to the largest size run), each a tuple
    of (step, value); scalars: `n_star.…`, `certified_epsilon.…` and the rest of SCALARS, those
    that exist; tags: `loop.decision.…` (saturated | more_data_pays | inconclusive) and
    `loop.why.…`; table: `decision_table` for the table artifact."""

    series: dict[str, tuple[tuple[int, float], ...]]
    scalars: dict[str, float]
    tags: dict[str, str]
    table: list[dict[str, str]]


def _fit_points(c: CurveResult, points: int) -> tuple[tuple[int, float], ...]:
    # the band runs to 2x the largest size; the UI gets only the range run (no extrapolation)
    if c.band is None:
        return ()
    grid, fitted = np.array(c.band.n), np.array(c.band.fitted)
    steps = np.unique(np.round(np.geomspace(c.sizes[0].size, c.max_size, points)).astype(int))
    values = np.interp(np.log(steps), np.log(grid), fitted)
    return tuple((int(s), float(v)) for s, v in zip(steps, values, strict=True))


def parent_view(analysis: Analysis, *, fit_points: int = 25) -> ParentView:
    """The curves, decisions and table of an analysis under the parent run's names."""
    series: dict[str, tuple[tuple[int, float], ...]] = {}
    scalars: dict[str, float] = {}
    tags: dict[str, str] = {}
    for c in analysis.curves:
        key = f"{c.tier}.{c.metric}"
        series[f"{CURVE}.{key}"] = tuple((s.size, float(s.mean)) for s in c.sizes)
        fit = _fit_points(c, fit_points)
        if fit:
            series[f"{FIT}.{key}"] = fit
        for name in SCALARS:
            value = getattr(c, name)
            if not _missing(value):
                scalars[f"{name}.{key}"] = float(value)
        tags[f"{DECISION_TAG}.{key}"] = c.decision
        tags[f"{WHY_TAG}.{key}"] = c.why
    return ParentView(series, scalars, tags, decision_table(analysis))


# ----------------------------------------------------------------------------- sources and cost


def cost_blocks(table: CostTable) -> list[tuple]:
    """Sources and licenses per tier, the exchange rates and the cost of each target."""
    conf = f"{100 * table.confidence:.0f}%"
    out: list[tuple] = [("h", 2, "Sources, licenses and cost")]
    lines = table.summary()
    if lines:
        out.append(("ul", lines))
    rows = [
        [
            s.tier,
            f"{s.n:,}",
            ", ".join(f"{k} {v:,}" for k, v in s.sources.items()),
            ", ".join(f"{k} {v:,}" for k, v in s.licenses.items()),
            costs_mod.money(s.cost_per_example) if s.cost_per_example is not None else "—",
        ]
        for s in table.sources
    ]
    out.append(
        ("table", ["tier", "training examples", "sources", "licenses", "cost / example"], rows)
    )
    if table.rates:
        rows = [
            [
                r.metric,
                f"1 {r.better}",
                (
                    f"{r.ratio:.2g} {r.other}"
                    if r.ratio is not None
                    else f"more than {r.ratio_floor:.2g} {r.other}"
                    if r.ratio_floor is not None
                    else "—"
                ),
                costs_mod.ratio_ci(r.ci) if r.ci is not None else "—",
                f"{r.cost_ratio:.2g}×" if r.cost_ratio is not None else "—",
            ]
            for r in table.rates
        ]
        head = ["metric", "examples", "score like", f"{conf} CI", "cost ratio (other / better)"]
        out.append(("table", head, rows))
    if table.targets:
        rows = [
            [
                t.metric,
                _num(t.target, 3),
                t.tier,
                _at_most(t, costs_mod.count(t.n)) if t.n is not None else "—",
                _at_most(t, costs_mod.money(t.cost)) if t.cost is not None else "—",
                t.text,
            ]
            for t in table.targets
        ]
        head = ["metric", "target", "tier", "examples", "cost", "in words"]
        out.append(("table", head, rows))
    return out


def _at_most(t, value: str) -> str:
    """A target reached already at the smallest size run: that size (and its cost) is an upper
    bound, not the point where the curve crosses it."""
    return f"≤{value}" if t.status == costs_mod.AT_SMALLEST else value
