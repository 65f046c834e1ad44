"""Pool loading speed: `load_pool` on a 100k-record mixed-format JSONL pool, before and now, vs a
bare json.loads loop.

    .venv/bin/python benchmarks/pool_load.py [--records 100000] [--repeat 5] [--before c581b5b]

Three readers of the same file, timed in interleaved rounds (best round of each reported):

- `json.loads loop`: reads the file line by line with `json.loads` and does nothing else, so a
  ratio to it is what reading, format detection, validation, normalization and content ids cost.
- `load_pool before`: `loop/pool.py` and `loop/example.py` as they were at `--before` (read with
  `git show`, run as private modules beside today's recipe and provenance code): the json module
  for every line, ids through `json.dumps`, the garbage collector on.
- `load_pool now`: today's `load_pool`.

Before timing, both loaders read the pool once and their Examples are compared field by field
(ids, messages, source, format, meta, with int/float told apart): the run stops if they differ.
Wall-clock and CPU (process) time are both given: on a machine shared with other jobs the CPU
figure is the steadier one, the wall figure is what a user waits.

Then (unless --no-parts) each part the change touched, timed alone on the same pool: reading a
line, writing the id bytes, hashing them, the next line with 8 KiB and 1 MiB reads, the old
loader with the garbage collector on and off, and the young-generation pass a load would leave.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import types
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

import loop.example
import loop.provenance  # noqa: F401  (imported before the swap in load_before, as load_pool would)
from loop.pool import load_pool
from loop.recipe import PoolConfig

ROOT = Path(__file__).resolve().parents[1]
# main before pool loading went to msgspec, one sha256 over msgspec bytes and a paused collector
BEFORE = "c581b5b"
GOAL = 150_000  # records/s

WORDS = [
    "the",
    "a",
    "data",
    "model",
    "answer",
    "question",
    "quickly",
    "small",
    "large",
    "token",
    "learn",
    "curve",
    "pool",
    "tier",
]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def make_pool(path: Path, n: int, seed: int = 0) -> None:
    """n records, a third in each format, with a task label and an extra field."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            kind = i % 3
            if kind == 0:
                rec = {
                    "instruction": _text(rng, 5, 30),
                    "input": _text(rng, 0, 20),
                    "output": _text(rng, 10, 80),
                }
            elif kind == 1:
                rec = {
                    "messages": [
                        {"role": "system", "content": "You are helpful."},
                        {"role": "user", "content": _text(rng, 5, 30)},
                        {"role": "assistant", "content": _text(rng, 10, 80)},
                    ]
                }
            else:
                rec = {"prompt": _text(rng, 5, 30), "completion": _text(rng, 10, 80)}
            rec["task"] = rng.choice(["qa", "math", "chat"])
            rec["origin"] = f"gen-{i}"
            f.write(json.dumps(rec) + "\n")


def baseline(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        for line in f:
            json.loads(line)
            n += 1
    return n


def load_before(rev: str) -> Callable:
    """`load_pool` as it was at `rev`: its loop/example.py and loop/pool.py from git, run as
    private modules (`from loop.example import ...` in the old pool.py gets the old example)."""

    def module(name: str, path: str) -> types.ModuleType:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        mod = types.ModuleType(name)
        mod.__file__ = f"{rev}:{path}"
        sys.modules[name] = mod  # dataclasses look their module up while the class is made
        exec(compile(text, mod.__file__, "exec"), mod.__dict__)
        return mod

    old_example = module("_before_example", "loop/example.py")
    sys.modules["loop.example"] = old_example
    try:
        old_pool = module("_before_pool", "loop/pool.py")
    finally:
        sys.modules["loop.example"] = loop.example
    return old_pool.load_pool


def snapshot(examples) -> bytes:
    """Every field of every Example, as JSON (an int and a float with equal values differ)."""
    return msgspec.json.encode([ex.to_dict() for ex in examples])


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, CPU s) of one call; what it returns is dropped outside the timing."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del out
    gc.collect()
    return wall, cpu


