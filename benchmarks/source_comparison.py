"""Two sources of one task, compared on the packaged model: writes the data `recipes/sources.yaml` reads.

The task is the demo's (`loop.demo`, `task="product"`): which catalogue product a short
customer-support message is about, answered as `{"product": "Nimbus X2"}`. Source `expert`: 540
records with no defect (hand-checked labels). Source `synthetic`: 600 records of which 30% carry
a plausible but wrong product name (`wrong_label`, the defect no cleaning step can see), as a
cheap generator would produce. Both come from the demo's generator with different seeds; nothing
else differs. The recipe holds 160 validation items out of `expert` only, so both sources are
scored on trusted answers, and prices them at $2.00 and $0.02 an example (illustrative, not
measured: expert-written examples cost dollars, generated ones cents). After validation both
sources keep more than the largest size run (128).

    python benchmarks/source_comparison.py            # writes mlruns/work/sources-data/
    loop sweep recipes/sources.yaml                   # 2 sources x 4 sizes + zero-shot
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from loop.demo import DEFAULT_RATES, write_demo_pool

OUT = Path("mlruns/work/sources-data")
NONE = {k: 0.0 for k in DEFAULT_RATES}
TASK = "product"
SOURCES = (
    # name, records, generator seed, defect rates
    ("expert", 540, 101, NONE),
    ("synthetic", 600, 202, {**NONE, "wrong_label": 0.3}),
)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows, seed, rates in SOURCES:
        pool = write_demo_pool(OUT / name, rows=rows, seed=seed, rates=rates, task=TASK)
        shutil.copyfile(pool.paths[0], OUT / f"{name}.jsonl")
        kinds: dict[str, int] = {}
        for p in pool.truth.values():
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        print(f"{name}: {rows} records -> {OUT / f'{name}.jsonl'} ({kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
