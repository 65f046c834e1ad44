from __future__ import annotations

import math
import sys

import pytest

import evals
from evals.builtin import (
    choice_loglik,
    contains,
    exact_match,
    json_match,
    normalized_match,
    regex,
    rouge_l,
)
from loop.example import Message, make_example

REF = '{"name": "Ann", "age": 30, "city": "Oslo"}'


def test_registry_lists_builtins_with_kinds():
    names = evals.registered_names()
    for name in (
        "exact_match",
        "normalized_match",
        "json_match",
        "regex",
        "contains",
        "choice_loglik",
        "greedy_match",
        "rouge_l",
    ):
        assert name in names
    assert evals.get("choice_loglik").kind == "loglik"
    assert evals.get("greedy_match").kind == "forced"
    assert evals.get("json_match").kind == "generation"
    with pytest.raises(KeyError, match="unknown evaluator 'nope'"):
        evals.get("nope")


def test_user_evaluator_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_evals.py").write_text(
        "def starts(prediction, reference):\n    return float(prediction.startswith(reference))\n"
        "def ll(score, example):\n    return 1.0\nll.evaluator_kind = 'loglik'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = evals.get("my_evals:starts")
    assert reg.kind == "generation" and reg.fn("abc", "ab") == 1.0
    assert evals.get("my_evals:ll").kind == "loglik"
    with pytest.raises(KeyError, match="cannot import"):
        evals.get("my_evals:missing")
    sys.modules.pop("my_evals", None)


@pytest.mark.parametrize(
    ("pred", "ref", "kw", "want"),
    [
        ("Paris", "Paris", {}, 1.0),
        ("  Paris\n", "Paris", {}, 1.0),
        ("paris", "Paris", {}, 0.0),
        ("paris", "Paris", {"ignore_case": True}, 1.0),
        ("", "Paris", {}, 0.0),
    ],
)
def test_exact_match(pred, ref, kw, want):
    assert exact_match(pred, ref, **kw) == want


@pytest.mark.parametrize(
    ("pred", "ref", "want"),
    [
        ("The answer: Paris!", "the answer paris", 1.0),
        ("New   York,\nUSA.", "new york usa", 1.0),
        ("Paris", "London", 0.0),
        ("", "", 1.0),
        ("", "x", 0.0),
    ],
)
def test_normalized_match(pred, ref, want):
    assert normalized_match(pred, ref) == want


def test_contains():
    assert contains("I think it is Paris, France.", "paris") == 1.0
    assert contains("I think it is Paris", "paris", ignore_case=False) == 0.0
    assert contains("a  b\nc", "b c") == 1.0
    assert contains("", "x") == 0.0
    assert contains("anything", "") == 0.0


def test_regex():
    assert regex("Answer: 42", "", pattern=r"\d+") == 1.0
    assert regex("Answer: 42", "", pattern=r"\d+", mode="fullmatch") == 0.0
    assert regex("Answer: 4.2", "4.2", pattern="^Answer: {reference}$") == 1.0
    assert regex("Answer: 4x2", "4.2", pattern="^Answer: {reference}$") == 0.0  # escaped
    assert regex("ANSWER: 1", "", pattern="answer", ignore_case=True) == 1.0
    assert regex("", "", pattern=r"\w") == 0.0
    with pytest.raises(ValueError, match="mode"):
        regex("x", "", pattern="x", mode="find")


def test_json_match_exact_and_field_accuracy():
    assert json_match(REF, REF) == {"score": 1.0, "valid": 1.0, "field_acc": 1.0}
    reordered = '{"city": "Oslo", "age": 30, "name": "Ann"}'
    assert json_match(reordered, REF)["score"] == 1.0
    one_wrong = json_match('{"name": "Ann", "age": 31, "city": "Oslo"}', REF)
    assert one_wrong["score"] == 0.0 and one_wrong["valid"] == 1.0
    assert one_wrong["field_acc"] == pytest.approx(2 / 3)
    extra = json_match('{"name": "Ann", "age": 30, "city": "Oslo", "x": 1}', REF)
    assert extra["score"] == 0.0 and extra["field_acc"] == 1.0
    assert json_match('{"name": "Ann", "age": "30", "city": "Oslo"}', REF)["score"] == 0.0


