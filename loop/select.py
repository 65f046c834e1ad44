"""Selection methods: a ranking of a tier's training pool whose top n is the subset of size n.

`tiers[].select` names the method; `random` (the default) has no ranking (loop/subsets.py draws
seeded subsets). The ranked methods:

- `ifd`: instruction-following difficulty (Li et al., 2023, "From Quantity to Quality"),
  IFD = loss(answer | prompt) / loss(answer alone), each the mean cross-entropy of the same
  answer tokens, with the prompt in context and without it. Highest first: the prompt helps
  least there, so the example teaches most. Scored by the recipe's model, or by
  `tiers[].select_model` (a smaller scorer, as in "Superfiltering").
- `length`: the longest answers first (answer tokens by the recipe's tokenizer), the baseline of
  "Long Is More for Alignment" (Zhao et al., 2024).
- `diversity`: greedy k-center (Sener & Savarese, 2018) on the MiniLM prompt embeddings that
  semantic dedup computes, read from and written to its cache (`embeddings.npz`): the first pick
  is the prompt nearest the mean, each next one the prompt farthest from every pick so far.
- `quality`: the heuristic quality score of the `quality` clean step, highest first.

Determinism and seeds: a ranking depends only on the tier's examples and the scorer. The pool is
put in content-id order first, so ties (broken by id) and the k-center start never depend on the
order records were read in. Seeds do not change a ranking: size n of a ranked tier is the same
top n for every seed, and a seed varies only training (LoRA initialisation, batch order); see
loop/subsets.py. `top`/`min_score`/`where` still choose the tier's pool; the ranking orders it.

IFD in detail:

- "Answer alone" is the assistant turn opened with no prompt (the chat template's generation
  prompt, e.g. `<|im_start|>assistant\\n` for ChatML), then the answer; for plain-text training
  (`train.completion_as_text`) the BOS token (else EOS) then the answer. Both passes score
  exactly the answer tokens that `encode_example` labels for training (the answer and its
  end-of-turn tokens, as far as `selection.max_length` keeps them).
- Very short answers: with fewer than `selection.min_answer_tokens` answer tokens (the answer's
  own, template tokens not counted; default 3) the ratio is that of one or two tokens' losses,
  mostly noise, so such an example gets no IFD. It ranks after every scored example, in
  content-id order (fixed, unrelated to content), and the count is said. Examples whose answer
  max_length cuts off entirely are treated the same way.
- IFD >= 1: the prompt makes the answer less likely (the paper discards these). They rank
  after every example with IFD < 1 (closest to 1 first) and before the short answers, so a
  subset takes them only when the tier has too few others.
- Cost: two forward passes per example, batched by length (`selection.batch_size`). The
  estimate is said before scoring starts and the throughput after it.
- Cache: one JSONL file per scorer (model, revision, precision, chat template, max_length,
  chat or plain text) under `<work dir>/select/`, one line per content id. It is appended after
  every chunk of `CHUNK` examples, so an interrupted run resumes where it stopped and a re-run
  scores nothing (and loads no model).

k-center cost: each pick is one pass over the embeddings (n x 384 floats), so the first
`selection.diversity_greedy_max` picks (default 10,000) are greedy; the prompts after them
follow by their distance to those picks, farthest first. The order is cached per pool.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loop.events import Progress, say, silent
from loop.example import Example
from loop.recipe import ModelConfig, Recipe, TierSpec, is_ranked

IFD_VERSION = 1  # bump when the scoring changes, so cached scores are not reused
CHUNK = 64  # examples scored between cache writes: what an interruption can lose
# Forward-pass CPU seconds per scored token of SmolLM2-135M (2 shared cores at load ~4, fp32,
# batch 16): 140 tokens/s, 0.47 examples/s at 266 tokens (benchmarks/selection_cost.py,
# results/selection/ifd_consensus_summary.json); other models scale by their parameter count.
# A later run on the same machine uses the rate it measured instead.
_CPU_S_PER_TOKEN_135M = 1 / 140
_PARAMS_135M = 134.5e6
# Not measured here: a GPU is assumed ~30x a 2-core CPU (as semantic dedup assumes).
_GPU_SPEEDUP = 30.0


@dataclass(frozen=True)
class IfdScore:
    """One example's two losses (mean NLL per answer token) and the answer tokens scored."""

    cond: float  # with the prompt in context
    alone: float  # without it
    tokens: int  # answer tokens scored (template tokens included)
    answer_tokens: int  # the answer's own tokens (what min_answer_tokens counts)

    @property
    def ifd(self) -> float:
        return self.cond / self.alone if self.alone > 0 else math.inf


