"""MLflow tracking: the only module that imports mlflow.

Conventions (DESIGN.md): one experiment per recipe, one parent run per sweep, one nested child run
per cell. Everything is written through `MlflowClient` with explicit run ids, so no global
"active run" can leak between cells (or be ended by a garbage-collected trainer callback).
A cell is done when its child run is FINISHED with tag `loop.done=1`; the store is the only
record of what is done, so a sweep killed at any point resumes correctly.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag

from loop.errors import StoreError
from loop.example import Example
from loop.recipe import Cell, Recipe
from loop.recipe import recipe_digest as digest_of

if TYPE_CHECKING:
    from loop.cell import CellResult
    from loop.subsets import Subset

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Param values longer than this are cut: MLflow rejects params over 6,000 characters.
_PARAM_MAX = 500


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifact_root: str | None  # folder URI for new experiments, None when a server decides


def default_store(root: Path | None = None) -> Store:
    """SQLite file and artifacts under `<root>/mlruns/` (the modern form of the folder store)."""
    root = (root or Path.cwd()).resolve()
    folder = root / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri())


def resolve_store(uri: str | None = None, root: Path | None = None) -> Store:
    """Recipe `tracking.uri`, else $MLFLOW_TRACKING_URI, else `mlruns/` under the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return default_store(root)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return Store(uri, (db.parent / "artifacts").as_uri())
    return Store(uri, None)


def _sqlite_wal(uri: str) -> None:
    # WAL roughly halves contention between concurrent writers (notes/mlflow.md); it persists.
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if Path(path).exists():
            with contextlib.closing(sqlite3.connect(path)) as con:
                con.execute("PRAGMA journal_mode=WAL")


def client_for(store: Store) -> MlflowClient:
    """A client on the store; a store that cannot be opened is a StoreError."""
    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        return MlflowClient(tracking_uri=store.tracking_uri)
    except Exception as exc:  # MLflow, SQLAlchemy and requests raise many kinds
        raise _store_error(store, exc) from exc


def _store_error(store: Store, exc: Exception) -> StoreError:
    from loop.server import redact, scrub

    return StoreError(
        f"tracking store {redact(store.tracking_uri)}: cannot be opened "
        f"({type(exc).__name__}: {(scrub(str(exc), store.tracking_uri).splitlines() or [''])[0][:300]})"
    )


def ensure_experiment(store: Store, name: str) -> str:
    """Create the store and experiment once (before any worker starts) and return its id.

    The first contact with the store: a store that cannot be opened is a StoreError."""
    client = client_for(store)
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as exc:  # MLflow, SQLAlchemy and requests raise many kinds
        raise _store_error(store, exc) from exc
    if exp is None:
        location = f"{store.artifact_root}/{name}" if store.artifact_root else None
        try:
            exp_id = client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            exp = client.get_experiment_by_name(name)  # created by someone else meanwhile
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    _sqlite_wal(store.tracking_uri)
    return exp_id


def _q(value: str) -> str:
    return value.replace("'", "\\'")


@dataclass(frozen=True)
class CellRun:
    run_id: str
    cell: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]
    error: str | None
    start_time: int = 0  # ms, as the store holds it: orders claims opened at nearly one moment

    @property
    def key(self) -> Cell:
        """The cell this run measured, rebuilt from its tags (`cell_tags` writes them)."""
        t = self.tags
        return Cell(t["loop.tier"], int(t["loop.size"]), int(t["loop.seed"]))


def cell_runs(
    client: MlflowClient,
    exp_id: str,
    recipe_digest: str,
    pool_digest: str,
    cell: str | None = None,
) -> list[CellRun]:
    """Every child run of this recipe+pool (of one `cell` when given), newest first."""
    flt = (
        f"tags.`loop.kind` = 'cell' and tags.`loop.recipe_digest` = '{_q(recipe_digest)}' "
        f"and tags.`loop.pool_digest` = '{_q(pool_digest)}'"
    )
    if cell is not None:
        flt += f" and tags.`loop.cell` = '{_q(cell)}'"
    out: list[CellRun] = []
    token = None
    while True:
        page = client.search_runs(
            [exp_id],
            filter_string=flt,
            max_results=1000,
            order_by=["start_time DESC"],
            page_token=token,
        )
        for r in page:
            out.append(
                CellRun(
                    run_id=r.info.run_id,
                    cell=r.data.tags.get("loop.cell", ""),
                    status="DONE"
                    if r.data.tags.get("loop.done") == "1" and r.info.status == "FINISHED"
                    else r.info.status,
                    metrics=dict(r.data.metrics),
                    tags=dict(r.data.tags),
                    error=r.data.tags.get("loop.error"),
                    start_time=int(r.info.start_time or 0),
                )
            )
        token = page.token
        if not token:
            return out


