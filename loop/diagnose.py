"""Why a curve is flat: what each cell answered against what it should have, and the scores a
model gets without learning anything (chance, the majority label).

Pure: prediction rows (as `loop.evaluate` writes them per cell) and validation examples in,
small frozen dataclasses out. Nothing here reads the store or prints.

- Baselines per metric: `choice_loglik` with k listed options -> chance 1/k (averaged over the
  items, so mixed 2- and 4-option sets are right); any evaluator whose references form a small
  label set -> the majority-label rate (always answering the most common label scores that).
- Per cell: the distribution of predicted answers against the references', the label a model
  collapsed onto (named), labels it never gives, and for JSON and regex evaluators the share of
  outputs that could not be parsed at all.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loop.example import Example
from loop.recipe import EvaluatorSpec

_MAX_LABELS = 12  # more distinct references than this is free text, not a label set
_COLLAPSE_SHARE = 0.6  # one answer for at least this share of the items ...
_COLLAPSE_EXCESS = 0.2  # ... and this much more often than the references hold it
_NEVER_SHARE = 0.1  # a label right for at least this share of items that the model never gives
OTHER = "(other)"


@dataclass(frozen=True)
class Baseline:
    metric: str
    chance: float  # the score of a model that has learned nothing about the task
    how: str  # "1/3: 3 options listed per item", "the majority label 'B' (41% of the items)"
    # always giving the most common right answer scores this (None: options differ per item)
    majority: float | None = None
    majority_label: str | None = None

    @property
    def floor(self) -> float:
        """What a model that learned nothing about the task scores: chance, or always giving
        the most common right answer when that scores more."""
        return max(self.chance, self.majority or 0.0)


@dataclass(frozen=True)
class CellAnswers:
    tier: str  # "zero-shot" for the base model
    size: int
    seed: int
    metric: str  # eval.<label>
    n: int
    answers: tuple[tuple[str, float], ...]  # share of each predicted label, most given first
    references: tuple[tuple[str, float], ...]  # share of each reference label
    collapsed: str | None  # the label the model gives to most items, far above its share
    never: tuple[str, ...]  # labels that are often right and never given
    unparseable: float | None  # share of outputs that do not parse (JSON, regex evaluators)

    @property
    def text(self) -> str:
        """One line: "answers A 69%, C 31%, B 0% (references A 34%, B 33%, C 33%)"."""
        parts = []
        if self.answers:
            refs = dict(self.references)
            shown = [label for label, _ in self.answers] + [
                label for label in refs if label not in dict(self.answers)
            ]
            got = dict(self.answers)
            parts.append(
                "answers "
                + ", ".join(f"{label} {_pct(got.get(label, 0.0))}" for label in shown)
                + " (references "
                + ", ".join(f"{label} {_pct(s)}" for label, s in self.references)
                + ")"
            )
        if self.unparseable is not None:
            parts.append(f"{_pct(self.unparseable)} of outputs unparseable")
        return "; ".join(parts)

    @property
    def problem(self) -> str | None:
        """The collapse, the missing labels or unparseable outputs (a fifth or more) in words;
        None when the answers look sound."""
        refs = dict(self.references)
        bits = []
        if self.collapsed is not None:
            got = dict(self.answers)[self.collapsed]
            bits.append(
                f"answers {self.collapsed} to {_pct(got)} of the items "
                f"({self.collapsed} is right for {_pct(refs.get(self.collapsed, 0.0))})"
            )
        if self.never:
            bits.append("never answers " + ", ".join(self.never))
        if self.unparseable is not None and self.unparseable >= 0.2:
            bits.append(f"gives an output that cannot be parsed for {_pct(self.unparseable)}")
        if not bits:
            return None
        who = "the untrained model" if self.size == 0 else f"at {self.size:,} examples the model"
        return f"{who} " + " and ".join(bits)


@dataclass(frozen=True)
class Diagnostics:
    baselines: Mapping[str, Baseline]  # by metric name
    cells: tuple[CellAnswers, ...]

    def for_curve(self, tier: str, metric: str) -> tuple[CellAnswers, ...]:
        """The curve's cells, the base model first (it belongs to every tier), then by size."""
        base = _base_metric(metric)
        got = [c for c in self.cells if c.metric == base and c.tier in (tier, ZERO_SHOT)]
        return tuple(sorted(got, key=lambda c: (c.size, c.seed)))

    def baseline(self, metric: str) -> Baseline | None:
        return self.baselines.get(metric)


