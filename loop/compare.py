"""Several sweeps side by side: their decision tables and learning curves, read back from the
parent runs of one tracking store (what `loop report` logged there), and the MLflow UI page that
compares those parent runs.

A sweep is named by its recipe file (the newest parent run of that recipe) or by its parent
run id. The figure is drawn on matplotlib's Agg canvas, as the report's are. Nothing here prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from loop import report, track
from loop.errors import ArgumentError
from loop.recipe import load_recipe, recipe_digest

_RUN_ID = re.compile(r"[0-9a-f]{32}")
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_TIER_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
# the decision table's columns `loop compare` shows, after the sweep's name
COLUMNS = ("tier", "metric", "decision", "n_star", "n_star_ci", "plateau", "certified", "next_size")


@dataclass(frozen=True)
class Comparison:
    sweeps: tuple[track.SweepRecord, ...]
    labels: tuple[str, ...]  # one per sweep: recipe name, with the run id where names repeat
    rows: list[dict[str, str]]  # `sweep` + COLUMNS, grouped by metric and tier
    plot: Path
    url: str  # the MLflow UI's comparison of the parent runs
    curve_urls: dict[str, str]  # per metric: the UI chart of every sweep's curve of it


def _store_of(targets: list[str], tracking_uri: str | None) -> track.Store:
    uris = set()
    for t in targets:
        if Path(t).is_file():
            uris.add(track.resolve_store(load_recipe(t).tracking.uri or tracking_uri).tracking_uri)
    if len(uris) > 1:
        from loop.server import redact  # no password in a message

        raise ArgumentError(
            "RECIPE_OR_RUN: the recipes given track to different stores "
            f"({', '.join(sorted(map(redact, uris)))}); loop compare reads sweeps of one store"
        )
    return track.resolve_store(uris.pop() if uris else tracking_uri)


def _run_id(client, target: str) -> str:
    path = Path(target)
    if path.is_file():
        recipe = load_recipe(path)
        found = track.newest_sweep(client, recipe.experiment, recipe_digest(recipe))
        if found is None:
            raise ArgumentError(
                f"{target}: no sweep of this recipe in the store (experiment "
                f"{recipe.experiment!r}): run `loop sweep {target}` first"
            )
        return found
    if _RUN_ID.fullmatch(target):
        return target
    if path.suffix in (".yaml", ".yml"):
        raise ArgumentError(f"RECIPE_OR_RUN {target!r}: no such recipe file")
    raise ArgumentError(
        f"RECIPE_OR_RUN {target!r}: expected a recipe file or a parent run id (32 hex digits)"
    )


def _labels(sweeps: list[track.SweepRecord]) -> tuple[str, ...]:
    names = [s.recipe or s.name for s in sweeps]
    return tuple(
        f"{n} ({s.run_id[:8]})" if names.count(n) > 1 else n
        for n, s in zip(names, sweeps, strict=True)
    )


def _rows(sweeps: list[track.SweepRecord], labels: tuple[str, ...]) -> list[dict[str, str]]:
    rows = [
        {"sweep": label, **{c: str(r.get(c, "—")) for c in COLUMNS}}
        for s, label in zip(sweeps, labels, strict=True)
        for r in s.table
    ]
    order = {label: i for i, label in enumerate(labels)}
    return sorted(rows, key=lambda r: (r["metric"], r["tier"], order[r["sweep"]]))


def _curves(s: track.SweepRecord) -> dict[tuple[str, str], str]:
    """(tier, metric) -> its `curve.` key; the tiers are the table's (tier names hold no dot)."""
    out = {}
    for r in s.table:
        key = f"{report.CURVE}.{r['tier']}.{r['metric']}"
        if key in s.series:
            out[(str(r["tier"]), str(r["metric"]))] = key
    return out


