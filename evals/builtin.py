"""Built-in evaluators (registered on import). Calling conventions: see `evals/__init__.py`."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from evals.registry import register

# --------------------------------------------------------------------------------------------
# Text matching
# --------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and symbols, collapse whitespace (NFKC first)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# When an answer's score is settled (generation may stop; see Registered.settled)
#
# A prefix of the generated text is judged only up to its last whitespace character: the text
# before it never changes as tokens are added (a multi-byte character cut between tokens, or a
# letter a later combining mark would join under NFKC, can only sit after it).
# --------------------------------------------------------------------------------------------


def _stable(text: str) -> str | None:
    """`text` up to (not including) its last whitespace character; None when it has none."""
    for i in range(len(text) - 1, -1, -1):
        if text[i].isspace():
            return text[:i]
    return None


def _exact_settled(text: str, reference: str, *, ignore_case: bool = False) -> bool:
    """exact_match is 0 for good once the stable part of the answer, stripped, is not a prefix of
    the stripped reference: every longer answer, stripped, starts with it."""
    stable = _stable(text)
    if stable is None or not stable.strip():
        return False
    p, r = stable.strip(), reference.strip()
    if ignore_case:
        p, r = p.casefold(), r.casefold()
    return not r.startswith(p)


def _normalized_settled(text: str, reference: str) -> bool:
    """normalized_match is 0 for good once the words of the stable part are not the reference's
    first words: `normalize` of a longer answer starts with those same words."""
    stable = _stable(text)
    if stable is None:
        return False
    words, ref = normalize(stable).split(), normalize(reference).split()
    return bool(words) and words != ref[: len(words)]


@register("exact_match", settled=_exact_settled)
def exact_match(prediction: str, reference: str, *, ignore_case: bool = False) -> float:
    """1 when the stripped prediction equals the stripped reference."""
    p, r = prediction.strip(), reference.strip()
    if ignore_case:
        p, r = p.casefold(), r.casefold()
    return float(p == r)


@register("normalized_match", settled=_normalized_settled)
def normalized_match(prediction: str, reference: str) -> float:
    """1 when both are equal after `normalize` (case, whitespace, punctuation ignored)."""
    return float(normalize(prediction) == normalize(reference))


@register("contains")
def contains(prediction: str, reference: str, *, ignore_case: bool = True) -> float:
    """1 when the reference (whitespace collapsed) occurs in the prediction."""
    p, r = " ".join(prediction.split()), " ".join(reference.split())
    if ignore_case:
        p, r = p.casefold(), r.casefold()
    return float(bool(r) and r in p)


@register("regex")
def regex(
    prediction: str,
    reference: str,
    *,
    pattern: str,
    mode: str = "search",
    ignore_case: bool = False,
) -> float:
    """1 when `pattern` matches the prediction (`mode`: search, match or fullmatch).

    `{reference}` in the pattern is replaced by the escaped reference, e.g.
    `pattern: "^Answer: {reference}$"`.
    """
    if mode not in ("search", "match", "fullmatch"):
        raise ValueError(f"regex: mode must be search, match or fullmatch, got {mode!r}")
    compiled = re.compile(
        pattern.replace("{reference}", re.escape(reference.strip())),
        re.IGNORECASE if ignore_case else 0,
    )
    return float(getattr(compiled, mode)(prediction.strip()) is not None)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MISSING = object()


def parse_json(text: str, *, lenient: bool = False) -> Any:
    """The JSON value in `text`, or `_MISSING`. A ```json fence is unwrapped; `lenient` also takes
    the first JSON object or array embedded in other text."""
    text = text.strip()
    fenced = _FENCE.search(text)
    candidates = [fenced.group(1).strip()] if fenced else []
    candidates.append(text)
    for cand in candidates:
        try:
            return json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            pass
    if lenient:
        decoder = json.JSONDecoder()
        for i, ch in enumerate(text):
            if ch in "{[":
                try:
                    return decoder.raw_decode(text, i)[0]
                except json.JSONDecodeError:
                    continue
    return _MISSING


def _same(a: Any, b: Any, ignore_case: bool) -> bool:
    if ignore_case and isinstance(a, str) and isinstance(b, str):
        return normalize(a) == normalize(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _json_settled(text: str, reference: str, **_: Any) -> bool:
    """json_match is settled once the answer opens with a complete ``` fence whose content parses:
    `parse_json` takes the first fence, and no later text moves or changes it.

    A bare JSON object that has closed is not settled: a fence written after it would replace it
    (`parse_json` reads the fence first), and without `lenient` any text after it makes the
    answer invalid. Only the end of the answer settles those."""
    stripped = text.lstrip()
    if not stripped.startswith("```"):
        return False
    fenced = _FENCE.match(stripped)
    if fenced is None:
        return False
    try:
        json.loads(fenced.group(1).strip())
    except (json.JSONDecodeError, ValueError):
        return False
    return True


@register("json_match", settled=_json_settled)
def json_match(
    prediction: str,
    reference: str,
    *,
    fields: Sequence[str] | None = None,
    lenient: bool = False,
    ignore_case: bool = False,
) -> dict[str, float]:
    """Parse both as JSON and compare.

    score: 1 when every compared field is equal (with no `fields`: the whole values are equal, so
    extra or missing keys fail). valid: the prediction parses as JSON (an object when the reference
    is one). field_acc: the share of compared fields that are equal (the reference's keys, or
    `fields`). `lenient`: accept JSON embedded in other text; `ignore_case`: compare strings
    normalized (case, whitespace, punctuation).
    """
    ref = parse_json(reference)
    if ref is _MISSING:
        raise ValueError(f"json_match: the reference is not valid JSON: {reference[:80]!r}")
    pred = parse_json(prediction, lenient=lenient)
    valid = pred is not _MISSING and (not isinstance(ref, dict) or isinstance(pred, dict))
    if not valid:
        return {"score": 0.0, "valid": 0.0, "field_acc": 0.0}
    if not isinstance(ref, dict):
        same = float(_same(pred, ref, ignore_case))
        return {"score": same, "valid": 1.0, "field_acc": same}
    keys = list(fields) if fields is not None else list(ref)
    hits = [k in pred and k in ref and _same(pred[k], ref[k], ignore_case) for k in keys]
    field_acc = sum(hits) / len(hits) if hits else 1.0
    same_keys = fields is not None or set(pred) == set(ref)
    return {"score": float(same_keys and all(hits)), "valid": 1.0, "field_acc": field_acc}


@register("greedy_match", kind="forced")
def greedy_match(would_write: bool) -> float:
    """1 when greedy decoding would write the reference answer token for token.

    Read from the validation-loss pass (teacher forcing: the most likely token at every answer
    position is the reference's, up to its end-of-turn token), so it costs no generation. It
    equals `exact_match` on greedy output except where the model would spell the same text with
    other tokens, which then counts as a miss.
    """
    return float(would_write)


# --------------------------------------------------------------------------------------------
# Overlap
# --------------------------------------------------------------------------------------------


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@register("rouge_l")
def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-L: F1 of the longest common subsequence of normalized words (score), and its
    precision and recall."""
    p, r = normalize(prediction).split(), normalize(reference).split()
    if not p or not r:
        same = float(p == r)
        return {"score": same, "precision": same, "recall": same}
    lcs = _lcs(p, r)
    if lcs == 0:
        return {"score": 0.0, "precision": 0.0, "recall": 0.0}
    precision, recall = lcs / len(p), lcs / len(r)
    return {
        "score": 2 * precision * recall / (precision + recall),
        "precision": precision,
        "recall": recall,
    }


# --------------------------------------------------------------------------------------------
# Log-likelihood
# --------------------------------------------------------------------------------------------


_OPTION = re.compile(r"(?:^|\n)[ \t]*\(?([A-J])[\):.][ \t]+\S")
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-J])[\):.][ \t]+(.+?)\s*$", re.MULTILINE)


