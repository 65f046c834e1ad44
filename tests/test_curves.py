"""Saturation analysis on simulated curves with known truth, plus CSV input errors."""

from __future__ import annotations

import functools
import json
import math
import time
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from loop import curves
from loop.curves import (
    FEW_SIZES,
    FLATTENED,
    INCONCLUSIVE,
    MORE_DATA_PAYS,
    NEXT_SIZE,
    NOT_LEARNING,
    SATURATED,
    STILL_GAINING,
    TOO_NOISY,
    Analysis,
    CurveInputError,
    Evidence,
    ItemScore,
    Record,
    analyze,
    decide,
    read_curve_csv,
    read_curve_table,
    to_json,
)

try:  # pytest puts tests/ on sys.path when tests/ is not a package, the repo root when it is
    from fixtures_curves import SHAPES, Shape, simulate, true_crossing, true_delta2, true_n_star
except ImportError:  # pragma: no cover
    from tests.fixtures_curves import (
        SHAPES,
        Shape,
        simulate,
        true_crossing,
        true_delta2,
        true_n_star,
    )

RUNS = 40  # simulated sweeps per shape
N_BOOT = 500  # halves the run time; with 1000 the rates below move by at most 1 run in 40


@functools.cache
def runs(name: str) -> tuple[Analysis, ...]:
    shape = SHAPES[name]
    return tuple(
        analyze(
            simulate(shape, seed),
            direction=shape.direction,
            eval_size=shape.eval_size,
            n_boot=N_BOOT,
            seed=seed,
        )
        for seed in range(RUNS)
    )


def decisions(name: str) -> Counter:
    return Counter(a.curves[0].decision for a in runs(name))


def binomial_ok(n: int, nominal: float, alpha: float = 0.001) -> tuple[int, int]:
    """The hit counts a `nominal` rate over `n` independent cases gives with probability
    1 - alpha (two-sided): a count outside says the rate is not the nominal one."""
    lo = int(stats.binom.ppf(alpha / 2, n, nominal))
    hi = int(stats.binom.isf(alpha / 2, n, nominal))
    return lo, hi


def rate(name: str, *wanted: str) -> float:
    d = decisions(name)
    observed = sum(d[w] for w in wanted) / RUNS
    print(f"{name}: {dict(d)} -> {'/'.join(wanted)} rate {observed:.2f}")
    return observed


# ----------------------------------------------------------------------------- decisions


def test_fast_saturation_is_found():
    assert true_n_star(SHAPES["fast"]) == 400
    assert rate("fast", SATURATED) >= 0.85  # observed 0.93


def test_saturated_loss_curve_is_found():
    assert true_n_star(SHAPES["loss_fast"]) == 400
    assert rate("loss_fast", SATURATED) >= 0.9  # observed 1.00


def test_slow_saturation_beyond_range_says_more_data_pays():
    assert true_n_star(SHAPES["slow"]) is None
    assert rate("slow", MORE_DATA_PAYS) >= 0.9  # observed 1.00
    assert rate("slow", SATURATED) <= 0.05


def test_log_linear_never_saturates():
    assert true_n_star(SHAPES["loglinear"]) is None
    # observed 0.78 (1.00 with a plain power law): the rectified law's S-shaped alternative
    # (flat, rising, then flat right past the data) widens the extrapolated gain at 2x the
    # largest size, so some draws stay inconclusive; none may say saturated
    assert rate("loglinear", MORE_DATA_PAYS) >= 0.7
    assert rate("loglinear", SATURATED) <= 0.05


def test_hard_saturated_curve_rarely_says_more_data_pays():
    # gains near the noise level: "inconclusive" is an honest answer, "more data pays" is wrong
    assert true_n_star(SHAPES["fast_hard"]) == 800
    assert rate("fast_hard", SATURATED, INCONCLUSIVE) >= 0.9  # observed 1.00
    assert rate("fast_hard", MORE_DATA_PAYS) <= 0.1
    # and the data carry the call often enough: an analysis that always answers "inconclusive"
    # fails here (observed 0.35 over these 40 runs, 0.33 over 200 in
    # benchmarks/results/figures/curve_coverage.txt; 0.15 is 2.7 binomial SDs under 0.35)
    assert rate("fast_hard", SATURATED) >= 0.15


def test_noise_above_epsilon_is_inconclusive_or_flagged():
    ok = 0
    for a in runs("noisy_dip"):
        c = a.curves[0]
        flagged = any(w.startswith("non-monotone") for w in c.warnings)
        ok += c.decision == INCONCLUSIVE or flagged
    print(f"noisy_dip: inconclusive or flagged {ok / RUNS:.2f}")
    assert ok / RUNS >= 0.9  # observed 1.00
    assert rate("noisy_dip", SATURATED) <= 0.05


def test_dip_is_flagged_at_its_size():
    flagged = sum(
        any(w.startswith("non-monotone") and "n=800" in w for w in a.curves[0].warnings)
        for a in runs("dip")
    )
    print(f"dip: flagged at n=800 in {flagged / RUNS:.2f}")
    assert flagged / RUNS >= 0.8  # observed 0.93
    # and the smooth curves are not flagged
    for name in ("fast", "slow", "loglinear", "loss_fast"):
        n = sum(any("non-monotone" in w for w in a.curves[0].warnings) for a in runs(name))
        assert n / RUNS <= 0.1, name


