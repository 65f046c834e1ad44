"""Shared fixtures: the tiny random model (no weights needed) and small synthetic tasks."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch

from loop.example import Example, Message, make_example
from loop.recipe import ModelConfig

# The tiny test models run fastest on one thread: with two, OpenMP threads spin against any other
# process on a 2-core machine and a 3 ms forward pass took 300 ms (measured). Subprocesses
# started by tests inherit the variable.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Julia"]
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Denver", "Hanoi", "Porto", "Quito"]
TEMPLATES = [
    "{name} is {age} years old and lives in {city}.",
    "Meet {name}, a {age}-year-old from {city}.",
    "Living in {city}, {name} turned {age} this year.",
    "At {age}, {name} moved to {city}.",
]
FILLER = [
    "They enjoy hiking on weekends.",
    "Their favourite food is soup.",
    "They work as a teacher.",
    "Last summer they learned to sail, which took longer than expected.",
]


def make_json_task(n: int, seed: int = 0, *, filler: int = 3) -> list[Example]:
    """Extract {name, age, city} as JSON from a sentence; 0..`filler` extra sentences vary lengths."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, city, age = rng.choice(NAMES), rng.choice(CITIES), rng.randint(18, 90)
        text = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
        text = " ".join([text, *rng.sample(FILLER, rng.randint(0, filler))])
        prompt = (
            "Extract the person's name, age and city as JSON with keys name, age, city.\n\n" + text
        )
        answer = json.dumps({"name": name, "age": age, "city": city})
        out.append(
            make_example(
                [Message("user", prompt), Message("assistant", answer)],
                source=f"json_task:{seed}:{i}",
                format="instruction",
            )
        )
    return out


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
