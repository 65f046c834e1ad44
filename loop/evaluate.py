"""Validation loss and task metrics for one trained cell (or the base model, for zero-shot).

- `validation_loss`: mean negative log-likelihood over every answer token of the whole validation
  set, with the prompt masked exactly as in training (`loop.models.encode_example`).
- Task evaluators from `evals/` run on a fixed, seeded sample of the validation set
  (`sample_for_generation`), the same items for every cell. Generation is greedy, batched with
  left padding (prompts sorted by length), and stops at EOS / end-of-turn or `max_new_tokens`.
- Generation does only the work that can change a score (`sample_answers`; measured in
  benchmarks/generation.py). An item whose reference greedy decoding writes token for token is
  read from the validation pass, not generated. A generated row stops as soon as no evaluator's
  score can change (each evaluator's `settled` rule in evals/, e.g. exact_match once a whole word
  leaves the reference); its answer is then the text up to there, scored exactly as the whole
  answer would be. A batch ends when all its rows have.
- While generating, a LoRA adapter is folded into plain layers (`train.merged_for_inference`):
  new tensors, so the shared base weights are never written and no unmerge rounding is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import evals
from loop.errors import EvaluatorError
from loop.example import Example, Message
from loop.models import Base, answer_logprobs, encode_example, prompt_ids, stop_token_ids
from loop.recipe import EvalConfig, EvaluatorSpec

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class EvalResult:
    # {"val_loss": .., "eval.json_match": .., "eval.json_match.valid": .., ...}
    metrics: dict[str, float]
    # per sampled example: id, prompt, reference, prediction, then <label> and <label>.<key> scores
    predictions: list[dict[str, Any]]
    seconds: float = 0.0
    n_val: int = 0
    n_sampled: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # per-item scores for the paired analysis: metric -> {example id: score}. "val_loss" covers
    # every validation item (scaled so the items' mean is the token-weighted val_loss exactly);
    # "eval.<label>" and numeric "eval.<label>.<key>" cover the generation sample.
    item_scores: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluator:
    label: str  # metric name after "eval."
    name: str
    fn: Callable[..., Any]
    kind: str
    params: dict[str, Any]
    wants_example: bool = False


def _model_of(obj: Any) -> Any:
    return obj.model if isinstance(obj, Base) else obj


# --------------------------------------------------------------------------------------------
# Evaluators
# --------------------------------------------------------------------------------------------


def build_evaluators(specs: Sequence[EvaluatorSpec]) -> list[Evaluator]:
    """Look up each evaluator and check its params against the function's signature, up front."""
    out: list[Evaluator] = []
    errors: list[str] = []
    for i, spec in enumerate(specs):
        where = f"eval.evaluators[{i}] ({spec.name})"
        try:
            reg = evals.get(spec.name)
        except KeyError as exc:
            errors.append(f"{where}: {exc.args[0]}")
            continue
        label = spec.metric_label
        sig = inspect.signature(reg.fn)
        wants_example = reg.kind == "generation" and "example" in sig.parameters
        try:
            if reg.kind == "loglik":
                sig.bind(None, None, **spec.params)
            elif reg.kind == "forced":
                sig.bind(False, **spec.params)
            elif wants_example:
                sig.bind("", "", example=None, **spec.params)
            else:
                sig.bind("", "", **spec.params)
        except TypeError as exc:
            accepted = [
                p.name
                for p in list(sig.parameters.values())[2:]
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "example"
            ]
            errors.append(
                f"{where}.params: {exc}; accepted: {', '.join(accepted) or 'no parameters'}, "
                f"got {sorted(spec.params)}"
            )
            continue
        out.append(Evaluator(label, spec.name, reg.fn, reg.kind, dict(spec.params), wants_example))
    if errors:
        raise EvaluatorError("\n".join(errors))
    return out


