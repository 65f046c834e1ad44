"""The report: files written, PNGs valid, HTML self-contained, JSON complete."""

from __future__ import annotations

import base64
import html
import json
import re
import struct

import numpy as np
import pytest

from loop.curves import analyze
from loop.report import ReportPaths, decision_table, plot_curve, write_report

try:  # pytest puts tests/ on sys.path when tests/ is not a package, the repo root when it is
    from fixtures_curves import SHAPES, demo_records, simulate
except ImportError:  # pragma: no cover
    from tests.fixtures_curves import SHAPES, demo_records, simulate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = {"accuracy": "exact-match accuracy", "val_loss": "validation loss"}


@pytest.fixture(scope="module")
def analysis():
    # three tiers on two metrics, plus a tier with only two sizes (no fit, no band)
    records = demo_records() + simulate(SHAPES["two_sizes"], 0, tier="tiny")
    return analyze(
        records,
        direction={"accuracy": "higher", "val_loss": "lower"},
        eval_size={"accuracy": 5000},
        n_boot=300,
    )


@pytest.fixture(scope="module")
def report(analysis, tmp_path_factory) -> ReportPaths:
    out = tmp_path_factory.mktemp("report") / "nested" / "dir"
    return write_report(
        analysis, out, title="Demo sweep", metric_labels=LABELS, notes=["simulated data"]
    )


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_file_is_written(report, analysis):
    assert len(report.plots) == len(analysis.metrics) == 2
    for p in report.files:
        assert p.is_file() and p.stat().st_size > 0, p
        assert p.parent == report.out_dir
    assert {p.name for p in report.out_dir.iterdir()} == {p.name for p in report.files}


def test_plots_are_valid_pngs(report):
    for p in report.plots:
        data = p.read_bytes()
        w, h = _png_size(data)
        assert w >= 600 and h >= 500  # two panels, readable at report width
        assert data.rstrip().endswith(b"IEND\xaeB`\x82")
        assert len(data) > 20_000  # a blank canvas compresses to a few kB


def test_html_is_self_contained_with_decisions_and_images(report, analysis):
    page = report.html.read_text(encoding="utf-8")
    for c in analysis.curves:
        assert html.escape(c.summary) in page
    for e in analysis.exchanges:
        assert html.escape(e.summary) in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(report.plots)
    assert base64.b64decode(images[0]) == report.plots[0].read_bytes()
    # nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<link" not in page and "<script" not in page
    assert "exact-match accuracy" in page and "simulated data" in page
    assert "P(Δ₂ &lt; ε)" in page or "P(Δ₂ < ε)" in page


def test_markdown_has_tables_decisions_and_relative_images(report, analysis):
    md = report.markdown.read_text(encoding="utf-8")
    for c in analysis.curves:
        assert c.summary in md
    for p in report.plots:
        assert f"]({p.name})" in md
    assert "| size | seeds |" in md
    assert "Quality vs quantity" in md
    assert "## Warnings" in md


def test_summary_json_has_required_keys(report, analysis):
    doc = json.loads(report.summary_json.read_text(encoding="utf-8"))
    required = {
        "decision", "n_star", "n_star_ci", "plateau", "plateau_ci", "delta2_at_max",
        "next_size", "warnings", "summary", "reason", "sizes",
    }  # fmt: skip
    for c in analysis.curves:
        entry = doc["curves"][c.tier][c.metric]
        assert required <= set(entry)
        assert entry["decision"] == c.decision
        assert entry["n_star"] == c.n_star
    assert len(doc["exchanges"]) == len(analysis.exchanges)


def test_decision_table_rows(analysis):
    rows = decision_table(analysis)
    assert len(rows) == len(analysis.curves)
    keys = {
        "tier", "metric", "decision", "n_star", "n_star_ci", "plateau", "next_size", "summary",
        "zero_shot", "certified", "settle", "evidence", "answer",
    }  # fmt: skip
    for row, c in zip(rows, analysis.curves, strict=True):
        assert set(row) == keys
        assert all(isinstance(v, str) for v in row.values())
        assert (row["tier"], row["metric"], row["summary"]) == (c.tier, c.metric, c.summary)
        if c.n_star is None:
            assert row["n_star"] == "—"
        else:
            assert row["n_star"].startswith("~")


