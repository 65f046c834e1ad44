"""One cell's LoRA fine-tune: Examples + TrainConfig -> TrainResult. The only trl/peft import.

- Loss on the answer only: each example becomes a conversational prompt-completion row
  (`prompt` = every message before the answer, `completion` = the answer), and TRL's completion-only
  loss masks the prompt. `TrainConfig.completion_as_text` trains plain text continuation instead
  (prompt text + answer + EOS, no chat template).
- Budget: `plan_budget` turns the recipe's policy into a fixed number of optimizer steps.
- The base model is never copied, reloaded or changed: each cell wraps it with a fresh LoRA adapter;
  `release` unwraps it (call it once the cell's evaluation is done; the next `train_cell` also does).
- Less padding: micro-batches are drawn from buckets of similar lengths, in random order (see
  `_BucketSampler`). Padding-free batching needs FlashAttention, so it is not used.
- On CUDA out-of-memory the cell is retried with half the micro-batch and twice the accumulation
  (same effective batch).
- No HF integrations (`report_to="none"`), no checkpoints; step logs go to `on_log`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from loop.example import Example
from loop.models import Base, answer_logprobs, encode_example, training_row
from loop.recipe import LoraConfig, TrainConfig

# trl/peft take 5-9 s to import (benchmarks/results/figures/trl_import.txt): they are imported on
# first use, so `plan_budget` stays cheap
if TYPE_CHECKING:
    from peft import LoraConfig as PeftLoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

OnLog = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Budget:
    policy: str
    steps: int  # optimizer steps
    epochs: float  # passes over the subset those steps make
    steps_per_epoch: int
    micro_batch: int
    grad_accum: int


@dataclass(frozen=True, eq=False)
class TrainResult:
    model: Any  # peft PeftModel wrapping the shared base; pass to evaluate, then `release`
    steps: int
    epochs: float
    policy: str
    train_loss: list[tuple[int, float]]  # (optimizer step, mean loss since the previous log)
    val_loss: list[tuple[int, float]]  # (optimizer step, validation loss), when `val` was given
    train_tokens: int  # non-padding tokens seen (prompt + answer)
    seconds: float
    micro_batch: int
    grad_accum: int
    oom_retries: int
    n_examples: int
    truncated: int  # examples cut at max_length
    dropped: int  # examples with no answer token left after truncation (TRL skips them)
    trainable_params: int
    # the last logged grad_norm, learning_rate, train_token_accuracy, train_entropy
    extra: dict[str, float] = field(default_factory=dict)


def plan_budget(n: int, cfg: TrainConfig) -> Budget:
    """Optimizer steps for a subset of `n` examples.

    An epoch is what the trainer does with a data loader of ceil(n / micro_batch) micro-batches:
    ceil(that / grad_accum) optimizer steps. `epochs`: steps = ceil(epochs × steps_per_epoch);
    `min_steps`: the same, but at least `min_steps`, so small subsets are not under-trained.
    The micro-batch is capped at n (and the accumulation at the micro-batches an epoch has).
    """
    if n <= 0:
        raise ValueError(f"cannot train on {n} examples")
    micro = min(cfg.batch_size, n)
    batches = math.ceil(n / micro)
    accum = min(cfg.grad_accum, batches)
    per_epoch = math.ceil(batches / accum)
    steps = max(1, math.ceil(cfg.budget.epochs * per_epoch - 1e-9))
    if cfg.budget.policy == "min_steps":
        steps = max(steps, cfg.budget.min_steps)
    return Budget(
        policy=cfg.budget.policy,
        steps=steps,
        epochs=steps / per_epoch,
        steps_per_epoch=per_epoch,
        micro_batch=micro,
        grad_accum=accum,
    )


def peft_config(lora: LoraConfig) -> PeftLoraConfig:
    from peft import LoraConfig as PeftLoraConfig

    targets = lora.target_modules
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


# --------------------------------------------------------------------------------------------
# Trainer pieces
# --------------------------------------------------------------------------------------------


class _BucketSampler(torch.utils.data.Sampler[int]):
    """Random batches of similar lengths.

    Each pass shuffles the examples, cuts them into buckets of `bucket_batches` micro-batches, sorts
    each bucket by length and splits it into micro-batches, then shuffles the order of the full
    micro-batches (a partial one goes last so the loader's batching stays aligned). transformers'
    `group_by_length` sorts megabatches of min(50, n / (4 x batch)) batches instead, so below
    1,600 examples at batch 8 every epoch is four runs from the longest examples to the shortest
    (transformers 5.24: benchmarks/results/figures/doc_facts.txt).
    """

    def __init__(self, lengths: list[int], micro_batch: int, seed: int, bucket_batches: int = 8):
        self.lengths, self.micro, self.seed = lengths, micro_batch, seed
        self.bucket = micro_batch * bucket_batches
        self.passes = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.passes)
        self.passes += 1
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        full, partial = [], []
        for s in range(0, len(perm), self.bucket):
            chunk = sorted(perm[s : s + self.bucket], key=lambda i: -self.lengths[i])
            for j in range(0, len(chunk), self.micro):
                batch = chunk[j : j + self.micro]
                (full if len(batch) == self.micro else partial).append(batch)
        order = torch.randperm(len(full), generator=g).tolist()
        for b in order:
            yield from full[b]
        for batch in partial:
            yield from batch


@functools.cache
def _classes() -> tuple[type, type]:
    """(trainer class, logging callback class), defined on first use (see the lazy imports)."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class _Trainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
            ds = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in ds["input_ids"]]
            return _BucketSampler(lengths, self.args.per_device_train_batch_size, self.args.seed)

    class _LogCallback(TrainerCallback):
        """Collects the loss history, computes validation loss at eval steps, forwards to `on_log`."""

        def __init__(
            self,
            on_log: OnLog | None,
            val_loss: Callable[[Any], float] | None,
            eval_steps: int | None,
        ):
            self.sink, self.val_fn, self.eval_steps = on_log, val_loss, eval_steps
            self.train_loss: list[tuple[int, float]] = []
            self.val_loss: list[tuple[int, float]] = []
            self.last: dict[str, float] = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            step = state.global_step
            self.train_loss.append((step, float(logs["loss"])))
            keys = {
                "loss": "train_loss",
                "learning_rate": "learning_rate",
                "grad_norm": "grad_norm",
            }
            keys.update(mean_token_accuracy="train_token_accuracy", entropy="train_entropy")
            payload = {new: float(logs[old]) for old, new in keys.items() if old in logs}
            self.last = payload
            if self.sink:
                self.sink(step, payload)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if self.val_fn is None or model is None:
                return
            step = state.global_step
            if step == state.max_steps or (self.eval_steps and step % self.eval_steps == 0):
                model.eval()
                loss = self.val_fn(model)
                model.train()
                self.val_loss.append((step, loss))
                if self.sink:
                    self.sink(step, {"val_loss": loss})

    return _Trainer, _LogCallback


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No `Map: 100%` bars from dataset preparation: only the CLI prints."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def sft_config(
    cfg: TrainConfig,
    *,
    seed: int,
    steps: int,
    micro_batch: int,
    grad_accum: int,
    device: str,
    dtype: torch.dtype,
    output_dir: str,
) -> SFTConfig:
    # TRL turns activation checkpointing on by default; it recomputes activations in the backward
    # pass (slower) and the small models this tool targets don't need it (a CUDA OOM halves the micro-batch instead).
    # transformers 5.2x renamed the field (the old name still works, with a warning).
    from trl import SFTConfig

    fields = SFTConfig.__dataclass_fields__
    ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    bf16 = device == "cuda" and dtype == torch.bfloat16
    fp16 = device == "cuda" and dtype == torch.float16
    return SFTConfig(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=math.ceil(cfg.warmup_ratio * steps),
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        fp16=fp16,
        use_cpu=device == "cpu",
        dataloader_pin_memory=device == "cuda",
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        padding_free=False,
        **{ckpt: False},
    )