def done_cells(runs: Iterable[CellRun]) -> dict[str, CellRun]:
    done: dict[str, CellRun] = {}
    for r in runs:
        if r.status == "DONE":
            done.setdefault(r.cell, r)
    return done


# ----------------------------------------------------------------------------------------------
# Leases: a RUNNING cell run is held by the driver that opened it while its heartbeat is fresh
# ----------------------------------------------------------------------------------------------

HEARTBEAT_TAG = "loop.heartbeat"  # seconds since the epoch, rewritten every interval
OWNER_TAG = "loop.owner"  # host/pid/process start time of the driver holding the lease
STALE_AFTER = 3  # heartbeat intervals without a beat: the driver died


def lease_owner() -> str:
    import socket

    import psutil

    me = psutil.Process()
    return f"{socket.gethostname()}/{me.pid}/{me.create_time():.2f}"


def lease_tags() -> dict[str, str]:
    """Tags that make a new RUNNING run a held lease."""
    return {HEARTBEAT_TAG: f"{time.time():.3f}", OWNER_TAG: lease_owner()}


def _owner_dead(owner: str) -> bool:
    """True when `owner` is a process of this host that is gone (or is not the one it was):
    the lease is void at once; an owner elsewhere is judged by its heartbeat only."""
    import socket

    import psutil

    host, _, rest = owner.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():  # cells run one at a time here: an older run of ours is over
        return True
    try:
        proc = psutil.Process(int(pid))
        return proc.status() == psutil.STATUS_ZOMBIE or f"{proc.create_time():.2f}" != started
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def lease_live(run: CellRun, interval: float, now: float | None = None) -> bool:
    """A RUNNING run whose driver still beats: its heartbeat is younger than STALE_AFTER
    intervals and its owner is not a dead process of this host. Runs without a heartbeat (from
    before leases) are not live."""
    if run.status != "RUNNING":
        return False
    try:
        beat = float(run.tags.get(HEARTBEAT_TAG, ""))
    except ValueError:
        return False
    now = time.time() if now is None else now
    if now - beat > STALE_AFTER * interval:
        return False
    return not _owner_dead(run.tags.get(OWNER_TAG, ""))


def mark_interrupted(
    client: MlflowClient, runs: Iterable[CellRun], interval: float = 30.0
) -> list[str]:
    """Child runs left RUNNING by a driver that died (no live lease): mark them KILLED.
    Returns their cells. Runs another driver is working on are left alone."""
    marked = []
    for r in runs:
        if r.status == "RUNNING" and not lease_live(r, interval):
            client.set_tag(
                r.run_id, "loop.error", "interrupted: the sweep process stopped mid-cell"
            )
            client.set_terminated(r.run_id, status="KILLED")
            marked.append(r.cell)
    return marked


def running_elsewhere(runs: Iterable[CellRun], interval: float) -> list[str]:
    """Cells another live driver is running now."""
    return sorted({r.cell for r in runs if lease_live(r, interval)})


def contested(runs: Iterable[CellRun], run_id: str, interval: float) -> bool:
    """Checked right after opening `run_id` (a claim on its cell): does any other run of the
    cell hold a live lease or a finished result? Then this driver backs off (`withdraw`).

    Safe without a lock: if two drivers both trained a cell, the one that searched last would
    have seen the other's claim, which was opened before that driver's own search started."""
    return any(r.run_id != run_id and (r.status == "DONE" or lease_live(r, interval)) for r in runs)


def withdraw(client: MlflowClient, run_id: str) -> None:
    """A claim that lost: deleted, as it never trained, so each cell keeps one run."""
    client.delete_run(run_id)


@contextlib.contextmanager
def heartbeat(client: MlflowClient, run_id: str, interval: float):
    """Rewrite the run's heartbeat tag every `interval` seconds while the block runs."""
    import threading

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            # a store hiccup skips one beat; STALE_AFTER beats must be missed to lose the lease
            with contextlib.suppress(Exception):
                client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}")

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


def _sweep_filter(recipe_digest: str, pool_digest: str) -> str:
    return (
        f"tags.`loop.kind` = 'sweep' and tags.`loop.recipe_digest` = '{_q(recipe_digest)}' "
        f"and tags.`loop.pool_digest` = '{_q(pool_digest)}'"
    )


