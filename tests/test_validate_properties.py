"""Property: `loop validate` never raises on any recipe, however wrong; it lists errors (exit 2)
or says ✓ (exit 0). Recipes are random mappings near the real schema: the recipe's own fields
with values of the right type or of any other, unknown keys, missing sections."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loop.cli import main
from loop.recipe import Recipe

# Text YAML can hold: no surrogates (not UTF-8), no control characters YAML refuses.
TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\ufeff"),
    max_size=12,
)
# Values the real schema uses, so that generated recipes often get past the type checks.
WORDS = st.sampled_from(
    [
        "raw",
        "high",
        "all",
        "tiny-random",
        "smollm2-135m-instruct",
        "json_match",
        "exact_match",
        "mymod:fn",
        "pool.jsonl",
        "*.jsonl",
        "quality",
        "pii",
        "length",
        "exact_dedup",
        "auto",
        "chat",
        "email",
        "sqlite:///mlruns/x.db",
        "sqlite://",
        "file:///tmp/x",
        "foo://bar",
        "Qwen/Qwen2.5-0.5B",
        "./model",
        "m.gguf",
        "val_loss",
        "eval.json_match",
        "adaptive",
        "grid",
        "cap",
        "error",
        "[",
        "{",
        "~",
        "",
    ]  # fmt: skip
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    WORDS,
    st.lists(st.one_of(st.integers(-5, 50), TEXT), max_size=3),
    st.dictionaries(TEXT, st.one_of(st.integers(), TEXT), max_size=2),
)


def value_for(tp: Any) -> st.SearchStrategy:
    """A value of type `tp` (often) or of any other type (sometimes)."""
    return st.one_of(_right(tp), _right(tp), JUNK)


def _right(tp: Any) -> st.SearchStrategy:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return st.one_of([_right(a) for a in args])
    if origin is Literal:
        return st.one_of(st.sampled_from(args), TEXT)
    if origin is tuple:
        return st.one_of(st.lists(value_for(args[0]), max_size=4), _right(args[0]))
    if origin is dict:
        return st.dictionaries(st.one_of(WORDS, TEXT), value_for(args[1]), max_size=3)
    if dataclasses.is_dataclass(tp):
        return mapping_for(tp)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-3, 300)
    if tp is float:
        return st.one_of(st.floats(-2, 2), st.integers(-3, 300), st.just("2e-4"))
    if tp is str:
        return st.one_of(WORDS, TEXT)
    return JUNK


def mapping_for(cls: Any) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    known = st.fixed_dictionaries({}, optional={n: value_for(hints[n]) for n in names})
    unknown = st.dictionaries(
        st.sampled_from(["trian", "extra", "Name", "sizes"]), JUNK, max_size=1
    )
    return st.builds(lambda a, b: {**b, **a}, known, unknown)


def field_paths(cls: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, type) of every recipe field, sections and their fields alike."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        path, tp = (*prefix, f.name), hints[f.name]
        out.append((path, tp))
        if dataclasses.is_dataclass(tp):
            out.extend(field_paths(tp, path))
    return out


PATHS = field_paths(Recipe)
VALID = {
    "name": "ok",
    "pool": {"paths": ["pool.jsonl"]},
    "clean": {"steps": ["exact_dedup", "quality"]},
    "tiers": [{"name": "high", "top": 0.5}, {"name": "raw"}],
    "subsets": {"sizes": [1], "seeds": [0]},
    "model": {"name": "tiny-random"},
    "eval": {"evaluators": [{"name": "json_match"}]},
}


def _mutated(mutations: list[tuple[tuple[str, ...], Any, bool]]) -> dict:
    import copy

    recipe = copy.deepcopy(VALID)
    for path, value, delete in mutations:
        node = recipe
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return recipe


MUTATION = st.sampled_from(PATHS).flatmap(
    lambda pt: st.tuples(st.just(pt[0]), value_for(pt[1]), st.booleans())
)
MUTATED = st.builds(_mutated, st.lists(MUTATION, max_size=3))  # a valid recipe, a few changes
RECIPES = st.one_of(
    MUTATED,
    MUTATED,
    MUTATED,
    st.builds(lambda r, name: {"name": name, **r}, mapping_for(Recipe), value_for(str)),
    mapping_for(Recipe),
    JUNK,
)


@settings(
    max_examples=int(os.environ.get("LOOP_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=RECIPES)
def test_validate_never_raises(data: Any, monkeypatch, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        (folder / "pool.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
        path = folder / "r.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        code = main(["validate", str(path)])  # any exception fails the test
        out = capsys.readouterr()
    text = out.out + out.err
    event(f"exit {code}")  # --hypothesis-show-statistics: how many got past every check
    assert "Traceback" not in text
    assert code in (0, 2), text
    if code == 0:
        assert "✓" in out.out
    else:
        assert "error(s)" in out.err and "✗" in out.err
