"""A finished sweep's decisions twice: from its per-item scores (paired across sizes, as `loop
report` decides) and from its per-size means alone (each size's score as independent binomial
noise over its items, the analysis before per-item scores were kept).

Reads the store of a recipe whose sweep has run, in the folder the sweep ran in; trains nothing.
Prints one row per tier and metric: the zero-shot score, the score per size, then per analysis
the decision, the 90% interval of the gain from doubling the largest size (delta2) and the
certified epsilon (the smallest gain bound the data certifies).

    python benchmarks/paired_vs_unpaired.py quartz.yaml
"""

from __future__ import annotations

import argparse
import math

from loop import curves, driver, track
from loop.prepare import prepare
from loop.recipe import load_recipe


def _pts(x: float | None, higher: bool) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.1f}" if higher else f"{x:.4f}"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("recipe")
    a = ap.parse_args()
    recipe = load_recipe(a.recipe)
    prep = prepare(recipe)
    tr = track.tracker(recipe, prep.pool_digest)
    runs = list(track.done_cells(track.runs_of(tr)).values())
    if not runs:  # a store written by another version: read the cells under their own digests
        found = tr.client.search_runs(
            [tr.exp_id], "tags.`loop.tier` != ''", order_by=["start_time DESC"], max_results=1
        )
        if found:
            tags = found[0].data.tags
            rd, pd = tags["loop.recipe_digest"], tags["loop.pool_digest"]
            print(f"cells read under the store's own digests (recipe {rd}, pool {pd})")
            runs = list(track.done_cells(track.cell_runs(tr.client, tr.exp_id, rd, pd)).values())
    n_val = len(prep.val)
    default_items = min(recipe.eval.samples or n_val, n_val)
    records, items, direction, eval_size = driver._records(recipe, runs, default_items, tr.client)
    common = dict(
        direction=direction,
        epsilon=recipe.saturation.epsilon,
        confidence=recipe.saturation.confidence,
        eval_size=eval_size or None,
        max_items=n_val,
    )
    paired = curves.analyze(records, items=items, **common)
    unpaired = curves.analyze(records, **common)
    print(
        f"{recipe.name}: {len(runs)} finished runs, {len(items):,} item scores, {n_val} validation items"
    )
    print(
        "scores: accuracy-like metrics in points (percent), val_loss as is; delta2 = gain from doubling"
    )
    for p in paired.curves:
        u = next(c for c in unpaired.curves if (c.tier, c.metric) == (p.tier, p.metric))
        higher = p.accuracy_like  # shown in points
        sizes = ", ".join(f"{s.size}: {_pts(s.mean, higher)}" for s in p.sizes if s.size > 0)
        print(f"\n{p.tier} / {p.metric}  zero-shot {_pts(p.zero_shot, higher)}; {sizes}")
        for name, c in (("paired  ", p), ("unpaired", u)):
            lo, hi = c.delta2_at_max_ci if c.delta2_at_max_ci else (None, None)
            scale, f = (100, ".2f") if higher else (1, ".4f")
            d2 = "—" if lo is None else f"[{scale * lo:{f}}, {scale * hi:{f}}]"
            cert = "—" if c.certified_epsilon is None else f"{scale * c.certified_epsilon:{f}}"
            print(
                f"  {name} {c.decision:15s} delta2 90% CI {d2:18s} certified epsilon {cert:>6s}"
                f"  ({c.bootstrap})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
