"""Logging a cell's metrics to a SQLite MLflow store: one batched write against one call each.

    .venv/bin/python benchmarks/mlflow_log.py [--metrics 40] [--reps 3]

`loop.track.log_metrics` sends a cell's metrics in one `log_batch`; the baseline is the plain
`MlflowClient.log_metric` per metric. Both write the same --metrics values to a run of a fresh
SQLite store (the default `sqlite:///mlruns/mlflow.db` kind), alternating, --reps times each.
Printed: milliseconds per metric for each, the best rep (shared cores only ever slow a rep), and
their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from loop import track


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        client = MlflowClient(tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        exp = client.create_experiment("bench", artifact_location=Path(tmp, "art").as_uri())
        run = client.create_run(exp).info.run_id
        client.log_metric(run, "warm_up", 0.0)  # schema creation and first connection
        best = {
            "log_metric (one call each)": float("inf"),
            "track.log_metrics (batched)": float("inf"),
        }
        for rep in range(args.reps):
            values = {f"m{rep}_{i}": float(i) for i in range(args.metrics)}
            t0 = time.perf_counter()
            for k, v in values.items():
                client.log_metric(run, "single_" + k, v, step=rep)
            single = (time.perf_counter() - t0) / args.metrics
            t0 = time.perf_counter()
            track.log_metrics(client, run, {"batch_" + k: v for k, v in values.items()}, step=rep)
            batched = (time.perf_counter() - t0) / args.metrics
            best["log_metric (one call each)"] = min(best["log_metric (one call each)"], single)
            best["track.log_metrics (batched)"] = min(best["track.log_metrics (batched)"], batched)
            print(
                f"rep {rep}: log_metric {1000 * single:6.2f} ms/metric, "
                f"batched {1000 * batched:6.3f} ms/metric"
            )
        for k, v in best.items():
            print(f"best {k:28} {1000 * v:7.3f} ms per metric")
        ratio = best["log_metric (one call each)"] / best["track.log_metrics (batched)"]
        print(f"ratio one-call-each / batched: {ratio:.1f}x ({args.metrics} metrics)")


if __name__ == "__main__":
    main()
