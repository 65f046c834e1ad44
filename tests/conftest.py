"""Shared fixtures: the tiny random model (no weights needed) and small synthetic tasks."""

from __future__ import annotations

import os
import random

import pytest
import torch

from loop.example import Example, Message, make_example
from loop.recipe import ModelConfig
from loop.toy import json_task

# The tiny test models run fastest on one thread: with two, OpenMP threads spin against any other
# process on a 2-core machine and a 3 ms forward pass took 300 ms (measured). Subprocesses
# started by tests inherit the variable.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

make_json_task = json_task  # the toy task the benchmarks measure too


def make_short_task(n: int, seed: int = 0) -> list[Example]:
    """Very short chat examples (the tiny model's tokenizer is byte-level: 1 token per byte)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        msgs = [
            Message("user", f"{a}+{b}" + "?" * rng.randint(0, 6)),
            Message("assistant", str(a + b)),
        ]
        if i % 3 == 0:
            msgs.insert(0, Message("system", "math"))
        out.append(make_example(msgs, source=f"short:{seed}:{i}", format="chat"))
    return out


@pytest.fixture(scope="session")
def tiny_cfg() -> ModelConfig:
    return ModelConfig(name="tiny-random")


@pytest.fixture(scope="session")
def tiny_base(tiny_cfg):
    from loop.models import load_base

    return load_base(tiny_cfg)


@pytest.fixture
def short_task():
    return make_short_task


@pytest.fixture
def json_task():
    return make_json_task
