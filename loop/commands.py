"""The commands that are not a sweep: `loop status`, `ui`, `train` (one cell), `review`, `demo`.

Each is a short function over a validated recipe that hands off to the stage modules; `loop/cli.py`
parses and prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop.cell import CellOutcome, cell_params
from loop.driver import SweepOutcome, run_cell, sweep
from loop.events import Event, Progress, say, silent
from loop.prepare import check_sizes, prepare, resolve_evaluators, work_dir
from loop.recipe import Cell, Recipe, RecipeError, expand_cells, is_curve_metric

# ----------------------------------------------------------------------------------------------
# Status, UI
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    cell: str
    state: str  # done | failed | killed | running | pending
    metrics: dict[str, float]
    note: str | None


def status(recipe: Recipe) -> list[StatusRow]:
    from loop import track

    runs = track.runs_of(track.tracker(recipe, prepare(recipe).pool_digest))
    latest: dict[str, Any] = {}
    for r in runs:  # newest first; a DONE run wins over later failures
        if r.cell not in latest or (r.status == "DONE" and latest[r.cell].status != "DONE"):
            latest[r.cell] = r
    planned = expand_cells(recipe)
    ids = {c.id for c in planned}
    # cells of later adaptive rounds (or an earlier, larger grid) that the store holds
    extra = sorted({r.key for r in runs} - set(planned), key=lambda c: (c.size, c.seed, c.tier))
    rows = []
    for cell in planned + [c for c in extra if c.id not in ids]:
        r = latest.get(cell.id)
        if r is None:
            rows.append(StatusRow(cell.id, "pending", {}, None))
            continue
        state = {"DONE": "done", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}.get(
            r.status, r.status.lower()
        )
        shown = {k: v for k, v in r.metrics.items() if is_curve_metric(k)}
        rows.append(
            StatusRow(cell.id, state, shown, (r.error or "").splitlines()[0] if r.error else None)
        )
    return rows


def ui_command(recipe: Recipe | None, port: int = 5000) -> tuple[list[str], str]:
    from loop import track

    store = track.resolve_store(recipe.tracking.uri if recipe else None)
    client = track.client_for(store)
    name = recipe.experiment if recipe else None
    url = (
        track.experiment_url(client, name, port=port)
        if name
        else f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning"
    )
    return track.ui_command(store, port=port), url


# ----------------------------------------------------------------------------------------------
# One cell
# ----------------------------------------------------------------------------------------------


def run_single(
    recipe: Recipe, cell: Cell, *, progress: Progress = silent, track: bool = True
) -> CellOutcome:
    """`loop train`: one cell, tracked as a child of the sweep's parent run when `track`."""
    from loop import models
    from loop import track as track_mod

    prep = prepare(recipe, progress=progress)
    recipe = resolve_evaluators(recipe, prep.raw.examples, progress=progress)  # `auto` only
    if cell.tier not in prep.tiers:
        raise RecipeError(
            recipe.path, [f"--tier: must be one of {', '.join(prep.tiers)}, got {cell.tier!r}"]
        )
    check_sizes(
        dataclasses.replace(
            recipe, subsets=dataclasses.replace(recipe.subsets, sizes=(cell.size,))
        ),
        prep,
    )
    tr = parent_id = None
    if track:
        tr = track_mod.tracker(recipe, prep.pool_digest)
        parent_id = track_mod.open_sweep(
            tr, params=cell_params(recipe), tags={"loop.recipe": recipe.name}
        )
    base = models.load_base(recipe.model)

    def on_step(step: int, max_steps: int, logs: dict) -> None:
        progress(Event("step", cell=cell.id, done=0, total=1, step=step, max_steps=max_steps))

    out = run_cell(recipe, cell, prep, base, tr, parent_id, on_step, claim=False)
    assert out is not None  # without a claim a cell always runs
    if tr is not None:
        tr.client.update_run(parent_id, status="FINISHED")
    return out  # a failed cell carries its error (and is recorded FAILED)


# ----------------------------------------------------------------------------------------------
# Review
# ----------------------------------------------------------------------------------------------


def review_export(recipe: Recipe, out: Path, *, per_stratum: int = 10) -> Path:
    from loop import review

    prep = prepare(recipe)
    return review.export_review(prep.clean, out, per_stratum=per_stratum).path


def review_import(recipe: Recipe, path: Path) -> str:
    from loop import review

    target = (
        Path(recipe.clean.review)
        if recipe.clean.review
        else work_dir(recipe) / "review_decisions.json"
    )
    result = review.import_review(path, out=target)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items()))
    text = f"{counts}; {len(result.decisions)} decisions in {result.path}"
    if not recipe.clean.review:
        text += f"\nset `clean.review: {result.path}` in {recipe.path} so cleaning honours them"
    return text


# ----------------------------------------------------------------------------------------------
# Demo
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOutcome:
    sweep: SweepOutcome
    cleaning_score: str  # how well cleaning removed the records the generator spoiled
    pool_paths: list[Path]


DEMO_ROWS = 1200  # ~700 survive cleaning: 160 of them validate, the rest train
DEMO_TASK = "product"  # a 135M model learns it from about a hundred examples (loop.demo.TASKS)
# half the default share of wrong labels: they survive cleaning, so at 8% of the pool they would
# be 13% of the clean tier and of its validation items
DEMO_RATES = {"wrong_label": 0.04}


def demo(
    recipe: Recipe,
    *,
    progress: Progress = silent,
    rows: int | None = None,
    seed: int = 0,
    task: str = DEMO_TASK,
) -> DemoOutcome:
    """Write the seeded demo pool where the recipe reads it, run the sweep, score the cleaning."""
    from loop import demo as demo_mod

    if not recipe.pool.paths:
        raise RecipeError(
            recipe.path, ["pool.paths: the demo writes its pool to a file; give one path"]
        )
    target = Path(recipe.pool.paths[0])
    made = demo_mod.write_demo_pool(
        target.parent, rows=rows or DEMO_ROWS, seed=seed, task=task, rates=DEMO_RATES
    )
    say(progress, f"demo pool: {made.rows} records with planted defects → {target.parent}")
    prep = prepare(recipe, progress=progress)
    outcome = sweep(recipe, progress=progress, prep=prep)
    kept = {demo_mod.source_line(e.source) for e in prep.clean.examples}
    dropped = {
        demo_mod.source_line(d.example.source) for d in prep.clean.dropped if d.step != "raw_tier"
    }
    score = demo_mod.score_cleaning(made.truth, kept, dropped - kept)
    return DemoOutcome(outcome, demo_mod.format_score(score), list(made.paths))