ZERO_SHOT = "zero-shot"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _base_metric(metric: str) -> str:
    """eval.<label>.<key> -> eval.<label>; the answers belong to the evaluator."""
    parts = metric.split(".")
    return ".".join(parts[:2]) if parts[0] == "eval" else metric


def _norm(text: Any) -> str:
    return " ".join(str(text).split()).casefold()


def _options_of(spec: EvaluatorSpec, ex: Example) -> list[str] | None:
    from evals.builtin import choice_options

    try:
        return choice_options(ex, **spec.params)
    except ValueError:
        return None


def _correct(spec: EvaluatorSpec, ex: Example, options: list[str]) -> int | None:
    field = spec.params.get("answer_field")
    answer = ex.meta.get(field) if field else ex.answer
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
        return answer
    stripped = [o.strip() for o in options]
    if isinstance(answer, str) and answer.strip() in stripped:
        return stripped.index(answer.strip())
    return None


def _fixed_options(spec: EvaluatorSpec, sample: Sequence[Example]) -> bool:
    """Every item offers the same options: label them by text, else by position (A, B, ...)."""
    seen = {tuple(o) for ex in sample if (o := _options_of(spec, ex)) is not None}
    return len(seen) == 1


def _label_set(refs: Sequence[str]) -> bool:
    distinct = len(set(refs))
    return 1 < distinct <= _MAX_LABELS and distinct * 3 <= len(refs)


def _choice_label(options: list[str], i: int, fixed: bool) -> str:
    return options[i].strip() if fixed else chr(ord("A") + i)


def baselines(specs: Sequence[EvaluatorSpec], sample: Sequence[Example]) -> dict[str, Baseline]:
    """Chance per metric on the items the evaluators score (`sample`)."""
    out: dict[str, Baseline] = {}
    if not sample:
        return out
    for spec in specs:
        metric = f"eval.{spec.metric_label}"
        if spec.name == "choice_loglik":
            ks = [len(o) for ex in sample if (o := _options_of(spec, ex))]
            if not ks:
                continue
            chance = sum(1 / k for k in ks) / len(ks)
            counts = sorted(set(ks))
            listed = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
            how = (
                f"1/{counts[0]}: {listed} options per item"
                if len(counts) == 1
                else f"1/k averaged over the items ({listed} options per item)"
            )
            fixed = _fixed_options(spec, sample)
            right = [
                _choice_label(o, i, fixed)
                for ex in sample
                if (o := _options_of(spec, ex)) and (i := _correct(spec, ex, o)) is not None
            ]
            major = Counter(right).most_common(1)[0] if right else None
            share = major[1] / len(right) if major else None
            label = major[0] if major else None
            out[metric] = Baseline(metric, chance, how, share, label)
            out[f"{metric}.prob"] = Baseline(f"{metric}.prob", chance, how)
            continue
        if spec.name in ("json_match", "rouge_l", "contains", "regex"):
            continue  # not a label the model picks: no chance level to draw
        refs = [_norm(ex.answer) for ex in sample]
        if _label_set(refs):
            label, n = Counter(refs).most_common(1)[0]
            share = n / len(refs)
            out[metric] = Baseline(
                metric,
                share,
                f"the majority label {label!r} ({_pct(share)} of the items)",
                share,
                label,
            )
    return out


