from pathlib import Path

import pytest

from loop.recipe import (
    Cell,
    Ladder,
    RecipeError,
    expand_cells,
    ladder_sizes,
    load_recipe,
    parse_recipe,
    recipe_digest,
    reference_rows,
)

MINIMAL = {"name": "t", "pool": {"paths": ["pool.jsonl"]}}


def errors_of(data, **kw) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, **kw)
    return info.value.errors


def with_(section: str, value) -> dict:
    return {**MINIMAL, section: value}


def test_minimal_recipe_gets_defaults():
    r = parse_recipe(MINIMAL)
    assert r.model.name == "smollm2-135m-instruct"
    assert r.lora.target_modules == "all-linear"
    assert r.sizes == (32, 64, 128, 256)
    assert r.subsets.seeds == (0,)
    assert r.experiment == "t"


def test_unknown_key_with_suggestion():
    assert errors_of(with_("train", {"learnig_rate": 0.1})) == [
        "train.learnig_rate: unknown key (did you mean 'learning_rate'?); allowed: learning_rate, "
        "batch_size, grad_accum, max_length, budget, warmup_ratio, weight_decay, scheduler, "
        "logging_steps, eval_steps, completion_as_text"
    ]


def test_unknown_top_level_section():
    (err,) = errors_of({**MINIMAL, "trian": {}})
    assert err.startswith("trian: unknown key (did you mean 'train'?); allowed: name, description")


def test_wrong_type():
    assert errors_of(with_("train", {"batch_size": "eight"})) == [
        "train.batch_size: expected an integer, got 'eight'"
    ]


def test_out_of_range():
    assert errors_of(with_("lora", {"dropout": 1.5})) == [
        "lora.dropout: must be within [0, 1), got 1.5"
    ]


def test_bad_choice_with_suggestion():
    assert errors_of(with_("train", {"budget": {"policy": "min_step"}})) == [
        "train.budget.policy: must be one of 'epochs', 'min_steps', got 'min_step' "
        "(did you mean 'min_steps'?)"
    ]


def test_size_over_pool():
    data = with_("subsets", {"sizes": [500, 6000, 9000]})
    assert errors_of(data, pool_size=4213) == [
        "subsets.sizes: must be within (0, 4213] (training pool size), got [6000, 9000]"
    ]
    # capping is the user's explicit choice
    parse_recipe({**data, "subsets": {"sizes": [500, 6000], "on_too_small": "cap"}}, pool_size=4213)


def test_bad_evaluator_name_suggests():
    data = with_("eval", {"evaluators": [{"name": "json_mach"}]})
    (err,) = errors_of(data)
    assert err.startswith(
        "eval.evaluators[0].name: unknown evaluator 'json_mach' (did you mean 'json_match'?); registered:"
    )


def test_missing_required_field():
    assert errors_of({"pool": {"paths": ["a"]}}) == ["name: required (a string), not given"]


def test_missing_pool_source():
    assert errors_of({"name": "t"}) == [
        "pool: give `paths` (files or globs) or `hf_dataset`, got neither"
    ]


def test_unknown_clean_step():
    assert errors_of(with_("clean", {"steps": ["exact_dedup", "near_dedupe"]})) == [
        "clean.steps[1]: unknown step 'near_dedupe' (did you mean 'near_dedup'?); allowed: "
        "exact_dedup, near_dedup, semantic_dedup, length, format, pii, harmful, contradictions, quality"
    ]


def test_ladder_max_below_start():
    assert errors_of(with_("subsets", {"sizes": {"start": 64, "max": 16}})) == [
        "subsets.sizes.max: must be >= start (64), got 16"
    ]


def test_duplicate_tier_names_and_raw_tier_args():
    errs = errors_of(
        with_("tiers", [{"name": "a", "top": 0.3}, {"name": "a"}, {"name": "raw", "top": 0.5}])
    )
    assert errs == [
        "tiers: names must be unique, got ['a', 'a', 'raw']",
        "tiers[2]: the `raw` tier is the uncleaned pool; it takes no top/min_score",
    ]


def test_all_errors_collected_in_one_report():
    data = {
        "name": "t",
        "pool": {"paths": ["a"], "on_error": "ignore"},
        "train": {"learning_rate": -1, "max_length": 8},
        "lora": {"r": "big"},
    }
    errs = errors_of(data)
    assert len(errs) == 4
    assert errs[0] == "pool.on_error: must be one of 'fail', 'skip', got 'ignore'"
    assert "train.learning_rate: must be within (0, 1], got -1.0" in errs
    assert "train.max_length: must be within [16, inf), got 8" in errs
    assert "lora.r: expected an integer, got 'big'" in errs


