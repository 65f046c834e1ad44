"""Generation for evaluation: the path before this benchmark's changes against the current one.

On the demo task (`loop demo`'s product pool: a support message -> {"product": "Nimbus X2"}, the
recipe's system prompt) with the packaged SmolLM2-135M-Instruct, for two cells: the base model
(zero-shot) and a LoRA adapter trained here on `--train` clean examples. Each cell answers the same
`--n` clean items, `--max-new-tokens` at most, `--batch-size` per call.

- before: `before_generate` below, a copy of `loop.evaluate.generate` as it was: every item
  generated, greedy, left-padded batches sorted by length, stop at EOS / end of turn, the adapter
  unmerged.
- now: `loop.evaluate.sample_answers`, what `evaluate` runs: an item whose reference greedy decoding
  writes (read from the validation pass, which `evaluate` runs anyway for the loss) is not
  generated; the rest stop once no evaluator's score can change; the adapter is folded into plain
  layers while generating.

Identical means: every evaluator returns the same result (score and sub-metrics) for the two
answers to an item; the raw text is counted too (a row stopped early keeps only its settled part).
Timing is wall time in this process: the paths run in turns, `--rounds` times for the trained
cell (once for the zero-shot one, whose `before` is the slowest), and the median counts.

    python benchmarks/generation.py                    # 40 items, 40 new tokens, batch 16
    python benchmarks/generation.py --adapter DIR      # a saved adapter instead of training one
    python benchmarks/generation.py --cache-variants   # one batch: dynamic vs static KV cache, compile
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch


@torch.no_grad()
def before_generate(
    model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """`loop.evaluate.generate` before the speed work (kept here as the baseline)."""
    from transformers import GenerationConfig

    from loop.evaluate import _EvalMode, _model_of
    from loop.models import stop_token_ids

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
    with _EvalMode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = list(prompts[i])
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
            gen = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen_cfg
            )
            for row, i in enumerate(idx):
                new = gen[row, width:].tolist()
                for k, tok in enumerate(new):  # cut at the first stop token
                    if tok in stops:
                        new = new[:k]
                        break
                out[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
    return out


def demo_items(folder: Path, n_val: int, n_train: int) -> tuple[list, list, Any]:
    """Clean records of the demo product pool, read with the demo recipe's pool settings."""
    from loop.demo import source_line, write_demo_pool
    from loop.pool import load_pool
    from loop.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml")
    pool = write_demo_pool(folder, task="product")
    cfg = dataclasses.replace(recipe.pool, paths=(str(pool.paths[0]),))
    examples = load_pool(cfg).examples
    clean = [ex for ex in examples if pool.truth[source_line(ex.source)].kind == "clean"]
    return clean[:n_val], clean[n_val : n_val + n_train], recipe


