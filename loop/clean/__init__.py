"""`loop clean`: run the recipe's cleaning steps in order, split off validation, form tiers.

Each step is one module here with `run(examples, cfg, ctx) -> StepOutput`; it keeps or drops
each record and says why (reason code + detail). Steps, in any order the recipe lists:

| step | module | drop reasons |
|---|---|---|
| exact_dedup | exact | exact_duplicate |
| near_dedup | near_dup | near_duplicate |
| semantic_dedup | semantic | semantic_duplicate |
| length | length | answer_too_short, too_long |
| format | format_check | json_invalid, schema_mismatch (or flag) |
| pii | pii | pii (or anonymize / flag) |
| harmful | harmful | harmful (or flag) |
| contradictions | contradictions | contradiction (or flag) |
| quality | quality | (scores only) |
| copyright | copyright | copyright_notice, verbatim_copy (or flag) |
| freshness | freshness | outdated, undated, deprecated (or flag) |

After the steps: review rejections (`review_rejected`), the validation split (`near_validation`
for training examples that leak it), tiers, and the `raw` tier when the recipe has one.
`run_clean` writes cleaned.jsonl, dropped.jsonl, funnel.json, funnel.md (and raw.jsonl) into
`out_dir` and reuses them when the recipe's clean/tier/tokenizer settings, the review file and
the pool are unchanged. Flagged records stay, with the flag in meta['flags'].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from loop.clean import (
    contradictions,
    copyright,
    exact,
    format_check,
    freshness,
    harmful,
    length,
    near_dup,
    pii,
    quality,
    semantic,
)
from loop.clean.base import (
    AnswerLoss,
    CleanProgress,
    CountTokens,
    Progress,
    StepContext,
    TemplateTokens,
)
from loop.clean.funnel import DroppedRecord, StepFunnel, render_markdown, step_funnel
from loop.clean.result import CleanResult
from loop.clean.split import raw_pool, split_validation
from loop.errors import DataError, ReviewError
from loop.example import Example, read_jsonl, write_jsonl
from loop.recipe import RAW_TIER, CleanConfig, Recipe, stable_dict

__all__ = [
    "CleanError",
    "CleanProgress",
    "CleanResult",
    "DroppedRecord",
    "StepFunnel",
    "StepsOutput",
    "clean_key",
    "estimate_seconds",
    "load_result",
    "pool_digest",
    "run_clean",
    "run_steps",
]

CLEAN_VERSION = 4  # bump when a step's behaviour changes, so cached results are not reused

STEP_MODULES: dict[str, ModuleType] = {
    "exact_dedup": exact,
    "near_dedup": near_dup,
    "semantic_dedup": semantic,
    "length": length,
    "format": format_check,
    "pii": pii,
    "harmful": harmful,
    "contradictions": contradictions,
    "quality": quality,
    "copyright": copyright,
    "freshness": freshness,
}

FILES = {
    "cleaned": "cleaned.jsonl",
    "dropped": "dropped.jsonl",
    "raw": "raw.jsonl",
    "funnel_json": "funnel.json",
    "funnel_md": "funnel.md",
    "key": "clean_key.json",
}


class CleanError(DataError):
    """Cleaning stopped: a step would remove too much, or too little is left. A user error."""


# The recipe settings that decide each drop reason: named when a step removes too much.
REASON_SETTINGS: dict[str, str] = {
    "exact_duplicate": "clean.exact_dedup.on",
    "near_duplicate": "clean.near_dedup.threshold (or clean.near_dedup.on: prompt)",
    "semantic_duplicate": "clean.semantic_dedup.threshold",
    "answer_too_short": "clean.length.min_answer_tokens (unset: derived from the pool)",
    "answer_too_long": "clean.length.max_answer_tokens (unset: derived from the pool; 0: no bound)",
    "too_long": "clean.length.max_tokens or train.max_length",
    "json_invalid": "clean.format.answer_format",
    "schema_mismatch": "clean.format.schema",
    "pii": "clean.pii.policy",
    "harmful": "clean.harmful.policy",
    "contradiction": "clean.contradictions.policy or clean.contradictions.similarity",
    "copyright_notice": "clean.copyright.policy or clean.copyright.notices",
    "verbatim_copy": "clean.copyright.min_span_words or clean.copyright.protected",
    "outdated": "clean.freshness.not_before / max_age_days / policy",
    "undated": "clean.freshness.undated",
    "deprecated": "clean.freshness.deprecated_policy",
}
MIN_GUARDED = 20  # the max_drop guard starts at this many records in (shares of tiny pools mislead)


def _too_much(step: str, n_in: int, dropped: list[DroppedRecord], max_drop: float) -> str:
    reasons = Counter(d.reason for d in dropped)
    lines = [
        f"clean step `{step}` would remove {len(dropped)} of {n_in} records "
        f"({len(dropped) / n_in:.0%}), more than clean.max_drop ({max_drop:.0%}):"
    ]
    for reason, n in reasons.most_common():
        first = next(d for d in dropped if d.reason == reason)
        lines.append(f"  {reason} {n} (e.g. {first.example.source}: {first.detail})")
    settings = [REASON_SETTINGS[r] for r in reasons if r in REASON_SETTINGS]
    lines.append(
        "  change "
        + (" or ".join(settings) if settings else f"the clean.{step} settings")
        + f", or remove `{step}` from clean.steps; to accept it, set clean.max_drop: 1"
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class StepsOutput:
    kept: list[Example]
    dropped: list[DroppedRecord]
    funnel: list[StepFunnel] = field(default_factory=list)


def run_steps(
    examples: Sequence[Example],
    cfg: CleanConfig,
    ctx: StepContext,
    *,
    accepted: frozenset[str] = frozenset(),
) -> StepsOutput:
    """Run `cfg.steps` in order. A drop of a record whose id is in `accepted` is overruled."""
    current = list(examples)
    all_dropped: list[DroppedRecord] = []
    funnel: list[StepFunnel] = []
    for step in cfg.steps:
        module = STEP_MODULES[step]
        note = f"{len(current):,} records in"
        if step == "semantic_dedup" and current:
            # the one slow step on CPU (tens of rows/s): say how long before starting
            chars = sum(len(ex.user_text) for ex in current) / len(current)
            est = estimate_seconds(
                cfg, len(current), mean_prompt_chars=chars, device=ctx.device or "cpu"
            )
            note += f", about {est[step]:.0f} s (embeddings cached by content)"
        ctx.tick(step, 0, len(current), note=note, force=True)
        start = time.perf_counter()
        out = module.run(current, getattr(cfg, step), ctx)
        seconds = time.perf_counter() - start
        if len(out.examples) != len(current):
            raise RuntimeError(f"clean step {step} returned {len(out.examples)} of {len(current)}")
        gone: set[int] = set()
        dropped: list[DroppedRecord] = []
        overruled = 0
        for d in out.drops:
            ex = out.examples[d.index]
            if ex.id in accepted:
                overruled += 1
                continue
            gone.add(d.index)
            dropped.append(DroppedRecord(ex, step, d.reason, d.detail, d.duplicate_of))
        kept = [ex for i, ex in enumerate(out.examples) if i not in gone]
        if len(current) >= MIN_GUARDED and len(dropped) > cfg.max_drop * len(current):
            raise CleanError(_too_much(step, len(current), dropped, cfg.max_drop))
        funnel.append(
            step_funnel(
                step,
                len(current),
                len(kept),
                dropped,
                flagged=out.flagged,
                modified=out.modified,
                kept_by_review=overruled,
                counts=out.counts,
                seconds=seconds,
            )
        )
        all_dropped += dropped
        note = f"{len(kept):,} kept, {len(dropped):,} dropped in {seconds:.1f} s"
        ctx.tick(step, len(out.examples), len(out.examples), note=note, force=True)
        current = kept
    return StepsOutput(current, all_dropped, funnel)


def pool_digest(raw: Sequence[Example]) -> str:
    """Hash of the pool's content and meta, in order."""
    h = hashlib.sha256()
    for ex in raw:
        meta = json.dumps(ex.meta, sort_keys=True, default=str, ensure_ascii=False)
        h.update(f"{ex.id}\t{ex.source}\t{meta}\n".encode())
    return h.hexdigest()[:16]