def sweep_parent(
    client: MlflowClient,
    exp_id: str,
    *,
    recipe_digest: str,
    pool_digest: str,
    name: str,
    params: dict[str, Any],
    tags: dict[str, str],
) -> str:
    """The parent run of this sweep: reused when the same recipe+pool is run again (resume)."""
    found = client.search_runs(
        [exp_id],
        filter_string=_sweep_filter(recipe_digest, pool_digest),
        max_results=1,
        order_by=["start_time DESC"],
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        exp_id,
        run_name=name,
        tags={
            "loop.kind": "sweep",
            "loop.recipe_digest": recipe_digest,
            "loop.pool_digest": pool_digest,
            **tags,
        },
    )
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def finish_parent(
    client: MlflowClient, run_id: str, *, failed: int, interrupted: bool = False
) -> None:
    client.set_tag(run_id, "loop.failed_cells", str(failed))
    client.set_terminated(run_id, status="KILLED" if interrupted else "FINISHED")


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, str(v)[:_PARAM_MAX]) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[i : i + 100])


def start_cell(
    client: MlflowClient,
    exp_id: str,
    parent_id: str,
    *,
    cell: str,
    tags: dict[str, str],
    params: dict[str, Any],
) -> str:
    run = client.create_run(
        exp_id,
        run_name=cell,
        tags={"mlflow.parentRunId": parent_id, "loop.kind": "cell", "loop.cell": cell, **tags},
    )
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def log_metrics(client: MlflowClient, run_id: str, values: dict[str, float], step: int = 0) -> None:
    """One batched write: single log_metric calls cost ~6.7 ms each on SQLite (a commit each), the
    batch ~0.3 ms a metric (benchmarks/results/figures/mlflow_log.txt, 40 metrics)."""
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def log_history(
    client: MlflowClient, run_id: str, history: Iterable[tuple[str, int, float]]
) -> None:
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, int(s)) for k, s, v in history]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def log_subset_input(
    client: MlflowClient,
    run_id: str,
    frame: pd.DataFrame,
    *,
    name: str,
    source: str,
    context: str = "training",
    tags: Sequence[InputTag] = (),
) -> None:
    """The subset as an MLflow dataset, so the UI shows what trained the run; `tags` are added
    to the input (its sources and licenses)."""
    with warnings.catch_warnings():
        # A file:// source matches two equivalent source classes; MLflow warns and picks one.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        ds = mlflow.data.from_pandas(frame, source=source, name=name)
    client.log_inputs(
        run_id,
        datasets=[
            DatasetInput(
                ds._to_mlflow_entity(),
                tags=[InputTag("mlflow.data.context", context), *tags],
            )
        ],
    )


def log_table(
    client: MlflowClient, run_id: str, rows: list[dict[str, Any]], artifact_file: str
) -> None:
    client.log_table(run_id, data=pd.DataFrame(rows), artifact_file=artifact_file)


def log_rows(
    client: MlflowClient, run_id: str, rows: list[dict[str, Any]], artifact_file: str
) -> None:
    """A JSON list of rows that replaces any earlier version (`log_table` would append to it)."""
    client.log_dict(run_id, rows, artifact_file)


ITEM_SCORES = "item_scores.json"  # per cell: {metric: {validation item id: score}}


def log_item_scores(client: MlflowClient, run_id: str, scores: dict[str, dict[str, float]]) -> None:
    """A cell's per-item scores (every evaluator, per-item validation loss): the paired analysis
    reads them back with `load_item_scores`. Replaces an earlier version (re-scoring)."""
    client.log_dict(run_id, scores, ITEM_SCORES)


@contextlib.contextmanager
def _no_progress_bar():
    """MLflow draws a progress bar on stderr for every download; only the CLI prints."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as flag

    before = os.environ.get(flag.name)
    os.environ[flag.name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(flag.name, None)
        else:
            os.environ[flag.name] = before


def load_item_scores(client: MlflowClient, run_id: str) -> dict[str, dict[str, float]]:
    """What `log_item_scores` wrote; {} for a run without it (cells from before, failed ones)."""
    import json
    import tempfile

    names = {a.path for a in client.list_artifacts(run_id)}
    if ITEM_SCORES not in names:
        return {}
    with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
        path = client.download_artifacts(run_id, ITEM_SCORES, tmp)
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    return {str(m): {str(k): float(v) for k, v in d.items()} for m, d in data.items()}


PREDICTIONS = "predictions.json"  # per cell: one row per scored validation item


def load_predictions(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """A cell's prediction rows as `close_cell` logged them; [] for a run without them."""
    import json
    import tempfile

    names = {a.path for a in client.list_artifacts(run_id)}
    if PREDICTIONS not in names:
        return []
    with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
        path = client.download_artifacts(run_id, PREDICTIONS, tmp)
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    columns = data.get("columns") or []
    return [dict(zip(columns, row, strict=False)) for row in data.get("data") or []]


