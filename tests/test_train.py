from __future__ import annotations

import math

import pytest
import torch

from loop.evaluate import validation_loss
from loop.models import IGNORE_INDEX, encode_example
from loop.recipe import BudgetConfig, LoraConfig, TrainConfig
from loop.train import _BucketSampler, build_trainer, plan_budget, release, train_cell

LORA = LoraConfig(r=4, alpha=8, dropout=0.0)


def _cfg(**kw) -> TrainConfig:
    base = dict(
        learning_rate=1e-2,
        batch_size=4,
        budget=BudgetConfig(policy="epochs", epochs=1),
        logging_steps=1,
        warmup_ratio=0.0,
        max_length=64,
    )
    base.update(kw)
    return TrainConfig(**base)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _no_lora_left(model) -> bool:
    return not any("lora" in name for name, _ in model.named_modules())


# --------------------------------------------------------------------------------------------
# Budget
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "batch", "accum", "policy", "epochs", "min_steps", "steps", "per_epoch"),
    [
        (128, 8, 1, "epochs", 2.0, 30, 32, 16),  # 16 steps an epoch, 2 epochs
        (32, 8, 1, "epochs", 2.0, 30, 8, 4),  # fixed passes starve small subsets...
        (32, 8, 1, "min_steps", 2.0, 30, 30, 4),  # ...the floor does not
        (512, 8, 1, "min_steps", 2.0, 30, 128, 64),  # above the floor: epochs decide
        (100, 8, 1, "epochs", 2.0, 1, 26, 13),  # partial last batch is a step
        (100, 4, 3, "epochs", 1.0, 1, 9, 9),  # 25 micro-batches, 3 per step
        (5, 8, 4, "epochs", 3.0, 1, 3, 1),  # micro-batch capped at n
        (10, 8, 1, "epochs", 0.5, 1, 1, 2),  # at least one step
    ],
)
def test_plan_budget(n, batch, accum, policy, epochs, min_steps, steps, per_epoch):
    cfg = TrainConfig(
        batch_size=batch,
        grad_accum=accum,
        budget=BudgetConfig(policy=policy, epochs=epochs, min_steps=min_steps),
    )
    b = plan_budget(n, cfg)
    assert (b.steps, b.steps_per_epoch, b.policy) == (steps, per_epoch, policy)
    assert b.epochs == pytest.approx(steps / per_epoch)
    assert b.micro_batch == min(batch, n)


def test_plan_budget_rejects_empty():
    with pytest.raises(ValueError, match="0 examples"):
        plan_budget(0, TrainConfig())


