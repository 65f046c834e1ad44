"""Training throughput: `loop.train.train_cell` against plain TRL SFTTrainer scripts, like for like.

All sides train the same LoRA on the same variable-length subset with the same hyperparameters,
precision (fp32 on CPU, bf16 on CUDA), warm-up steps and activation checkpointing (off), in this
process, in alternating order, after one untimed warm-up step each. Sides:

- `loop`: loop's trainer, whose sampler batches examples of similar length (`_BucketSampler`);
- `TRL random`: a plain SFTTrainer with TRL's default random batches;
- `TRL by length`: a plain SFTTrainer at its best equivalent setting on this device,
  `train_sampling_strategy="group_by_length"` (padding-free packing needs FlashAttention, so only
  on CUDA with flash-attn installed, where it is used instead).

Every forward pass of the decoder is counted: real tokens (attention mask) and computed tokens
(padded batch shape). `real tok/s` is what a user gets; `computed tok/s` is the raw compute rate,
so their ratio separates loop's batching (fewer padded tokens) from framework overhead (slower
compute). The best run of each side is compared (on shared cores noise only ever slows a run).

    python benchmarks/train_overhead.py                 # SmolLM2, 48 examples, 6 steps, 2 runs each
    python benchmarks/train_overhead.py --steps 20 --repeats 3
    python benchmarks/train_overhead.py --trl-defaults  # plain sides keep TRL's own defaults
                                                        # (activation checkpointing, bf16 autocast)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import tempfile
import time

from loop.toy import json_task


class TokenCount:
    """Counts real and computed (padded) tokens of every forward pass of a decoder module."""

    def __init__(self, module) -> None:
        self.real = self.computed = 0
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is None:
            return
        self.computed += ids.numel()
        self.real += int(mask.sum()) if mask is not None else ids.numel()

    def close(self) -> tuple[int, int]:
        self.handle.remove()
        return self.real, self.computed


def decoder(model):
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def run_loop(base, train, cfg, lora, seed):
    from loop.train import release, train_cell

    count = TokenCount(decoder(base.model))
    start = time.perf_counter()
    result = train_cell(base, train, cfg, lora, seed=seed)
    seconds = time.perf_counter() - start
    release(result)
    return *count.close(), seconds, result.train_loss[-1][1]


def flash_attention() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def run_plain_trl(base, train, cfg, lora, seed, *, by_length: bool, trl_defaults: bool):
    import datasets
    import torch
    from peft import LoraConfig as PeftLora
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    model = copy.deepcopy(base.model)  # the plain script owns its model
    rows = [
        {
            "prompt": [{"role": m.role, "content": m.content} for m in ex.prompt],
            "completion": [{"role": "assistant", "content": ex.answer}],
        }
        for ex in train
    ]
    steps = cfg.budget.min_steps
    same = {
        # loop's own settings on this device: bf16 only on CUDA, no activation checkpointing
        "bf16": base.device == "cuda" and base.model.dtype == torch.bfloat16,
        # transformers 5.2x renamed the field; loop's trainer picks the name the same way
        (
            "activation_checkpointing"
            if "activation_checkpointing" in SFTConfig.__dataclass_fields__
            else "gradient_checkpointing"
        ): False,
    }
    extra = {} if trl_defaults else same
    if by_length:
        if flash_attention():
            extra["padding_free"] = True
            model.config._attn_implementation = "flash_attention_2"
        else:
            extra["train_sampling_strategy"] = "group_by_length"
    count = TokenCount(decoder(model))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        args = SFTConfig(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.scheduler,
            warmup_steps=math.ceil(cfg.warmup_ratio * steps),  # as loop computes it
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
        trainer.remove_callback(PrinterCallback)  # loop's trainer prints nothing either
        trainer.train()
        seconds = time.perf_counter() - start
    last_loss = [log["loss"] for log in trainer.state.log_history if "loss" in log][-1]
    return *count.close(), seconds, last_loss


SIDES = ("loop", "TRL random", "TRL by length")


def run_side(name, base, train, cfg, lora, seed, trl_defaults):
    if name == "loop":
        return run_loop(base, train, cfg, lora, seed)
    return run_plain_trl(
        base, train, cfg, lora, seed, by_length=name != "TRL random", trl_defaults=trl_defaults
    )


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
    train = json_task(a.n, seed=a.seed, filler=5)  # 0-5 extra sentences: lengths vary
    lens = sorted(
        len(base.tokenizer.apply_chat_template(r, tokenize=True, return_dict=True)["input_ids"])
        for r in [[{"role": m.role, "content": m.content} for m in ex.messages] for ex in train]
    )
    by_length = "padding-free (flash-attn)" if flash_attention() else "group_by_length"
    print(
        f"model {a.model} on {base.device} ({base.model.dtype}); {a.n} examples, tokens "
        f"min/median/max {lens[0]}/{lens[len(lens) // 2]}/{lens[-1]}; {a.steps} steps of "
        f"{a.batch}; 'TRL by length' = {by_length}"
        + ("; plain sides keep TRL defaults" if a.trl_defaults else "")
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
    for name in SIDES:
        run_side(name, base, train[: a.batch], warm, lora, a.seed, a.trl_defaults)
    best: dict[str, tuple] = {}
    print(
        f"  {'side':14s} {'real tok':>8s} {'computed':>8s} {'padding':>7s} {'seconds':>7s} "
        f"{'real tok/s':>10s} {'computed tok/s':>14s}  last loss"
    )
    for r in range(a.repeats):
        order = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]  # rotate who goes first
        for name in order:
            real, computed, secs, loss = run_side(
                name, base, train, cfg, lora, a.seed, a.trl_defaults
            )
            print(
                f"  {name:14s} {real:8d} {computed:8d} {computed / real:6.2f}x {secs:7.1f} "
                f"{real / secs:10.1f} {computed / secs:14.1f}  {loss:.3f}"
            )
            if name not in best or real / secs > best[name][0] / best[name][2]:
                best[name] = (real, computed, secs)
    rate = {k: v[0] / v[2] for k, v in best.items()}
    compute = {k: v[1] / v[2] for k, v in best.items()}
    print(f"best of {a.repeats} (real tokens/s; computed tokens/s):")
    for name in SIDES[1:]:
        print(
            f"  loop / {name:14s} {rate['loop'] / rate[name]:.2f}x real, "
            f"{compute['loop'] / compute[name]:.2f}x computed; padding {name} "
            f"{best[name][1] / best[name][0]:.2f}x vs loop {best['loop'][1] / best['loop'][0]:.2f}x"
        )
    print(
        "real/computed: a 'real' gain with a ~1.00x 'computed' ratio comes from batching (fewer "
        "padded tokens), not from a faster framework."
    )


if __name__ == "__main__":
    main()