def option_texts(text: str) -> dict[str, str]:
    """{letter: option text} of the options listed one per line, when option_letters finds them."""
    letters = option_letters(text)
    found = dict(_OPTION_LINE.findall(text))
    return {k: found[k] for k in letters if k in found}


def option_letters(text: str) -> list[str]:
    """Option letters listed one per line ("A: up", "(B) down", "C. left"), when they run A, B, ...

    Fewer than two, or letters that do not start at A and follow in order, give [].
    """
    letters = list(dict.fromkeys(_OPTION.findall(text)))
    expected = [chr(ord("A") + i) for i in range(len(letters))]
    return letters if len(letters) >= 2 and letters == expected else []


def choice_options(
    example: Any,
    *,
    choices_field: str = "choices",
    choices: Sequence[str] | None = None,
    letters: bool = False,
    **_: Any,
) -> list[str]:
    """The options `choice_loglik` scores for `example` (its parameters, the rest ignored);
    ValueError naming the field when there are none. The chance baseline is 1/len of this."""
    where = f"example {example.id} ({example.source})"
    if letters:
        users = [m.content for m in example.messages[:-1] if m.role == "user"]
        options = option_letters(users[-1]) if users else []
        if not options:
            raise ValueError(
                f"choice_loglik: {where}: letters: true, but the last user turn lists no options "
                "as lines 'A: ...', 'B: ...'"
            )
    elif choices is not None:
        options = [str(c) for c in choices]
    else:
        options = example.meta.get(choices_field)
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise ValueError(
            f"choice_loglik: {where}: meta[{choices_field!r}] must be a non-empty list of strings, "
            f"got {options!r}; give each record a {choices_field!r} field with the option texts, "
            "or set `letters: true` (options listed as 'A: ...' lines in the prompt) or "
            "`choices: [...]` (one label set) in the evaluator's params"
        )
    return options


