"""Answer distributions, collapsed labels, unparseable shares and chance baselines, by hand."""

from __future__ import annotations

import pytest

from loop.diagnose import baselines, cell_answers, diagnose
from loop.example import Example, Message
from loop.recipe import EvaluatorSpec


def _mc(i: int, answer: str, options=("A", "B", "C")) -> Example:
    listed = "\n".join(f"{o}: option {o}" for o in options)
    return Example(
        f"q{i}",
        (Message("user", f"Question {i}?\n{listed}"), Message("assistant", answer)),
        f"mc.jsonl:{i + 1}",
        "chat",
    )


def test_three_choice_model_that_never_answers_b_is_named():
    # the 3-choice case: references A/B/C about a third each; the model says A 69x and C 31x
    refs = ["A", "B", "C"] * 33 + ["A"]
    val = [_mc(i, r) for i, r in enumerate(refs)]
    said = ["A"] * 69 + ["C"] * 31
    rows = [
        {
            "id": ex.id,
            "reference": ex.answer,
            "choice_loglik": float(s == ex.answer),
            "choice_loglik.choice": s,
        }
        for ex, s in zip(val, said, strict=True)
    ]
    spec = EvaluatorSpec("choice_loglik", {"letters": True})
    got = cell_answers(spec, rows, {e.id: e for e in val}, tier="clean", size=32, seed=0)
    assert dict(got.answers) == {"A": 0.69, "C": 0.31}
    assert dict(got.references)["B"] == pytest.approx(0.33)
    assert got.never == ("B",)
    assert got.collapsed == "A"  # 69% of answers, right for 34%
    assert "never answers B" in got.problem and "answers A to 69%" in got.problem
    assert got.text.startswith("answers A 69%, C 31%, B 0%")
    base = baselines([spec], val)
    assert base["eval.choice_loglik"].chance == pytest.approx(1 / 3)
    assert "3 options" in base["eval.choice_loglik"].how
    assert base["eval.choice_loglik.prob"].chance == pytest.approx(1 / 3)
    # always answering A (right for 34 of 100) scores the majority rate
    assert base["eval.choice_loglik"].majority == pytest.approx(0.34)
    assert base["eval.choice_loglik"].majority_label == "A"


def test_balanced_answers_raise_nothing():
    val = [_mc(i, "AB"[i % 2], options=("A", "B")) for i in range(40)]
    rows = [{"id": ex.id, "choice_loglik": 1.0, "choice_loglik.choice": ex.answer} for ex in val]
    spec = EvaluatorSpec("choice_loglik", {"letters": True})
    got = cell_answers(spec, rows, {e.id: e for e in val}, tier="t", size=16, seed=0)
    assert got.collapsed is None and got.never == () and got.problem is None


def test_mixed_option_counts_average_the_chance():
    val = [_mc(0, "A", ("A", "B")), _mc(1, "A", ("A", "B", "C", "D"))]
    (b,) = [
        v
        for k, v in baselines([EvaluatorSpec("choice_loglik", {"letters": True})], val).items()
        if k == "eval.choice_loglik"
    ]
    assert b.chance == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_label_set_gets_the_majority_baseline_and_collapse_on_generation():
    labels = ["billing"] * 20 + ["shipping"] * 12 + ["refund"] * 8
    val = [
        Example(f"t{i}", (Message("user", f"ticket {i}"), Message("assistant", lab)), "x", "chat")
        for i, lab in enumerate(labels)
    ]
    spec = EvaluatorSpec("exact_match")
    (base,) = baselines([spec], val).values()
    assert base.chance == pytest.approx(0.5) and "'billing'" in base.how
    rows = [{"id": e.id, "reference": e.answer, "prediction": "Billing"} for e in val[:36]]
    rows += [{"id": e.id, "reference": e.answer, "prediction": "I think so"} for e in val[36:]]
    got = cell_answers(spec, rows, {e.id: e for e in val}, tier="t", size=8, seed=0)
    assert got.collapsed == "billing"  # 90% of answers, right for 50%
    assert set(got.never) == {"shipping", "refund"}
    assert dict(got.answers)["(other)"] == pytest.approx(0.1)


def test_free_text_references_have_no_baseline_or_distribution():
    val = [
        Example(f"f{i}", (Message("user", "q"), Message("assistant", f"answer {i}")), "x", "chat")
        for i in range(30)
    ]
    spec = EvaluatorSpec("exact_match")
    assert baselines([spec], val) == {}
    rows = [{"id": e.id, "reference": e.answer, "prediction": "x"} for e in val]
    d = diagnose([spec], [("t", 8, 0, rows)], val)
    assert d.cells == ()


def test_unparseable_share_for_json_and_regex():
    val = [
        Example(f"j{i}", (Message("user", "q"), Message("assistant", '{"a": 1}')), "x", "chat")
        for i in range(10)
    ]
    json_rows = [
        {"id": e.id, "json_match": 0.0, "json_match.valid": float(i < 3)} for i, e in enumerate(val)
    ]
    got = cell_answers(EvaluatorSpec("json_match"), json_rows, {}, tier="t", size=8, seed=0)
    assert got.unparseable == pytest.approx(0.7)
    assert "70% of outputs unparseable" in got.text
    assert got.problem == "at 8 examples the model gives an output that cannot be parsed for 70%"
    spec = EvaluatorSpec("regex", {"pattern": "^Answer: {reference}$"})
    preds = ["Answer: 4", "Answer: 5", "four", "The answer is 4"]
    rows = [{"id": str(i), "reference": "4", "prediction": p} for i, p in enumerate(preds)]
    got = cell_answers(spec, rows, {}, tier="t", size=8, seed=0)
    assert got.unparseable == pytest.approx(0.5)  # "Answer: 5" parses; it is just wrong


def test_zero_shot_cell_belongs_to_every_tier():
    val = [_mc(i, "ABC"[i % 3]) for i in range(30)]
    spec = EvaluatorSpec("choice_loglik", {"letters": True})
    rows = [{"id": e.id, "choice_loglik.choice": "A"} for e in val]
    d = diagnose([spec], [("zero-shot", 0, 0, rows), ("clean", 16, 0, rows)], val)
    cells = d.for_curve("clean", "eval.choice_loglik.prob")
    assert [c.size for c in cells] == [0, 16]
    assert cells[0].problem.startswith("the untrained model answers A to 100%")
    assert d.for_curve("raw", "eval.choice_loglik")[0].size == 0


def test_floor_is_chance_or_the_majority_rate_whichever_is_higher():
    # 3 options, A right for 34 of 100: always answering A beats chance (1/3)
    refs = ["A"] * 34 + ["B"] * 33 + ["C"] * 33
    val = [_mc(i, r) for i, r in enumerate(refs)]
    spec = EvaluatorSpec("choice_loglik", {"letters": True})
    base = baselines([spec], val)
    assert base["eval.choice_loglik"].floor == pytest.approx(0.34)
    assert base["eval.choice_loglik.prob"].floor == pytest.approx(1 / 3)  # no majority there


def test_the_report_passes_each_metrics_floor_to_the_analysis():
    # what loop.driver.report hands curves.analyze as `chance`: the majority label's 90%
    from types import SimpleNamespace

    from loop.driver import _chance_levels

    val = [_mc(i, "Information" if i % 10 else "Error", ()) for i in range(50)]
    spec = EvaluatorSpec("normalized_match", {})
    recipe = SimpleNamespace(eval=SimpleNamespace(evaluators=[spec], samples=None, seed=0))
    assert _chance_levels(recipe, SimpleNamespace(val=val)) == {
        "eval.normalized_match": pytest.approx(0.9)
    }
