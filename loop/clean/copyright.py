"""Copyright: records that carry a copyright notice or copy long spans of protected texts.

Notices: `©`, `(c) 2019`, `Copyright 2019` / `Copyright (c)`, `All rights reserved`,
`SPDX-License-Identifier:`, "Licensed under the … License", the MIT and GPL header sentences,
plus `clean.copyright.extra_notices` (regexes). Reason `copyright_notice`, detail: the notice
as found ("notice 'All rights reserved'").

Verbatim copies: every text file (.txt, .md) under `clean.copyright.protected` is hashed into word
n-grams of `min_span_words` words with the near-dup step's shingle hashing
(`near_dup.shingle_hashes`: lower-cased words, punctuation ignored). A record sharing any such
n-gram with a protected text shares a verbatim run of at least that many words; the detail names
the document and the longest run ("43-word span shared with protected/ch1.txt: 'it was the best
…'"). Reason `verbatim_copy`. The default 13 words follows the 8–13-gram overlap used in
contamination checks (GPT-3 and later reports); Lee et al. 2022 use 50 tokens.

Policy `drop` removes the record; `flag` keeps it with `copyright:notice` or `copyright:verbatim`
in meta['flags'].
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loop.clean.base import Drop, StepContext, StepOutput, add_flags
from loop.clean.near_dup import _SEPARATOR, shingle_hashes
from loop.errors import DataError
from loop.example import Example
from loop.recipe import CopyrightConfig

NOTICES: tuple[tuple[str, str], ...] = (
    ("symbol", r"©"),
    ("(c) year", r"\(c\)\s*(?:19|20)\d\d"),
    ("copyright", r"\bcopyright\s+(?:\(c\)|©|(?:19|20)\d\d)"),
    ("all rights reserved", r"\ball rights reserved\b"),
    ("spdx header", r"spdx-license-identifier\s*:"),
    ("license header", r"\blicensed under the [\w .\-]{0,40}licen[cs]e"),
    ("mit header", r"permission is hereby granted, free of charge"),
    ("gpl header", r"this program is free software[;:,] you can redistribute it"),
)
PROTECTED_SUFFIXES = (".txt", ".md")
_SNIPPET_WORDS = 8


@dataclass(frozen=True)
class ProtectedIndex:
    """Sorted n-gram hashes of the protected texts and the document of each."""

    hashes: np.ndarray  # (k,) uint64, sorted
    doc: np.ndarray  # (k,) int64: index into names
    names: tuple[str, ...]
    ngram: int


def word_count(text: str) -> int:
    """Words as the shingle hashing sees them (runs of letters, digits and non-ASCII)."""
    b = np.frombuffer(text.lower().encode("utf-8"), dtype=np.uint8)
    if not len(b):
        return 0
    in_word = (~_SEPARATOR[b]).view(np.int8)
    return int(np.count_nonzero(np.diff(in_word, prepend=np.int8(0)) == 1))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9\x80-\U0010ffff]+", text.lower())


def build_index(folder: Path, ngram: int) -> ProtectedIndex:
    if not folder.is_dir():
        raise DataError(f"clean.copyright.protected: {folder} is not a folder of texts")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in PROTECTED_SUFFIXES)
    if not files:
        raise DataError(
            f"clean.copyright.protected: no {'/'.join(PROTECTED_SUFFIXES)} file in {folder}"
        )
    texts, names = [], []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        if word_count(text) >= ngram:  # shorter texts hash as single words: not a span
            texts.append(text)
            names.append(p.relative_to(folder.parent).as_posix())
    if not texts:
        return ProtectedIndex(np.zeros(0, np.uint64), np.zeros(0, np.int64), (), ngram)
    flat, offsets = shingle_hashes(texts, "word", ngram)
    doc = np.repeat(np.arange(len(texts)), np.diff(offsets.astype(np.int64)))
    order = np.argsort(flat, kind="stable")
    return ProtectedIndex(flat[order], doc[order], tuple(names), ngram)


def _longest_run(hit: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in `hit`."""
    if not hit.any():
        return 0, 0
    padded = np.concatenate([[0], hit.astype(np.int8), [0]])
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


def verbatim_matches(texts: list[str], index: ProtectedIndex) -> list[tuple[str, int, str] | None]:
    """Per text: (protected document, words in the longest shared run, its opening) or None."""
    out: list[tuple[str, int, str] | None] = [None] * len(texts)
    if not len(index.hashes):
        return out
    long_enough = [i for i, t in enumerate(texts) if word_count(t) >= index.ngram]
    if not long_enough:
        return out
    flat, offsets = shingle_hashes([texts[i] for i in long_enough], "word", index.ngram)
    pos = np.searchsorted(index.hashes, flat)
    pos_c = np.minimum(pos, len(index.hashes) - 1)
    hit = index.hashes[pos_c] == flat
    for j, i in enumerate(long_enough):
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        h = hit[lo:hi]
        if not h.any():
            continue
        start, run = _longest_run(h)
        docs = index.doc[pos_c[lo + start : lo + start + run]]
        name = index.names[int(Counter(docs.tolist()).most_common(1)[0][0])]
        words = _words(texts[i])[start : start + min(_SNIPPET_WORDS, run + index.ngram - 1)]
        out[i] = (name, run + index.ngram - 1, " ".join(words))
    return out


def notice_matcher(cfg: CopyrightConfig) -> list[tuple[str, re.Pattern[str]]]:
    rules = [(name, re.compile(p, re.IGNORECASE)) for name, p in NOTICES] if cfg.notices else []
    rules += [
        (f"extra_notices[{i}]", re.compile(p, re.IGNORECASE))
        for i, p in enumerate(cfg.extra_notices)
    ]
    return rules


def _text(ex: Example) -> str:
    return "\n".join(m.content for m in ex.messages if m.role != "system")


def run(examples: list[Example], cfg: CopyrightConfig, ctx: StepContext) -> StepOutput:
    rules = notice_matcher(cfg)
    texts = [_text(ex) for ex in examples]
    verbatim: list[tuple[str, int, str] | None] = [None] * len(examples)
    if cfg.protected is not None:
        index = build_index(Path(cfg.protected), cfg.min_span_words)
        verbatim = verbatim_matches(texts, index)
    out = list(examples)
    drops: list[Drop] = []
    flagged: Counter[str] = Counter()
    for i, (ex, text) in enumerate(zip(examples, texts, strict=True)):
        if i % 50_000 == 0:
            ctx.tick("copyright", i, len(examples))
        found = None
        for _name, pattern in rules:
            m = pattern.search(text)
            if m:
                found = ("copyright_notice", f"notice {' '.join(m.group().split())!r}", "notice")
                break
        if found is None and verbatim[i] is not None:
            doc, words, opening = verbatim[i]
            found = (
                "verbatim_copy",
                f"{words}-word span shared with {doc}: {opening!r}…",
                "verbatim",
            )
        if found is None:
            continue
        reason, detail, flag = found
        if cfg.policy == "drop":
            drops.append(Drop(i, reason, detail))
        else:
            out[i] = add_flags(ex, [f"copyright:{flag}"])
            flagged[f"copyright:{flag}"] += 1
    ctx.tick("copyright", len(examples), len(examples))
    return StepOutput(out, tuple(drops), dict(sorted(flagged.items())))
