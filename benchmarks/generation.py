"""Generation speed: batched (left padding, prompts sorted by length) against one prompt at a time.

Greedy answers for the same validation prompts with `loop.evaluate.generate`, once with
`--batch-size` prompts per call and once with one per call, in this process. Goal: >= 4x on 2 CPU
cores with the packaged SmolLM2.

    python benchmarks/generation.py                       # 16 prompts, 32 new tokens
    python benchmarks/generation.py --n 40 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import time

from loop.toy import json_task


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=16, help="validation prompts")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()

    import transformers

    from loop.evaluate import generate
    from loop.models import load_base, prompt_ids
    from loop.recipe import ModelConfig

    transformers.logging.set_verbosity_error()
    base = load_base(ModelConfig(name=a.model))
    val = json_task(a.n, seed=1)
    prompts = [prompt_ids(base.tokenizer, ex) for ex in val]
    lens = sorted(len(p) for p in prompts)
    print(
        f"model {a.model} on {base.device}; {a.n} prompts of {lens[0]}-{lens[-1]} tokens, max_new_tokens {a.max_new_tokens}"
    )
    generate(base.model, base.tokenizer, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up

    def timed(batch_size: int) -> tuple[list[str], float]:
        start = time.perf_counter()
        out = generate(
            base.model,
            base.tokenizer,
            prompts,
            max_new_tokens=a.max_new_tokens,
            batch_size=batch_size,
        )
        return out, time.perf_counter() - start

    batched, t_batched = timed(a.batch_size)
    print(f"  batched ({a.batch_size} per call): {t_batched:6.1f} s")
    single, t_single = timed(1)
    print(f"  one by one:             {t_single:6.1f} s")
    same = sum(x == y for x, y in zip(batched, single, strict=True))
    print(f"speed-up {t_single / t_batched:.1f}x; identical answers {same}/{a.n}")


if __name__ == "__main__":
    main()
