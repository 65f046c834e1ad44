"""The GPU check: what `loop` does on CUDA, measured in one run, written to one JSON file.

Run it through `benchmarks/gpu_check.sh` on a machine with a GPU (the script stops it after
300 s; no GPU run is stored yet). Sections, each timed, each failing on its own (its error goes
into the JSON, the rest still runs):

- `env`: torch, CUDA device, bf16, FlashAttention, which of loop's dependencies are missing;
- `tests`: the test subset that needs CUDA (`pytest -m cuda`);
- `train`: LoRA training through `loop.train.train_cell` at a GPU-sized batch and sequence
  length in bf16: real and computed (padded) tokens/s, and model FLOPs utilisation. FLOPs are
  counted as 6 x parameters x computed tokens (the usual convention; LoRA skips the frozen
  weights' gradients, so the true work is nearer 4x and this overstates MFU by up to 1.5x);
  then plain TRL with padding-free packing where FlashAttention is installed (else skipped,
  with the reason);
- `generate`: greedy answers through `loop.evaluate.generate`, items/s;
- `ray`: a 2-cell sweep on the Ray executor with one GPU per cell (skipped without Ray).

The model is the packaged SmolLM2-135M when its converted copy is in the loop cache, else the
same architecture (SmolLM2-135M's config) with random weights: the weights (the 98 MB GGUF file,
538 MB converted: benchmarks/results/figures/gguf_size.txt, model_load.txt) may not travel to
the GPU machine, and speed does not depend on their values. Generation then runs to
`--max-new-tokens` on every item (random weights seldom stop), which the JSON says.

Without CUDA it writes {"cuda": false, ...} and exits 0, so CI keeps the script working;
`--allow-cpu` runs every section on CPU at toy sizes instead (a smoke test of the code paths).

    python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --allow-cpu --out /tmp/gpu_check_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# SmolLM2-135M-Instruct's config.json (the packaged model's architecture)
SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)
# dense bf16 peak, TFLOP/s, by device name (vendor data sheets); unknown devices get no MFU
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}
NEEDED = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "mlflow", "ray")


def _timed(fn, *args):
    start = time.perf_counter()
    try:
        out = fn(*args)
    except Exception as exc:  # one section's failure must not lose the others' figures
        out = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def env() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": cuda,
        "missing": [m for m in NEEDED if importlib.util.find_spec(m) is None],
        "flash_attn": importlib.util.find_spec("flash_attn") is not None,
    }
    if cuda:
        out |= {
            "device": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "bf16": torch.cuda.is_bf16_supported(),
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        }
    return out


def tests() -> dict:
    # one file: collecting the whole suite would import packages the GPU machine may lack
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "cuda",
        "-p",
        "no:cacheprovider",
        "tests/test_cuda.py",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    lines = proc.stdout.strip().splitlines()
    return {
        "command": " ".join(cmd[2:]),
        "rc": proc.returncode,
        "summary": lines[-1] if lines else "",
    }


def _base(device: str, toy: bool):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from loop import models
    from loop.recipe import ModelConfig

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tiny_tok = models.load_tokenizer(ModelConfig(name=models.TINY_MODEL))  # with a chat template
    if toy:
        tok = tiny_tok
        model, name = models.build_tiny_model(tok), "tiny-random"
    elif (models.model_cache_dir(models.DEFAULT_MODEL) / "config.json").is_file():
        name = models.DEFAULT_MODEL
        tok = models.load_tokenizer(ModelConfig(name=name))
        model = AutoModelForCausalLM.from_pretrained(models.model_cache_dir(name), dtype=dtype)
    else:
        # token ids only need to be valid indices: the byte tokenizer's fit SmolLM2's vocabulary
        tok = tiny_tok
        cfg = LlamaConfig(
            **SMOLLM2_135M,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        )
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        name = "SmolLM2-135M architecture, random weights"
    model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return models.Base(model=model, tokenizer=tok, name=name, device=device, dtype=dtype)


def _examples(n: int, chars: int):
    """The toy JSON task with each prompt grown to about `chars` characters: GPU-sized rows."""
    from loop.example import Message, make_example
    from loop.toy import json_task

    out = []
    for i, ex in enumerate(json_task(n, seed=0, filler=5)):
        text = ex.messages[0].content
        grown = ((text + " ") * (chars // len(text) + 1))[: chars - 7 * (i % 8)]  # lengths vary
        out.append(
            make_example(
                [Message("user", grown), ex.messages[1]], source=ex.source, format="instruction"
            )
        )
    return out


def train(device: str, a) -> dict:
    from train_overhead import TokenCount, decoder, flash_attention, run_plain_trl

    from loop.recipe import BudgetConfig, LoraConfig, TrainConfig
    from loop.train import release, train_cell

    base = _base(device, a.toy)
    data = _examples(a.batch * 2, a.chars)
    cfg = TrainConfig(
        batch_size=a.batch,
        max_length=a.max_length,
        budget=BudgetConfig(policy="min_steps", epochs=1e-6, min_steps=a.steps),
        logging_steps=1,
        warmup_ratio=0.0,
    )
    lora = LoraConfig(r=16, alpha=32)
    params = sum(p.numel() for p in base.model.parameters())
    peak = next(
        (v for k, v in PEAK_BF16_TFLOPS.items() if k in os.environ.get("GPU_NAME", "")), None
    )
    out: dict = {
        "model": base.name,
        "params": params,
        "batch": a.batch,
        "max_length": a.max_length,
        "steps": a.steps,
        "dtype": str(base.dtype),
    }
    warm = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, min_steps=1))
    release(train_cell(base, data[: a.batch], warm, lora, seed=0))  # warm-up: kernels, allocator
    sides = {
        "loop (padded batches)": lambda: _loop_side(base, data, cfg, lora, TokenCount, decoder)
    }
    if flash_attention():
        sides["TRL padding-free"] = lambda: run_plain_trl(
            base, data, cfg, lora, 0, by_length=True, trl_defaults=False
        )
    else:
        out["padding_free"] = "skipped: needs CUDA and flash-attn installed"
    for name, fn in sides.items():
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        real, computed, seconds, loss = fn()
        row = {
            "real_tok_s": round(real / seconds),
            "computed_tok_s": round(computed / seconds),
            "seconds": round(seconds, 2),
            "last_loss": round(float(loss), 4),
        }
        if peak:
            row["mfu_6n"] = round(6 * params * computed / seconds / (peak * 1e12), 4)
        out[name] = row
    return out


def _loop_side(base, data, cfg, lora, TokenCount, decoder):
    from loop.train import release, train_cell

    count = TokenCount(decoder(base.model))
    start = time.perf_counter()
    result = train_cell(base, data, cfg, lora, seed=0)
    seconds = time.perf_counter() - start
    release(result)
    return *count.close(), seconds, result.train_loss[-1][1]


def generate(device: str, a) -> dict:
    from loop.evaluate import generate as gen
    from loop.models import prompt_ids

    base = _base(device, a.toy)
    prompts = [prompt_ids(base.tokenizer, ex) for ex in _examples(a.items, a.chars // 4)]
    gen(base.model, base.tokenizer, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up
    start = time.perf_counter()
    answers = gen(
        base.model, base.tokenizer, prompts, max_new_tokens=a.max_new_tokens, batch_size=a.items
    )
    seconds = time.perf_counter() - start
    return {
        "model": base.name,
        "items": len(prompts),
        "max_new_tokens": a.max_new_tokens,
        "items_s": round(len(prompts) / seconds, 2),
        "answered_chars": sum(map(len, answers)),
    }


def ray_sweep(device: str, a) -> dict:
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("mlflow") is None:
        return {"skipped": "needs ray and mlflow installed"}
    import yaml

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from adaptive_real import write_pool

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_pool(folder / "pool.jsonl")
        recipe = {
            "name": "gpu-ray",
            "pool": {"paths": [str(folder / "pool.jsonl")]},
            "clean": {
                "steps": ["exact_dedup", "length", "format"],
                "split": {"validation": 0.1},
                "length": {"min_answer_tokens": 1},
            },
            "tiers": [{"name": "raw"}],
            "subsets": {"sizes": [8, 16], "seeds": [0]},
            "model": {"name": "tiny-random" if a.toy else "smollm2-135m-instruct"},
            "train": {
                "batch_size": 4,
                "budget": {"policy": "min_steps", "min_steps": 2, "epochs": 1},
            },
            "executor": {"kind": "ray", "num_gpus": 1 if device == "cuda" else 0, "workers": 2},
        }
        (folder / "r.yaml").write_text(yaml.safe_dump(recipe))
        cmd = [sys.executable, "-m", "loop.cli", "sweep", "r.yaml"]
        proc = subprocess.run(
            cmd,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    lines = proc.stdout.splitlines()
    cells = [line.strip() for line in lines if line.strip().startswith("cells:")]
    return {
        "rc": proc.returncode,
        "cells": cells[-1] if cells else None,
        "tail": (proc.stdout + proc.stderr).strip().splitlines()[-5:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--allow-cpu", action="store_true", help="run every section on CPU, toy sizes")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--chars", type=int, default=3000, help="prompt characters per example")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--items", type=int, default=128, help="generation prompts (one batch)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--skip", nargs="*", default=[], choices=["tests", "train", "generate", "ray"])
    a = ap.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # loop itself, and train_overhead.py
    report: dict = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    report["env"] = _timed(env)
    cuda = bool(report["env"].get("cuda"))
    if not cuda and not a.allow_cpu:
        report["cuda"] = False
        report["reason"] = "no CUDA device: nothing measured (--allow-cpu runs the sections on CPU)"
        Path(a.out).write_text(json.dumps(report, indent=2))
        print(f"no CUDA: nothing to measure; wrote {a.out}")
        return 0
    report["cuda"] = cuda
    device = "cuda" if cuda else "cpu"
    a.toy = not cuda  # on CPU: the tiny model at toy sizes, to check the code paths only
    if a.toy:
        a.batch, a.max_length, a.chars, a.steps, a.items, a.max_new_tokens = 2, 192, 80, 2, 4, 4
    os.environ.setdefault("GPU_NAME", report["env"].get("device", ""))
    sections = {"tests": tests, "train": train, "generate": generate, "ray": ray_sweep}
    for name, fn in sections.items():
        if name in a.skip:
            report[name] = {"skipped": "--skip"}
        elif name == "tests":
            report[name] = _timed(tests) if cuda else {"skipped": "no CUDA"}
        else:
            report[name] = _timed(fn, device, a)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "command"}, indent=2)[:6000])
    failed = [k for k in ("tests", "train", "generate", "ray") if "error" in report[k]]
    print(f"wrote {a.out}" + (f"; failed sections: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