@register("choice_loglik", kind="loglik")
def choice_loglik(
    score: Callable[[list[str]], list[tuple[float, int]]],
    example: Any,
    *,
    choices_field: str = "choices",
    answer_field: str | None = None,
    length_normalize: bool = False,
    choices: Sequence[str] | None = None,
    letters: bool = False,
) -> dict[str, Any]:
    """Multiple choice without generation: the option the model finds most likely is its answer.

    Options come from `example.meta[choices_field]` (a list of strings); or, with `letters`, they
    are the option letters listed in the last user turn ("A: up\\n B: down" -> A, B); or `choices`,
    one fixed list for every item (a label set). The correct option is `example.meta[answer_field]`
    (its index or its text) when `answer_field` is set, else the example's reference answer, which
    must be one of the options. Each option is scored as the assistant's whole answer (summed
    log-probability; per token with `length_normalize`).
    """
    where = f"example {example.id} ({example.source})"
    options = choice_options(example, choices_field=choices_field, choices=choices, letters=letters)
    answer = example.meta.get(answer_field) if answer_field else example.answer
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
        correct = answer
    elif isinstance(answer, str) and answer.strip() in [o.strip() for o in options]:
        correct = [o.strip() for o in options].index(answer.strip())
    else:
        source = f"meta[{answer_field!r}]" if answer_field else "the reference answer"
        raise ValueError(
            f"choice_loglik: {where}: {source} must be one of the options {options!r} "
            f"(or an index into them), got {answer!r}"
        )
    scored = score(options)
    values = [lp / max(n, 1) if length_normalize else lp for lp, n in scored]
    chosen = max(range(len(options)), key=lambda i: values[i])
    # the probability of the correct option among the options: a continuous per-item score,
    # far less noisy than 0/1 accuracy (DataDecide 2025)
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    prob = weights[correct] / sum(weights)
    return {"score": float(chosen == correct), "prob": float(prob), "choice": options[chosen]}
