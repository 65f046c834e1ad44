"""The MLflow UI shows a sweep: a headless-Chromium screenshot of the experiment page.

Skipped where Chromium is absent (`apt-get install chromium`), except in CI, which installs it
and sets LOOP_REQUIRE_CHROMIUM=1. Set LOOP_SCREENSHOT=path.png to
keep the picture.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from loop import driver
from loop.recipe import load_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Debian's chromium (.ci/run), so there the browser test must run, not skip.
REQUIRE = os.environ.get("LOOP_REQUIRE_CHROMIUM") == "1"


def _chromium(url: str, *extra: str, size: str = "1400,900") -> subprocess.CompletedProcess:
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
            "--virtual-time-budget=20000",
            *extra,
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def screenshot(url: str, out: Path, *, size: str = "1400,900") -> None:
    _chromium(url, f"--screenshot={out}", size=size)


def rendered_text(url: str) -> str:
    """The page's text after its scripts ran (the DOM, tags and scripts removed)."""
    dom = _chromium(url, "--dump-dom").stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_chromium_is_there_when_ci_requires_it():
    if REQUIRE:
        assert CHROMIUM, "LOOP_REQUIRE_CHROMIUM=1 but no chromium on PATH (.ci/run installs it)"


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
        assert re.search(r"\b6\s+matching runs", text), text[:2000]  # clean + parent + 4 cells

        text = rendered_text(f"{base}/#/experiments/{exp}/runs/{child.info.run_id}")
        for name in ("raw-n8-s0", "val_loss", "train_loss", "eval.json_match"):
            assert name in text, f"{name!r} not on the run page"

        out = Path(os.environ.get("LOOP_SCREENSHOT", tmp_path / "ui.png"))
        screenshot(page, out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
