"""`loop init`: shape detection, the starter recipe, and init -> clean -> sweep unchanged."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from loop import init
from loop.cli import main
from loop.recipe import ModelConfig, load_recipe

TINY = ModelConfig(name="tiny-random")


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


@pytest.mark.parametrize(
    ("records", "fmt", "fields", "shape"),
    [
        (
            [{"input": msgs(("system", "s"), ("user", "q")), "ideal": "A"}],
            "auto",
            {"messages": "input", "answer": "ideal"},
            "prompt as messages in `input`, answer in `ideal`",
        ),
        (
            [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}],
            "sharegpt",
            {},
            "ShareGPT turns in `conversations`",
        ),
        (
            [{"prompt": msgs(("user", "q")), "completion": msgs(("assistant", "a"))}],
            "auto",
            {},
            "conversational prompt/completion (`prompt` + `completion`)",
        ),
        (
            [{"messages": msgs(("user", "q"), ("assistant", "a"))}],
            "auto",
            {},
            "chat messages in `messages`, answer in the last turn",
        ),
        (
            [{"question": "q", "answer": "a", "context": "c"}],
            "auto",
            {"instruction": "question", "output": "answer", "input": "context"},
            "text fields `question` -> `answer` (+ `context`)",
        ),
        (
            [{"text": "great film", "label": 1}],
            "auto",
            {"instruction": "text", "output": "label"},
            "text fields `text` -> `label`",
        ),
        (
            [{"input": "q", "output": "a"}],
            "auto",
            {"instruction": "input", "output": "output", "input": ""},
            "text fields `input` -> `output`",
        ),
        ([{"prompt": "q", "completion": "a"}], "auto", {}, "text fields `prompt` -> `completion`"),
    ],
)
def test_detect_fields(records, fmt, fields, shape):
    d = init.detect_fields(records * 5)
    assert (d.format, d.fields, d.shape) == (fmt, fields, shape)


def test_unknown_shape_says_what_was_expected():
    with pytest.raises(init.InitError, match="no known record shape fits"):
        init.detect_fields([{"foo": 1, "bar": 2}])
    with pytest.raises(init.InitError, match="set pool.fields.answer by hand"):
        init.detect_fields([{"messages": msgs(("user", "q")), "meta": {"x": 1}}])


def label_pool(path: Path, n: int = 80) -> Path:
    rng = random.Random(0)
    system = "Classify the sentiment of the review as positive or negative."
    recs = []
    for i in range(n):
        label = rng.choice(["positive", "negative"])
        word = {"positive": "loved", "negative": "hated"}[label]
        recs.append(
            {
                "input": msgs(
                    ("system", system), ("user", f"Review {i}: I {word} film number {i}.")
                ),
                "ideal": label,
            }
        )
    return write_jsonl(path, recs)


def test_init_writes_a_recipe_chosen_from_the_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    label_pool(tmp_path / "reviews.jsonl")
    plan = init.plan(["reviews.jsonl"], model=TINY)
    out = init.write(plan, tmp_path / "r.yaml")
    text = out.read_text()
    assert text.startswith("# loop sweep ")
    r = load_recipe(out)
    assert r.pool.fields.messages == "input" and r.pool.fields.answer == "ideal"
    assert [t.name for t in r.tiers] == ["clean", "raw"]
    assert [e.name for e in r.eval.evaluators] == ["normalized_match", "choice_loglik"]
    assert r.eval.evaluators[1].params == {
        "choices": ["positive", "negative"]
    } or r.eval.evaluators[1].params == {"choices": ["negative", "positive"]}
    assert r.clean.near_dedup.on == "prompt"
    # the tiny tokenizer counts bytes: both labels are 8 tokens -> 8 // 4 and max(4 * 8, 8 + 16)
    assert (r.clean.length.min_answer_tokens, r.clean.length.max_answer_tokens) == (2, 32)
    assert "format" not in r.clean.steps  # no JSON answers
    # 80 records, 68 expected after cleaning: 30% held out (the most allowed), 20 items, since
    # 10% would give 7; the ladder is capped by the 48 left to train on
    assert r.clean.split.validation == 0.3
    assert "30% held out gives ~20 validation items (10% would give 7)" in text
    assert r.sizes == (12, 24, 48)  # a quarter and a half, rounded
    assert r.subsets.on_too_small == "cap"
    assert r.eval.samples == 20  # all of the validation items
    assert "# classification tasks usually need ~256 examples" not in text  # said in words:
    assert "classification tasks usually need ~256 examples; capped at the expected" in text
    with pytest.raises(init.InitError, match="exists; pass --force"):
        init.write(plan, out)


def test_init_then_clean_then_sweep_unchanged(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    label_pool(tmp_path / "reviews.jsonl", n=60)
    code = main(
        [
            "init",
            "reviews.jsonl",
            "--out",
            "r.yaml",
            "--model",
            "tiny-random",
            "--max-size",
            "8",
            "--eval-samples",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "shape: prompt as messages in `input`, answer in `ideal`" in out
    assert main(["clean", "r.yaml"]) == 0
    out = capsys.readouterr().out
    assert "clean.format.answer_format" not in out  # set by init, nothing left to derive
    assert main(["sweep", "r.yaml"]) == 0
    out = capsys.readouterr().out
    assert "cells: " in out and " 0 failed" in out
    assert "eval.normalized_match" in out or "normalized_match" in out


def test_init_reads_csv_with_its_own_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with (tmp_path / "t.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(40):
            w.writerow([f"message number {i} about billing", "billing" if i % 2 else "shipping"])
    plan = init.plan(["t.csv"], model=TINY)
    assert plan.detected.fields == {"instruction": "text", "output": "label"}
    assert plan.profile.kind == "labels"


def test_init_errors_are_messages(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "missing.jsonl", "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl: file not found" in err and "Traceback" not in err


def test_templated_pool_gets_a_max_drop_that_lets_the_funnel_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    system = "Label each event log line as Information, Warning or Error."
    line = (
        "The time zone information was refreshed with exit reason 0. Current time zone bias is {}."
    )
    recs = [
        {"input": msgs(("system", system), ("user", line.format(i))), "ideal": "Information"}
        for i in range(60)
    ]
    recs += [
        {
            "input": msgs(("system", system), ("user", f"Disk {c}: has {c} bad blocks and failed")),
            "ideal": "Error",
        }
        for c in "CDEFGHIJKL"
    ]
    write_jsonl(tmp_path / "events.jsonl", recs)
    plan = init.plan(["events.jsonl"], model=TINY)
    r = load_recipe(init.write(plan, tmp_path / "r.yaml"))
    assert r.clean.max_drop > 0.5
    assert "measured by loop init on this pool: exact_dedup 0%, near_dedup" in plan.text
    assert main(["clean", "r.yaml"]) == 0
