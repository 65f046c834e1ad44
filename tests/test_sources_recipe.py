"""recipes/sources.yaml and the data `benchmarks/source_comparison.py` writes for it agree."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from loop.prepare import prepare
from loop.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import source_comparison  # noqa: E402


def test_both_sources_hold_the_largest_size_after_cleaning_and_expert_only_validation(
    tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert source_comparison.main() == 0
    raw = yaml.safe_load((ROOT / "recipes" / "sources.yaml").read_text(encoding="utf-8"))
    assert raw["model"] == {"name": "smollm2-135m-instruct"}
    assert [e["name"] for e in raw["eval"]["evaluators"]] == ["greedy_match"]
    raw["model"] = {"name": "tiny-random"}  # the cleaning is the same; no weights needed
    recipe = parse_recipe(raw)
    prep = prepare(recipe, rank=False)
    # the product task: one key, read off the message
    assert all(ex.messages[-1].content.startswith('{"product": ') for ex in prep.val)
    assert len(prep.val) == recipe.clean.split.max_validation == 160
    assert {ex.meta["source"] for ex in prep.val} == {"expert"}
    largest = max(recipe.subsets.sizes)
    assert largest >= 64 and len(recipe.subsets.sizes) >= 3
    assert set(prep.tier_sizes) == {"expert", "synthetic"}
    assert min(prep.tier_sizes.values()) >= largest, prep.tier_sizes
    for tier, pool in prep.tiers.items():
        assert {ex.meta["source"] for ex in pool} == {tier}
    costs = {s.name: s.cost_per_example for s in recipe.pool.sources}
    assert costs == {"expert": 2.0, "synthetic": 0.02}