def _review_bytes(recipe: Recipe) -> bytes | None:
    if recipe.clean.review is None:
        return None
    path = Path(recipe.clean.review)
    if not path.is_file():
        raise ReviewError(f"clean.review: file not found: {path}")
    return path.read_bytes()


def clean_key(recipe: Recipe, raw: Sequence[Example]) -> str:
    """Cache key: clean + tier + tokenizer settings, the review file and the pool."""
    review = _review_bytes(recipe)
    payload = {
        "version": CLEAN_VERSION,
        "clean": stable_dict(recipe.clean),
        "tiers": stable_dict(recipe.tiers),
        "tokenizer": [recipe.model.name, recipe.model.revision],
        "max_length": recipe.train.max_length,
        "review": hashlib.sha256(review).hexdigest() if review is not None else None,
        "pool": pool_digest(raw),
        # ids hash the messages only; meta (task_field, extra fields) comes from the pool settings
        "pool_settings": stable_dict(recipe.pool),
    }
    fr = recipe.clean.freshness
    if "freshness" in recipe.clean.steps and fr.max_age_days is not None and fr.as_of is None:
        payload["today"] = time.strftime("%Y-%m-%d", time.gmtime())  # max_age counts from today
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write(result_parts: dict[str, Any], out_dir: Path, key: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / FILES[name] for name in ("cleaned", "dropped", "funnel_json")}
    files["funnel_md"] = out_dir / FILES["funnel_md"]
    write_jsonl(list(result_parts["examples"]), files["cleaned"])
    with files["dropped"].open("w", encoding="utf-8") as f:
        for rec in result_parts["dropped"]:
            f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    if result_parts["raw"]:
        files["raw"] = out_dir / FILES["raw"]
        write_jsonl(list(result_parts["raw"]), files["raw"])
    summary = {
        "key": key,
        "steps": [f.to_dict() for f in result_parts["funnel"]],
        "validation": result_parts["validation"],
        "tiers": result_parts["tier_sizes"],
        "derived": list(result_parts["derived"]),
    }
    files["funnel_json"].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    files["funnel_md"].write_text(
        render_markdown(
            list(result_parts["funnel"]),
            result_parts["tier_sizes"],
            result_parts["validation"],
            derived=list(result_parts["derived"]),
        )
        + "\n"
    )
    # Written last: its presence with the same key means the files above are complete.
    files["key"] = out_dir / FILES["key"]
    files["key"].write_text(
        json.dumps({"key": key, "files": {k: p.name for k, p in files.items()}}, indent=2) + "\n"
    )
    return files


