"""`loop` command line: parse, call one stage function, print. The only module that prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loop.errors import ArgumentError, RecipeError, UserError
from loop.recipe import load_recipe

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXAMPLES = """\
typical session:
  loop init data/train.jsonl --out recipes/mine.yaml   a starter recipe chosen from the data
  loop validate recipes/*.yaml          check recipes (exit 2 lists every error)
  loop pool inspect data/*.jsonl        what is in a pool, and what could not be read
  loop plan recipes/demo.yaml           the grid of cells, examples, tokens and a cost estimate
  loop clean recipes/demo.yaml          run the cleaning funnel only
  loop sweep recipes/demo.yaml          train every cell, track in MLflow, write the report
  loop status recipes/demo.yaml         done / failed / pending cells with their metrics
  loop report recipes/demo.yaml         re-analyse finished cells; plots + HTML + JSON
  loop ui                               open the MLflow UI on the project's store
  loop compare recipes/a.yaml recipes/b.yaml   two sweeps' decisions and curves side by side
  loop evaluate recipes/demo.yaml --samples 1000   re-score finished cells on more items, no retraining
  loop export recipes/demo.yaml --items items.csv   per-item scores of every finished cell
  loop curve results.csv --plot c.png   the saturation analysis on results from elsewhere
  loop sweep recipes/x.yaml --executor ray    cells in parallel on Ray (local or a cluster)
  loop server --backend postgresql+psycopg2://...   team tracking server; workers export MLFLOW_TRACKING_URI
"""


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _recipe(path: str, *, preflight: bool = False):
    """The validated recipe; with `preflight`, also its pool, model and store checked (notes
    printed). Errors are RecipeErrors, printed by `main`."""
    r = load_recipe(path)
    if preflight:
        from loop import preflight as preflight_mod
        from loop.prepare import resolve_evaluators

        for note in preflight_mod.check(r):
            err_console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
        if r.eval.evaluators == "auto":  # the pool is there (checked above): choose them now
            r = resolve_evaluators(
                r, progress=lambda ev: err_console.print(escape(ev.message), soft_wrap=True)
            )
    return r


def _print_recipe_error(exc: RecipeError) -> None:
    err_console.print(
        f"[bold red]{escape(exc.source)}[/]: {len(exc.errors)} error(s)", soft_wrap=True
    )
    for e in exc.errors:
        err_console.print(f"  [red]✗[/] {escape(e)}", soft_wrap=True)


def _print_user_error(exc: UserError) -> None:
    if isinstance(exc, RecipeError):
        _print_recipe_error(exc)
        return
    head, *rest = str(exc).splitlines() or [type(exc).__name__]
    err_console.print(f"[red]✗[/] {escape(head)}", soft_wrap=True)
    for line in rest:
        err_console.print(escape(line), soft_wrap=True)


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return "–".join(_fmt(x, digits) for x in v)
    return str(v)


class _Progress:
    """Sweep/clean progress: a live rich bar on a terminal, plain lines in CI logs."""

    def __init__(self) -> None:
        self.tty = console.is_terminal and not os.environ.get("CI")
        self._bar = None
        self._task = None
        self._t0 = time.time()

    def __enter__(self):
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, event) -> None:
        kind = event.kind
        if kind == "message":  # unwrapped: a path or a cache key is never split across lines
            (self._bar.console if self._bar else console).print(
                escape(event.message), soft_wrap=True
            )
            return
        if self._bar is not None:
            if self._task is None and event.total:
                self._task = self._bar.add_task("cells", total=event.total, detail="")
            if self._task is not None:
                detail = event.cell or ""
                if event.max_steps:
                    detail += f" step {event.step}/{event.max_steps}"
                if event.message:
                    detail += f" {event.message}"
                # totals change between adaptive rounds
                self._bar.update(
                    self._task, completed=event.done, total=event.total or None, detail=detail
                )
            if kind in ("cell_done", "cell_failed"):
                self._bar.console.print(_cell_line(event))
            return
        # plain lines: one per cell start/end, and every few training steps
        if kind in ("cell_done", "cell_failed"):
            console.print(_cell_line(event))
        elif kind == "cell_start":
            console.print(f"[{event.done + 1}/{event.total}] {event.cell}: {event.message}")
        elif kind == "step" and event.step and event.step % 10 == 0:
            console.print(f"    {event.cell} step {event.step}/{event.max_steps} {event.message}")


def _cell_line(event) -> str:
    ok = event.kind == "cell_done"
    mark = "[green]✓[/]" if ok else "[red]✗[/]"
    metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in (event.metrics or {}).items())
    left = ""
    if event.eta_s is not None and event.done < event.total:
        left = f"  · about {_duration(event.eta_s)} left"
    return (
        f"{mark} [{event.done}/{event.total}] {event.cell}  {metrics}"
        f"{'' if ok else '  ' + event.message}{left}"
    )


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------


def cmd_validate(args) -> int:
    bad = 0
    for path in args.recipes:
        try:
            r = _recipe(path, preflight=not args.recipe_only)
            if args.pool:
                from loop.prepare import check_sizes

                check_sizes(r)
        except UserError as exc:  # every recipe is checked; each one's errors are listed
            if _debug(args):
                traceback.print_exc()
            _print_user_error(exc)
            bad += 1
            continue
        console.print(
            f"[green]✓[/] {path}  ({len(r.tiers)} tiers × {len(r.sizes)} sizes × {len(r.subsets.seeds)} seeds)"
        )
    return 2 if bad else 0


def cmd_pool_inspect(args) -> int:
    from loop import pool
    from loop.recipe import PoolConfig

    cfg = PoolConfig(paths=tuple(args.paths), format=args.format, on_error="skip")
    if args.format == "auto":
        # The default field names may not fit (e.g. {"input": [messages], "ideal": "B"}):
        # detect the shape the way `loop init` does and say which map was used.
        from loop.init import InitError, detect_fields
        from loop.recipe import FieldMap

        sampled, _ = pool.sample_records(list(args.paths), 200)
        try:
            found = detect_fields([r for _, r in sampled])
        except InitError:
            found = None
        if found is not None and (found.fields or found.format != "auto"):
            cfg = PoolConfig(
                paths=cfg.paths,
                format=found.format,  # type: ignore[arg-type]
                fields=FieldMap(**found.fields),
                on_error="skip",
            )
            console.print(
                f"detected {found.shape}: read with pool.format: {found.format}"
                + (f", pool.fields: {found.fields}" if found.fields else "")
            )
    result = pool.inspect_paths(list(args.paths), cfg, n_samples=args.samples)
    table = Table(title="records per detected format")
    table.add_column("format")
    table.add_column("records", justify="right")
    for fmt, n in sorted(result.counts_by_format.items()):
        table.add_row(fmt, str(n))
    console.print(table)
    if result.problems:
        console.print(f"[red]{len(result.problems)} record(s) could not be read:[/]")
        for p in result.problems[: args.max_problems]:
            console.print(f"  {p.message}", soft_wrap=True)
        if len(result.problems) > args.max_problems:
            console.print(f"  … and {len(result.problems) - args.max_problems} more")
    for ex in result.examples[: args.samples]:
        console.print(f"[dim]{ex.source}[/] id={ex.id} format={ex.format}")
        for m in ex.messages:
            console.print(f"   [bold]{m.role}[/]: {m.content[:200]!r}", soft_wrap=True)
    return 1 if result.problems else 0


def cmd_init(args) -> int:
    from loop import init
    from loop.recipe import ModelConfig

    try:
        plan = init.plan(
            args.paths,
            model=ModelConfig(name=args.model),
            max_size=args.max_size,
            eval_samples=args.eval_samples,
            name=args.name,
        )
        path = init.write(plan, Path(args.out), force=args.force)
    except init.InitError as exc:
        err_console.print(f"[red]✗[/] {exc}", soft_wrap=True)
        return 2
    p = plan.profile
    console.print(f"read {plan.records} records from {', '.join(plan.paths)}")
    console.print(f"  shape: {plan.detected.shape}")
    if plan.detected.fields:
        console.print(f"  pool.fields: {plan.detected.fields}")
    if plan.skipped:
        console.print(f"  [yellow]{plan.skipped} record(s) could not be read[/], e.g.:")
        for line in plan.problems[:5]:
            console.print(f"    {line}", soft_wrap=True)
    console.print(f"  {p.describe()}")
    r = load_recipe(path)
    length = r.clean.length
    console.print(f"  task: {p.task}; sizes {list(r.sizes)}; tiers {[t.name for t in r.tiers]}")
    console.print(
        f"  clean: {', '.join(r.clean.steps)}; answer tokens kept in "
        f"[{length.min_answer_tokens}, {length.max_answer_tokens}]; "
        f"JSON check {'on' if 'format' in r.clean.steps else 'off'}"
    )
    evaluators = ", ".join(e.name + (f" {e.params}" if e.params else "") for e in r.eval.evaluators)
    console.print(f"  eval: {evaluators} on {r.eval.samples} items")
    console.print(f"wrote {path} (each choice is commented there)")
    console.print(f"next: loop clean {path}   then   loop sweep {path}")
    return 0


def cmd_plan(args) -> int:
    from loop import plan as plan_mod

    r = _recipe(args.recipe, preflight=True)
    plan = plan_mod.plan(r, progress=_Progress())
    table = Table(title=f"{r.name}: {len(plan.rows)} cells")
    for col in ("cell", "tier", "size", "seed", "examples", "train tokens", "steps", "est. time"):
        table.add_column(col, justify="right" if col not in ("cell", "tier") else "left")
    for row in plan.rows:
        table.add_row(
            row.cell,
            row.tier,
            str(row.size),
            str(row.seed),
            str(row.examples),
            f"{row.tokens:,}",
            str(row.steps),
            _duration(row.seconds),
        )
    console.print(table)
    for line in plan.notes:
        console.print(line)
    console.print(
        f"total: {sum(x.tokens for x in plan.rows):,} training tokens, about "
        f"{_duration(plan.wall_s)} on this machine ({plan.device}), the base model's evaluation "
        f"({_duration(plan.zero_shot_s)}) included"
    )
    return 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_clean(args) -> int:
    from loop import prepare

    r = _recipe(args.recipe)
    with _Progress() as progress:
        prep = prepare.clean(r, progress=progress, force=args.force)
    _print_funnel(prep)
    return 0


def _print_funnel(prep) -> None:
    table = Table(title="cleaning funnel")
    for col in ("step", "in", "out", "dropped", "reasons"):
        table.add_column(col, justify="left" if col in ("step", "reasons") else "right")
    for step in prep.clean.funnel:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(step.dropped.items()))
        table.add_row(
            step.name, str(step.n_in), str(step.n_out), str(step.n_in - step.n_out), reasons
        )
    console.print(table)
    sizes = "  ".join(f"{t}: {n}" for t, n in prep.tier_sizes.items())
    console.print(f"validation: {len(prep.val)}  training pools per tier → {sizes}")
    for path in prep.clean.files:
        console.print(f"  [dim]{path}[/]")


def cmd_review_export(args) -> int:
    from loop import commands

    r = _recipe(args.recipe)
    path = commands.review_export(r, Path(args.out), per_stratum=args.per_stratum)
    console.print(
        f"wrote {path}: fill the `decision` column with accept/reject, then "
        f"`loop review import {args.recipe} {path}`"
    )
    return 0


def cmd_review_import(args) -> int:
    from loop import commands

    r = _recipe(args.recipe)
    summary = commands.review_import(r, Path(args.file))
    console.print(summary)
    return 0


def cmd_train(args) -> int:
    from loop import commands
    from loop.recipe import Cell

    r = _recipe(args.recipe)
    with _Progress() as progress:
        outcome = commands.run_single(
            r, Cell(args.tier, args.size, args.seed), progress=progress, track=not args.no_track
        )
    if outcome.error:
        err_console.print(f"[red]✗[/] cell {outcome.cell} failed: {escape(outcome.error)}")
        return 1
    table = Table(title=f"cell {outcome.cell}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in outcome.metrics.items():
        table.add_row(k, _fmt(v))
    console.print(table)
    return 0


def cmd_sweep(args) -> int:
    from loop import driver

    r = _with_overrides(_recipe(args.recipe, preflight=True), args)
    try:
        with _Progress() as progress:
            outcome = driver.sweep(r, progress=progress)
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted: the current cell is marked KILLED; run the same command to resume[/]"
        )
        return 130
    console.print(
        f"cells: {outcome.ran} ran, {outcome.skipped} already done, {outcome.failed} failed"
    )
    if outcome.report is not None:
        _print_decisions(outcome.report.table)
        _print_costs(outcome.report)
        _print_paths(outcome.report.paths)
    console.print(f"MLflow: loop ui   (then {outcome.url})")
    return min(outcome.failed, 100)


def _print_paths(paths) -> None:
    """The report's files, one a line, never wrapped (a wrapped path cannot be copied)."""
    console.print(f"report: {escape(str(paths.html))}", soft_wrap=True)
    for p in paths.plots:
        console.print(f"plot:   {escape(str(p))}", soft_wrap=True)


def _int_at_least(lowest: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
        return value

    parse.__name__ = f"integer >= {lowest}"
    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _port(text: str) -> int:
    value = _int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be within 1..65535, got {value}")
    return value


def _float_in(lo: float, hi: float, *, lo_open: bool = True, hi_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        below = value <= lo if lo_open else value < lo
        above = value >= hi if hi_open else value > hi
        if below or above or value != value:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(
                f"must be within {left}{lo:g}, {hi:g}{right}, got {text}"
            )
        return value

    return parse


def _with_overrides(r, args):
    """Command-line flags over the recipe's executor and strategy (neither changes a cell's
    result, so finished cells are shared)."""
    import dataclasses

    ex = {
        k: v
        for k, v in (
            ("kind", args.executor),
            ("address", args.ray_address),
            ("workers", args.workers),
        )
        if v is not None
    }
    if ex:
        r = dataclasses.replace(r, executor=dataclasses.replace(r.executor, **ex))
    if args.strategy:
        r = dataclasses.replace(r, subsets=dataclasses.replace(r.subsets, strategy=args.strategy))
    return r


def cmd_server(args) -> int:
    from loop import server

    backend = args.backend or os.environ.get("LOOP_SERVER_BACKEND")
    if not backend:
        raise ArgumentError(
            "--backend: required (or set LOOP_SERVER_BACKEND); e.g. "
            "postgresql+psycopg2://USER@HOST:PORT/DB with the password in PGPASSWORD or ~/.pgpass"
        )
    kind = server.check_backend_uri(backend)
    cmd = server.server_command(
        backend,
        artifacts=args.artifacts,
        host=args.host,
        port=args.port,
        workers=args.workers,
        allowed_hosts=[h for h in args.allowed_hosts.split(",") if h],
    )
    _, password = server.split_password(backend)
    if password is not None and args.backend:
        err_console.print(
            "[yellow]warning[/]: the password in --backend is visible to every user of this "
            "machine (`ps`) while loop runs; MLflow gets it through the environment only. Next "
            "time leave it out and set PGPASSWORD, use ~/.pgpass, or put the URI in "
            "LOOP_SERVER_BACKEND",
            soft_wrap=True,
        )
    if kind == "sqlite":
        err_console.print(
            "note: SQLite serializes concurrent writers; a team should use postgresql+psycopg2://..."
        )
    console.print(
        f"tracking server on {escape(server.redact(backend))}, artifacts in {escape(args.artifacts)}"
    )
    console.print(
        f"on the driver and every worker:  export MLFLOW_TRACKING_URI="
        f"{server.tracking_url(args.host, args.port)}\n(ctrl-c to stop)"
    )
    return server.run_group(cmd, env=server.server_env(password=password))


def _table_width(heads, rows) -> int:
    """Columns a rich Table with the default box and padding takes: widths + 3 per column + 1."""
    widths = [max([len(str(h)), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(heads)]
    return sum(widths) + 3 * len(widths) + 1


def _keyed(names: list[str], prefix: str) -> dict[str, str]:
    """Short labels for long names ("m1" for eval.choice_loglik.prob), printed with a key."""
    return {n: f"{prefix}{i + 1}" for i, n in enumerate(dict.fromkeys(names))}


def _print_decisions(rows: list[dict]) -> None:
    """The decision table (no cell cut or wrapped mid-word in 80 columns), then per tier and
    metric the plain sentence and, dimmed, the technical line."""
    from rich.padding import Padding

    cols = {"tier": "tier", "metric": "metric", "decision": "decision", "n_star": "n*"}
    cols["next_size"] = "next"
    body = [[_fmt(row.get(c)) for c in cols] for row in rows]
    key: dict[str, str] = {}
    if _table_width(list(cols.values()), body) > console.width:
        key = _keyed([r["metric"] for r in rows], "m")
        body = [[b[0], key[r["metric"]], *b[2:]] for b, r in zip(body, rows, strict=True)]
    table = Table(title="where more data stops paying off")
    for c, head in cols.items():
        table.add_column(
            head, no_wrap=True, justify="right" if c in ("n_star", "next_size") else "left"
        )
    for b in body:
        table.add_row(*(escape(v) for v in b))
    console.print(table)
    if key:
        console.print("metrics: " + ", ".join(f"{k} = {escape(m)}" for m, k in key.items()))
    for row in rows:
        answer = row.get("answer") or row.get("summary")
        if not answer:
            continue
        console.print(
            f"• [bold]tier {escape(row['tier'])}, {escape(row['metric'])}[/]: {escape(answer)}"
        )
        extra = []
        if row.get("zero_shot") not in (None, "—"):
            extra.append(f"untrained model {row['zero_shot']}")
        if row.get("certified") not in (None, "—"):
            extra.append(f"certified {row['certified']}")
        technical = row.get("summary", "") + (f" ({'; '.join(extra)})" if extra else "")
        if row.get("answer") and technical:
            console.print(Padding(escape(technical), (0, 0, 0, 2)), style="dim")


def _print_quality_vs_quantity(analysis) -> None:
    """Per metric: each tier's plateau with its interval, and the exchange rate between tiers."""
    conf = f"{100 * analysis.confidence:.0f}%"
    for metric in analysis.metrics:
        plateaus = [
            f"{c.tier} {_fmt(c.plateau)} ({conf} CI {_fmt(c.plateau_ci)})"
            for c in analysis.curves
            if c.metric == metric and c.plateau is not None and c.plateau_ci is not None
        ]
        if plateaus:
            console.print(f"• {metric} plateau: {'; '.join(plateaus)}", soft_wrap=True)
        for e in analysis.exchanges:
            if e.metric != metric:
                continue
            console.print(f"• {e.summary}", soft_wrap=True)
            for r in e.rows:
                if r.other_size is not None:
                    console.print(
                        f"    {r.size:,} {e.better} ≈ {_fmt(r.other_size, 3)} {e.other} "
                        f"({conf} CI {_fmt(r.other_size_ci, 3)})",
                        soft_wrap=True,
                    )


def cmd_status(args) -> int:
    from loop import commands

    r = _recipe(args.recipe)
    rows = commands.status(r)
    table = Table(title=f"{r.name}: cells")
    metric_cols = sorted({k for row in rows for k in row.metrics})
    body = [[row.cell, row.state, *[_fmt(row.metrics.get(m)) for m in metric_cols]] for row in rows]
    heads = ["cell", "state", *metric_cols]
    key: dict[str, str] = {}
    if _table_width(heads, body) > console.width:
        key = _keyed(metric_cols, "m")
        heads = ["cell", "state", *(key[m] for m in metric_cols)]
    for i, head in enumerate(heads):
        table.add_column(head, no_wrap=True, justify="right" if i > 1 else "left")
    colour = {
        "done": "green",
        "failed": "red",
        "killed": "yellow",
        "running": "cyan",
        "pending": "dim",
    }
    for row, b in zip(rows, body, strict=True):
        table.add_row(b[0], f"[{colour.get(row.state, '')}]{row.state}[/]", *b[2:])
    console.print(table)
    if key:
        console.print("metrics: " + ", ".join(f"{k} = {escape(m)}" for m, k in key.items()))
    for row in rows:  # in full and unwrapped, so a path in a note is never cut
        if row.note:
            console.print(f"  {row.cell}: {escape(row.note)}", soft_wrap=True)
    counts = {
        s: sum(1 for x in rows if x.state == s)
        for s in ("done", "failed", "killed", "running", "pending")
    }
    console.print("  ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _print_costs(rep) -> None:
    """The sources' answer in words: exchange rates, the cost of each target, plateaus."""
    if getattr(rep, "costs", None) is None:
        return
    console.print("[bold]sources and cost[/]")
    for line in rep.costs.summary():
        console.print(f"  {escape(line)}", soft_wrap=True)


def cmd_report(args) -> int:
    from loop import driver

    r = _recipe(args.recipe)
    rep = driver.report(r)
    if rep is None:
        err_console.print("no finished cells yet: run `loop sweep` first")
        return 1
    _print_decisions(rep.table)
    _print_costs(rep)
    _print_paths(rep.paths)
    return 0


def cmd_evaluate(args) -> int:
    from loop import driver

    r = _recipe(args.recipe)
    with _Progress() as progress:
        done = driver.rescore(r, samples=args.samples, progress=progress)
    if not done:
        err_console.print("no finished cells yet: run `loop sweep` first")
        return 1
    for d in done:
        if d.error:
            console.print(f"• {d.cell}: skipped ({d.error})")
        else:
            console.print(f"• {d.cell}: {d.items_before:,} -> {d.items_after:,} evaluation items")
    console.print("then: loop report " + args.recipe)
    return 1 if any(d.error for d in done) else 0


def cmd_export(args) -> int:
    from loop import driver

    r = _recipe(args.recipe)
    n = driver.export_items(r, Path(args.items))
    if n == 0:
        err_console.print("no per-item scores in the store yet: run `loop sweep` first")
        return 1
    console.print(f"{n:,} item scores: {args.items}")
    return 0


def _curve_direction(metrics, lower: bool) -> dict[str, str]:
    """--lower-is-better for every metric, else lower for names ending in "loss" (val_loss)."""
    return {m: "lower" if lower or m.lower().endswith("loss") else "higher" for m in metrics}


def cmd_curve(args) -> int:
    from loop import curves, report

    got = curves.read_curve_table(Path(args.csv))  # a CurveInputError exits 2 in `main`
    metrics = {r.metric for r in got.records} | {i.metric for i in got.items}
    analysis = curves.analyze(
        got.records,
        items=got.items,
        direction=_curve_direction(metrics, args.lower_is_better),
        epsilon=args.epsilon,
        confidence=args.confidence,
        eval_size=args.eval_size,
    )
    if args.json:
        print(json.dumps(curves.to_json(analysis), indent=2))
    else:
        _print_decisions(report.decision_table(analysis))
    if args.plot:
        report.plot_curve(analysis, Path(args.plot))
        if not args.json:
            console.print(f"plot: {args.plot}")
    return 0


def cmd_compare(args) -> int:
    from loop import compare

    out = compare.compare(args.targets, Path(args.out), port=args.port)
    table = Table(title="sweeps side by side")
    for c in ("sweep", *compare.COLUMNS):
        table.add_column({"n_star": "n*", "n_star_ci": "n* CI", "next_size": "next"}.get(c, c))
    for row in out.rows:
        table.add_row(*[_fmt(row[c]) for c in ("sweep", *compare.COLUMNS)])
    console.print(table)
    console.print(f"plot: {out.plot}")
    console.print(f"MLflow UI (loop ui, then): {out.url}", soft_wrap=True)
    for metric, url in out.curve_urls.items():
        console.print(f"curves of {metric}: {url}", soft_wrap=True)
    return 0


def cmd_ui(args) -> int:
    from loop import commands, server

    cmd, url = commands.ui_command(args.recipe and _recipe(args.recipe), port=args.port)
    console.print(f"MLflow UI: {url}\n(ctrl-c to stop)   {escape(' '.join(cmd))}")
    return server.run_group(cmd, env=server.server_env())


def cmd_demo(args) -> int:
    from loop import commands

    r = _recipe(args.recipe)
    with _Progress() as progress:
        outcome = commands.demo(r, progress=progress, rows=args.rows, seed=args.seed)
    console.print(outcome.cleaning_score)
    console.print(
        f"cells: {outcome.sweep.ran} ran, {outcome.sweep.skipped} already done, {outcome.sweep.failed} failed"
    )
    if outcome.sweep.report is not None:
        _print_decisions(outcome.sweep.report.table)
        console.print("[bold]quality vs quantity[/]")
        _print_quality_vs_quantity(outcome.sweep.report.analysis)
        _print_paths(outcome.sweep.report.paths)
    console.print(
        f"open the MLflow UI: [bold]{sys.executable.rsplit('/', 1)[0]}/loop ui[/]  →  {outcome.sweep.url}"
    )
    return min(outcome.sweep.failed, 100)


# ----------------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loop",
        description="How much fine-tuning data, of what quality, do you need? loop answers with "
        "experiments: clean a pool, sort it into quality tiers, LoRA fine-tune nested subsets of "
        "growing size, track every run in MLflow, and report where more data stops paying off.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an input error too (also: LOOP_DEBUG=1)",
    )
    # `--debug` after the command as well; SUPPRESS keeps the top-level value when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_parser_with(common))

    s = sub.add_parser(
        "init",
        help="inspect data files and write a starter recipe chosen from them",
        description="Detect the record shape and field map, profile the answers (labels, options, "
        "JSON or free text; their lengths) and write a recipe with the cleaning bounds, tiers, "
        "size ladder, evaluators and eval samples that fit, each with a comment. "
        "`loop init DATA --out r.yaml` then `loop sweep r.yaml` runs unchanged.",
    )
    s.add_argument(
        "paths",
        nargs="+",
        metavar="DATA",
        help="files or globs (JSONL, JSON, CSV, Parquet; .gz/.bz2/.zst)",
    )
    s.add_argument("--out", default="recipe.yaml", help="recipe to write (default recipe.yaml)")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    s.add_argument("--name", help="experiment name (default: the first file's name)")
    s.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="model to fine-tune; its tokenizer measures the lengths (default: the packaged SmolLM2)",
    )
    s.add_argument(
        "--max-size", type=_positive_int, help="cap the size ladder (e.g. for a quick CPU run)"
    )
    s.add_argument(
        "--eval-samples",
        type=_positive_int,
        help="validation items for task metrics (default up to 400)",
    )
    s.set_defaults(fn=cmd_init)

    s = sub.add_parser("validate", help="check recipes; exit 2 with every error listed")
    s.add_argument("recipes", nargs="+", metavar="RECIPE")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--pool", action="store_true", help="also load and clean the pool to check sizes per tier"
    )
    g.add_argument(
        "--recipe-only",
        action="store_true",
        help="check the recipe files alone, not their pool, model and store (e.g. where the "
        "data is not at hand)",
    )
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser(
        "plan", help="the grid of cells with examples, tokens and a cost estimate (trains nothing)"
    )
    s.add_argument("recipe")
    s.set_defaults(fn=cmd_plan)

    s = sub.add_parser("pool", help="pool tools")
    pool_sub = s.add_subparsers(dest="pool_command", metavar="SUBCOMMAND", required=True)
    s = pool_sub.add_parser(
        "inspect", help="counts per format, every unreadable record, a few samples"
    )
    s.add_argument(
        "paths", nargs="+", metavar="PATH", help="files or globs (JSONL, JSON, CSV, Parquet)"
    )
    s.add_argument(
        "--format",
        default="auto",
        choices=["auto", "instruction", "chat", "completion", "sharegpt"],
        help="auto: detect the shape and field names (as `loop init` does)",
    )
    s.add_argument(
        "--samples", type=_nonnegative_int, default=3, help="normalized samples to show (default 3)"
    )
    s.add_argument(
        "--max-problems", type=_nonnegative_int, default=50, help="problems to list (default 50)"
    )
    s.set_defaults(fn=cmd_pool_inspect)

    s = sub.add_parser(
        "clean", help="run the recipe's cleaning funnel; print what was dropped and why"
    )
    s.add_argument("recipe")
    s.add_argument("--force", action="store_true", help="ignore the cached result")
    s.set_defaults(fn=cmd_clean)

    s = sub.add_parser("review", help="sampled human review of the cleaning decisions")
    rsub = s.add_subparsers(dest="review_command", metavar="SUBCOMMAND", required=True)
    s = rsub.add_parser("export", help="write a stratified sample with an empty `decision` column")
    s.add_argument("recipe")
    s.add_argument("--out", default="review.csv", help="CSV or JSONL file (default review.csv)")
    s.add_argument(
        "--per-stratum",
        type=_positive_int,
        default=10,
        help="records per tier / drop reason (default 10)",
    )
    s.set_defaults(fn=cmd_review_export)
    s = rsub.add_parser("import", help="apply accept/reject decisions; later cleaning honours them")
    s.add_argument("recipe")
    s.add_argument("file")
    s.set_defaults(fn=cmd_review_import)

    s = sub.add_parser(
        "train", help="train and evaluate one cell (tier, size, seed) and print its metrics"
    )
    s.add_argument("recipe")
    s.add_argument("--tier", required=True)
    s.add_argument("--size", type=_positive_int, required=True)
    s.add_argument("--seed", type=_nonnegative_int, default=0)
    s.add_argument("--no-track", action="store_true", help="don't log to MLflow")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser(
        "sweep",
        help="run every cell (resumes: finished cells are skipped), then report",
        description="Run the recipe's cells and write the report. Finished cells are read from "
        "the tracking store and skipped, so the same command resumes a stopped sweep. "
        "Examples: `loop sweep recipes/demo.yaml`; 8 cells at a time on one 8-GPU node: "
        "`loop sweep recipes/gpu-alpaca.yaml --executor ray`; on a running Ray cluster: "
        "`loop sweep recipes/x.yaml --executor ray --ray-address auto`.",
    )
    s.add_argument("recipe")
    s.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="override executor.kind: local (one cell at a time here) or ray (cells in parallel)",
    )
    s.add_argument("--ray-address", help="override executor.address (auto, host:port, ray://...)")
    s.add_argument(
        "--workers",
        type=_positive_int,
        help="override executor.workers (cells at once on a local Ray)",
    )
    s.add_argument(
        "--strategy",
        choices=["grid", "adaptive"],
        help="override subsets.strategy: every size, or rounds chosen from the curve so far",
    )
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("status", help="done / failed / pending cells with their key metrics")
    s.add_argument("recipe")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser(
        "report", help="analyse finished cells: plots, Markdown/HTML report, JSON summary"
    )
    s.add_argument("recipe")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser(
        "evaluate",
        help="re-score finished cells on more validation items without retraining (their "
        "LoRA adapters are run artifacts); new metrics go to the same runs",
    )
    s.add_argument("recipe")
    s.add_argument(
        "--samples",
        type=_positive_int,
        help="validation items to score (default: eval.samples; all of validation when unset)",
    )
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser(
        "export",
        help="write the per-item scores of every finished cell as a long CSV for `loop curve`",
    )
    s.add_argument("recipe")
    s.add_argument(
        "--items",
        metavar="OUT.csv",
        required=True,
        help="columns tier,metric,size,seed,item,score (size 0 = the base model)",
    )
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser(
        "curve",
        help="saturation analysis of a CSV: size,seed,value or size,seed,item,score "
        "(optional tier, metric)",
        description="Run loop's saturation analysis on results from elsewhere. The CSV has one "
        "score per cell (columns size,seed,value) or one per evaluation item and cell (columns "
        "size,seed,item,score, as `loop export --items` writes; gains are then paired across "
        "sizes). Either may have tier and metric; size 0 is the base model (zero-shot).",
    )
    s.add_argument("csv", metavar="FILE.csv")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--higher-is-better",
        action="store_true",
        default=True,
        help="accuracy-like (default; metrics named ...loss are lower-is-better)",
    )
    g.add_argument("--lower-is-better", action="store_true", help="loss-like, every metric")
    s.add_argument(
        "--epsilon",
        type=_float_in(0, float("inf")),
        help="gain from doubling that still pays (default 0.01, or 1%% of loss)",
    )
    s.add_argument(
        "--confidence",
        type=_float_in(0.5, 1),
        default=0.9,
        help="confidence for the decision, in (0.5, 1) (default 0.9)",
    )
    s.add_argument(
        "--eval-size",
        type=_positive_int,
        help="evaluation items per score (adds sampling error)",
    )
    s.add_argument("--json", action="store_true", help="print the summary JSON")
    s.add_argument("--plot", metavar="OUT.png", help="write the learning-curve plot")
    s.set_defaults(fn=cmd_curve)

    s = sub.add_parser(
        "server", help="start the team tracking server (MLflow on PostgreSQL) that workers log to"
    )
    s.add_argument(
        "--backend",
        metavar="URI",
        help="postgresql+psycopg2://USER@HOST:PORT/DB with the password in PGPASSWORD or "
        "~/.pgpass (or sqlite:///path/mlflow.db, one user); default $LOOP_SERVER_BACKEND",
    )
    s.add_argument(
        "--artifacts",
        default="mlruns/server-artifacts",
        metavar="DIR|URI",
        help="where the server keeps uploaded artifacts: a folder or s3://... "
        "(default mlruns/server-artifacts)",
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 to serve other machines"
    )
    s.add_argument("--port", type=_port, default=5000)
    s.add_argument(
        "--workers", type=_positive_int, default=None, help="server processes (MLflow's default: 4)"
    )
    s.add_argument(
        "--allowed-hosts",
        default="",
        metavar="NAMES",
        help="comma-separated host names the team uses to reach the server "
        "(localhost and private IPs are always allowed)",
    )
    s.set_defaults(fn=cmd_server)

    s = sub.add_parser(
        "compare",
        help="decision tables and learning curves of several sweeps side by side",
        description="Read the curves and decisions that `loop report` logged on each sweep's "
        "parent run (one store) and show them together: one table, one plot, and the MLflow UI "
        "page comparing the parent runs. Name a sweep by its recipe file (its newest sweep) or "
        "by its parent run id.",
    )
    s.add_argument("targets", nargs="+", metavar="RECIPE_OR_RUN")
    s.add_argument(
        "--out",
        default="mlruns/work/compare",
        metavar="DIR",
        help="folder for compare.png (default mlruns/work/compare)",
    )
    s.add_argument("--port", type=_port, default=5000, help="the UI's port in the printed URLs")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the project's store")
    s.add_argument("recipe", nargs="?", help="recipe whose tracking settings to use")
    s.add_argument("--port", type=_port, default=5000)
    s.set_defaults(fn=cmd_ui)

    s = sub.add_parser("demo", help="build the demo pool and run recipes/demo.yaml end to end")
    s.add_argument("--recipe", default="recipes/demo.yaml")
    s.add_argument(
        "--rows", type=_positive_int, default=None, help="demo pool size (default: the generator's)"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the demo pool generator")
    s.set_defaults(fn=cmd_demo)
    return p


def _parser_with(common: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    """Subcommand parsers that all take the `common` flags."""

    class Parser(argparse.ArgumentParser):
        def __init__(self, *a, **kw):
            kw.setdefault("parents", [])
            kw["parents"] = [*kw["parents"], common]
            super().__init__(*a, **kw)

    return Parser


# Exit statuses: 0 ok, 1..100 failed cells (sweep) or unreadable records (pool inspect),
# 2 an input error (this message, no traceback), 70 a bug in loop (EX_SOFTWARE), 130 Ctrl-C.
EXIT_USER_ERROR = 2
EXIT_BUG = 70

_BUG_LINE = (
    "This is a bug in loop, not a problem with your input: please report it with the command "
    "you ran and the traceback above."
)


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("LOOP_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run one command. Input errors (`loop.errors.UserError`) print their message and return
    2; `--debug` (or LOOP_DEBUG=1) adds the traceback. Anything else is a bug: its traceback,
    a line saying so, status 70."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    debug = _debug(args)
    try:
        return args.fn(args)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        _print_user_error(exc)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except Exception:
        traceback.print_exc()
        err_console.print(f"[bold red]{_BUG_LINE}[/]", soft_wrap=True)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
