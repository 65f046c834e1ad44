"""Near-duplicate dedup: MinHash LSH over word or character shingles.

Pipeline, all vectorized over chunks of 50k texts:
1. Shingle hashes in numpy: each chunk is lower-cased, UTF-8 encoded and joined into one byte
   buffer; words are the runs of bytes that are not ASCII punctuation or space (so "Hello," and
   "hello" are one word), and each word (or, with `shingle: char`, each window of `ngram` bytes
   of the whitespace-collapsed text) is hashed from unaligned 8-byte reads of that buffer.
   Word n-grams combine consecutive word hashes. A text with fewer than `ngram` words is compared
   on its words; an empty text is one fixed shingle. No Python object is made per shingle.
2. MinHash signatures with rensa (`RMinHash.digest_matrix_from_flat_token_hashes`, Rust).
3. LSH banding in numpy: b bands of r rows, b*r <= num_perm, r the largest band width for which
   a pair at the threshold still becomes a candidate with probability >= 0.97; buckets by
   sorting 64-bit band hashes. Candidates are verified on the estimated Jaccard similarity
   (share of equal signature entries) >= `threshold`.
4. Minimal pairs: a verified pair whose answers differ materially (contradictions'
   answer_similarity below `answer_similarity`) is not a duplicate; both records stay and the
   pair is counted (`minimal_pairs`; pairs with the very same prompt are counted apart as
   `same_prompt_pairs` and left to the contradictions step).
5. Clusters are the connected components of the remaining pairs. Within one, members are
   visited best first (quality score, then first seen); a member whose estimated Jaccard to a
   record already kept reaches `threshold` is dropped as its `near_duplicate`, unless their
   answers differ (a minimal pair); any other member is kept (`chained_kept` when only a chain
   A~B~C linked it), so no record is dropped further than the threshold from the one it names.

The text compared leaves out the prompt lines that at least half of the records share
(`shared_text: drop`): a common system prompt or a template's fixed lines would otherwise make
every short prompt a near-duplicate of every other.

Measured with benchmarks/clean_pool.py (2 shared cores, load ~3.4, 200k synthetic rows of ~75
words): inside the cleaning pipeline the step took 194k rows in 7.7 s, 25k rows/s
(benchmarks/results/figures/clean_pool_200k.txt). That script also prints recall and precision
on planted pairs and the same step with datasketch (`MinHash.bulk` + `MinHashLSH`) as the
baseline; no run of that part is stored yet.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import numpy as np

from loop.clean.base import (
    Drop,
    StepContext,
    StepOutput,
    compare_text,
    components,
    groups_from_labels,
    shared_lines,
)
from loop.clean.pairs import pair_counts, resolve_group, split_minimal_pairs
from loop.clean.quality import best_first
from loop.example import Example
from loop.recipe import NearDedupConfig

MINHASH_SEED = 42
CHUNK = 50_000
_U64 = np.uint64
_GOLD = _U64(0x9E3779B97F4A7C15)
_EMPTY = _U64(0x5EED5EED5EED5EED)
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
# Byte classes: ASCII letters/digits and every non-ASCII byte belong to words.
_SEPARATOR = np.ones(256, dtype=bool)
_SEPARATOR[[ord(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]] = False
_SEPARATOR[128:] = False


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, elementwise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _span_hash(view: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte span buf[start:start+length], from 8-byte unaligned reads."""
    h = view[starts] & _MASKS[np.minimum(lengths, 8)]
    h = _mix(h ^ (lengths.astype(np.uint64) * _GOLD))
    k = 8
    active = np.flatnonzero(lengths > 8)
    while active.size:
        block = view[starts[active] + k] & _MASKS[np.minimum(lengths[active] - k, 8)]
        h[active] = _mix(h[active] ^ block)
        k += 8
        active = active[lengths[active] > k]
    return h


