"""Human review of a cleaning run: export a stratified sample, import the decisions.

`export_review` writes a sample per tier, of the validation set, and per cleaning step and drop
reason (not the split's leak removals, which follow from the split) to CSV or JSONL (by the file suffix) with an empty `decision` column. Reviewers fill it with `accept` or
`reject` (blank = no decision). `import_review` checks the file and merges its decisions into a
decisions file (JSON); pointing `clean.review` at it (or at the filled-in export itself) makes
later runs honour them: `reject` drops a kept record (`review_rejected`), `accept` overrules a
step that would drop it (counted as `kept_by_review` in the funnel).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loop.errors import ReviewError
from loop.tiers import RAW, tier_pool, validation_set

if TYPE_CHECKING:
    from loop.clean.result import CleanResult

COLUMNS = (
    "stratum",
    "id",
    "step",
    "reason",
    "detail",
    "quality",
    "flags",
    "source",
    "prompt",
    "answer",
    "decision",
    "note",
)
DECISIONS = ("accept", "reject")
# Removals that follow from the split, not from a cleaning judgement: a decision cannot undo them.
_NOT_REVIEWED = ("split", "raw_tier")


@dataclass(frozen=True)
class ReviewExport:
    path: Path
    rows: int
    strata: dict[str, int]  # stratum -> rows exported


@dataclass(frozen=True)
class ReviewImport:
    path: Path  # the decisions file written
    decisions: dict[str, str]  # id -> accept | reject, after merging
    counts: dict[str, int]  # from this file: accept / reject / blank


def _rank(seed: int, stratum: str, ex_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{stratum}:{ex_id}".encode(), digest_size=8).digest()


def _row(stratum: str, ex: Any, step: str = "", reason: str = "", detail: str = "") -> dict:
    if not detail and ex.meta.get("deprecated"):  # the freshness step's replacement hints
        detail = "; ".join(
            f"mentions {d['found']!r}"
            + (f", use {d['replacement']!r}" if d.get("replacement") else "")
            for d in ex.meta["deprecated"]
        )
    return {
        "stratum": stratum,
        "id": ex.id,
        "step": step,
        "reason": reason,
        "detail": detail,
        "quality": ex.scores.get("quality", ""),
        "flags": ";".join(ex.meta.get("flags") or []),
        "source": ex.source,
        "prompt": "\n\n".join(f"[{m.role}] {m.content}" for m in ex.prompt),
        "answer": ex.answer,
        "decision": "",
        "note": "",
    }


def review_rows(result: CleanResult, *, per_stratum: int = 20, seed: int = 0) -> list[dict]:
    """The sampled rows: per tier (each record once), validation, then per step and reason."""
    rows: list[dict] = []
    seen: set[str] = set()

    def take(stratum: str, items: list[tuple[Any, dict]]) -> None:
        fresh = [(ex, extra) for ex, extra in items if ex.id not in seen]
        fresh.sort(key=lambda p: _rank(seed, stratum, p[0].id))
        for ex, extra in fresh[:per_stratum]:
            seen.add(ex.id)
            rows.append(_row(stratum, ex, **extra))

    # Narrowest tiers first, so a record in several tiers shows up under the most selective.
    tiers = sorted(
        (t.name for t in result.tiers if t.name != RAW),
        key=lambda name: len(tier_pool(result, name)),
    )
    for name in tiers:
        take(f"tier:{name}", [(ex, {}) for ex in tier_pool(result, name)])
    take("validation", [(ex, {}) for ex in validation_set(result)])
    by_reason: dict[str, list[tuple[Any, dict]]] = {}
    for rec in result.dropped:
        if rec.step in _NOT_REVIEWED:
            continue
        extra = {"step": rec.step, "reason": rec.reason, "detail": rec.detail}
        by_reason.setdefault(f"dropped:{rec.step}:{rec.reason}", []).append((rec.example, extra))
    for stratum in sorted(by_reason):
        take(stratum, by_reason[stratum])
    return rows


def export_review(
    result: CleanResult, path: str | Path, *, per_stratum: int = 20, seed: int = 0
) -> ReviewExport:
    """Write the review sample to `path` (.csv or .jsonl) with an empty `decision` column."""
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl"):
        raise ReviewError(f"{path}: review file must end in .csv or .jsonl, got {path.suffix!r}")
    rows = review_rows(result, per_stratum=per_stratum, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    else:
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    strata: dict[str, int] = {}
    for row in rows:
        strata[row["stratum"]] = strata.get(row["stratum"], 0) + 1
    return ReviewExport(path, len(rows), strata)


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs from a CSV or JSONL review file."""
    if not path.is_file():
        raise ReviewError(f"{path}: file not found")
    out: list[tuple[int, dict]] = []
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"id", "decision"} - set(reader.fieldnames or [])
            if missing:
                raise ReviewError(
                    f"{path}:1: header lacks column(s) {', '.join(sorted(missing))}; "
                    f"expected the columns of `loop review export`"
                )
            start = reader.line_num
            for row in reader:
                out.append((start + 1, row))
                start = reader.line_num
        return out
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ReviewError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ReviewError(f"{path}:{n}: expected an object, got {type(row).__name__}")
                out.append((n, row))
        return out
    raise ReviewError(f"{path}: review file must end in .csv, .jsonl or .json, got {path.suffix!r}")