def build_trainer(
    base: Base,
    train: list[Example],
    cfg: TrainConfig,
    lora: LoraConfig,
    *,
    seed: int,
    steps: int,
    micro_batch: int,
    grad_accum: int,
    output_dir: str,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> SFTTrainer:
    """The SFTTrainer for one cell; wraps `base.model` with a fresh LoRA adapter (undo with `release`)."""
    import datasets
    from transformers import PrinterCallback, ProgressCallback

    release(base)
    rows = [training_row(ex, as_text=cfg.completion_as_text) for ex in train]
    args = sft_config(
        cfg,
        seed=seed,
        steps=steps,
        micro_batch=micro_batch,
        grad_accum=grad_accum,
        device=base.device,
        dtype=base.dtype,
        output_dir=output_dir,
    )
    with _quiet_datasets(), warnings.catch_warnings():
        # peft 0.21 reads a property transformers 5.2x renamed; nothing for us to change.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        trainer = _classes()[0](
            model=base.model,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=base.tokenizer,
            peft_config=peft_config(lora),
            callbacks=list(callbacks),
        )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def release(obj: Base | TrainResult | Any) -> None:
    """Remove every LoRA layer from a base model in place (after a cell's evaluation).

    Accepts a Base, a TrainResult or a PeftModel. Safe to call twice. The base weights are the
    very tensors the base had before the cell: LoRA layers wrap them and are unwrapped, nothing is
    merged.
    """
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = obj.model if isinstance(obj, (Base, TrainResult)) else obj
    if isinstance(model, PeftModel):
        model = model.get_base_model()
    tuners = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in tuners:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config  # else the next get_peft_model warns about a second adapter
    model.__dict__.pop("forward", None)  # TRL's fused LM-head patch on the instance
    _checkpointing_off(model)
    model.eval()
    model.requires_grad_(False)