def test_json_match_fenced_malformed_empty():
    fenced = "Here you go:\n```json\n" + REF + "\n```"
    assert json_match(fenced, REF)["score"] == 1.0
    assert json_match("```\n" + REF + "\n```", REF)["score"] == 1.0
    for bad in ('{"name": "Ann", "age": 30', "", "name: Ann", "[1, 2]"):
        assert json_match(bad, REF) == {"score": 0.0, "valid": 0.0, "field_acc": 0.0}
    embedded = 'Sure! {"name": "Ann", "age": 30, "city": "Oslo"} Anything else?'
    assert json_match(embedded, REF)["valid"] == 0.0
    assert json_match(embedded, REF, lenient=True)["score"] == 1.0


def test_json_match_selected_fields_and_case():
    pred = '{"name": "ann", "age": 30, "city": "Bergen"}'
    assert json_match(pred, REF, fields=["age"])["score"] == 1.0
    r = json_match(pred, REF, fields=["name", "age"])
    assert r["score"] == 0.0 and r["field_acc"] == 0.5
    assert json_match(pred, REF, fields=["name", "age"], ignore_case=True)["score"] == 1.0
    assert json_match("[1, 2]", "[1, 2]")["score"] == 1.0
    assert json_match("true", "1")["score"] == 0.0  # a bool is not a number


def test_json_match_rejects_bad_reference():
    with pytest.raises(ValueError, match="reference is not valid JSON"):
        json_match("{}", "not json")


def test_rouge_l():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat")["score"] == 1.0
    r = rouge_l("the cat sat", "the cat sat on the mat")
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(0.5)
    assert r["score"] == pytest.approx(2 / 3)
    assert rouge_l("", "the cat")["score"] == 0.0
    assert rouge_l("dog", "the cat")["score"] == 0.0
    assert rouge_l("Cat, the!", "the cat")["score"] == pytest.approx(0.5)  # order matters


def _mc(answer: str, choices, **meta):
    return make_example(
        [Message("user", "Pick one"), Message("assistant", answer)],
        source="mc.jsonl:3",
        format="chat",
        meta={"choices": choices, **meta},
    )


def test_choice_loglik_picks_most_likely_option():
    ex = _mc("B", ["A", "B", "C"])
    table = {"A": (-5.0, 1), "B": (-1.0, 1), "C": (-3.0, 1)}

    def score(texts):
        return [table[t] for t in texts]

    got = choice_loglik(score, ex)
    # prob: softmax over the options' log-probabilities, the correct option's share
    p_b = math.exp(-1.0) / (math.exp(-5.0) + math.exp(-1.0) + math.exp(-3.0))
    assert got == {"score": 1.0, "prob": pytest.approx(p_b), "choice": "B"}
    table["C"] = (-0.5, 1)
    got = choice_loglik(score, ex)
    assert (got["score"], got["choice"]) == (0.0, "C") and got["prob"] < p_b


def test_choice_loglik_length_normalization_and_answer_field():
    ex = _mc("ignored", ["short", "a long option"], gold=1)
    table = {"short": (-4.0, 1), "a long option": (-6.0, 6)}

    def score(texts):
        return [table[t] for t in texts]

    assert choice_loglik(score, ex, answer_field="gold")["score"] == 0.0
    assert choice_loglik(score, ex, answer_field="gold", length_normalize=True)["score"] == 1.0


def test_choice_loglik_bad_examples_name_the_example():
    with pytest.raises(ValueError, match=r"mc\.jsonl:3.*non-empty list of strings"):
        choice_loglik(lambda t: [], _mc("A", "A,B"))
    with pytest.raises(ValueError, match="must be one of the options"):
        choice_loglik(lambda t: [(0.0, 1)] * len(t), _mc("D", ["A", "B"]))