def test_yaml_syntax_error_names_line(tmp_path: Path):
    p = tmp_path / "r.yaml"
    p.write_text("name: t\npool:\n  paths: [a\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(p)
    assert info.value.source == str(p)
    assert info.value.errors[0].startswith("line 4, column 1: not valid YAML")


def test_missing_recipe_file(tmp_path: Path):
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_ladder_and_list_sizes():
    assert ladder_sizes(Ladder(start=10, max=100, factor=2)) == (10, 20, 40, 80)
    assert ladder_sizes(Ladder(start=16, max=128)) == (16, 32, 64, 128)
    r = parse_recipe(with_("subsets", {"sizes": [64, 16, 32, 16]}))
    assert r.sizes == (16, 32, 64)


def test_cells_ordered_small_sizes_first_across_tiers():
    r = parse_recipe(
        {
            **MINIMAL,
            "tiers": [{"name": "high", "top": 0.3}, {"name": "raw"}],
            "subsets": {"sizes": [8, 16], "seeds": [1, 0]},
        }
    )
    cells = expand_cells(r)
    assert [c.id for c in cells] == [
        "high-n8-s1",
        "raw-n8-s1",
        "high-n8-s0",
        "raw-n8-s0",
        "high-n16-s1",
        "raw-n16-s1",
        "high-n16-s0",
        "raw-n16-s0",
    ]
    assert Cell("high", 8, 1).id == "high-n8-s1"


def test_digest_ignores_cosmetic_fields_only():
    base = parse_recipe(MINIMAL)
    cosmetic = parse_recipe(
        {**MINIMAL, "name": "other", "description": "x", "saturation": {"confidence": 0.8}}
    )
    assert recipe_digest(base) == recipe_digest(cosmetic)
    # Which cells run (sizes, seeds, grid or adaptive, local or Ray) is not what a cell measures:
    # finished cells stay valid when the ladder grows or the executor changes.
    for same in (
        with_("subsets", {"sizes": [8, 16], "seeds": [0, 1], "strategy": "adaptive"}),
        with_("executor", {"kind": "ray", "workers": 2}),
    ):
        assert recipe_digest(parse_recipe(same)) == recipe_digest(base)
    for changed in (
        with_("train", {"learning_rate": 1e-3}),
        with_("model", {"name": "tiny-random"}),
        with_("subsets", {"stratify_by": "task"}),
    ):
        assert recipe_digest(parse_recipe(changed)) != recipe_digest(base)


def test_scientific_notation_string_is_a_float():
    # YAML 1.1 reads `2e-4` (no dot) as a string.
    r = parse_recipe(with_("train", {"learning_rate": "2e-4"}))
    assert r.train.learning_rate == pytest.approx(2e-4)


def test_reference_rows_cover_every_section():
    paths = [row[0] for row in reference_rows()]
    for section in (
        "pool.paths",
        "clean.near_dedup.threshold",
        "tiers[].top",
        "subsets.sizes",
        "train.budget.min_steps",
        "eval.evaluators[].name",
        "saturation.epsilon",
    ):
        assert section in paths


def test_shipped_recipes_validate():
    root = Path(__file__).resolve().parent.parent / "recipes"
    files = sorted(root.glob("*.yaml"))
    assert files, "recipes/ holds no recipe"
    for f in files:
        load_recipe(f)
        assert f.read_text().startswith(f"# loop sweep recipes/{f.name}"), f


def test_readme_recipe_reference_lists_every_field():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [row[0] for row in reference_rows() if f"| `{row[0]}` |" not in readme]
    assert not missing, f"README's recipe reference lacks {missing}"


def test_yaml_on_key_unquoted_means_on(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\npool: {paths: [p.jsonl]}\nclean:\n  near_dedup: {on: prompt}\n"
        "  exact_dedup:\n    on: prompt\n"
    )
    r = load_recipe(path)
    assert r.clean.near_dedup.on == "prompt" and r.clean.exact_dedup.on == "prompt"
    # YAML 1.2: yes/no are strings, so a boolean written as `yes` is an error naming the field
    path.write_text("name: r\npool: {paths: [p.jsonl]}\nclean: {quality: {model_loss: yes}}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.errors == ["clean.quality.model_loss: expected true/false, got 'yes'"]
    path.write_text("name: r\npool: {paths: [p.jsonl]}\nclean: {quality: {model_loss: true}}\n")
    assert load_recipe(path).clean.quality.model_loss is True
