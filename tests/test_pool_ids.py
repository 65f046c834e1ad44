"""Content ids are pinned: cached cleaning results, manifests and pool digests depend on them.

The expected ids below were computed with the code on main at c581b5b (json.dumps of the
normalized [role, content] list, sha256), before the JSON reader and the id changed. They must
never change: a change here silently invalidates every cache keyed on an example id.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.example import Message, content_id
from loop.pool import load_pool
from loop.recipe import FieldMap, PoolConfig

# One hand-made record per shape; the JSON text is written as-is, so escapes and number
# spellings reach the reader exactly as here.
LINES = [
    # instruction / input / output
    r'{"instruction": "Add the numbers.", "input": "2 + 3", "output": "5"}',
    # instruction, empty input, system field, padding that the id trims
    r'{"instruction": "  Say hi  ", "input": "", "output": "\tHi!\n", "system": "Be terse."}',
    # instruction with a numeric (int) answer and an extra field
    r'{"instruction": "How many legs has a spider?", "output": 8, "task": "qa", "n": 1.5}',
    # prompt / completion, float answer
    r'{"prompt": "One tenth as a decimal:", "completion": 0.1}',
    # prompt / completion with escapes: quotes, backslash, control chars, DEL, U+2028
    r'{"prompt": "Quote \"this\" \\ and \u0001\u001f\b\f\r", "completion": "a\u007fb\u2028c\u2029d"}',
    # chat messages with NFD text (e + combining acute) and emoji
    r'{"messages": [{"role": "system", "content": "Caf\u0065\u0301"}, {"role": "user", "content": "\ud83d\ude00 caf\u00e9?"}, {"role": "assistant", "content": "\u00fcber \u4e2d\u6587 \u05e2\u05d1"}]}',
    # chat messages, multi-turn, raw (unescaped) UTF-8 and trailing space
    '{"messages": [{"role": "user", "content": "Größe?"}, {"role": "assistant", "content": "groß  "}, {"role": "user", "content": "und?"}, {"role": "assistant", "content": "ñ"}], "origin": "x"}',
    # chat content-part lists
    r'{"messages": [{"role": "user", "content": [{"type": "text", "text": "Part one"}, {"type": "input_text", "text": "part two"}]}, {"role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}]}',
    # ShareGPT with a system field beside the turns
    r'{"conversations": [{"from": "human", "value": "Capital of France?"}, {"from": "gpt", "value": "Paris."}], "system": "Be brief."}',
    # ShareGPT with a system turn and more speakers
    r'{"conversations": [{"from": "system", "value": "sys"}, {"from": "user", "value": "q1"}, {"from": "chatgpt", "value": "a1"}, {"from": "human", "value": "q2"}, {"from": "bard", "value": "a2"}]}',
    # conversational prompt / completion (TRL)
    r'{"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}',
    # conversational prompt with a string completion
    r'{"prompt": [{"role": "system", "content": "math"}, {"role": "user", "content": "3*3?"}], "completion": "9"}',
    # large int, exponent float and negative zero as answers
    r'{"instruction": "big", "output": 123456789012345678901234567890}',
    r'{"instruction": "tiny", "output": 1e-7}',
    r'{"prompt": "neg zero", "completion": -0.0}',
    r'{"prompt": "exp", "completion": 2.5E+10, "meta_float": 3.141592653589793}',
]
# With pool.fields.answer = "ideal": a prompt given as messages and the answer beside it.
ANSWER_LINES = [
    r'{"messages": [{"role": "user", "content": "Pick A or B"}], "ideal": "B"}',
    r'{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "1 or 2"}], "ideal": 2}',
]
# With pool.system_prompt = "You are helpful.": prepended where a record has none.
SYSTEM_LINES = [
    r'{"instruction": "Name a colour.", "output": "Blue."}',
    r'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
]

# Computed with main at c581b5b (before this change); see the module docstring.
LINES_IDS = [
    "bf0c70cb17308b8c",
    "70b171f6796c6fa0",
    "cadb3518d35d5ff8",
    "ec43279376b47b68",
    "42eede6e5bf3b8a4",
    "f446a949691d24dc",
    "76975f298acd8477",
    "2bf1725ea2a5334c",
    "bbf76c4ee6963faa",
    "efd332a7689bee29",
    "88dd5474f0d64528",
    "7c1b0de1af881016",
    "0c9fd0dd3c74fccb",
    "2546bbdb4a6e7800",
    "1501a266ff3bbcd2",
    "68e40245bf52fdd0",
]
ANSWER_LINES_IDS = ["63211c68defe3072", "1873c4c077f73c59"]
SYSTEM_LINES_IDS = ["d30c606b2fafc4cd", "1d412a7add859c7a"]
DIRECT_IDS = ["e8707ea69a2cecef", "8c59150b3d380425", "b9a0d3ea8e66d47e"]

CONTROL = "".join(chr(i) for i in range(32))
DIRECT = [
    [Message("user", CONTROL + "x"), Message("assistant", "\x7f\u0085\u00a0\u2028\u2029\ufeff")],
    [
        Message("user", "e\u0301 \u212b \ufb01"),
        Message("assistant", "\U0001f600\U00010000\U0010ffff"),
    ],
    [Message("system", " "), Message("user", '"\\/'), Message("assistant", "</script>&<>'")],
]


def ids_of(tmp_path: Path, lines: list[str], **kw) -> list[str]:
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [ex.id for ex in load_pool(PoolConfig(paths=(str(path),), **kw)).examples]


@pytest.mark.parametrize(
    ("lines", "expected", "kw"),
    [
        (LINES, LINES_IDS, {}),
        (ANSWER_LINES, ANSWER_LINES_IDS, {"fields": FieldMap(answer="ideal")}),
        (SYSTEM_LINES, SYSTEM_LINES_IDS, {"system_prompt": "You are helpful."}),
    ],
    ids=["formats", "answer-field", "system-prompt"],
)
def test_pool_ids_are_pinned(tmp_path, lines, expected, kw):
    assert ids_of(tmp_path, lines, **kw) == expected


def test_content_id_is_pinned_for_control_characters_and_unicode():
    assert [content_id(m) for m in DIRECT] == DIRECT_IDS