def run_params(client: MlflowClient, run_id: str) -> dict[str, str]:
    return dict(client.get_run(run_id).data.params)


def log_dir(client: MlflowClient, run_id: str, folder: Path, artifact_path: str) -> None:
    client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)


def download_dir(client: MlflowClient, run_id: str, artifact_path: str, dst: Path) -> Path | None:
    """A run's artifact folder on local disk; None when the run has none by that name."""
    if artifact_path not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    with _no_progress_bar():
        return Path(client.download_artifacts(run_id, artifact_path, str(dst)))


def log_files(
    client: MlflowClient, run_id: str, paths: Iterable[Path], artifact_path: str | None = None
) -> None:
    for p in paths:
        client.log_artifact(run_id, str(p), artifact_path=artifact_path)


def finish_cell(client: MlflowClient, run_id: str) -> None:
    client.log_batch(run_id, tags=[RunTag("loop.done", "1")])
    client.set_terminated(run_id, status="FINISHED")


def fail_cell(client: MlflowClient, run_id: str, error: str, *, killed: bool = False) -> None:
    client.set_tag(run_id, "loop.error", error[:5000])
    client.set_terminated(run_id, status="KILLED" if killed else "FAILED")


def log_clean_run(
    client: MlflowClient,
    exp_id: str,
    *,
    pool_digest: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    files: Iterable[Path],
    pool_profile: dict[str, Any],
    pool_source: str,
    pool_frame: pd.DataFrame | None = None,
) -> str:
    """A `clean` run: funnel numbers, reports, and the raw pool as a dataset input.

    The input is a reference (source, digest, schema, and `pool_profile` as its profile) unless
    `pool_frame` is given (`tracking.log_raw_records`); the profile is also `raw_pool.json`."""
    run = client.create_run(
        exp_id, run_name="clean", tags={"loop.kind": "clean", "loop.pool_digest": pool_digest}
    )
    rid = run.info.run_id
    log_params(client, rid, params)
    log_metrics(client, rid, metrics)
    if pool_frame is not None:
        log_subset_input(
            client, rid, pool_frame, name="raw-pool", source=pool_source, context="raw"
        )
    else:
        log_dataset_reference(
            client, rid, name="raw-pool", source=pool_source, profile=pool_profile, context="raw"
        )
    client.log_dict(rid, pool_profile, "raw_pool.json")
    log_files(client, rid, files)
    client.set_terminated(rid, status="FINISHED")
    return rid


# The columns a pool reads into (DESIGN.md, "The canonical example"): the reference's schema.
_POOL_COLUMNS = ("id", "source", "format", "messages", "meta")


def log_dataset_reference(
    client: MlflowClient,
    run_id: str,
    *,
    name: str,
    source: str,
    profile: dict[str, Any],
    context: str,
) -> None:
    """A dataset input that holds no rows: where it is, its digest, columns and a profile."""
    import json

    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.types import ColSpec, Schema

    schema = Schema([ColSpec("string", c) for c in _POOL_COLUMNS])
    entity = DatasetEntity(
        name=name,
        digest=str(profile.get("digest", ""))[:32],
        source_type="local",
        source=json.dumps({"uri": source}),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps(profile, default=str),
    )
    client.log_inputs(
        run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
    )


def parent_artifacts(client: MlflowClient, run_id: str, folder: Path) -> None:
    client.log_artifacts(run_id, str(folder), artifact_path="report")


def parent_answers(
    client: MlflowClient, run_id: str, answers: Sequence[tuple[str, str, str, str]]
) -> None:
    """The report's sentences on the parent run, the same words as the CLI and report.md:
    (tier, metric, plain sentence, technical line) each as tag `loop.answer.<tier>.<metric>`,
    and all of them as the run's description (what the MLflow UI shows first)."""
    lines = ["## What the sweep found", ""]
    for tier, metric, plain, technical in answers:
        key = re.sub(r"[^\w.\- /]", "_", f"loop.answer.{tier}.{metric}")  # MLflow's tag names
        client.set_tag(run_id, key, plain[:5000])
        lines += [f"- **tier {tier}, {metric}**: {plain}", f"  - {technical}"]
    client.set_tag(run_id, "mlflow.note.content", "\n".join(lines)[:5000])


