"""Pool ingestion: formats, field mapping, detection, bad input, encodings, tables, HF folders."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from loop.example import Message, content_id
from loop.pool import (
    SHOWN_PROBLEMS,
    PoolError,
    count_records,
    inspect_paths,
    load_pool,
    pool_digest,
)
from loop.recipe import FieldMap, PoolConfig

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def load(tmp_path: Path, *paths: str, **kw) -> object:
    return load_pool(PoolConfig(paths=paths, **kw), base_dir=tmp_path)


def problems_of(tmp_path: Path, *paths: str, **kw) -> list:
    with pytest.raises(PoolError) as info:
        load(tmp_path, *paths, **kw)
    return list(info.value.problems)


def roles(ex) -> list[str]:
    return [m.role for m in ex.messages]


# ---------------------------------------------------------------------------- the three formats


def test_instruction_format_joins_input_and_keeps_extra_fields(tmp_path):
    write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"instruction": "Add.", "input": "2 + 2", "output": "4", "task": "math", "lang": "en"},
            {"instruction": "Greet.", "input": "", "output": "Hello!"},
            {"instruction": "Greet.", "input": "   ", "output": "Hi."},
        ],
    )
    r = load(tmp_path, "p.jsonl", task_field="task")
    a, b, c = r.examples
    assert a.messages == (Message("user", "Add.\n\n2 + 2"), Message("assistant", "4"))
    assert a.format == "instruction"
    assert a.meta == {"task": "math", "lang": "en"}
    assert a.source == "p.jsonl:1"
    assert b.messages[0].content == "Greet."  # empty input adds nothing
    assert c.messages[0].content == "Greet."  # whitespace-only input is empty too
    assert r.counts_by_format == {"instruction": 3}
    assert r.files == ("p.jsonl",) and r.records == 3 and r.problems == ()


def test_chat_format_kept_as_given(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"messages": CHAT, "id": "x7"}])
    (ex,) = load(tmp_path, "c.jsonl").examples
    assert [(m.role, m.content) for m in ex.messages] == [(m["role"], m["content"]) for m in CHAT]
    assert ex.format == "chat"
    assert ex.meta == {"id": "x7"}
    assert ex.id == content_id(ex.messages)


def test_completion_format(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Once upon", "completion": " a time."}])
    (ex,) = load(tmp_path, "c.jsonl").examples
    assert ex.messages == (Message("user", "Once upon"), Message("assistant", " a time."))
    assert ex.format == "completion"


def test_dolly_field_mapping_and_task_field(tmp_path):
    write_jsonl(
        tmp_path / "dolly.jsonl",
        [
            {
                "instruction": "Who wrote Hamlet?",
                "context": "A play from about 1600.",
                "response": "Shakespeare.",
                "category": "open_qa",
            }
        ],
    )
    cfg = dict(fields=FieldMap(input="context", output="response"), task_field="category")
    (ex,) = load(tmp_path, "dolly.jsonl", **cfg).examples
    assert ex.messages == (
        Message("user", "Who wrote Hamlet?\n\nA play from about 1600."),
        Message("assistant", "Shakespeare."),
    )
    assert ex.meta == {"task": "open_qa"}  # the task field is not duplicated under its own name


def test_auto_detection_with_mixed_formats_in_one_file(tmp_path):
    write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"instruction": "i", "output": "o"},
            {"messages": CHAT},
            {"prompt": "p", "completion": "c"},
            {"instruction": "j", "output": "o2"},
        ],
    )
    r = load(tmp_path, "mixed.jsonl")
    assert [e.format for e in r.examples] == ["instruction", "chat", "completion", "instruction"]
    assert r.counts_by_format == {"instruction": 2, "chat": 1, "completion": 1}


def test_forced_format_reports_records_of_another_format(tmp_path):
    write_jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": "p", "completion": "c"}, {"instruction": "i", "output": "o"}],
    )
    (p,) = problems_of(tmp_path, "p.jsonl", format="completion")
    assert (p.source, p.reason) == ("p.jsonl:2", "missing_field")
    assert "`prompt`" in p.message


def test_system_prompt_and_system_field(tmp_path):
    write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"instruction": "i", "output": "o"},
            {"instruction": "i", "output": "o", "system": "Own system."},
            {"messages": CHAT},  # already has a system turn: kept, nothing prepended
            {"messages": CHAT[1:]},
            {"prompt": "p", "completion": "c"},
        ],
    )
    ex = load(tmp_path, "s.jsonl", system_prompt="Global.").examples
    assert ex[0].messages[0] == Message("system", "Global.")
    assert ex[1].messages[0] == Message("system", "Own system.") and len(ex[1].messages) == 3
    assert ex[1].meta == {}  # the system field is consumed, not copied to meta
    assert roles(ex[2]) == ["system", "user", "assistant"]
    assert ex[2].messages[0].content == "Be brief."
    assert ex[3].messages[0] == Message("system", "Global.")
    assert roles(ex[4]) == ["system", "user", "assistant"]
    plain = load(tmp_path, "s.jsonl").examples
    assert roles(plain[0]) == ["user", "assistant"]
    assert roles(plain[1]) == ["system", "user", "assistant"]


# ---------------------------------------------------------------------------- bad input


def bad_line_cases() -> list:
    chat_user_last = {"messages": [{"role": "user", "content": "hi"}]}
    return [
        ('{"instruction": "i", "output": "o"', "bad_json", "expected one JSON object per line"),
        (json.dumps({"instruction": "i"}), "missing_field", "field `output`"),
        (json.dumps({"instruction": "i", "output": "  "}), "empty_answer", "field `output`"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "human", "content": "hi"},
                        {"role": "assistant", "content": "x"},
                    ]
                }
            ),
            "unknown_role",
            "field `messages[0].role`",
        ),
        (json.dumps(chat_user_last), "no_final_assistant", "end with an assistant turn"),
        (
            json.dumps({"messages": [*CHAT[:2], {"role": "assistant", "content": ""}]}),
            "empty_answer",
            "field `messages[2].content`",
        ),
        (json.dumps({"messages": "hello"}), "bad_messages", "field `messages`"),
        (json.dumps({"messages": ["hi", "yo"]}), "bad_messages", "field `messages[0]`"),
        (json.dumps({"instruction": 3, "output": "o"}), "bad_type", "field `instruction`"),
        (json.dumps({"instruction": "", "output": "o"}), "empty_prompt", "field `instruction`"),
        (json.dumps({"text": "no format"}), "unknown_format", "cannot tell the record's format"),
        ("[1, 2]", "not_object", "expected a JSON object"),
    ]


@pytest.mark.parametrize(("line", "reason", "needle"), bad_line_cases())
def test_bad_jsonl_record_is_reported_with_file_line_field(tmp_path, line, reason, needle):
    good = json.dumps({"instruction": "i", "output": "o"})
    (tmp_path / "bad.jsonl").write_text(f"{good}\n{good}\n{line}\n{good}\n", encoding="utf-8")
    (p,) = problems_of(tmp_path, "bad.jsonl")
    assert p.source == "bad.jsonl:3"
    assert p.reason == reason
    assert p.message.startswith("bad.jsonl:3: ")
    assert needle in p.message
    assert "expected" in p.message


def test_non_utf8_byte(tmp_path):
    good = json.dumps({"instruction": "i", "output": "o"}).encode()
    (tmp_path / "b.jsonl").write_bytes(
        good + b"\n" + b'{"instruction": "caf\xe9", "output": "o"}\n'
    )
    (p,) = problems_of(tmp_path, "b.jsonl")
    assert (p.source, p.reason) == ("b.jsonl:2", "not_utf8")
    assert "0xe9" in p.message and "column 21" in p.message and "UTF-8" in p.message
    (tmp_path / "b.json").write_bytes(
        b'[\n{"prompt": "p", "completion": "c"},\n{"prompt": "\xff"}]'
    )
    (p,) = [q for q in problems_of(tmp_path, "b.json") if q.reason != "no_examples"]
    assert (p.source, p.reason) == ("b.json:3", "not_utf8")
    assert "0xff at column 13" in p.message


def test_a_lone_surrogate_escape_in_a_message_is_a_problem_not_a_crash(tmp_path):
    good = json.dumps({"instruction": "i", "output": "o"})
    lone = r'{"messages": [{"role": "user", "content": "hi \ud800"}, {"role": "assistant", "content": "ok"}]}'
    paired = r'{"prompt": "smile \ud83d\ude00", "completion": "ok"}'
    (tmp_path / "s.jsonl").write_text(f"{good}\n{lone}\n{paired}\n", encoding="utf-8")
    (p,) = problems_of(tmp_path, "s.jsonl")
    assert (p.source, p.reason) == ("s.jsonl:2", "bad_text")
    assert "message 0 (user, from field `messages`)" in p.message
    assert "'\\ud800' at character 3" in p.message and "expected" in p.message


def test_json_array_holding_a_non_object(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "p", "completion": "c"}, "oops"]))
    (p,) = problems_of(tmp_path, "a.json")
    assert (p.source, p.reason) == ("a.json[1]", "not_object")
    assert "got a string" in p.message


def test_csv_without_the_answer_column(tmp_path):
    (tmp_path / "t.csv").write_text("instruction,notes\nAdd 2+2,x\nGreet,y\n", encoding="utf-8")
    with pytest.raises(PoolError) as info:
        load(tmp_path, "t.csv")
    (p,) = [q for q in info.value.problems if q.reason != "no_examples"]
    assert (p.source, p.reason) == ("t.csv:row 1", "missing_column")
    assert "`output`" in p.message and "`completion`" in p.message and "'notes'" in p.message
    write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "p", "completion": "c"}])
    r = load(tmp_path, "t.csv", "ok.jsonl", on_error="skip")
    assert r.skipped_by_reason == {"missing_column": 2}  # both data rows are counted
    assert r.records == 3


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    problems = problems_of(tmp_path, name)
    assert problems[0].reason == "empty_file"
    assert problems[0].message.startswith(f"{name}: ")


def test_blank_lines_only_is_an_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n  \n\r\n")
    assert problems_of(tmp_path, "e.jsonl")[0].reason == "empty_file"


def test_missing_file_and_empty_glob_are_errors_even_when_skipping(tmp_path):
    write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "p", "completion": "c"}])
    problems = problems_of(tmp_path, "ok.jsonl", "nope.jsonl", "data/*.jsonl", on_error="skip")
    assert [(p.source, p.reason) for p in problems] == [
        ("nope.jsonl", "missing_file"),
        ("data/*.jsonl", "no_match"),
    ]
    assert "file not found" in problems[0].message


def test_directory_and_unknown_extension_are_errors(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    reasons = {p.source: p.reason for p in problems_of(tmp_path, "d", "notes.txt")}
    assert reasons == {"d": "not_a_file", "notes.txt": "unknown_extension"}


def test_fail_collects_every_problem_and_caps_the_message(tmp_path):
    lines = [json.dumps({"instruction": "i", "output": ""}) for _ in range(SHOWN_PROBLEMS + 7)]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(PoolError) as info:
        load(tmp_path, "bad.jsonl")
    assert len(info.value.problems) == SHOWN_PROBLEMS + 7
    text = str(info.value)
    assert f"{SHOWN_PROBLEMS + 7} problem(s)" in text
    assert "... and 7 more" in text
    assert f"bad.jsonl:{SHOWN_PROBLEMS}:" in text and f"bad.jsonl:{SHOWN_PROBLEMS + 1}:" not in text


def test_skip_counts_every_skipped_record_by_reason(tmp_path):
    write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"instruction": "i", "output": "o"},
            {"instruction": "i", "output": ""},
            {"instruction": "i"},
            {"messages": [{"role": "bot", "content": "x"}]},
            {"prompt": "p", "completion": "c"},
            {"instruction": "i", "output": ""},
        ],
    )
    with (tmp_path / "p.jsonl").open("a") as f:
        f.write("{nope\n")
    r = load(tmp_path, "p.jsonl", on_error="skip")
    assert len(r.examples) == 2
    assert r.skipped_by_reason == {
        "empty_answer": 2,
        "missing_field": 1,
        "unknown_role": 1,
        "bad_json": 1,
    }
    assert len(r.problems) == 5
    assert r.records == len(r.examples) + sum(r.skipped_by_reason.values())


def test_nothing_readable_always_raises(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"instruction": "i", "output": ""}])
    problems = problems_of(tmp_path, "p.jsonl", on_error="skip")
    assert [p.reason for p in problems] == ["empty_answer", "no_examples"]


# ---------------------------------------------------------------------------- encodings and size


def test_bom_and_crlf(tmp_path):
    body = "\r\n".join(
        [
            json.dumps({"instruction": "i", "output": "o"}),
            json.dumps({"prompt": "p", "completion": "c"}),
        ]
    )
    (tmp_path / "w.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode() + b"\r\n")
    r = load(tmp_path, "w.jsonl")
    assert [e.source for e in r.examples] == ["w.jsonl:1", "w.jsonl:2"]
    assert r.examples[0].answer == "o" and r.examples[1].answer == "c"  # no stray \r
    (tmp_path / "w.json").write_bytes(b"\xef\xbb\xbf" + b'[{"prompt": "p", "completion": "c"}]\r\n')
    assert load(tmp_path, "w.json").examples[0].answer == "c"


def test_csv_with_bom_and_crlf(tmp_path):
    text = 'instruction,input,output\r\nAdd.,2+2,4\r\n"Two\r\nlines",,ok\r\n'
    (tmp_path / "w.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    a, b = load(tmp_path, "w.csv").examples
    assert a.messages[0].content == "Add.\n\n2+2" and a.answer == "4"
    assert b.messages[0].content == "Two\r\nlines" and b.answer == "ok"


def test_fifty_megabyte_single_line(tmp_path):
    big = "x" * 50_000_000
    with (tmp_path / "big.jsonl").open("w") as f:
        f.write(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
        f.write('{"instruction": "Summarise.", "output": "' + big + '"}\n')
    start = time.perf_counter()
    r = load(tmp_path, "big.jsonl")
    assert time.perf_counter() - start < 10
    assert len(r.examples) == 2
    assert len(r.examples[1].answer) == 50_000_000
    assert r.examples[1].source == "big.jsonl:2"


# ---------------------------------------------------------------------------- other file kinds


def test_csv_rows_are_numbered_by_file_line(tmp_path):
    with (tmp_path / "t.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "completion", "source_id"])
        w.writerow(["first\nprompt", "c1", "7"])  # spans lines 2-3
        w.writerow(["p2", "", "8"])  # line 4: empty answer
        w.writerow(["p3", "c3", "9"])
    with pytest.raises(PoolError) as info:
        load(tmp_path, "t.csv")
    (p,) = info.value.problems
    assert (p.source, p.reason) == ("t.csv:row 4", "empty_answer")
    r = load(tmp_path, "t.csv", on_error="skip")
    assert [e.source for e in r.examples] == ["t.csv:row 2", "t.csv:row 5"]
    assert r.examples[0].meta == {"source_id": "7"}


def test_csv_with_messages_as_json_text_and_ragged_row(tmp_path):
    with (tmp_path / "t.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["messages", "task"])
        w.writerow([json.dumps(CHAT), "geo"])
        w.writerow(["not json", "geo"])
        w.writerow(["[]", "geo", "extra"])
    r = load(tmp_path, "t.csv", on_error="skip", task_field="task")
    (ex,) = r.examples
    assert ex.answer == "Paris." and ex.meta == {"task": "geo"}
    assert [(p.source, p.reason) for p in r.problems] == [
        ("t.csv:row 3", "bad_messages"),
        ("t.csv:row 4", "bad_row"),
    ]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "messages": [CHAT, None, [{"role": "user", "content": "q"}]],
            "instruction": [None, "Add.", None],
            "output": [None, "4", None],
            "score": [1.5, 2.0, 3.0],
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    r = load(tmp_path, "p.parquet", on_error="skip")
    assert [e.format for e in r.examples] == ["chat", "instruction"]
    assert [e.source for e in r.examples] == ["p.parquet[0]", "p.parquet[1]"]
    assert r.examples[0].meta == {"instruction": None, "output": None, "score": 1.5}
    assert [(p.source, p.reason) for p in r.problems] == [("p.parquet[2]", "no_final_assistant")]


def test_parquet_without_answer_column_and_unreadable_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["a", "b"]}), tmp_path / "q.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    reasons = {p.source: p.reason for p in problems_of(tmp_path, "q.parquet", "junk.parquet")}
    assert reasons == {"q.parquet": "missing_column", "junk.parquet": "bad_file"}


def test_json_array_and_data_object(tmp_path):
    recs = [{"instruction": "i", "output": "o"}, {"messages": CHAT}]
    (tmp_path / "a.json").write_text(json.dumps(recs))
    (tmp_path / "d.json").write_text(json.dumps({"data": recs, "version": 2}))
    r = load(tmp_path, "a.json", "d.json")
    assert [e.source for e in r.examples] == ["a.json[0]", "a.json[1]", "d.json[0]", "d.json[1]"]
    assert r.examples[0].id == r.examples[2].id
    assert r.files == ("a.json", "d.json")


def test_json_that_is_jsonl_or_neither(tmp_path):
    write_jsonl(tmp_path / "lines.json", [{"prompt": "p", "completion": "c"}] * 2)
    assert [e.source for e in load(tmp_path, "lines.json").examples] == [
        "lines.json:1",
        "lines.json:2",
    ]
    (tmp_path / "obj.json").write_text(json.dumps({"rows": []}))
    (p,) = [q for q in problems_of(tmp_path, "obj.json") if q.reason != "no_examples"]
    assert p.reason == "bad_document" and "'rows'" in p.message
    (tmp_path / "broken.json").write_text('[\n{"prompt": "p",\n')
    (p,) = [q for q in problems_of(tmp_path, "broken.json") if q.reason != "no_examples"]
    assert (p.source, p.reason) == ("broken.json:3", "bad_json")


def test_several_files_and_globs(tmp_path):
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"prompt": "a", "completion": "1"}])
    write_jsonl(tmp_path / "data" / "b.jsonl", [{"prompt": "b", "completion": "2"}])
    write_jsonl(tmp_path / "x.jsonl", [{"prompt": "x", "completion": "3"}])
    # a.jsonl named twice: read once
    r = load(tmp_path, "data/*.jsonl", "x.jsonl", "data/a.jsonl")
    assert r.files == ("data/a.jsonl", "data/b.jsonl", "x.jsonl")
    assert [e.messages[0].content for e in r.examples] == ["a", "b", "x"]
    absolute = load_pool(PoolConfig(paths=(str(tmp_path / "data" / "*.jsonl"),)))
    assert len(absolute.examples) == 2


def test_limit_and_progress(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"p{i}", "completion": "c"} for i in range(25)])
    calls: list[tuple[str, int]] = []
    r = load_pool(
        PoolConfig(paths=("p.jsonl",), limit=10),
        base_dir=tmp_path,
        progress=lambda f, n: calls.append((f, n)),
    )
    assert len(r.examples) == 10 and r.records == 10
    assert calls[-1] == ("p.jsonl", 10)


def test_hf_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {
        "instruction": ["Add.", "Greet.", "Nothing."],
        "input": ["2+2", "", ""],
        "output": ["4", "Hi", ""],
        "category": ["math", "chat", "misc"],
    }
    ds = datasets.Dataset.from_dict(rows)
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    r = load_pool(
        PoolConfig(hf_dataset="single", task_field="category", on_error="skip"), base_dir=tmp_path
    )
    assert [e.source for e in r.examples] == ["single[0]", "single[1]"]
    assert r.examples[0].messages[0].content == "Add.\n\n2+2"
    assert r.examples[0].meta == {"task": "math"}
    assert [(p.source, p.reason) for p in r.problems] == [("single[2]", "empty_answer")]
    test = load_pool(PoolConfig(hf_dataset="dd", hf_split="test"), base_dir=tmp_path)
    assert len(test.examples) == 1 and test.files == ("dd",)
    with pytest.raises(PoolError) as info:
        load_pool(PoolConfig(hf_dataset="dd", hf_split="validation"), base_dir=tmp_path)
    assert info.value.problems[0].reason == "dataset_error"
    assert "'validation'" in str(info.value) and "'test'" in str(info.value)
    assert count_records(PoolConfig(hf_dataset="dd"), base_dir=tmp_path) == 3
    with pytest.raises(PoolError, match="dataset_error"):
        count_records(PoolConfig(hf_dataset="dd", hf_split="dev"), base_dir=tmp_path)


# ---------------------------------------------------------------------------- ids, digest, inspect


def test_same_conversation_gets_the_same_id_across_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(
        tmp_path / "c.jsonl",
        [{"messages": CHAT[1:]}, {"instruction": "Capital of France?", "output": "Paris."}],
    )
    pq.write_table(pa.table({"messages": [CHAT[1:]]}), tmp_path / "c.parquet")
    (tmp_path / "c.csv").write_text("prompt,completion\nCapital of France?,Paris.\n")
    ids = {e.source: e.id for e in load(tmp_path, "c.jsonl", "c.parquet", "c.csv").examples}
    assert len(set(ids.values())) == 1, ids
    other = write_jsonl(
        tmp_path / "o.jsonl", [{"prompt": "Capital of Spain?", "completion": "Madrid."}]
    )
    assert load(tmp_path, other.name).examples[0].id not in ids.values()


def test_pool_digest_is_order_free_and_content_sensitive(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"p{i}", "completion": "c"} for i in range(5)])
    ex = list(load(tmp_path, "p.jsonl").examples)
    d = pool_digest(ex)
    assert len(d) == 64 and d == pool_digest(reversed(ex))
    assert pool_digest(ex[:-1]) != d


def test_inspect_paths_reports_without_raising(tmp_path):
    write_jsonl(
        tmp_path / "m.jsonl",
        [{"prompt": f"p{i}", "completion": "c"} for i in range(5)]
        + [{"messages": CHAT}, {"instruction": "i", "output": ""}],
    )
    r = inspect_paths(["m.jsonl", "missing.jsonl"], n_samples=2, base_dir=tmp_path)
    assert r.counts_by_format == {"completion": 5, "chat": 1}
    assert [e.format for e in r.examples] == ["completion", "completion", "chat"]
    assert {(p.source, p.reason) for p in r.problems} == {
        ("missing.jsonl", "missing_file"),
        ("m.jsonl:7", "empty_answer"),
    }


def test_count_records(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "completion": "c"}] * 4)
    with (tmp_path / "p.jsonl").open("a") as f:
        f.write("{bad\n\n")
    (tmp_path / "t.csv").write_text("prompt,completion\na,b\nc,d\n")
    assert count_records(PoolConfig(paths=("p.jsonl", "t.csv")), base_dir=tmp_path) == 7
    assert count_records(PoolConfig(paths=("p.jsonl",), limit=2), base_dir=tmp_path) == 2
    with pytest.raises(PoolError):
        count_records(PoolConfig(paths=("none.jsonl",)), base_dir=tmp_path)
