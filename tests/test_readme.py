"""The README's demo figures are the stored outputs of a real run, not typed by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from demo_results import RESULTS, readme_block  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_demo_table_and_decisions_match_the_stored_summary():
    block = readme_block()
    assert block in README, "README's demo section differs from `benchmarks/demo_results.py readme`"


def test_readme_demo_wall_time_and_cleaning_score_come_from_the_stored_run():
    run = json.loads((RESULTS / "run.json").read_text(encoding="utf-8"))
    assert run["wall_time"] and run["wall_time"] in README
    log = (RESULTS / "demo.log").read_text(encoding="utf-8")
    score = next(line for line in log.splitlines() if line.startswith("removal precision"))
    assert score in README


def test_stored_summary_is_a_real_sweep():
    summary = json.loads((RESULTS / "summary.json").read_text(encoding="utf-8"))
    tiers = summary["curves"]
    assert {"clean", "raw"} <= set(tiers)
    for tier in tiers.values():
        for curve in tier.values():
            assert len(curve["sizes"]) >= 3 and curve["decision"] in (
                "saturated",
                "more_data_pays",
                "inconclusive",
            )


def test_readme_sources_answer_is_the_stored_report():
    """The two-source answer in "Where the data comes from" is quoted from the stored report."""
    stored = ROOT / "benchmarks" / "results" / "sources"
    report = (stored / "report.md").read_text(encoding="utf-8")
    section = README[README.index("`recipes/sources.yaml` is this comparison") :]
    start = section.index("```text\n") + len("```text\n")
    lines = section[start : section.index("\n```", start)].splitlines()
    assert len(lines) >= 4
    for line in lines:
        assert f"- {line}\n" in report, line
    table = section[section.index("| tier | training examples") : section.index("\n\n")]
    assert table in report
    log = (stored / "sweep.log").read_text(encoding="utf-8")
    assert "cells: 8 ran, 0 already done, 0 failed" in log and "real\t55m" in log
    done = [line for line in log.splitlines() if line.startswith("✓ [")]
    assert len(done) == 8 and any("synthetic-n128-s0" in line for line in done)