def cpu_best(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU seconds of `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def part_rows(path: Path, cfg: PoolConfig, repeat: int) -> list[tuple[str, float]]:
    """(what, best CPU ns per record) for each part the change touched, alone."""
    lines = path.read_bytes().splitlines()
    n = len(lines)
    examples = load_pool(cfg).examples
    pairs = [
        [[m.role, unicodedata.normalize("NFC", m.content).strip()] for m in ex.messages]
        for ex in examples
    ]
    payloads = [msgspec.json.encode(p) for p in pairs]

    def ns(fn: Callable[[], object], count: int) -> float:
        return cpu_best(fn, repeat) / count * 1e9

    def lines_with(buffering: int) -> None:
        with path.open("rb", buffering=buffering) as f:
            for _ in f:
                pass

    def each(fn: Callable[[Any], object], items: list) -> Callable[[], None]:
        def run() -> None:
            for item in items:
                fn(item)

        return run

    def dumps(p: list) -> bytes:
        return json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    gc.disable()  # each part alone: the collector is measured apart
    try:
        return [
            (
                "read a line: decode + json.loads",
                ns(each(lambda b: json.loads(b.decode()), lines), n),
            ),
            ("read a line: msgspec.json.decode", ns(each(msgspec.json.decode, lines), n)),
            ("id bytes: json.dumps(..., ensure_ascii=False)", ns(each(dumps, pairs), n)),
            ("id bytes: msgspec.json.encode", ns(each(msgspec.json.encode, pairs), n)),
            (
                "id: sha256 of those bytes",
                ns(each(lambda b: hashlib.sha256(b).hexdigest(), payloads), n),
            ),
            ("next line, 8 KiB reads", ns(lambda: lines_with(8192), n)),
            ("next line, 1 MiB reads", ns(lambda: lines_with(1 << 20), n)),
        ]
    finally:
        gc.enable()


def parts(path: Path, cfg: PoolConfig, before: Callable | None, repeat: int) -> None:
    """Where the time went: each change measured alone on the same pool (CPU time)."""
    rows = part_rows(path, cfg, repeat)
    gc.collect()
    print("\nwhere the time went, each part alone, collector off (best CPU ns per record):")
    for label, value in rows:
        print(f"  {label:46} {value:7,.0f}")
    if before is not None:
        on = cpu_best(lambda: before(cfg), 1)
        gc.disable()
        try:
            off = cpu_best(lambda: before(cfg), 1)
        finally:
            gc.enable()
        print(
            f"  load_pool before, collector on / off: {on:.2f} s / {off:.2f} s CPU "
            f"({1 - off / on:.0%} of its time in the collector)"
        )
    gc.disable()  # load_pool leaves a disabled collector alone: its objects stay young
    try:
        kept = load_pool(cfg)
        start = time.process_time()
        gc.collect(0)  # the pass that switching the collector back on would start
        young = time.process_time() - start
    finally:
        gc.enable()
    del kept
    print(
        f"  one young-generation pass over a loaded pool (freeze + unfreeze skip it): {young:.2f} s"
    )


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPU cores ({model}), Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds; the best is reported")
    ap.add_argument("--before", default=BEFORE, help="git revision of the 'before' loader")
    ap.add_argument(
        "--no-parts", dest="parts", action="store_false", help="skip the per-part timings"
    )
    args = ap.parse_args()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    niceness = os.nice(0)
    print(f"$ {'nice -n ' + str(niceness) + ' ' if niceness else ''}{python} {' '.join(sys.argv)}")
    print(f"# date: {now}; machine: {machine()}; shared with other jobs")
    print(f"# load average before: {loadavg()}")
    try:
        before = load_before(args.before)
    except (subprocess.CalledProcessError, OSError, SyntaxError, ImportError) as exc:
        print(f"# load_pool before: not available ({type(exc).__name__}: {exc}); timing now only")
        before = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.jsonl"
        make_pool(path, args.records)
        size_mb = path.stat().st_size / 1e6
        cfg = PoolConfig(paths=(str(path),), task_field="task")
        result = load_pool(cfg)
        n = len(result.examples)
        assert n == baseline(path) == args.records, (n, args.records)
        print(f"pool: {n:,} records, {size_mb:.1f} MB, formats {result.counts_by_format}")
        if before is not None:
            same = snapshot(before(cfg).examples) == snapshot(result.examples)
            print(f"before and now give the same Examples (ids, messages, meta): {same}")
            if not same:
                raise SystemExit("the loaders disagree: not timing them")
        del result
        runs: dict[str, Callable[[], object]] = {"json.loads loop": lambda: baseline(path)}
        if before is not None:
            runs[f"load_pool before ({args.before})"] = lambda: before(cfg)
        runs["load_pool now"] = lambda: load_pool(cfg)
        best = {name: (float("inf"), float("inf")) for name in runs}
        for _ in range(args.repeat):
            for name, fn in runs.items():
                wall, cpu = timed(fn)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        if args.parts:
            parts(path, cfg, before, args.repeat)
    base_wall, base_cpu = best["json.loads loop"]
    print(
        f"\nbest of {args.repeat} interleaved rounds     wall s   records/s    CPU s   records/s"
        "   x json.loads (wall, CPU)"
    )
    for name, (wall, cpu) in best.items():
        print(
            f"{name:32} {wall:7.2f} {n / wall:11,.0f}  {cpu:7.2f} {n / cpu:11,.0f}"
            f"   {wall / base_wall:5.2f}  {cpu / base_cpu:5.2f}"
        )
    now_wall, now_cpu = best["load_pool now"]
    if before is not None:
        old_wall, old_cpu = best[f"load_pool before ({args.before})"]
        print(
            f"speed-up now / before: {old_wall / now_wall:.2f}x wall, {old_cpu / now_cpu:.2f}x CPU"
        )
    for label, secs in (("wall", now_wall), ("CPU", now_cpu)):
        rate = n / secs
        verdict = "reached" if rate >= GOAL else f"not reached ({rate / GOAL:.0%} of it)"
        print(f"goal {GOAL:,} records/s ({label}): {verdict}")
    print(f"# load average after: {loadavg()}")


if __name__ == "__main__":
    main()
