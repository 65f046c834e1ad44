"""The error contract (loop/errors.py, loop/cli.py `main`), tried with hostile input.

Every case of the catalogue is an ordinary mistake: it must end with exit status 2, a message that
names the culprit (field, file, flag or variable), and no traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from test_driver import tiny_recipe

from loop import cli
from loop.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `loop argv`, argparse's own exits included."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2 by themselves
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_process(argv: list[str]) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `loop argv` in a new process (what a shell sees)."""
    proc = subprocess.run(
        [sys.executable, "-m", "loop.cli", *argv], capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    """`edit(recipe dict, tmp folder)` spoils the tiny recipe (or the folder), `argv` runs with
    `{r}` replaced by the recipe's path; the output must contain `culprit`."""

    id: str
    argv: list[str]
    culprit: str
    edit: Callable[[dict, Path], None] = lambda r, t: None
    env: dict[str, str] = field(default_factory=dict)
    # run as a real process: transformers logs through a handler that holds the stderr of the
    # first test that imported it, which pytest has closed since
    process: bool = False


def _set(path: str, value):
    def edit(r: dict, _t: Path) -> None:
        *parents, last = path.split(".")
        node = r
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _pool_bytes(name: str, data: bytes):
    def edit(r: dict, t: Path) -> None:
        (t / name).write_bytes(data)
        r["pool"]["paths"] = [str(t / name)]

    return edit


def _model_folder(config: str | None):
    def edit(r: dict, t: Path) -> None:
        (t / "mymodel").mkdir()
        if config is not None:
            (t / "mymodel" / "config.json").write_text(config)
        r["model"]["name"] = str(t / "mymodel")

    return edit


def _recipe_text(text: bytes):
    def edit(_r: dict, t: Path) -> None:
        (t / "broken.yaml").write_bytes(text)

    return edit


def _all(*edits):
    def edit(r: dict, t: Path) -> None:
        for e in edits:
            e(r, t)

    return edit


V = ["validate", "{r}"]
BROKEN = ["validate", "{t}/broken.yaml"]

CATALOGUE = [
    # ---- recipe files and fields
    Case("recipe-missing", ["validate", "{t}/nope.yaml"], "nope.yaml: 1 error(s)"),
    Case("recipe-is-a-folder", ["validate", "{t}"], "is a folder, expected a YAML file"),
    Case("recipe-bad-yaml", BROKEN, "line 2, column", _recipe_text(b"name: x\n  bad: [\n")),
    Case("recipe-not-utf8", BROKEN, "not UTF-8", _recipe_text(b"name: caf\xe9\n")),
    Case("recipe-binary", BROKEN, "broken.yaml", _recipe_text(bytes(range(256)) * 4)),
    Case("recipe-top-level-list", BROKEN, "(top level)", _recipe_text(b"- a\n- b\n")),
    Case("recipe-empty", BROKEN, "(top level)", _recipe_text(b"")),
    Case("recipe-name-missing", V, "name: required", lambda r, t: r.pop("name")),
    Case("recipe-unknown-key", V, "trian: unknown key (did you mean 'train'?)", _set("trian", {})),
    Case(
        "recipe-wrong-type",
        V,
        "train.batch_size: expected an integer",
        _set("train.batch_size", "8x"),
    ),
    Case(
        "recipe-out-of-range", V, "lora.dropout: must be within [0, 1)", _set("lora.dropout", 1.5)
    ),
    Case("recipe-bad-choice", V, "model.dtype: must be one of", _set("model.dtype", "float8")),
    Case(
        "recipe-unknown-step",
        V,
        "clean.steps[0]: unknown step 'dedup'",
        _set("clean.steps", ["dedup"]),
    ),
    Case(
        "recipe-duplicate-tiers",
        V,
        "tiers: names must be unique",
        _set("tiers", [{"name": "a"}, {"name": "a"}]),
    ),
    Case("recipe-section-not-mapping", V, "subsets: expected a mapping", _set("subsets", [4, 8])),
    Case(
        "recipe-duplicate-sizes",
        V,
        "subsets.sizes: each size at most once",
        _set("subsets.sizes", [4, 4, 8]),
    ),
    Case(
        "recipe-negative-seed",
        V,
        "subsets.seeds[0]: must be within [0, inf)",
        _set("subsets.seeds", [-1]),
    ),
    Case(
        "recipe-top-without-quality",
        V,
        "tiers[0].top (high): selects by quality score, which needs `quality` in clean.steps",
        _set("clean.steps", ["exact_dedup", "length"]),
    ),
    # ---- the pool
    Case("pool-missing", V, "pool.paths[0]: ", _set("pool.paths", ["nope.jsonl"])),
    Case("pool-is-a-folder", V, "is a directory", lambda r, t: r["pool"].update(paths=[str(t)])),
    Case(
        "pool-binary",
        V,
        "binary file (NUL bytes)",
        _pool_bytes("p.jsonl", b"\x00\x01PK\x03\x04" * 50),
    ),
    Case("pool-empty", V, "p.jsonl: empty file", _pool_bytes("p.jsonl", b"")),
    Case("pool-no-match", V, "no file matches", _set("pool.paths", ["data/*.jsonl"])),
    Case("pool-extension", V, "unsupported file type '.txt'", _pool_bytes("p.txt", b"hello\n")),
    Case("pool-fake-parquet", V, "not a Parquet file", _pool_bytes("p.parquet", b"name,age\n")),
    Case(
        "pool-json-not-utf8",
        V,
        "line 1: byte 0xe9 is not UTF-8",
        _pool_bytes("p.json", b'[{"a": "caf\xe9"}]'),
    ),
    Case(
        "pool-no-readable-record",
        ["plan", "{r}"],
        "p.jsonl:1",
        _pool_bytes("p.jsonl", b'{"question": "a"}\n{"question": "b"}\n'),
    ),
    Case(
        "pool-cleaned-away",
        ["plan", "{r}"],
        "clean step `length` would remove 60 of 60 records (100%)",
        _set("clean.length", {"min_answer_tokens": 100000}),
    ),
    # ---- the model
    Case(
        "model-missing-folder",
        V,
        "model.name: './no-such-model' does not exist",
        _set("model.name", "./no-such-model"),
    ),
    Case("model-folder-without-config", V, "has no config.json", _model_folder(None)),
    Case(
        "model-is-a-file",
        V,
        "is a file, not a model folder",
        lambda r, t: r["model"].update(name=r["pool"]["paths"][0]),
    ),
    Case(
        "model-bad-hub-id",
        V,
        "nor a valid Hugging Face Hub id",
        _set("model.name", "not a/valid/id"),
    ),
    Case(
        "model-offline-not-cached",
        V,
        "HF_HUB_OFFLINE is set",
        _set("model.name", "no-such-org/no-such-model"),
        env={"HF_HUB_OFFLINE": "1"},
    ),
    Case("model-gguf-missing", V, "GGUF file 'm.gguf' not found", _set("model.name", "m.gguf")),
    Case(
        "model-broken-config",
        ["plan", "{r}"],
        "the folder could not be loaded as a model",
        _model_folder('{"model_type": "no-such-arch"}'),
        process=True,
    ),
    # ---- evaluators
    Case(
        "evaluator-unknown",
        V,
        "eval.evaluators[0].name: unknown evaluator 'json_mach'",
        _set("eval.evaluators", [{"name": "json_mach"}]),
    ),
    Case(
        "evaluator-not-a-mapping",
        V,
        "eval.evaluators[0]: expected a mapping",
        _set("eval.evaluators", ["json_match"]),
    ),
    Case(
        "evaluator-not-importable",
        V,
        "eval.evaluators[0].name: evaluator 'nosuchmod:fn': cannot import",
        _set("eval.evaluators", [{"name": "nosuchmod:fn"}]),
    ),
    Case(
        "evaluator-no-such-function",
        V,
        "module 'json' has no attribute 'nosuchfn'",
        _set("eval.evaluators", [{"name": "json:nosuchfn"}]),
    ),
    # ---- command-line flags
    Case("cli-unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    Case(
        "cli-confidence",
        ["curve", "x.csv", "--confidence", "2"],
        "--confidence: must be within (0.5, 1)",
    ),
    Case(
        "cli-epsilon", ["curve", "x.csv", "--epsilon", "-1"], "--epsilon: must be within (0, inf)"
    ),
    Case("cli-port", ["ui", "--port", "99999"], "--port: must be within 1..65535"),
    Case(
        "cli-size", ["train", "{r}", "--tier", "high", "--size", "0"], "--size: must be at least 1"
    ),
    Case(
        "cli-seed",
        ["train", "{r}", "--tier", "high", "--size", "4", "--seed", "-1"],
        "--seed: must be at least 0",
    ),
    Case(
        "cli-tier",
        ["train", "{r}", "--tier", "gold", "--size", "4"],
        "--tier: must be one of high, raw",
    ),
    Case("cli-workers", ["sweep", "{r}", "--workers", "0"], "--workers: must be at least 1"),
    Case("cli-executor", ["sweep", "{r}", "--executor", "slurm"], "--executor: invalid choice"),
    Case("cli-rows", ["demo", "--rows", "zero"], "--rows: expected an integer, got 'zero'"),
    Case("cli-curve-file", ["curve", "{t}/nope.csv"], "nope.csv: file not found"),
    Case(
        "cli-review-file", ["review", "import", "{r}", "{t}/nope.csv"], "nope.csv: file not found"
    ),
    Case("cli-server-no-backend", ["server"], "--backend: required"),
    # ---- tracking store URIs
    Case(
        "store-scheme",
        V,
        "tracking.uri: unsupported scheme 'foo'",
        _set("tracking.uri", "foo://bar"),
    ),
    Case(
        "store-not-a-uri", V, "tracking.uri: 'mlruns' is not a URI", _set("tracking.uri", "mlruns")
    ),
    Case(
        "store-folder-store",
        V,
        "tracking.uri: 'file:///tmp/x' is MLflow's folder store",
        _set("tracking.uri", "file:///tmp/x"),
    ),
    Case("store-in-memory", V, "in-memory database", _set("tracking.uri", "sqlite://")),
    Case(
        "store-missing-folder",
        V,
        "tracking.uri: folder no/such does not exist",
        _set("tracking.uri", "sqlite:///no/such/mlflow.db"),
    ),
    Case(
        "store-is-a-folder",
        V,
        "is a folder; the SQLite URI",
        lambda r, t: r.setdefault("tracking", {}).update(uri=f"sqlite:///{t}"),
    ),
    Case(
        "store-no-server",
        V,
        "MLFLOW_TRACKING_URI: no MLflow tracking server answers at http://127.0.0.1:",
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"},
    ),
    Case(
        "store-not-a-database",
        ["status", "{r}"],
        "tracking store sqlite:///",
        _all(
            lambda r, t: (t / "text.db").write_text("not a database\n" * 100),
            lambda r, t: r.setdefault("tracking", {}).update(uri=f"sqlite:///{t}/text.db"),
        ),
    ),
    Case("server-mysql", ["server", "--backend", "mysql://u@h/db"], "unsupported database 'mysql'"),
    Case(
        "server-no-driver", ["server", "--backend", "postgresql://u:s3cret@h/db"], "names no driver"
    ),
    Case(
        "server-bad-port",
        ["server", "--backend", "postgresql+psycopg2://u@h:port/db"],
        "the port must be a number",
    ),
]


def test_the_catalogue_is_large_and_covers_every_kind_of_input():
    assert len(CATALOGUE) >= 30
    kinds = {c.id.split("-")[0] for c in CATALOGUE}
    assert {"recipe", "pool", "model", "evaluator", "cli", "store"} <= kinds
    assert len({c.id for c in CATALOGUE}) == len(CATALOGUE)


def _prepare(case: Case, tmp_path: Path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # nothing cached
    path = tiny_recipe(tmp_path, sizes=(4,), seeds=(0,))
    recipe = yaml.safe_load(path.read_text())
    recipe["pool"]["paths"] = [str(tmp_path / "pool.jsonl")]
    case.edit(recipe, tmp_path)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    port = str(_free_port())
    for k, v in case.env.items():
        monkeypatch.setenv(k, v.replace("{port}", port))
    if "HF_HUB_OFFLINE" in case.env:
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return [a.replace("{r}", str(path)).replace("{t}", str(tmp_path)) for a in case.argv]


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_hostile_input_exits_two_naming_the_culprit(
    case: Case, tmp_path: Path, monkeypatch, capsys
):
    argv = _prepare(case, tmp_path, monkeypatch)
    code, out = run_process(argv) if case.process else run_cli(argv, capsys)
    assert "Traceback" not in out, out
    assert code == 2, out
    assert case.culprit in " ".join(out.split()), out  # rich may wrap long lines
    assert "s3cret" not in out


@pytest.mark.parametrize("case_id", ["pool-binary", "model-offline-not-cached", "cli-port"])
def test_the_installed_command_keeps_the_contract(
    case_id: str, tmp_path: Path, monkeypatch, capsys
):
    """The same contract through a real process (what a user's shell sees)."""
    case = next(c for c in CATALOGUE if c.id == case_id)
    argv = _prepare(case, tmp_path, monkeypatch)
    code, out = run_process(argv)
    assert code == 2, out
    assert "Traceback" not in out
    assert case.culprit in " ".join(out.split()), out


# ----------------------------------------------------------------------------------------------
# --debug, bugs, failing cells
# ----------------------------------------------------------------------------------------------


def test_debug_shows_the_traceback_of_an_input_error(tmp_path: Path, monkeypatch, capsys):
    case = next(c for c in CATALOGUE if c.id == "pool-binary")
    argv = _prepare(case, tmp_path, monkeypatch)
    for flags in (["--debug", *argv], [argv[0], "--debug", *argv[1:]]):
        code, out = run_cli(flags, capsys)
        assert code == 2
        assert "Traceback" in out and "RecipeError" in out
        assert "binary file (NUL bytes)" in out
    monkeypatch.setenv("LOOP_DEBUG", "1")
    code, out = run_cli(argv, capsys)
    assert code == 2 and "Traceback" in out


def test_a_bug_keeps_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys):
    def broken(_args):
        return {}["no such key"]

    monkeypatch.setattr(cli, "cmd_status", broken)
    code, out = run_cli(["status", "x.yaml"], capsys)
    assert code == cli.EXIT_BUG == 70
    assert "Traceback" in out and "KeyError: 'no such key'" in out
    assert "This is a bug in loop, not a problem with your input" in " ".join(out.split())


def test_a_failing_cell_is_recorded_failed_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch, capsys
):
    import mlflow

    from loop import driver

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tiny_recipe(tmp_path, sizes=(4,), seeds=(0,))
    real = driver.compute_cell

    def flaky(recipe, cell, *a, **kw):
        if cell.tier == "raw":
            raise ValueError("planted failure in the raw cell")
        return real(recipe, cell, *a, **kw)

    monkeypatch.setattr(driver, "compute_cell", flaky)
    code, out = run_cli(["sweep", str(path)], capsys)
    assert code == 1, out  # one failed cell
    assert "Traceback" not in out
    assert "planted failure in the raw cell" in out
    assert "cells: 1 ran" not in out and "1 failed" in out
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'cell'")
    status = {r.data.tags["loop.cell"]: r.info.status for r in runs}
    assert status == {
        "high-n4-s0": "FINISHED",
        "raw-n4-s0": "FAILED",
        "zero-shot-n0-s0": "FINISHED",
    }
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "planted failure" in failed.data.tags["loop.error"]
    mlflow.set_tracking_uri(None)


def test_sweep_runs_the_validate_checks_before_anything(tmp_path: Path, monkeypatch, capsys):
    from loop import driver

    monkeypatch.chdir(tmp_path)
    path = tiny_recipe(tmp_path, sizes=(4,), seeds=(0,))
    (tmp_path / "pool.jsonl").write_bytes(b"\x00" * 100)
    from loop import plan

    called = []
    for module in (driver, plan):
        monkeypatch.setattr(module, "prepare", lambda *a, **k: called.append(1))
    for command in ("plan", "sweep"):
        code, out = run_cli([command, str(path)], capsys)
        assert code == 2 and "binary file" in out
    assert not called
