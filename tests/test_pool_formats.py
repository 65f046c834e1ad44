"""The shapes real pools come in: ShareGPT, conversational prompt/completion, messages with a
separate answer field, content-part lists, compressed files; a bad record of each with file:line."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
from pathlib import Path

import pytest
import zstandard

from loop.pool import PoolError, count_records, load_pool
from loop.recipe import FieldMap, PoolConfig, ShareGPTConfig


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def load(tmp_path: Path, *paths: str, **kw):
    return load_pool(PoolConfig(paths=paths, **kw), base_dir=tmp_path)


def problems_of(tmp_path: Path, *paths: str, **kw) -> list[str]:
    with pytest.raises(PoolError) as info:
        load(tmp_path, *paths, **kw)
    return [p.message for p in info.value.problems]


def turns(ex) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in ex.messages]


SHAREGPT = {
    "conversations": [
        {"from": "human", "value": "Capital of France?"},
        {"from": "gpt", "value": "Paris."},
    ],
    "system": "Be brief.",
}


def test_sharegpt_with_a_system_field_beside_the_turns(tmp_path):
    write_jsonl(tmp_path / "sg.jsonl", [SHAREGPT])
    (ex,) = load(tmp_path, "sg.jsonl").examples
    assert turns(ex) == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
    ]
    assert ex.format == "chat" and ex.meta == {}


def test_sharegpt_role_map_and_keys_are_configurable(tmp_path):
    rec = {
        "conversations": [
            {"speaker": "customer", "text": "Where is my order?"},
            {"speaker": "agent", "text": "It ships today."},
        ]
    }
    write_jsonl(tmp_path / "sg.jsonl", [rec])
    sg = ShareGPTConfig(
        role_key="speaker", content_key="text", roles={"customer": "user", "agent": "assistant"}
    )
    (ex,) = load(tmp_path, "sg.jsonl", sharegpt=sg).examples
    assert turns(ex) == [("user", "Where is my order?"), ("assistant", "It ships today.")]


def test_sharegpt_bad_records_name_file_line_and_field(tmp_path):
    tool = {
        "conversations": [
            {"from": "human", "value": "Weather?"},
            {"from": "function_call", "value": "{}"},
            {"from": "gpt", "value": "Sunny."},
        ]
    }
    ends_with_human = {"conversations": [{"from": "human", "value": "Hi"}]}
    write_jsonl(tmp_path / "sg.jsonl", [SHAREGPT, tool, ends_with_human])
    assert problems_of(tmp_path, "sg.jsonl") == [
        "sg.jsonl:2: field `conversations[1].from`: expected one of system, human, user, gpt, "
        "assistant, chatgpt, bing, bard, got 'function_call' (map it in pool.sharegpt.roles)",
        "sg.jsonl:3: field `conversations`: expected the conversation to end with an assistant "
        "turn, the last turn (conversations[0]) is 'user'; if the answer sits in another field, "
        "name it in pool.fields.answer",
    ]


def test_conversational_prompt_completion(tmp_path):
    recs = [
        {
            "prompt": [{"role": "user", "content": "2 + 2?"}],
            "completion": [{"role": "assistant", "content": "4"}],
        },
        {"prompt": [{"role": "user", "content": "3 + 3?"}], "completion": "6"},
    ]
    write_jsonl(tmp_path / "pc.jsonl", recs)
    a, b = load(tmp_path, "pc.jsonl").examples
    assert turns(a) == [("user", "2 + 2?"), ("assistant", "4")]
    assert turns(b) == [("user", "3 + 3?"), ("assistant", "6")]
    assert a.format == b.format == "chat"


def test_conversational_prompt_completion_bad_record(tmp_path):
    recs = [
        {"prompt": [{"role": "user", "content": "2 + 2?"}], "completion": "4"},
        {
            "prompt": [{"role": "user", "content": "3 + 3?"}],
            "completion": [{"role": "user", "content": "6"}],
        },
    ]
    write_jsonl(tmp_path / "pc.jsonl", recs)
    assert problems_of(tmp_path, "pc.jsonl") == [
        "pc.jsonl:2: field `completion[0].role`: expected 'assistant' (the completion), got 'user'"
    ]


EVAL_SUITE = {
    "input": [
        {"role": "system", "content": "Answer with the letter."},
        {"role": "user", "content": "The resistance\n\n A: increases\n B: decreases"},
    ],
    "ideal": "A",
}


def test_prompt_as_messages_with_a_separate_answer_field(tmp_path):
    write_jsonl(tmp_path / "mc.jsonl", [EVAL_SUITE])
    (ex,) = load(tmp_path, "mc.jsonl", fields=FieldMap(messages="input", answer="ideal")).examples
    assert turns(ex) == [
        ("system", "Answer with the letter."),
        ("user", "The resistance\n\n A: increases\n B: decreases"),
        ("assistant", "A"),
    ]
    assert ex.meta == {}


def test_prompt_as_messages_bad_records(tmp_path):
    no_answer = {"input": EVAL_SUITE["input"]}
    both = {"input": [*EVAL_SUITE["input"], {"role": "assistant", "content": "B"}], "ideal": "A"}
    write_jsonl(tmp_path / "mc.jsonl", [EVAL_SUITE, no_answer, both])
    fields = FieldMap(messages="input", answer="ideal")
    assert problems_of(tmp_path, "mc.jsonl", fields=fields) == [
        "mc.jsonl:2: field `ideal`: expected the answer to the messages in `input`, "
        "got no such field",
        "mc.jsonl:3: field `input` ends with an assistant turn and field `ideal` gives an "
        "answer too; expected one of the two",
    ]
    # without the field map, the hint names the setting
    write_jsonl(tmp_path / "m2.jsonl", [{"messages": EVAL_SUITE["input"], "ideal": "A"}])
    (msg,) = problems_of(tmp_path, "m2.jsonl")
    assert msg.startswith("m2.jsonl:1: field `messages`: expected the conversation to end")
    assert msg.endswith("name it in pool.fields.answer")


def test_numeric_labels_are_answers(tmp_path):
    write_jsonl(tmp_path / "l.jsonl", [{"instruction": "Sentiment of: great film", "output": 1}])
    (ex,) = load(tmp_path, "l.jsonl").examples
    assert ex.answer == "1"


def test_content_part_lists(tmp_path):
    rec = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},
        ]
    }
    image = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": "A cat."},
        ]
    }
    write_jsonl(tmp_path / "parts.jsonl", [rec, image])
    with pytest.raises(PoolError) as info:
        load(tmp_path, "parts.jsonl")
    assert [p.message for p in info.value.problems] == [
        "parts.jsonl:2: field `messages[0].content[0].type`: expected 'text' (only text parts "
        "are read), got 'image_url'"
    ]
    (ex,) = load(tmp_path, "parts.jsonl", on_error="skip").examples
    assert turns(ex) == [("user", "Hello\nthere"), ("assistant", "Hi!")]


def _compress(data: bytes, kind: str) -> bytes:
    if kind == "gz":
        return gzip.compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    return zstandard.ZstdCompressor().compress(data)


GOOD = {"prompt": "2 + 2?", "completion": "4"}


@pytest.mark.parametrize("kind", ["gz", "bz2", "zst"])
def test_compressed_jsonl_keeps_line_numbers(tmp_path, kind):
    data = (json.dumps(GOOD) + "\n" + "{not json\n" + json.dumps(GOOD) + "\n").encode()
    (tmp_path / f"p.jsonl.{kind}").write_bytes(_compress(data, kind))
    assert problems_of(tmp_path, f"p.jsonl.{kind}") == [
        f"p.jsonl.{kind}:2: not valid JSON (Expecting property name enclosed in double quotes "
        "at column 2); expected one JSON object per line"
    ]
    load_ = load(tmp_path, f"p.jsonl.{kind}", on_error="skip")
    assert [ex.source for ex in load_.examples] == [f"p.jsonl.{kind}:1", f"p.jsonl.{kind}:3"]
    assert count_records(PoolConfig(paths=(f"p.jsonl.{kind}",)), base_dir=tmp_path) == 3


@pytest.mark.parametrize("kind", ["gz", "bz2", "zst"])
def test_compressed_json_and_csv(tmp_path, kind):
    (tmp_path / f"p.json.{kind}").write_bytes(
        _compress(json.dumps([GOOD, {"prompt": 1}]).encode(), kind)
    )
    assert problems_of(tmp_path, f"p.json.{kind}") == [
        f"p.json.{kind}[1]: field `prompt`: expected a string (the prompt), got a number 1"
    ]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerows([["prompt", "completion"], ["2 + 2?", "4"], ["3 + 3?"]])
    (tmp_path / f"p.csv.{kind}").write_bytes(_compress(buf.getvalue().encode(), kind))
    assert problems_of(tmp_path, f"p.csv.{kind}") == [
        f"p.csv.{kind}:row 3: expected 2 columns as in the header, got 1"
    ]


def test_damaged_compressed_file_is_a_problem_not_a_traceback(tmp_path):
    whole = gzip.compress(b"".join((json.dumps(GOOD) + "\n").encode() for _ in range(200)))
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    msgs = problems_of(tmp_path, "cut.jsonl.gz")
    assert len(msgs) == 1
    assert msgs[0].startswith("cut.jsonl.gz:")
    assert "the gzip stream is damaged from here on (EOFError" in msgs[0]
    (tmp_path / "p.parquet.gz").write_bytes(b"x")
    (msg,) = problems_of(tmp_path, "p.parquet.gz")
    assert msg.startswith("p.parquet.gz: unsupported file type '.parquet.gz'")
