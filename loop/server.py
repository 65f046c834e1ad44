"""The team tracking server: one `mlflow server` that the driver and every worker log to.

A team runs it once, on a machine everyone can reach, backed by PostgreSQL:

    loop server --backend postgresql+psycopg2://loop:PASSWORD@db-host:5432/loop \\
                --artifacts /srv/loop-artifacts --host 0.0.0.0 --port 5000

then, on the driver and on every worker (nothing else changes; recipes need no edit):

    export MLFLOW_TRACKING_URI=http://server-host:5000
    loop sweep recipes/demo.yaml

Artifacts (predictions, reports, plots) are uploaded to and downloaded from the server itself
(`--serve-artifacts` with `--artifacts-destination`), so workers need no shared filesystem and no
storage credentials: only the server writes to the artifact folder (or bucket).

The backend is an SQLAlchemy URI. PostgreSQL needs the driver in it, `postgresql+psycopg2://`
(psycopg2 is a loop dependency); a plain `postgresql://` makes SQLAlchemy 2.1 look for psycopg 3.
`sqlite:///path/mlflow.db` also works, for one user: SQLite serializes concurrent writers.
The server accepts Host headers of localhost and private IPs only; a team reaching it by a DNS
name lists that name in `allowed_hosts`.

This module only builds the command and checks the inputs; it does not import mlflow.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# MLflow's background job runner (GenAI jobs, unused by loop) doubles the time to a healthy
# server: ~13 s with it, ~7 s without (notes/mlflow.md).
_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# SQLAlchemy driver name -> (importable module, pip package)
_PG_DRIVERS = {"psycopg2": ("psycopg2", "psycopg2-binary"), "psycopg": ("psycopg", "psycopg")}


def redact(uri: str) -> str:
    """The URI with its password replaced by `***`, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_backend_uri(uri: str) -> str:
    """Validate a backend store URI; return its kind, `postgresql` or `sqlite`.

    Raises ValueError saying what to write instead. The password never appears in a message.
    """
    shown = redact(uri)
    scheme, sep, _ = uri.partition("://")
    if not sep:
        raise ValueError(
            f"backend {shown!r} is not a database URI; write "
            "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB (a team) or "
            "sqlite:///path/to/mlflow.db (one user)"
        )
    dialect, _, driver = scheme.lower().partition("+")
    if dialect in ("postgresql", "postgres"):
        return _check_postgres(uri, shown, dialect, driver)
    if dialect == "sqlite":
        if uri.split("://", 1)[1] in ("", "/", "/:memory:"):
            raise ValueError(
                f"backend {shown!r} is an in-memory database that loses every run when the "
                "server stops; write sqlite:///path/to/mlflow.db"
            )
        return "sqlite"
    if dialect in ("http", "https"):
        raise ValueError(
            f"{shown!r} is a tracking server's address, not a database: the server needs "
            "--backend postgresql+psycopg2://...; workers use the address as MLFLOW_TRACKING_URI"
        )
    if dialect == "file":
        raise ValueError(
            f"backend {shown!r} is MLflow's folder store, which MLflow 3 refuses by default; "
            "write sqlite:///path/to/mlflow.db (one user) or postgresql+psycopg2://... (a team)"
        )
    raise ValueError(
        f"backend {shown!r}: unsupported database {scheme!r}; loop's server is tested with "
        "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB and sqlite:///path/to/mlflow.db"
    )


def _check_postgres(uri: str, shown: str, dialect: str, driver: str) -> str:
    parts = urlsplit(uri)
    suggestion = "postgresql+psycopg2://" + shown.split("://", 1)[1]
    if dialect == "postgres":
        raise ValueError(
            f"backend {shown!r}: SQLAlchemy does not know the name 'postgres'; write {suggestion}"
        )
    if not driver:
        raise ValueError(
            f"backend {shown!r} names no driver, and SQLAlchemy 2.1 then needs psycopg 3, which "
            f"loop does not install; write {suggestion}"
        )
    if driver not in _PG_DRIVERS:
        raise ValueError(
            f"backend {shown!r}: unknown PostgreSQL driver {driver!r}; write {suggestion}"
        )
    module, package = _PG_DRIVERS[driver]
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"backend {shown!r} needs the Python package {package!r}: pip install {package}"
        )
    if not parts.path.strip("/"):
        raise ValueError(
            f"backend {shown!r} names no database; write {dialect}+{driver}://USER:PASSWORD@"
            f"{parts.hostname or 'HOST'}:{parts.port or 5432}/DATABASE"
        )
    return "postgresql"


def server_command(
    backend_uri: str,
    *,
    artifacts: Path | str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
    allowed_hosts: Sequence[str] = (),
) -> list[str]:
    """The `mlflow server` argv for a validated backend, serving artifacts through the server.

    `artifacts` is a local folder (made absolute) or a bucket URI such as `s3://bucket/loop`;
    `allowed_hosts` are extra Host headers to accept (DNS names the team uses to reach it).
    Runs with the interpreter running loop, the one with psycopg2 installed.
    """
    check_backend_uri(backend_uri)
    if not 0 < port < 65536:
        raise ValueError(f"port must be within 1..65535, got {port}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    destination = (
        artifacts
        if isinstance(artifacts, str) and "://" in artifacts
        else Path(artifacts).expanduser().resolve().as_uri()
    )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        destination,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", ",".join(allowed_hosts)]
    return cmd


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the server process: `base` (default os.environ) without
    MLFLOW_TRACKING_URI, which is the workers' setting, and without MLflow's job runner."""
    env = dict(os.environ if base is None else base)
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, **_SERVER_ENV}


def tracking_url(host: str, port: int) -> str:
    """What workers set as MLFLOW_TRACKING_URI; a wildcard bind address becomes this host's name."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def wait_healthy(
    base_url: str,
    timeout: float = 60.0,
    *,
    proc: subprocess.Popen | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `<base_url>/health` until it answers OK.

    Raises TimeoutError after `timeout` seconds, or RuntimeError at once when `proc` (the server
    process, if given) has exited, e.g. on a bad password or a port already in use.
    """
    url = base_url.rstrip("/") + "/health"
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"the MLflow server exited with status {proc.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, min(5.0, timeout))) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"the MLflow server at {base_url} did not answer /health within {timeout:g} s "
                f"(last: {last})"
            )
        time.sleep(interval)