def ui_command(store: Store, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    # this interpreter's mlflow: `.venv/bin/loop ui` works without the venv on PATH
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        store.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if store.artifact_root:
        cmd += ["--default-artifact-root", store.artifact_root]
    return cmd


def experiment_url(
    client: MlflowClient, name: str, host: str = "127.0.0.1", port: int = 5000
) -> str:
    exp = client.get_experiment_by_name(name)
    eid = exp.experiment_id if exp else "0"
    # MLflow 3 opens in GenAI mode; this query shows the classic runs table.
    return f"http://{host}:{port}/#/experiments/{eid}/runs?workflowType=machine_learning"


# ---------------------------------------------------------------------------------------------
# A sweep's writes: the store resolved once, cells opened and closed, the clean run
# ---------------------------------------------------------------------------------------------


@dataclass
class Tracker:
    """What a sweep needs from the store, resolved once."""

    client: MlflowClient
    exp_id: str
    store: Store
    recipe_digest: str
    pool_digest: str
    # applied to every record text that goes to the store (predictions, errors): PII masked
    # unless tracking.log_raw_records
    mask: Callable[[Any], Any] = field(default=lambda value: value)
    heartbeat_s: float = 30.0  # tracking.heartbeat_seconds: a running cell's lease


def tracker(recipe: Recipe, pool_digest: str) -> Tracker:
    from loop.clean import pii

    store = resolve_store(recipe.tracking.uri)
    client = client_for(store)
    exp_id = ensure_experiment(store, recipe.experiment)
    tr = Tracker(client, exp_id, store, digest_of(recipe), pool_digest)
    tr.heartbeat_s = recipe.tracking.heartbeat_seconds
    if not recipe.tracking.log_raw_records:
        tr.mask = pii.masker(recipe.clean.pii)  # patterns checked by recipe.validate
    return tr


def open_sweep(tr: Tracker, *, params: dict[str, Any], tags: dict[str, str]) -> str:
    """The parent run of this recipe+pool's sweep (reused on resume), RUNNING."""
    return sweep_parent(
        tr.client,
        tr.exp_id,
        recipe_digest=tr.recipe_digest,
        pool_digest=tr.pool_digest,
        name=f"sweep-{tr.recipe_digest[:6]}",
        params=params,
        tags=tags,
    )


def runs_of(tr: Tracker) -> list[CellRun]:
    return cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest)


def examples_frame(examples: Sequence[Example]) -> pd.DataFrame:
    """Examples as the table an MLflow dataset input shows: id, source, prompt, answer, and
    the provenance columns (data_source, license, date) when any example has them."""
    columns = {
        "id": [e.id for e in examples],
        "source": [e.source for e in examples],
        "prompt": ["\n".join(f"{m.role}: {m.content}" for m in e.prompt) for e in examples],
        "answer": [e.answer for e in examples],
    }
    for column, key in PROVENANCE_COLUMNS.items():
        values = [e.meta.get(key) for e in examples]
        if any(v is not None for v in values):
            columns[column] = ["" if v is None else str(v) for v in values]
    return pd.DataFrame(columns)


# dataset-input column -> meta key ("source" is already the file and line)
PROVENANCE_COLUMNS = {"data_source": "source", "license": "license", "date": "date"}


def provenance_tags(examples: Sequence[Example]) -> list[InputTag]:
    """Dataset-input tags naming the sources and licenses of `examples` with their counts."""
    from collections import Counter

    tags = []
    for tag, key in (("loop.sources", "source"), ("loop.licenses", "license")):
        counts = Counter(str(e.meta[key]) for e in examples if e.meta.get(key))
        if counts:
            tags.append(InputTag(tag, ", ".join(f"{k} ({n})" for k, n in counts.most_common())))
    return tags


def cell_tags(tr: Tracker, cell: Cell, subset: Subset) -> dict[str, str]:
    """A cell run's tags: what it measured (read back by `CellRun.key`) and on which data."""
    return {
        "loop.tier": cell.tier,
        "loop.size": str(cell.size),
        "loop.seed": str(cell.seed),
        "loop.select": subset.select,  # the selection method, for grouping in the UI
        "loop.recipe_digest": tr.recipe_digest,
        "loop.pool_digest": tr.pool_digest,
        "loop.capped": str(subset.capped).lower(),
        "loop.subset_sha256": subset.sha256,
        **lease_tags(),  # held while its heartbeat runs (driver.run_cell)
    }


