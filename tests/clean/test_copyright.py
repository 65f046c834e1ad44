"""The copyright step: planted notices and a planted verbatim span, with exact drop reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.clean import copyright
from loop.clean.base import StepContext
from loop.errors import DataError
from loop.example import Message, make_example
from loop.recipe import CopyrightConfig

BOOK = (
    "It was a bright cold day in April and the clocks were striking thirteen while the wind "
    "swept the dust along the narrow streets of the old town and nobody looked up at the sky"
)


def ex(prompt: str, answer: str):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)], source=prompt[:10], format="chat"
    )


def run(pool, **cfg):
    return copyright.run(pool, CopyrightConfig(**cfg), StepContext())


def test_planted_notices_are_dropped_naming_the_notice():
    pool = [
        ex("Write a header", "# Copyright 2019 Acme Corp.\nprint('hi')"),
        ex("Quote it", "Text © Penguin Books"),
        ex("Footer?", "All Rights Reserved."),
        ex("License line", "// SPDX-License-Identifier: Apache-2.0\nint x;"),
        ex("What license?", "Licensed under the Apache License, Version 2.0"),
        ex("Write a poem about rights", "Everyone has rights; reserve a seat for me."),
        ex("What does (c) mean in math?", "(c) is the third item of a list."),
    ]
    out = run(pool)
    assert [(d.index, d.reason, d.detail) for d in out.drops] == [
        (0, "copyright_notice", "notice 'Copyright 2019'"),
        (1, "copyright_notice", "notice '©'"),
        (2, "copyright_notice", "notice 'All Rights Reserved'"),
        (3, "copyright_notice", "notice 'SPDX-License-Identifier:'"),
        (4, "copyright_notice", "notice 'Licensed under the Apache License'"),
    ]


def protected(tmp_path: Path) -> Path:
    folder = tmp_path / "protected"
    folder.mkdir()
    (folder / "novel.txt").write_text(BOOK)
    (folder / "other.md").write_text(
        "A completely different text about gardening and tomatoes. " * 3
    )
    (folder / "short.txt").write_text("thirteen")  # shorter than a span: never matched
    return folder


def test_planted_verbatim_span_names_the_document_and_span(tmp_path: Path):
    copied = " ".join(BOOK.split()[3:23])  # 20 words of the novel
    pool = [
        ex("Continue the story", f"Sure! {copied.upper()}, and then it rained."),
        ex(
            "Describe a day", "It was a bright day in April and the clocks were loud."
        ),  # 7-word run
        ex("One word", "thirteen"),
    ]
    out = run(pool, protected=str(protected(tmp_path)), min_span_words=13)
    assert [(d.index, d.reason, d.detail) for d in out.drops] == [
        (
            0,
            "verbatim_copy",
            "20-word span shared with protected/novel.txt: "
            "'bright cold day in april and the clocks'…",
        )
    ]


def test_flag_policy_keeps_and_marks(tmp_path: Path):
    pool = [ex("q", "© 2020 me"), ex("q2", " ".join(BOOK.split()[:15])), ex("q3", "fine")]
    out = run(pool, policy="flag", protected=str(protected(tmp_path)))
    assert out.drops == ()
    assert [e.meta.get("flags") for e in out.examples] == [
        ["copyright:notice"],
        ["copyright:verbatim"],
        None,
    ]
    assert out.flagged == {"copyright:notice": 1, "copyright:verbatim": 1}


def test_notices_off_and_extra_notices():
    pool = [ex("q", "© 2020 me"), ex("q2", "Property of ACME internal")]
    out = run(pool, notices=False, extra_notices=(r"property of acme",))
    assert [(d.index, d.detail) for d in out.drops] == [(1, "notice 'Property of ACME'")]


def test_protected_folder_without_texts_is_an_error(tmp_path: Path):
    with pytest.raises(DataError, match="no .txt/.md file in"):
        run([ex("q", "a")], protected=str(tmp_path))