def plot(sweeps: list[track.SweepRecord], labels: tuple[str, ...], out_png: Path) -> Path:
    """One figure, one panel per metric: each sweep a colour, each tier a line style; points
    are the per-size means, lines the fitted curves."""
    metrics = sorted({m for s in sweeps for (_, m) in _curves(s)})
    tiers = sorted({t for s in sweeps for (t, _) in _curves(s)})
    fig = Figure(figsize=(7.5, 3.6 * len(metrics)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        sizes: set[int] = set()
        for i, (s, label) in enumerate(zip(sweeps, labels, strict=True)):
            col = _COLOURS[i % len(_COLOURS)]
            for (tier, m), key in sorted(_curves(s).items()):
                if m != metric:
                    continue
                j = tiers.index(tier)
                pts = s.series[key]
                sizes.update(n for n, _ in pts)
                fit = s.series.get(f"{report.FIT}.{tier}.{metric}") or pts
                ax.plot(
                    [n for n, _ in fit],
                    [v for _, v in fit],
                    color=col,
                    ls=_TIER_STYLES[j % len(_TIER_STYLES)],
                    lw=1.6,
                    label=f"{label} · {tier}",
                )
                ax.plot(
                    [n for n, _ in pts],
                    [v for _, v in pts],
                    _MARKERS[j % len(_MARKERS)],
                    color=col,
                    ms=5,
                )
        lo, hi = ax.get_ylim()
        if hi - lo < 1e-9 * max(1.0, abs(hi)):  # flat curves (all zero): a readable axis, not 1e-17
            ax.set_ylim(lo - 0.05, hi + 0.05)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sorted(sizes)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{int(round(x)):,}"))
        ax.grid(True, color="0.9", lw=0.8)
        ax.set_axisbelow(True)
        ax.set_title(
            f"{metric}: learning curves (points: means per size; lines: fits)",
            loc="left",
            fontsize=10,
        )
        ax.set_ylabel(metric)
        ax.legend(fontsize=8, frameon=True, framealpha=0.9)
    axes[-1].set_xlabel("training examples (log₂ scale)")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


def compare(
    targets: list[str],
    out_dir: Path,
    *,
    tracking_uri: str | None = None,
    port: int = 5000,
) -> Comparison:
    """The sweeps named by `targets` (recipe files or parent run ids) side by side: one table,
    one plot (`out_dir/compare.png`) and the UI URL comparing their parent runs."""
    store = _store_of(targets, tracking_uri)
    client = track.client_for(store)
    sweeps = []
    for t in targets:
        rid = _run_id(client, t)
        found = track.read_sweep(
            client, rid, prefixes=report.VIEW_NAMES, table_file=report.DECISIONS_TABLE
        )
        if found is None:
            raise ArgumentError(f"RECIPE_OR_RUN {t!r}: no sweep parent run {rid} in this store")
        if not found.table:
            raise ArgumentError(
                f"RECIPE_OR_RUN {t!r}: sweep {rid} has no curves logged yet: "
                "run `loop report RECIPE` (or let its sweep finish)"
            )
        sweeps.append(found)
    if len({s.run_id for s in sweeps}) < len(sweeps):
        raise ArgumentError("RECIPE_OR_RUN: the same sweep is named twice")
    labels = _labels(sweeps)
    ids = [s.run_id for s in sweeps]
    exps = [s.experiment_id for s in sweeps]
    metrics = sorted({m for s in sweeps for (_, m) in _curves(s)})
    curve_urls = {}
    for m in metrics:
        keys = sorted({k for s in sweeps for (_, mm), k in _curves(s).items() if mm == m})
        curve_urls[m] = track.metric_url(keys[0], ids, exps, also=keys[1:], port=port)
    return Comparison(
        sweeps=tuple(sweeps),
        labels=labels,
        rows=_rows(sweeps, labels),
        plot=plot(sweeps, labels, Path(out_dir) / "compare.png"),
        url=track.compare_url(ids, exps, port=port),
        curve_urls=curve_urls,
    )
