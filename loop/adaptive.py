"""Adaptive sweeps: run a few sizes, read the learning curve, choose the next sizes, repeat.

Pure planning: which cells to run next follows from the finished results, the recipe and the
budget, so a re-run that finds its cells done replays the same rounds and carries on (resume).
Nothing here trains, tracks or prints.

Per tier, after every round, the steering metric's curve decides:

- `saturated`: the tier stops; when the curve's n* lies past the largest size run (an
  extrapolation) and the cap allows, one more size confirms it first.
- `more_data_pays`: the next size is one doubling past the largest size run (the curve's
  next_size), never past the cap (`adaptive.max_size`, else the tier's pool). A tier
  still gaining at the cap stops with `pool_exhausted`: more data pays, the pool is the limit.
- `inconclusive`: the curve's own advice on what would settle it (`CurveResult.settle`, a power
  calculation on the fitted noise) is followed, one lever a round: more evaluation items first
  when it asks for them and the sweep can re-score finished cells (`rescore`: no training),
  then the next size when it asks for one (or has fewer than 3 sizes), then new seeds at every
  size. Where the analysis says nothing within reach settles it, the next size below the
  cap (the cheapest look further), and at the cap the tier stops undecided. Items the sweep
  cannot re-score, or a size past the cap: seeds where intervals are widest.

Rows that stop a tier for other reasons: `budget` (tokens or hours), `max_rounds`, `no_result`
(cells were scheduled but none produced the metric). Round 0's rows are `first_round`. A row
with no next sizes is the tier's last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from loop import curves
from loop.recipe import Cell, Recipe

SATURATED = curves.SATURATED
MORE_DATA_PAYS = curves.MORE_DATA_PAYS
INCONCLUSIVE = curves.INCONCLUSIVE
POOL_EXHAUSTED = "pool_exhausted"
BUDGET = "budget"
MAX_ROUNDS = "max_rounds"
NO_RESULT = "no_result"
FIRST_ROUND = "first_round"  # round 0's rows: the recipe's sizes, before any curve

_MIN_SIZES = 3  # curves.analyze needs 3 distinct sizes before it fits anything
_MAX_SEED_SIZES = 2  # sizes that get extra seeds when a tier is inconclusive


@dataclass(frozen=True)
class Decision:
    round: int  # the round these cells run in (0 = the recipe's sizes)
    tier: str
    decision: str
    next_sizes: tuple[int, ...]  # empty: the tier is finished
    seeds: tuple[int, ...]
    why: str
    eval_items: int | None = None  # re-score the tier's finished cells on this many items


@dataclass(frozen=True)
class AdaptiveOutcome:
    decisions: tuple[Decision, ...]  # in the order they were made
    rounds: tuple[tuple[Cell, ...], ...]  # cells scheduled per round (finished earlier or not)
    cost: float  # sum of cost over every scheduled cell
    final: Mapping[str, Decision]  # tier -> the decision that finished it
    analysis: curves.Analysis | None  # the last one, over every scheduled cell

    @property
    def cells(self) -> tuple[Cell, ...]:
        return tuple(c for r in self.rounds for c in r)


# ----------------------------------------------------------------------------- helpers


def tier_cap(recipe: Recipe, tier_sizes: Mapping[str, int], tier: str) -> int:
    """Largest size a tier may run: `adaptive.max_size`, never above the tier's training pool."""
    caps = [n for n in (tier_sizes.get(tier), recipe.subsets.adaptive.max_size) if n is not None]
    if not caps:
        raise ValueError(f"tier {tier!r}: training pool size unknown and no adaptive.max_size")
    if min(caps) < 1:
        raise ValueError(f"tier {tier!r}: no training examples to run")
    return int(min(caps))


def steering_metric(recipe: Recipe, metrics: Sequence[str]) -> str | None:
    """The metric that steers the rounds, among the analysed `metrics`.

    `adaptive.metric` when set; else the first eval.* metric in the recipe's evaluator order (a
    store's record order may vary between runs, the recipe's does not), else any eval.* metric by
    name, else val_loss, else the first by name. None when `metrics` is empty.
    """
    chosen = recipe.subsets.adaptive.metric
    if chosen is not None:
        if metrics and chosen not in metrics:
            raise ValueError(
                f"subsets.adaptive.metric: {chosen!r} is not among the analysed metrics "
                f"({', '.join(sorted(metrics))})"
            )
        return chosen
    if not metrics:
        return None
    for ev in recipe.eval.evaluators:
        if ev.metric in metrics:
            return ev.metric
    evals = sorted(m for m in metrics if m.startswith("eval."))
    if evals:
        return evals[0]
    return "val_loss" if "val_loss" in metrics else sorted(metrics)[0]


