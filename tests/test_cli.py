"""The command line: exit codes and what it prints, through `loop.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_validate_shipped_recipes_exit_zero(capsys):
    # their pools are the user's data (or the demo's, written by `loop demo`): not in the repo
    recipes = sorted(str(p) for p in (ROOT / "recipes").glob("*.yaml"))
    assert main(["validate", "--recipe-only", *recipes]) == 0
    out = capsys.readouterr().out
    assert all(Path(r).name in out for r in recipes)


def test_validate_checks_the_pool_and_model_unless_recipe_only(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = ROOT / "recipes" / "gpu-alpaca.yaml"
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "pool.paths[0]: data/alpaca.jsonl: file not found" in err
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "alpaca.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert main(["validate", str(recipe)]) == 0
    captured = capsys.readouterr()
    assert "gpu-alpaca.yaml" in captured.out
    assert (
        "model.name: 'Qwen/Qwen2.5-0.5B-Instruct' is not in the local Hugging Face cache; it "
        "needs the Hub" in captured.err
    )


def test_validate_bad_recipe_exits_two_with_every_error(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npool: {paths: [a.jsonl]}\ntrain: {lr: 1, batch_size: 0}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "2 error(s)" in err
    assert "train.lr: unknown key" in err
    assert "train.batch_size: must be within [1, inf), got 0" in err


def test_pool_inspect_counts_formats_and_exits_nonzero_on_bad_records(tmp_path: Path, capsys):
    pool = tmp_path / "p.jsonl"
    pool.write_text(
        json.dumps({"instruction": "a", "output": "b"})
        + "\n"
        + json.dumps({"prompt": "c", "completion": "d"})
        + "\n"
        + "{not json\n"
    )
    assert main(["pool", "inspect", str(pool)]) == 1
    out = capsys.readouterr().out
    assert "instruction" in out and "completion" in out
    assert f"{pool}:3" in out  # the bad line, by file:line
    pool.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    assert main(["pool", "inspect", str(pool)]) == 0


def _curve_csv(path: Path, means: list[tuple[int, float]]) -> Path:
    rows = ["size,seed,value"]
    for n, v in means:
        for seed, d in enumerate((-0.003, 0.0, 0.003)):
            rows.append(f"{n},{seed},{v + d}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_curve_decides_a_flattened_and_a_rising_curve(tmp_path: Path, capsys):
    # rises 20, 10, 2 points a doubling, then flat: saturated between 400 and 1600
    flat = [(100, 0.30), (200, 0.50), (400, 0.60), (800, 0.62), (1600, 0.62), (3200, 0.62)]
    png = tmp_path / "c.png"
    args = ["--json", "--eval-size", "5000"]
    assert (
        main(["curve", str(_curve_csv(tmp_path / "f.csv", flat)), *args, "--plot", str(png)]) == 0
    )
    doc = json.loads(capsys.readouterr().out)["curves"]["all"]["value"]
    assert doc["decision"] == "saturated"
    assert (
        400 <= doc["n_star"] <= 1600 and doc["n_star_ci"][0] <= doc["n_star"] <= doc["n_star_ci"][1]
    )
    assert doc["plateau"] == pytest.approx(0.62, abs=0.01)
    assert doc["certified_epsilon"] < 0.01 and doc["next_size"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 10 points every doubling up to the last size: more data pays, and the next size is named
    rising = [(100 * 2**i, 0.30 + 0.10 * i) for i in range(5)]
    assert main(["curve", str(_curve_csv(tmp_path / "r.csv", rising)), *args]) == 0
    doc = json.loads(capsys.readouterr().out)["curves"]["all"]["value"]
    assert doc["decision"] == "more_data_pays" and doc["n_star"] is None
    assert doc["next_size"] == 3200 and doc["certified_epsilon"] > 0.05


def test_curve_bad_csv_exits_two(tmp_path: Path, capsys):
    csv = tmp_path / "c.csv"
    csv.write_text("size,value\n1,2\n")
    assert main(["curve", str(csv)]) == 2
    assert "seed" in capsys.readouterr().err


def test_curve_reads_the_long_item_csv_with_a_zero_shot_row(tmp_path: Path, capsys):
    csv = tmp_path / "items.csv"
    rows = ["size,seed,item,score"]
    # 100 items; item i is right once the size's threshold passes i: rises, then flattens
    for n, k in [(0, 20), (100, 40), (200, 50), (400, 55), (800, 56), (1600, 56)]:
        rows += [f"{n},0,q{i},{int(i < k)}" for i in range(100)]
    csv.write_text("\n".join(rows) + "\n")
    # one seed: training noise comes from the scatter around the fit, so a 3-point epsilon
    assert main(["curve", str(csv), "--json", "--epsilon", "0.03"]) == 0
    doc = json.loads(capsys.readouterr().out)["curves"]["all"]["value"]
    assert doc["zero_shot"] == pytest.approx(0.20) and doc["anchor"] == "zero-shot"
    assert doc["bootstrap"].startswith("items")
    assert doc["decision"] == "saturated" and doc["certified_text"].startswith("doubling past")
    assert main(["curve", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "untrained model 20%" in out and "certified" in out
    csv.write_text("size,seed,item,score\n100,0,q1,1\n200,0,q1,maybe\n")
    assert main(["curve", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "score" in err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in (
        "validate", "plan", "sweep", "status", "report", "evaluate", "export", "curve", "ui",
        "demo",
    ):  # fmt: skip
        assert cmd in out
    assert "loop sweep recipes/demo.yaml" in out


def test_plan_prints_every_cell_with_tokens_and_time(tmp_path: Path, monkeypatch, capsys):
    from test_driver import tiny_recipe

    monkeypatch.chdir(tmp_path)
    path = tiny_recipe(tmp_path, sizes=(4, 8), seeds=(0,))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    for cell in ("high-n4-s0", "high-n8-s0", "raw-n4-s0", "raw-n8-s0"):
        assert cell in out
    assert "training tokens" in out and "validation set" in out


def test_plan_rejects_a_size_larger_than_a_tier(tmp_path: Path, monkeypatch, capsys):
    from test_driver import tiny_recipe

    monkeypatch.chdir(tmp_path)
    path = tiny_recipe(tmp_path, sizes=(4, 500), seeds=(0,))
    assert main(["plan", str(path)]) == 2
    assert "subsets.sizes: must be within (0," in capsys.readouterr().err


def test_clean_prints_the_funnel_and_logs_a_clean_run(tmp_path: Path, monkeypatch, capsys):
    import mlflow
    from test_driver import tiny_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tiny_recipe(tmp_path, sizes=(4,), seeds=(0,))
    assert main(["clean", str(path)]) == 0
    out = capsys.readouterr().out
    assert "exact_dedup" in out and "validation:" in out and "funnel.md" in out
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("tiny")
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'clean'")
    assert len(runs) == 1
    assert main(["clean", str(path)]) == 0  # cached, and logged once
    assert (
        len(mlflow.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'clean'"))
        == 1
    )


def test_sweep_flags_override_executor_and_strategy_only():
    from loop.cli import _with_overrides, build_parser
    from loop.recipe import load_recipe

    r = load_recipe(ROOT / "recipes" / "demo.yaml")
    args = build_parser().parse_args(
        ["sweep", "x.yaml", "--executor", "ray", "--workers", "3", "--strategy", "adaptive"]
    )
    got = _with_overrides(r, args)
    assert (got.executor.kind, got.executor.workers, got.executor.address) == ("ray", 3, None)
    assert got.subsets.strategy == "adaptive"
    assert (got.train, got.model, got.subsets.sizes) == (r.train, r.model, r.subsets.sizes)
    plain = build_parser().parse_args(["sweep", "x.yaml"])
    assert _with_overrides(r, plain) == r
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "x.yaml", "--workers", "0"])


def test_server_rejects_a_backend_without_driver(capsys):
    assert main(["server", "--backend", "postgresql://u:secret@db/loop"]) == 2
    err = capsys.readouterr().err
    assert "postgresql+psycopg2://" in err and "secret" not in err


def test_pool_inspect_finds_the_field_map_of_an_eval_suite_file(tmp_path: Path, capsys):
    pool = tmp_path / "mc.jsonl"
    rec = {
        "input": [
            {"role": "system", "content": "Letter only."},
            {"role": "user", "content": "Q\n A: x\n B: y"},
        ],
        "ideal": "A",
    }
    pool.write_text((json.dumps(rec) + "\n") * 9 + json.dumps({"input": rec["input"]}) + "\n")
    assert main(["pool", "inspect", str(pool)]) == 1
    out = capsys.readouterr().out
    assert "detected prompt as messages in `input`, answer in `ideal`" in out
    assert f"{pool}:10: field `ideal`: expected the answer to the messages in `input`" in out


def test_clean_that_keeps_nothing_is_a_message_not_a_traceback(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rows = [{"prompt": f"Question number {i} about letters?", "completion": "B"} for i in range(30)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(
        "name: r\npool: {paths: [p.jsonl]}\nmodel: {name: tiny-random}\n"
        "clean: {steps: [length], length: {min_answer_tokens: 10}}\n"
    )
    assert main(["clean", "r.yaml"]) == 2
    err = capsys.readouterr().err
    assert "clean step `length` would remove 30 of 30 records (100%)" in err
    assert "clean.length.min_answer_tokens" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- 80 columns


@pytest.fixture
def narrow(monkeypatch):
    """The CLI's console as an 80-column terminal; returns a function that reads what it printed."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    monkeypatch.setattr(
        "loop.cli.console", Console(file=buf, width=80, highlight=False, color_system=None)
    )
    return buf.getvalue


