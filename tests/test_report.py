"""The report: files written, PNGs valid, HTML self-contained, JSON complete."""

from __future__ import annotations

import base64
import html
import json
import re
import struct

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
        "zero_shot", "certified", "settle", "evidence",
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