def open_cell(
    tr: Tracker,
    parent_id: str | None,
    cell: Cell,
    subset: Subset,
    *,
    params: dict[str, Any],
    manifest: Path,
) -> str:
    """The cell's child run, RUNNING, with its tags, params and subset as a dataset input."""
    run_id = start_cell(
        tr.client,
        tr.exp_id,
        parent_id,
        cell=cell.id,
        tags=cell_tags(tr, cell, subset),
        params={**params, "subset.n_examples": len(subset.examples)},
    )
    log_subset_input(
        tr.client,
        run_id,
        examples_frame(subset.examples),
        name=cell.id,
        source=manifest.resolve().as_uri(),
        tags=provenance_tags(subset.examples),
    )
    return run_id


def close_cell(tr: Tracker, run_id: str, res: CellResult) -> None:
    """Write a cell's result and mark it done (or FAILED with its error)."""
    if res.history:
        log_history(tr.client, run_id, res.history)
    if res.error:
        fail_cell(tr.client, run_id, tr.mask(res.error))
        return
    log_params(tr.client, run_id, res.params)
    log_metrics(tr.client, run_id, {**res.metrics, **res.counters}, step=res.steps)
    rows = [tr.mask(dict(row)) for row in res.predictions]  # prompts and answers: PII masked
    log_table(tr.client, run_id, rows, PREDICTIONS)
    if res.item_scores:
        log_item_scores(tr.client, run_id, res.item_scores)
    if res.adapter and Path(res.adapter).is_dir():  # a Ray worker's folder may be elsewhere
        log_dir(tr.client, run_id, Path(res.adapter), "adapter")
    finish_cell(tr.client, run_id)


def record_cell(
    tr: Tracker,
    parent_id: str | None,
    cell: Cell,
    subset: Subset,
    res: CellResult,
    *,
    params: dict[str, Any],
    manifest: Path,
) -> str:
    """Track a cell computed elsewhere (a Ray worker): open, fill and close its run in one go, so
    a worker that dies mid-cell leaves nothing in the store and its retry cannot duplicate it."""
    run_id = open_cell(tr, parent_id, cell, subset, params=params, manifest=manifest)
    close_cell(tr, run_id, res)
    return run_id


def log_clean_once(
    tr: Tracker,
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    files: Iterable[Path],
    pool_profile: dict[str, Any],
    pool_source: str,
    pool: Sequence[Example] | None = None,
) -> None:
    """A `clean` run per recipe+pool, with the funnel and the raw pool as a dataset input: a
    reference with `pool_profile`, or (`pool` given: tracking.log_raw_records) its rows."""
    existing = tr.client.search_runs(
        [tr.exp_id],
        filter_string=f"tags.`loop.kind` = 'clean' and tags.`loop.pool_digest` = "
        f"'{_q(tr.pool_digest)}' and tags.`loop.recipe_digest` = '{_q(tr.recipe_digest)}'",
        max_results=1,
    )
    if existing:
        return
    rid = log_clean_run(
        tr.client,
        tr.exp_id,
        pool_digest=tr.pool_digest,
        params=params,
        metrics=metrics,
        files=files,
        pool_profile=pool_profile,
        pool_source=pool_source,
        pool_frame=None if pool is None else examples_frame(pool),
    )
    tr.client.set_tag(rid, "loop.recipe_digest", tr.recipe_digest)


def latest_sweep(tr: Tracker) -> str | None:
    """The newest parent run of this recipe+pool, if any."""
    found = tr.client.search_runs(
        [tr.exp_id],
        filter_string=_sweep_filter(tr.recipe_digest, tr.pool_digest),
        max_results=1,
        order_by=["start_time DESC"],
    )
    return found[0].info.run_id if found else None


# ---------------------------------------------------------------------------------------------
# A sweep's view on its parent run: curves as metrics (step = size), decisions as tags, a table
# ---------------------------------------------------------------------------------------------
#
# MLflow keeps every value of a metric: logging a key again at a step it already has appends a
# second value there (the chart then draws both), and only a value identical in key, step,
# value and timestamp is dropped as a duplicate; its API has no way to remove values. So a
# series is compared with what the run holds first: equal, nothing is written (re-running the
# report); different (a resumed sweep finished more cells, a rescore), the old values are
# removed in the SQL store (SQLite, PostgreSQL) and the new ones written. A store behind an
# HTTP server cannot remove them: a series that only gained steps gets the new ones; one whose
# values changed is kept as it was and named in the `loop.view_stale` tag rather than doubled.