def _choice_run_rows():
    import numpy as np

    from loop.curves import ItemScore, analyze
    from loop.report import decision_table

    rng = np.random.default_rng(0)
    items = []
    names = ("val_loss", "eval.choice_loglik", "eval.choice_loglik.prob")
    for tier in ("clean", "raw-pool-as-collected"):
        for k, size in enumerate((0, 16, 32, 64, 128, 256)):
            for m in names:
                if m == "val_loss":
                    v = 1.5 - 0.08 * k + 0.3 * rng.standard_normal(200)
                else:
                    v = (rng.random(200) < 0.5).astype(float)
                items += [ItemScore(tier, size, 0, m, f"q{i}", float(x)) for i, x in enumerate(v)]
    direction = {m: "lower" if m == "val_loss" else "higher" for m in names}
    return decision_table(analyze(items=items, direction=direction, n_boot=200))


def test_decision_table_fits_80_columns_without_cutting_words(narrow):
    from loop.cli import _print_decisions

    rows = _choice_run_rows()
    _print_decisions(rows)
    out = narrow()
    lines = out.splitlines()
    table = [ln for ln in lines if ln[:1] in "┏┃┡│└━┗╇┳"]
    assert table and max(len(ln) for ln in table) <= 80
    assert "…" not in out
    for row in rows:
        assert row["decision"] in "\n".join(table), row["decision"]  # whole, on one line
    # metric names: whole in the table, or as a short label with its key below
    flat = " ".join(lines)
    for m in {r["metric"] for r in rows}:
        assert any(m in ln for ln in lines), m
    assert "metrics: m1 = val_loss" in flat or all(r["metric"] in " ".join(table) for r in rows)
    # the plain sentence first, then the technical line
    first = rows[0]
    words = " ".join(flat.split())
    assert words.index(" ".join(first["answer"].split())[:60]) < words.index(
        " ".join(first["summary"].split())[:60]
    )