def test_two_sizes_are_inconclusive():
    for a in runs("two_sizes"):
        c = a.curves[0]
        assert c.decision == INCONCLUSIVE
        assert "2 distinct sizes" in c.reason
        assert c.n_star is None and c.next_size == 1600


# ----------------------------------------------------------------------------- n* and intervals


@pytest.mark.parametrize("name", ["fast", "loss_fast"])
def test_n_star_near_truth_and_inside_its_interval(name):
    truth = true_n_star(SHAPES[name])
    near = found = 0
    for a in runs(name):
        c = a.curves[0]
        if c.decision != SATURATED:
            continue
        found += 1
        lo, hi = c.n_star_ci
        assert lo <= c.n_star and (hi is None or c.n_star <= hi)
        near += abs(math.log2(c.n_star / truth)) <= 1  # within one doubling of the true n*
    print(f"{name}: n* within one doubling of {truth} in {near}/{found}")
    assert near / found >= 0.8  # observed fast 0.94, loss_fast 1.00


def test_n_star_interval_covers_the_true_crossing():
    # the 90% interval of n* against the size from which the true gain stays below epsilon, on
    # the analysis's own size grid; pooled over the saturated calls of three shapes (over 200
    # runs each: 377/435 = 0.867, benchmarks/results/figures/curve_coverage.txt)
    covered = cases = 0
    for name in ("fast", "fast_hard", "loss_fast"):
        k = n = 0
        for a in runs(name):
            c = a.curves[0]
            if c.n_star_ci is None:
                continue
            truth = true_crossing(SHAPES[name], c.band.n)
            lo, hi = c.n_star_ci
            k += lo <= truth and (hi is None or truth <= hi)
            n += 1
        print(f"{name}: n* interval covers the true crossing in {k}/{n}")
        covered, cases = covered + k, cases + n
    lo_ok, hi_ok = binomial_ok(cases, 0.9)
    print(f"pooled {covered}/{cases}, a 90% interval gives {lo_ok}..{hi_ok}")
    assert cases >= 60  # the saturated calls the other tests ask for
    assert covered >= lo_ok  # wider than 90% passes here; the width check below catches it
    # an interval that always stretches past the range would cover everything: loss_fast's
    # crossing is pinned down well inside it (observed: every interval closed, median width
    # hi/lo 1.3)
    closed = [a.curves[0].n_star_ci for a in runs("loss_fast") if a.curves[0].n_star_ci]
    assert all(hi is not None for _, hi in closed)
    assert np.median([hi / lo for lo, hi in closed]) < 2.0


def test_no_n_star_beyond_one_doubling_past_largest_size():
    for name in SHAPES:
        for a in runs(name):
            for c in a.curves:
                largest = c.sizes[-1].size
                if c.n_star is not None:
                    assert c.decision == SATURATED
                    assert c.n_star <= 2 * largest, (name, c.summary)
                if c.next_size is not None:
                    assert c.next_size <= 2 * largest


def test_delta2_interval_covers_truth_at_largest_size():
    # one independent case per run, pooled over five shapes (200 runs): the count must be one a
    # 90% interval gives (two-sided binomial, alpha 0.001), so neither a narrower nor a much
    # wider interval passes. Over 1,000 runs (benchmarks/results/figures/curve_coverage.txt)
    # the pooled rate is 0.881; loss_fast alone covers 0.825, under its nominal 0.90
    covered = cases = 0
    for name in ("fast", "fast_hard", "slow", "loglinear", "loss_fast"):
        shape = SHAPES[name]
        n = shape.sizes[-1]
        truth = true_delta2(shape, n)
        k = sum(lo <= truth <= hi for lo, hi in (a.curves[0].delta2_at_max_ci for a in runs(name)))
        print(f"{name}: 90% interval of delta2({n}) covers the truth in {k}/{RUNS}")
        covered, cases = covered + k, cases + RUNS
    lo_ok, hi_ok = binomial_ok(cases, 0.9)
    print(f"pooled {covered}/{cases}, a 90% interval gives {lo_ok}..{hi_ok}")
    assert lo_ok <= covered <= hi_ok


# ----------------------------------------------------------------------------- fit


def _exact(c, a, b, direction="higher", sizes=(100, 200, 400, 800, 1600, 3200), seeds=3):
    sign = 1 if direction == "higher" else -1
    return [Record("t", n, s, "m", c - sign * a * n**-b) for s in range(seeds) for n in sizes]


@pytest.mark.parametrize(
    "c,a,b,direction",
    [(0.75, 1.5, 0.7, "higher"), (0.62, 0.9, 0.35, "higher"), (0.8, 3.0, 0.9, "lower")],
)
def test_noise_free_power_law_is_recovered(c, a, b, direction):
    res = analyze(_exact(c, a, b, direction), direction=direction, n_boot=200).curves[0]
    assert res.weights.power_law > 0.99
    assert res.power_law.c == pytest.approx(c, abs=2e-3)
    assert res.power_law.b == pytest.approx(b, rel=0.05)
    s = res.sizes[2]
    assert s.delta2 == pytest.approx(a * s.size**-b * (1 - 2**-b), rel=0.05)
    assert s.gain_per_1k == pytest.approx(1000 * a * b * s.size ** (-b - 1), rel=0.05)


