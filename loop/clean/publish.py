"""What of a cleaning result leaves for the tracking store.

The work folder (`mlruns/work/<recipe>/clean/`) keeps everything cleaning wrote, in full: the
cleaned pool, the raw pool (for a `raw` tier), every dropped record. A tracking store is often
shared (a team server), so by default it gets no record text with personal data in it:

- `dropped.jsonl`: for each dropped record its id, source, step, reason and detail, and its
  messages and meta with PII masked by the PII step's own detectors (`clean.pii`: kinds,
  patterns, phone region), whether or not the recipe runs that step;
- `funnel.json`, `funnel.md`: the counts per step, their sample records masked the same way;
- `clean_key.json`: what the result was computed from;
- `raw_pool.json`: the raw pool as a reference: its files, digest, counts and a profile (roles,
  meta fields, text lengths), no rows.

`tracking.log_raw_records: true` uploads the full local files instead (the raw and cleaned pools
and the unmasked dropped records), and the sweep warns that it does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loop.clean import pii
from loop.clean.funnel import (
    SAMPLES_PER_REASON,
    DroppedRecord,
    StepFunnel,
    render_markdown,
    sample_of,
)
from loop.example import Example, Message
from loop.recipe import PiiConfig

STORE_FOLDER = "store"  # inside the clean folder: the masked copies that are uploaded


def mask_example(ex: Example, mask: Callable[[Any], Any]) -> Example:
    msgs = tuple(Message(m.role, mask(m.content)) for m in ex.messages)
    return dataclasses.replace(ex, messages=msgs, meta=mask(dict(ex.meta)))


def store_copies(
    dropped: Sequence[DroppedRecord],
    funnel_json: Path,
    key_json: Path,
    pii_cfg: PiiConfig,
    out_dir: Path,
) -> tuple[Path, ...]:
    """Write the masked `dropped.jsonl`, `funnel.json`, `funnel.md` (and a copy of the key) into
    `out_dir`; return their paths. `funnel_json` is the local funnel, whose samples are rebuilt
    from the masked records (masking a cut excerpt could miss half an address)."""
    mask = pii.masker(pii_cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    masked = [
        dataclasses.replace(d, example=mask_example(d.example, mask), detail=mask(d.detail or ""))
        for d in dropped
    ]
    paths = {name: out_dir / name for name in ("dropped.jsonl", "funnel.json", "funnel.md")}
    with paths["dropped.jsonl"].open("w", encoding="utf-8") as f:
        for d in masked:
            ex = d.example
            row = {
                "id": ex.id,
                "source": ex.source,
                "step": d.step,
                "reason": d.reason,
                "detail": d.detail,
                "duplicate_of": d.duplicate_of,
                "messages": [{"role": m.role, "content": m.content} for m in ex.messages],
                "meta": ex.meta,
            }
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in masked:  # the same records step_funnel sampled: the first few per step and reason
        bucket = samples.setdefault((d.step, d.reason), [])
        if len(bucket) < SAMPLES_PER_REASON:
            bucket.append(sample_of(d))
    summary = json.loads(funnel_json.read_text(encoding="utf-8"))
    steps = []
    for step in summary["steps"]:
        step["examples"] = {
            reason: samples.get((step["name"], reason), []) for reason in step.get("examples", {})
        }
        steps.append(step)
    summary["steps"] = steps
    paths["funnel.json"].write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["funnel.md"].write_text(
        render_markdown(
            [StepFunnel.from_dict(s) for s in steps], summary["tiers"], summary["validation"]
        )
        + "\n",
        encoding="utf-8",
    )
    key_copy = out_dir / key_json.name
    key_copy.write_bytes(key_json.read_bytes())
    return (*paths.values(), key_copy)


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }


def pool_profile(raw: Any, pii_cfg: PiiConfig, digest: str) -> dict[str, Any]:
    """The raw pool (`pool.PoolLoad`) described without any of its rows: files, digest, counts,
    roles, meta fields and text lengths in characters."""
    mask = pii.masker(pii_cfg)
    examples = raw.examples
    files = []
    for f in raw.files:
        size = os.path.getsize(f) if os.path.isfile(f) else None
        files.append({"path": mask(str(f)), "bytes": size})
    return {
        "files": files,
        "digest": digest,
        "records_read": raw.records,
        "examples": len(examples),
        "skipped_by_reason": dict(raw.skipped_by_reason),
        "counts_by_format": dict(raw.counts_by_format),
        "messages_by_role": dict(Counter(m.role for ex in examples for m in ex.messages)),
        "meta_fields": sorted({mask(str(k)) for ex in examples for k in ex.meta}),
        "chars": {
            "prompt": _spread([sum(len(m.content) for m in ex.prompt) for ex in examples]),
            "answer": _spread([len(ex.answer) for ex in examples]),
        },
    }
