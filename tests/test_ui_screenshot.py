"""The MLflow UI shows a sweep: a headless-Chromium screenshot of the experiment page.

Skipped where Chromium is absent (`apt-get install chromium`), except in CI, which installs it
and sets LOOP_REQUIRE_CHROMIUM=1. The browser tests carry the `browser` marker, and every run
ends with one line saying whether they passed, failed or were skipped (tests/conftest.py), so
`pytest -q` cannot hide a skip. Set LOOP_SCREENSHOT=path.png to keep the picture.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from loop import driver
from loop.recipe import load_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Debian's chromium (.ci/run), so there the browser test must run, not skip.
REQUIRE = os.environ.get("LOOP_REQUIRE_CHROMIUM") == "1"


def _chromium(
    url: str, *extra: str, size: str = "1400,900", budget: int = 20000
) -> subprocess.CompletedProcess:
    """Headless Chromium; the background-networking flags keep it off the (closed) network."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tempfile.mkdtemp()}",
            f"--window-size={size}",
            f"--virtual-time-budget={budget}",
            *extra,
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def screenshot(url: str, out: Path, *, size: str = "1400,900", budget: int = 20000) -> None:
    _chromium(url, f"--screenshot={out}", size=size, budget=budget)


def rendered_text(url: str, *, budget: int = 20000) -> str:
    """The page's text after its scripts ran (the DOM, tags and scripts removed)."""
    dom = _chromium(url, "--dump-dom", budget=budget).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_chromium_is_there_when_ci_requires_it():
    if REQUIRE:
        assert CHROMIUM, "LOOP_REQUIRE_CHROMIUM=1 but no chromium on PATH (.ci/run installs it)"


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None and not REQUIRE, reason="Chromium is not installed")
def test_experiment_page_renders_the_sweep(tmp_path: Path, monkeypatch):
    import mlflow
    from test_driver import mlflow_server, tiny_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load_recipe(tiny_recipe(tmp_path, sizes=(4, 8), seeds=(0,)))
    driver.sweep(recipe)
    with mlflow_server(recipe, tmp_path) as base:
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name("tiny").experiment_id
        runs = client.search_runs([exp])
        parent = next(r for r in runs if r.data.tags.get("loop.kind") == "sweep")
        child = next(r for r in runs if r.data.tags.get("loop.cell") == "raw-n8-s0")
        page = f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"

        text = rendered_text(page)
        # the runs table: the sweep's parent row, the cleaning run and its raw-pool dataset
        assert parent.info.run_name in text, text[:2000]
        assert "clean" in text and "raw-pool" in text
        # clean + parent + 4 cells + the zero-shot run
        assert re.search(r"\b7\s+matching runs", text), text[:2000]

        text = rendered_text(f"{base}/#/experiments/{exp}/runs/{child.info.run_id}")
        for name in ("raw-n8-s0", "val_loss", "train_loss", "eval.json_match"):
            assert name in text, f"{name!r} not on the run page"

        out = Path(os.environ.get("LOOP_SCREENSHOT", tmp_path / "ui.png"))
        screenshot(page, out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None and not REQUIRE, reason="Chromium is not installed")
def test_parent_chart_view_draws_the_curves_and_the_decision_filter_finds_it(
    tmp_path: Path, monkeypatch
):
    """The parent run's "Model metrics" tab draws curve.<tier>.<metric> against step = size;
    LOOP_CHART_SCREENSHOT=path.png keeps its picture (the README's)."""
    import mlflow
    from test_driver import mlflow_server, tiny_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load_recipe(tiny_recipe(tmp_path, sizes=(4, 8, 16), seeds=(0,)))
    driver.sweep(recipe)
    with mlflow_server(recipe, tmp_path) as base:
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name("tiny").experiment_id
        (parent,) = client.search_runs([exp], filter_string="tags.`loop.kind` = 'sweep'")
        curves = sorted(k for k in parent.data.metrics if k.startswith("curve."))
        assert len(curves) == 6  # 2 tiers x (val_loss + 2 evaluators)
        page = f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}/model-metrics"
        # the charts come after several requests; on a busy machine a look can end before the
        # server answered them all, so look again (up to five times) before calling them missing
        for budget in (30000, 60000, 90000, 120000, 120000):
            text = rendered_text(page, budget=budget)
            if all(k in text for k in curves):
                break
        missing = [k for k in curves if k not in text]
        assert not missing, f"charts missing for {missing}: {text[:2000]}"
        assert "Model metrics" in text and "Step" in text  # charts, against step
        out = Path(os.environ.get("LOOP_CHART_SCREENSHOT", tmp_path / "chart.png"))
        screenshot(page, out, budget=60000)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # the runs table filtered on a decision tag (the README's expression) shows the parent
        tier, metric = curves[0].split(".", 2)[1:]
        decision = parent.data.tags[f"loop.decision.{tier}.{metric}"]
        query = urllib.parse.quote(f"tags.`loop.decision.{tier}.{metric}` = '{decision}'")
        text = rendered_text(
            f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning&searchFilter={query}",
            budget=30000,
        )
        assert re.search(r"\b1\s+matching run\b", text), text[:2000]
        assert parent.info.run_name in text

        # through the server (a store whose values cannot be removed): the same view again
        # writes nothing, a moved value is kept and named, never doubled
        from loop import report, track

        rest = mlflow.MlflowClient(base)
        rid = parent.info.run_id
        got = track.read_sweep(
            rest, rid, prefixes=report.VIEW_NAMES, table_file=report.DECISIONS_TABLE
        )
        series = {k: v for k, v in got.series.items() if k.startswith(("curve.", "fit."))}
        kw = dict(
            scalars={k: v[0][1] for k, v in got.series.items() if k not in series},
            tags={k: v for k, v in got.tags.items() if k.startswith(report.VIEW_NAMES)},
            table=got.table,
            table_file=report.DECISIONS_TABLE,
            managed=report.VIEW_NAMES,
        )
        assert track.log_view(rest, rid, series=series, **kw) == track.ViewWrite((), (), ())
        moved = {**series, curves[0]: tuple((n, v + 1) for n, v in series[curves[0]])}
        assert track.log_view(rest, rid, series=moved, **kw).stale == (curves[0],)
        assert (
            track.read_sweep(
                rest, rid, prefixes=report.VIEW_NAMES, table_file=report.DECISIONS_TABLE
            ).series
            == got.series
        )
