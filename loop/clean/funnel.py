"""The cleaning funnel: records in and out per step, drops by reason, a few removed examples."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loop.example import Example

SAMPLES_PER_REASON = 3
_EXCERPT = 200


@dataclass(frozen=True)
class DroppedRecord:
    """A record removed by a step, with the reason code and a human-readable detail."""

    example: Example
    step: str
    reason: str
    detail: str = ""
    duplicate_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "reason": self.reason,
            "detail": self.detail,
            "duplicate_of": self.duplicate_of,
            "example": self.example.to_dict(),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> DroppedRecord:
        return DroppedRecord(
            Example.from_dict(d["example"]),
            d["step"],
            d["reason"],
            d.get("detail", ""),
            d.get("duplicate_of"),
        )


@dataclass(frozen=True)
class StepFunnel:
    name: str  # the step
    n_in: int  # records in
    n_out: int  # records out
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> records
    flagged: dict[str, int] = field(default_factory=dict)  # flag -> records
    modified: dict[str, int] = field(default_factory=dict)  # e.g. anonymized:email -> records
    kept_by_review: int = 0  # drops overruled by an `accept` review decision
    counts: dict[str, int] = field(default_factory=dict)  # step-specific totals
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # reason -> samples
    seconds: float = 0.0
    # source name (meta['source']) -> reason -> records; empty when no record names a source
    dropped_by_source: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> StepFunnel:
        return StepFunnel(**d)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def sample_of(record: DroppedRecord) -> dict[str, Any]:
    ex = record.example
    return {
        "id": ex.id,
        "source": ex.source,
        "detail": record.detail,
        "prompt": _excerpt(ex.user_text or "\n".join(m.content for m in ex.prompt)),
        "answer": _excerpt(ex.answer),
    }


def step_funnel(
    step: str,
    n_in: int,
    n_out: int,
    dropped: list[DroppedRecord],
    *,
    flagged: dict[str, int] | None = None,
    modified: dict[str, int] | None = None,
    kept_by_review: int = 0,
    counts: dict[str, int] | None = None,
    seconds: float = 0.0,
) -> StepFunnel:
    reasons: dict[str, int] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    by_source: dict[str, dict[str, int]] = {}
    named = any(rec.example.meta.get("source") for rec in dropped)
    for rec in dropped:
        reasons[rec.reason] = reasons.get(rec.reason, 0) + 1
        if named:
            per = by_source.setdefault(str(rec.example.meta.get("source") or "(unnamed)"), {})
            per[rec.reason] = per.get(rec.reason, 0) + 1
        bucket = samples.setdefault(rec.reason, [])
        if len(bucket) < SAMPLES_PER_REASON:
            bucket.append(sample_of(rec))
    return StepFunnel(
        step,
        n_in,
        n_out,
        dict(sorted(reasons.items())),
        dict(flagged or {}),
        dict(modified or {}),
        kept_by_review,
        dict(counts or {}),
        samples,
        round(seconds, 3),
        {k: dict(sorted(v.items())) for k, v in sorted(by_source.items())},
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _drops_per_source(funnel: list[StepFunnel]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for f in funnel:
        for src, reasons in f.dropped_by_source.items():
            out.setdefault(src, []).extend((f"{f.name}:{r}", n) for r, n in reasons.items())
    return dict(sorted(out.items()))


def render_markdown(
    funnel: list[StepFunnel],
    tiers: dict[str, int],
    validation: int,
    *,
    derived: list[str] | None = None,
) -> str:
    """funnel.md: derived settings, the table of steps, tier sizes, sample removed records."""
    lines = ["# Cleaning funnel", ""]
    if derived:
        lines += ["Settings derived from the pool (set them in the recipe to override):", ""]
        lines += [f"- {_cell(d)}" for d in derived]
        lines.append("")
    lines += [
        "| step | in | out | dropped | flagged / modified | seconds |",
        "|---|---:|---:|---|---|---:|",
    ]
    for f in funnel:
        dropped = ", ".join(f"{r} {n}" for r, n in f.dropped.items()) or "–"
        notes = [f"{k} {n}" for k, n in {**f.flagged, **f.modified, **f.counts}.items()]
        if f.kept_by_review:
            notes.append(f"kept by review {f.kept_by_review}")
        lines.append(
            f"| {f.name} | {f.n_in} | {f.n_out} | {dropped} | "
            f"{', '.join(notes) or '–'} | {f.seconds:.1f} |"
        )
    per_source = _drops_per_source(funnel)
    if per_source:
        lines += ["", "Drops per source:", "", "| source | dropped | by step and reason |"]
        lines.append("|---|---:|---|")
        for src, parts in per_source.items():
            total = sum(n for _, n in parts)
            lines.append(f"| {_cell(src)} | {total} | {', '.join(f'{k} {n}' for k, n in parts)} |")
    lines += ["", f"Validation set: {validation} examples, shared by every tier.", ""]
    if tiers:
        lines += ["| tier | training examples |", "|---|---:|"]
        lines += [f"| {name} | {n} |" for name, n in tiers.items()]
        lines.append("")
    shown = [f for f in funnel if f.examples]
    if shown:
        lines += ["## Removed examples (up to 3 per reason)", ""]
    for f in shown:
        for reason, samples in f.examples.items():
            lines += [f"### {f.name}: {reason}", ""]
            for s in samples:
                lines.append(f"- `{s['id']}` ({_cell(s['source'])}): {_cell(s['detail'])}")
                lines.append(f"  - prompt: {_cell(s['prompt'])}")
                lines.append(f"  - answer: {_cell(s['answer'])}")
            lines.append("")
    return "\n".join(lines)
