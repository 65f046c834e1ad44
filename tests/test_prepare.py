"""`eval.evaluators: auto`: the evaluators chosen from the pool, as `loop init` chooses them."""

from __future__ import annotations

import json
import random

import pytest

from loop.prepare import resolve_evaluators
from loop.recipe import RecipeError, parse_recipe


def _pool(tmp_path, kind: str, n: int = 60):
    rng = random.Random(0)
    rows = []
    for i in range(n):
        if kind == "choice":
            a, b = rng.sample(["up", "down", "left", "right", "in", "out"], 2)
            rows.append(
                {"prompt": f"Q{i}: which way?\n A: {a}\n B: {b}", "completion": rng.choice("AB")}
            )
        elif kind == "json":
            rows.append(
                {"prompt": f"ticket {i}", "completion": json.dumps({"id": i, "ok": i % 2 == 0})}
            )
        else:
            rows.append(
                {
                    "prompt": f"message {i}",
                    "completion": rng.choice(["billing", "shipping", "login"]),
                }
            )
    path = tmp_path / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(path, evaluators):
    eval_section = {} if evaluators is None else {"evaluators": evaluators}
    return parse_recipe(
        {
            "name": "t",
            "pool": {"paths": [str(path)]},
            "subsets": {"sizes": [8]},
            "model": {"name": "tiny"},
            "eval": eval_section,
        }
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("choice", [("choice_loglik", {"letters": True})]),
        ("json", [("json_match", {})]),
        (
            "labels",
            [
                ("normalized_match", {}),
                ("choice_loglik", {"choices": ["billing", "shipping", "login"]}),
            ],
        ),
    ],
)
def test_auto_chooses_the_evaluators_init_would(tmp_path, kind, expected):
    said: list[str] = []
    r = resolve_evaluators(_recipe(_pool(tmp_path, kind), "auto"), progress=said.append)
    got = [(e.name, e.params) for e in r.eval.evaluators]
    if kind == "labels":  # label order follows the pool's counts; compare as sets
        assert got[0] == expected[0]
        assert got[1][0] == "choice_loglik"
        assert sorted(got[1][1]["choices"]) == sorted(expected[1][1]["choices"])
    else:
        assert got == expected
    assert len(said) == 1 and said[0].message.startswith(
        "eval.evaluators (auto): " + expected[0][0]
    )


def test_a_written_list_is_kept_and_none_only_hints(tmp_path):
    path = _pool(tmp_path, "choice")
    written = _recipe(path, [{"name": "exact_match"}])
    assert resolve_evaluators(written, progress=lambda m: None) is written
    said: list[str] = []
    none = _recipe(path, None)
    assert resolve_evaluators(none, progress=said.append) is none  # nothing changes
    assert said and "only validation loss" in said[0].message and "choice_loglik" in said[0].message
    assert resolve_evaluators(none) is none  # no progress: no pool read, no words


def test_a_misspelt_auto_names_the_field(tmp_path):
    with pytest.raises(RecipeError, match=r"eval\.evaluators"):
        _recipe(_pool(tmp_path, "choice"), "automatic")


def test_loop_validate_prints_what_auto_chose(tmp_path, monkeypatch, capsys):
    from loop.cli import main

    monkeypatch.chdir(tmp_path)
    pool = _pool(tmp_path, "json")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: t\npool: {{paths: [{pool}]}}\nsubsets: {{sizes: [8]}}\n"
        "model: {name: tiny}\neval: {evaluators: auto}\n"
    )
    assert main(["validate", "--recipe-only", str(recipe)]) == 0  # no pool read
    assert "auto" not in capsys.readouterr().err
    main(["validate", str(recipe)])  # the tiny model may be missing here: only the words count
    assert (
        "eval.evaluators (auto): json_match, for 60 records, JSON answers"
        in capsys.readouterr().err
    )