def test_one_wild_mean_does_not_move_the_plateau_much():
    recs = _exact(0.75, 1.5, 0.7)
    wild = [
        Record(r.tier, r.size, r.seed, r.metric, r.value - 0.05 * (r.size == 400)) for r in recs
    ]
    clean = analyze(recs, direction="higher", n_boot=200).curves[0]
    bent = analyze(wild, direction="higher", n_boot=200).curves[0]
    assert abs(bent.plateau - clean.plateau) < 0.01  # the outlier is 5 points off


def test_direction_is_mirrored_exactly():
    shape = SHAPES["loss_fast"]
    loss = simulate(shape, 3)
    neg = [Record(r.tier, r.size, r.seed, r.metric, -r.value) for r in loss]
    a = analyze(loss, direction="lower", epsilon=0.008, n_boot=300).curves[0]
    b = analyze(neg, direction="higher", epsilon=0.008, n_boot=300).curves[0]
    assert a.decision == b.decision
    assert a.n_star == b.n_star
    assert a.delta2_at_max == pytest.approx(b.delta2_at_max, rel=1e-6)
    assert a.delta2_at_max > 0  # gains are positive when loss falls


def test_eval_size_sets_the_noise_floor():
    # identical seeds: the only noise left is p(1-p)/m, divided by k seeds
    recs = [Record("t", n, s, "acc", 0.6) for s in range(3) for n in (100, 200, 400, 800)]
    c = analyze(recs, direction="higher", eval_size=500, n_boot=200).curves[0]
    for s in c.sizes:
        assert s.eval_se == pytest.approx(math.sqrt(0.6 * 0.4 / 500))
        assert s.se == pytest.approx(math.sqrt(0.6 * 0.4 / 500 / 3))
    # a constant curve has not risen over its first size: not learning yet, never saturated
    assert c.decision == INCONCLUSIVE and c.why == NOT_LEARNING
    assert "not learning yet" in c.reason


def test_default_epsilon_per_kind_of_metric():
    acc = analyze(simulate(SHAPES["fast"], 0), direction="higher", n_boot=200).curves[0]
    loss = analyze(simulate(SHAPES["loss_fast"], 0), direction="lower", n_boot=200).curves[0]
    assert acc.epsilon == 0.01
    assert loss.epsilon == pytest.approx(0.01 * loss.sizes[-1].mean)


def test_many_seeds_use_the_seed_bootstrap_and_are_deterministic():
    recs = simulate(SHAPES["fast"], 5, n_seeds=5)
    a = analyze(recs, direction="higher", eval_size=10_000, n_boot=300, seed=7)
    b = analyze(recs, direction="higher", eval_size=10_000, n_boot=300, seed=7)
    assert a.curves[0].bootstrap == "seeds"
    assert to_json(a) == to_json(b)


def test_bad_arguments_are_refused():
    recs = simulate(SHAPES["fast"], 0)
    with pytest.raises(ValueError, match="direction for metric 'accuracy'"):
        analyze(recs, direction={"other": "higher"})
    with pytest.raises(ValueError, match="'higher' or 'lower'"):
        analyze(recs, direction="up")
    with pytest.raises(ValueError, match="no records"):
        analyze([], direction="higher")
    with pytest.raises(ValueError, match="duplicate record"):
        analyze(recs + recs[:1], direction="higher")


def test_accuracy_ceiling_stops_the_log_linear_rival():
    # 2 points a doubling until accuracy hits 1.0 at 3,200: no more gains are possible
    recs = [
        Record("t", n, s, "acc", min(1.0, 0.9 + 0.02 * math.log2(n / 100)))
        for s in range(3)
        for n in (100, 200, 400, 800, 1600, 3200)
    ]
    c = analyze(recs, direction="higher", eval_size=1000, n_boot=300).curves[0]
    assert c.decision != MORE_DATA_PAYS
    assert max(c.band.fitted) <= 1.0


# ----------------------------------------------------------------------------- across curves