@contextlib.contextmanager
def merged_for_inference(model: Any) -> Iterator[Any]:
    """The model with every LoRA layer folded into a plain `nn.Linear` (W + s·B·A), for inference.

    Unmerged, each of the 210 LoRA layers of the demo (r 16 on every linear layer of SmolLM2's 30
    blocks) adds four small modules to every forward pass (dropout, A, B, scale-and-add), which
    is most of a decode step's module calls on CPU (the gain: "merged only" in
    benchmarks/results/figures/generation.txt).
    The merged weights are new tensors: the shared base weights are never written, so
    leaving the block restores the very modules that were there (no unmerge rounding); the cost
    is one extra copy of the adapted layers' weights while the block runs. Yields `model`
    itself when it holds no LoRA layer, or one this does not fold exactly (DoRA and other
    variants, a LoRA bias, several active adapters, a base layer that is not `nn.Linear`), or
    when the device has no room for the copy.
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.tuners_utils import BaseTunerLayer

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    tuners = [(n, m) for n, m in inner.named_modules() if isinstance(m, BaseTunerLayer)]

    def foldable(m: Any) -> bool:
        names = m.active_adapters
        return (
            isinstance(m, LoraLinear)
            and len(names) == 1
            and not m.merged
            and names[0] in m.lora_A
            and names[0] not in getattr(m, "lora_variant", {})
            and not getattr(m, "lora_bias", {}).get(names[0], False)
            and type(m.get_base_layer()) is torch.nn.Linear
        )

    if not tuners or model.training or not all(foldable(m) for _, m in tuners):
        yield model
        return
    swapped: list[tuple[Any, str, Any]] = []

    def restore() -> None:
        for parent, child, m in reversed(swapped):
            setattr(parent, child, m)
        swapped.clear()

    try:
        with torch.no_grad():
            for name, m in tuners:
                layer = m.get_base_layer()
                delta = m.get_delta_weight(m.active_adapters[0])
                plain = torch.nn.Linear(
                    layer.in_features, layer.out_features, bias=False, device="meta"
                )
                weight = (layer.weight.float() + delta.float()).to(layer.weight.dtype)
                plain.weight = torch.nn.Parameter(weight, requires_grad=False)
                plain.bias = layer.bias  # shared, not copied
                parent_name, _, child = name.rpartition(".")
                parent = inner.get_submodule(parent_name)
                setattr(parent, child, plain)
                swapped.append((parent, child, m))
    except torch.OutOfMemoryError:  # no room for the merged copy: generate unmerged
        restore()
        _free_memory(str(next(inner.parameters()).device.type))
        yield model
        return
    try:
        yield inner
    finally:
        restore()


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def save_adapter(obj: TrainResult | Any, out_dir: Path) -> Path:
    """A cell's LoRA adapter as PEFT writes it, the weights in half precision (half the bytes;
    re-scoring reads them back into the base's dtype). Returns `out_dir`."""
    from safetensors.torch import load_file, save_file

    model = obj.model if isinstance(obj, TrainResult) else obj
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    weights = out_dir / ADAPTER_FILES[1]
    state = load_file(str(weights))
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(half, str(weights), metadata={"format": "pt"})
    return out_dir


def load_adapter(base: Base, adapter_dir: Path) -> Any:
    """The base wrapped with a saved adapter, for evaluation; `release` it afterwards."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base.model, str(adapter_dir), is_trainable=False)
    model.eval()
    return model


def _checkpointing_off(model: Any) -> None:
    """Undo what the trainer turns on for activation checkpointing (transformers 5.2x names first)."""
    for flag, off in (
        ("is_activation_checkpointing", "activation_checkpointing_disable"),
        ("is_gradient_checkpointing", "gradient_checkpointing_disable"),
    ):
        if hasattr(type(model), flag):
            if getattr(model, flag):
                getattr(model, off)()
                with contextlib.suppress(Exception):  # its input-grad hook, when present
                    model.disable_input_require_grads()
            return


def _unwrap(trainer: SFTTrainer, base: Base) -> None:
    """After training: drop the trainer's hold on memory, keep the adapter in place for evaluation."""
    # TRL's fused LM-head patch on the instance; generation doesn't need it
    base.model.__dict__.pop("forward", None)
    _checkpointing_off(base.model)
    trainer.optimizer = None
    trainer.lr_scheduler = None