def _order(recipe: Recipe) -> Callable[[Cell], tuple]:
    tiers = {t.name: i for i, t in enumerate(recipe.tiers)}
    seeds = {s: i for i, s in enumerate(recipe.subsets.seeds)}
    # small sizes first, then the recipe's seeds before added ones, then tier order
    return lambda c: (
        c.size,
        seeds.get(c.seed, len(seeds) + c.seed),
        tiers.get(c.tier, len(tiers)),
        c.tier,
    )


def _sizes_text(sizes: Sequence[int]) -> str:
    items = [f"{n:,}" for n in sizes]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _tokens_text(x: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def _gain(curve: curves.CurveResult, x: float | None) -> str:
    return "?" if x is None else curves.format_gain(x, curve)


def _state(curve: curves.CurveResult | None) -> str:
    """The curve's verdict as a clause, for rows that stop a tier for another reason."""
    if curve is None:
        return "no curve yet"
    if curve.decision == MORE_DATA_PAYS:
        gain = _gain(curve, curve.delta2_at_max)
        return f"more data still paid at {curve.max_size:,} (doubling gains {gain})"
    if curve.decision == SATURATED:
        return f"saturated at ~{curve.n_star:,}"
    return f"inconclusive at {curve.max_size:,} ({curve.reason})"


@dataclass(frozen=True)
class _Plan:
    """One tier's wish for the next round, before the budget has its say."""

    tier: str
    decision: str
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    why: str
    curve: curves.CurveResult | None
    eval_items: int | None = None


def _plan_tier(
    recipe: Recipe,
    tier: str,
    curve: curves.CurveResult | None,
    metric: str | None,
    ran: Collection[Cell],
    cap: int,
    items_now: int | None = None,
    can_rescore: bool = False,
) -> _Plan:
    seeds = tuple(recipe.subsets.seeds)
    if curve is None:
        what = f"metric {metric}" if metric else "any metric"
        return _Plan(
            tier,
            NO_RESULT,
            (),
            (),
            f"no finished cell of tier {tier} has {what}, so there is no curve to steer by",
            None,
        )
    largest = curve.max_size
    conf = f"{100 * curve.confidence:.0f}%"
    eps = _gain(curve, curve.epsilon)

    def step(decision: str, lead: str) -> _Plan:
        """The next size: the curve's next_size (one doubling past the largest size run), or
        the cap if that is sooner.

        Stopping short where the fitted Δ₂ crosses ε was tried: no better decisions in the
        benchmark, an extra round in some sweeps (the 90% crossing sits past the point
        estimate), and off-ladder sizes that a grid sweep cannot share.
        """
        want = curve.next_size or 2 * largest
        nxt = min(want, cap)
        capped = " (the cap)" if nxt < want else ""
        return _Plan(tier, decision, (nxt,), seeds, f"{lead}; running {nxt:,}{capped} next", curve)

    if curve.decision == SATURATED:
        if curve.n_star is not None and curve.n_star > largest and largest < cap:
            # n* lies past the data: an extrapolation that ran high in simulation (the
            # benchmark's fast tiers), so one more size confirms it before the tier stops.
            return step(
                SATURATED,
                f"the fit saturates at ~{curve.n_star:,}, past the largest size run "
                f"({largest:,}), so that is an extrapolation to confirm",
            )
        return _Plan(
            tier,
            SATURATED,
            (),
            (),
            f"saturated at ~{curve.n_star:,} examples: doubling past it gains less than {eps} "
            f"with {conf} confidence (largest size run {largest:,})",
            curve,
        )

    if curve.decision == MORE_DATA_PAYS:
        if largest >= cap:
            return _Plan(
                tier,
                POOL_EXHAUSTED,
                (),
                (),
                f"more data pays but the pool is the limit: doubling {largest:,} would gain "
                f"{_gain(curve, curve.delta2_at_max)} and {largest:,} is the largest size "
                "allowed (training pool or adaptive.max_size)",
                curve,
            )
        lo, hi = curve.delta2_at_max_ci or (float("nan"), float("nan"))
        return step(
            MORE_DATA_PAYS,
            f"more data still pays: doubling {largest:,} gains "
            f"{_gain(curve, curve.delta2_at_max)} ({conf} CI {_gain(curve, lo)} to "
            f"{_gain(curve, hi)}), at least {eps}",
        )

    # inconclusive
    if len(curve.sizes) < _MIN_SIZES:
        if largest >= cap:
            return _Plan(
                tier,
                INCONCLUSIVE,
                (),
                (),
                f"only {len(curve.sizes)} distinct sizes fit below the cap of {cap:,}; a curve "
                f"needs {_MIN_SIZES}, so this tier stops undecided",
                curve,
            )
        return step(
            INCONCLUSIVE,
            f"only {len(curve.sizes)} distinct sizes so far; a curve needs {_MIN_SIZES}",
        )
    settle = curve.settle
    used = {c.seed for c in ran if c.tier == tier}
    used.update(seeds)
    top = max(used) + 1
    # Items first: re-scoring finished cells costs no training, so advice that asks for items
    # (alone or with seeds or a size) re-scores now and the next round reads the curve again.
    wants_items = settle is not None and bool(settle.items)
    if wants_items and can_rescore and (items_now is None or settle.items > items_now):
        return _Plan(
            tier,
            INCONCLUSIVE,
            (),
            (),
            f"inconclusive ({curve.reason}); re-scoring the finished cells on "
            f"{settle.items:,} evaluation items, no retraining",
            curve,
            eval_items=settle.items,
        )
    if settle is not None and settle.size and largest < cap:
        return step(INCONCLUSIVE, f"inconclusive ({curve.reason})")
    if settle is not None and settle.kind == "none":
        if largest < cap:
            # nothing is expected to settle it at these sizes; the next size is the sweep's
            # cheapest look further (and the one lever for a curve not learning yet)
            return step(
                INCONCLUSIVE,
                f"inconclusive ({curve.reason}); no evidence is expected to settle it here, so "
                "looking one size further",
            )
        return _Plan(
            tier,
            INCONCLUSIVE,
            (),
            (),
            f"inconclusive and left open ({curve.reason}): more seeds or items are not expected "
            "to settle it",
            curve,
        )
    sizes_run = tuple(sorted(s.size for s in curve.sizes))
    if settle is not None and settle.seeds:
        k = max(settle.seeds - min(s.n_seeds for s in curve.sizes), 1)
        new = tuple(range(top, top + k))
        label = "seed" if len(new) == 1 else "seeds"
        return _Plan(
            tier,
            INCONCLUSIVE,
            sizes_run,
            new,
            f"inconclusive ({curve.reason}); adding {label} {_sizes_text(new)} at every size, "
            "as the power calculation on the fitted noise asks",
            curve,
        )
    # No advice that this sweep can follow (items without re-scoring, a size past the cap):
    # more seeds where intervals are widest.
    new = tuple(range(top, top + recipe.subsets.adaptive.add_seeds))
    width = sorted(curve.sizes, key=lambda s: (-(s.mean_ci[1] - s.mean_ci[0]), -s.size))
    at = tuple(sorted(s.size for s in width[:_MAX_SEED_SIZES]))
    label = "seed" if len(new) == 1 else "seeds"
    return _Plan(
        tier,
        INCONCLUSIVE,
        at,
        new,
        f"inconclusive ({curve.reason}); adding {label} {_sizes_text(new)} at n={_sizes_text(at)}, "
        "the widest intervals",
        curve,
    )


def _cut_short(round_no: int, p: _Plan, decision: str, because: str) -> Decision:
    """The final row of a tier whose next step cannot run (budget, rounds, time)."""
    nxt = (
        f"the next step would run n={_sizes_text(p.sizes)}"
        if p.sizes
        else f"the next step would re-score the cells on {p.eval_items or 0:,} items"
    )
    if p.curve is None:  # round 0
        return Decision(round_no, p.tier, decision, (), (), f"{because}; {nxt}")
    if p.decision == SATURATED:  # the verdict stands; only its confirmation is missing
        return Decision(
            round_no,
            p.tier,
            SATURATED,
            (),
            (),
            f"saturated at ~{p.curve.n_star:,} examples, extrapolated past the largest size run "
            f"({p.curve.max_size:,}) and left unconfirmed: {because}",
        )
    return Decision(round_no, p.tier, decision, (), (), f"{because}: {_state(p.curve)}; {nxt}")


def _within_budget(
    recipe: Recipe,
    plans: list[_Plan],
    ran: Collection[Cell],
    spent: float,
    cost: Callable[[Cell], float],
    round_no: int,
) -> tuple[list[Cell], list[Decision]]:
    """Accept each tier's (size, all seeds) groups, small sizes first, while the budget holds.

    A size goes in with all its seeds or not at all, so every size's interval rests on the same
    seeds the recipe asked for; a group that does not fit is skipped and later (cheaper) groups of
    other tiers still get their turn.
    """
    budget = recipe.subsets.adaptive.budget_tokens
    order = _order(recipe)
    groups = []
    for p in plans:
        for n in p.sizes:
            wanted = (Cell(p.tier, n, s) for s in p.seeds)
            groups.append((p, n, sorted((c for c in wanted if c not in ran), key=order)))
    groups.sort(key=lambda g: order(g[2][0]) if g[2] else (g[1], -1, -1, g[0].tier))
    running = float(spent)
    taken: dict[str, list[int]] = {p.tier: [] for p in plans}
    left_out: dict[str, list[tuple[int, float]]] = {p.tier: [] for p in plans}
    cells_out: list[Cell] = []
    for p, n, cells in groups:
        if not cells:
            continue
        c = float(sum(cost(x) for x in cells))
        if budget is None or running + c <= budget:
            running += c
            taken[p.tier].append(n)
            cells_out.extend(cells)
        else:
            left_out[p.tier].append((n, c))

    rows = []
    for p in plans:
        if not p.sizes:
            rows.append(Decision(round_no, p.tier, p.decision, (), (), p.why, p.eval_items))
            continue
        got, missed = tuple(sorted(taken[p.tier])), left_out[p.tier]
        if got:
            why = p.why
            if missed:
                why += (
                    f"; the token budget leaves no room for n={_sizes_text([n for n, _ in missed])}"
                )
            rows.append(Decision(round_no, p.tier, p.decision, got, p.seeds, why))
        elif missed:
            need = sum(c for _, c in missed)
            short = (
                f"the token budget ({_tokens_text(budget or 0)}) has "
                f"{_tokens_text(max((budget or 0) - running, 0))} left, too little for "
                f"n={_sizes_text([n for n, _ in missed])} ({_tokens_text(need)})"
            )
            rows.append(_cut_short(round_no, p, BUDGET, short))
        else:  # every cell asked for was scheduled before and produced nothing
            rows.append(
                Decision(
                    round_no,
                    p.tier,
                    NO_RESULT,
                    (),
                    (),
                    f"cells at n={_sizes_text(p.sizes)} were scheduled before but gave no "
                    f"result; stopping this tier ({_state(p.curve)})",
                )
            )
    return sorted(cells_out, key=order), rows


# ----------------------------------------------------------------------------- public API


def first_round(recipe: Recipe, tier_sizes: Mapping[str, int]) -> list[Cell]:
    """Round 0: every tier × the recipe's sizes (capped, deduplicated) × seeds, small sizes first."""
    cells = []
    for t in recipe.tiers:
        cap = tier_cap(recipe, tier_sizes, t.name)
        for n in sorted({min(n, cap) for n in recipe.sizes}):
            cells.extend(Cell(t.name, n, s) for s in recipe.subsets.seeds)
    return sorted(set(cells), key=_order(recipe))


def next_round(
    recipe: Recipe,
    round_no: int,
    analysis: curves.Analysis | None,
    ran: Collection[Cell],
    tier_sizes: Mapping[str, int],
    *,
    spent: float,
    cost: Callable[[Cell], float],
    elapsed_hours: float,
    stopped: Collection[str] = (),
    eval_items: Mapping[str, int] | None = None,
    can_rescore: bool = False,
) -> tuple[list[Cell], list[Decision]]:
    """The cells of round `round_no` (1 = the first after the recipe's sizes) and why, per tier.

    `analysis`: the curves over the finished cells of `ran` (every cell scheduled so far).
    `spent`: cost of every scheduled cell; `cost(cell)`: its estimate in the budget's units
    (training tokens). Tiers in `stopped` already have their final row and get nothing. A row
    with no `next_sizes` and no `eval_items` finishes its tier; the sweep ends when no cells
    come back. `eval_items`: items each tier's cells are scored on when re-scored before;
    `can_rescore`: the sweep can re-score finished cells on more items (else seeds instead).
    """
    cfg = recipe.subsets.adaptive
    metric = steering_metric(recipe, analysis.metrics) if analysis is not None else None
    plans = []
    for t in recipe.tiers:
        if t.name in stopped:
            continue
        curve = None
        if analysis is not None and metric is not None:
            try:
                curve = analysis.curve(t.name, metric)
            except KeyError:
                curve = None
        plans.append(
            _plan_tier(
                recipe,
                t.name,
                curve,
                metric,
                ran,
                tier_cap(recipe, tier_sizes, t.name),
                (eval_items or {}).get(t.name),
                can_rescore,
            )
        )

    out_of_time = cfg.budget_hours is not None and elapsed_hours >= cfg.budget_hours
    if round_no >= cfg.max_rounds or out_of_time:
        rows = []
        for p in plans:
            if not p.sizes and not p.eval_items:
                rows.append(Decision(round_no, p.tier, p.decision, (), (), p.why))
            elif round_no >= cfg.max_rounds:
                short = f"stopped after {cfg.max_rounds} rounds (subsets.adaptive.max_rounds)"
                rows.append(_cut_short(round_no, p, MAX_ROUNDS, short))
            else:
                short = (
                    f"the time budget ({cfg.budget_hours:g} h) is spent after {elapsed_hours:.2f} h"
                )
                rows.append(_cut_short(round_no, p, BUDGET, short))
        return [], rows
    return _within_budget(recipe, plans, ran, spent, cost, round_no)


def run_rounds(
    recipe: Recipe,
    tier_sizes: Mapping[str, int],
    *,
    run_cells: Callable[[list[Cell]], None],
    analyze: Callable[[frozenset[Cell]], curves.Analysis | None],
    cost: Callable[[Cell], float],
    clock: Callable[[], float] = time.monotonic,
    on_decision: Callable[[Decision], None] | None = None,
    rescore: Callable[[str, int], None] | None = None,
) -> AdaptiveOutcome:
    """Rounds until no tier asks for more: round 0 is `first_round`, then `next_round`.

    `run_cells(cells)` runs the round's cells, skipping those already finished (the caller's
    store knows). `analyze(cells)` returns the curves over the finished cells among `cells`, every
    cell scheduled so far, with a fixed bootstrap seed; None when none has finished. Restricting it
    to the scheduled cells keeps each round's decision a function of the rounds before it, so a
    re-run after an interruption replays the same rounds, finds their cells done and continues.
    (`budget_hours` counts this call's wall time: a resumed run starts a fresh allowance.)

    `rescore(tier, items)`: re-score the tier's finished cells on `items` evaluation items
    without retraining. When given, the rounds may ask for items instead of seeds, and `analyze`
    is called as `analyze(cells, eval_items)` with the items per tier asked so far, so a replay
    reads each round with the items it had.
    """
    start = clock()
    decisions: list[Decision] = []
    final: dict[str, Decision] = {}
    rounds: list[tuple[Cell, ...]] = []
    ran: set[Cell] = set()
    spent = 0.0

    items: dict[str, int] = {}
    pending: dict[str, int] = {}

    def record(rows: list[Decision]) -> None:
        for row in rows:
            decisions.append(row)
            if row.eval_items:
                pending[row.tier] = row.eval_items
            elif not row.next_sizes:
                final[row.tier] = row
            if on_decision is not None:
                on_decision(row)

    # Round 0 obeys the token budget too: plan it as every tier's wish and let the budget cut.
    order = _order(recipe)
    by_tier: dict[str, list[Cell]] = {}
    for c in first_round(recipe, tier_sizes):
        by_tier.setdefault(c.tier, []).append(c)
    plans = [
        _Plan(
            t,
            FIRST_ROUND,
            tuple(sorted({c.size for c in cs})),
            tuple(recipe.subsets.seeds),
            f"first round: the recipe's sizes n={_sizes_text(sorted({c.size for c in cs}))}",
            None,
        )
        for t, cs in sorted(by_tier.items(), key=lambda kv: order(kv[1][0])[2])
    ]
    cells, rows = _within_budget(recipe, plans, ran, spent, cost, 0)
    record(rows)
    analysis = None
    round_no = 0
    while cells or pending:
        rounds.append(tuple(cells))
        ran.update(cells)
        spent += float(sum(cost(c) for c in cells))
        run_cells(list(cells))
        if rescore is not None:
            for tier, m in sorted(pending.items()):
                rescore(tier, m)
                items[tier] = m
            pending.clear()
            analysis = analyze(frozenset(ran), dict(items))
        else:
            analysis = analyze(frozenset(ran))
        round_no += 1
        cells, rows = next_round(
            recipe,
            round_no,
            analysis,
            ran,
            tier_sizes,
            spent=spent,
            cost=cost,
            elapsed_hours=(clock() - start) / 3600.0,
            stopped=set(final),
            eval_items=items,
            can_rescore=rescore is not None,
        )
        record(rows)
    return AdaptiveOutcome(tuple(decisions), tuple(rounds), spent, dict(final), analysis)


def decisions_table(decisions: Sequence[Decision]) -> list[dict]:
    """One dict per decision: round, tier, decision, next_sizes, seeds, why, eval_items."""
    return [
        {
            "round": d.round,
            "tier": d.tier,
            "decision": d.decision,
            "next_sizes": list(d.next_sizes),
            "seeds": list(d.seeds),
            "why": d.why,
            "eval_items": d.eval_items,
        }
        for d in decisions
    ]