@dataclass(frozen=True)
class Ranking:
    """A ranked tier: its pool best first, and the value each example was ranked by."""

    tier: str
    method: str
    order: tuple[Example, ...]
    scores: dict[str, float]  # id -> IFD / answer tokens / k-center distance / quality
    unscored: int  # examples ranked last for want of a score (short answers for IFD)
    note: str  # one line: what was ranked and how long it took
    examples_per_s: float | None = None  # IFD: scoring throughput, when this call scored any


# ----------------------------------------------------------------------------- orders


def by_id(pool: Sequence[Example]) -> list[Example]:
    """The pool in content-id order: what every ranking starts from (ties break by id)."""
    return sorted(pool, key=lambda e: e.id)


def order_by_score(pool: Sequence[Example], score: Mapping[str, float]) -> list[Example]:
    """Highest score first, ties by content id."""
    return sorted(pool, key=lambda e: (-score[e.id], e.id))


def ifd_order(
    pool: Sequence[Example], scores: Mapping[str, IfdScore | None], min_answer_tokens: int
) -> tuple[list[Example], dict[str, int]]:
    """IFD < 1 highest first, then IFD >= 1 closest to 1 first, then the examples without a
    usable IFD (short or cut-off answers) by content id; and how many fell in each group."""
    below, above, short = [], [], []
    for ex in pool:
        s = scores.get(ex.id)
        if s is None or s.tokens == 0 or s.answer_tokens < min_answer_tokens:
            short.append(ex)
        elif s.ifd < 1:
            below.append(ex)
        else:
            above.append(ex)
    below.sort(key=lambda e: (-scores[e.id].ifd, e.id))
    above.sort(key=lambda e: (scores[e.id].ifd, e.id))
    short.sort(key=lambda e: e.id)
    counts = {"below_1": len(below), "at_or_above_1": len(above), "short": len(short)}
    return below + above + short, counts


