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


@pytest.fixture(autouse=True)
def _own_rates_file(tmp_path_factory, monkeypatch):
    """Each test its own measured-rates file (loop.plan), never the user's cache."""
    monkeypatch.setenv("LOOP_RATES", str(tmp_path_factory.mktemp("rates") / "rates.json"))


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


# ----------------------------------------------------------------------------- browser tests
# `pytest -q` names no test, so a skipped browser test would pass unseen: every run ends with one
# line saying what became of the tests marked `browser` (tests/test_ui_screenshot.py).

_BROWSER: dict[str, str] = {}  # test name -> passed | failed | skipped (reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "browser" not in report.keywords:
        return
    name = report.nodeid.rsplit("::", 1)[-1]
    if report.failed:
        _BROWSER[name] = "failed" if report.when == "call" else f"failed in {report.when}"
    elif report.skipped and name not in _BROWSER:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
        _BROWSER[name] = f"skipped ({reason.removeprefix('Skipped: ')})"
    elif report.when == "call" and report.passed:
        _BROWSER[name] = "passed"


def pytest_terminal_summary(terminalreporter) -> None:
    from shutil import which

    if not _BROWSER:
        line = "browser tests (tests/test_ui_screenshot.py): not in this run"
    else:
        counts: dict[str, int] = {}
        for outcome in _BROWSER.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        said = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        browser = which("chromium") or which("chromium-browser") or "no chromium on PATH"
        line = f"browser tests (tests/test_ui_screenshot.py, {browser}): {said}"
    terminalreporter.write_line(line)


# Texts that probe where a token count could change when a text is cut before its spaces: runs of
# spaces and other whitespace, contractions, digits, non-ASCII letters and spaces, special tokens
# inside the text, empty and blank texts.
_TRICKY_TEXTS = [
    "",
    " ",
    "   ",
    "word",
    "word ",
    " leading space",
    "two  spaces and three   here",
    "tab\t then space\t word",
    "new\n line\n\n and \n\n  more",
    "don't stop, I'm here's 's 'll",
    "numbers 123 4567 89.5 1,000",
    "emoji 😀 ok 😀😀 done",
    "Grüße aus 東京 und Zürich",
    "<|im_start|>user hi <|im_end|> there",
    "a<|im_end|> b <|im_start|><|im_end|>",
    "no\u00a0break\u00a0 space \u00a0x",
    "em\u2003space \u2003 x",
    "file\x1c sep \x1c x",
    "trailing   ",
    "a .b , c ! d?",
    "(paren) [bracket] {brace} -- dash",
]


@pytest.fixture
def tricky_texts() -> list[str]:
    return list(_TRICKY_TEXTS)


@pytest.fixture(scope="session")
def gpt2_style_tokenizer():
    """A small byte-level BPE with GPT-2's pre-tokenizer (like SmolLM2's), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [t * 3 for t in _TRICKY_TEXTS] + [
        "the quick brown fox jumps over the lazy dog. " * 5,
        "It's what they're saying: we've 12 of 345 and we'll see.",
    ]
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
