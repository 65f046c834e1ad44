"""Format consistency of JSON answers.

With `clean.format.answer_format: json`, an answer is checked as JSON when it looks like JSON
(a ```json fence, an object opening `{"` or `{}`, an array opening with an object, string or
array, or a whole `[...]` of other JSON values; so a truncated object counts and "[1] Smith"
does not) or when its task is a JSON task (most answers of that `meta['task']` look like JSON;
the whole pool is one task when no record has one). Such answers that do not parse are dropped (`json_invalid`). Among the answers that
parse to an object, the task's dominant key set is the most common one when it covers at least
half of them; an object with other top-level keys is flagged, dropped or ignored per
`clean.format.schema` (`schema_mismatch`). Arrays take no part in the schema check.
With `answer_format: none` the step passes everything through; `auto` (the default) is resolved
from the pool before cleaning (json when at least 10% of answers look like JSON, see
loop.profile), and here, for a direct call, the same way.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

from loop.clean.base import Drop, StepContext, StepOutput, add_flags
from loop.example import Example
from loop.recipe import FormatConfig

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_OBJECT_START = re.compile(r'^\{\s*["}]')
_ARRAY_OF_OBJECTS_OR_STRINGS = re.compile(r'^\[\s*[{"\[]')
_ARRAY_START = re.compile(r"^\[\s*(?:[\[{\"\-\d\]]|true|false|null)")


# answer_format auto -> json from this share of JSON-looking answers (loop.profile reads it too)
JSON_CHECK_SHARE = 0.1


def unwrap(answer: str) -> str:
    """The answer without surrounding whitespace and a Markdown code fence, if any."""
    text = answer.strip()
    m = _FENCE.match(text)
    return m.group(1).strip() if m else text


def looks_like_json(answer: str) -> bool:
    stripped = answer.strip()
    if stripped.lower().startswith("```json"):
        return True
    text = unwrap(answer)
    if _OBJECT_START.match(text) or _ARRAY_OF_OBJECTS_OR_STRINGS.match(text):
        return True  # also when truncated: the opening is enough
    return text.endswith("]") and bool(_ARRAY_START.match(text))


def json_problem(answer: str, *, required: bool) -> str | None:
    """Why `answer` is not valid JSON, or None (also None for non-JSON answers unless required)."""
    if not required and not looks_like_json(answer):
        return None
    try:
        json.loads(unwrap(answer))
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return None


def _task(ex: Example) -> str:
    return str(ex.meta.get("task", ""))


def run(examples: list[Example], cfg: FormatConfig, ctx: StepContext) -> StepOutput:
    fmt = cfg.answer_format
    if fmt == "auto":
        share = sum(looks_like_json(ex.answer) for ex in examples) / max(len(examples), 1)
        fmt = "json" if share >= JSON_CHECK_SHARE else "none"
    if fmt == "none":
        return StepOutput(list(examples))
    looks = [looks_like_json(ex.answer) for ex in examples]
    per_task: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        per_task[_task(ex)].append(i)
    json_task = {t: 2 * sum(looks[i] for i in idx) > len(idx) for t, idx in per_task.items()}

    drops: list[Drop] = []
    keysets: dict[int, frozenset[str]] = {}
    for i, ex in enumerate(examples):
        if not (looks[i] or json_task[_task(ex)]):
            continue
        try:
            value = json.loads(unwrap(ex.answer))
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            drops.append(Drop(i, "json_invalid", f"not valid JSON: {exc.msg} at {where}"))
            continue
        if isinstance(value, dict):
            keysets[i] = frozenset(str(k) for k in value)

    out = list(examples)
    flagged = 0
    if cfg.schema != "ignore":
        by_task: dict[str, list[int]] = defaultdict(list)
        for i in keysets:
            by_task[_task(examples[i])].append(i)
        for task, idx in by_task.items():
            counts = Counter(keysets[i] for i in idx)
            (dominant, top), *rest = counts.most_common()
            if len(idx) < 2 or 2 * top < len(idx) or (rest and rest[0][1] == top):
                continue  # no dominant schema in this task
            for i in idx:
                keys = keysets[i]
                if keys == dominant:
                    continue
                detail = (
                    f"keys {sorted(keys)} differ from task {task or '(none)'!r} schema "
                    f"{sorted(dominant)}"
                )
                if cfg.schema == "drop":
                    drops.append(Drop(i, "schema_mismatch", detail))
                else:
                    out[i] = add_flags(out[i], ["schema_mismatch"])
                    flagged += 1
    drops.sort(key=lambda d: d.index)
    return StepOutput(out, tuple(drops), {"schema_mismatch": flagged} if flagged else {})