def cache_variants(model: Any, tok: Any, prompts: list[list[int]], max_new: int, say) -> None:
    """One left-padded batch through `generate` with each KV cache setting, twice each, in turns."""
    from transformers import CompileConfig, GenerationConfig

    from loop.models import stop_token_ids

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    compiled = CompileConfig(fullgraph=False)
    compiled._compile_all_devices = True  # transformers compiles on GPUs only unless told
    variants = {
        "dynamic cache": {},
        "static cache": {"cache_implementation": "static", "disable_compile": True},
        "static + compile": {"cache_implementation": "static", "compile_config": compiled},
    }

    def run(kw: dict) -> tuple[float, list]:
        cfg = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=stop_token_ids(tok, model),
            pad_token_id=tok.pad_token_id,
            **kw,
        )
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        return time.perf_counter() - t, out[:, width:].tolist()

    t, reference = run({})
    say(f"cache variants, one batch of {len(prompts)}: warm-up {t:.1f} s")
    t, _ = run(variants["static + compile"])
    say(f"  static + compile, first call (compiles): {t:.1f} s")
    for rep in range(2):
        for name, kw in variants.items():
            t, out = run(kw)
            say(
                f"  {name:16} {t:6.1f} s  same tokens as dynamic: {out == reference}  (round {rep + 1})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=40, help="evaluated items")
    ap.add_argument("--train", type=int, default=32, help="examples the adapter trains on")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--model", help="another model than the demo recipe's (tiny-random: a smoke run)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of the trained cell")
    ap.add_argument("--adapter", type=Path, help="a saved adapter instead of training one")
    ap.add_argument(
        "--cache-variants",
        action="store_true",
        help="only time one batch of the trained cell, merged: dynamic KV cache (what generate "
        "uses) vs a static one, eager and under torch.compile",
    )
    ap.add_argument("--out", type=Path, help="also write the report here")
    a = ap.parse_args()

    import transformers

    from loop import train
    from loop.evaluate import (
        build_evaluators,
        generate,
        sample_answers,
        validation_item_losses,
    )
    from loop.models import load_base, prompt_ids
    from loop.recipe import EvaluatorSpec

    transformers.logging.set_verbosity_error()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    say("command: python " + " ".join(sys.argv))
    say(
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}"
    )
    say(
        f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (a sweep shares "
        "the cores; absolute seconds vary with it, the two paths run back to back)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        val, train_set, recipe = demo_items(Path(tmp), a.n, a.train)
    if a.model:
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, name=a.model))
    base = load_base(recipe.model)
    tok = base.tokenizer
    prompts = [prompt_ids(tok, ex) for ex in val]
    lens = sorted(len(p) for p in prompts)
    say(
        f"model {recipe.model.name} on {base.device}; {len(val)} demo items, prompts of "
        f"{lens[0]}-{lens[-1]} tokens; max_new_tokens {a.max_new_tokens}, batch {a.batch_size}"
    )

    if a.adapter:
        trained = train.load_adapter(base, a.adapter)
        say(f"adapter: {a.adapter}")
    else:
        t = time.perf_counter()
        tcfg = dataclasses.replace(
            recipe.train, budget=dataclasses.replace(recipe.train.budget, epochs=1.0)
        )
        result = train.train_cell(base, train_set, tcfg, recipe.lora, seed=0)
        trained = result.model
        say(
            f"adapter: {result.steps} steps on {len(train_set)} examples "
            f"({time.perf_counter() - t:.0f} s)"
        )

    if a.cache_variants:
        with train.merged_for_inference(trained) as merged_model:
            cache_variants(merged_model, tok, prompts[: a.batch_size], a.max_new_tokens, say)
        say(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text("\n".join(lines) + "\n")
        return

    suites = {
        "json_match": build_evaluators([EvaluatorSpec("json_match")]),
        "exact_match": build_evaluators([EvaluatorSpec("exact_match")]),
    }
    before_generate(base.model, tok, prompts[:2], max_new_tokens=2, batch_size=2)  # warm-up
    n = len(val)

    def timed(fn: Any) -> tuple[float, list[str]]:
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    for cell, model in (("trained", trained), ("zero-shot", base.model)):
        if cell == "zero-shot":
            train.release(trained)
        # the validation pass evaluate runs for the loss; the flags add one argmax to it
        flags: list[bool] = []
        t_val, _ = timed(
            lambda model=model, flags=flags: validation_item_losses(
                model,
                tok,
                val,
                max_length=recipe.train.max_length,
                batch_size=a.batch_size,
                greedy_out=flags,
            )
        )
        writes = {ex.id: f for ex, f in zip(val, flags, strict=True)}
        say(
            f"{cell}: validation pass (both paths run it) {t_val:.1f} s; greedy writes the "
            f"reference for {sum(flags)}/{n}"
        )
        paths = {
            "before": lambda model=model: before_generate(
                model, tok, prompts, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size
            ),
        }
        if cell == "trained":  # what merging alone buys: every item generated, no early stop
            paths["merged only"] = lambda model=model: generate(
                model, tok, prompts, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size
            )
        for suite, evaluators in suites.items():
            paths[f"now, {suite}"] = lambda model=model, evaluators=evaluators, writes=writes: (
                sample_answers(
                    model,
                    tok,
                    val,
                    evaluators,
                    max_new_tokens=a.max_new_tokens,
                    batch_size=a.batch_size,
                    max_length=recipe.train.max_length,
                    writes_reference=writes,
                )
            )
        rounds = a.rounds if cell == "trained" else 1
        times: dict[str, list[float]] = {k: [] for k in paths}
        answers: dict[str, list[str]] = {}
        for _ in range(rounds):  # in turns, so a change in the machine's load hits every path
            for name, fn in paths.items():
                seconds, answers[name] = timed(fn)
                times[name].append(seconds)
        base_s = statistics.median(times["before"]) / n
        say(
            f"  {cell:9} before          {base_s:6.2f} s/item  (median of {rounds}: "
            f"{', '.join(f'{x:.0f}' for x in times['before'])} s)"
        )
        old = answers["before"]
        for name in list(paths)[1:]:
            new, per = answers[name], statistics.median(times[name]) / n
            evaluators = suites.get(name.removeprefix("now, "), suites["exact_match"])
            same = sum(
                all(
                    ev.fn(x, ex.answer, **ev.params) == ev.fn(y, ex.answer, **ev.params)
                    for ev in evaluators
                )
                for x, y, ex in zip(old, new, val, strict=True)
            )
            text = sum(x == y for x, y in zip(old, new, strict=True))
            say(
                f"  {cell:9} {name:15} {per:6.2f} s/item  ratio {base_s / per:5.1f}x  identical "
                f"scores {same}/{n}  identical text {text}/{n}  (median of {rounds}: "
                f"{', '.join(f'{x:.0f}' for x in times[name])} s)"
            )
    say(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