def test_status_fits_80_columns_and_never_cuts_a_path(narrow, monkeypatch):
    from types import SimpleNamespace

    from loop.cli import main
    from loop.commands import StatusRow

    path = "/home/someone/projects/support-tickets/mlruns/work/tickets/adapters/clean-n1024-s2"
    rows = [
        StatusRow(
            "clean-n1024-s2",
            "failed",
            {"val_loss": 0.51, "eval.json_match": 0.4, "eval.json_match.field_acc": 0.7},
            f"OSError: cannot write {path}/adapter_model.safetensors: disk full",
        ),
        StatusRow("raw-n1024-s2", "done", {"val_loss": 0.61, "eval.json_match.valid": 1.0}, None),
    ]
    monkeypatch.setattr("loop.cli._recipe", lambda *a, **k: SimpleNamespace(name="tickets"))
    monkeypatch.setattr("loop.commands.status", lambda r: rows)
    assert main(["status", "tickets.yaml"]) == 0
    out = narrow()
    table = [ln for ln in out.splitlines() if ln[:1] in "┏┃┡│└━┗╇┳"]
    assert max(len(ln) for ln in table) <= 80 and "…" not in out
    assert any(f"{path}/adapter_model.safetensors" in ln for ln in out.splitlines())
    assert "eval.json_match.field_acc" in out  # in the key, whole