def k_center_order(emb: np.ndarray, greedy_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center order of the rows of `emb` (Euclidean), and each row's distance to the
    rows picked before it (its pick's coverage radius; inf for the first).

    The first pick is the row nearest the mean; each next pick is the row farthest from every
    pick so far (ties: the lowest index). After `greedy_max` picks the rest follow by their
    distance to the picks, farthest first, without further greedy steps.
    """
    from threadpoolctl import threadpool_limits

    x = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    # One BLAS thread: a pick is one matrix-vector product, and on 2 busy cores a second thread
    # made it slower: 8.1 vs 0.38 ms a pick at 10k rows, 13.1 vs 9.2 ms at 100k
    # (benchmarks/results/figures/kcenter_threads.txt).
    with threadpool_limits(1):
        return _k_center(x, greedy_max)


def _k_center(x: np.ndarray, greedy_max: int | None) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    k = n if greedy_max is None else max(1, min(n, int(greedy_max)))
    sq = np.einsum("ij,ij->i", x, x).astype(np.float32)
    centre = x.mean(0)
    first = int(np.argmin(sq - 2.0 * (x @ centre)))  # ||x - mean||^2 up to a constant
    # squared distances to the nearest pick; picked rows are set to -1 so they are never again
    mind = np.maximum(sq + sq[first] - 2.0 * (x @ x[first]), 0.0).astype(np.float32)
    order = np.empty(n, np.int64)
    radius = np.empty(n, np.float32)
    order[0], radius[0] = first, np.inf
    mind[first] = -1.0
    d = np.empty(n, np.float32)  # one buffer for every pick's distances: no allocation per pick
    for t in range(1, k):
        j = int(np.argmax(mind))
        order[t], radius[t] = j, math.sqrt(max(float(mind[j]), 0.0))
        np.dot(x, x[j], out=d)
        d *= -2.0
        d += sq
        d += sq[j]
        np.minimum(mind, d, out=mind)
        mind[j] = -1.0
    if k < n:
        rest = np.flatnonzero(mind >= 0)
        rest = rest[np.lexsort((rest, -mind[rest]))]  # farthest first, ties by index
        order[k:] = rest
        radius[k:] = np.sqrt(np.maximum(mind[rest], 0.0))
    return order, radius


# ----------------------------------------------------------------------------- IFD scoring


def generation_prefix(tokenizer: Any, *, as_text: bool = False) -> list[int]:
    """The tokens that open an answer with no prompt before it: the chat template's generation
    prompt (the assistant turn's header), or BOS (else EOS) for plain text."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if as_text:
        return [start]
    msgs = [{"role": "user", "content": "x"}]
    with_gen = tokenizer.apply_chat_template(
        msgs, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    without = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    n = 0
    while n < min(len(with_gen), len(without)) and with_gen[n] == without[n]:
        n += 1
    return list(with_gen[n:]) or [start]


def ifd_sequences(
    tokenizer: Any, ex: Example, *, max_length: int | None, as_text: bool, prefix: Sequence[int]
) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]] | None:
    """The (input_ids, labels) pair of each pass: with the prompt (as training encodes it) and
    alone (`prefix` + the same labelled tokens). None when max_length leaves no answer token."""
    from loop.models import IGNORE_INDEX, encode_example

    ids, labels = encode_example(tokenizer, ex, max_length=max_length, as_text=as_text)
    answer = [t for t in labels if t != IGNORE_INDEX]
    if not answer:
        return None
    alone = list(prefix) + answer
    return (ids, labels), (alone, [IGNORE_INDEX] * len(prefix) + answer)


def score_ifd(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    batch_size: int,
    max_length: int | None,
    as_text: bool = False,
) -> list[IfdScore]:
    """Both losses of every example (two forward passes each, batched by length)."""
    from loop.models import answer_logprobs

    prefix = generation_prefix(tokenizer, as_text=as_text)
    seqs = [
        ifd_sequences(tokenizer, ex, max_length=max_length, as_text=as_text, prefix=prefix)
        for ex in examples
    ]
    flat = [part for s in seqs if s is not None for part in s]
    pairs = answer_logprobs(model, flat, batch_size=batch_size, pad_id=tokenizer.pad_token_id)
    answer_tokens = [
        len(ids)
        for ids in tokenizer([ex.answer for ex in examples], add_special_tokens=False)["input_ids"]
    ]
    out, k = [], 0
    for s, n_answer in zip(seqs, answer_tokens, strict=True):
        if s is None:
            out.append(IfdScore(math.nan, math.nan, 0, n_answer))
            continue
        (lp_c, n_c), (lp_a, n_a) = pairs[k], pairs[k + 1]
        k += 2
        out.append(IfdScore(-lp_c / n_c, -lp_a / n_a, n_c, n_answer))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "model"


def scorer_config(recipe: Recipe, spec: TierSpec) -> ModelConfig:
    """The model that scores IFD for `spec`: the recipe's, or `select_model` with its defaults."""
    if spec.select_model is None or spec.select_model == recipe.model.name:
        return recipe.model
    return ModelConfig(name=spec.select_model)


def ifd_cache_path(
    folder: Path, cfg: ModelConfig, *, dtype: str, max_length: int | None, as_text: bool
) -> Path:
    """The cache file of one scorer: everything that changes a score is in its name's hash."""
    key = json.dumps(
        [IFD_VERSION, cfg.name, cfg.revision, dtype, cfg.chat_template, max_length, as_text]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return folder / f"ifd-{_slug(cfg.name)}-{digest}.jsonl"


def load_ifd_cache(path: Path) -> dict[str, IfdScore]:
    """Scores by content id; a line cut short by an interruption is skipped (scored again)."""
    out: dict[str, IfdScore] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            out[row["id"]] = _from_row(row)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def _append(path: Path, rows: Sequence[tuple[str, IfdScore]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = False  # a line an interruption cut short: end it, so the next line stays whole
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, 2)
            torn = fh.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as fh:
        if torn:
            fh.write("\n")
        for ex_id, s in rows:
            fh.write(
                json.dumps(
                    {
                        "id": ex_id,
                        "cond": s.cond if math.isfinite(s.cond) else None,
                        "alone": s.alone if math.isfinite(s.alone) else None,
                        "tokens": s.tokens,
                        "answer": s.answer_tokens,
                    }
                )
                + "\n"
            )
        fh.flush()


def _from_row(row: dict) -> IfdScore:
    return IfdScore(
        math.nan if row["cond"] is None else float(row["cond"]),
        math.nan if row["alone"] is None else float(row["alone"]),
        int(row["tokens"]),
        int(row["answer"]),
    )


def estimate_ifd_seconds(
    tokens: int, *, params: float = _PARAMS_135M, device: str = "cpu", tokens_per_s: float | None
) -> float:
    """Seconds to score sequences holding `tokens` tokens in all (both passes counted): from
    a throughput measured earlier on this machine when there is one, else from the 2-core CPU
    figure of SmolLM2-135M scaled by parameter count (and an assumed 30x on a GPU)."""
    if tokens_per_s:
        return tokens / tokens_per_s
    per_token = _CPU_S_PER_TOKEN_135M * params / _PARAMS_135M
    if device != "cpu":
        per_token /= _GPU_SPEEDUP
    return tokens * per_token


@dataclass(frozen=True)
class IfdRun:
    scored: int  # examples scored in this call
    cached: int  # examples read from the cache
    seconds: float  # scoring time (model load excluded)
    examples_per_s: float | None
    estimate_s: float | None  # what was said before scoring started
    cache: Path


def ifd_scores(
    examples: Sequence[Example],
    cfg: ModelConfig,
    *,
    folder: Path,
    batch_size: int,
    max_length: int | None,
    as_text: bool = False,
    progress: Progress = silent,
    load_base: Callable[[ModelConfig], Any] | None = None,
) -> tuple[dict[str, IfdScore], IfdRun]:
    """IFD scores of `examples` by the model `cfg`, from the cache where it has them; the rest
    scored in chunks of CHUNK, each appended to the cache as it finishes (so a run that stops
    resumes there). Says the estimate before it starts and the throughput when done."""
    from loop import models

    load_base = load_base or models.load_base
    device = models.resolve_device()
    dtype = str(models.resolve_dtype(cfg, device)).removeprefix("torch.")
    path = ifd_cache_path(folder, cfg, dtype=dtype, max_length=max_length, as_text=as_text)
    rate_file = path.with_suffix(".rate.json")
    cached = load_ifd_cache(path)
    todo = list({ex.id: ex for ex in examples if ex.id not in cached}.values())
    estimate = None
    scored_s = 0.0
    if todo:
        base = load_base(cfg)
        tok = base.tokenizer
        params = float(sum(p.numel() for p in base.model.parameters()))
        prefix = len(generation_prefix(tok, as_text=as_text))
        tokens = 0  # both passes: the whole sequence, then the prefix + the answer tokens
        for ex in todo:
            ids, labels = models.encode_example(tok, ex, max_length=max_length, as_text=as_text)
            tokens += len(ids) + prefix + sum(t != models.IGNORE_INDEX for t in labels)
        known = None
        if rate_file.is_file():
            try:
                known = json.loads(rate_file.read_text())["tokens_per_s"]
            except (ValueError, KeyError):
                known = None
        estimate = estimate_ifd_seconds(
            tokens, params=params, device=base.device, tokens_per_s=known
        )
        say(
            progress,
            f"IFD ({cfg.name}): {len(todo):,} examples to score, {len(examples) - len(todo):,} "
            f"cached; about {estimate:.0f} s ({'measured rate' if known else 'estimated rate'}, "
            f"{base.device})",
        )
        start = time.perf_counter()
        for lo in range(0, len(todo), CHUNK):
            part = todo[lo : lo + CHUNK]
            got = score_ifd(
                base.model, tok, part, batch_size=batch_size, max_length=max_length,
                as_text=as_text,
            )  # fmt: skip
            _append(path, [(ex.id, s) for ex, s in zip(part, got, strict=True)])
            cached.update((ex.id, s) for ex, s in zip(part, got, strict=True))
            done = lo + len(part)
            if done < len(todo):
                elapsed = time.perf_counter() - start
                say(progress, f"  IFD {done:,}/{len(todo):,} ({done / elapsed:.1f} examples/s)")
        scored_s = time.perf_counter() - start
        rate_file.write_text(
            json.dumps(
                {
                    "examples": len(todo),
                    "seconds": round(scored_s, 3),
                    "examples_per_s": round(len(todo) / scored_s, 3),
                    "tokens_per_s": round(tokens / scored_s, 1),
                    "device": base.device,
                    "batch_size": batch_size,
                }
            )
            + "\n"
        )
        say(
            progress,
            f"IFD ({cfg.name}): scored {len(todo):,} examples in {scored_s:.1f} s "
            f"({len(todo) / scored_s:.2f} examples/s on {base.device}); cache {path}",
        )
    rate = len(todo) / scored_s if todo and scored_s > 0 else None
    run = IfdRun(len(todo), len(examples) - len(todo), scored_s, rate, estimate, path)
    return {ex.id: cached[ex.id] for ex in examples}, run


# ----------------------------------------------------------------------------- tiers


def _diversity(
    recipe: Recipe, name: str, pool: list[Example], folder: Path, progress: Progress
) -> Ranking:
    from loop.clean import semantic
    from loop.clean.base import shared_lines

    cfg = recipe.clean.semantic_dedup
    greedy_max = recipe.selection.diversity_greedy_max
    key = hashlib.sha256(
        json.dumps([[e.id for e in pool], cfg.max_chars, cfg.shared_text, greedy_max]).encode()
    ).hexdigest()[:16]
    order_file = folder / f"diversity-{key}.json"
    if order_file.is_file():
        stored = json.loads(order_file.read_text())
        index = {e.id: e for e in pool}
        order = tuple(index[i] for i in stored["ids"])
        scores = {
            i: math.inf if r is None else float(r)
            for i, r in zip(stored["ids"], stored["radius"], strict=True)
        }
        return Ranking(name, "diversity", order, scores, 0, f"k-center order reused ({order_file})")
    shared = shared_lines(pool) if cfg.shared_text == "drop" else frozenset()
    texts = [semantic.embedding_text(ex, cfg.max_chars, shared) for ex in pool]
    # semantic dedup's cache: run_clean keeps it in <work dir>/clean/cache (loop.prepare), and
    # `folder` is <work dir>/select
    cache = folder.parent / "clean" / "cache" / semantic.CACHE_FILE
    known = set(semantic.EmbeddingCache(cache).load())
    todo = [t for t in dict.fromkeys(texts) if semantic.cache_key(t) not in known]
    seconds = semantic.estimate_seconds(
        len(todo),
        mean_chars=float(np.mean([len(t) for t in todo])) if todo else 0.0,
        max_chars=cfg.max_chars,
        device=semantic.default_device(),
        exact_search_max=0,  # no pair search here: the k-center picks instead
    )
    picks = min(len(pool), greedy_max)
    # ~1.5 ms a pick at 10k rows, 23 ms at 100k (benchmarks/results/selection/kcenter.json)
    seconds += picks * len(pool) * 2.3e-7
    say(
        progress,
        f"diversity ({name}): {len(todo):,} of {len(texts):,} prompts to embed, then "
        f"{picks:,} k-center picks; about {seconds:.0f} s",
    )
    start = time.perf_counter()
    emb = semantic.embed(texts, batch_size=cfg.batch_size, cache_path=cache)
    t_embed = time.perf_counter() - start
    idx, radius = k_center_order(emb, greedy_max)
    t_rank = time.perf_counter() - start - t_embed
    order = tuple(pool[i] for i in idx)
    scores = {pool[i].id: float(r) for i, r in zip(idx, radius, strict=True)}
    folder.mkdir(parents=True, exist_ok=True)
    order_file.write_text(
        json.dumps(
            {
                "ids": [e.id for e in order],
                "radius": [
                    None if not math.isfinite(scores[e.id]) else scores[e.id] for e in order
                ],
            }
        )
    )
    note = (
        f"diversity ({name}): embeddings {t_embed:.1f} s, k-center {t_rank:.1f} s for "
        f"{len(pool):,} prompts ({picks:,} greedy picks)"
    )
    return Ranking(name, "diversity", order, scores, 0, note)


def rank_tier(
    recipe: Recipe,
    spec: TierSpec,
    pool: Sequence[Example],
    *,
    folder: Path,
    tokenizer: Any,
    progress: Progress = silent,
    load_base: Callable[[ModelConfig], Any] | None = None,
) -> Ranking:
    """The ranking of one ranked tier's training pool (see the module notes)."""
    pool = by_id(pool)
    sel = recipe.selection
    if spec.select == "length":
        counts = [
            len(ids)
            for ids in tokenizer([ex.answer for ex in pool], add_special_tokens=False)["input_ids"]
        ]
        scores = {ex.id: float(n) for ex, n in zip(pool, counts, strict=True)}
        order = order_by_score(pool, scores)
        note = f"length ({spec.name}): {len(pool):,} answers ranked by tokens"
        return Ranking(spec.name, "length", tuple(order), scores, 0, note)
    if spec.select == "quality":
        scores = {ex.id: float(ex.scores["quality"]) for ex in pool}
        order = order_by_score(pool, scores)
        note = f"quality ({spec.name}): {len(pool):,} examples ranked by quality score"
        return Ranking(spec.name, "quality", tuple(order), scores, 0, note)
    if spec.select == "diversity":
        return _diversity(recipe, spec.name, list(pool), folder, progress)
    if spec.select == "ifd":
        cfg = scorer_config(recipe, spec)
        max_length = sel.max_length or recipe.train.max_length
        got, run = ifd_scores(
            pool,
            cfg,
            folder=folder,
            batch_size=sel.batch_size,
            max_length=max_length,
            as_text=recipe.train.completion_as_text,
            progress=progress,
            load_base=load_base,
        )
        order, groups = ifd_order(pool, got, sel.min_answer_tokens)
        scores = {
            i: s.ifd
            for i, s in got.items()
            if s.tokens and s.answer_tokens >= sel.min_answer_tokens
        }
        note = (
            f"ifd ({spec.name}, scored by {cfg.name}): {groups['below_1']:,} with IFD < 1 first, "
            f"{groups['at_or_above_1']:,} with IFD >= 1 after them, {groups['short']:,} answers "
            f"shorter than {sel.min_answer_tokens} tokens (or cut off) last; "
            f"{run.cached:,} scores cached, {run.scored:,} scored in {run.seconds:.1f} s"
            + (f" ({run.examples_per_s:.2f} examples/s)" if run.examples_per_s else "")
        )
        return Ranking(
            spec.name, "ifd", tuple(order), scores, groups["short"], note, run.examples_per_s
        )
    raise ValueError(f"tier {spec.name!r}: select {spec.select!r} is not a ranking")  # random


def rank_tiers(
    recipe: Recipe,
    pools: Mapping[str, Sequence[Example]],
    *,
    folder: Path,
    tokenizer: Any,
    progress: Progress = silent,
    load_base: Callable[[ModelConfig], Any] | None = None,
) -> dict[str, Ranking]:
    """Every ranked tier's ranking, in recipe order; each says its note as it finishes."""
    out = {}
    for spec in recipe.tiers:
        if not is_ranked(spec):
            continue
        r = rank_tier(
            recipe,
            spec,
            pools[spec.name],
            folder=folder,
            tokenizer=tokenizer,
            progress=progress,
            load_base=load_base,
        )
        say(progress, f"  {r.note}")
        out[spec.name] = r
    return out
