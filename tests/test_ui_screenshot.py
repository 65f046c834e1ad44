"""The MLflow UI shows a sweep: a headless-Chromium screenshot of the experiment page.

Skipped where Chromium is absent (`apt-get install chromium`). Set LOOP_SCREENSHOT=path.png to
keep the picture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from loop import driver
from loop.recipe import load_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(url: str, out: Path, *, size: str = "1400,900") -> None:
    """Headless Chromium; the background-networking flags keep it off the (closed) network."""
    subprocess.run(
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
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_experiment_page_renders_the_sweep(tmp_path: Path, monkeypatch):
    import mlflow
    from test_driver import mlflow_server, tiny_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load_recipe(tiny_recipe(tmp_path, sizes=(4, 8), seeds=(0,)))
    driver.sweep(recipe)
    with mlflow_server(recipe, tmp_path) as base:
        exp = mlflow.MlflowClient().get_experiment_by_name("tiny").experiment_id
        out = Path(os.environ.get("LOOP_SCREENSHOT", tmp_path / "ui.png"))
        screenshot(f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning", out)
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 20_000  # a rendered page, not a blank one (a blank 1400x900 is ~5 kB)
