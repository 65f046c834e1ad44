"""The one orchestrator: for each cell of the sweep, skip it if the store holds it as done, else
subset -> train -> evaluate (`loop/cell.py`) -> track (`loop/track.py`); grid or adaptive rounds;
then the report.

Preparation (pool -> clean -> tiers) is `loop/prepare.py`; one cell is `loop/cell.py`; the run
writes are `loop/track.py`; the token estimate is `loop/plan.py`; the commands that are not a
sweep (status, UI, review, demo, `loop train`) are `loop/commands.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop import subsets as subsets_mod
from loop import track
from loop.cell import (
    CellOutcome,
    CellResult,
    OnStep,
    cell_params,
    compute_cell,
    failed_result,
    outcome,
    take_subset,
)
from loop.events import Event, Progress, say, silent
from loop.prepare import (
    Prepared,
    check_sizes,
    log_clean,
    prepare,
    repeated_tiers,
    repeated_tiers_text,
    resolve_evaluators,
    warn_raw_records,
    work_dir,
)
from loop.recipe import (
    Cell,
    Recipe,
    expand_cells,
    is_curve_metric,
    reference_tier,
    validate,
)


@dataclass(frozen=True)
class ReportOutcome:
    table: list[dict]
    paths: Any  # report.ReportPaths
    analysis: Any
    costs: Any = None  # costs.CostTable, when the pool names its sources


@dataclass(frozen=True)
class SweepOutcome:
    ran: int
    skipped: int
    failed: int
    interrupted_before: list[str]
    report: ReportOutcome | None
    url: str
    outcomes: list[CellOutcome] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # adaptive sweeps: one row per decision


# ----------------------------------------------------------------------------------------------
# One cell in this process, tracked
# ----------------------------------------------------------------------------------------------


def _manifest(recipe: Recipe, subset: subsets_mod.Subset) -> Path:
    return subsets_mod.write_manifest(subset, work_dir(recipe) / "manifests")


# Why a cell was not claimed: what the sweep prints for it.
_NOT_CLAIMED = {
    "done": "finished elsewhere",
    "held": "running elsewhere (another driver holds it)",
    "contested": "claimed by another driver at the same moment; trying again later",
}


def _open(recipe: Recipe, tr: track.Tracker, parent_id: str | None, cell: Cell, subset) -> str:
    return track.open_cell(
        tr, parent_id, cell, subset, params=cell_params(recipe), manifest=_manifest(recipe, subset)
    )


def _claim(
    recipe: Recipe, tr: track.Tracker, parent_id: str | None, cell: Cell, subset
) -> tuple[str | None, str]:
    """(the cell's run, opened as a lease, or None; why not: done | held | contested). A stale
    lease (its driver died) is marked KILLED first."""
    interval = tr.heartbeat_s
    runs = track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest, cell.id)
    if any(r.status == "DONE" for r in runs):
        return None, "done"
    if any(track.lease_live(r, interval) for r in runs):
        return None, "held"
    track.mark_interrupted(tr.client, runs, interval)
    run_id = _open(recipe, tr, parent_id, cell, subset)
    runs = track.cell_runs(tr.client, tr.exp_id, tr.recipe_digest, tr.pool_digest, cell.id)
    if track.contested(runs, run_id, interval):
        track.withdraw(tr.client, run_id)
        return None, "contested"
    return run_id, ""


def run_cell(
    recipe: Recipe,
    cell: Cell,
    prep: Prepared,
    base: Any,
    tr: track.Tracker | None,
    parent_id: str | None,
    on_step: OnStep,
    *,
    claim: bool = True,
    on_start: Callable[[], None] | None = None,
    not_claimed: Callable[[str], None] | None = None,
) -> CellOutcome | None:
    """subset -> train -> evaluate -> track, for one cell in this process. The run is opened
    first, so the UI shows it RUNNING with live step metrics, and holds the cell while its
    heartbeat runs; with `claim`, None when the cell is done or another driver holds it
    (`not_claimed` hears why). Exceptions other than Ctrl-C become a FAILED run with its error;
    Ctrl-C marks the run KILLED and propagates."""
    t0 = time.time()
    subset = take_subset(recipe, prep.tiers[cell.tier], cell)
    run_id = None
    if tr is not None:
        if claim:
            run_id, why = _claim(recipe, tr, parent_id, cell, subset)
            if run_id is None:
                if not_claimed is not None:
                    not_claimed(why)
                return None
        else:
            run_id = _open(recipe, tr, parent_id, cell, subset)
    if on_start is not None:
        on_start()
    history: list[tuple[str, int, float]] = []
    beat = (
        track.heartbeat(tr.client, run_id, tr.heartbeat_s)
        if tr is not None and run_id
        else contextlib.nullcontext()
    )
    try:
        # the adapter is kept so `loop evaluate` can re-score the cell without retraining
        adapters = work_dir(recipe) / "adapters" / cell.id
        with beat:
            res = compute_cell(recipe, cell, subset, prep.val, base, on_step, history, adapters)
    except KeyboardInterrupt:
        if tr is not None and run_id:
            track.fail_cell(tr.client, run_id, "interrupted by the user (Ctrl-C)", killed=True)
        raise
    except Exception as exc:  # recorded, and the sweep goes on
        res = failed_result(exc, history, t0)
    if tr is not None and run_id:
        track.close_cell(tr, run_id, res)
    return outcome(cell, res, run_id)


# ----------------------------------------------------------------------------------------------
# Sweep
# ----------------------------------------------------------------------------------------------


@dataclass
class _Sweep:
    """State shared by the rounds of one sweep: where results go and what ran."""

    recipe: Recipe
    prep: Prepared
    tr: track.Tracker
    parent_id: str
    progress: Progress
    base: Any = None  # loaded on the first local cell
    outcomes: list[CellOutcome] = field(default_factory=list)
    skipped: int = 0
    timings: list[Any] = field(default_factory=list)  # plan.CellTime of the cells run here
    _eta: Any = None  # _Eta, made on first use


@dataclass
class _Eta:
    """What the sweep's ETA needs: each cell's estimated training tokens and the prior rates."""

    tokens: Callable[[Cell], float]
    eval_prior_s: float
    prior: Any  # plan.Rates
    parallel: int
    slow: float
    device: str


def _eta(s: _Sweep) -> _Eta:
    if s._eta is None:
        import torch

        from loop import plan as plan_mod

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = "cuda" if gpus else "cpu"
        prior = plan_mod.load_rates(s.recipe, device) or plan_mod.default_rates(bool(gpus))
        parallel, slow = plan_mod.parallel_cells(s.recipe, gpus)
        s._eta = _Eta(
            plan_mod.cell_cost(s.recipe, s.prep),
            plan_mod.eval_prior_seconds(s.recipe, len(s.prep.val)),
            prior,
            parallel,
            slow,
            device,
        )
    return s._eta


def _minutes(seconds: float) -> str:
    from loop.plan import format_eta

    return format_eta(seconds)


def _rates_words(s: _Sweep) -> str:
    from loop import plan as plan_mod

    r = plan_mod.calibrate(_eta(s).prior, s.timings)
    return f"{r.tokens_per_s:,.0f} training tokens/s, {r.source}"


def _time_left(s: _Sweep, cells: list[Cell]) -> float:
    """Seconds `cells` still take, at the rates this sweep's finished cells measured."""
    from loop import plan as plan_mod

    e = _eta(s)
    rates = plan_mod.calibrate(e.prior, s.timings)
    one = [plan_mod.cell_seconds(e.tokens(c), e.eval_prior_s, rates) * e.slow for c in cells]
    return plan_mod.wall_seconds(one, e.parallel)


def _timed(s: _Sweep, cell: Cell, out: CellOutcome) -> None:
    """Add a finished cell's measured seconds to the sweep's calibration."""
    from loop import plan as plan_mod

    if out.error:
        return
    e = _eta(s)
    s.timings.append(
        plan_mod.CellTime(
            # a cell sharing the machine (Ray) ran `slow` times slower: the rates stay the
            # whole machine's, as the estimate of the cells left expects
            e.tokens(cell) * e.slow,
            out.train_seconds,
            e.eval_prior_s * e.slow,
            max(0.0, out.seconds - out.train_seconds),
        )
    )


def _keep_rates(s: _Sweep) -> None:
    """The rates this sweep measured, for the next `loop plan` here (trained cells only)."""
    from loop import plan as plan_mod

    if s._eta is None or not any(t.train_tokens for t in s.timings):
        return
    plan_mod.save_rates(s.recipe, s._eta.device, plan_mod.calibrate(s._eta.prior, s.timings))


def _run_cells(s: _Sweep, cells: list[Cell]) -> None:
    """Run the cells of `cells` that the store does not hold as done, on the recipe's executor."""
    done = set(track.done_cells(track.runs_of(s.tr)))
    pending = [c for c in cells if c.id not in done]
    total, finished = len(cells), len(cells) - len(pending)
    s.skipped += finished
    if finished:
        say(s.progress, f"{finished} of {total} cells already finished: skipping them")
    if not pending:
        return
    counter = {"done": finished}
    left = {c.id: c for c in pending}
    say(
        s.progress,
        f"estimated time for {len(pending)} cell(s): about "
        f"{_minutes(_time_left(s, pending))} ({_rates_words(s)})",
    )

    def finished_cell(out: CellOutcome) -> None:
        s.outcomes.append(out)
        counter["done"] += 1
        cell = left.pop(out.cell, None)
        if cell is not None:
            _timed(s, cell, out)
        eta = _time_left(s, list(left.values()))
        if out.error:
            s.progress(
                Event(
                    "cell_failed",
                    cell=out.cell,
                    done=counter["done"],
                    total=total,
                    message=out.error,
                    eta_s=eta,
                )
            )
        else:
            shown = {k: v for k, v in out.metrics.items() if is_curve_metric(k)}
            s.progress(
                Event(
                    "cell_done",
                    cell=out.cell,
                    done=counter["done"],
                    total=total,
                    metrics=shown,
                    eta_s=eta,
                )
            )

    def started(cell: Cell) -> None:
        what = f"{cell.size} examples of tier {cell.tier}, seed {cell.seed}"
        s.progress(
            Event("cell_start", cell=cell.id, done=counter["done"], total=total, message=what)
        )

    if s.recipe.executor.kind == "ray":
        from loop import cluster

        def result(cell: Cell, res: CellResult) -> None:
            sub = subsets[cell]
            run_id = track.record_cell(
                s.tr,
                s.parent_id,
                cell,
                sub,
                res,
                params=cell_params(s.recipe),
                manifest=_manifest(s.recipe, sub),
            )
            finished_cell(outcome(cell, res, run_id))

        # drawn once, shipped
        subsets = {c: take_subset(s.recipe, s.prep.tiers[c.tier], c) for c in pending}
        cluster.run_cells(
            s.recipe,
            list(subsets.items()),
            s.prep.val,
            on_submit=lambda c: say(
                s.progress, f"queued on Ray: {c.id} ({c.size} examples, tier {c.tier})"
            ),
            on_result=result,
        )
        return

    from loop import models

    if s.base is None:
        s.base = models.load_base(s.recipe.model)
    elsewhere: list[Cell] = []
    reasons: list[str] = []
    for cell in _with_cells_elsewhere(s, pending, elsewhere):

        def on_step(
            step: int, max_steps: int, logs: dict, cell: Cell = cell, done: int = counter["done"]
        ) -> None:
            loss = logs.get("loss", logs.get("train_loss"))
            s.progress(
                Event(
                    "step",
                    cell=cell.id,
                    done=done,
                    total=total,
                    step=step,
                    max_steps=max_steps,
                    message=f"loss {loss:.3f}" if isinstance(loss, (int, float)) else "",
                )
            )

        out = run_cell(
            s.recipe,
            cell,
            s.prep,
            s.base,
            s.tr,
            s.parent_id,
            on_step,
            on_start=lambda cell=cell: started(cell),
            not_claimed=reasons.append,
        )
        if out is not None:
            finished_cell(out)
            continue
        why = reasons.pop()
        say(s.progress, f"{cell.id}: {_NOT_CLAIMED[why]}")
        if why == "done":
            s.skipped += 1
        else:  # another driver holds it: looked at again once the pending cells are done
            elsewhere.append(cell)


def _with_cells_elsewhere(s: _Sweep, pending: list[Cell], elsewhere: list[Cell]) -> Iterator[Cell]:
    """`pending`, then the cells another driver held (`elsewhere`, filled while iterating) as
    their leases end: a cell finished elsewhere is skipped; one whose driver died is yielded to
    run here. Waits, polling about every heartbeat interval, while other drivers work."""
    yield from pending
    interval = s.tr.heartbeat_s
    while elsewhere:
        say(
            s.progress, "waiting for cells running elsewhere: " + ", ".join(c.id for c in elsewhere)
        )
        # jittered, so that two drivers that backed off from the same cell do not meet again
        time.sleep(interval * random.uniform(0.5, 1.5))
        waiting, elsewhere[:] = list(elsewhere), []
        for cell in waiting:
            runs = track.cell_runs(
                s.tr.client, s.tr.exp_id, s.tr.recipe_digest, s.tr.pool_digest, cell.id
            )
            if any(r.status == "DONE" for r in runs):
                s.skipped += 1
                say(s.progress, f"{cell.id}: finished elsewhere")
            elif any(track.lease_live(r, interval) for r in runs):
                elsewhere.append(cell)
            else:
                yield cell  # its driver died: claimed and run here (or held elsewhere again)


ZERO_SHOT = "zero-shot"  # tier tag of the base model's run (size 0): every tier's anchor


def zero_shot_cell() -> Cell:
    return Cell(ZERO_SHOT, 0, 0)


def earlier_claims(
    runs: list[track.CellRun], cell_id: str, run_id: str, interval: float
) -> list[track.CellRun]:
    """The runs of `cell_id` that beat the claim `run_id` just opened: a finished one, or a live
    claim earlier in (start time, run id). Every driver sees the same claims in the same order,
    so of claims opened at nearly one moment exactly one goes on, and a claim opened before this
    one (whatever its id) always wins."""
    claims = [r for r in runs if r.cell == cell_id]
    mine = next((r for r in claims if r.run_id == run_id), None)
    order = (mine.start_time, run_id) if mine else (int(time.time() * 1000), run_id)
    return [
        r
        for r in claims
        if r.run_id != run_id
        and (
            r.status == "DONE"
            or (track.lease_live(r, interval) and (r.start_time, r.run_id) < order)
        )
    ]


def run_zero_shot(s: _Sweep) -> None:
    """Evaluate the base model once on the validation items with the sweep's evaluators: size 0,
    logged as its own run (tier tag `zero-shot`), the anchor of every tier's curve."""
    from loop import evaluate, models

    cell = zero_shot_cell()
    runs = track.runs_of(s.tr)
    if cell.id in track.done_cells(runs):
        return
    if any(r.cell == cell.id and track.lease_live(r, s.tr.heartbeat_s) for r in runs):
        # another driver evaluates the base model now; its run is read with the rest at report time
        say(s.progress, f"{cell.id}: running elsewhere (another driver holds it)")
        return
    if s.recipe.executor.kind == "ray":
        say(s.progress, "zero-shot cell runs only on the local executor")
        return
    say(s.progress, "evaluating the base model once (size 0, zero-shot)")
    t0 = time.time()
    if s.base is None:
        s.base = models.load_base(s.recipe.model)
    tags = {
        "loop.tier": ZERO_SHOT,
        "loop.size": "0",
        "loop.seed": "0",
        "loop.recipe_digest": s.tr.recipe_digest,
        "loop.pool_digest": s.tr.pool_digest,
        "loop.capped": "false",
        "loop.select": "none",  # the untrained model: no selection method
        # leased like every cell: a second driver on the same store does not evaluate it again
        track.HEARTBEAT_TAG: f"{time.time():.3f}",
        track.OWNER_TAG: track.lease_owner(),
    }
    run_id = track.start_cell(
        s.tr.client,
        s.tr.exp_id,
        s.parent_id,
        cell=cell.id,
        tags=tags,
        params={**cell_params(s.recipe), "subset.n_examples": 0},
    )
    rivals = earlier_claims(track.runs_of(s.tr), cell.id, run_id, s.tr.heartbeat_s)
    if rivals:
        track.withdraw(s.tr.client, run_id)
        say(s.progress, f"{cell.id}: claimed by another driver at the same moment")
        return
    try:
        t_eval = time.time()
        with track.heartbeat(s.tr.client, run_id, s.tr.heartbeat_s):
            ev = evaluate.evaluate(
                s.base,
                s.base.tokenizer,
                s.prep.val,
                s.recipe.eval,
                max_length=s.recipe.train.max_length,
                as_text=s.recipe.train.completion_as_text,
            )
        res = CellResult(
            metrics=dict(ev.metrics),
            history=(),
            params={},
            counters={"train_tokens": 0, "eval_items": ev.n_sampled},
            predictions=tuple(ev.predictions),
            steps=0,
            seconds=time.time() - t0,
            item_scores=dict(ev.item_scores),
        )
        from loop.plan import CellTime

        # evaluation only, without the model load before it: what every cell's evaluation costs
        s.timings.append(CellTime(0.0, 0.0, _eta(s).eval_prior_s, time.time() - t_eval))
    except KeyboardInterrupt:
        track.fail_cell(s.tr.client, run_id, "interrupted by the user (Ctrl-C)", killed=True)
        raise
    except Exception as exc:  # the sweep goes on without an anchor
        res = failed_result(exc, [], t0)
    track.close_cell(s.tr, run_id, res)


def sweep(
    recipe: Recipe,
    *,
    progress: Progress = silent,
    cells: list[Cell] | None = None,
    prep: Prepared | None = None,
) -> SweepOutcome:
    """Run every cell not yet finished for this recipe+pool (grid), or round after round as the
    curves ask (adaptive); then write the report. A recipe built in code is checked as
    `loop validate` checks a file, before anything runs."""
    validate(recipe)
    prep = prep or prepare(recipe, progress=progress)
    recipe = resolve_evaluators(recipe, prep.raw.examples, progress=progress)  # `auto` only
    prep = check_sizes(recipe, prep)
    tr = track.tracker(recipe, prep.pool_digest)
    warn_raw_records(recipe, tr, progress)
    log_clean(recipe, prep, tr)
    runs = track.runs_of(tr)
    busy = track.running_elsewhere(runs, tr.heartbeat_s)
    if busy:
        say(progress, f"{len(busy)} cell(s) running elsewhere (another driver): " + ", ".join(busy))
    interrupted = track.mark_interrupted(tr.client, runs, tr.heartbeat_s)
    if interrupted:
        say(
            progress,
            f"marked {len(interrupted)} interrupted cell(s) KILLED; rerunning: "
            + ", ".join(interrupted),
        )
    adaptive = recipe.subsets.strategy == "adaptive" and cells is None
    parent_id = track.open_sweep(
        tr,
        params={
            **cell_params(recipe),
            "tiers": ",".join(prep.tiers),
            "sizes": ",".join(map(str, recipe.sizes)),
            "seeds": ",".join(map(str, recipe.subsets.seeds)),
            "validation.n": len(prep.val),
            "strategy": "adaptive" if adaptive else "grid",
            "executor": recipe.executor.kind,
        },
        tags={"loop.recipe": recipe.name},
    )
    throughput = {  # IFD scoring speed on this machine, when this sweep scored examples
        f"select.{name}.examples_per_s": r.examples_per_s
        for name, r in prep.rankings.items()
        if r.examples_per_s
    }
    if throughput:
        track.log_metrics(tr.client, parent_id, throughput)
    s = _Sweep(recipe, prep, tr, parent_id, progress)
    decisions: list[dict] = []
    try:
        run_zero_shot(s)
        if adaptive:
            decisions = _adaptive(s)
        else:
            grid = cells if cells is not None else expand_cells(recipe)
            repeats = repeated_tiers(prep)
            if repeats and cells is None:
                say(progress, repeated_tiers_text(repeats, prep))
                grid = [c for c in grid if c.tier not in repeats]
            _run_cells(s, grid)
    except BaseException:  # Ctrl-C or an error outside any cell: the parent must not stay RUNNING
        track.finish_parent(
            tr.client, parent_id, failed=sum(1 for o in s.outcomes if o.error), interrupted=True
        )
        raise
    _keep_rates(s)
    failed = sum(1 for o in s.outcomes if o.error)
    rep = report(recipe, prep=prep, tr=tr, parent_id=parent_id, decisions=decisions or None)
    track.finish_parent(tr.client, parent_id, failed=failed)
    return SweepOutcome(
        len(s.outcomes),
        s.skipped,
        failed,
        interrupted,
        rep,
        track.experiment_url(tr.client, recipe.experiment),
        s.outcomes,
        decisions,
    )


def _adaptive(s: _Sweep) -> list[dict]:
    """Rounds chosen by `loop/adaptive.py` from the curves so far; each decision is printed and
    the table is logged on the parent run after every round (a crash keeps it)."""
    from loop import adaptive
    from loop.plan import cell_cost

    recipe, prep = s.recipe, s.prep
    decisions: list[dict] = []

    def on_decision(d: Any) -> None:
        row = adaptive.decisions_table([d])[0]
        decisions.append(row)
        sizes = ",".join(map(str, d.next_sizes)) or "—"
        say(s.progress, f"round {d.round} · {d.tier}: {d.decision} → next sizes {sizes}; {d.why}")

    def run_round(cells: list[Cell]) -> None:
        if decisions:
            _save_decisions(recipe, s.tr, decisions)
            track.log_rows(s.tr.client, s.parent_id, decisions, "adaptive_decisions.json")
        _run_cells(s, cells)

    def analyze(cells: frozenset[Cell], eval_items: Any = None) -> Any:
        # Only the cells scheduled so far: a resumed sweep replays its rounds on the same data
        # even though the store already holds later rounds (or an earlier grid's cells). Cells
        # re-scored on more items are read with their latest scores (a resumed sweep reads
        # them so from its first round on).
        out = report(recipe, prep=prep, tr=s.tr, write=False, cells=cells)
        return out.analysis if out else None

    def rescore_tier(tier: str, items: int) -> None:
        """The tier's finished cells and the zero-shot anchor on `items` evaluation items, with
        no retraining (the adapters are run artifacts). Validation samples are nested, so the
        other tiers keep sharing their items with the anchor."""
        from loop import models

        runs = {
            cid: r
            for cid, r in track.done_cells(track.runs_of(s.tr)).items()
            if r.tags.get("loop.tier") in (tier, ZERO_SHOT)
            and int(r.metrics.get("eval_items", 0)) < min(items, len(prep.val))
        }
        if not runs:
            return
        if s.base is None:
            s.base = models.load_base(recipe.model)
        cfg = dataclasses.replace(recipe.eval, samples=items)
        for r in _rescore_runs(recipe, prep, s.tr, s.base, runs, cfg, s.progress):
            if r.error:
                say(s.progress, f"{r.cell}: not re-scored ({r.error})")

    result = adaptive.run_rounds(
        recipe,
        prep.tier_sizes,
        run_cells=run_round,
        analyze=analyze,
        cost=cell_cost(recipe, prep),
        on_decision=on_decision,
        rescore=rescore_tier if recipe.executor.kind == "local" else None,
    )
    _save_decisions(recipe, s.tr, decisions)
    track.log_rows(s.tr.client, s.parent_id, decisions, "adaptive_decisions.json")
    track.log_metrics(
        s.tr.client,
        s.parent_id,
        {
            "adaptive.rounds": len(result.rounds),
            "adaptive.cost_tokens": result.cost,
        },
    )
    return decisions


# ----------------------------------------------------------------------------------------------
# Report: the finished cells' curves (between adaptive rounds, and after the sweep)
# ----------------------------------------------------------------------------------------------


def _metric_direction(name: str) -> str | None:
    """'lower' / 'higher' for the metrics the curves use, None for the rest.

    val_loss, eval.<label> (the evaluator's direction) and eval.<label>.prob (the probability of
    the correct option, a continuous score beside 0/1 accuracy).
    """
    import evals

    if name == "val_loss":
        return "lower"
    parts = name.split(".")
    if parts[0] != "eval" or len(parts) not in (2, 3):
        return None
    if len(parts) == 3:
        return "higher" if parts[2] == "prob" else None
    try:
        return "higher" if evals.get(parts[1]).higher_is_better else "lower"
    except KeyError:
        return "higher"


def _records(
    recipe: Recipe,
    runs: list[Any],
    default_items: int | None = None,
    client: Any = None,
) -> tuple[list[Any], list[Any], dict[str, str], dict[str, int]]:
    """Per-cell records and (with `client`) per-item scores of every finished run.

    The zero-shot run (size 0) is every tier's anchor: its scores are repeated in each tier.
    """
    from loop import curves

    records, items, direction, eval_size = [], [], {}, {}
    wanted = set(recipe.saturation.metrics)
    tiers = [t.name for t in recipe.tiers]
    for r in runs:
        if r.status != "DONE":
            continue
        tier, size, seed = r.tags["loop.tier"], int(r.tags["loop.size"]), int(r.tags["loop.seed"])
        as_tiers = tiers if tier == ZERO_SHOT else [tier]
        names = []
        for name, value in r.metrics.items():
            d = _metric_direction(name)
            if d is None or (wanted and name not in wanted):
                continue
            names.append(name)
            direction[name] = d
            records.extend(curves.Record(t, size, seed, name, float(value)) for t in as_tiers)
            if name != "val_loss":
                # items each eval score averages over: the sampling-error floor of the intervals
                n = r.metrics.get("eval_items") or default_items
                if n:
                    eval_size[name] = int(n)
        if client is not None:
            per_item = track.load_item_scores(client, r.run_id)
            for name in names:
                for item, score in per_item.get(name, {}).items():
                    items.extend(
                        curves.ItemScore(t, size, seed, name, item, score) for t in as_tiers
                    )
    return records, items, direction, eval_size


def item_rows(recipe: Recipe, prep: Prepared | None = None) -> list[dict[str, Any]]:
    """The long item table of every finished cell (tier, metric, size, seed, item, score), the
    zero-shot run repeated per tier: what `loop export --items` writes and `loop curve` reads."""
    prep = prep or prepare(recipe)
    recipe = resolve_evaluators(recipe, prep.raw.examples)  # `auto` only
    tr = track.tracker(recipe, prep.pool_digest)
    runs = track.runs_of(tr)
    latest = track.done_cells(runs)
    _, items, _, _ = _records(recipe, list(latest.values()), None, tr.client)
    return [
        {
            "tier": i.tier,
            "metric": i.metric,
            "size": i.size,
            "seed": i.seed,
            "item": i.item,
            "score": i.score,
        }
        for i in sorted(items, key=lambda i: (i.tier, i.metric, i.size, i.seed, i.item))
    ]


@dataclass(frozen=True)
class Rescored:
    cell: str
    items_before: int
    items_after: int
    error: str | None = None


def rescore(
    recipe: Recipe, *, samples: int | None = None, progress: Progress = silent
) -> list[Rescored]:
    """Score every finished cell again on `samples` validation items (default: the recipe's
    eval.samples; all of validation when unset) without retraining: the cell's LoRA adapter (a
    run artifact) goes back on the base model. New metrics, eval_items and per-item scores are
    logged to the same runs; the training history is untouched. Cells logged without an adapter
    are reported and left alone."""
    from loop import models

    prep = prepare(recipe, progress=progress)
    recipe = resolve_evaluators(recipe, prep.raw.examples, progress=progress)
    tr = track.tracker(recipe, prep.pool_digest)
    runs = track.done_cells(track.runs_of(tr))
    cfg = dataclasses.replace(recipe.eval, samples=samples) if samples else recipe.eval
    base = models.load_base(recipe.model)
    return _rescore_runs(recipe, prep, tr, base, runs, cfg, progress)


def _rescore_runs(
    recipe: Recipe,
    prep: Prepared,
    tr: track.Tracker,
    base: Any,
    runs: dict[str, Any],
    cfg: Any,
    progress: Progress,
) -> list[Rescored]:
    """`rescore` on the finished runs given (cell id -> run), with the base model loaded."""
    import tempfile

    from loop import evaluate, train

    out: list[Rescored] = []
    for cell_id, r in sorted(runs.items(), key=lambda kv: int(kv[1].tags["loop.size"])):
        before = int(r.metrics.get("eval_items", 0))
        zero = r.tags.get("loop.tier") == ZERO_SHOT
        with tempfile.TemporaryDirectory() as tmp:
            folder = None if zero else track.download_dir(tr.client, r.run_id, "adapter", Path(tmp))
            if not zero and folder is None:
                out.append(Rescored(cell_id, before, before, "no adapter logged on this run"))
                continue
            say(progress, f"re-scoring {cell_id} on {cfg.samples or 'all'} items")
            model = base if zero else train.load_adapter(base, folder)
            try:
                ev = evaluate.evaluate(
                    model,
                    base.tokenizer,
                    prep.val,
                    cfg,
                    max_length=recipe.train.max_length,
                    as_text=recipe.train.completion_as_text,
                )
            finally:
                if not zero:
                    train.release(model)
        # after the training steps, so the new values are the run's latest; val_loss covers
        # all of validation already and is unchanged
        params = track.run_params(tr.client, r.run_id)
        step = int(params.get("budget.steps", 0)) + 1
        metrics = {k: v for k, v in ev.metrics.items() if k != "val_loss"}
        track.log_metrics(tr.client, r.run_id, {**metrics, "eval_items": ev.n_sampled}, step=step)
        track.log_item_scores(tr.client, r.run_id, dict(ev.item_scores))
        out.append(Rescored(cell_id, before, ev.n_sampled))
    return out


def export_items(recipe: Recipe, out: Path) -> int:
    """Write `item_rows` as CSV; returns the number of rows."""
    import csv

    rows = item_rows(recipe)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tier", "metric", "size", "seed", "item", "score"])
        w.writeheader()
        for row in rows:
            w.writerow({**row, "score": repr(float(row["score"]))})
    return len(rows)


def report(
    recipe: Recipe,
    *,
    prep: Prepared | None = None,
    tr: track.Tracker | None = None,
    parent_id: str | None = None,
    decisions: list[dict] | None = None,
    write: bool = True,
    cells: frozenset[Cell] | None = None,
) -> ReportOutcome | None:
    """Analyse every finished cell, write plots + Markdown/HTML + JSON, log them on the parent run.
    `write=False`: the analysis only (an adaptive sweep's between-rounds look)."""
    from loop import curves
    from loop import report as report_mod

    prep = prep or prepare(recipe)
    recipe = resolve_evaluators(recipe, prep.raw.examples)  # `auto` only
    if tr is None:
        tr = track.tracker(recipe, prep.pool_digest)
    runs = track.runs_of(tr)
    if cells is not None:
        ids = {c.id for c in cells} | {zero_shot_cell().id}  # the anchor belongs to every round
        runs = [r for r in runs if r.cell in ids]
    runs = list(track.done_cells(runs).values())  # one run per cell: the newest finished
    n_val = len(prep.val)
    default_items = min(recipe.eval.samples or n_val, n_val)
    records, items, direction, eval_size = _records(recipe, runs, default_items, tr.client)
    if not any(r.size > 0 for r in records):
        return None
    analysis = curves.analyze(
        records,
        items=items,
        direction=direction,
        epsilon=recipe.saturation.epsilon,
        confidence=recipe.saturation.confidence,
        eval_size=eval_size or None,
        max_items=n_val,
        reference=reference_tier(recipe),  # selection methods against random, when ranked
        chance=_chance_levels(recipe, prep),
    )
    if not write:
        return ReportOutcome(report_mod.decision_table(analysis), None, analysis)
    diag = _diagnose(recipe, prep, runs, tr.client)
    if decisions is None:
        decisions = _saved_decisions(recipe, tr)
    capped = sorted(
        {r.cell for r in runs if r.tags.get("loop.capped") == "true" and r.status == "DONE"}
    )
    notes = [
        f"recipe {recipe.name} (digest {tr.recipe_digest}), pool digest {tr.pool_digest}; "
        f"{len({r.cell for r in runs if r.status == 'DONE'})} finished cells."
    ]
    if capped:
        notes.append(f"capped cells (tier smaller than the size asked): {', '.join(capped)}")
    repeats = repeated_tiers(prep)
    if repeats:
        notes.append(repeated_tiers_text(repeats, prep))
    notes += [r.note for r in prep.rankings.values()]  # how each ranked tier was ranked
    if recipe.licenses.allow and recipe.licenses.policy == "warn":
        from loop import provenance

        notes += [f"⚠ license: {p}" for p in provenance.license_problems(recipe)]
    cost_table = _cost_table(recipe, prep, analysis)
    paths = report_mod.write_report(
        analysis,
        work_dir(recipe) / "report",
        title=f"loop report — {recipe.name}",
        notes=notes,
        rounds=decisions,
        costs=cost_table,
        diagnostics=diag,
    )
    table = report_mod.decision_table(analysis, diag)
    if parent_id is None:
        parent_id = track.latest_sweep(tr)
    if parent_id:
        track.parent_artifacts(tr.client, parent_id, work_dir(recipe) / "report")
        _log_view(tr, parent_id, analysis)
        if cost_table is not None:
            from loop import costs

            track.log_metrics(tr.client, parent_id, costs.metrics(cost_table))
        track.parent_answers(
            tr.client,
            parent_id,
            [(r["tier"], r["metric"], r["answer"], r["summary"]) for r in table],
        )
    return ReportOutcome(table, paths, analysis, cost_table)


def _chance_levels(recipe: Recipe, prep: Prepared) -> dict[str, float]:
    """Per metric, what a model that learned nothing scores on the evaluated items (chance, or
    always the majority label): the analysis never calls a curve at that level saturated."""
    from loop import diagnose
    from loop.evaluate import sample_for_generation

    sample = sample_for_generation(prep.val, recipe.eval)
    return {m: b.floor for m, b in diagnose.baselines(recipe.eval.evaluators, sample).items()}


def _diagnose(recipe: Recipe, prep: Prepared, runs: list[Any], client: Any) -> Any:
    """Chance levels and each finished cell's answers (loop.diagnose), from the cells' logged
    predictions; the zero-shot run counts for every tier."""
    from loop import diagnose
    from loop.evaluate import sample_for_generation

    cells = []
    for r in runs:
        if r.status != "DONE":
            continue
        rows = track.load_predictions(client, r.run_id)
        if rows:
            tier, size = r.tags["loop.tier"], int(r.tags["loop.size"])
            cells.append((tier, size, int(r.tags["loop.seed"]), rows))
    sample = sample_for_generation(prep.val, recipe.eval)
    return diagnose.diagnose(recipe.eval.evaluators, cells, sample)


def _cost_table(recipe: Recipe, prep: Prepared, analysis: Any) -> Any:
    """Sources, licenses, exchange rates and target costs: when the pool names its sources."""
    from loop import costs, provenance

    named = any(ex.meta.get("source") for pool in prep.tiers.values() for ex in pool[:50])
    if not named and not recipe.pool.sources:
        return None
    prices = provenance.source_costs(recipe.pool)
    sources = {
        name: provenance.tier_sources(name, pool, prices) for name, pool in prep.tiers.items()
    }
    return costs.cost_table(analysis, sources, recipe.saturation.targets or None)


def _log_view(tr: track.Tracker, parent_id: str, analysis: Any) -> None:
    """The curves, decisions and decision table on the parent run, one value per step."""
    from loop import report as report_mod

    view = report_mod.parent_view(analysis)
    track.log_view(
        tr.client,
        parent_id,
        series=view.series,
        scalars=view.scalars,
        tags=view.tags,
        table=view.table,
        table_file=report_mod.DECISIONS_TABLE,
        managed=report_mod.VIEW_NAMES,
    )


def _decisions_file(recipe: Recipe) -> Path:
    return work_dir(recipe) / "adaptive_decisions.json"


def _save_decisions(recipe: Recipe, tr: track.Tracker, rows: list[dict]) -> None:
    path = _decisions_file(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"recipe_digest": tr.recipe_digest, "pool_digest": tr.pool_digest, "rows": rows}
    path.write_text(json.dumps(blob, indent=1) + "\n", encoding="utf-8")


def _saved_decisions(recipe: Recipe, tr: track.Tracker) -> list[dict] | None:
    """The last adaptive sweep's decisions for this recipe+pool, for `loop report`."""
    path = _decisions_file(recipe)
    if recipe.subsets.strategy != "adaptive" or not path.is_file():
        return None
    blob = json.loads(path.read_text(encoding="utf-8"))
    same = (blob.get("recipe_digest"), blob.get("pool_digest")) == (
        tr.recipe_digest,
        tr.pool_digest,
    )
    return blob.get("rows") if same else None