def load_result(out_dir: Path, recipe: Recipe, key: str) -> CleanResult | None:
    """The stored result in `out_dir` when its key is `key` and its files are there, else None."""
    key_file = out_dir / FILES["key"]
    if not key_file.is_file():
        return None
    try:
        stored = json.loads(key_file.read_text())
    except json.JSONDecodeError:
        return None
    files = {k: out_dir / name for k, name in stored.get("files", {}).items()}
    if stored.get("key") != key or not all(p.is_file() for p in files.values()):
        return None
    with files["dropped"].open(encoding="utf-8") as f:
        dropped = tuple(DroppedRecord.from_dict(json.loads(line)) for line in f if line.strip())
    summary = json.loads(files["funnel_json"].read_text())
    return CleanResult(
        examples=tuple(read_jsonl(files["cleaned"])),
        raw=tuple(read_jsonl(files["raw"])) if "raw" in files else (),
        dropped=dropped,
        funnel=tuple(StepFunnel.from_dict(d) for d in summary["steps"]),
        files=tuple(files.values()),
        tiers=tuple(recipe.tiers),
        key=key,
        reused=True,
        derived=tuple(summary.get("derived", ())),
    )


def resolve_defaults(
    cfg: CleanConfig, raw: Sequence[Example], count_tokens: CountTokens | None
) -> tuple[CleanConfig, list[str]]:
    """`cfg` with the settings left unset derived from the pool, and those settings in words."""
    from loop import profile

    length_open = "length" in cfg.steps and (
        cfg.length.min_answer_tokens is None or cfg.length.max_answer_tokens is None
    )
    if not raw or not (length_open or cfg.format.answer_format == "auto"):
        return cfg, []
    prof = profile.profile_pool(raw, count_tokens if length_open else None)
    derived = profile.derived_defaults(
        prof,
        min_answer_tokens=cfg.length.min_answer_tokens if length_open else 0,
        max_answer_tokens=cfg.length.max_answer_tokens if length_open else 0,
        answer_format_set=cfg.format.answer_format,
    )
    values = {d.setting: d.value for d in derived}
    length_cfg = cfg.length
    for name in ("min_answer_tokens", "max_answer_tokens"):
        if f"clean.length.{name}" in values:
            length_cfg = dataclasses.replace(length_cfg, **{name: values[f"clean.length.{name}"]})
    fmt = values.get("clean.format.answer_format", cfg.format.answer_format)
    cfg = dataclasses.replace(
        cfg, length=length_cfg, format=dataclasses.replace(cfg.format, answer_format=fmt)
    )
    return cfg, [f"pool: {prof.describe()}", *(str(d) for d in derived)]