def dry_run(specs: Sequence[EvaluatorSpec], sample: Sequence[Example]) -> None:
    """Call every evaluator on the validation records it will score, with a dummy prediction
    (the reference itself; for log-likelihood evaluators a scorer that ranks options by length),
    so a missing field (`choices`), a bad regex or a user function that raises stops the recipe
    before any cell trains. No model is loaded. Raises EvaluatorError naming the evaluator, the
    record (file and line) and what the evaluator said."""
    evaluators = build_evaluators(specs)  # unknown names and bad params first

    def score(texts: list[str]) -> list[tuple[float, int]]:
        return [(-float(len(t)), max(len(t), 1)) for t in texts]

    errors: list[str] = []
    for i, ev in enumerate(evaluators):
        first, bad = None, 0
        for ex in sample:
            try:
                if ev.kind == "loglik":
                    value = ev.fn(score, ex, **ev.params)
                elif ev.kind == "forced":  # reads the validation pass: the reference "written"
                    value = ev.fn(True, **ev.params)
                elif ev.wants_example:
                    value = ev.fn(ex.answer, ex.answer, example=ex, **ev.params)
                else:
                    value = ev.fn(ex.answer, ex.answer, **ev.params)
                _split_result(value, ev.label)
            except Exception as exc:  # noqa: BLE001 - any failure here would fail every cell
                bad += 1
                if first is None:
                    first = (
                        ex,
                        f"{type(exc).__name__}: {exc}"
                        if not isinstance(exc, ValueError)
                        else str(exc),
                    )
        if first is not None:
            ex, msg = first
            errors.append(
                f"eval.evaluators[{i}] ({ev.name}): fails on validation record {ex.source} "
                f"(checked before training, with the reference as a stand-in prediction; "
                f"{bad} of {len(sample)} records fail): {msg}"
            )
    if errors:
        raise EvaluatorError("\n".join(errors))


def _split_result(value: Any, label: str) -> tuple[float, dict[str, float], dict[str, str]]:
    """(score, numeric sub-metrics, string extras) from an evaluator's return value."""
    if isinstance(value, dict):
        if "score" not in value:
            raise ValueError(
                f"evaluator {label}: a dict result needs a 'score' key, got {sorted(value)}"
            )
        score = value["score"]
        subs = {
            k: float(v)
            for k, v in value.items()
            if k != "score" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        extras = {k: str(v) for k, v in value.items() if k != "score" and isinstance(v, str)}
    else:
        score, subs, extras = value, {}, {}
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"evaluator {label}: score must be a finite number, got {score!r}")
    return float(score), subs, extras


def sample_for_generation(val: list[Example], cfg: EvalConfig) -> list[Example]:
    """The fixed, seeded sample generation metrics run on: all of `val` when `cfg.samples` is unset
    or not smaller, else `cfg.samples` items drawn with `cfg.seed`, kept in validation order.

    The draw is the first `samples` of one seeded shuffle, so a larger sample holds every smaller
    one: re-scoring cells on more items (`loop evaluate --samples`, adaptive rounds) keeps the
    items already scored, and cells scored on different counts still share the smaller set."""
    if cfg.samples is None or cfg.samples >= len(val):
        return list(val)
    order = list(range(len(val)))
    random.Random(cfg.seed).shuffle(order)
    idx = sorted(order[: cfg.samples])
    return [val[i] for i in idx]


# --------------------------------------------------------------------------------------------
# Model calls
# --------------------------------------------------------------------------------------------


class _EvalMode:
    """Eval mode (no dropout) for the duration, then the previous mode back."""

    def __init__(self, model: Any):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> Any:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def validation_loss(
    model: Any,
    tokenizer: Any,
    val: list[Example],
    *,
    max_length: int | None,
    batch_size: int,
    as_text: bool = False,
) -> float:
    """Mean NLL per answer token over all of `val` (prompt tokens masked as in training)."""
    return validation_item_losses(
        model, tokenizer, val, max_length=max_length, batch_size=batch_size, as_text=as_text
    )[0]


def validation_item_losses(
    model: Any,
    tokenizer: Any,
    val: list[Example],
    *,
    max_length: int | None,
    batch_size: int,
    as_text: bool = False,
    greedy_out: list[bool] | None = None,
) -> tuple[float, list[float]]:
    """`validation_loss` and one score per item: -logprob_i * I / (answer tokens of all items).

    The tokenization is the same for every cell, so the scale is too; the items' mean is the
    token-weighted loss exactly, and a gain between two cells is the sum of per-item gains.
    `greedy_out` receives per item whether greedy decoding would write its answer exactly
    (`models.answer_logprobs`), from the same forward pass.
    """
    if not val:
        raise ValueError("validation_loss: the validation set is empty")
    model = _model_of(model)
    encoded = [encode_example(tokenizer, ex, max_length=max_length, as_text=as_text) for ex in val]
    with _EvalMode(model):
        pairs = answer_logprobs(
            model,
            encoded,
            batch_size=batch_size,
            pad_id=tokenizer.pad_token_id,
            greedy_stops=stop_token_ids(tokenizer, model) if greedy_out is not None else None,
            greedy_out=greedy_out,
        )
    count = sum(n for _, n in pairs)
    if count == 0:
        raise ValueError("validation_loss: no answer tokens left (prompts longer than max_length?)")
    scale = len(pairs) / count
    return -sum(lp for lp, _ in pairs) / count, [-lp * scale for lp, _ in pairs]


