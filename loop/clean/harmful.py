"""Harmful content: an offline category regex list (`loop.clean.harmful_terms`).

Each user turn and the answer are matched, lower-cased, against the shipped categories (weapons,
drugs, cyber, violence, self_harm, sexual_minors, fraud, hate) and `clean.harmful.extra_terms`
(literal phrases, whole words, category `custom`). Policy `drop` removes a match (`harmful`,
detail: category and matched text); `flag` keeps it with `harmful:<category>` in meta['flags'].

Why a list: nothing offline that was tried catches requests for harmful instructions. detoxify
downloads its checkpoint at first use; alt-profanity-check finds insults, not requests, and pins
scikit-learn/joblib exactly; better-profanity flags "kill a Python process".

Limits, stated plainly: English only; explicit phrasings only, so paraphrase, euphemism,
misspelling, leetspeak, other languages and multi-turn build-ups get through; harmful answers
to innocuous-looking prompts are missed unless the answer itself says "how to ..."; context is
ignored, so fiction, news, safety research and refusals that quote the request do match. Treat
it as a floor, and sample the result with `loop review export`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from loop.clean.base import Drop, StepContext, StepOutput, add_flags
from loop.clean.harmful_terms import CATEGORIES
from loop.example import Example
from loop.recipe import HarmfulConfig


@dataclass(frozen=True)
class Matcher:
    # (category, trigger or None, pattern); `any_trigger` skips texts no rule can match
    rules: tuple[tuple[str, re.Pattern[str] | None, re.Pattern[str]], ...]
    any_trigger: re.Pattern[str]

    def find(self, text: str) -> tuple[str, str] | None:
        """(category, matched text) of the first rule that matches, or None."""
        low = text.lower()
        if not self.any_trigger.search(low):
            return None
        for name, trigger, pattern in self.rules:
            if trigger is not None and not trigger.search(low):
                continue
            m = pattern.search(low)
            if m:
                return name, " ".join(m.group().split())[:80]
        return None


def matcher(cfg: HarmfulConfig) -> Matcher:
    rules: list[tuple[str, str | None, str]] = [
        (name, trigger, pattern) for name, group in CATEGORIES.items() for trigger, pattern in group
    ]
    terms = [t.strip().lower() for t in cfg.extra_terms if t.strip()]
    if terms:
        custom = "|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in terms)
        rules.insert(0, ("custom", None, custom))
    any_trigger = re.compile("|".join(f"(?:{t if t is not None else p})" for _, t, p in rules))
    compiled = tuple(
        (name, re.compile(t) if t is not None else None, re.compile(p)) for name, t, p in rules
    )
    return Matcher(compiled, any_trigger)


def run(examples: list[Example], cfg: HarmfulConfig, ctx: StepContext) -> StepOutput:
    m = matcher(cfg)
    out = list(examples)
    drops: list[Drop] = []
    flagged: Counter[str] = Counter()
    for i, ex in enumerate(examples):
        if i % 50_000 == 0:
            ctx.tick("harmful", i, len(examples))
        hit = None
        for msg in ex.messages:
            if msg.role != "system":
                hit = m.find(msg.content)
                if hit:
                    break
        if hit is None:
            continue
        category, text = hit
        if cfg.policy == "drop":
            drops.append(Drop(i, "harmful", f"{category}: {text!r}"))
        else:
            out[i] = add_flags(ex, [f"harmful:{category}"])
            flagged[f"harmful:{category}"] += 1
    ctx.tick("harmful", len(examples), len(examples))
    return StepOutput(out, tuple(drops), dict(sorted(flagged.items())))
