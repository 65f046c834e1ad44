"""Training throughput: `loop.train.train_cell` against a plain TRL SFTTrainer script.

Both train the same LoRA on the same variable-length subset with the same hyperparameters, in
this process, one after the other; each figure is non-padding tokens per second of wall time from
building the trainer to the end of training; the best run of each is compared (the cores are
shared, so noise only ever slows a run). Goal: loop / plain >= 1.0.

    python benchmarks/train_overhead.py                 # SmolLM2, 48 examples, 6 steps, 2 runs each
    python benchmarks/train_overhead.py --steps 20 --repeats 3
    python benchmarks/train_overhead.py --trl-defaults  # plain script keeps TRL's defaults
                                                        # (activation checkpointing, bf16 autocast)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time

from loop.toy import json_task


def run_loop(base, train, cfg, lora, seed):
    from loop.train import release, train_cell

    start = time.perf_counter()
    result = train_cell(base, train, cfg, lora, seed=seed)
    seconds = time.perf_counter() - start
    release(result)
    return result.train_tokens, seconds, result.train_loss[-1][1]


def run_plain_trl(base, train, cfg, lora, seed, trl_defaults):
    import datasets
    from peft import LoraConfig as PeftLora
    from trl import SFTConfig, SFTTrainer

    model = copy.deepcopy(base.model)  # the plain script owns its model
    rows = [
        {
            "prompt": [{"role": m.role, "content": m.content} for m in ex.prompt],
            "completion": [{"role": "assistant", "content": ex.answer}],
        }
        for ex in train
    ]
    extra = {} if trl_defaults else {"bf16": False, "gradient_checkpointing": False}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        args = SFTConfig(
            output_dir=tmp,
            max_steps=cfg.budget.min_steps,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.scheduler,
            warmup_steps=cfg.warmup_ratio,
            logging_steps=cfg.logging_steps,
            max_length=cfg.max_length,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=seed,
            use_cpu=base.device == "cpu",
            **extra,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=base.tokenizer,
            peft_config=PeftLora(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
        trainer.train()
        seconds = time.perf_counter() - start
    last_loss = [log["loss"] for log in trainer.state.log_history if "loss" in log][-1]
    return trainer._total_train_tokens, seconds, last_loss


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=48, help="training examples")
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per run")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, alternating order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trl-defaults", action="store_true")
    a = ap.parse_args()

    import datasets
    import transformers

    from loop.models import load_base
    from loop.recipe import BudgetConfig, LoraConfig, ModelConfig, TrainConfig

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    base = load_base(ModelConfig(name=a.model))
    train = json_task(a.n, seed=a.seed)
    lens = sorted(
        len(base.tokenizer.apply_chat_template(r, tokenize=True, return_dict=True)["input_ids"])
        for r in [[{"role": m.role, "content": m.content} for m in ex.messages] for ex in train]
    )
    print(
        f"model {a.model} on {base.device}; {a.n} examples, tokens min/median/max {lens[0]}/{lens[len(lens) // 2]}/{lens[-1]}"
    )
    cfg = TrainConfig(
        batch_size=a.batch,
        budget=BudgetConfig(policy="min_steps", epochs=1e-6, min_steps=a.steps),
        logging_steps=1,
        warmup_ratio=0.0,
        max_length=512,
    )
    lora = LoraConfig()
    # One untimed step of each first: the first trainer in a process pays lazy imports and
    # kernel warm-up, which would otherwise land on whichever runs first.
    warm = dataclasses.replace(
        cfg, budget=BudgetConfig(policy="min_steps", epochs=1e-6, min_steps=1)
    )
    run_loop(base, train[: a.batch], warm, lora, a.seed)
    run_plain_trl(base, train[: a.batch], warm, lora, a.seed, a.trl_defaults)
    rates: dict[str, list[float]] = {"loop": [], "plain TRL": []}
    for r in range(a.repeats):
        for name in ("loop", "plain TRL") if r % 2 == 0 else ("plain TRL", "loop"):
            if name == "loop":
                tokens, secs, loss = run_loop(base, train, cfg, lora, a.seed)
            else:
                tokens, secs, loss = run_plain_trl(base, train, cfg, lora, a.seed, a.trl_defaults)
            rates[name].append(tokens / secs)
            print(
                f"  {name:10s} {tokens:7d} tokens in {secs:6.1f} s = {tokens / secs:7.1f} tokens/s (last loss {loss:.3f})"
            )
    # Best run of each: on shared cores a neighbour's burst only ever slows a run down.
    loop_rate, plain_rate = max(rates["loop"]), max(rates["plain TRL"])
    print(
        f"best of {a.repeats}: loop {loop_rate:.1f} tokens/s, plain TRL {plain_rate:.1f} tokens/s, "
        f"ratio {loop_rate / plain_rate:.2f}x"
    )


if __name__ == "__main__":
    main()
