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


# ----------------------------------------------------------------------------------------------
# Leases
# ----------------------------------------------------------------------------------------------


def _run(status: str = "RUNNING", beat: float | None = None, owner: str = "") -> track.CellRun:
    tags = {track.OWNER_TAG: owner}
    if beat is not None:
        tags[track.HEARTBEAT_TAG] = f"{beat:.3f}"
    return track.CellRun("r1", "c", status, {}, tags, None)


def test_a_lease_is_live_while_its_heartbeat_is_fresh():
    import time

    now = time.time()
    far = "another-host/123/1.00"
    assert track.lease_live(_run(beat=now - 80, owner=far), interval=30, now=now)
    assert not track.lease_live(_run(beat=now - 91, owner=far), interval=30, now=now)  # 3 beats
    assert not track.lease_live(_run(beat=None, owner=far), interval=30, now=now)  # pre-lease run
    assert not track.lease_live(_run("DONE", beat=now, owner=far), interval=30, now=now)
    assert not track.lease_live(_run("FAILED", beat=now, owner=far), interval=30, now=now)


def test_a_lease_of_a_dead_process_on_this_host_is_void_at_once(tmp_path: Path):
    import socket
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import psutil

        started = f"{psutil.Process(proc.pid).create_time():.2f}"
        owner = f"{socket.gethostname()}/{proc.pid}/{started}"
        assert track.lease_live(_run(beat=time.time(), owner=owner), interval=30)
        # the same pid, but another process (the pid was reused): not the owner
        other = f"{socket.gethostname()}/{proc.pid}/{float(started) - 5:.2f}"
        assert not track.lease_live(_run(beat=time.time(), owner=other), interval=30)
    finally:
        proc.kill()
        proc.wait()
    assert not track.lease_live(_run(beat=time.time(), owner=owner), interval=30)
    assert track.lease_live(_run(beat=time.time(), owner=track.lease_owner()), 30) is False


def test_mark_interrupted_leaves_a_live_lease_alone(store: track.Store):
    import time

    client = track.client_for(store)
    exp = track.ensure_experiment(store, "leases")
    tags = {"loop.kind": "cell", "loop.recipe_digest": "r", "loop.pool_digest": "p"}
    live = client.create_run(
        exp,
        tags={**tags, "loop.cell": "a", track.HEARTBEAT_TAG: f"{time.time():.3f}",
              track.OWNER_TAG: "another-host/1/1.00"},
    ).info.run_id  # fmt: skip
    dead = client.create_run(
        exp,
        tags={**tags, "loop.cell": "b", track.HEARTBEAT_TAG: f"{time.time() - 100:.3f}",
              track.OWNER_TAG: "another-host/1/1.00"},
    ).info.run_id  # fmt: skip
    runs = track.cell_runs(client, exp, "r", "p")
    assert track.running_elsewhere(runs, interval=30) == ["a"]
    assert track.mark_interrupted(client, runs, interval=30) == ["b"]
    assert client.get_run(live).info.status == "RUNNING"
    assert client.get_run(dead).info.status == "KILLED"
    assert track.cell_runs(client, exp, "r", "p", cell="a")[0].run_id == live
    assert track.contested(track.cell_runs(client, exp, "r", "p", cell="a"), "mine", 30)
    assert not track.contested(track.cell_runs(client, exp, "r", "p", cell="b"), "mine", 30)


def test_heartbeat_rewrites_the_tag_while_the_block_runs(store: track.Store):
    import time

    client = track.client_for(store)
    exp = track.ensure_experiment(store, "beats")
    rid = client.create_run(exp, tags={track.HEARTBEAT_TAG: "0"}).info.run_id
    with track.heartbeat(client, rid, interval=0.2):
        time.sleep(1.0)
    beat = float(client.get_run(rid).data.tags[track.HEARTBEAT_TAG])
    assert time.time() - beat < 1.0
    time.sleep(0.5)  # stopped: no more beats
    assert float(client.get_run(rid).data.tags[track.HEARTBEAT_TAG]) == beat


