from pathlib import Path

import mlflow
import pandas as pd
import pytest

from loop import track


@pytest.fixture()
def store(tmp_path: Path) -> track.Store:
    return track.default_store(tmp_path)


def test_default_store_lives_under_mlruns(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    s = track.resolve_store(None, tmp_path)
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert s.artifact_root == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert track.resolve_store(None, tmp_path) == track.Store("http://127.0.0.1:5999", None)
    assert track.resolve_store("sqlite:////x/y.db", tmp_path).artifact_root == "file:///x/artifacts"


def test_cells_nest_under_one_parent_and_resume_from_the_store(store: track.Store, tmp_path: Path):
    client = track.client_for(store)
    exp = track.ensure_experiment(store, "exp")
    assert track.ensure_experiment(store, "exp") == exp  # idempotent
    kw = dict(recipe_digest="r1", pool_digest="p1")
    parent = track.sweep_parent(client, exp, name="sweep", params={"lr": 0.1}, tags={}, **kw)
    assert track.sweep_parent(client, exp, name="sweep", params={}, tags={}, **kw) == parent
    tags = {"loop.recipe_digest": "r1", "loop.pool_digest": "p1"}
    done = track.start_cell(client, exp, parent, cell="a-n8-s0", tags=tags, params={"x": 1})
    track.log_history(client, done, [("train_loss", 1, 2.0), ("train_loss", 2, 1.0)])
    track.log_metrics(client, done, {"val_loss": 0.5, "eval.exact_match": 0.25})
    src = tmp_path / "m.json"
    src.write_text("{}")
    track.log_subset_input(
        client, done, pd.DataFrame({"id": ["x"]}), name="a-n8-s0", source=src.as_uri()
    )
    track.log_table(client, done, [{"id": "x", "score": 1.0}], "predictions.json")
    track.finish_cell(client, done)
    failed = track.start_cell(client, exp, parent, cell="a-n16-s0", tags=tags, params={})
    track.fail_cell(client, failed, "ValueError: boom")
    dangling = track.start_cell(client, exp, parent, cell="a-n32-s0", tags=tags, params={})
    other = track.start_cell(
        client, exp, parent, cell="a-n8-s0", tags={**tags, "loop.recipe_digest": "r2"}, params={}
    )

    runs = track.cell_runs(client, exp, "r1", "p1")
    assert {r.cell: r.status for r in runs} == {
        "a-n8-s0": "DONE",
        "a-n16-s0": "FAILED",
        "a-n32-s0": "RUNNING",
    }
    assert set(track.done_cells(runs)) == {"a-n8-s0"}
    assert track.mark_interrupted(client, runs) == ["a-n32-s0"]
    assert client.get_run(dangling).info.status == "KILLED"
    assert client.get_run(other).info.status == "RUNNING"  # another recipe's run is not touched

    children = mlflow.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 4
    hist = client.get_metric_history(done, "train_loss")
    assert [(m.step, m.value) for m in hist] == [(1, 2.0), (2, 1.0)]
    run = client.get_run(done)
    assert run.inputs.dataset_inputs[0].dataset.name == "a-n8-s0"
    assert run.data.params["x"] == "1"
    assert "predictions.json" in [a.path for a in client.list_artifacts(done)]
    assert client.get_run(failed).data.tags["loop.error"] == "ValueError: boom"
