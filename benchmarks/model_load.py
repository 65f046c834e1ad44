"""First and later loads of the packaged model (SmolLM2-135M-Instruct from its GGUF file).

    .venv/bin/python benchmarks/model_load.py

Each load runs in a fresh Python process with LOOP_CACHE pointed at a new temporary folder, so
the first one converts the GGUF file (de-quantize, save a plain safetensors copy) as a user's
first run does. Printed per process: the whole `loop.models.load_base` call (imports included,
tokenizer included) and the weights alone (`from_pretrained` on the cached copy, timed after
the imports), then the size of the cached copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, time
t0 = time.perf_counter()
from loop.models import DEFAULT_MODEL, ensure_converted, load_base, model_cache_dir, packaged_gguf
from loop.recipe import ModelConfig
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
base = load_base(ModelConfig(name=DEFAULT_MODEL))
t_load = time.perf_counter() - t1
from transformers import AutoModelForCausalLM
t2 = time.perf_counter()
AutoModelForCausalLM.from_pretrained(model_cache_dir(DEFAULT_MODEL))
t_weights = time.perf_counter() - t2
print(json.dumps({"imports_s": t_import, "load_base_s": t_load, "weights_s": t_weights,
                  "total_s": time.perf_counter() - t0}))
"""


def run_child(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LOOP_CACHE": tmp}
        for label in ("first load (converts the GGUF)", "second load (cached copy)"):
            r = run_child(env)
            print(
                f"{label:32} imports {r['imports_s']:5.1f} s, load_base {r['load_base_s']:5.1f} s, "
                f"weights alone {r['weights_s']:5.2f} s, process total {r['total_s']:5.1f} s"
            )
        files = [p for p in Path(tmp, "models").rglob("*") if p.is_file()]
        weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
        print(f"cached copy: {weights / 1e6:.0f} MB of safetensors, {len(files)} files")


if __name__ == "__main__":
    main()
