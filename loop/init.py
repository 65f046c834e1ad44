"""`loop init DATA…`: look at the files, write a starter recipe that runs unchanged.

1. `detect_fields` reads up to 200 raw records per file and finds the shape: ShareGPT turns,
   a list of messages (with the answer in the last turn or in a field beside it), TRL's
   conversational prompt/completion, or a pair of text fields (prompt/completion,
   instruction/output, question/answer, text/label, …). It gives the `pool.fields` map.
2. The pool is read with that map, profiled (loop.profile) with the recipe model's tokenizer, and
   the recipe is chosen from the profile: task type and evaluators, cleaning steps with derived
   answer-length bounds (the JSON check only for JSON answers), a `clean` and a `raw` tier, a
   size ladder for the task type capped by the pool, eval samples, training context.
3. `render_recipe` writes it as YAML with a comment on each choice.

Size ladders follow the usual guidance for how much data a task needs (e.g. OpenAI's fine-tuning
guide: clear gains from 50-100 examples; classification in the low hundreds; domain Q&A around a
thousand; open generation and reasoning several thousand): the largest size is 256, 1,024 or
4,096, capped at the expected training pool, and the ladder runs it, half and a quarter of it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop import pool as pool_mod
from loop.errors import UserError
from loop.example import Example
from loop.profile import PoolProfile, default_evaluators, length_bounds, profile_pool
from loop.recipe import FieldMap, ModelConfig, PoolConfig

SAMPLE = 200
TARGET_SIZES = {"classification": 256, "qa": 1024, "generation": 4096}
VALIDATION = 0.1
KEEP_GUESS = 0.85  # share of the pool expected to survive cleaning, for the ladder's cap
MIN_SIZE = 8
# Eval items: 400 give a standard error of 2.5 points on an accuracy near 50% (sqrt(.25/400));
# paired comparisons between cells on the same items are tighter than that.
EVAL_SAMPLES = 400
# Held out for validation: 10% of what cleaning keeps, raised (up to 30%, the recipe's limit) so a
# small cleaned pool still gets ~200 items (a standard error of 3.5 points at 50%).
VALIDATION_TARGET, VALIDATION_MAX = 200, 0.3
# MiniLM embedded 24-55 prompts/s on 2 shared CPU cores (benchmarks/results/figures/semantic_dedup_*)
SEMANTIC_MAX_ROWS = 20_000

ANSWER_NAMES = (
    "ideal",
    "answer",
    "output",
    "completion",
    "response",
    "target",
    "label",
    "gold",
    "reference",
    "expected",
    "solution",
)
# (prompt field, answer field) pairs tried in order; the first present in most records wins.
PAIRS = (
    ("instruction", "output"),
    ("instruction", "response"),
    ("prompt", "completion"),
    ("prompt", "response"),
    ("prompt", "answer"),
    ("question", "answer"),
    ("question", "response"),
    ("query", "response"),
    ("query", "answer"),
    ("input", "output"),
    ("input", "target"),
    ("input", "ideal"),
    ("source", "target"),
    ("text", "label"),
    ("sentence", "label"),
    ("text", "labels"),
    ("content", "label"),
    ("context", "response"),
)
INPUT_NAMES = ("input", "context")


class InitError(UserError, ValueError):
    """The files could not be read or their shape not recognised; the message says why."""


@dataclass(frozen=True)
class Detected:
    format: str  # pool.format to write: auto (per record) or a fixed one
    fields: dict[str, str]  # pool.fields entries that differ from the defaults
    shape: str  # in words, for the comment and the summary
    task_field: str | None = None


@dataclass(frozen=True)
class InitPlan:
    paths: tuple[str, ...]
    detected: Detected
    profile: PoolProfile
    records: int
    problems: tuple[str, ...]  # unreadable records (first few) with file:line
    skipped: int
    text: str  # the recipe YAML
    notes: tuple[str, ...] = field(default_factory=tuple)


def _share(records: Sequence[dict], test) -> float:
    return sum(1 for r in records if test(r)) / max(len(records), 1)


def _is_turns(value: Any, role: str, content: str) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and role in m and content in m for m in value)
    )


def _is_text(value: Any) -> bool:
    return (isinstance(value, str) and value.strip() != "") or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
    )


def detect_fields(records: Sequence[dict]) -> Detected:
    """The field map that reads most of `records`; InitError when no known shape fits."""
    if not records:
        raise InitError("no record could be read from the files")
    keys = Counter(k for r in records for k in r)
    common = [k for k, n in keys.most_common() if n >= 0.9 * len(records)]

    def mostly(test) -> bool:
        return _share(records, test) >= 0.9

    # ShareGPT: a list of {from, value} turns
    for k in common:
        if mostly(lambda r, k=k: _is_turns(r.get(k), "from", "value")):
            fields = {} if k == "conversations" else {"conversations": k}
            return Detected("sharegpt", fields, f"ShareGPT turns in `{k}`")
    # TRL conversational prompt/completion
    for p, c in (("prompt", "completion"), ("prompt", "chosen")):
        if (
            p in common
            and c in common
            and mostly(lambda r, p=p: _is_turns(r.get(p), "role", "content"))
        ):
            fields = {} if c == "completion" else {"completion": c}
            return Detected("auto", fields, f"conversational prompt/completion (`{p}` + `{c}`)")
    # a list of {role, content} messages, the answer last or in a field beside it
    for k in common:
        if not mostly(lambda r, k=k: _is_turns(r.get(k), "role", "content")):
            continue
        fields = {} if k == "messages" else {"messages": k}
        ends = _share(
            records,
            lambda r, k=k: (
                r[k][-1].get("role") == "assistant"
                if _is_turns(r.get(k), "role", "content")
                else False
            ),
        )
        if ends >= 0.9:
            return Detected("auto", fields, f"chat messages in `{k}`, answer in the last turn")
        others = [a for a in ANSWER_NAMES if a in common and a != k] + [
            a for a in common if a != k and a not in ANSWER_NAMES
        ]
        for a in others:
            if mostly(lambda r, a=a: _is_text(r.get(a))):
                return Detected(
                    "auto",
                    {**fields, "answer": a},
                    f"prompt as messages in `{k}`, answer in `{a}`",
                )
        raise InitError(
            f"`{k}` holds messages that do not end with an assistant turn, and no field beside "
            f"it holds the answer (fields: {sorted(keys)}); set pool.fields.answer by hand"
        )
    # two text fields
    for p, a in PAIRS:
        if (
            p in common
            and a in common
            and mostly(lambda r, p=p, a=a: _is_text(r.get(p)) and _is_text(r.get(a)))
        ):
            fields = _pair_fields(p, a, common)
            shape = f"text fields `{p}` -> `{a}`"
            if fields.get("input"):
                shape += f" (+ `{fields['input']}`)"
            return Detected("auto", fields, shape)
    raise InitError(
        "no known record shape fits: expected ShareGPT `conversations`, a list of "
        "{role, content} messages, prompt/completion, instruction/output, question/answer or "
        f"text/label fields; the records have {sorted(keys)[:20]}"
    )


def _pair_fields(p: str, a: str, common: list[str]) -> dict[str, str]:
    """Map a (prompt, answer) pair onto the instruction format (which has an optional input)."""
    if (p, a) == ("prompt", "completion"):
        return {}
    fields = {} if (p, a) == ("instruction", "output") else {"instruction": p, "output": a}
    extra = next((k for k in INPUT_NAMES if k in common and k not in (p, a)), None)
    if extra is not None and extra != "input":
        fields["input"] = extra
    elif extra is None and "input" in (p, a):
        fields["input"] = ""  # `input` is the prompt or the answer here, not an extra field
    return fields


def _ladder(profile: PoolProfile, train_pool: int, max_size: int | None) -> tuple[list[int], str]:
    target = TARGET_SIZES[profile.task]
    top = min(target, train_pool)
    why = f"{profile.task} tasks usually need ~{target:,} examples"
    if top < target:
        why += f"; capped at the expected training pool ({train_pool:,})"
    if max_size is not None and max_size < top:
        top = max_size
        why += f"; capped at --max-size {max_size}"
    sizes = sorted({max(MIN_SIZE, round(top / 4)), max(MIN_SIZE, round(top / 2)), top})
    return sizes, why


def _max_length(profile: PoolProfile) -> tuple[int, str]:
    need = profile.example_tokens_max
    length = min(1 << max(7, math.ceil(math.log2(max(need, 1)))), 2048)
    why = (
        f"the longest record is {need:g} tokens with the chat template, rounded up to a power "
        "of 2 (128-2048)"
    )
    if need > length:
        why += "; longer records are dropped by `length` (too_long)"
    return length, why


def _yaml(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def plan(
    paths: Sequence[str],
    *,
    model: ModelConfig | None = None,
    max_size: int | None = None,
    eval_samples: int | None = None,
    name: str | None = None,
    base_dir: Path | None = None,
) -> InitPlan:
    """Inspect `paths` and build the starter recipe (nothing is written)."""
    from loop import models

    model = model or ModelConfig()
    sampled, problems = pool_mod.sample_records(list(paths), SAMPLE, base_dir=base_dir)
    fatal = [p for p in problems if p.reason in pool_mod.FATAL_REASONS]
    if fatal:
        raise InitError("\n".join(p.message for p in fatal))
    detected = detect_fields([r for _, r in sampled])
    cfg = PoolConfig(
        paths=tuple(paths),
        format=detected.format,  # type: ignore[arg-type]
        fields=FieldMap(**detected.fields),
        on_error="skip",
    )
    try:
        load = pool_mod.load_pool(cfg, base_dir=base_dir)
    except pool_mod.PoolError as exc:
        raise InitError(str(exc)) from None
    tokenizer = models.load_tokenizer(model)

    count_tokens = models.token_counter(tokenizer)

    prof = profile_pool(load.examples, count_tokens, models.template_overhead(tokenizer))
    skipped = sum(load.skipped_by_reason.values())
    args = dict(
        paths=tuple(paths),
        detected=detected,
        profile=prof,
        records=load.records,
        skipped=skipped,
        skipped_by_reason=dict(load.skipped_by_reason),
        model=model,
        max_size=max_size,
        eval_samples=eval_samples,
        name=name or _name(paths),
    )
    draft = render_recipe(**args)  # type: ignore[arg-type]
    shares = dedup_shares(draft, load.examples)
    text = render_recipe(**args, dedup=shares) if shares else draft  # type: ignore[arg-type]
    return InitPlan(
        paths=tuple(paths),
        detected=detected,
        profile=prof,
        records=load.records,
        problems=tuple(p.message for p in load.problems[:10]),
        skipped=skipped,
        text=text,
    )


DEDUP_STEPS = ("exact_dedup", "near_dedup", "semantic_dedup")


def dedup_shares(text: str, examples: Sequence[Example]) -> dict[str, float]:
    """Share of its input each dedup step of the recipe `text` removes from this pool, when one
    removes more than half: a pool of templated records (log lines that differ in a number) has
    that many real duplicates, and the recipe must say so or `loop clean` stops. Embeddings go to
    the cache `loop clean` reads, so semantic dedup embeds each prompt once."""
    import dataclasses

    from loop.clean import run_steps
    from loop.clean.base import StepContext
    from loop.prepare import work_dir
    from loop.recipe import load_yaml, parse_recipe

    recipe = parse_recipe(load_yaml(text.replace("{recipe}", "recipe.yaml", 1)))
    steps = tuple(s for s in recipe.clean.steps if s in DEDUP_STEPS)
    cfg = dataclasses.replace(recipe.clean, steps=steps, max_drop=1.0)
    out = run_steps(examples, cfg, StepContext(cache_dir=work_dir(recipe) / "clean" / "cache"))
    shares = {f.name: (f.n_in - f.n_out) / f.n_in for f in out.funnel if f.n_in}
    return shares if any(v > recipe.clean.max_drop for v in shares.values()) else {}


def _name(paths: Sequence[str]) -> str:
    stem = Path(paths[0]).name.split(".")[0] if paths else "pool"
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-")
    return clean or "pool"


def render_recipe(
    *,
    paths: tuple[str, ...],
    detected: Detected,
    profile: PoolProfile,
    records: int,
    skipped: int,
    skipped_by_reason: dict[str, int],
    model: ModelConfig,
    max_size: int | None,
    eval_samples: int | None,
    name: str,
    dedup: dict[str, float] | None = None,
) -> str:
    """The starter recipe as YAML text, one comment per choice. `dedup`: shares removed by the
    dedup steps, measured on the pool, when one is above the default max_drop."""
    n = profile.records
    lo, hi = length_bounds(profile)
    q = profile.answer_tokens
    keep = KEEP_GUESS
    if dedup:  # measured: what survives the dedup steps, and a little for the rest
        keep = math.prod(1 - v for v in dedup.values()) * 0.95
    kept = n * keep
    split = min(VALIDATION_MAX, max(VALIDATION, VALIDATION_TARGET / max(kept, 1)))
    split = math.ceil(split * 100) / 100
    validation = max(1, round(kept * split))
    train_pool = max(MIN_SIZE, math.floor(kept - validation))
    sizes, ladder_why = _ladder(profile, train_pool, max_size)
    samples = (
        min(EVAL_SAMPLES, validation) if eval_samples is None else min(eval_samples, validation)
    )
    evaluators = default_evaluators(profile)
    generation = any(e["name"] != "choice_loglik" for e in evaluators)
    max_new = min(256, math.ceil(q["q99"]) + 8)
    max_length, length_why = _max_length(profile)
    steps = ["exact_dedup", "near_dedup"]
    if n <= SEMANTIC_MAX_ROWS:
        steps.append("semantic_dedup")
    steps.append("length")
    if profile.kind == "json":
        steps.append("format")
    steps += ["pii", "harmful", "contradictions", "quality"]
    kind_words = {
        "choice": f"multiple choice: {profile.choice_share:.0%} of prompts list options "
        f"({', '.join(profile.labels)}) and the answer is one of the letters",
        "labels": f"labels: {len(profile.labels)} distinct short answers "
        + ", ".join(f"{k!r} {v}" for k, v in list(profile.label_counts.items())[:6]),
        "json": f"JSON answers ({profile.json_share:.0%} of answers look like JSON)",
        "text": "free text (not labels, options or JSON)",
    }[profile.kind]
    ev_lines = []
    ev_why = {
        "choice_loglik": "the model's likeliest option is its answer (no generation)",
        "normalized_match": "the generated label, case and punctuation ignored",
        "json_match": "the generated JSON parsed and compared field by field",
        "rouge_l": "word overlap (longest common subsequence) with the reference",
    }
    for e in evaluators:
        params = f", params: {_yaml(e['params'])}" if e["params"] else ""
        ev_lines.append(f"    - {{name: {e['name']}{params}}}  # {ev_why[e['name']]}")
    fields = "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in detected.fields.items()) + "}"
    skipped_line = (
        f"  # {skipped} of {records} records could not be read ({_yaml(skipped_by_reason)}): "
        "skipped and counted; `loop pool inspect` lists them with file:line\n"
        if skipped
        else f"  # all {records} records read; a bad record is skipped and counted, never silent\n"
    )
    lines = [
        "# loop sweep {recipe}",
        f"# Written by `loop init {' '.join(paths)}`. Every value below was chosen from the data;",
        "# the comment beside it says why. Change any of them: the recipe is yours.",
        f"name: {_yaml(name)}",
        "pool:",
        f"  paths: {_yaml(list(paths))}",
        f"  # detected: {detected.shape}",
        f"  format: {detected.format}",
        f"  fields: {fields}" if detected.fields else "  # fields: the default names fit",
        skipped_line.rstrip("\n"),
        "  on_error: skip",
        "clean:",
        f"  # pool: {profile.describe()}",
        f"  steps: [{', '.join(steps)}]",
        "  # near-duplicates compared on the prompt, without the lines most records share",
        "  # (system prompt, template); near-identical prompts with different answers are minimal",
        "  # pairs and stay",
        "  near_dedup: {on: prompt}",
    ]
    if "semantic_dedup" not in steps:
        lines.append(
            f"  # semantic_dedup left out: {n:,} prompts embed slowly on a CPU (~100/s); add it on a GPU"
        )
    lines += [
        "  length:",
        f"    min_answer_tokens: {lo}  # a quarter of the 5th percentile of answer length ({q['q05']:g} tokens)",
        f"    max_answer_tokens: {hi}  # 4x the 95th percentile ({q['q95']:g} tokens), at least 16 above it",
    ]
    if profile.kind == "json":
        lines.append(
            "  format: {answer_format: json}  # answers are JSON: invalid ones are dropped"
        )
    else:
        lines.append("  format: {answer_format: none}  # answers are not JSON: no JSON check")
    if profile.kind in ("choice", "labels"):
        lines.append(
            "  # one prompt with two different labels: one of them is wrong and nothing says which"
        )
        lines.append("  contradictions: {policy: drop_all}")
    elif profile.kind == "text":
        lines.append(
            "  # free text: two wordings of one reference answer are not a contradiction; flag, keep"
        )
        lines.append("  contradictions: {policy: flag}")
    if dedup:
        worst = max(dedup.values())
        measured = ", ".join(f"{k} {v:.0%}" for k, v in dedup.items())
        lines += [
            f"  # measured by loop init on this pool: {measured} of what reaches each step;",
            "  # templated records that differ only in a number or name are real duplicates here.",
            "  # Check funnel.md's removed examples; a step removing more than this stops.",
            f"  max_drop: {min(1.0, math.ceil(worst * 10) / 10 + 0.1):.1f}",
        ]
    else:
        lines += [
            "  # a step that would remove more than half of its input stops and says which setting to change",
            "  max_drop: 0.5",
        ]
    kept_words = (
        f"cleaning keeps about {kept:,.0f} of {n:,} records (measured)"
        if dedup
        else f"about {kept:,.0f} of {n:,} records expected after cleaning ({KEEP_GUESS:.0%}, a guess)"
    )
    lines.append(
        f"  split: {{validation: {split:g}}}  # {kept_words}: {split:.0%} held out gives "
        f"~{validation:,} validation items"
        + (f" (10% would give {round(kept * VALIDATION):,})" if split > VALIDATION else "")
    )
    lines += [
        "tiers:",
        "  - {name: clean, top: 1.0}  # every record that passed cleaning",
        "  - {name: raw}  # the pool as read: what cleaning buys is the gap between the two curves",
        "subsets:",
        f"  # task: {profile.task} ({kind_words}); {ladder_why}",
        f"  sizes: {_yaml(sizes)}",
        "  seeds: [0]  # add seeds when a decision comes out inconclusive",
        "  on_too_small: cap  # a tier smaller than a size trains on all of it",
        "model:",
        f"  name: {model.name}",
        "train:",
        f"  max_length: {max_length}  # {length_why}",
        "  budget: {policy: min_steps, epochs: 2, min_steps: 30}  # small subsets still get 30 steps",
        "eval:",
        f"  # {kind_words}",
        "  evaluators:",
        *ev_lines,
        f"  samples: {samples}  # of ~{validation} validation items; "
        + (
            "400 give +-2.5 points standard error at 50% accuracy"
            if eval_samples is None
            else f"set by --eval-samples {eval_samples}"
        ),
    ]
    if generation:
        lines.append(
            f"  max_new_tokens: {max_new}  # the 99th percentile of answer length ({q['q99']:g} tokens) + 8"
        )
    return "\n".join(lines) + "\n"


def write(plan_: InitPlan, out: Path, *, force: bool = False) -> Path:
    """Write the recipe to `out` (refuses to overwrite unless `force`); checks it parses."""
    from loop.recipe import RecipeError, load_yaml, parse_recipe

    out = Path(out)
    if out.exists() and not force:
        raise InitError(f"{out} exists; pass --force to overwrite it, or --out another path")
    text = plan_.text.replace("{recipe}", str(out), 1)
    try:
        parse_recipe(load_yaml(text), source=str(out))
    except RecipeError as exc:  # a bug here, not the user's: say so plainly
        raise InitError(f"the recipe written for these files does not validate:\n{exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
