"""The demo's figures, kept as files: store a `make demo` run under benchmarks/results/demo/, and
print the README's demo table and decisions from what is stored there.

    (time make demo) 2>&1 | tee /tmp/demo.log               # on a fresh clone, empty venv
    .venv/bin/python benchmarks/demo_results.py store /tmp/demo.log   # copy outputs + machine info
    .venv/bin/python benchmarks/demo_results.py readme      # the README's table, from the stored files

`store` copies the sweep's `summary.json` and curve plots from `mlruns/work/demo/report/`, the
console log (cleaning score, decisions, the `real` line of `time`), and writes `run.json` with the
date, the machine (cores, device) and the wall time read from the log. `readme` prints exactly
the Markdown that the README's demo section holds; `tests/test_readme.py` checks that they match.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo"
REPORT = ROOT / "mlruns" / "work" / "demo" / "report"

_DECISION_WORDS = {
    "saturated": "saturated",
    "more_data_pays": "more data pays",
    "inconclusive": "inconclusive",
}


def _metric_words(metric: str) -> str:
    return {
        "eval.json_match": "exact match",
        "eval.greedy_match": "exact match",
        "val_loss": "val loss",
    }.get(metric, metric)


def _value(metric: str, x: float | None) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}%" if metric.startswith("eval.") else f"{x:.3f}"


def size_table(summary: dict) -> str:
    """Per tier and metric, the mean score at every size run (0 = the untrained model)."""
    curves = summary["curves"]
    sizes = sorted(
        {s["size"] for tier in curves.values() for c in tier.values() for s in c["sizes"]}
        | {0 for tier in curves.values() for c in tier.values() if c.get("zero_shot") is not None}
    )
    head = "| examples | " + " | ".join("0 (untrained)" if n == 0 else str(n) for n in sizes) + " |"
    lines = [head, "|---|" + "---|" * len(sizes)]
    metrics = sorted(
        {m for tier in curves.values() for m in tier}, key=lambda m: (m == "val_loss", m)
    )
    for metric in metrics:
        for tier in sorted(curves, key=lambda t: (t == "raw", t)):
            c = curves[tier].get(metric)
            if c is None:
                continue
            at = {s["size"]: s["mean"] for s in c["sizes"]}
            if c.get("zero_shot") is not None:
                at[0] = c["zero_shot"]
            cells = " | ".join(_value(metric, at.get(n)) for n in sizes)
            lines.append(f"| `{tier}` {_metric_words(metric)} | {cells} |")
    return "\n".join(lines)


def decision_lines(summary: dict) -> str:
    """One row per tier and metric: the decision, n* (or the next size), and the tool's words."""
    lines = ["| tier | metric | decision | n* / next size |", "|---|---|---|---|"]
    words = []
    for tier in sorted(summary["curves"], key=lambda t: (t == "raw", t)):
        for metric, c in sorted(
            summary["curves"][tier].items(), key=lambda kv: kv[0] == "val_loss"
        ):
            decision = _DECISION_WORDS.get(c["decision"], c["decision"])
            if c["decision"] == "saturated" and c.get("n_star"):
                size = f"n* = {c['n_star']}"
            elif c.get("next_size"):
                size = f"next {c['next_size']}"
            else:
                size = "—"
            lines.append(f"| {tier} | {metric} | {decision} | {size} |")
            words.append(f"- `{tier}` / `{metric}`: *{c['summary']}*")
    return "\n".join(lines) + "\n\n" + "\n".join(words)


def quality_lines(summary: dict) -> str:
    """Quality against quantity: each tier's plateau with its interval, and the exchange rates."""
    conf = f"{100 * summary.get('confidence', 0.9):.0f}%"
    lines = []
    for tier in sorted(summary["curves"], key=lambda t: (t == "raw", t)):
        for metric, c in sorted(
            summary["curves"][tier].items(), key=lambda kv: kv[0] == "val_loss"
        ):
            if c.get("plateau") is not None and c.get("plateau_ci"):
                lo, hi = c["plateau_ci"]
                lines.append(
                    f"- `{tier}` / `{metric}` plateau: {_value(metric, c['plateau'])} "
                    f"({conf} CI {_value(metric, lo)}–{_value(metric, hi)})"
                )
    lines += [f"- *{e['summary']}*" for e in summary.get("exchanges", [])]
    return "\n".join(lines)


def readme_block(results: Path = RESULTS) -> str:
    summary = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    block = size_table(summary) + "\n\n" + decision_lines(summary)
    quality = quality_lines(summary)
    return block + ("\n\nQuality against quantity:\n\n" + quality if quality else "")


def _wall(log: str) -> str | None:
    m = re.search(r"^real\s+(\d+)m([\d.]+)s", log, flags=re.M)
    return f"{int(m.group(1))} min {round(float(m.group(2)))} s" if m else None


def store(log_path: Path, results: Path = RESULTS) -> None:
    import torch

    results.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPORT / "summary.json", results / "summary.json")
    for png in REPORT.glob("*.png"):
        shutil.copy2(png, results / png.name)
    log = log_path.read_text(encoding="utf-8", errors="replace")
    (results / "demo.log").write_text(log, encoding="utf-8")
    run = {
        "command": "(time make demo) 2>&1 | tee demo.log  # fresh clone, empty venv",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cores": os.cpu_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "wall_time": _wall(log),
    }
    (results / "run.json").write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    print(f"stored in {results}: {', '.join(sorted(p.name for p in results.iterdir()))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("store", help="copy a finished demo's outputs under benchmarks/results/demo")
    s.add_argument("log", type=Path, help="the console log of `(time make demo)`")
    sub.add_parser("readme", help="print the README's demo table from the stored files")
    args = ap.parse_args()
    if args.cmd == "store":
        store(args.log)
    else:
        sys.stdout.write(readme_block() + "\n")


if __name__ == "__main__":
    main()
