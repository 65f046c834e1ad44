"""Freshness: records too old to trust, and records that mention deprecated terms.

Age needs a date (meta['date'], from `pool.fields.date` or a source's `date`; see
`loop.provenance`). A record dated before `not_before`, or more than `max_age_days` before
`as_of` (default: today, UTC), is old: reason `outdated`, detail "dated 2021-04-02, before
2023-01-01". Records without a date are kept, dropped (`undated`) or flagged, as `undated` says.

Deprecated terms: each `deprecated` entry is a phrase (whole words, any case) or a regex; a
record whose user turns or answer match is flagged `deprecated:<pattern>` (or dropped,
reason `deprecated`), and meta['deprecated'] keeps [{term, found, replacement}] so review shows
what to use instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from loop.clean.base import Drop, StepContext, StepOutput, add_flags, with_meta
from loop.example import Example
from loop.provenance import example_date, parse_date
from loop.recipe import FreshnessConfig


def cutoff(cfg: FreshnessConfig, today: dt.date | None = None) -> dt.date | None:
    """The earliest date a record may carry: the later of not_before and as_of - max_age."""
    limits = []
    if cfg.not_before is not None:
        nb = parse_date(cfg.not_before)
        assert nb is not None  # the recipe check rejected it
        limits.append(nb.date())
    if cfg.max_age_days is not None:
        ref = parse_date(cfg.as_of) if cfg.as_of is not None else None
        base = ref.date() if ref is not None else (today or dt.datetime.now(dt.timezone.utc).date())
        limits.append(base - dt.timedelta(days=cfg.max_age_days))
    return max(limits) if limits else None


def _cutoff_text(cfg: FreshnessConfig, limit: dt.date) -> str:
    nb = parse_date(cfg.not_before).date() if cfg.not_before else None  # type: ignore[union-attr]
    if nb is not None and nb == limit:
        return f"before not_before {limit.isoformat()}"
    return f"more than {cfg.max_age_days} days old (cut-off {limit.isoformat()})"


def term_patterns(cfg: FreshnessConfig) -> list[tuple[str, re.Pattern[str], str | None]]:
    out = []
    for term in cfg.deprecated:
        if term.regex:
            pattern = re.compile(term.pattern, re.IGNORECASE)
        else:
            words = r"\s+".join(re.escape(w) for w in term.pattern.split())
            pattern = re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)
        out.append((term.pattern, pattern, term.replacement))
    return out


def _text(ex: Example) -> str:
    return "\n".join(m.content for m in ex.messages if m.role != "system")


def run(
    examples: list[Example],
    cfg: FreshnessConfig,
    ctx: StepContext,
    *,
    today: dt.date | None = None,
) -> StepOutput:
    limit = cutoff(cfg, today)
    terms = term_patterns(cfg)
    out = list(examples)
    drops: list[Drop] = []
    flagged: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for i, ex in enumerate(examples):
        if i % 50_000 == 0:
            ctx.tick("freshness", i, len(examples))
        when = example_date(ex)
        counts["dated" if when is not None else "undated"] += 1
        if when is None and cfg.undated != "keep":
            if cfg.undated == "drop":
                drops.append(Drop(i, "undated", "no date known (clean.freshness.undated: drop)"))
                continue
            out[i] = add_flags(out[i], ["undated"])
            flagged["undated"] += 1
        elif when is not None and limit is not None and when.date() < limit:
            detail = f"dated {when.date().isoformat()}, {_cutoff_text(cfg, limit)}"
            if cfg.policy == "drop":
                drops.append(Drop(i, "outdated", detail))
                continue
            out[i] = add_flags(out[i], ["outdated"])
            flagged["outdated"] += 1
        if not terms:
            continue
        text = _text(ex)
        hits = []
        for name, pattern, replacement in terms:
            m = pattern.search(text)
            if m:
                hits.append({"term": name, "found": m.group(), "replacement": replacement})
        if not hits:
            continue
        if cfg.deprecated_policy == "drop":
            first = hits[0]
            hint = f"; use {first['replacement']!r}" if first["replacement"] else ""
            drops.append(Drop(i, "deprecated", f"mentions {first['found']!r}{hint}"))
            continue
        names = [f"deprecated:{h['term']}" for h in hits]
        out[i] = with_meta(add_flags(out[i], names), deprecated=hits)
        flagged.update(names)
    ctx.tick("freshness", len(examples), len(examples))
    return StepOutput(out, tuple(drops), dict(sorted(flagged.items())), counts=dict(counts))