def test_plot_curve_writes_one_png(analysis, tmp_path):
    out = plot_curve(analysis, tmp_path / "sub" / "curve.png", metric="val_loss")
    _png_size(out.read_bytes())
    with pytest.raises(ValueError, match="no metric 'bleu'"):
        plot_curve(analysis, tmp_path / "x.png", metric="bleu")


def test_report_prints_nothing(analysis, tmp_path, capsys):
    write_report(analysis, tmp_path, title="quiet")
    plot_curve(analysis, tmp_path / "c.png")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ----------------------------------------------------------------------------- figure artists

from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402

from loop.curves import ItemScore  # noqa: E402
from loop.diagnose import Baseline  # noqa: E402
from loop.report import LEGEND, headline, metric_figure  # noqa: E402

# kinds of drawn artist that the legend names (the rest: tier colours, ε, joins)
_NAMED = set(LEGEND)


def _drawn_y(ax) -> list[float]:
    """Every y an interval, band, point or reference line reaches on `ax`."""
    ys: list[float] = []
    for coll in ax.collections:
        if isinstance(coll, PolyCollection):  # fill_between bands
            for path in coll.get_paths():
                ys.extend(path.vertices[:, 1])
        elif isinstance(coll, LineCollection):  # error bars
            for seg in coll.get_segments():
                ys.extend(seg[:, 1])
        else:  # scatter points
            ys.extend(coll.get_offsets()[:, 1])
    for line in ax.lines:
        y = line.get_ydata()
        if line.get_gid() in ("n_star",):
            continue  # vertical lines span the axis by construction
        ys.extend(float(v) for v in (y if len(y) else []))
    return [float(v) for v in ys if np.isfinite(v)]


def _check_figure(fig, tiers: set[str]) -> set[str]:
    ax, ax2 = fig.axes[:2]
    fig.canvas.draw()  # lay out and render, as the PNG does
    for a in (ax, ax2):
        lo, hi = a.get_ylim()
        ys = _drawn_y(a)
        if ys:
            assert lo <= min(ys) and max(ys) <= hi, (a.get_ylabel(), lo, hi, min(ys), max(ys))
    drawn = {
        art.get_gid() for a in (ax, ax2) for art in (*a.lines, *a.collections) if art.get_gid()
    }
    (legend,) = fig.legends
    entries = {t.get_text() for t in legend.get_texts()}
    named = {kind for kind, label in LEGEND.items() if label in entries}
    assert named == drawn & _NAMED
    assert entries <= set(LEGEND.values()) | {f"tier {t}" for t in tiers}
    assert {e for e in entries if e.startswith("tier ")} == {f"tier {t}" for t in tiers}
    return drawn


def test_demo_like_figure_holds_its_intervals_and_legend_matches(analysis, tmp_path):
    for metric in analysis.metrics:
        tiers = {c.tier for c in analysis.curves if c.metric == metric}
        fig = metric_figure(analysis, metric)
        drawn = _check_figure(fig, tiers)
        assert {"means", "fit", "beyond"} <= drawn
        fig.savefig(tmp_path / f"{metric}.png")
        _png_size((tmp_path / f"{metric}.png").read_bytes())
    acc = metric_figure(analysis, "accuracy").axes[0]
    assert "%" in acc.get_ylabel() and acc.get_ylim()[1] > 1.5  # points, not a 0-1 fraction


def _flat_choice_run(sizes=(16, 32, 64, 128, 256), m=300):
    """A 2-choice set at chance (48-52%) while validation loss falls, untrained model included."""
    rng = np.random.default_rng(0)
    items = []
    for k, size in enumerate((0, *sizes)):
        acc = np.zeros(m)
        acc[rng.choice(m, int(m * rng.uniform(0.48, 0.52)), replace=False)] = 1
        loss = 1.5 - 0.08 * k + 0.3 * rng.standard_normal(m)
        for i in range(m):
            items.append(ItemScore("clean", size, 0, "eval.choice_loglik", f"q{i}", acc[i]))
            items.append(ItemScore("clean", size, 0, "val_loss", f"q{i}", loss[i]))
    return analyze(
        items=items, direction={"val_loss": "lower", "eval.choice_loglik": "higher"}, n_boot=300
    )