def _free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def world_size() -> int:
    """Processes training this cell together (`accelerate launch` sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def split_batch(micro: int, accum: int, world: int) -> tuple[int, int]:
    """Per-process (micro batch, grad accumulation) that keep the global batch of one process,
    so a data-parallel cell takes the same optimizer steps as a single-device one."""
    if world <= 1:
        return micro, accum
    if accum % world == 0:
        return micro, accum // world
    total = micro * accum
    if total % world == 0:
        per = total // world
        return (per, 1) if per <= micro else (micro, per // micro) if per % micro == 0 else (per, 1)
    # Uneven (e.g. a 7-example subset over 2 GPUs): round up; the distributed sampler pads the
    # last batch, so a step sees at most world - 1 repeated examples.
    return -(-total // world), 1


def train_cell(
    base: Base,
    train: list[Example],
    cfg: TrainConfig,
    lora: LoraConfig,
    *,
    seed: int,
    val: list[Example] | None = None,
    on_log: OnLog | None = None,
    output_dir: Path | None = None,
) -> TrainResult:
    """Fine-tune a fresh LoRA adapter on `train`; returns the adapter-wrapped model and histories.

    `val`, when given, is scored (mean loss over every answer token) every `cfg.eval_steps` steps
    and at the last step. `output_dir`, when given, receives the adapter at the end. Deterministic on
    CPU for a given seed.
    """
    if not train:
        raise ValueError("train_cell: the training subset is empty")
    budget = plan_budget(len(train), cfg)
    micro, accum = split_batch(budget.micro_batch, budget.grad_accum, world_size())
    retries = 0
    tok = base.tokenizer
    as_text = cfg.completion_as_text
    truncated = sum(
        len(encode_example(tok, ex, max_length=None, as_text=as_text)[0]) > cfg.max_length
        for ex in train
    )
    val_encoded = (
        [
            encode_example(
                base.tokenizer, ex, max_length=cfg.max_length, as_text=cfg.completion_as_text
            )
            for ex in val
        ]
        if val
        else None
    )

    def val_loss(model: Any) -> float:
        pairs = answer_logprobs(
            model, val_encoded, batch_size=max(micro, 1), pad_id=base.tokenizer.pad_token_id
        )
        total, count = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        return -total / max(count, 1)

    while True:
        callback = _classes()[1](on_log, val_loss if val_encoded else None, cfg.eval_steps)
        trainer = None
        try:
            with tempfile.TemporaryDirectory(prefix="loop-train-") as tmp:
                trainer = build_trainer(
                    base,
                    train,
                    cfg,
                    lora,
                    seed=seed,
                    steps=budget.steps,
                    micro_batch=micro,
                    grad_accum=accum,
                    output_dir=tmp,
                    callbacks=(callback,),
                )
                start = time.perf_counter()
                trainer.train()
                seconds = time.perf_counter() - start
            break
        except torch.OutOfMemoryError:
            # data-parallel: one rank shrinking its batch alone would hang the others
            if base.device != "cuda" or micro == 1 or world_size() > 1:
                raise
            del trainer
            release(base)
            _free_memory(base.device)
            micro, accum, retries = micro // 2, accum * 2, retries + 1

    model = trainer.model
    dropped = len(train) - len(trainer.train_dataset)
    tokens = int(getattr(trainer, "_total_train_tokens", 0))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _unwrap(trainer, base)
    model.eval()
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(output_dir))
    del trainer
    _free_memory(base.device)
    return TrainResult(
        model=model,
        steps=budget.steps,
        epochs=budget.epochs,
        policy=budget.policy,
        train_loss=callback.train_loss,
        val_loss=callback.val_loss,
        train_tokens=tokens,
        seconds=seconds,
        micro_batch=micro,
        grad_accum=accum,
        oom_retries=retries,
        n_examples=len(train),
        truncated=truncated,
        dropped=dropped,
        trainable_params=trainable,
        extra={k: v for k, v in callback.last.items() if k != "train_loss"},
    )