def parse_decisions(path: str | Path) -> tuple[dict[str, str], dict[str, int]]:
    """(id -> decision, counts) from a filled-in review file; every bad row is reported."""
    path = Path(path)
    decisions: dict[str, str] = {}
    counts = {"accept": 0, "reject": 0, "blank": 0}
    errors: list[str] = []
    for n, row in _read_rows(path):
        ex_id = str(row.get("id") or "").strip()
        raw = row.get("decision")
        decision = str(raw if raw is not None else "").strip().lower()
        if not ex_id:
            errors.append(f"{path}:{n}: field 'id': expected an example id, got {row.get('id')!r}")
            continue
        if decision == "":
            counts["blank"] += 1
            continue
        if decision not in DECISIONS:
            errors.append(
                f"{path}:{n}: field 'decision': expected accept, reject or empty, got {raw!r}"
            )
            continue
        if decisions.get(ex_id, decision) != decision:
            errors.append(
                f"{path}:{n}: field 'decision': {ex_id} is {decisions[ex_id]!r} on an earlier "
                f"line and {decision!r} here"
            )
            continue
        decisions[ex_id] = decision
        counts[decision] += 1
    if errors:
        raise ReviewError("\n".join(errors))
    return decisions, counts


def load_decisions(path: str | Path) -> dict[str, str]:
    """id -> accept | reject from a decisions file (.json) or a filled-in export (.csv/.jsonl)."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReviewError(f"{path}: file not found") from None
        except json.JSONDecodeError as exc:
            raise ReviewError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        found = data.get("decisions") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            raise ReviewError(f"{path}: expected an object with a 'decisions' mapping")
        bad = [
            f"{path}: decisions[{k!r}]: expected accept or reject, got {v!r}"
            for k, v in found.items()
            if v not in DECISIONS
        ]
        if bad:
            raise ReviewError("\n".join(bad))
        return dict(found)
    return parse_decisions(path)[0]


def import_review(path: str | Path, *, out: str | Path | None = None) -> ReviewImport:
    """Check a filled-in review file and merge its decisions into `out` (a .json file).

    `out` defaults to `review_decisions.json` beside `path`; decisions already there are kept
    unless this file decides the same id, which wins. Point `clean.review` at `out`.
    """
    path = Path(path)
    decisions, counts = parse_decisions(path)
    out = Path(out) if out is not None else path.with_name("review_decisions.json")
    merged = load_decisions(out) if out.is_file() else {}
    merged.update(decisions)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"decisions": dict(sorted(merged.items()))}, indent=2) + "\n", encoding="utf-8"
    )
    return ReviewImport(out, merged, counts)
