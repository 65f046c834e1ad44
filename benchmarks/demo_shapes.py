"""What the analysis answers for a few demo-like curve shapes, on simulated item scores.

Each shape is a clean-tier exact-match curve (size -> accuracy) like one the demo measured
(benchmarks/results/demo/variants.md). Items get a fixed latent difficulty, shared by every
cell, plus a little per-cell noise, so cells are correlated item by item as real ones are; one
seed per size, 160 items, epsilon 3 points, as in recipes/demo.yaml.

    .venv/bin/python benchmarks/demo_shapes.py   # ~5 s; output: benchmarks/results/demo/shapes.txt
"""

from __future__ import annotations

import numpy as np

from loop.curves import ItemScore, analyze

ITEMS = 160
SHAPES = {
    "section 7 (min 12 steps)": ([0, 8, 16, 32, 64, 128], [0, 0.781, 0.769, 0.888, 0.912, 0.912]),
    "section 7, n=8 at 70%": ([0, 8, 16, 32, 64, 128], [0, 0.70, 0.769, 0.888, 0.912, 0.912]),
    "section 7, n=8 at 60%": ([0, 8, 16, 32, 64, 128], [0, 0.60, 0.769, 0.888, 0.912, 0.912]),
    "section 7, n=8 at 50%": ([0, 8, 16, 32, 64, 128], [0, 0.50, 0.769, 0.888, 0.912, 0.912]),
    "smooth, flat from 32": ([0, 8, 16, 32, 64, 128], [0, 0.80, 0.87, 0.91, 0.92, 0.92]),
    "still rising": ([0, 8, 16, 32, 64, 128], [0, 0.60, 0.70, 0.78, 0.85, 0.90]),
}


def items_for(sizes, accs, draw: int, noise: float = 0.08) -> list[ItemScore]:
    rng = np.random.default_rng(draw)
    u = rng.uniform(size=ITEMS)  # item difficulty, the same in every cell
    out = []
    for size, acc in zip(sizes, accs, strict=True):
        z = u + rng.normal(0, noise, ITEMS)
        right = z < np.quantile(z, acc) if acc > 0 else np.zeros(ITEMS, bool)
        out += [
            ItemScore("clean", size, 0, "eval.greedy_match", f"i{i}", float(r))
            for i, r in enumerate(right)
        ]
    return out


def main() -> None:
    print(f"{'shape':28} draw  decision      n*   certified (points)  train sd")
    for name, (sizes, accs) in SHAPES.items():
        for draw in range(3):
            a = analyze(
                items=items_for(sizes, accs, draw),
                direction="higher",
                epsilon=0.03,
                max_items=ITEMS,
            )
            c = a.curves[0]
            cert = "—" if c.certified_epsilon is None else f"{100 * c.certified_epsilon:.1f}"
            n_star = "—" if c.n_star is None else str(c.n_star)
            print(
                f"{name:28} {draw:4}  {c.decision:12} {n_star:>4}   {cert:>8}            {100 * c.noise.train_sd:.1f}"
            )


if __name__ == "__main__":
    main()
