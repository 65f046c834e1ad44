"""Decisions on simulated item-level sweeps whose truth is known: paired vs unpaired analysis.

    flock /tmp/loop-heavy.lock .venv/bin/python benchmarks/decisions.py [--cases 300] [--n-boot 500]

The simulation behaves like real evaluations (item response theory, as in tinyBenchmarks):

- items of spread difficulty d ~ N(0, 1.5), a fraction never answerable (scored at the guess
  rate), a guess rate of 0 (generation) or 0.25 (4-way choice);
- ability rising with n along a saturating law with a pre-learned size (Lin et al. 2024):
  theta(n) = theta0 + A * (1 - (1 + n / n_l)^-beta); P(correct) = g + (1 - g) * sigmoid(theta - d).
  Small n_l rises early and flattens; large n_l starts flat and rises late; A = 0 never rises;
- per-cell training noise on theta; outcomes correlated across cells beyond difficulty (a
  Gaussian copula with a per-item latent, rho = 0.6): an item one cell gets right, the others
  tend to get right too;
- a zero-shot cell (size 0, theta0, no training noise) on the same items as every trained cell.

Designs: 40, 200, 1000 or 2000 items, 1-3 seeds, epsilon 1, 2 or 5 points, sizes 16..512.

Truth, from the population curve (expectation over items and training noise):
- more_data_pays: the true delta2 at the largest size is above epsilon;
- saturated: the true curve has risen above zero-shot by more than epsilon, and from some size run
  onward every later doubling gains less than epsilon (checked up to 1000x the largest size);
- neither (not learning yet, or rising again later): only "inconclusive" is right.

What the design can carry: 200 fresh replicates of the same design (new
items, new training noise); an oracle that knows the sampling spread of two simple paired
statistics, the slope of the score on log2 n over the last 3 sizes (T) and the rise of the
largest size over zero-shot (R), carries `saturated` when T + z*sd(T) < eps and R - z*sd(R) > eps
in most replicates, and `more_data_pays` when T - z*sd(T) > eps in most (z for 90%, one-sided).
Where the design carries the true call, only that call is right; where it does not, the true
call or "inconclusive" is right. The opposite call is confidently wrong.

Paired: `analyze(items=...)`, per-item scores. Unpaired: the same cells' means with
`eval_size=m` (each size independent, p(1-p)/m). Same decision rule, same seeds.

"Advice settles": each paired inconclusive call names the cheapest evidence (more items, more
seeds, the next size, or a mix) that its power calculation expects to settle it, or says that
nothing within reach would. Offered advice is applied to the design, which is simulated afresh
(new items, new training noise) and analysed again; settled = no longer inconclusive; settled
right = that new call is right. Open calls with no advice are counted apart.

The simulation's parameters were fixed before the first run and are not tuned to the goals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loop.curves import (  # noqa: E402
    INCONCLUSIVE,
    MORE_DATA_PAYS,
    SATURATED,
    ItemScore,
    Record,
    analyze,
)

NEITHER = "neither"
SIZES = (16, 32, 64, 128, 256, 512)
ITEMS = (40, 200, 1000, 2000)
SEEDS = (1, 2, 3)
EPS = (0.01, 0.02, 0.05)
CONF = 0.9
RHO = 0.6  # outcome correlation across cells beyond difficulty (per-item latent)
D_SD = 1.5  # spread of item difficulty
ORACLE_REPS = 200
MAX_ITEMS = 5000  # the validation set advice may ask for: a large but ordinary eval set
_POP = np.random.default_rng(12345).standard_normal(20000) * D_SD  # the item population
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)  # expectation over training noise


@dataclass(frozen=True)
class Case:
    kind: str
    theta0: float
    A: float
    n_l: float
    beta: float
    guess: float
    never: float
    train_sd: float
    items: int
    seeds: int
    epsilon: float
    sizes: tuple[int, ...] = SIZES


def theta(c: Case, n) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return c.theta0 + c.A * (1 - (1 + n / c.n_l) ** -c.beta)


def p_correct(c: Case, th, d) -> np.ndarray:
    return c.guess + (1 - c.guess) * special.expit(th - d)


def true_acc(c: Case, n: float) -> float:
    """Population accuracy at size n (n = 0: the base model, no training noise)."""
    ans = 1 - c.never
    if n == 0:
        return float(ans * p_correct(c, c.theta0, _POP).mean() + c.never * c.guess)
    th = float(theta(c, n))
    w = _GH_W / _GH_W.sum()
    p = sum(
        wi * p_correct(c, th + c.train_sd * xi, _POP).mean()
        for xi, wi in zip(_GH_X, w, strict=True)
    )
    return float(ans * p + c.never * c.guess)


def truth(c: Case) -> dict:
    sizes = c.sizes
    a0 = true_acc(c, 0)
    far = [sizes[0] * 2.0**k for k in range(int(math.log2(sizes[-1] * 1000 / sizes[0])) + 2)]
    acc = {n: true_acc(c, n) for n in far}
    d2 = {n: acc[2 * n] - acc[n] for n in far[:-1]}
    top = sizes[-1]
    d2_max = d2[float(top)]
    rise = acc[float(top)] - a0
    later_flat = any(max(d2[m] for m in d2 if m >= n) < c.epsilon for n in map(float, sizes))
    if d2_max > c.epsilon:
        state = MORE_DATA_PAYS
    elif rise > c.epsilon and later_flat:
        state = SATURATED
    else:
        state = NEITHER
    return {"state": state, "d2_max": d2_max, "rise": rise, "zero_shot": a0, "top": acc[float(top)]}


def simulate(c: Case, rng: np.random.Generator, reps: int = 1):
    """Per-item 0/1 outcomes: (reps, cells, items) and the cells' (size, seed)."""
    cells = [(0, 0)] + [(n, s) for n in c.sizes for s in range(c.seeds)]
    m = c.items
    d = rng.standard_normal((reps, m)) * D_SD
    never = rng.random((reps, m)) < c.never
    latent = rng.standard_normal((reps, 1, m))
    th = np.array([c.theta0 if n == 0 else float(theta(c, n)) for n, _ in cells])
    noise = np.array([0.0 if n == 0 else 1.0 for n, _ in cells])
    th_cell = th[None, :] + c.train_sd * noise[None, :] * rng.standard_normal((reps, len(cells)))
    p = p_correct(c, th_cell[:, :, None], d[:, None, :])
    p = np.where(never[:, None, :], c.guess, p)
    u = stats.norm.cdf(RHO * latent + math.sqrt(1 - RHO**2) * rng.standard_normal(p.shape))
    return (u < p).astype(float), cells


