"""End-to-end sweeps on the tiny random model: tracking layout, resume after SIGKILL, the UI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

from loop import cell as cell_mod
from loop import commands, driver, track
from loop import plan as plan_mod
from loop.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent


def write_pool(path: Path, n: int = 60) -> None:
    """Tiny JSON-extraction task: `name=<w> age=<k>` -> {"name": w, "age": k}."""
    words = ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo"]
    with path.open("w") as f:
        for i in range(n):
            name, age = words[i % 10], 20 + i
            rec = {
                "instruction": "Extract the fields as JSON.",
                "input": f"name={name} age={age}",
                "output": json.dumps({"name": name, "age": age}),
            }
            f.write(json.dumps(rec) + "\n")


def tiny_recipe(
    tmp: Path, *, name: str = "tiny", sizes=(4, 8, 16), seeds=(0, 1), min_steps: int = 2
) -> Path:
    write_pool(tmp / "pool.jsonl")
    recipe = {
        "name": name,
        "pool": {"paths": [str(tmp / "pool.jsonl")]},
        "clean": {
            "steps": ["exact_dedup", "length", "format", "quality"],
            "length": {"min_answer_tokens": 1},
            "split": {"validation": 0.1},
        },
        "tiers": [{"name": "high", "top": 0.5}, {"name": "raw"}],
        "subsets": {"sizes": list(sizes), "seeds": list(seeds)},
        "model": {"name": "tiny-random"},
        "lora": {"r": 4, "alpha": 8},
        "train": {
            "batch_size": 4,
            "max_length": 128,
            "budget": {"policy": "min_steps", "min_steps": min_steps, "epochs": 1},
        },
        "eval": {
            "evaluators": [{"name": "json_match"}, {"name": "exact_match"}],
            "samples": 4,
            "max_new_tokens": 8,
            "batch_size": 4,
        },
    }
    path = tmp / "tiny.yaml"
    path.write_text("# loop sweep tiny.yaml\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


def _adaptive_tiny(tmp: Path):
    """The tiny recipe, one tier, sizes 2/4/8, one seed, adaptive with at most 3 rounds."""
    import dataclasses

    r = load_recipe(tiny_recipe(tmp, sizes=(2, 4, 8), seeds=(0,)))
    return dataclasses.replace(
        r,
        tiers=r.tiers[:1],
        subsets=dataclasses.replace(
            r.subsets,
            strategy="adaptive",
            adaptive=dataclasses.replace(r.subsets.adaptive, max_rounds=3),
        ),
    )


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def children(exp_name: str) -> tuple[str, object]:
    mlflow.set_tracking_uri(f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name(exp_name)
    parents = mlflow.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'sweep'")
    assert len(parents) == 1
    parent = parents.iloc[0]["run_id"]
    kids = mlflow.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    return parent, kids


def test_sweep_tracks_every_cell_under_one_parent(in_tmp: Path):
    recipe = load_recipe(tiny_recipe(in_tmp))
    events = []
    out = driver.sweep(recipe, progress=events.append)
    assert (out.ran, out.skipped, out.failed) == (12, 0, 0)

    parent, kids = children("tiny")
    assert len(kids) == 13  # 12 cells and the base model once (size 0, zero-shot)
    assert set(kids["status"]) == {"FINISHED"}
    assert sorted(kids["tags.loop.cell"]) == sorted(
        [f"{t}-n{n}-s{s}" for t in ("high", "raw") for n in (4, 8, 16) for s in (0, 1)]
        + ["zero-shot-n0-s0"]
    )
    for col in (
        "tags.loop.tier",
        "tags.loop.size",
        "tags.loop.seed",
        "tags.loop.recipe_digest",
        "tags.loop.pool_digest",
        "metrics.val_loss",
        "metrics.eval.json_match",
        "metrics.eval.exact_match",
    ):
        assert kids[col].notna().all(), col
    client = mlflow.MlflowClient()
    run_id = kids.iloc[0]["run_id"]
    run = client.get_run(run_id)
    assert run.inputs.dataset_inputs[0].dataset.name == run.data.tags["loop.cell"]
    assert client.get_metric_history(run_id, "train_loss"), "per-step train_loss missing"
    assert "predictions.json" in [a.path for a in client.list_artifacts(run_id)]
    # per-item scores of every evaluator and the validation loss, for the paired analysis
    for rid in kids["run_id"]:
        items = track.load_item_scores(client, rid)
        assert {"val_loss", "eval.json_match", "eval.exact_match"} <= set(items), rid
        assert len(items["eval.json_match"]) == 4  # eval.samples
        n_val = int(client.get_run(parent).data.params["validation.n"])
        assert len(items["val_loss"]) == n_val  # the loss covers every validation item
    parent_files = [a.path for a in client.list_artifacts(parent, "report")]
    assert "report/summary.json" in parent_files and "report/report.html" in parent_files
    # the report's plain sentences on the parent: one tag per tier and metric, and the description
    tags = client.get_run(parent).data.tags
    for row in out.report.table:
        assert tags[f"loop.answer.{row['tier']}.{row['metric']}"] == row["answer"]
        assert row["answer"] in tags["mlflow.note.content"]
    # what each cell answered, from its logged predictions
    doc = json.loads((in_tmp / "mlruns" / "work" / "tiny" / "report" / "summary.json").read_text())
    answers = doc["curves"]["high"]["eval.json_match"]["answers"]
    # the base model first, then each cell of the tier; json_match reports the unparseable share
    assert [(a["size"], a["seed"]) for a in answers] == [
        (0, 0), (4, 0), (4, 1), (8, 0), (8, 1), (16, 0), (16, 1)
    ]  # fmt: skip
    by_cell = {(int(r["tags.loop.size"]), int(r["tags.loop.seed"])): r["run_id"]
               for _, r in kids.iterrows() if r["tags.loop.tier"] in ("high", "zero-shot")}  # fmt: skip
    for a in answers:
        rows = track.load_predictions(client, by_cell[(a["size"], a["seed"])])
        valid = [float(r["json_match.valid"]) for r in rows]
        assert valid and a["unparseable"] == pytest.approx(1 - sum(valid) / len(valid)), a
    # progress: one start and one done event per cell, counting up to the total
    done = [e for e in events if e.kind == "cell_done"]
    assert [e.done for e in done] == list(range(1, 13)) and done[-1].total == 12
    # the ETA: estimated before the first cell, then after each one from the cells measured
    said = [e.message for e in events if e.kind == "message"]
    assert any(m.startswith("estimated time for 12 cell(s)") for m in said), said
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in done)
    assert done[-1].eta_s == 0  # nothing left
    assert done[0].eta_s > done[-2].eta_s  # it counts down as cells finish
    kept = plan_mod.load_rates(recipe, "cpu")  # for the next `loop plan` here
    assert kept is not None and kept.cells == 13 and kept.tokens_per_s > 0

    again = driver.sweep(recipe)
    assert (again.ran, again.skipped) == (0, 12)
    assert len(children("tiny")[1]) == 13  # the zero-shot run is not repeated either

    rows = commands.status(recipe)
    assert {r.state for r in rows} == {"done"} and len(rows) == 13


def test_changing_results_fields_starts_a_new_sweep(in_tmp: Path):
    path = tiny_recipe(in_tmp, sizes=(4,), seeds=(0,))
    driver.sweep(load_recipe(path))
    text = path.read_text()
    path.write_text(text.replace("description: ''", "") + "description: cosmetic only\n")
    again = driver.sweep(load_recipe(path))
    assert (again.ran, again.skipped) == (0, 2)  # 2 tiers x 1 size x 1 seed
    path.write_text(text.replace("r: 4", "r: 2"))
    changed = driver.sweep(load_recipe(path))
    assert (changed.ran, changed.skipped) == (2, 0)


def _done_runs() -> dict[str, list[str]]:
    """Finished cell runs by cell, read from the SQLite file directly and read-only: opening the
    store with mlflow while the sweep creates it would run its schema migrations twice at once
    (seen: `AttributeError: dimension_attributes` in the sweep's store check)."""
    import sqlite3

    db = Path.cwd() / "mlruns" / "mlflow.db"
    if not db.is_file():
        return {}
    query = """
        SELECT c.value, r.run_uuid FROM runs r
        JOIN tags c ON c.run_uuid = r.run_uuid AND c.key = 'loop.cell'
        JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'loop.kind' AND k.value = 'cell'
        JOIN tags d ON d.run_uuid = r.run_uuid AND d.key = 'loop.done' AND d.value = '1'
        WHERE r.status = 'FINISHED'"""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            rows = con.execute(query).fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return {}
    out: dict[str, list[str]] = {}
    for cell, run_id in rows:
        out.setdefault(cell, []).append(run_id)
    return out


def test_sigkill_mid_sweep_loses_no_finished_cell(in_tmp: Path):
    path = tiny_recipe(in_tmp, sizes=(4, 8, 16), seeds=(0,), min_steps=40)
    cmd = [sys.executable, "-m", "loop.cli", "sweep", str(path)]
    env = {**os.environ, "CI": "1"}
    proc = subprocess.Popen(
        cmd,
        cwd=in_tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 480  # generous: a loaded 2-core machine runs these cells slowly
    while time.time() < deadline and len(_done_runs()) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done_runs()
    assert 2 <= len(before) < 7, before  # 6 cells and the zero-shot run

    rerun = subprocess.run(cmd, cwd=in_tmp, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = _done_runs()
    assert len(after) == 7
    for cell, ids in before.items():
        assert after[cell] == ids, f"{cell} was rerun"
    assert all(len(ids) == 1 for ids in after.values())
    mlflow.set_tracking_uri(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("tiny")
    killed = mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'KILLED'")
    assert len(killed) <= 1  # the cell running at the kill, if it had started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(recipe, cwd: Path):
    """`loop ui`'s command on a free port; yields the base URL once /health answers."""
    cmd, _url = commands.ui_command(recipe, port=_free_port())
    port = int(cmd[cmd.index("--port") + 1])
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        f"the MLflow server ({' '.join(cmd)}) never answered {base}/health"
                    ) from None
                time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_mlflow_server_lists_the_sweep_runs(in_tmp: Path):
    recipe = load_recipe(tiny_recipe(in_tmp, sizes=(4,), seeds=(0,)))
    driver.sweep(recipe)
    with mlflow_server(recipe, in_tmp) as base:
        exp = json.load(
            urllib.request.urlopen(
                base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny", timeout=10
            )
        )
        eid = exp["experiment"]["experiment_id"]
        req = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search",
            method="POST",
            data=json.dumps({"experiment_ids": [eid]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        runs = json.load(urllib.request.urlopen(req, timeout=10))["runs"]
        kinds = sorted(
            next(t["value"] for t in r["data"]["tags"] if t["key"] == "loop.kind") for r in runs
        )
        # 2 tiers x 1 size x 1 seed, and the zero-shot run
        assert kinds == ["cell", "cell", "cell", "clean", "sweep"]


def test_demo_recipe_end_to_end_on_the_tiny_model(in_tmp: Path):
    """recipes/demo.yaml as shipped, shrunk: tiny model, 300 records, two small sizes."""
    import dataclasses

    r = load_recipe(ROOT / "recipes" / "demo.yaml")
    r = dataclasses.replace(
        r,
        model=dataclasses.replace(r.model, name="tiny-random"),
        subsets=dataclasses.replace(r.subsets, sizes=(4, 8)),
        # the tiny tokenizer is byte-level: a 300-character ticket is 300 tokens
        train=dataclasses.replace(
            r.train,
            max_length=1024,
            budget=dataclasses.replace(r.train.budget, min_steps=2, epochs=1),
        ),
        eval=dataclasses.replace(r.eval, samples=4, max_new_tokens=8),
    )
    out = commands.demo(r, rows=300)
    assert (out.sweep.ran, out.sweep.failed) == (4, 0)
    assert out.sweep.report is not None and Path(out.sweep.report.paths.html).is_file()
    assert {row["tier"] for row in out.sweep.report.table} == {"clean", "raw"}
    assert "precision" in out.cleaning_score and "recall" in out.cleaning_score
    _, kids = children("demo")
    assert len(kids) == 5 and set(kids["status"]) == {"FINISHED"}  # 4 cells + zero-shot


@pytest.mark.slow
def test_demo_on_the_real_model_finds_where_clean_data_saturates(in_tmp: Path):
    """recipes/demo.yaml on the packaged SmolLM2-135M, on a smaller pool of another generator
    seed (1,000 records, 150 validation items). Real training and evaluation: 16 CPU-minutes, 22
    min wall on 2 shared cores (benchmarks/results/demo/slow_seed1.txt). The clean tier must rise
    above zero-shot and then flatten: `saturated`, n* a size run."""
    r = load_recipe(ROOT / "recipes" / "demo.yaml")
    out = commands.demo(r, rows=1000, seed=1)
    assert (out.sweep.failed, out.sweep.report is not None) == (0, True)
    analysis = out.sweep.report.analysis
    print("\n".join(f"{c.tier} {c.metric}: {c.summary}" for c in analysis.curves))
    saturated = [c for c in analysis.curves if c.tier == "clean" and c.decision == "saturated"]
    assert saturated, [(c.tier, c.metric, c.decision, c.why) for c in analysis.curves]
    sizes = r.subsets.sizes
    for c in saturated:
        assert min(sizes) <= c.n_star <= max(sizes) and c.n_star_ci is not None
        assert c.certified_epsilon is not None and c.certified_epsilon < c.epsilon
        assert c.zero_shot is not None and c.learning  # it rose above the untrained model first
    assert any(row["decision"] == "saturated" for row in out.sweep.report.table)
    assert analysis.exchanges  # raw against clean: the quality-vs-quantity answer


class _CurveTrainer:
    """Test double for `cell.train_and_evaluate`: no model is trained; each cell's accuracy is
    drawn from a known curve A(n) = 0.9 - 0.8 n^-0.5 plus seeded binomial noise on 400 items."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, recipe, cell, subset, val, base, on_step, save_to=None):
        import random
        import types

        self.calls.append(cell.id)
        p = 0.9 - 0.8 * cell.size**-0.5
        rng = random.Random(f"{cell.id}")
        acc = sum(rng.random() < p for _ in range(400)) / 400
        result = types.SimpleNamespace(
            steps=2, epochs=1.0, policy="min_steps", micro_batch=4, grad_accum=1,
            oom_retries=0, train_tokens=100 * cell.size, seconds=0.01,
        )  # fmt: skip
        ev = types.SimpleNamespace(
            metrics={"eval.json_match": acc, "val_loss": 1.0 - acc},
            n_sampled=400,
            predictions=[{"id": "x", "prediction": "{}", "json_match": acc}],
            item_scores={},
        )
        return result, ev


def test_adaptive_sweep_logs_its_rounds_and_resumes(in_tmp: Path, monkeypatch):

    fake = _CurveTrainer()
    monkeypatch.setattr(cell_mod, "train_and_evaluate", fake)
    r = _adaptive_tiny(in_tmp)
    messages: list[str] = []
    out = driver.sweep(r, progress=lambda e: messages.append(e.message))
    assert out.decisions and {d["round"] for d in out.decisions} >= {0, 1}
    assert any(m.startswith("round 1 · high:") for m in messages)
    first = list(fake.calls)
    assert first[:3] == ["high-n2-s0", "high-n4-s0", "high-n8-s0"]
    assert len(first) > 3  # the curve asked for more than the first round
    parent, kids = children("tiny")
    assert len(kids) == len(first) + 1  # and the zero-shot run
    client = mlflow.MlflowClient()
    logged = json.loads(
        Path(client.download_artifacts(parent, "adaptive_decisions.json")).read_text()
    )
    assert logged == out.decisions
    report_md = (in_tmp / "mlruns" / "work" / "tiny" / "report" / "report.md").read_text()
    assert "## Adaptive rounds" in report_md
    # a re-run replays the same rounds from the store and trains nothing new
    again = driver.sweep(r)
    assert fake.calls == first and again.ran == 0
    assert again.decisions == out.decisions


def test_adaptive_sweep_rescores_finished_cells_when_the_curve_asks_for_items(
    in_tmp: Path, monkeypatch
):
    """Advice for more evaluation items re-scores the tier's finished cells (and the anchor)
    with their adapters, without training them again, before the next look at the curve."""

    from loop import adaptive

    r = _adaptive_tiny(in_tmp)
    seen: list[tuple[int | None, bool]] = []

    def plan(recipe, tier, curve, metric, ran, cap, items_now=None, can_rescore=False):
        # the curve's advice, made certain: item noise dominates, 6 items settle it
        seen.append((items_now, can_rescore))
        if items_now is None:
            return adaptive._Plan(tier, "inconclusive", (), (), "asks for items", curve, 6)
        return adaptive._Plan(tier, "saturated", (), (), "settled", curve)

    monkeypatch.setattr(adaptive, "_plan_tier", plan)
    out = driver.sweep(r)
    assert seen == [(None, True), (6, True)]  # re-scored between the two looks
    assert [d["eval_items"] for d in out.decisions if d["round"] == 1] == [6]
    parent, kids = children("tiny")
    assert len(kids) == 4  # 3 cells + the zero-shot run: nothing new was trained
    client = mlflow.MlflowClient()
    for rid in kids["run_id"]:
        run = client.get_run(rid)
        assert int(run.data.metrics["eval_items"]) == 6  # was eval.samples = 4
        assert len(track.load_item_scores(client, rid)["eval.json_match"]) == 6
        history = client.get_metric_history(rid, "eval_items")
        assert [int(m.value) for m in sorted(history, key=lambda m: m.step)] == [4, 6]
        steps = int(run.data.params.get("budget.steps", 0))
        if steps:  # trained cells: the train loss history ends where training ended
            assert max(m.step for m in client.get_metric_history(rid, "train_loss")) <= steps
    curve = out.report.analysis.curve("high", "eval.json_match")
    assert curve.noise.items == 6  # the report pairs the cells on the new items


def test_adaptive_sweep_rejects_an_unknown_steering_metric_before_training(in_tmp: Path):
    import dataclasses

    from loop.recipe import RecipeError

    r = load_recipe(tiny_recipe(in_tmp, sizes=(2, 4, 8), seeds=(0,)))
    sub = dataclasses.replace(
        r.subsets,
        strategy="adaptive",
        adaptive=dataclasses.replace(r.subsets.adaptive, metric="eval.jsn_match"),
    )
    with pytest.raises(RecipeError) as err:
        driver.sweep(dataclasses.replace(r, subsets=sub))
    assert (
        "subsets.adaptive.metric: must be one of val_loss, eval.json_match, eval.exact_match"
        in (str(err.value))
    )
    assert not (in_tmp / "mlruns" / "mlflow.db").exists() or children_count() == 0


def children_count() -> int:
    mlflow.set_tracking_uri(f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("tiny")
    if exp is None:
        return 0
    return len(mlflow.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'cell'"))


def _with_heartbeat(path: Path, seconds: float) -> Path:
    data = yaml.safe_load(path.read_text())
    data["tracking"] = {"heartbeat_seconds": seconds}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_cell_leased_elsewhere_waits_then_runs_here_once_the_lease_is_stale(in_tmp: Path):
    from loop import track
    from loop.recipe import recipe_digest

    recipe = load_recipe(_with_heartbeat(tiny_recipe(in_tmp, sizes=(4,), seeds=(0,)), 0.5))
    prep = driver.prepare(recipe)
    store = track.resolve_store(None)
    client = track.client_for(store)
    exp = track.ensure_experiment(store, recipe.experiment)
    # another machine's driver holds raw-n4-s0 and beats until high-n4-s0 is done here, then
    # dies: this driver skips raw-n4-s0 while the lease is live, and takes it over once stale
    held = client.create_run(
        exp,
        run_name="raw-n4-s0",
        tags={
            "loop.kind": "cell",
            "loop.cell": "raw-n4-s0",
            "loop.tier": "raw",
            "loop.size": "4",
            "loop.seed": "0",
            "loop.recipe_digest": recipe_digest(recipe),
            "loop.pool_digest": prep.pool_digest,
            track.HEARTBEAT_TAG: f"{time.time():.3f}",
            track.OWNER_TAG: "another-host/4242/1.00",
        },
    ).info.run_id
    digests = (recipe_digest(recipe), prep.pool_digest)
    stop = threading.Event()

    def other_driver() -> None:
        while not stop.wait(0.2):
            client.set_tag(held, track.HEARTBEAT_TAG, f"{time.time():.3f}")
            if track.done_cells(track.cell_runs(client, exp, *digests, "high-n4-s0")):
                return  # dies without a word

    beater = threading.Thread(target=other_driver, daemon=True)
    beater.start()
    messages: list[str] = []
    try:
        out = driver.sweep(recipe, prep=prep, progress=lambda e: messages.append(e.message))
    finally:
        stop.set()
        beater.join()
    text = "\n".join(messages)
    assert "1 cell(s) running elsewhere (another driver): raw-n4-s0" in text
    assert "raw-n4-s0: running elsewhere (another driver holds it)" in text
    assert "waiting for cells running elsewhere: raw-n4-s0" in text
    assert (out.ran, out.failed) == (2, 0)  # high here at once, raw here after the lease ended
    assert client.get_run(held).info.status == "KILLED"
    done = _done_runs()
    assert sorted(done) == ["high-n4-s0", "raw-n4-s0", "zero-shot-n0-s0"]
    assert all(len(v) == 1 for v in done.values())


def test_export_items_and_loop_curve_give_the_report_decision(in_tmp: Path, capsys):
    from loop.cli import main

    path = tiny_recipe(in_tmp, sizes=(4, 8, 16), seeds=(0,))
    recipe = load_recipe(path)
    out = driver.sweep(recipe)
    csv = in_tmp / "items.csv"
    assert main(["export", str(path), "--items", str(csv)]) == 0
    header = csv.read_text().splitlines()[0]
    assert header == "tier,metric,size,seed,item,score"
    sizes = {int(line.split(",")[2]) for line in csv.read_text().splitlines()[1:]}
    assert sizes == {0, 4, 8, 16}  # the zero-shot run is in every tier
    capsys.readouterr()
    sat = recipe.saturation
    args = ["curve", str(csv), "--json", "--confidence", str(sat.confidence)]
    if sat.epsilon is not None:
        args += ["--epsilon", str(sat.epsilon)]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)["curves"]
    parent, _ = children("tiny")
    on_parent = mlflow.MlflowClient().get_run(parent).data.metrics
    for c in out.report.analysis.curves:
        assert on_parent[f"zero_shot.{c.tier}.{c.metric}"] == pytest.approx(c.zero_shot)
        assert c.bootstrap.startswith("items"), (c.tier, c.metric)
        again = doc[c.tier][c.metric]
        assert (again["decision"], again["why"]) == (c.decision, c.why), (c.tier, c.metric)
        assert again["zero_shot"] == pytest.approx(c.zero_shot)


def test_loop_evaluate_adds_items_to_finished_cells_without_retraining(in_tmp: Path):
    from loop.cli import main

    path = tiny_recipe(in_tmp, sizes=(4, 8), seeds=(0,))
    recipe = load_recipe(path)
    driver.sweep(recipe)
    parent, kids = children("tiny")
    client = mlflow.MlflowClient()
    before = {}
    for _, k in kids.iterrows():
        rid = k["run_id"]
        before[rid] = (
            client.get_run(rid).data.params.get("budget.steps"),
            [(m.step, m.value) for m in client.get_metric_history(rid, "train_loss")],
            int(client.get_run(rid).data.metrics["eval_items"]),
        )
        assert before[rid][2] == 4  # eval.samples
        if k["tags.loop.tier"] != "zero-shot":
            names = {a.path for a in client.list_artifacts(rid, "adapter")}
            assert "adapter/adapter_model.safetensors" in names
    assert main(["evaluate", str(path), "--samples", "5"]) == 0
    _, again = children("tiny")
    assert sorted(again["run_id"]) == sorted(kids["run_id"])  # the same runs, no new ones
    for rid, (steps, history, items) in before.items():
        run = client.get_run(rid)
        assert run.data.params.get("budget.steps") == steps  # not trained again
        assert [(m.step, m.value) for m in client.get_metric_history(rid, "train_loss")] == history
        assert int(run.data.metrics["eval_items"]) == 5 > items
        scores = track.load_item_scores(client, rid)
        assert len(scores["eval.json_match"]) == 5
    # the report now pairs the cells on the 5 items
    rep = driver.report(recipe)
    assert rep is not None
    for c in rep.analysis.curves:
        if c.metric == "eval.json_match":
            assert c.noise.items == 5


def test_a_tier_that_repeats_another_is_not_trained(in_tmp: Path):
    # nothing to clean: `raw` holds exactly the examples of `all`, so its cells would repeat them
    path = tiny_recipe(in_tmp, sizes=(4, 8), seeds=(0,))
    data = yaml.safe_load(path.read_text())
    data["clean"]["steps"] = ["exact_dedup", "length"]
    data["tiers"] = [{"name": "all", "top": 1.0}, {"name": "raw"}]
    path.write_text("# loop sweep tiny.yaml\n" + yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(path)
    events = []
    out = driver.sweep(recipe, progress=events.append)
    assert (out.ran, out.failed) == (2, 0)
    said = " ".join(str(getattr(e, "message", "")) for e in events)
    assert "tier raw holds the same 54 examples as tier all" in said
    _, kids = children("tiny")
    assert sorted(kids["tags.loop.cell"]) == ["all-n4-s0", "all-n8-s0", "zero-shot-n0-s0"]
    report_md = (in_tmp / "mlruns" / "work" / "tiny" / "report" / "report.md").read_text()
    assert "tier raw holds the same 54 examples as tier all" in report_md
    from loop.plan import plan

    p = plan(recipe)
    assert [r.cell for r in p.rows] == ["all-n4-s0", "all-n8-s0"]
    assert any("its cells would repeat all's" in n for n in p.notes)


def test_parent_carries_one_curve_value_per_size_through_resume_and_rerun(in_tmp: Path):
    from loop.recipe import expand_cells

    recipe = load_recipe(tiny_recipe(in_tmp, sizes=(4, 8, 16), seeds=(0,)))
    # a sweep stopped before its largest size, then resumed: a new step and, with 3 sizes, a fit
    driver.sweep(recipe, cells=[c for c in expand_cells(recipe) if c.size < 16])
    parent, _ = children("tiny")
    client = mlflow.MlflowClient()
    early = client.get_metric_history(parent, "curve.raw.val_loss")
    assert sorted(m.step for m in early) == [4, 8]
    out = driver.sweep(recipe)
    driver.report(recipe)  # and the report once more
    assert children("tiny")[0] == parent
    run = client.get_run(parent)
    curves = out.report.analysis.curves
    assert any(c.band is not None for c in curves)
    assert {(c.tier, c.metric) for c in curves} >= {("raw", "val_loss"), ("high", "val_loss")}
    for c in curves:
        key = f"{c.tier}.{c.metric}"
        hist = client.get_metric_history(parent, f"curve.{key}")
        assert sorted(m.step for m in hist) == [4, 8, 16], key  # one value per size
        by_step = {m.step: m.value for m in hist}
        for s in c.sizes:
            assert by_step[s.size] == pytest.approx(s.mean), (key, s.size)
        fit = sorted(m.step for m in client.get_metric_history(parent, f"fit.{key}"))
        if c.band is not None:
            assert len(fit) == len(set(fit)) >= 8 and (fit[0], fit[-1]) == (4, 16), key
        assert run.data.tags[f"loop.decision.{key}"] == c.decision
        assert run.data.tags[f"loop.decision.{key}"] in {
            "saturated",
            "more_data_pays",
            "inconclusive",
        }
        for name in ("n_star", "certified_epsilon", "plateau", "zero_shot"):
            value = getattr(c, name)
            if value is None:
                assert f"{name}.{key}" not in run.data.metrics
            else:
                assert len(client.get_metric_history(parent, f"{name}.{key}")) == 1
                assert run.data.metrics[f"{name}.{key}"] == pytest.approx(value)
    table = client.load_table(run.info.experiment_id, "report/decisions.json", run_ids=[parent])
    assert len(table) == len(curves)  # rewritten by every report, not appended to
    assert set(zip(table["tier"], table["metric"], strict=True)) == {
        (c.tier, c.metric) for c in curves
    }
    # the runs table filters on the decision (the README's expression)
    c = curves[0]
    hits = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`loop.decision.{c.tier}.{c.metric}` = '{c.decision}'",
    )
    assert [r.info.run_id for r in hits] == [parent]


def test_of_two_zero_shot_claims_the_earlier_one_keeps_the_cell_whatever_its_id():
    # the bug this guards: the later claim went on when its run id sorted first, so two drivers
    # both evaluated the base model
    now = time.time()
    live = {track.HEARTBEAT_TAG: f"{now:.3f}", track.OWNER_TAG: "elsewhere/1"}

    def claim(run_id: str, start_ms: int, status: str = "RUNNING") -> track.CellRun:
        return track.CellRun(run_id, "zero-shot-n0-s0", status, {}, dict(live), None, start_ms)

    early, late = claim("ffff", 1_000), claim("0000", 1_050)
    assert driver.earlier_claims([early, late], "zero-shot-n0-s0", "0000", 30.0) == [early]
    assert driver.earlier_claims([early, late], "zero-shot-n0-s0", "ffff", 30.0) == []
    same_ms = [claim("aaaa", 1_000), claim("bbbb", 1_000)]  # a tie: the smaller id keeps it
    assert driver.earlier_claims(same_ms, "zero-shot-n0-s0", "bbbb", 30.0) == [same_ms[0]]
    assert driver.earlier_claims(same_ms, "zero-shot-n0-s0", "aaaa", 30.0) == []
    done = claim("9999", 5_000, status="DONE")  # a finished run wins whenever it started
    assert driver.earlier_claims([early, done], "zero-shot-n0-s0", "ffff", 30.0) == [done]
