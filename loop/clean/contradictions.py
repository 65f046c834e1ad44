"""Contradictory answers: the same prompt with materially different answers.

Prompts are "the same" when equal after NFKC, case folding, removing punctuation and collapsing
whitespace (all prompt messages, system included), so "What is 2+2?" and "what is 2 + 2" meet;
paraphrased prompts do not (near_dedup / semantic_dedup with `on: prompt` catch those).
Two answers differ materially when their similarity is below `clean.contradictions.similarity`:
difflib's ratio over the word sequences of the normalized answers (JSON answers are compared in
canonical form, keys sorted). "Paris" vs "Paris, France" is 0.67: different at the default 0.9.

In each group of equal prompts, the representative is the highest quality score, then the first
seen. `keep_one` drops the members whose answer differs from the representative's; `drop_all`
drops the whole group when any member's answer differs from it; `flag` marks every member of
such a group with `contradiction` in meta['flags']; `newest` keeps the latest-dated member
(meta['date']; ties and undated groups fall back to `keep_one`'s choice) and drops the members
whose answer differs from it, each detail naming both dates. Reason code: `contradiction`.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections import defaultdict

from loop.clean.base import Drop, StepContext, StepOutput, add_flags
from loop.clean.format_check import looks_like_json, unwrap
from loop.clean.quality import best_index
from loop.example import Example
from loop.provenance import example_date
from loop.recipe import ContradictionsConfig

_PUNCT = re.compile(r"[^\w\s]")


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    return _PUNCT.sub(" ", text).split()


def prompt_key(ex: Example) -> tuple[tuple[str, str], ...]:
    return tuple((m.role, " ".join(_words(m.content))) for m in ex.prompt)


def _answer_tokens(answer: str) -> list[str]:
    if looks_like_json(answer):
        try:
            return _words(json.dumps(json.loads(unwrap(answer)), sort_keys=True))
        except json.JSONDecodeError:
            pass
    return _words(answer)


def answer_similarity(a: str, b: str) -> float:
    """Similarity of two answers in [0, 1] (1 = the same words in the same order)."""
    wa, wb = _answer_tokens(a), _answer_tokens(b)
    if wa == wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def _day(when) -> str:
    if when is None:
        return "undated"
    return when.date().isoformat() if when.time().isoformat() == "00:00:00" else when.isoformat()


def run(examples: list[Example], cfg: ContradictionsConfig, ctx: StepContext) -> StepOutput:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[prompt_key(ex)].append(i)
    out = list(examples)
    drops: list[Drop] = []
    flagged = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        rep = best_index(members, examples, ctx)
        dates = {}
        if cfg.policy == "newest":
            dates = {i: example_date(examples[i]) for i in members}
            dated = [i for i in members if dates[i] is not None]
            if dated:
                latest = max(dates[i] for i in dated)
                rep = best_index([i for i in dated if dates[i] == latest], examples, ctx)
        rep_answer = examples[rep].answer
        sims = {i: answer_similarity(rep_answer, examples[i].answer) for i in members if i != rep}
        differing = {i: s for i, s in sims.items() if s < cfg.similarity}
        if not differing:
            continue
        rep_id = examples[rep].id
        if cfg.policy == "newest":
            rep_date = _day(dates.get(rep))
            for i, s in differing.items():
                mine = _day(dates.get(i))
                detail = (
                    f"older answer ({mine}) than {rep_id}'s ({rep_date}), similarity {s:.2f}"
                    if rep_date != "undated"
                    else f"answer differs from {rep_id}'s (no dates; similarity {s:.2f})"
                )
                drops.append(Drop(i, "contradiction", detail, duplicate_of=rep_id))
        elif cfg.policy == "keep_one":
            for i, s in differing.items():
                detail = f"answer differs from {rep_id}'s (similarity {s:.2f})"
                drops.append(Drop(i, "contradiction", detail, duplicate_of=rep_id))
        elif cfg.policy == "drop_all":
            n = len(members)
            for i in members:
                detail = f"{n} records share this prompt with differing answers"
                drops.append(Drop(i, "contradiction", detail))
        else:
            for i in members:
                out[i] = add_flags(out[i], ["contradiction"])
                flagged += 1
    drops.sort(key=lambda d: d.index)
    return StepOutput(out, tuple(drops), {"contradiction": flagged} if flagged else {})