def _too_few(n_raw: int, n_kept: int, funnel: list[StepFunnel]) -> str:
    lines = [
        f"cleaning kept {n_kept} of {n_raw} examples; at least 2 are needed for a validation split"
    ]
    for f in funnel:
        for reason, n in f.dropped.items():
            example = f.examples.get(reason, [{}])[0].get("detail", "")
            lines.append(f"  {f.name}: {reason} {n}" + (f" (e.g. {example})" if example else ""))
    return "\n".join(lines)


def run_clean(
    recipe: Recipe,
    raw: Sequence[Example],
    *,
    count_tokens: CountTokens | None,
    template_tokens: TemplateTokens | None = None,
    tokens_within_bytes: bool = False,
    out_dir: Path,
    progress: Progress | None = None,
    answer_loss: AnswerLoss | None = None,
    device: str | None = None,
    force: bool = False,
) -> CleanResult:
    """Clean `raw` per `recipe.clean`, split validation, form tiers, write the files.

    The recipe is valid (`loop.recipe` checked it). `count_tokens` is the recipe model's
    tokenizer as a batch counter (needed by `length`), `template_tokens` what its chat template
    adds to an example by the roles of its messages (None: nothing), `tokens_within_bytes`
    whether a count never exceeds the text's UTF-8 bytes (`loop.models.tokens_within_bytes`);
    `answer_loss` only for `clean.quality.model_loss`. Deterministic for a recipe and pool; an
    unchanged re-run returns the stored result (`reused=True`) unless `force`.
    `progress` receives `CleanProgress` reports (`str()` of one is a log line).
    """
    from loop import tiers as tiers_mod
    from loop.review import load_decisions

    out_dir = Path(out_dir)
    if "length" in recipe.clean.steps and count_tokens is None:
        raise ValueError("clean step `length` needs the model tokenizer (count_tokens), got none")
    key = clean_key(recipe, raw)
    stored = None if force else load_result(out_dir, recipe, key)
    if stored is not None:
        if progress is not None:
            progress(CleanProgress("clean", 0, 0, f"reusing the result in {out_dir} (key {key})"))
            for line in stored.derived:
                progress(CleanProgress("defaults", 0, 0, line))
        return stored

    accepted: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()
    if recipe.clean.review is not None:
        decisions = load_decisions(Path(recipe.clean.review))
        accepted = frozenset(i for i, d in decisions.items() if d == "accept")
        rejected = frozenset(i for i, d in decisions.items() if d == "reject")

    cfg, derived = resolve_defaults(recipe.clean, raw, count_tokens)
    if progress is not None:
        for line in derived:
            progress(CleanProgress("defaults", 0, 0, line))
    ctx = StepContext(
        count_tokens=count_tokens,
        template_tokens=template_tokens,
        tokens_within_bytes=tokens_within_bytes,
        max_tokens=recipe.train.max_length,
        quality=cfg.quality,
        answer_format=cfg.format.answer_format,
        cache_dir=out_dir / "cache",
        device=device,
        progress=progress,
        answer_loss=answer_loss,
    )
    steps = run_steps(raw, cfg, ctx, accepted=accepted)
    kept, dropped, funnel = steps.kept, list(steps.dropped), list(steps.funnel)

    if rejected:
        start = time.perf_counter()
        is_rejected = [
            ex.id in rejected or str(ex.meta.get("original_id", "")) in rejected for ex in kept
        ]
        removed = [
            DroppedRecord(ex, "review", "review_rejected", "rejected in human review")
            for ex, r in zip(kept, is_rejected, strict=True)
            if r
        ]
        n_in = len(kept)
        kept = [ex for ex, r in zip(kept, is_rejected, strict=True) if not r]
        funnel.append(
            step_funnel("review", n_in, len(kept), removed, seconds=time.perf_counter() - start)
        )
        dropped += removed

    if len(kept) < 2:
        raise CleanError(_too_few(len(raw), len(kept), funnel))
    start = time.perf_counter()
    ctx.tick("split", 0, len(kept), note=f"holding out {cfg.split.validation:.0%}", force=True)
    split = split_validation(kept, cfg.split, cfg.near_dedup)
    leaked = [DroppedRecord(kept[d.index], "split", d.reason, d.detail) for d in split.drops]
    funnel.append(
        step_funnel(
            "split",
            len(kept),
            len(split.train) + len(split.validation),
            leaked,
            counts={"train": len(split.train), "validation": len(split.validation)},
            seconds=time.perf_counter() - start,
        )
    )
    dropped += leaked

    train = tiers_mod.assign_tiers(split.train, recipe.tiers)
    position = {i: ex for i, ex in zip(split.train_index, train, strict=True)}
    position.update(zip(split.validation_index, split.validation, strict=True))
    examples = tuple(position[i] for i in sorted(position))

    raw_out: tuple[Example, ...] = ()
    if any(t.name == RAW_TIER for t in recipe.tiers):
        start = time.perf_counter()
        ctx.tick("raw_tier", 0, len(raw), note="raw pool minus validation duplicates", force=True)
        paraphrases = None
        if "semantic_dedup" in cfg.steps:
            paraphrases = semantic.validation_leaks(split.validation, raw, cfg.semantic_dedup, ctx)
        raw_out = tuple(raw_pool(raw, split.validation, cfg.near_dedup, paraphrases))
        held = [ex for ex in raw_out if ex.split == "held_out"]
        funnel.append(
            step_funnel(
                "raw_tier",
                len(raw),
                len(raw) - len(held),
                [
                    DroppedRecord(ex, "raw_tier", "validation_overlap", ex.meta["held_out"])
                    for ex in held
                ],
                seconds=time.perf_counter() - start,
            )
        )

    tier_sizes = {}
    for t in recipe.tiers:
        if t.name == RAW_TIER:
            tier_sizes[t.name] = sum(ex.split == "train" for ex in raw_out)
        else:
            tier_sizes[t.name] = sum(t.name in ex.meta["tiers"] for ex in train)
    files = _write(
        {
            "examples": examples,
            "dropped": dropped,
            "raw": raw_out,
            "funnel": funnel,
            "validation": len(split.validation),
            "tier_sizes": tier_sizes,
            "derived": derived,
        },
        out_dir,
        key,
    )
    return CleanResult(
        examples=examples,
        raw=raw_out,
        dropped=tuple(dropped),
        funnel=tuple(funnel),
        files=tuple(files.values()),
        tiers=tuple(recipe.tiers),
        key=key,
        derived=tuple(derived),
    )


