"""benchmarks/gpu_check.sh keeps working where no GPU is: a clean "no CUDA" exit, and every
measuring section's code path run on CPU at toy sizes (`--allow-cpu`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, run the real check")


def _run(out: Path, *extra: str) -> tuple[int, dict]:
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out), *extra], capture_output=True, text=True, timeout=300
    )
    assert out.is_file(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(out.read_text())


def test_without_cuda_it_exits_zero_and_says_so(tmp_path):
    rc, doc = _run(tmp_path / "gpu.json")
    assert rc == 0 and doc["cuda"] is False
    assert "no CUDA" in doc["reason"] and doc["env"]["torch"] == torch.__version__


def test_every_section_runs_on_cpu_at_toy_sizes(tmp_path):
    rc, doc = _run(tmp_path / "gpu.json", "--allow-cpu", "--skip", "ray")  # Ray: a minute
    assert rc == 0, doc
    loop_side = doc["train"]["loop (padded batches)"]
    assert loop_side["real_tok_s"] > 0 and loop_side["computed_tok_s"] >= loop_side["real_tok_s"]
    assert doc["train"]["padding_free"].startswith("skipped")  # no CUDA, no flash-attn
    assert doc["generate"]["items"] == 4 and doc["generate"]["items_s"] > 0
    assert doc["ray"] == {"skipped": "--skip"}
