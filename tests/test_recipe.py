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
        "pool: give `paths` (files or globs), `sources` or `hf_dataset`, got none of them"
    ]


def test_unknown_clean_step():
    assert errors_of(with_("clean", {"steps": ["exact_dedup", "near_dedupe"]})) == [
        "clean.steps[1]: unknown step 'near_dedupe' (did you mean 'near_dedup'?); allowed: "
        "exact_dedup, near_dedup, semantic_dedup, length, format, pii, harmful, contradictions, quality, "
        "copyright, freshness"
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
    r = parse_recipe(with_("subsets", {"sizes": [64, 16, 32]}))
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


# ---------------------------------------------------------------------------------------------
# Cross-field checks: each is found by `loop validate`, before any stage runs, with one line
# that names the field, what is allowed and what was given.
# ---------------------------------------------------------------------------------------------


def validate_errors(tmp_path: Path, data: dict, capsys) -> tuple[int, str]:
    """`loop validate` on `data` written as YAML: (exit code, what it printed on stderr)."""
    import yaml

    from loop.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["validate", str(path)])
    return code, " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def assert_rejected(tmp_path: Path, capsys, data: dict, message: str) -> None:
    assert errors_of(data) == [message]
    code, err = validate_errors(tmp_path, data, capsys)
    assert code == 2 and "1 error(s)" in err and message in err, err


def test_validate_rejects_a_score_tier_without_the_quality_step(tmp_path, capsys):
    data = {
        **MINIMAL,
        "clean": {"steps": ["exact_dedup", "length"]},
        "tiers": [{"name": "top", "top": 0.3}, {"name": "all"}],
    }
    assert_rejected(
        tmp_path,
        capsys,
        data,
        "tiers[0].top (top): selects by quality score, which needs `quality` in clean.steps; "
        "got clean.steps ['exact_dedup', 'length']",
    )
    best = {**data, "tiers": [{"name": "best", "min_score": 0.8}]}
    assert errors_of(best) == [
        "tiers[0].min_score (best): selects by quality score, which needs `quality` in "
        "clean.steps; got clean.steps ['exact_dedup', 'length']"
    ]


def test_validate_rejects_an_unknown_quality_signal(tmp_path, capsys):
    data = with_("clean", {"quality": {"weights": {"lenght": 1.0}}})
    assert_rejected(
        tmp_path,
        capsys,
        data,
        "clean.quality.weights.lenght: unknown signal (did you mean 'length'?); allowed: length, "
        "repetition, overlap, format, charset, ending",
    )
    # model_loss is a signal only when the recipe turns it on
    assert errors_of(with_("clean", {"quality": {"weights": {"model_loss": 1.0}}}))
    on = {"quality": {"weights": {"model_loss": 1.0}, "model_loss": True}}
    assert parse_recipe(with_("clean", on)).clean.quality.weights == {"model_loss": 1.0}


def test_validate_rejects_a_negative_quality_weight(tmp_path, capsys):
    data = with_("clean", {"quality": {"weights": {"overlap": -1}}})
    assert_rejected(tmp_path, capsys, data, "clean.quality.weights.overlap: must be >= 0, got -1")


def test_validate_rejects_weights_that_are_all_zero(tmp_path, capsys):
    zero = {s: 0 for s in ("length", "repetition", "overlap", "format", "charset", "ending")}
    data = with_("clean", {"quality": {"weights": zero}})
    (err,) = errors_of(data)
    assert err.startswith("clean.quality.weights: at least one signal needs a weight > 0, got {")
    assert validate_errors(tmp_path, data, capsys)[0] == 2


def test_validate_rejects_a_pii_pattern_that_does_not_compile(tmp_path, capsys):
    data = with_("clean", {"pii": {"patterns": {"badge": "(EMP-"}}})
    assert_rejected(
        tmp_path,
        capsys,
        data,
        "clean.pii.patterns.badge: not a valid regex (missing ), unterminated subpattern at "
        "position 0), got '(EMP-'",
    )


def test_validate_rejects_an_unknown_pii_kind_and_a_bad_pattern_name(tmp_path, capsys):
    data = with_("clean", {"pii": {"kinds": ["email", "names"], "patterns": {"9x": "x"}}})
    assert errors_of(data) == [
        "clean.pii.kinds: unknown kind 'names'; allowed: email, phone, ip, credit_card",
        "clean.pii.patterns.9x: name must be a letter then letters, digits and _, got '9x'",
    ]
    assert validate_errors(tmp_path, data, capsys)[0] == 2