def test_bucket_sampler_is_a_seeded_permutation_of_similar_length_batches():
    lengths = [((i * 37) % 101) + 1 for i in range(50)]
    s1, s2 = _BucketSampler(lengths, 4, seed=3), _BucketSampler(lengths, 4, seed=3)
    first = list(s1)
    assert sorted(first) == list(range(50))
    assert first == list(s2)
    assert list(s1) != first  # the next pass is reshuffled
    assert list(_BucketSampler(lengths, 4, seed=4)) != first
    batches = [first[i : i + 4] for i in range(0, 48, 4)]
    padding = sum(4 * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    g = torch.Generator().manual_seed(0)
    rand = torch.randperm(50, generator=g).tolist()
    rand_batches = [rand[i : i + 4] for i in range(0, 48, 4)]
    rand_padding = sum(
        4 * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in rand_batches
    )
    assert padding < rand_padding / 2
    # a partial batch only at the very end keeps the loader's batches aligned
    odd = list(_BucketSampler(lengths[:10], 4, seed=0))
    shortest = sorted(range(10), key=lambda i: lengths[i])[:2]
    assert sorted(odd) == list(range(10)) and set(odd[-2:]) == set(shortest)


# --------------------------------------------------------------------------------------------
# Training on the tiny model
# --------------------------------------------------------------------------------------------


def test_trainer_masks_prompt_tokens_like_encode_example(tiny_base, short_task, tmp_path):
    train = short_task(6)
    trainer = build_trainer(
        tiny_base,
        train,
        _cfg(),
        LORA,
        seed=0,
        steps=1,
        micro_batch=2,
        grad_accum=1,
        output_dir=str(tmp_path),
    )
    try:
        ds = trainer.train_dataset
        tok = tiny_base.tokenizer
        for ex, ids, labels in zip(train, ds["input_ids"], ds["labels"], strict=True):
            assert (ids, labels) == tuple(encode_example(tok, ex, max_length=64))
            kept = [t for t in labels if t != IGNORE_INDEX]
            assert tok.decode(kept) == ex.answer + "<|im_end|>\n"
            assert labels[0] == IGNORE_INDEX and ex.prompt[-1].content in tok.decode(ids)
    finally:
        release(tiny_base)
    assert _no_lora_left(tiny_base.model)


def test_completion_as_text_trains_plain_continuation(tiny_base, short_task, tmp_path):
    train = short_task(3)
    trainer = build_trainer(
        tiny_base,
        train,
        _cfg(completion_as_text=True),
        LORA,
        seed=0,
        steps=1,
        micro_batch=2,
        grad_accum=1,
        output_dir=str(tmp_path),
    )
    try:
        tok = tiny_base.tokenizer
        for ex, ids, labels in zip(
            train, trainer.train_dataset["input_ids"], trainer.train_dataset["labels"], strict=True
        ):
            assert "<|im_start|>" not in tok.decode(ids)
            assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == ex.answer + "<|im_end|>"
    finally:
        release(tiny_base)


def test_train_cell_learns_and_never_touches_the_base(tiny_base, short_task):
    train, val = short_task(24, seed=0), short_task(6, seed=1)
    before = _snapshot(tiny_base.model)
    logs: list[tuple[int, dict]] = []
    cfg = _cfg(budget=BudgetConfig(policy="min_steps", epochs=1, min_steps=12), eval_steps=6)
    result = train_cell(
        tiny_base, train, cfg, LORA, seed=0, val=val, on_log=lambda s, d: logs.append((s, d))
    )
    try:
        assert result.steps == 12 and result.policy == "min_steps"
        assert result.epochs == pytest.approx(12 / 6)
        losses = [loss for _, loss in result.train_loss]
        assert all(math.isfinite(x) for x in losses)
        assert [s for s, _ in result.train_loss] == list(range(1, 13))
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2
        assert [s for s, _ in result.val_loss] == [6, 12]
        assert result.val_loss[1][1] < result.val_loss[0][1]
        assert result.train_tokens > 0 and result.trainable_params > 0
        # LoRA weights moved away from their init (B starts at zero)
        lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
        assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
        # the base weights inside the adapter-wrapped model are the untouched originals
        inner = {
            k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in result.model.state_dict().items()
            if "lora_" not in k
        }
        assert all(torch.equal(inner[k], v) for k, v in before.items())
        # the on_log callback saw every train step and the two validation points
        assert [s for s, d in logs if "train_loss" in d] == list(range(1, 13))
        assert [(s, d["val_loss"]) for s, d in logs if "val_loss" in d] == result.val_loss
        # training's validation loss is evaluate's (same masking), computed on the trained model
        again = validation_loss(result.model, tiny_base.tokenizer, val, max_length=64, batch_size=3)
        assert again == pytest.approx(result.val_loss[-1][1], rel=1e-5)
    finally:
        release(result)
    after = _snapshot(tiny_base.model)
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _no_lora_left(tiny_base.model) and not tiny_base.model.training
    assert "forward" not in tiny_base.model.__dict__


def test_same_seed_same_losses_and_second_cell_starts_from_the_same_base(tiny_base, short_task):
    train = short_task(16, seed=2)
    cfg = _cfg(budget=BudgetConfig(policy="min_steps", epochs=1, min_steps=5))
    dropout = LoraConfig(r=4, alpha=8, dropout=0.1)  # dropout draws random numbers: seeded too
    first = train_cell(tiny_base, train, cfg, dropout, seed=7)
    release(first)
    second = train_cell(tiny_base, train, cfg, dropout, seed=7)
    release(second)
    other = train_cell(tiny_base, train, cfg, dropout, seed=8)
    release(other)
    assert first.train_loss == second.train_loss
    assert other.train_loss != first.train_loss


def test_train_cell_saves_adapter_when_asked(tiny_base, short_task, tmp_path):
    result = train_cell(
        tiny_base, short_task(4), _cfg(), LORA, seed=0, output_dir=tmp_path / "adapter"
    )
    release(result)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert any(p.name.startswith("adapter_model") for p in (tmp_path / "adapter").iterdir())


def test_release_is_idempotent_and_next_cell_cleans_a_forgotten_adapter(tiny_base, short_task):
    first = train_cell(tiny_base, short_task(4), _cfg(), LORA, seed=0)
    assert not _no_lora_left(tiny_base.model)
    second = train_cell(tiny_base, short_task(4), _cfg(), LORA, seed=0)  # no release in between
    assert first.train_loss == second.train_loss
    release(second)
    release(second)
    release(tiny_base)
    assert _no_lora_left(tiny_base.model)


def test_cuda_oom_retries_with_half_micro_batch_same_effective_batch(
    tiny_base, short_task, monkeypatch
):
    import dataclasses

    from loop import train as train_mod

    calls = []
    real_train = train_mod._classes()[0].train

    def flaky(self, *a, **kw):
        calls.append(self.args.per_device_train_batch_size)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_train(self, *a, **kw)

    monkeypatch.setattr(train_mod._classes()[0], "train", flaky)
    monkeypatch.setattr(train_mod, "sft_config", _cpu_only(train_mod.sft_config))
    gpu_like = dataclasses.replace(tiny_base, device="cuda")
    result = train_cell(gpu_like, short_task(8), _cfg(), LORA, seed=0)
    release(result)
    assert calls == [4, 2]
    assert (result.micro_batch, result.grad_accum, result.oom_retries) == (2, 2, 1)
    assert _no_lora_left(tiny_base.model)


def test_oom_on_cpu_is_not_retried(tiny_base, short_task, monkeypatch):
    from loop import train as train_mod

    def oom(self, *a, **kw):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(train_mod._classes()[0], "train", oom)
    with pytest.raises(torch.OutOfMemoryError):
        train_cell(tiny_base, short_task(4), _cfg(), LORA, seed=0)
    release(tiny_base)


def _cpu_only(fn):
    def wrapped(*args, **kwargs):
        kwargs["device"] = "cpu"
        return fn(*args, **kwargs)

    return wrapped


def test_empty_training_set_is_an_error(tiny_base):
    with pytest.raises(ValueError, match="empty"):
        train_cell(tiny_base, [], _cfg(), LORA, seed=0)


def test_long_examples_are_counted_as_truncated_or_dropped(tiny_base):
    from loop.example import Message, make_example

    def ex(user, answer):
        return make_example(
            [Message("user", user), Message("assistant", answer)], source="x", format="chat"
        )

    train = [ex("q", "short"), ex("q", "a long answer " * 4), ex("a very long question " * 4, "a")]
    result = train_cell(tiny_base, train, _cfg(max_length=48), LORA, seed=0)
    release(result)
    assert (result.truncated, result.dropped) == (2, 1)


@pytest.mark.slow
def test_smollm2_learns_json_extraction(json_task):
    """Real model, CPU: ~10 minutes on 2 busy cores. `pytest -m slow -s` prints the figures."""
    import time

    from loop.evaluate import evaluate
    from loop.models import load_base
    from loop.recipe import EvalConfig, EvaluatorSpec, ModelConfig

    start = time.perf_counter()
    base = load_base(ModelConfig())
    train, val = json_task(128, seed=0), json_task(40, seed=1)
    ecfg = EvalConfig(evaluators=(EvaluatorSpec("json_match"),), max_new_tokens=48, batch_size=20)
    zero = evaluate(base, base.tokenizer, val, ecfg, max_length=256)
    cfg = TrainConfig(
        learning_rate=2e-4,
        batch_size=8,
        max_length=256,
        logging_steps=4,
        budget=BudgetConfig(policy="min_steps", epochs=2, min_steps=30),
    )
    before = _snapshot(base.model)
    result = train_cell(base, train, cfg, LoraConfig(), seed=0)
    try:
        tuned = evaluate(result.model, base.tokenizer, val, ecfg, max_length=256)
    finally:
        release(result)
    after = _snapshot(base.model)
    print(
        f"\nzero-shot {zero.metrics}\nfine-tuned {tuned.metrics}\n"
        f"steps {result.steps} ({result.epochs:.1f} epochs), train {result.seconds:.0f} s, "
        f"{result.train_tokens} tokens; loss {result.train_loss[0][1]:.3f} -> {result.train_loss[-1][1]:.3f}; "
        f"eval {zero.seconds:.0f} s / {tuned.seconds:.0f} s; total {time.perf_counter() - start:.0f} s"
    )
    assert result.steps == 32
    assert tuned.metrics["eval.json_match"] > zero.metrics["eval.json_match"] + 0.3
    assert tuned.metrics["eval.json_match.valid"] >= zero.metrics["eval.json_match.valid"]
    assert tuned.metrics["val_loss"] < zero.metrics["val_loss"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_split_batch_keeps_the_global_batch_over_processes():
    from loop.train import split_batch

    assert split_batch(4, 1, 1) == (4, 1)
    assert split_batch(4, 4, 2) == (4, 2)  # accumulation halves
    assert split_batch(4, 1, 2) == (2, 1)  # micro batch halves
    assert split_batch(8, 3, 4) == (6, 1)  # 24 examples per step: 6 per process
    for micro, accum, world in ((4, 1, 2), (4, 4, 2), (8, 3, 4), (2, 8, 8)):
        m, a = split_batch(micro, accum, world)
        assert m * a * world == micro * accum
    assert split_batch(7, 1, 2) == (4, 1)  # uneven: rounded up, the sampler pads
    assert split_batch(4, 1, 3) == (2, 1)
