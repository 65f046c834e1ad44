"""`loop compare`: two tiny sweeps side by side, read back from their parent runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import mlflow
import pytest
import yaml
from test_driver import tiny_recipe

from loop import compare, driver
from loop.cli import main
from loop.recipe import load_recipe


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two recipes that differ only in their training budget, swept into one store."""
    root = tmp_path_factory.mktemp("compare")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = []
    for name, steps in (("tiny-a", 2), ("tiny-b", 4)):
        (root / name).mkdir()
        path = tiny_recipe(root / name, name=name, sizes=(4, 8), seeds=(0,), min_steps=steps)
        driver.sweep(load_recipe(path))
        paths.append(path)
    yield root, paths[0], paths[1]
    mp.undo()


def _parent(name: str) -> str:
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name).experiment_id
    (run,) = client.search_runs([exp], filter_string="tags.`loop.kind` = 'sweep'")
    return run.info.run_id


def test_loop_compare_prints_both_sweeps_tables_plot_and_ui_url(two_sweeps, capsys, monkeypatch):
    root, a, b = two_sweeps
    monkeypatch.chdir(root)
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--out", str(root / "cmp"), "--port", "5055"]) == 0
    out = capsys.readouterr().out
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    ids = [_parent("tiny-a"), _parent("tiny-b")]
    # the URL compares exactly the two parent runs
    url = re.search(r"http://127\.0\.0\.1:5055/#/compare-runs\?\S+", out).group(0)
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    assert json.loads(unquote(query["runs"])) == ids
    assert len(json.loads(unquote(query["experiments"]))) == 2  # one experiment per recipe
    png = root / "cmp" / "compare.png"
    assert f"plot: {png}" in out.replace("\n", "")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the table: one row per sweep, tier and metric, as each sweep's own report decided
    cmp = compare.compare([str(a), str(b)], root / "cmp")
    for label, path in zip(cmp.labels, (a, b), strict=True):
        rep = driver.report(load_recipe(path))
        mine = [r for r in cmp.rows if r["sweep"] == label]
        assert len(mine) == len(rep.table) >= 6  # 2 tiers x (val_loss + 2 evaluators)
        for row in rep.table:
            (hit,) = [r for r in mine if (r["tier"], r["metric"]) == (row["tier"], row["metric"])]
            assert (hit["decision"], hit["n_star"]) == (row["decision"], row["n_star"])
    assert cmp.labels == ("tiny-a", "tiny-b")
    assert "tiny-a" in out and "tiny-b" in out and "sweeps side by side" in out
    # rows of one tier and metric sit together, sweep after sweep
    pairs = [(r["metric"], r["tier"]) for r in cmp.rows]
    assert pairs == sorted(pairs) and pairs[0] == pairs[1]
    # the curves read back: the per-size means of both sweeps, at steps 4 and 8
    for s in cmp.sweeps:
        assert [n for n, _ in s.series["curve.raw.val_loss"]] == [4, 8]
    assert "curve.raw.val_loss" in unquote(cmp.curve_urls["val_loss"])


def test_loop_compare_takes_a_parent_run_id_and_refuses_what_is_no_sweep(
    two_sweeps, capsys, monkeypatch
):
    root, a, _ = two_sweeps
    monkeypatch.chdir(root)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    pid = _parent("tiny-b")
    cmp = compare.compare([str(a), pid], root / "cmp2")
    assert [s.run_id for s in cmp.sweeps] == [_parent("tiny-a"), pid]
    assert cmp.labels == ("tiny-a", "tiny-b")
    capsys.readouterr()
    assert main(["compare", str(a), "not-a-run"]) == 2
    assert "expected a recipe file or a parent run id" in capsys.readouterr().err
    assert main(["compare", str(a), "recipes/typo.yaml"]) == 2
    assert "'recipes/typo.yaml': no such recipe file" in capsys.readouterr().err
    assert main(["compare", str(a), "0" * 32]) == 2
    assert f"no sweep parent run {'0' * 32}" in capsys.readouterr().err
    assert main(["compare", str(a), str(a)]) == 2
    assert "named twice" in capsys.readouterr().err
    (root / "none").mkdir()
    fresh = tiny_recipe(root / "none", name="never-swept")
    assert main(["compare", str(fresh)]) == 2
    assert "no sweep of this recipe" in capsys.readouterr().err
    doc = yaml.safe_load(fresh.read_text())
    doc["tracking"] = {"uri": f"sqlite:///{root / 'elsewhere' / 'mlflow.db'}"}
    fresh.write_text(yaml.safe_dump(doc))
    assert main(["compare", str(a), str(fresh)]) == 2
    assert "track to different stores" in capsys.readouterr().err