CHANCE = Baseline("eval.choice_loglik", 0.5, "1/2: 2 options per item", 0.55, "A")


def test_multiple_choice_figure_draws_chance_and_the_untrained_model(tmp_path):
    an = _flat_choice_run()
    fig = metric_figure(an, "eval.choice_loglik", baseline=CHANCE)
    drawn = _check_figure(fig, {"clean"})
    assert {"chance", "majority", "zero_shot"} <= drawn
    ax = fig.axes[0]
    (chance,) = [ln for ln in ax.lines if ln.get_gid() == "chance"]
    assert chance.get_ydata()[0] == pytest.approx(50.0)
    assert "0" in [t.get_text() for t in fig.axes[1].get_xticklabels()]
    fig.savefig(tmp_path / "mc.png")
    # the plain sentence says chance, and why (validation loss falls)
    (c,) = [c for c in an.curves if c.metric == "eval.choice_loglik"]
    text = headline(c, baseline=CHANCE)
    assert text.startswith("Not learning yet: accuracy (choice_loglik) stays at chance (50%)")
    assert "answer format, not the task" in text


def test_two_sizes_say_why_there_is_no_delta2_panel():
    an = _flat_choice_run(sizes=(16, 32))
    fig = metric_figure(an, "eval.choice_loglik", baseline=CHANCE)
    drawn = _check_figure(fig, {"clean"})
    assert "beyond" not in drawn and "plateau" not in drawn and "n_star" not in drawn
    (why,) = [t for t in fig.axes[1].texts if t.get_gid() == "why_empty"]
    assert "3 sizes or more" in why.get_text() and "16, 32" in why.get_text()
    assert "Add 64 to subsets.sizes" in why.get_text()


def _label_run(levels, zero, m=60, seed=0):
    """Per-item exact-match and validation loss of one tier: `levels` per size, loss falling."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(m)
    items = []
    for k, (size, level) in enumerate(((0, zero), *levels.items())):
        right = (order < round(level * m)).astype(float)
        for i in range(m):
            items.append(ItemScore("clean", size, 0, "eval.normalized_match", f"q{i}", right[i]))
            loss = 2.0 - 0.3 * k + 0.05 * rng.standard_normal()
            items.append(ItemScore("clean", size, 0, "val_loss", f"q{i}", loss))
    return items


def test_a_curve_at_the_majority_label_rate_reads_not_learning_yet():
    # every cell answers the majority label (57 of 60 items), the untrained model no bare label
    from loop.report import headlines

    items = _label_run({32: 0.95, 64: 0.95, 128: 0.95}, zero=0.0)
    base = Baseline("eval.normalized_match", 0.95, "the majority label 'information'", 0.95,
                    "information")  # fmt: skip
    an = analyze(
        items=items,
        direction={"eval.normalized_match": "higher", "val_loss": "lower"},
        n_boot=300,
        chance={"eval.normalized_match": base.floor},
    )
    c = an.curve("clean", "eval.normalized_match")
    assert c.decision != "saturated"
    (text,) = [
        t
        for t, cv in zip(headlines(an, _Diag(base)), an.curves, strict=True)
        if cv is c
    ]
    assert text.startswith(
        "Not learning yet: accuracy (normalized_match) stays at the score of always answering "
        "information (95%) from 32 to 128 examples while validation loss falls"
    ), text
    assert decision_table(an)[0]["decision"] != "saturated"


class _Diag:
    """The two lookups `headlines` makes of loop.diagnose.Diagnostics."""

    def __init__(self, base):
        self.base = base

    def baseline(self, metric):
        return self.base if metric == self.base.metric else None

    def for_curve(self, tier, metric):
        return ()


def test_a_clear_rise_with_a_small_dip_at_the_tail_reads_enough_data():
    from loop.report import headlines

    levels = {32: 0.80, 64: 0.783, 128: 0.767}
    items = _label_run(levels, zero=0.28, m=240)
    an = analyze(
        items=items,
        direction={"eval.normalized_match": "higher", "val_loss": "lower"},
        n_boot=300,
    )
    c = an.curve("clean", "eval.normalized_match")
    assert c.learning and c.trend == "worsening"
    text = dict(zip([id(x) for x in an.curves], headlines(an), strict=True))[id(c)]
    assert not text.startswith("Not learning"), text