# Rows per second per step, measured by benchmarks/clean_pool.py on 2 shared cores (load ~3.4):
# 200k synthetic English-like rows of ~75 words; `length` with the SmolLM2 tokenizer
# (benchmarks/results/figures/clean_pool_200k.txt). `length` since loop.models.token_counter:
# that 3,789 times the step's speed-up in one run at 1M rows, 2,363 -> 18,817 rows/s = 8.0x
# (benchmarks/results/figures/clean_pool_1m.txt, load ~8). Semantic dedup has its own estimate,
# from the prompt length.
STEP_ROWS_PER_S: dict[str, float] = {
    "exact_dedup": 43_000.0,
    "near_dedup": 25_000.0,
    "length": 30_000.0,
    "format": 340_000.0,
    "pii": 42_000.0,
    "harmful": 9_100.0,
    "contradictions": 72_000.0,
    "quality": 13_000.0,
    # benchmarks/provenance_steps.py (50k rows, 2 shared cores): notices alone 20.7k rows/s,
    # with 200 protected texts 6.8k rows/s (the slower figure is the estimate); freshness 29k
    "copyright": 6_800.0,
    "freshness": 29_000.0,
}


def estimate_seconds(
    cfg: CleanConfig,
    n_rows: int,
    *,
    mean_prompt_chars: float = 200.0,
    device: str = "cpu",
    semantic_rate: Callable[[], float] | None = None,
) -> dict[str, float]:
    """Rough seconds per step for `n_rows` records, so `loop plan` can say it before starting."""
    out = {}
    for step in cfg.steps:
        if step == "semantic_dedup":
            rate = semantic_rate() if semantic_rate is not None else None
            out[step] = semantic.estimate_seconds(
                n_rows,
                mean_chars=mean_prompt_chars,
                max_chars=cfg.semantic_dedup.max_chars,
                device=device,
                rows_per_s=rate,
                exact_search_max=cfg.semantic_dedup.exact_search_max,
            )
        else:
            out[step] = n_rows / STEP_ROWS_PER_S[step]
    return out
