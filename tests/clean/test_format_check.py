from loop.clean import format_check
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import FormatConfig


def ex(answer, task=None, prompt="Extract the fields."):
    meta = {"task": task} if task else {}
    return make_example(
        [Message("user", prompt + answer[:5]), Message("assistant", answer)],
        source="t",
        format="chat",
        meta=meta,
    )


def drops(out):
    return [(d.index, d.reason) for d in out.drops]


def test_invalid_json_dropped_and_schema_outlier_flagged():
    pool = [
        ex('{"name": "Ada", "year": 1815}', "extract"),
        ex('{"name": "Alan", "year": 1912}', "extract"),
        ex('```json\n{"name": "Grace", "year": 1906}\n```', "extract"),
        ex('{"name": "Linus", "year": 1969,', "extract"),  # truncated
        ex('{"name": "Ken"}', "extract"),  # parses, other key set
        ex("Sorry, I cannot extract that.", "extract"),  # JSON task, not JSON
    ]
    out = format_check.run(pool, FormatConfig(), StepContext())
    assert drops(out) == [(3, "json_invalid"), (5, "json_invalid")]
    assert out.examples[4].meta["flags"] == ["schema_mismatch"]
    assert out.flagged == {"schema_mismatch": 1}
    assert all("flags" not in e.meta for k, e in enumerate(out.examples) if k != 4)
    assert "flags" not in pool[4].meta  # the input record is untouched

    dropped = format_check.run(pool, FormatConfig(schema="drop"), StepContext())
    assert drops(dropped) == [(3, "json_invalid"), (4, "schema_mismatch"), (5, "json_invalid")]
    assert drops(format_check.run(pool, FormatConfig(schema="ignore"), StepContext())) == [
        (3, "json_invalid"),
        (5, "json_invalid"),
    ]


def test_plain_text_answers_that_look_like_brackets_are_kept():
    pool = [
        ex("[citation needed] The tower is 330 m tall.", "qa"),
        ex("{curly} braces appear in text sometimes", "qa"),
        ex("The answer is [1, 2, 3]", "qa"),
        ex('["a", "b",]', "qa"),  # looks like a JSON array, does not parse
        ex('[{"a": 1}]', "qa"),
        ex('{"a": 1, "b": [1, 2', "qa"),  # truncated object: checked although the task is not JSON
        ex("[1] Smith et al. measured it first.", "qa"),
    ]
    out = format_check.run(pool, FormatConfig(), StepContext())
    assert drops(out) == [(3, "json_invalid"), (5, "json_invalid")]


def test_no_dominant_schema_means_no_flags():
    pool = [ex('{"a": 1}', "t"), ex('{"b": 1}', "t"), ex('{"a": 2}', "u")]
    out = format_check.run(pool, FormatConfig(), StepContext())
    assert drops(out) == [] and out.flagged == {}


def test_answer_format_none_checks_nothing():
    pool = [ex('{"broken": ', "t"), ex('{"a": 1}', "t")]
    out = format_check.run(pool, FormatConfig(answer_format="none"), StepContext())
    assert drops(out) == [] and out.flagged == {}


def test_json_problem_messages():
    assert format_check.json_problem("plain text", required=False) is None
    assert format_check.json_problem('{"a": 1}', required=True) is None
    assert "line 1 column" in format_check.json_problem('{"a": }', required=True)