STALE_TAG = "loop.view_stale"


@dataclass(frozen=True)
class ViewWrite:
    written: tuple[str, ...]  # metric keys written (new or changed)
    removed: tuple[str, ...]  # metric keys and tags of the managed names no longer in the view
    stale: tuple[str, ...]  # changed keys this store could not rewrite (kept as they were)


def _history(client: MlflowClient, run_id: str, key: str) -> tuple[tuple[int, float], ...]:
    return tuple(
        sorted((int(m.step), float(m.value)) for m in client.get_metric_history(run_id, key))
    )


def _same(a: Sequence[tuple[int, float]], b: Sequence[tuple[int, float]]) -> bool:
    import math

    return len(a) == len(b) and all(
        sa == sb and math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-15)
        for (sa, va), (sb, vb) in zip(a, b, strict=True)
    )


def _drop_metrics(client: MlflowClient, run_id: str, keys: Sequence[str]) -> bool:
    """Remove every value of `keys` from the run, in a SQL store; False for other stores.

    MLflow has no public call for this (metrics are append-only), so it goes through the SQL
    store's own session and tables: `metrics` (the history) and `latest_metrics` (the runs
    table's column)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):
        return False
    if not keys:
        return True
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

    with store.ManagedSessionMaker(read_only=False) as session:
        for table in (SqlMetric, SqlLatestMetric):
            session.query(table).filter(table.run_uuid == run_id, table.key.in_(list(keys))).delete(
                synchronize_session=False
            )
    return True


def replace_table(
    client: MlflowClient, run_id: str, rows: list[dict[str, Any]], artifact_file: str
) -> None:
    """`rows` as an MLflow table artifact that replaces an earlier one: `log_table` appends to
    an existing file, so a second write goes over the file in the same format (pandas
    "split" JSON), which the UI already shows as a table."""
    import tempfile

    frame = pd.DataFrame(rows)
    folder, _, name = artifact_file.rpartition("/")
    if name not in {Path(a.path).name for a in client.list_artifacts(run_id, folder or None)}:
        client.log_table(run_id, data=frame, artifact_file=artifact_file)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_json(path, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, str(path), artifact_path=folder or None)


def log_view(
    client: MlflowClient,
    run_id: str,
    *,
    series: dict[str, Sequence[tuple[int, float]]],
    scalars: dict[str, float],
    tags: dict[str, str],
    table: list[dict[str, Any]],
    table_file: str,
    managed: Sequence[str],
) -> ViewWrite:
    """Write a sweep's view on its parent so that it holds exactly one value per step.

    `series`: metric -> (step, value) points; `scalars`: one value each, at step 0; `managed`:
    name prefixes (`curve.`, `loop.decision.`, ...) this view owns: metrics and tags under them
    that the view no longer has (a decision that no longer has an n*) are removed."""
    wanted = {k: tuple(sorted((int(s), float(v)) for s, v in pts)) for k, pts in series.items()}
    wanted.update({k: ((0, float(v)),) for k, v in scalars.items()})
    run = client.get_run(run_id)
    ours = {k for k in run.data.metrics if k.startswith(tuple(managed))}
    changed, held = {}, {}
    for key, points in wanted.items():
        if key in ours:
            have = _history(client, run_id, key)
            if _same(have, points):
                continue
            held[key] = have
        changed[key] = points
    gone = sorted(ours - set(wanted))
    stale: list[str] = []
    if not _drop_metrics(client, run_id, [*held, *gone]):
        # values cannot be removed: a series that only gained steps (a resumed grid sweep's
        # means) gets the new steps; one whose values moved is kept as it was, and named
        for key, have in held.items():
            new = dict(changed[key])
            if all(s in new and _same([(s, v)], [(s, new[s])]) for s, v in have):
                steps = {s for s, _ in have}
                changed[key] = tuple(p for p in changed[key] if p[0] not in steps)
            else:
                stale.append(key)
                del changed[key]
        stale.sort()
        gone = []
    # one timestamp per parent, so two drivers writing the same view at once write identical
    # rows, which the store keeps once
    stamp = int(run.info.start_time or 0)
    metrics = [Metric(k, v, stamp, s) for k, pts in changed.items() for s, v in pts]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    old_tags = {k for k in run.data.tags if k.startswith(tuple(managed))}
    for key in sorted(old_tags - set(tags)):
        client.delete_tag(run_id, key)
    items = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
    if stale:
        items.append(RunTag(STALE_TAG, ",".join(stale)))
    elif STALE_TAG in run.data.tags:
        client.delete_tag(run_id, STALE_TAG)
    for i in range(0, len(items), 100):
        client.log_batch(run_id, tags=items[i : i + 100])
    replace_table(client, run_id, table, table_file)
    return ViewWrite(
        tuple(sorted(changed)), tuple(gone + sorted(old_tags - set(tags))), tuple(stale)
    )


@dataclass(frozen=True)
class SweepRecord:
    """A sweep's parent as `loop compare` reads it back: the view that `log_view` wrote."""

    run_id: str
    name: str
    experiment_id: str
    experiment: str
    recipe: str  # the recipe name (tag loop.recipe)
    series: dict[str, tuple[tuple[int, float], ...]]  # every metric under the prefixes asked
    tags: dict[str, str]
    table: list[dict[str, Any]]  # the decision table artifact; [] when there is none