def test_validate_rejects_an_evaluator_that_cannot_be_imported(tmp_path, capsys):
    data = with_("eval", {"evaluators": [{"name": "mymod_not_installed:fn"}]})
    assert_rejected(
        tmp_path,
        capsys,
        data,
        "eval.evaluators[0].name: evaluator 'mymod_not_installed:fn': cannot import (No module "
        "named 'mymod_not_installed'); expected a registered name or an importable "
        "module:function, got 'mymod_not_installed:fn'",
    )
    missing = with_("eval", {"evaluators": [{"name": "evals.builtin:no_such_function"}]})
    (err,) = errors_of(missing)
    assert err.startswith("eval.evaluators[0].name: evaluator 'evals.builtin:no_such_function'")
    # an importable user function is fine
    ok = with_("eval", {"evaluators": [{"name": "evals.builtin:exact_match"}]})
    assert parse_recipe(ok).eval.evaluators[0].metric == "eval.exact_match"


def test_validate_rejects_two_evaluators_with_one_metric_name(tmp_path, capsys):
    data = with_(
        "eval",
        {
            "evaluators": [
                {"name": "regex", "params": {"pattern": "a"}},
                {"name": "regex", "params": {"pattern": "b"}},
            ]
        },
    )
    assert_rejected(
        tmp_path,
        capsys,
        data,
        "eval.evaluators: metric names must differ (set `label`), got ['regex'] more than once",
    )


def test_validate_rejects_a_size_given_twice(tmp_path, capsys):
    data = with_("subsets", {"sizes": [64, 16, 32, 16]})
    assert_rejected(
        tmp_path, capsys, data, "subsets.sizes: each size at most once, got [64, 16, 32, 16]"
    )


def test_validate_rejects_a_seed_given_twice(tmp_path, capsys):
    data = with_("subsets", {"seeds": [0, 1, 0]})
    assert_rejected(tmp_path, capsys, data, "subsets.seeds: each seed at most once, got [0, 1, 0]")


def test_validate_rejects_a_negative_seed(tmp_path, capsys):
    data = with_("subsets", {"seeds": [0, -1]})
    assert_rejected(tmp_path, capsys, data, "subsets.seeds[1]: must be within [0, inf), got -1")


def test_validate_rejects_a_steering_metric_the_sweep_does_not_analyse(tmp_path, capsys):
    data = {
        **MINIMAL,
        "subsets": {"strategy": "adaptive", "adaptive": {"metric": "eval.jsn_match"}},
        "eval": {"evaluators": [{"name": "json_match"}, {"name": "exact_match"}]},
    }
    assert_rejected(
        tmp_path,
        capsys,
        data,
        "subsets.adaptive.metric: must be one of val_loss, eval.json_match, eval.exact_match (the "
        "metrics the sweep analyses), got 'eval.jsn_match' (did you mean 'eval.json_match'?)",
    )
    # saturation.metrics narrows what is analysed, so it narrows what may steer
    narrowed = {**data, "saturation": {"metrics": ["val_loss"]}}
    narrowed["subsets"] = {"strategy": "adaptive", "adaptive": {"metric": "eval.json_match"}}
    assert errors_of(narrowed) == [
        "subsets.adaptive.metric: must be one of val_loss (the metrics the sweep analyses), got "
        "'eval.json_match'"
    ]


def test_metric_names_and_cell_ids_have_one_home():
    from loop.recipe import EvaluatorSpec, analysed_metrics, cell_id, is_curve_metric

    assert EvaluatorSpec("json_match").metric == "eval.json_match"
    assert EvaluatorSpec("pkg.mod:score_fn").metric == "eval.score_fn"
    assert EvaluatorSpec("pkg.mod:score_fn", label="mine").metric == "eval.mine"
    assert [is_curve_metric(m) for m in ("val_loss", "eval.x", "eval.x.valid", "train_tokens")] == [
        True,
        True,
        False,
        False,
    ]
    r = parse_recipe(with_("eval", {"evaluators": [{"name": "json_match", "label": "j"}]}))
    assert analysed_metrics(r) == ["val_loss", "eval.j"]
    assert cell_id("top", 64, 2) == Cell("top", 64, 2).id == "top-n64-s2"


def test_a_field_left_at_its_default_is_not_in_the_digest():
    # what a newer version adds to a section (at its default) must not orphan stored cells
    from loop.recipe import stable_dict

    r = parse_recipe({"name": "d", "pool": {"paths": ["p.jsonl"]}, "subsets": {"sizes": [8]}})
    d = stable_dict(r)
    assert "train" not in d and "lora" not in d  # untouched sections: all defaults
    assert d["pool"] == {"paths": ["p.jsonl"]}
    changed = parse_recipe(
        {"name": "d", "pool": {"paths": ["p.jsonl"]}, "subsets": {"sizes": [8]},
         "train": {"learning_rate": 0.01}}
    )  # fmt: skip
    assert stable_dict(changed)["train"] == {"learning_rate": 0.01}
    assert recipe_digest(changed) != recipe_digest(r)
