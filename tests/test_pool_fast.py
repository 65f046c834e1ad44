"""The fast pool reader (msgspec for lines and id bytes, collector paused) against the reference:
the json module for every line and json.dumps for the ids, as loop read pools before."""

from __future__ import annotations

import gc
import hashlib
import json
import unicodedata
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import loop.pool
from loop.example import Message, content_id
from loop.pool import PoolError, load_pool
from loop.recipe import PoolConfig


def reference_content_id(messages) -> str:
    """content_id as it was written before msgspec: json.dumps of the normalized pairs."""
    payload = json.dumps(
        [[m.role, unicodedata.normalize("NFC", m.content).strip()] for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# Lines the fast reader must read exactly as the json module does, or fail on with the same words.
LINES: list[bytes] = [
    # every shape, with unicode, escapes and numbers in the fields that make the id
    rb'{"instruction": "Sum?", "input": "2 + 3", "output": 5, "task": "math", "w": 0.1}',
    rb'{"instruction": "caf\u0065\u0301 \ud83d\ude00", "output": "\u00fcber\t\"q\" \\ \u2028"}',
    '{"prompt": "raw UTF-8: Größe, 中文, עברית, 😀", "completion": "  padded  "}'.encode(),
    rb'{"prompt": "float answer", "completion": 2.5E+10, "n": -0.0, "m": 1e-7}',
    rb'{"prompt": "big int answer", "completion": 123456789012345678901234567890}',
    rb'{"prompt": "u64 edge", "completion": 18446744073709551616, "i": -9223372036854775809}',
    rb'{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q\u0000"},'
    rb' {"role": "assistant", "content": "a\u001f\u007f"}]}',
    rb'{"messages": [{"role": "user", "content": [{"type": "text", "text": "p1"},'
    rb' {"type": "input_text", "text": "p2"}]}, {"role": "assistant", "content": "done"}]}',
    rb'{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],'
    rb' "system": "brief"}',
    rb'{"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant",'
    rb' "content": "4"}]}',
    # values msgspec refuses and the json module reads: NaN, infinities, lone surrogates
    rb'{"prompt": "nan in meta", "completion": "ok", "score": NaN, "hi": Infinity, "lo": -Infinity}',
    rb'{"prompt": "overflow", "completion": 1e400}',
    rb'{"prompt": "lone surrogate in meta", "completion": "ok", "note": "\ud800"}',
    # duplicate keys: the last one wins in both
    rb'{"prompt": "first", "prompt": "second", "completion": "dup"}',
    # deep nesting in meta
    rb'{"prompt": "deep", "completion": "ok", "tree": ' + b"[" * 200 + b"]" * 200 + b"}",
    # bad records: each must give the same problem, word for word
    rb'{"prompt": "trailing comma", "completion": "x",}',
    b'{"prompt": "raw tab \t inside", "completion": "x"}',
    b'{"prompt": "not utf-8 \xff", "completion": "x"}',
    b'{"prompt": "surrogate bytes \xed\xa0\x80", "completion": "x"}',
    '\ufeff{"prompt": "a BOM past line 1", "completion": "x"}'.encode(),
    rb'["a", "list"]',
    rb'{"prompt": "two objects"}{"completion": "x"}',
    rb'{"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]}',
    rb'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 7}]}',
    rb'{"messages": [{"role": "user", "content": "q"}, {"content": "a"}]}',
    rb'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}',
    rb'{"messages": [{"role": "user", "content": "q"}, "not a turn"]}',
    rb'{"messages": [{"role": "user", "content": [{"type": "image", "url": "x"}]},'
    rb' {"role": "assistant", "content": "a"}]}',
    rb'{"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}',
    rb'{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": null}]}',
    rb'{"conversations": [{"from": "human", "value": "q"}, {"value": "a"}]}',
    rb'{"instruction": "", "output": "no prompt"}',
    rb'{"instruction": "no answer", "output": "   "}',
    rb'{"instruction": ["a list"], "output": "x"}',
    rb'{"unknown": "format"}',
    rb"",
    rb"   ",
]


def write(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    # the first line starts with a BOM, which the reader drops
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(LINES) + b"\n")
    return path


def outcome(result) -> str:
    """Everything a load gives back, as text: an int and a float with equal values differ."""
    return json.dumps(
        {
            "examples": [ex.to_dict() for ex in result.examples],
            "problems": [[p.source, p.reason, p.message] for p in result.problems],
            "counts": result.counts_by_format,
            "skipped": result.skipped_by_reason,
            "records": result.records,
        },
        ensure_ascii=True,  # lone surrogates in meta stay writable
    )


def reference_load(cfg: PoolConfig, monkeypatch) -> object:
    """load_pool with every line left to the json module and ids through json.dumps."""

    def refuse(raw: bytes) -> object:
        raise msgspec.DecodeError("reference path: the json module reads every line")

    with monkeypatch.context() as m:
        m.setattr(loop.pool.msgspec.json, "decode", refuse)
        m.setattr(loop.pool, "content_id", reference_content_id)
        return load_pool(cfg)


def test_fast_reader_gives_what_the_json_module_gives(tmp_path, monkeypatch):
    cfg = PoolConfig(paths=(str(write(tmp_path)),), on_error="skip", task_field="task")
    fast, reference = load_pool(cfg), reference_load(cfg, monkeypatch)
    assert outcome(fast) == outcome(reference)
    # the pool holds what it was written to hold, so the comparison is not between two empties
    assert len(fast.examples) == 15 and len(fast.problems) == 20
    by_line = {ex.source.rsplit(":", 1)[1]: ex for ex in fast.examples}
    assert by_line["5"].answer == "123456789012345678901234567890"  # no float on the way
    assert by_line["6"].meta["i"] == -9223372036854775809
    assert by_line["11"].meta["score"] != by_line["11"].meta["score"]  # NaN
    assert by_line["12"].answer == "inf"
    assert by_line["14"].messages[0].content == "second"


def test_fast_reader_fails_a_pool_with_the_same_problems(tmp_path, monkeypatch):
    cfg = PoolConfig(paths=(str(write(tmp_path)),))
    with pytest.raises(PoolError) as fast:
        load_pool(cfg)
    with pytest.raises(PoolError) as reference:
        reference_load(cfg, monkeypatch)
    assert str(fast.value) == str(reference.value)
    assert fast.value.problems == reference.value.problems
    messages = "\n".join(p.message for p in fast.value.problems)
    for words in (
        "mixed.jsonl:16: not valid JSON (Expecting property name enclosed in double quotes at "
        "column 48); expected one JSON object per line",
        "mixed.jsonl:17: not valid JSON (Invalid control character at at column 21)",
        "mixed.jsonl:18: byte 0xff at column 23 is not UTF-8; expected UTF-8 text",
        "mixed.jsonl:20: not valid JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1)",
        "mixed.jsonl:25: field `messages[1].role`: expected one of system, user, assistant, got "
        "nothing",
    ):
        assert words in messages


def test_msgspec_writes_the_bytes_json_dumps_writes_for_every_code_point():
    # the content id hashes these bytes: one code point written differently changes ids
    texts = [f"a{chr(cp)}b" for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    reference = json.dumps(texts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert msgspec.json.encode(texts) == reference


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        # past 64 bits ints must stay ints; the bounds keep clear of Python's 4300-digit limit
        st.integers(min_value=-(10**100), max_value=10**100).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.25e}"),
        st.decimals(
            min_value=-(10**30), max_value=10**30, allow_nan=False, allow_infinity=False
        ).map(lambda d: f"{d:f}"),
    )
)
def test_msgspec_reads_numbers_as_the_json_module_does(text):
    # a numeric answer becomes the answer text (str(value)), so it reaches the content id
    value = json.loads(text)
    assert repr(msgspec.json.decode(text.encode())) == repr(value)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text(max_size=40)),
        min_size=1,
        max_size=5,
    )
)
def test_content_id_matches_the_json_dumps_reference(turns):
    messages = [Message(role, text) for role, text in turns]
    assert content_id(messages) == reference_content_id(messages)


@pytest.mark.parametrize("enabled", [True, False])
def test_a_load_leaves_the_garbage_collector_as_it_found_it(tmp_path, enabled):
    path = write(tmp_path)
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        load_pool(PoolConfig(paths=(str(path),), on_error="skip"))
        assert gc.isenabled() is enabled
        with pytest.raises(PoolError):  # a load that raises restores it too
            load_pool(PoolConfig(paths=(str(path),)))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_load_keeps_objects_the_program_froze_frozen(tmp_path):
    path = write(tmp_path)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        load_pool(PoolConfig(paths=(str(path),), on_error="skip"))
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