def _tier(shape: Shape, seed: int, tier: str, shift: float = 1.0) -> list[Record]:
    """`shape` with sizes stretched by `shift`: tier(n) scores like shape(n / shift)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(3):
        for n in shape.sizes:
            v = shape.c - shape.a * (n / shift) ** -shape.b + 0.002 * rng.standard_normal()
            out.append(Record(tier, n, s, "accuracy", v))
    return out


def test_exchange_rate_between_tiers():
    shape = Shape("x", "power", c=0.8, a=1.5, b=0.4)
    recs = _tier(shape, 1, "high") + _tier(shape, 2, "low", shift=4.0)
    an = analyze(recs, direction="higher", n_boot=300)
    (ex,) = an.exchanges
    assert (ex.better, ex.other) == ("high", "low")
    rows = {r.size: r for r in ex.rows}
    for n in (100, 200, 400, 800, 1600):  # low needs 4x: within 2x its largest size (6,400)
        assert rows[n].ratio == pytest.approx(4.0, rel=0.25), n
    for n in (100, 200, 400, 800):  # 1600 needs 6,400, the edge: its upper bound is open
        lo, hi = rows[n].other_size_ci
        assert lo <= rows[n].other_size <= hi
    assert rows[3200].other_size is None  # would need 12,800
    assert "within one doubling" in rows[3200].reason
    assert "4." in ex.summary or "3." in ex.summary
    quoted = [r for r in ex.rows if r.other_size is not None and r.other_size <= 3200][-1]
    lo, hi = quoted.other_size_ci
    want = f"(90% CI {curves._fmt_n(lo)}–{curves._fmt_n(hi)})" if hi else "(90% CI: at least"
    assert want in ex.summary, ex.summary  # the quoted exchange carries its interval


def test_loss_and_accuracy_disagreement_is_flagged():
    sizes = (100, 200, 400, 800, 1600, 3200)
    rng = np.random.default_rng(0)
    recs = []
    for s in range(3):
        for n in sizes:
            # loss flattens by ~400 while accuracy keeps climbing 3 points a doubling
            loss = 0.8 + 3.0 * n**-0.9 + 0.002 * rng.standard_normal()
            acc = 0.3 + 0.03 * math.log2(n / 100) + 0.004 * rng.standard_normal()
            recs += [Record("t", n, s, "val_loss", loss), Record("t", n, s, "accuracy", acc)]
    an = analyze(recs, direction={"val_loss": "lower", "accuracy": "higher"}, n_boot=300)
    assert an.curve("t", "val_loss").decision == SATURATED
    assert an.curve("t", "accuracy").decision == MORE_DATA_PAYS
    assert any("val_loss vs accuracy" in w for w in an.warnings)
    assert any("val_loss vs accuracy" in w for w in an.curve("t", "accuracy").warnings)


def test_worsening_trend_is_flagged():
    recs = [
        Record("t", n, s, "accuracy", 0.7 - 0.02 * math.log2(n / 100) + 0.001 * s)
        for s in range(3)
        for n in (100, 200, 400, 800, 1600)
    ]
    c = analyze(recs, direction="higher", n_boot=300).curves[0]
    assert c.trend == "worsening"
    assert any("makes the model worse" in w for w in c.warnings)
    assert c.decision != MORE_DATA_PAYS


def _hand_items(tier, metric, size, scores):
    return [ItemScore(tier, size, 0, metric, f"q{i}", float(v)) for i, v in enumerate(scores)]


def test_trend_with_two_sizes_and_opposite_moves_is_flagged():
    # the 3-choice case: accuracy 35% -> 28% on 100 items while validation loss falls
    # (the 28 items right at 32 are among the 35 right at 16: the pairing a real run has)
    rng = np.random.default_rng(1)
    items = []
    for size, right, loss in ((0, 33, 2.2), (16, 35, 1.9), (32, 28, 1.4)):
        acc = np.zeros(100)
        acc[:right] = 1
        items += _hand_items("t", "eval.choice", size, acc)
        items += _hand_items("t", "val_loss", size, loss + 0.05 * rng.standard_normal(100))
    an = analyze(items=items, direction={"val_loss": "lower", "eval.choice": "higher"}, n_boot=400)
    acc, loss = an.curve("t", "eval.choice"), an.curve("t", "val_loss")
    assert acc.band is None and loss.band is None  # two sizes: no fitted curve
    assert loss.trend == "improving"
    assert acc.trend == "worsening"
    (msg,) = [w for w in acc.warnings if "val_loss vs eval.choice" in w]
    assert "opposite directions" in msg and "answer format, not the task" in msg


def test_trend_is_flat_when_nothing_moves():
    # every cell scores the same on every item: ties count half each way
    items = []
    for size in (0, 16, 32, 64, 128):
        items += _hand_items("t", "acc", size, [1, 0] * 20)
    c = analyze(items=items, direction="higher", n_boot=300).curves[0]
    assert c.trend == "flat"
    assert not any("makes the model worse" in w for w in c.warnings)


def test_trend_follows_the_data_on_either_side():
    up = [Record("t", n, 0, "acc", 0.3 + 0.05 * k) for k, n in enumerate((16, 32))]
    down = [Record("u", n, 0, "acc", 0.6 - 0.05 * k) for k, n in enumerate((16, 32))]
    an = analyze(up + down, direction="higher", eval_size=2000, n_boot=300)
    assert an.curve("t", "acc").trend == "improving"
    assert an.curve("u", "acc").trend == "worsening"


def test_loss_falls_while_accuracy_stays_at_chance_is_flagged():
    # five sizes, 2-choice: accuracy 48-52% (chance) while validation loss falls steadily
    rng = np.random.default_rng(2)
    items = []
    for k, size in enumerate((0, 16, 32, 64, 128, 256)):
        acc = (rng.random(300) < 0.5).astype(float)
        items += _hand_items("t", "eval.choice", size, acc)
        items += _hand_items(
            "t", "val_loss", size, 2.0 - 0.15 * k + 0.05 * rng.standard_normal(300)
        )
    an = analyze(items=items, direction={"val_loss": "lower", "eval.choice": "higher"}, n_boot=400)
    acc, loss = an.curve("t", "eval.choice"), an.curve("t", "val_loss")
    assert loss.trend == "improving" and not acc.learning
    assert any(
        "val_loss vs eval.choice" in w and "answer format, not the task" in w for w in acc.warnings
    )


# ----------------------------------------------------------------------------- JSON and speed


def test_to_json_is_strict_json_with_required_keys():
    recs = simulate(SHAPES["fast"], 0, tier="high") + simulate(SHAPES["two_sizes"], 0, tier="low")
    doc = to_json(analyze(recs, direction="higher", eval_size=10_000, n_boot=200))
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    required = {
        "decision", "n_star", "n_star_ci", "plateau", "plateau_ci", "delta2_at_max",
        "next_size", "warnings", "summary", "reason", "sizes",
    }  # fmt: skip
    for tier in ("high", "low"):
        assert required <= set(back["curves"][tier]["accuracy"])
    assert back["curves"]["low"]["accuracy"]["plateau"] is None  # two sizes: no fit
    assert back["curves"]["low"]["accuracy"]["sizes"][0]["fitted"] is None  # NaN -> None


def test_three_tiers_six_sizes_three_seeds_is_fast():
    recs = []
    for i, tier in enumerate(("high", "mid", "low")):
        recs += simulate(SHAPES["fast"], i, tier=tier)
    t0 = time.perf_counter()
    analyze(recs, direction="higher", eval_size=10_000, n_boot=1000)
    took = time.perf_counter() - t0
    print(f"analyze, 3 tiers x 6 sizes x 3 seeds, n_boot=1000: {took:.2f} s")
    assert took < 5.0


# ----------------------------------------------------------------------------- CSV input


def test_read_curve_csv_defaults(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("size,seed,value\n100,0,0.5\n200,0,0.6\n\n400,1,0.65\n")
    recs = read_curve_csv(p)
    assert recs[0] == Record("all", 100, 0, "value", 0.5)
    assert len(recs) == 3
    p.write_text("tier,metric,size,seed,value\nhi,acc,100,0,0.5\nlo,acc,200.0,1,0.6\n")
    assert read_curve_csv(p)[1] == Record("lo", 200, 1, "acc", 0.6)


@pytest.mark.parametrize(
    "text,line,column,expected",
    [
        ("size,value\n100,0.5\n200,0.6\n", 1, "seed", "missing required column"),
        ("size,seed,value\n100,0,0.5\n200,0,abc\n", 3, "value", "expected a number"),
        ("size,seed,value\n100,0,0.5\n-200,0,0.6\n", 3, "size", "size >= 0"),
        ("size,seed,value\n0,0,0.5\n0,1,0.6\n", 3, "size", "only size 0"),
        ("size,seed,value\n100,0,0.5\n150.5,0,0.6\n", 3, "size", "expected an integer"),
        ("size,seed,value\n100,x,0.5\n150,0,0.6\n", 2, "seed", "expected an integer"),
        ("size,seed,value\n100,0,0.5\n200,0,\n", 3, "value", "empty cell"),
        ("size,seed,value\n100,0,0.5\n", 2, "size", "at least 2 data rows"),
    ],
)
def test_malformed_csv_names_file_line_and_column(tmp_path, text, line, column, expected):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(CurveInputError) as err:
        read_curve_csv(p)
    msg = str(err.value)
    assert str(p) in msg and f"line {line}" in msg and f"column '{column}'" in msg, msg
    assert expected in msg
    assert (err.value.line, err.value.column) == (line, column)


def test_empty_and_missing_files(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(CurveInputError, match=r"empty\.csv.*line 1.*empty file"):
        read_curve_csv(p)
    with pytest.raises(CurveInputError, match=r"nope\.csv.*file not found"):
        read_curve_csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- paired items


def _ladder_items(thresholds, zero, m=200, seeds=2, tier="t", metric="acc", jitter=0.0):
    """Item i is right at a size when its difficulty is below the size's threshold.

    Every cell sees the same items, so each size's mean carries ~3.5 points of item noise
    while the gains between sizes are exact. `jitter` flips a few items per cell at random.
    """
    rng = np.random.default_rng(0)
    diff = np.sort(rng.random(m))
    out = [ItemScore(tier, 0, 0, metric, f"q{i}", float(diff[i] < zero)) for i in range(m)]
    for n, thr in thresholds.items():
        for s in range(seeds):
            right = diff < thr
            if jitter:
                flip = rng.random(m) < jitter
                right = np.where(flip, ~right, right)
            out += [ItemScore(tier, n, s, metric, f"q{i}", float(right[i])) for i in range(m)]
    return out


def _means(items):
    by: dict[tuple, list[float]] = {}
    for it in items:
        by.setdefault((it.tier, it.size, it.seed, it.metric), []).append(it.score)
    return [Record(t, n, s, m, float(np.mean(v))) for (t, n, s, m), v in by.items()]


RISE_THEN_FLAT = {100: 0.40, 200: 0.50, 400: 0.55, 800: 0.56, 1600: 0.562, 3200: 0.563}


def test_paired_bootstrap_sees_precise_gains_behind_noisy_sizes():
    items = _ladder_items(RISE_THEN_FLAT, zero=0.30)
    paired = analyze(items=items, direction="higher", n_boot=400).curves[0]
    unpaired = analyze(_means(items), direction="higher", eval_size=200, n_boot=400).curves[0]
    assert paired.bootstrap.startswith("items") and unpaired.bootstrap == "parametric"
    # each size alone is as noisy either way: p(1-p)/m with m = 200 items
    assert paired.sizes[-1].eval_se == pytest.approx(unpaired.sizes[-1].eval_se, rel=0.25)
    w_paired = paired.delta2_at_max_ci[1] - paired.delta2_at_max_ci[0]
    w_unpaired = unpaired.delta2_at_max_ci[1] - unpaired.delta2_at_max_ci[0]
    print(f"delta2(max) interval width: paired {w_paired:.4f}, unpaired {w_unpaired:.4f}")
    assert w_paired < w_unpaired / 3
    assert paired.decision == SATURATED and paired.learning
    assert unpaired.decision == INCONCLUSIVE


def test_flat_curve_at_zero_shot_level_is_not_saturated_but_risen_and_flat_is():
    flat = {n: 0.5 for n in (100, 200, 400, 800, 1600)}
    still = analyze(items=_ladder_items(flat, zero=0.5), direction="higher", n_boot=300).curves[0]
    assert still.decision == INCONCLUSIVE and still.why == NOT_LEARNING
    assert not still.learning and still.certified_epsilon is None
    assert "not learning yet" in still.summary and "bigger model" in still.summary
    # nothing at these sizes predicts a rise: said plainly, not offered as advice that settles it
    assert still.settle is not None and still.settle.kind == "none" and not still.settle.likely
    assert "larger size" in still.settle.text and "bigger model" in still.settle.text
    # the same flat sizes after a 20-point rise over the base model: saturated
    items = _ladder_items(flat, zero=0.3)
    rose = analyze(items=items, direction="higher", n_boot=300).curves[0]
    assert rose.decision == SATURATED and rose.learning
    zero = np.mean([i.score for i in items if i.size == 0])
    top = np.mean([i.score for i in items if i.size == 1600])
    assert rose.zero_shot == pytest.approx(zero) and rose.anchor == "zero-shot"
    assert rose.rise == pytest.approx(top - zero, abs=0.005)


def test_a_curve_that_only_climbs_to_the_majority_rate_is_not_learning_yet():
    # the event_categories shape: the untrained model never writes a bare label (0%), every cell
    # answers the majority label, right on 95% of the items
    flat = {n: 0.95 for n in (32, 64, 128)}
    items = _ladder_items(flat, zero=0.0, m=60, seeds=1)
    blind = analyze(items=items, direction="higher", n_boot=300).curves[0]
    assert blind.decision == SATURATED and blind.anchor == "zero-shot"  # what chance changes
    majority = float(np.mean([i.score for i in items if i.size == 128]))
    c = analyze(items=items, direction="higher", n_boot=300, chance={"acc": majority}).curves[0]
    assert c.anchor == "chance" and c.zero_shot == 0.0
    assert c.decision == INCONCLUSIVE and c.why == NOT_LEARNING and not c.learning
    assert c.rise == pytest.approx(0.0, abs=1e-9) and c.certified_epsilon is None
    # a chance level under the zero-shot score changes nothing: the anchor stays zero-shot
    low = analyze(items=items, direction="higher", n_boot=300, chance={"acc": -0.5}).curves[0]
    assert low.anchor == "zero-shot" and low.decision == SATURATED
    # a lower-is-better metric has no chance level to climb to
    loss = analyze(items=items, direction="lower", n_boot=300, chance={"acc": 2.0}).curves[0]
    assert loss.anchor == "zero-shot"


def test_a_dip_after_a_clear_rise_is_not_learning_the_format():
    # the imperial_date shape: ROUGE-L 28% untrained, ~80% from 32 on with a 1-point dip at the
    # tail, while validation loss keeps falling: the model learned the task
    rng = np.random.default_rng(3)
    m = 240
    base = rng.random(m)
    items = []
    for k, (size, level) in enumerate(((0, 0.28), (32, 0.80), (64, 0.79), (128, 0.788))):
        acc = np.clip(level + 0.15 * (base - 0.5), 0, 1)
        items += _hand_items("t", "eval.rouge_l", size, acc)
        items += _hand_items("t", "val_loss", size, 1.5 - 0.2 * k + 0.05 * rng.standard_normal(m))
    an = analyze(
        items=items, direction={"val_loss": "lower", "eval.rouge_l": "higher"}, n_boot=300
    )
    acc = an.curve("t", "eval.rouge_l")
    assert acc.trend == "worsening" and acc.learning
    assert not any("answer format" in w for w in acc.warnings)


def test_without_a_zero_shot_row_the_first_size_is_the_anchor():
    flat = [Record("t", n, s, "acc", 0.5 + 0.001 * s) for s in range(3) for n in (100, 200, 400)]
    flat += [Record("t", 800, s, "acc", 0.5) for s in range(3)]
    c = analyze(flat, direction="higher", eval_size=5000, n_boot=300).curves[0]
    assert c.anchor == "first size" and c.zero_shot is None
    assert c.decision == INCONCLUSIVE and c.why == NOT_LEARNING


def test_graded_answer_certified_epsilon_and_n_star_by_epsilon():
    items = _ladder_items(RISE_THEN_FLAT, zero=0.30)
    c = analyze(items=items, direction="higher", n_boot=400).curves[0]
    assert c.certified_epsilon is not None and c.certified_epsilon < c.epsilon
    assert c.certified_at is not None and c.certified_at <= c.max_size
    eps = [r.epsilon for r in c.n_star_by_epsilon]
    assert eps == sorted(eps) and c.epsilon in eps
    n_at = [r.n_star for r in c.n_star_by_epsilon if r.n_star is not None]
    assert n_at == sorted(n_at, reverse=True)  # a looser epsilon is reached sooner
    doc = to_json(analyze(items=items, direction="higher", n_boot=400))["curves"]["t"]["acc"]
    assert doc["certified_epsilon"] == pytest.approx(c.certified_epsilon)
    assert doc["certified_text"].startswith(f"doubling past {c.certified_at:,} gains < ")
    assert doc["zero_shot"] == pytest.approx(c.zero_shot)
    assert len(doc["n_star_by_epsilon"]) == len(c.n_star_by_epsilon)


def test_settle_advice_follows_the_noise_that_dominates():
    # item noise only: 40 items, identical seeds, gains of ~1 point a doubling near epsilon
    rising = {100: 0.40, 200: 0.45, 400: 0.50, 800: 0.52, 1600: 0.535}
    items = _ladder_items(rising, 0.3, m=40)
    few = analyze(items=items, direction="higher", n_boot=400).curves[0]
    assert few.decision == INCONCLUSIVE and few.noise.item_share > 0.9
    assert few.settle.kind == "items" and few.settle.items > 40 and few.settle.likely
    capped = analyze(items=items, direction="higher", max_items=41, n_boot=400).curves[0]
    assert capped.settle.kind != "items"  # never more items than the validation set holds
    # training noise dominates: seeds 3 points apart, 100k items each
    rng = np.random.default_rng(1)
    recs = [
        Record("t", n, s, "acc", 0.3 + 0.05 * math.log2(n / 100) ** 0.5 + 0.03 * rng.standard_normal())
        for s in range(2)
        for n in (100, 200, 400, 800, 1600)
    ]  # fmt: skip
    noisy = analyze(recs, direction="higher", eval_size=100_000, n_boot=400).curves[0]
    assert noisy.decision == INCONCLUSIVE and noisy.noise.item_share < 0.1
    assert "seeds" in noisy.settle.kind.split("+") and noisy.settle.seeds > 2
    assert "seeds at every size" in noisy.summary


def test_one_seed_training_noise_does_not_count_the_item_noise_twice():
    # no training noise at all: each cell flips 15% of its 400 items on its own, so the cell
    # means scatter around the curve by their own item noise only (~1.8 points)
    ratios = []
    for rep in range(6):
        rng = np.random.default_rng(rep)
        diff = rng.random(400)
        items = [ItemScore("t", 0, 0, "acc", f"q{i}", float(diff[i] < 0.3)) for i in range(400)]
        for n, thr in RISE_THEN_FLAT.items():
            right = (diff < thr) ^ (rng.random(400) < 0.15)
            items += [ItemScore("t", n, 0, "acc", f"q{i}", float(right[i])) for i in range(400)]
        c = analyze(items=items, direction="higher", n_boot=300, seed=rep).curves[0]
        assert c.noise.train_source == "residuals"
        own = math.sqrt(0.15 * 0.85 * 2 / 400)  # sd of one cell's own flips, in its mean
        ratios.append((c.noise.train_sd / own) ** 2)
    # counting the item scatter as training noise gave a ratio near 1 (or above, with misfit)
    assert np.mean(ratios) < 0.5, ratios


def test_four_sizes_of_one_seed_warn_that_training_noise_rests_on_one_degree_of_freedom():
    # 40 items, zero-shot 0, one seed at 8..64 (a sweep's shape): 4 sizes - 3 parameters
    right = {0: set(), 8: {0, 1, 2}, 16: {0}, 32: {0, 1, 2, 3}, 64: set(range(13))}
    items = [ItemScore("t", n, 0, "acc", f"q{i}", float(i in r))
             for n, r in right.items() for i in range(40)]  # fmt: skip
    c = analyze(items=items, direction="higher", n_boot=400).curves[0]
    assert c.noise.train_source == "residuals"
    assert any("1 degree of freedom" in w for w in c.warnings)


def test_open_call_too_close_to_call_says_nothing_within_reach_settles_it():
    # the fitted gain sits on epsilon: no amount of evidence is expected to move it clear
    rising = {100: 0.40, 200: 0.42, 400: 0.44, 800: 0.46, 1600: 0.48}
    c = analyze(items=_ladder_items(rising, 0.3, m=200, seeds=1, jitter=0.05), direction="higher",
                epsilon=0.02, max_items=400, n_boot=400).curves[0]  # fmt: skip
    assert c.decision == INCONCLUSIVE
    assert c.settle.kind == "none" and not c.settle.likely and c.settle.p_settle < 0.8
    assert "nothing within reach" in c.settle.text and "400 items" in c.settle.text
    assert "what the data certifies" in c.settle.text
    bound = c.settle.text.split("what the data certifies: ")[1]
    assert c.summary.count(bound) == 1, c.summary  # quoted once, not again after the advice


# ----------------------------------------------------------------------------- decision rule


def _ev(hi, lo, rise=0.2, rise_lo=0.15, eps=0.01, n=(100, 200, 400, 800), max_size=800):
    return Evidence(tuple(map(float, n)), tuple(hi), tuple(lo), max_size, rise, rise_lo, eps,
                    len([x for x in n if x <= max_size]))  # fmt: skip


def test_decide_saturated_needs_the_upper_bound_below_eps_and_a_rise():
    v = decide(_ev(hi=(0.05, 0.02, 0.008, 0.004), lo=(0.03, 0.01, 0.002, 0.0)))
    assert (v.decision, v.why, v.n_star) == (SATURATED, FLATTENED, 400)
    flat = decide(_ev(hi=(0.005,) * 4, lo=(0.0,) * 4, rise=0.002, rise_lo=-0.01))
    assert (flat.decision, flat.why) == (INCONCLUSIVE, NOT_LEARNING)
    noisy_rise = decide(_ev(hi=(0.005,) * 4, lo=(0.0,) * 4, rise=0.03, rise_lo=0.005))
    assert (noisy_rise.decision, noisy_rise.why) == (INCONCLUSIVE, TOO_NOISY)


def test_decide_more_data_pays_on_the_lower_bound_at_the_largest_size():
    v = decide(_ev(hi=(0.06, 0.05, 0.04, 0.03), lo=(0.04, 0.03, 0.02, 0.015)))
    assert (v.decision, v.why) == (MORE_DATA_PAYS, STILL_GAINING)
    # the lower bound at the largest size below eps: not "pays", whatever smaller sizes say
    v = decide(_ev(hi=(0.06, 0.05, 0.04, 0.03), lo=(0.04, 0.03, 0.02, 0.005)))
    assert (v.decision, v.why) == (INCONCLUSIVE, TOO_NOISY)
    # pays does not need a certified rise (a rising curve has risen)
    v = decide(_ev(hi=(0.06,) * 4, lo=(0.02,) * 4, rise=0.0, rise_lo=-1.0))
    assert v.decision == MORE_DATA_PAYS


def test_decide_crossing_past_the_largest_size_and_few_sizes():
    n = (100, 200, 400, 800, 1600)
    v = decide(_ev(hi=(0.05, 0.03, 0.02, 0.012, 0.008), lo=(0.0,) * 5, n=n, max_size=800))
    assert (v.decision, v.why, v.n_star) == (INCONCLUSIVE, NEXT_SIZE, None)
    v = decide(_ev(hi=(0.001, 0.001), lo=(0.0, 0.0), n=(100, 200), max_size=200))
    assert (v.decision, v.why) == (INCONCLUSIVE, FEW_SIZES)


# ----------------------------------------------------------------------------- item CSV


def test_read_item_csv_and_analyze_it(tmp_path):
    items = _ladder_items(RISE_THEN_FLAT, zero=0.3, m=50)
    p = tmp_path / "items.csv"
    lines = ["tier,metric,size,seed,item,score"]
    lines += [f"{i.tier},{i.metric},{i.size},{i.seed},{i.item},{i.score:g}" for i in items]
    p.write_text("\n".join(lines) + "\n")
    got = read_curve_table(p)
    assert got.records == () and len(got.items) == len(items)
    assert got.items[0] == items[0]
    a = analyze(items=got.items, direction="higher", n_boot=300, seed=3)
    b = analyze(items=items, direction="higher", n_boot=300, seed=3)
    assert to_json(a) == to_json(b)
    # the old shape still reads, size 0 included
    q = tmp_path / "old.csv"
    q.write_text("size,seed,value\n0,0,0.3\n100,0,0.5\n200,0,0.6\n")
    assert read_curve_table(q).records[0] == Record("all", 0, 0, "value", 0.3)


@pytest.mark.parametrize(
    "text,line,column,expected",
    [
        ("size,seed,item\n100,0,q1\n200,0,q1\n", 1, "score", "missing required column"),
        ("size,seed,item,score\n100,0,q1,1\n200,0,q1,yes\n", 3, "score", "expected a number"),
        ("size,seed,item,score\n100,0,q1,1\n200,0,,1\n", 3, "item", "empty cell"),
        ("size,seed,item,score\n100,0,q1,1\n100,0,q1,0\n", 3, "item", "duplicate row"),
        ("size,seed,item,score\n100,0,q1,1\n-1,0,q2,0\n", 3, "size", "size >= 0"),
        ("size,seed,item,score\n0,0,q1,1\n0,0,q2,0\n", 3, "size", "only size 0"),
        ("size,seed,item,score\n100,0,q1,nan\n200,0,q1,1\n", 2, "score", "finite number"),
    ],
)
def test_malformed_item_csv_names_file_line_and_column(tmp_path, text, line, column, expected):
    p = tmp_path / "bad_items.csv"
    p.write_text(text)
    with pytest.raises(CurveInputError) as err:
        read_curve_table(p)
    msg = str(err.value)
    assert str(p) in msg and f"line {line}" in msg and f"column '{column}'" in msg, msg
    assert expected in msg