def newest_sweep(client: MlflowClient, experiment: str, recipe_digest: str) -> str | None:
    """The newest parent run of this recipe in its experiment (any pool), if any."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`loop.kind` = 'sweep' and tags.`loop.recipe_digest` = "
        f"'{_q(recipe_digest)}'",
        max_results=1,
        order_by=["start_time DESC"],
    )
    return found[0].info.run_id if found else None


def read_sweep(
    client: MlflowClient, run_id: str, *, prefixes: Sequence[str], table_file: str
) -> SweepRecord | None:
    """The parent run `run_id` with the histories of its metrics under `prefixes`; None when
    the store has no such run or the run is not a sweep's parent."""
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    if run.data.tags.get("loop.kind") != "sweep" or run.info.lifecycle_stage != "active":
        return None
    exp = client.get_experiment(run.info.experiment_id)
    series = {
        k: _history(client, run_id, k)
        for k in sorted(run.data.metrics)
        if k.startswith(tuple(prefixes))
    }
    folder, _, name = table_file.rpartition("/")
    table: list[dict[str, Any]] = []
    if name in {Path(a.path).name for a in client.list_artifacts(run_id, folder or None)}:
        import json
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
            path = client.download_artifacts(run_id, table_file, tmp)
            # read as stored (pandas "split" JSON): no type guessing turns "1,200" into a number
            blob = json.loads(Path(path).read_text(encoding="utf-8"))
        table = [dict(zip(blob["columns"], row, strict=True)) for row in blob["data"]]
    return SweepRecord(
        run_id=run_id,
        name=run.info.run_name,
        experiment_id=run.info.experiment_id,
        experiment=exp.name,
        recipe=run.data.tags.get("loop.recipe", ""),
        series=series,
        tags=dict(run.data.tags),
        table=table,
    )


def compare_url(
    run_ids: Sequence[str], experiment_ids: Sequence[str], host: str = "127.0.0.1", port: int = 5000
) -> str:
    """The MLflow UI page comparing these runs (parameters, metrics, charts side by side)."""
    import json
    from urllib.parse import quote

    runs = quote(json.dumps(list(run_ids), separators=(",", ":")))
    exps = quote(json.dumps(sorted(set(experiment_ids)), separators=(",", ":")))
    return f"http://{host}:{port}/#/compare-runs?runs={runs}&experiments={exps}"


def metric_url(
    key: str,
    run_ids: Sequence[str],
    experiment_ids: Sequence[str],
    *,
    also: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 5000,
) -> str:
    """The MLflow UI chart of metric `key` (and `also`) for these runs, against step."""
    import json
    from urllib.parse import quote

    def j(v) -> str:
        return quote(json.dumps(list(v), separators=(",", ":")))

    # the parameters the UI's own links carry (Routes.getMetricPageRoute, MLflow 3.17)
    return (
        f"http://{host}:{port}/#/metric?runs={j(run_ids)}&metric={quote(json.dumps(key))}"
        f"&experiments={j(sorted(set(experiment_ids)))}&plot_metric_keys={j([key, *also])}"
        "&plot_layout=%7B%7D&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=true"
        "&deselected_curves=%5B%5D&last_linear_y_axis_range=%5B%5D"
    )