# ----------------------------------------------------------------------------- evaluator dry run


def _with_evaluators(path: Path, evaluators: list[dict]) -> Path:
    import yaml

    recipe = yaml.safe_load(path.read_text())
    recipe["eval"]["evaluators"] = evaluators
    path.write_text("# loop sweep tiny.yaml\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "evaluator, words",
    [
        (
            {"name": "choice_loglik"},
            ["eval.evaluators[0] (choice_loglik)", "meta['choices']", "pool.jsonl:"],
        ),
        (
            {"name": "regex", "params": {"pattern": "^Answer: ({reference}$"}},
            ["eval.evaluators[0] (regex)", "missing )", "pool.jsonl:"],
        ),
    ],
)
def test_validate_pool_plan_and_sweep_run_each_evaluator_before_training(
    tmp_path: Path, monkeypatch, capsys, evaluator, words
):
    from test_driver import tiny_recipe

    from loop import driver

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _with_evaluators(tiny_recipe(tmp_path, sizes=(4,), seeds=(0,)), [evaluator])
    trained = []
    monkeypatch.setattr(driver, "_run_cells", lambda *a, **k: trained.append("cells"))
    monkeypatch.setattr(driver, "run_zero_shot", lambda *a, **k: trained.append("zero-shot"))
    for command in (["validate", "--pool"], ["plan"], ["sweep"]):
        assert main([*command, str(path)]) == 2, command
        err = " ".join(capsys.readouterr().err.split())
        for w in words:
            assert w in err, (command, w, err)
        assert "Traceback" not in err
    assert trained == []  # stopped before the base model or any cell ran


def test_validate_pool_passes_a_recipe_whose_evaluators_run(tmp_path: Path, monkeypatch, capsys):
    from test_driver import tiny_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tiny_recipe(tmp_path, sizes=(4,), seeds=(0,))  # json_match and exact_match
    assert main(["validate", "--pool", str(path)]) == 0


def test_progress_messages_keep_paths_and_cache_keys_on_one_line(narrow):
    from loop.cli import _Progress
    from loop.events import Event

    folder = "/home/someone/projects/support-tickets/mlruns/work/tickets/clean"
    key = "9f2c4e1ab07d55e3c1f0a9b8d7e6c5b4"
    with _Progress() as progress:  # not a terminal here: plain lines
        progress(Event("message", message=f"  reusing the result in {folder} (key {key})"))
    (line,) = [ln for ln in narrow().splitlines() if "reusing" in ln]
    assert folder in line and key in line