Settled = Callable[[str], bool]  # answer text so far -> no continuation can change its scores


def settled_check(evaluators: Sequence[Evaluator], reference: str) -> Settled | None:
    """For one item: a check that says when generation may stop early without changing any score.

    True once every generation evaluator's result is the same for every continuation of the text
    (each evaluator's own `settled` rule, in evals/); None when one of them has no such rule (a
    user function, rouge_l, regex...), so the answer runs to its stop token. Teacher-forced and
    log-likelihood evaluators read no generated text and take no part.
    """
    rules = []
    for ev in evaluators:
        if ev.kind != "generation":
            continue
        rule = evals.get(ev.name).settled
        if rule is None:
            return None
        rules.append((rule, ev.params))
    if not rules:
        return None
    return lambda text: all(rule(text, reference, **params) for rule, params in rules)


class _StopWhenSettled:
    """Per row of a generate() batch: done at a stop token or once its `Settled` check holds.

    A transformers StoppingCriteria (built by `_stopping_criteria`, so transformers is imported
    on first use only); `stopped_at` keeps the sequence length at which each row stopped."""

    def __init__(self, tokenizer: Any, width: int, checks: Sequence[Settled | None], stops):
        self.tokenizer, self.width, self.checks, self.stops = tokenizer, width, checks, set(stops)
        self.stopped_at: list[int | None] = [None] * len(checks)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        length = input_ids.shape[1]
        rows = input_ids[:, self.width :].tolist()
        for row, (new, check) in enumerate(zip(rows, self.checks, strict=True)):
            if self.stopped_at[row] is not None or check is None:
                continue
            if any(t in self.stops for t in new):
                self.stopped_at[row] = length  # ended by its stop token; generate stops it too
            elif check(self.tokenizer.decode(new, skip_special_tokens=True)):
                self.stopped_at[row] = length
        done = [at is not None for at in self.stopped_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _stopping_criteria(*args: Any) -> Any:
    from transformers import StoppingCriteria

    cls = type("StopWhenSettled", (_StopWhenSettled, StoppingCriteria), {})
    return cls(*args)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: Progress | None = None,
    settled: Sequence[Settled | None] | None = None,
    merge: bool = True,
) -> list[str]:
    """Greedy answers to tokenized prompts, batched with left padding; stripped, special tokens
    removed. Prompts are sorted by length so a batch holds similar lengths; output is in input order.

    A row ends at a stop token (EOS, end of turn), after `max_new_tokens`, or, with `settled`
    (one check per prompt, `settled_check`), as soon as its check holds; its answer is then the
    text up to there, which every evaluator scores as it would the whole answer. A batch ends when
    all of its rows have. `merge`: fold a LoRA adapter into plain layers while generating
    (`train.merged_for_inference`; the base model is left as it was).
    """
    from transformers import GenerationConfig, StoppingCriteriaList

    from loop.train import merged_for_inference

    model = _model_of(model)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    stops = stop_token_ids(tokenizer, model)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=stops,
        pad_token_id=pad,
    )
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    out = [""] * len(prompts)
    with _EvalMode(model), merged_for_inference(model) if merge else _same(model) as runner:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = list(prompts[i])
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
            checks = [settled[i] for i in idx] if settled is not None else []
            criteria = None
            if any(c is not None for c in checks):
                criteria = _stopping_criteria(tokenizer, width, checks, stops)
            gen = runner.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=gen_cfg,
                **({"stopping_criteria": StoppingCriteriaList([criteria])} if criteria else {}),
            )
            for row, i in enumerate(idx):
                end = criteria.stopped_at[row] if criteria is not None else None
                new = gen[row, width:end].tolist()
                for k, tok in enumerate(new):  # cut at the first stop token
                    if tok in stops:
                        new = new[:k]
                        break
                out[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
            if progress:
                progress("generate", min(start + batch_size, len(order)), len(order))
    return out


@contextlib.contextmanager
def _same(model: Any) -> Iterator[Any]:
    yield model


def sample_answers(
    model: Any,
    tokenizer: Any,
    sample: Sequence[Example],
    evaluators: Sequence[Evaluator],
    *,
    max_new_tokens: int,
    batch_size: int,
    max_length: int | None,
    as_text: bool = False,
    writes_reference: dict[str, bool] | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """The greedy answer to every sampled item, as the generation evaluators will score it.

    `writes_reference` (example id -> whether greedy decoding writes the reference, from the
    validation pass): an item whose reference greedy decoding writes token for token, stop token
    included, needs no generation, its answer is the reference as `generate` would decode it
    (`known_answer`). The rest are generated, each stopping once no evaluator's score can change
    (`settled_check`).
    """
    model = _model_of(model)
    known: list[str | None] = [None] * len(sample)
    if writes_reference is not None and _plain_greedy(model):
        stops = stop_token_ids(tokenizer, model)
        for k, ex in enumerate(sample):
            if writes_reference.get(ex.id):
                known[k] = known_answer(
                    tokenizer,
                    ex,
                    stops,
                    max_new_tokens=max_new_tokens,
                    max_length=max_length,
                    as_text=as_text,
                )
    todo = [k for k, a in enumerate(known) if a is None]
    prompts = []
    for k in todo:
        ids = prompt_ids(tokenizer, sample[k], as_text=as_text)
        # an over-long prompt keeps its end: that is where the question is
        prompts.append(ids[-max_length:] if max_length else ids)
    answers = (
        generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
            settled=[settled_check(evaluators, sample[k].answer) for k in todo],
        )
        if todo
        else []
    )
    for k, answer in zip(todo, answers, strict=True):
        known[k] = answer
    return [a or "" for a in known]


def known_answer(
    tokenizer: Any,
    ex: Example,
    stops: Sequence[int],
    *,
    max_new_tokens: int,
    max_length: int | None,
    as_text: bool = False,
) -> str | None:
    """What `generate` returns for `ex` when greedy decoding writes its reference, else None when
    the validation pass does not settle it: the prompt it scored is not exactly the one
    generation starts from (cut at `max_length`, or merged with the answer's first token), or the
    reference has no stop token within `max_length`."""
    full, _ = encode_example(tokenizer, ex, max_length=None, as_text=as_text)
    prompt = prompt_ids(tokenizer, ex, as_text=as_text)
    if (max_length is not None and len(full) > max_length) or full[: len(prompt)] != prompt:
        return None
    answer = full[len(prompt) :]
    end = next((k for k, t in enumerate(answer) if t in set(stops)), None)
    if end is None:
        return None
    return tokenizer.decode(answer[: min(end, max_new_tokens)], skip_special_tokens=True).strip()


# generation settings that only choose among tokens greedily anyway; any other a model's own
# generation config sets (repetition_penalty, min_new_tokens...) would change what greedy writes
_GREEDY_NEUTRAL = {
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "transformers_version",
    "_from_model_config",
    "max_length",
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "num_beams",
    "cache_implementation",
    "return_dict_in_generate",
    "output_scores",
    "output_logits",
}


def _plain_greedy(model: Any) -> bool:
    """True when `generate` decodes plain greedy for this model: its generation config sets no
    logits processor (a teacher-forced argmax is then what generation picks)."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return False
    return set(gen.to_diff_dict()) <= _GREEDY_NEUTRAL


def _loglik_scorer(
    model: Any,
    tokenizer: Any,
    ex: Example,
    *,
    max_length: int | None,
    as_text: bool,
    batch_size: int,
):
    def score(texts: list[str]) -> list[tuple[float, int]]:
        encoded = []
        for text in texts:
            variant = dataclasses.replace(ex, messages=(*ex.prompt, Message("assistant", text)))
            encoded.append(
                encode_example(tokenizer, variant, max_length=max_length, as_text=as_text)
            )
        with _EvalMode(model):
            return answer_logprobs(
                model, encoded, batch_size=batch_size, pad_id=tokenizer.pad_token_id
            )

    return score


# --------------------------------------------------------------------------------------------
# The evaluation of one cell
# --------------------------------------------------------------------------------------------


def evaluate(
    base_or_model: Any,
    tokenizer: Any,
    val: list[Example],
    cfg: EvalConfig,
    *,
    max_length: int | None,
    as_text: bool = False,
    val_loss: float | None = None,
    progress: Progress | None = None,
    item_losses: bool = False,
) -> EvalResult:
    """Validation loss on all of `val` plus every configured evaluator on the generation sample.

    `base_or_model`: a Base (zero-shot) or a trained adapter-wrapped model (TrainResult.model).
    `as_text`: prompts as plain text, for cells trained with `completion_as_text`.
    `val_loss`: reuse a loss already computed on the same `val` (TrainResult.val_loss[-1][1]).
    `item_losses`: compute per-item validation losses even when `val_loss` is given (one more
    pass over `val`); without `val_loss` they come with the loss at no extra cost.
    """
    start = time.perf_counter()
    model = _model_of(base_or_model)
    evaluators = build_evaluators(cfg.evaluators)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    item_scores: dict[str, dict[str, float]] = {}
    # teacher-forced evaluators read the validation pass: it runs whenever one is configured
    forced = any(e.kind == "forced" for e in evaluators)
    generating = any(e.kind == "generation" for e in evaluators)
    greedy: list[bool] | None = None
    if val_loss is None or item_losses or forced:
        # whether greedy decoding writes each reference: the forced evaluators' input, and the
        # generation sample's known answers (`sample_answers`), from the same forward pass
        greedy = [] if forced or generating else None
        loss, per_item = validation_item_losses(
            model,
            tokenizer,
            val,
            max_length=max_length,
            batch_size=cfg.batch_size,
            as_text=as_text,
            greedy_out=greedy,
        )
        val_loss = loss if val_loss is None else val_loss
        item_scores["val_loss"] = {ex.id: v for ex, v in zip(val, per_item, strict=True)}
    timings["val_loss_s"] = time.perf_counter() - t
    metrics: dict[str, float] = {"val_loss": float(val_loss)}

    sample = sample_for_generation(val, cfg) if evaluators else []
    greedy_of = {ex.id: g for ex, g in zip(val, greedy or (), strict=False)}
    predictions: list[str | None] = [None] * len(sample)
    t = time.perf_counter()
    if generating:
        predictions = list(
            sample_answers(
                model,
                tokenizer,
                sample,
                evaluators,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
                max_length=max_length,
                as_text=as_text,
                writes_reference=greedy_of if greedy is not None else None,
                progress=progress,
            )
        )
    timings["generate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    records: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for ex, pred in zip(sample, predictions, strict=True):
        record: dict[str, Any] = {
            "id": ex.id,
            "prompt": ex.user_text,
            "reference": ex.answer,
            "prediction": pred,
        }
        for ev in evaluators:
            try:
                if ev.kind == "loglik":
                    scorer = _loglik_scorer(
                        model,
                        tokenizer,
                        ex,
                        max_length=max_length,
                        as_text=as_text,
                        batch_size=cfg.batch_size,
                    )
                    value = ev.fn(scorer, ex, **ev.params)
                elif ev.kind == "forced":
                    value = ev.fn(greedy_of[ex.id], **ev.params)
                elif ev.wants_example:
                    value = ev.fn(pred or "", ex.answer, example=ex, **ev.params)
                else:
                    value = ev.fn(pred or "", ex.answer, **ev.params)
                score, subs, extras = _split_result(value, ev.label)
            except ValueError as exc:
                raise ValueError(
                    f"evaluator {ev.label} on example {ex.id} ({ex.source}): {exc}"
                ) from exc
            record[ev.label] = score
            for key, v in {"": score, **{f".{k}": s for k, s in subs.items()}}.items():
                name = f"eval.{ev.label}{key}"
                sums[name] = sums.get(name, 0.0) + v
                counts[name] = counts.get(name, 0) + 1
                item_scores.setdefault(name, {})[ex.id] = float(v)
            record.update({f"{ev.label}.{k}": v for k, v in subs.items()})
            record.update({f"{ev.label}.{k}": v for k, v in extras.items()})
        records.append(record)
    timings["score_s"] = time.perf_counter() - t
    metrics.update({name: sums[name] / counts[name] for name in sums})
    return EvalResult(
        metrics=metrics,
        predictions=records,
        seconds=time.perf_counter() - start,
        n_val=len(val),
        n_sampled=len(sample),
        timings=timings,
        item_scores=item_scores,
    )
