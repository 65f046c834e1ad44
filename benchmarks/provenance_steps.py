"""Throughput of the copyright and freshness steps, against the `harmful` step in the same run.

    .venv/bin/python benchmarks/provenance_steps.py --rows 50000

Synthetic English-like rows of ~75 words (the shape `benchmarks/clean_pool.py` uses), 1% with
a planted notice, 1% with a planted 30-word span of one of 200 protected texts of ~2,000 words,
half of them dated. Prints rows/s per step and the ratio to `harmful` (a regex pass over every
record, the closest existing step), and checks that every planted record was caught.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from loop.clean import copyright, freshness, harmful
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import CopyrightConfig, DeprecatedTerm, FreshnessConfig, HarmfulConfig

SYLLABLES = [a + b for a in "bcdfghjklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def text(rng: random.Random, n: int) -> str:
    return " ".join(word(rng) for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    rng = random.Random(0)
    folder = Path(tempfile.mkdtemp()) / "protected"
    folder.mkdir()
    books = [text(rng, 2000) for _ in range(200)]
    for i, b in enumerate(books):
        (folder / f"book{i}.txt").write_text(b)
    rows, planted_notice, planted_span = [], set(), set()
    for i in range(args.rows):
        prompt, answer = text(rng, 25), text(rng, 50)
        if i % 100 == 0:
            answer += " All rights reserved."
            planted_notice.add(i)
        elif i % 100 == 50:
            words = rng.choice(books).split()
            start = rng.randrange(len(words) - 30)
            answer = " ".join(words[start : start + 30]) + " " + answer
            planted_span.add(i)
        meta = {"date": f"20{rng.randint(15, 25)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}
        rows.append(
            make_example(
                [Message("user", prompt), Message("assistant", answer)],
                source=f"b:{i}",
                format="chat",
                meta=meta if i % 2 else {},
            )
        )
    ctx = StepContext()
    timings = {}
    for name, fn in (
        ("harmful", lambda: harmful.run(rows, HarmfulConfig(), ctx)),
        ("copyright (notices)", lambda: copyright.run(rows, CopyrightConfig(), ctx)),
        (
            "copyright (notices + 200 protected texts)",
            lambda: copyright.run(rows, CopyrightConfig(protected=str(folder)), ctx),
        ),
        (
            "freshness (not_before + 2 terms)",
            lambda: freshness.run(
                rows,
                FreshnessConfig(
                    not_before="2020-01-01",
                    deprecated=(DeprecatedTerm("bababa"), DeprecatedTerm("zouzou", regex=True)),
                ),
                ctx,
            ),
        ),
    ):
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        if name.startswith("copyright (notices +"):
            caught = {d.index for d in out.drops}
            assert planted_notice | planted_span <= caught, "a planted record was missed"
            extra = len(caught - planted_notice - planted_span)
            print(f"  planted caught: {len(planted_notice | planted_span)}, other drops: {extra}")
    base = args.rows / timings["harmful"]
    for name, seconds in timings.items():
        rate = args.rows / seconds
        print(f"{name}: {rate:,.0f} rows/s ({seconds:.2f} s; {rate / base:.2f}x harmful)")


if __name__ == "__main__":
    main()