def _regex_parses(spec: EvaluatorSpec, prediction: str) -> bool:
    """The prediction has the pattern's shape with any answer in the reference's place."""
    pattern = str(spec.params.get("pattern", ""))
    if "{reference}" not in pattern:
        return True  # nothing to parse: a plain pattern either matches or it is wrong
    generic = pattern.replace("{reference}", "(?:.+?)")
    flags = re.IGNORECASE if spec.params.get("ignore_case") else 0
    mode = spec.params.get("mode", "search")
    try:
        compiled = re.compile(generic, flags)
    except re.error:
        return True
    return (
        getattr(compiled, mode if mode in ("search", "match", "fullmatch") else "search")(
            prediction.strip()
        )
        is not None
    )


def _shares(labels: Iterable[str]) -> tuple[tuple[str, float], ...]:
    labels = list(labels)
    counts = Counter(labels)
    return tuple(
        (label, n / len(labels))
        for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def cell_answers(
    spec: EvaluatorSpec,
    rows: Sequence[Mapping[str, Any]],
    examples: Mapping[str, Example],
    *,
    tier: str,
    size: int,
    seed: int,
) -> CellAnswers | None:
    """One cell's answers for one evaluator, from its prediction rows; None when it has none."""
    label = spec.metric_label
    metric = f"eval.{label}"
    rows = [r for r in rows if isinstance(r, Mapping)]
    if not rows:
        return None
    answers: list[str] = []
    refs: list[str] = []
    unparseable = None
    if spec.name == "choice_loglik":
        sample = [examples[r["id"]] for r in rows if r.get("id") in examples]
        fixed = _fixed_options(spec, sample)
        for r in rows:
            ex = examples.get(r.get("id"))
            chosen = r.get(f"{label}.choice")
            options = _options_of(spec, ex) if ex is not None else None
            if options is None or not isinstance(chosen, str):
                continue
            correct = _correct(spec, ex, options)
            stripped = [o.strip() for o in options]
            if correct is None or chosen.strip() not in stripped:
                continue
            answers.append(_choice_label(options, stripped.index(chosen.strip()), fixed))
            refs.append(_choice_label(options, correct, fixed))
    elif spec.name == "json_match":
        valid = [float(r[f"{label}.valid"]) for r in rows if _number(r.get(f"{label}.valid"))]
        if valid:
            unparseable = 1.0 - sum(valid) / len(valid)
    else:
        texts = [str(r.get("prediction") or "") for r in rows]
        if spec.name == "regex":
            unparseable = sum(not _regex_parses(spec, t) for t in texts) / len(texts)
        ref_labels = [_norm(r.get("reference", "")) for r in rows]
        if spec.name not in ("rouge_l", "contains", "regex") and _label_set(ref_labels):
            known = set(ref_labels)
            answers = [_norm(t) if _norm(t) in known else OTHER for t in texts]
            refs = ref_labels
    got, want = _shares(answers), _shares(refs)
    collapsed = None
    never: tuple[str, ...] = ()
    if got:
        top, share = got[0]
        if (
            share >= _COLLAPSE_SHARE
            and share >= dict(want).get(top, 0.0) + _COLLAPSE_EXCESS
            and top != OTHER
        ):
            collapsed = top
        never = tuple(
            lab for lab, s in want if s >= _NEVER_SHARE and lab not in dict(got) and len(want) > 1
        )
    n = len(answers) if answers else len(rows)
    return CellAnswers(tier, size, seed, metric, n, got, want, collapsed, never, unparseable)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def diagnose(
    specs: Sequence[EvaluatorSpec],
    cells: Iterable[tuple[str, int, int, Sequence[Mapping[str, Any]]]],
    sample: Sequence[Example],
) -> Diagnostics:
    """`cells`: (tier, size, seed, prediction rows) per finished cell; `sample`: the validation
    items the evaluators score."""
    by_id = {ex.id: ex for ex in sample}
    out = []
    for tier, size, seed, rows in cells:
        for spec in specs:
            found = cell_answers(spec, rows, by_id, tier=tier, size=size, seed=seed)
            if found is not None and (found.answers or found.unparseable is not None):
                out.append(found)
    return Diagnostics(baselines(specs, sample), tuple(out))