def oracle(c: Case, rng: np.random.Generator) -> dict:
    """Whether a rule that knows the sampling spread of T and R would clear epsilon."""
    cells = [(0, 0)] + [(n, s) for n in c.sizes for s in range(c.seeds)]
    # in chunks: 200 replicates of 5,000 items and 16 seeds would not fit in memory at once
    chunk = max(1, int(4e6 // (c.items * len(cells))))
    means = np.concatenate(
        [
            simulate(c, rng, min(chunk, ORACLE_REPS - i))[0].mean(2)
            for i in range(0, ORACLE_REPS, chunk)
        ]
    )  # (reps, cells)
    sizes = np.array(c.sizes, dtype=float)
    per_size = np.stack(
        [means[:, [i for i, (n, _) in enumerate(cells) if n == s]].mean(1) for s in c.sizes], 1
    )
    x = np.log2(sizes[-3:])
    T = np.polyfit(x, per_size[:, -3:].T, 1)[0]
    R = per_size[:, -1] - means[:, 0]
    z = stats.norm.ppf(CONF)
    sat = np.mean((T + z * T.std() < c.epsilon) & (R - z * R.std() > c.epsilon)) > 0.5
    pays = np.mean(T - z * T.std() > c.epsilon) > 0.5
    return {"carry_saturated": bool(sat), "carry_pays": bool(pays)}


def _inputs(c: Case, out: np.ndarray, cells):
    items, records = [], []
    for j, (n, s) in enumerate(cells):
        row = out[j]
        items.extend(ItemScore("t", n, s, "acc", f"q{i}", float(v)) for i, v in enumerate(row))
        records.append(Record("t", n, s, "acc", float(row.mean())))
    return items, records


def run(c: Case, rng: np.random.Generator, n_boot: int, seed: int):
    out, cells = simulate(c, rng)
    items, records = _inputs(c, out[0], cells)
    paired = analyze(
        items=items,
        direction="higher",
        epsilon=c.epsilon,
        max_items=MAX_ITEMS,
        n_boot=n_boot,
        seed=seed,
    ).curves[0]
    unpaired = analyze(
        records, direction="higher", epsilon=c.epsilon, eval_size=c.items, n_boot=n_boot, seed=seed
    ).curves[0]
    return paired, unpaired


def right(decision: str, t: dict, o: dict) -> bool:
    s = t["state"]
    if decision == INCONCLUSIVE:
        return not (
            (s == SATURATED and o["carry_saturated"]) or (s == MORE_DATA_PAYS and o["carry_pays"])
        )
    return decision == s


def wrong(decision: str, t: dict) -> bool:
    return decision != INCONCLUSIVE and decision != t["state"]


def draw_case(rng: np.random.Generator, kind: str) -> Case:
    common = dict(
        theta0=float(rng.uniform(-2.0, 0.0)),
        guess=float(rng.choice([0.0, 0.25])),
        never=float(rng.uniform(0.05, 0.25)),
        train_sd=float(rng.uniform(0.03, 0.12)),
        items=int(rng.choice(ITEMS)),
        seeds=int(rng.choice(SEEDS)),
        epsilon=float(rng.choice(EPS)),
    )
    A = float(rng.uniform(1.0, 3.0))
    if kind == "early":  # rises before / around the first sizes, flat by the end
        p = dict(
            A=A, n_l=float(np.exp(rng.uniform(np.log(2), np.log(20)))), beta=rng.uniform(0.6, 1.5)
        )
    elif kind == "mid":  # rises mid-range, flattening near the largest sizes
        p = dict(
            A=A, n_l=float(np.exp(rng.uniform(np.log(30), np.log(150)))), beta=rng.uniform(0.6, 1.5)
        )
    elif kind == "rising":  # still rising at the largest size
        p = dict(
            A=A,
            n_l=float(np.exp(rng.uniform(np.log(200), np.log(2000)))),
            beta=rng.uniform(0.3, 0.6),
        )
    elif kind == "flat_start":  # flat over the sizes run, rises later (pre-power phase)
        p = dict(
            A=A,
            n_l=float(np.exp(rng.uniform(np.log(2000), np.log(20000)))),
            beta=rng.uniform(1.0, 2.0),
        )
    else:  # flat: never learns
        p = dict(A=0.0, n_l=100.0, beta=1.0)
    p["beta"] = float(p["beta"])
    return Case(kind, **common, **p)


def follow(c: Case, settle) -> Case:
    """The design with the advice applied: every lever it names (items, seeds, a size)."""
    if settle.items:
        c = replace(c, items=int(settle.items))
    if settle.seeds:
        c = replace(c, seeds=int(settle.seeds))
    if settle.size:
        c = replace(c, sizes=tuple(sorted({*c.sizes, int(settle.size)})))
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rho",
        type=float,
        default=RHO,
        help=f"latent outcome correlation across cells beyond difficulty (default {RHO})",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decisions"))
    args = ap.parse_args()
    globals()["RHO"] = args.rho
    kinds = ("early", "mid", "rising", "flat_start", "flat")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = []
    for i in range(args.cases):
        kind = kinds[i % len(kinds)]
        c = draw_case(rng, kind)
        t = truth(c)
        o = oracle(c, np.random.default_rng([args.seed, i, 1]))
        pa, un = run(c, np.random.default_rng([args.seed, i, 2]), args.n_boot, i)
        row = {"case": asdict(c), "truth": t, "oracle": o}
        for name, cur in (("paired", pa), ("unpaired", un)):
            lo, hi = cur.delta2_at_max_ci or (math.nan, math.nan)
            row[name] = {
                "decision": cur.decision,
                "why": cur.why,
                "right": right(cur.decision, t, o),
                "wrong": wrong(cur.decision, t),
                "covered": bool(lo <= t["d2_max"] <= hi),
                "width": float(hi - lo),
                "certified_epsilon": cur.certified_epsilon,
                "settle": asdict(cur.settle) if cur.settle else None,
            }
        if pa.decision == INCONCLUSIVE and pa.settle is not None and pa.settle.likely:
            c2 = follow(c, pa.settle)
            t2 = truth(c2)
            o2 = oracle(c2, np.random.default_rng([args.seed, i, 3]))
            p2, _ = run(c2, np.random.default_rng([args.seed, i, 4]), args.n_boot, i)
            row["advice"] = {
                "kind": pa.settle.kind,
                "p_settle": pa.settle.p_settle,
                "decision": p2.decision,
                "settled": p2.decision != INCONCLUSIVE,
                "settled_right": p2.decision != INCONCLUSIVE and right(p2.decision, t2, o2),
            }
        rows.append(row)
    took = time.perf_counter() - t0
    text = report(rows, args, took)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:5.1f}% ({k}/{n})" if n else "   — (0/0)"


def item_correlation(seed: int = 99) -> float:
    """Item-level correlation of two trained cells' outcomes (adjacent sizes, one seed) in the
    simulation, for the reader to set beside a real sweep's (no real figure is stored here)."""
    c = Case("mid", -1.0, 2.0, 60.0, 1.0, 0.0, 0.15, 0.06, 2000, 1, 0.01)
    out, cells = simulate(c, np.random.default_rng(seed))
    a, b = cells.index((128, 0)), cells.index((256, 0))
    return float(np.corrcoef(out[0, a], out[0, b])[0, 1])


def report(rows: list[dict], args, took: float) -> str:
    lines = [
        "# benchmarks/decisions.py",
        f"command: {' '.join(sys.argv)}",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        f"cases: {len(rows)}, n_boot {args.n_boot}, oracle replicates {ORACLE_REPS}, "
        f"took {took:.0f} s",
        f"outcome correlation: rho {args.rho} (latent); item-level correlation between the cells "
        f"at 128 and 256 examples: {item_correlation():.2f}",
        "",
    ]
    states = Counter(r["truth"]["state"] for r in rows)
    lines.append("truth: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    car_s = sum(r["truth"]["state"] == SATURATED and r["oracle"]["carry_saturated"] for r in rows)
    car_p = sum(r["truth"]["state"] == MORE_DATA_PAYS and r["oracle"]["carry_pays"] for r in rows)
    lines.append(f"design carries the true call: saturated {car_s}, more_data_pays {car_p}")
    lines.append("")
    head = f"{'':44s} {'paired':>18s}   {'unpaired':>18s}   goal"
    lines.append(head)

    def line(label, fn, goal=""):
        cells = []
        for arm in ("paired", "unpaired"):
            k, n = fn(arm)
            cells.append(f"{_pct(k, n):>18s}")
        lines.append(f"{label:44s} {cells[0]}   {cells[1]}   {goal}")

    def count(pred, where=lambda r: True):
        return lambda arm: (
            sum(bool(pred(r, arm)) for r in rows if where(r)),
            sum(1 for r in rows if where(r)),
        )

    line("correct decision", count(lambda r, a: r[a]["right"]))
    line("confidently wrong", count(lambda r, a: r[a]["wrong"]), "<= 2%")
    sat = lambda r: r["truth"]["state"] == SATURATED  # noqa: E731
    line(
        "recall: saturated, where the design carries it",
        count(
            lambda r, a: r[a]["decision"] == SATURATED,
            lambda r: sat(r) and r["oracle"]["carry_saturated"],
        ),
        ">= 95%",
    )
    line(
        "recall: saturated, every truly saturated case",
        count(lambda r, a: r[a]["decision"] == SATURATED, sat),
        "paired >> unpaired",
    )
    pays = lambda r: r["truth"]["state"] == MORE_DATA_PAYS  # noqa: E731
    line(
        "recall: more data pays, where carried",
        count(
            lambda r, a: r[a]["decision"] == MORE_DATA_PAYS,
            lambda r: pays(r) and r["oracle"]["carry_pays"],
        ),
    )
    line(
        "recall: more data pays, every such case",
        count(lambda r, a: r[a]["decision"] == MORE_DATA_PAYS, pays),
    )
    line(
        "saturated called on a 'neither' case",
        count(lambda r, a: r[a]["decision"] == SATURATED, lambda r: r["truth"]["state"] == NEITHER),
    )
    line("delta2(max) 90% interval covers the truth", count(lambda r, a: r[a]["covered"]), ">= 85%")
    lines.append("")
    open_ = [r for r in rows if r["paired"]["decision"] == INCONCLUSIVE]
    adv = [r for r in rows if "advice" in r]
    none = [r for r in open_ if (r["paired"]["settle"] or {}).get("kind") == "none"]
    k = sum(r["advice"]["settled"] for r in adv)
    kr = sum(r["advice"]["settled_right"] for r in adv)
    lines.append(
        f"paired open calls: {len(open_)}; advice offered (the power calculation expects it to "
        f"settle the call): {len(adv)}; 'nothing within reach settles it': {len(none)}; "
        f"other (fewer than 3 sizes): {len(open_) - len(adv) - len(none)}"
    )
    lines.append("advice offered, followed in a fresh simulation of the new design:")
    lines.append(f"  settles it                    {_pct(k, len(adv))}   goal >= 80%")
    lines.append(f"  settles it with a right call  {_pct(kr, len(adv))}")
    if adv:
        mean_p = float(np.mean([r["advice"]["p_settle"] for r in adv]))
        lines.append(f"  the power calculation's own mean chance: {100 * mean_p:.1f}%")
    lines.append(f"  over every open call (no advice = not settled): {_pct(k, len(open_))}")
    by_kind: dict[str, list] = defaultdict(list)
    for r in adv:
        by_kind[r["advice"]["kind"]].append(r)
    for kind, rs in sorted(by_kind.items()):
        lines.append(
            f"  {kind:16s} advice: settles {_pct(sum(r['advice']['settled'] for r in rs), len(rs))}"
        )
    why = Counter(r["paired"]["why"] for r in open_)
    lines.append(
        "  paired open calls by why: " + ", ".join(f"{k} {v}" for k, v in why.most_common())
    )
    why_none = Counter(r["paired"]["why"] for r in none)
    lines.append(
        "  'nothing within reach' by why: "
        + ", ".join(f"{k} {v}" for k, v in why_none.most_common())
    )
    lines.append("")
    lines.append(
        "median width of the delta2(max) 90% interval, points (paired / unpaired, and the ratio):"
    )
    for m in ITEMS:
        for k in SEEDS:
            rs = [r for r in rows if r["case"]["items"] == m and r["case"]["seeds"] == k]
            if not rs:
                continue
            wp = float(np.median([100 * r["paired"]["width"] for r in rs]))
            wu = float(np.median([100 * r["unpaired"]["width"] for r in rs]))
            lines.append(
                f"  m={m:5d} seeds={k}  {wp:5.2f} / {wu:5.2f}  ({wp / wu:.2f})  n={len(rs)}"
            )
    lines.append("")
    lines.append("by simulated shape (paired / unpaired correct, paired decisions):")
    by = defaultdict(list)
    for r in rows:
        by[r["case"]["kind"]].append(r)
    for kind, rs in by.items():
        dec = Counter(r["paired"]["decision"] for r in rs)
        lines.append(
            f"  {kind:10s} n={len(rs):3d}  correct {_pct(sum(r['paired']['right'] for r in rs), len(rs))}"
            f" / {_pct(sum(r['unpaired']['right'] for r in rs), len(rs))}  {dict(dec)}"
        )
    lines.append("")
    lines.append("by items (paired / unpaired: recall over truly saturated, confidently wrong):")
    for m in ITEMS:
        rs = [r for r in rows if r["case"]["items"] == m]
        ss = [r for r in rs if sat(r)]
        lines.append(
            f"  m={m:5d}  recall {_pct(sum(r['paired']['decision'] == SATURATED for r in ss), len(ss))}"
            f" / {_pct(sum(r['unpaired']['decision'] == SATURATED for r in ss), len(ss))}"
            f"   wrong {_pct(sum(r['paired']['wrong'] for r in rs), len(rs))}"
            f" / {_pct(sum(r['unpaired']['wrong'] for r in rs), len(rs))}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
