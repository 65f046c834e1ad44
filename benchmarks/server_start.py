"""Time from `mlflow server` start to a healthy /health, with and without MLflow's job runner.

    .venv/bin/python benchmarks/server_start.py [--reps 3]

`loop server` and `loop ui` start MLflow with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
(`loop.server.server_env`): the background job runner serves MLflow's GenAI jobs, which loop does
not use. Baseline: the same `loop.server.server_command` on a fresh SQLite store with the job
runner left on (MLflow's default). The two alternate, `--reps` times each, each on its own new
store and free port; the first start of each kind pays the same cold imports, so the median is
printed next to each run's time.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from loop import server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_seconds(job_runner: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cmd = server.server_command(
            f"sqlite:///{Path(tmp) / 'mlflow.db'}", artifacts=Path(tmp) / "artifacts", port=port
        )
        env = server.server_env()
        if job_runner:
            env.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            server.wait_healthy(f"http://127.0.0.1:{port}", timeout=120, proc=proc, interval=0.1)
            return time.perf_counter() - t0
        finally:
            server.end_group(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"loop (job runner off)": [], "baseline (job runner on)": []}
    for _ in range(args.reps):
        for name, on in (("baseline (job runner on)", True), ("loop (job runner off)", False)):
            times[name].append(start_seconds(on))
            print(f"{name:26} {times[name][-1]:6.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"median {k:19} {v:6.1f} s")
    ratio = med["baseline (job runner on)"] / med["loop (job runner off)"]
    print(f"ratio baseline / loop: {ratio:.2f}")


if __name__ == "__main__":
    main()