def _points(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_log_view_keeps_one_value_per_step_when_rewritten(store: track.Store):
    client = track.client_for(store)
    exp = track.ensure_experiment(store, "exp")
    run = client.create_run(exp).info.run_id
    managed = ("curve.", "n_star.", "loop.decision.")

    def write(curve, scalars, tags, table):
        return track.log_view(
            client,
            run,
            series={"curve.a.val_loss": curve},
            scalars=scalars,
            tags=tags,
            table=table,
            table_file="report/decisions.json",
            managed=managed,
        )

    first = write(
        ((8, 2.0), (16, 1.5)),
        {"n_star.a.val_loss": 16.0},
        {"loop.decision.a.val_loss": "inconclusive"},
        [{"tier": "a", "n": "one"}],
    )
    assert set(first.written) == {"curve.a.val_loss", "n_star.a.val_loss"}
    # the same view again (re-running the report): nothing is written
    again = write(
        ((8, 2.0), (16, 1.5)),
        {"n_star.a.val_loss": 16.0},
        {"loop.decision.a.val_loss": "inconclusive"},
        [{"tier": "a", "n": "one"}],
    )
    assert again.written == () and again.stale == ()
    # a resumed sweep: a new size, a changed mean, no n* any more, a new decision
    third = write(
        ((8, 2.0), (16, 1.4), (32, 1.3)),
        {},
        {"loop.decision.a.val_loss": "saturated"},
        [{"tier": "a", "n": "two"}],
    )
    assert third.written == ("curve.a.val_loss",) and "n_star.a.val_loss" in third.removed
    assert _points(client, run, "curve.a.val_loss") == [(8, 2.0), (16, 1.4), (32, 1.3)]
    data = client.get_run(run).data
    assert data.metrics["curve.a.val_loss"] == 1.3  # the runs table's column: the largest size
    assert "n_star.a.val_loss" not in data.metrics
    assert client.get_metric_history(run, "n_star.a.val_loss") == []
    assert data.tags["loop.decision.a.val_loss"] == "saturated"
    assert track.STALE_TAG not in data.tags
    # the table artifact is replaced, not appended to (log_table alone appends)
    table = client.load_table(exp, "report/decisions.json", run_ids=[run])
    assert table.to_dict("records") == [{"tier": "a", "n": "two"}]
    # MLflow's own behaviour, the reason for all this: a second value at a step is appended
    client.log_batch(run, metrics=[mlflow.entities.Metric("curve.a.val_loss", 9.0, 1, 8)])
    assert [v for s, v in _points(client, run, "curve.a.val_loss") if s == 8] == [2.0, 9.0]


def test_log_view_on_a_store_without_deletes_keeps_the_old_series_and_says_so(
    store: track.Store, monkeypatch
):
    client = track.client_for(store)
    run = client.create_run(track.ensure_experiment(store, "exp")).info.run_id
    kw = dict(scalars={}, tags={}, table=[{"x": 1}], table_file="t.json", managed=("curve.",))
    track.log_view(client, run, series={"curve.a.m": ((8, 0.5),)}, **kw)
    monkeypatch.setattr(track, "_drop_metrics", lambda *a: False)  # an HTTP server's store
    out = track.log_view(
        client, run, series={"curve.a.m": ((8, 0.6),), "curve.b.m": ((8, 1.0),)}, **kw
    )
    assert out.stale == ("curve.a.m",) and out.written == ("curve.b.m",)
    assert _points(client, run, "curve.a.m") == [(8, 0.5)]  # not doubled
    assert client.get_run(run).data.tags[track.STALE_TAG] == "curve.a.m"
    # a series that only gained a step (a resumed sweep's means) gets just the new step
    out = track.log_view(
        client, run, series={"curve.a.m": ((8, 0.5), (16, 0.7)), "curve.b.m": ((8, 1.0),)}, **kw
    )
    assert out.stale == () and out.written == ("curve.a.m",)
    assert _points(client, run, "curve.a.m") == [(8, 0.5), (16, 0.7)]
    assert track.STALE_TAG not in client.get_run(run).data.tags