def _buffer(texts: Sequence[str], char: bool) -> tuple[bytes, np.ndarray, np.ndarray]:
    if char:
        enc = [" ".join(t.lower().split()).encode("utf-8") for t in texts]
    else:
        enc = [t.lower().encode("utf-8") for t in texts]
    lengths = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
    starts = np.zeros(len(enc), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return b"\n".join(enc) + b"\x00" * 16, starts, lengths


def shingle_hashes(
    texts: Sequence[str], shingle: str = "word", ngram: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Flat uint64 shingle hashes of `texts` and the row offsets (len(texts) + 1) into them."""
    n_docs = len(texts)
    buf, doc_start, doc_len = _buffer(texts, shingle == "char")
    size = len(buf) - 16
    view = np.ndarray((size + 9,), dtype="<u8", buffer=buf, offset=0, strides=(1,))
    doc_of_byte = np.repeat(np.arange(n_docs, dtype=np.int64), doc_len + 1)[:size]
    with np.errstate(over="ignore"):
        if shingle == "char":
            pos = np.arange(size, dtype=np.int64)
            doc_end = doc_start + doc_len
            valid = pos + ngram <= doc_end[doc_of_byte]
            sh_pos = pos[valid]
            sh = _span_hash(view, sh_pos, np.full(len(sh_pos), ngram, dtype=np.int64))
            sdoc = doc_of_byte[sh_pos]
            short = np.flatnonzero(doc_len < ngram)
            extra_h = _span_hash(view, doc_start[short], doc_len[short])
            extra_doc = short
        else:
            b = np.frombuffer(buf, dtype=np.uint8, count=size)
            in_word = (~_SEPARATOR[b]).view(np.int8)
            edges = np.diff(in_word, prepend=np.int8(0), append=np.int8(0))
            starts = np.flatnonzero(edges == 1)
            ends = np.flatnonzero(edges == -1)
            h = _span_hash(view, starts, ends - starts)
            wdoc = doc_of_byte[starts]
            k = len(h)
            if k >= ngram:
                g = h[: k - ngram + 1].copy()
                for j in range(1, ngram):
                    g = _mix(g * _GOLD + h[j : k - ngram + 1 + j])
                same = wdoc[: k - ngram + 1] == wdoc[ngram - 1 :]
                sh, sdoc = g[same], wdoc[: k - ngram + 1][same]
            else:
                sh, sdoc = np.zeros(0, np.uint64), np.zeros(0, np.int64)
            words = np.bincount(wdoc, minlength=n_docs)
            short_words = (words < ngram)[wdoc] if ngram > 1 else np.zeros(k, bool)
            empty = np.flatnonzero(words == 0)
            extra_h = np.concatenate([h[short_words], np.full(len(empty), _EMPTY)])
            extra_doc = np.concatenate([wdoc[short_words], empty])
    if len(extra_doc):
        sh = np.concatenate([sh, extra_h])
        sdoc = np.concatenate([sdoc, extra_doc])
        order = np.argsort(sdoc, kind="stable")
        sh, sdoc = sh[order], sdoc[order]
    offsets = np.zeros(n_docs + 1, dtype=np.uint64)
    np.cumsum(np.bincount(sdoc, minlength=n_docs), out=offsets[1:])
    return np.ascontiguousarray(sh, dtype=np.uint64), offsets


def signatures(
    texts: Sequence[str], cfg: NearDedupConfig, ctx: StepContext | None = None
) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm), uint32."""
    from rensa import RMinHash

    chunk = CHUNK if cfg.shingle == "word" else CHUNK // 4
    out = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
    was_enabled = gc.isenabled()
    gc.disable()  # the pool's objects make each collection slow; nothing here makes cycles
    try:
        for lo in range(0, len(texts), chunk):
            part = texts[lo : lo + chunk]
            flat, offsets = shingle_hashes(part, cfg.shingle, cfg.ngram)
            matrix = RMinHash.digest_matrix_from_flat_token_hashes(
                flat, offsets, cfg.num_perm, MINHASH_SEED
            )
            out[lo : lo + len(part)] = np.array(matrix.to_rows(), dtype=np.uint32)
            if ctx is not None:
                ctx.tick("near_dedup", lo + len(part), len(texts))
    finally:
        if was_enabled:
            gc.enable()
    return out


def band_params(threshold: float, num_perm: int, min_prob: float = 0.97) -> tuple[int, int]:
    """(bands, rows): the widest band whose pairs at `threshold` collide with p >= min_prob."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands < 1:
            break
        if 1 - (1 - threshold**rows) ** bands >= min_prob:
            best = (bands, rows)
    return best


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 hash of each band of each signature, shape (n, bands)."""
    out = np.empty((len(sig), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(len(sig), _U64(b + 1) * _GOLD, dtype=np.uint64)
            for c in range(b * rows, (b + 1) * rows):
                h = _mix(h * _GOLD + sig[:, c].astype(np.uint64))
            out[:, b] = h
    return out


def estimated_jaccard(a: np.ndarray, b: np.ndarray, chunk: int = 500_000) -> np.ndarray:
    """Share of equal entries of paired signature rows a[k], b[k]."""
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), chunk):
        out[lo : lo + chunk] = (a[lo : lo + chunk] == b[lo : lo + chunk]).mean(axis=1)
    return out


def similar_pairs(
    sig: np.ndarray, threshold: float, bands: int | None = None, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verified pairs (i, j, estimated Jaccard) with i < j within one signature matrix."""
    n = len(sig)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    if bands is None or rows is None:
        bands, rows = band_params(threshold, sig.shape[1])
    hashes = band_hashes(sig, bands, rows)
    left, right = [], []
    for b in range(bands):
        order = np.argsort(hashes[:, b], kind="stable")
        hs = hashes[order, b]
        new_run = np.concatenate([[True], hs[1:] != hs[:-1]])
        head = order[np.flatnonzero(new_run)[np.cumsum(new_run) - 1]]
        member = order != head  # each bucket member is paired with the bucket's first row
        left.append(head[member])
        right.append(order[member])
    i, j = np.concatenate(left), np.concatenate(right)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pair = np.unique(lo.astype(np.int64) * n + hi)
    lo, hi = pair // n, pair % n
    jac = estimated_jaccard(sig[lo], sig[hi])
    keep = jac >= threshold
    return lo[keep], hi[keep], jac[keep]


def cross_pairs(
    query_sig: np.ndarray, corpus_sig: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verified (query index, corpus index, estimated Jaccard) pairs between two matrices."""
    if len(query_sig) == 0 or len(corpus_sig) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    bands, rows = band_params(threshold, query_sig.shape[1])
    hq = band_hashes(query_sig, bands, rows)
    hc = band_hashes(corpus_sig, bands, rows)
    qs, cs = [], []
    for b in range(bands):
        order = np.argsort(hq[:, b], kind="stable")
        sorted_q = hq[order, b]
        pos = np.searchsorted(sorted_q, hc[:, b])
        pos_c = np.minimum(pos, len(sorted_q) - 1)
        hit = (pos < len(sorted_q)) & (sorted_q[pos_c] == hc[:, b])
        qs.append(order[pos_c[hit]])
        cs.append(np.flatnonzero(hit))
    q, c = np.concatenate(qs), np.concatenate(cs)
    n = len(corpus_sig)
    pair = np.unique(q.astype(np.int64) * n + c)
    q, c = pair // n, pair % n
    jac = estimated_jaccard(query_sig[q], corpus_sig[c])
    keep = jac >= threshold
    return q[keep], c[keep], jac[keep]


def texts_of(
    examples: Sequence[Example], on: str, shared: frozenset[str] = frozenset()
) -> list[str]:
    """The text hashed per example: the prompt (+ the answer unless `on` is prompt), without
    the `shared` prompt lines."""
    return [compare_text(ex, on, shared) for ex in examples]


def clusters(texts: Sequence[str], cfg: NearDedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(cluster label per text, signatures): texts sharing a label are near-duplicates."""
    sig = signatures(texts, cfg)
    i, j, _ = similar_pairs(sig, cfg.threshold)
    return components(len(texts), i, j), sig


def run(examples: list[Example], cfg: NearDedupConfig, ctx: StepContext) -> StepOutput:
    shared = shared_lines(examples) if cfg.shared_text == "drop" else frozenset()
    sig = signatures(texts_of(examples, cfg.on, shared), cfg, ctx)
    i, j, _ = similar_pairs(sig, cfg.threshold)
    pairs = split_minimal_pairs(
        examples, i, j, keep=cfg.minimal_pairs == "keep", similarity=cfg.answer_similarity
    )
    labels = components(len(examples), pairs.left, pairs.right)
    drops = []
    minimal, chained = pairs.minimal_pairs, 0

    def jaccard_to(m: int, kept) -> np.ndarray:
        rows = sig[list(kept)]
        return estimated_jaccard(rows, np.broadcast_to(sig[m], rows.shape))

    for group in groups_from_labels(labels):
        out = resolve_group(
            best_first(group, examples, ctx),
            jaccard_to,
            cfg.threshold,
            examples,
            keep_pairs=cfg.minimal_pairs == "keep",
            answer_similarity=cfg.answer_similarity,
        )
        minimal, chained = minimal + out.minimal_pairs, chained + out.chained
        for m, r, s in out.drops:
            kept = examples[r]
            detail = f"of {kept.id} ({kept.source}), estimated Jaccard {s:.2f}"
            drops.append(Drop(int(m), "near_duplicate", detail, duplicate_of=kept.id))
    drops.sort(key=lambda d: d.index)
    counts = pair_counts(minimal, pairs, shared, chained)
    return StepOutput(list(examples), tuple(drops), counts=counts)
