"""PII: emails, phone numbers, IP addresses, card numbers and configured patterns.

Detectors (all offline):
- `email`: a conservative address regex.
- `phone`: Google's libphonenumber port `phonenumbers` (`PhoneNumberMatcher`, leniency VALID,
  default region from `clean.pii.phone_region`), run only on texts with 7+ digits in a row
  (separators allowed), so free text without numbers costs one regex scan.
- `ip`: dotted-quad IPv4 (each part <= 255) and IPv6 checked with `ipaddress`. Version
  strings with four numeric parts ("1.2.3.4") are indistinguishable and count as IPs.
- `credit_card`: 13-19 digits (spaces or dashes allowed) passing the Luhn check.
- `clean.pii.patterns`: extra named regexes; the placeholder is the upper-cased name.
Overlapping matches resolve to the first kind in that priority: configured patterns, email,
credit_card, ip, phone.

Policies: `anonymize` replaces each match in every message with a typed placeholder (`<EMAIL>`,
`<PHONE>`, `<IP>`, `<CREDIT_CARD>`, `<EMPLOYEE_ID>`, ...), recomputes the example id from the new
content and keeps the old one in meta['original_id']; `drop` removes the record (`pii`);
`flag` keeps it and adds `pii:<kind>` to meta['flags'].

Limits: person names, street addresses and other free-form identifiers are not detected.
Names need a named-entity model; presidio-analyzer with a spaCy model works offline but runs a
model over every document, where this step's regexes + phonenumbers ran at 42k rows/s on 2 shared
cores (benchmarks/results/figures/clean_pool_200k.txt), so names are left to a sampled review
(`loop review export`) or a separate background pass.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loop.clean.base import Drop, StepContext, StepOutput, add_flags, with_meta
from loop.example import Example, Message, content_id
from loop.recipe import PII_KINDS, PiiConfig

KINDS: tuple[str, ...] = PII_KINDS
PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP>",
    "credit_card": "<CREDIT_CARD>",
}

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_DIGIT_DOT = re.compile(r"\d\.\d")
_DIGIT_RUN = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6,}")
# Every built-in detector needs one of these (email "@", IPv6 ":", the rest a digit): a text
# without any is passed after one scan instead of three.
_ANY_SIGN = re.compile(r"[@:\d]")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Detector:
    """Compiled detectors for one PiiConfig."""

    kinds: tuple[str, ...]
    patterns: tuple[tuple[str, re.Pattern[str]], ...]
    region: str

    def find(self, text: str) -> list[Span]:
        """Non-overlapping PII spans in `text`, in text order."""
        if not self.patterns and _ANY_SIGN.search(text) is None:
            return []
        found: list[Span] = []
        for name, pattern in self.patterns:
            found += [Span(m.start(), m.end(), name) for m in pattern.finditer(text)]
        kinds = self.kinds
        if "email" in kinds and "@" in text:
            found += [Span(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
        digit_run = _DIGIT_RUN.search(text) is not None
        if "credit_card" in kinds and digit_run:
            for m in _CARD.finditer(text):
                digits = re.sub(r"\D", "", m.group())
                if 13 <= len(digits) <= 19 and luhn_ok(digits):
                    found.append(Span(m.start(), m.end(), "credit_card"))
        if "ip" in kinds:
            if _DIGIT_DOT.search(text):
                found += [Span(m.start(), m.end(), "ip") for m in _IPV4.finditer(text)]
            if "::" in text or text.count(":") >= 7:
                for m in _IPV6.finditer(text):
                    try:
                        ipaddress.IPv6Address(m.group())
                    except ValueError:
                        continue
                    found.append(Span(m.start(), m.end(), "ip"))
        if "phone" in kinds and digit_run:
            import phonenumbers

            matcher = phonenumbers.PhoneNumberMatcher(
                text, self.region, leniency=phonenumbers.Leniency.VALID
            )
            found += [Span(m.start, m.end, "phone") for m in matcher]
        return _resolve(
            found, [n for n, _ in self.patterns] + ["email", "credit_card", "ip", "phone"]
        )


def _resolve(spans: list[Span], priority: list[str]) -> list[Span]:
    if len(spans) < 2:
        return spans
    rank = {k: i for i, k in enumerate(priority)}
    chosen: list[Span] = []
    for s in sorted(spans, key=lambda s: (rank[s.kind], s.start, -s.end)):
        if all(s.end <= c.start or s.start >= c.end for c in chosen):
            chosen.append(s)
    return sorted(chosen, key=lambda s: s.start)


def detector(cfg: PiiConfig) -> Detector:
    """Compile `cfg` (kinds and patterns were checked with the recipe)."""
    compiled = tuple((name, re.compile(pattern)) for name, pattern in cfg.patterns.items())
    return Detector(tuple(cfg.kinds), compiled, cfg.phone_region)


def placeholder(kind: str) -> str:
    return PLACEHOLDERS.get(kind, f"<{kind.upper()}>")


def anonymize(text: str, spans: list[Span]) -> str:
    parts, last = [], 0
    for s in spans:
        parts += [text[last : s.start], placeholder(s.kind)]
        last = s.end
    parts.append(text[last:])
    return "".join(parts)


def mask_text(text: str, det: Detector) -> str:
    """`text` with every PII span replaced by its placeholder."""
    spans = det.find(text)
    return anonymize(text, spans) if spans else text


def masker(cfg: PiiConfig) -> Callable[[Any], Any]:
    """A function that masks PII in every string of a value (str, or lists, tuples and dicts of
    them, keys included), with the detectors and patterns of `cfg`: what leaves for the store."""
    det = detector(cfg)

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return mask_text(value, det)
        if isinstance(value, dict):
            return {mask(k): mask(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(mask(v) for v in value)
        return value

    return mask


def run(examples: list[Example], cfg: PiiConfig, ctx: StepContext) -> StepOutput:
    det = detector(cfg)
    out = list(examples)
    drops: list[Drop] = []
    counts: Counter[str] = Counter()
    for i, ex in enumerate(examples):
        if i % 50_000 == 0:
            ctx.tick("pii", i, len(examples))
        spans = [det.find(m.content) for m in ex.messages]
        kinds = Counter(s.kind for per in spans for s in per)
        if not kinds:
            continue
        for k in kinds:
            counts[k] += 1
        if cfg.policy == "drop":
            detail = ", ".join(f"{k}×{n}" for k, n in sorted(kinds.items()))
            drops.append(Drop(i, "pii", detail))
        elif cfg.policy == "flag":
            out[i] = add_flags(ex, [f"pii:{k}" for k in sorted(kinds)])
        else:
            msgs = tuple(
                Message(m.role, anonymize(m.content, per)) if per else m
                for m, per in zip(ex.messages, spans, strict=True)
            )
            new = dataclasses.replace(ex, messages=msgs, id=content_id(msgs))
            out[i] = with_meta(new, original_id=ex.meta.get("original_id", ex.id))
    ctx.tick("pii", len(examples), len(examples))
    if cfg.policy == "flag":
        return StepOutput(out, (), {f"pii:{k}": n for k, n in sorted(counts.items())})
    if cfg.policy == "anonymize":
        return StepOutput(out, (), {}, {f"anonymized:{k}": n for k, n in sorted(counts.items())})
    return StepOutput(out, tuple(drops))
