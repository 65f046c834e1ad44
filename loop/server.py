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

The database password never goes on a command line, where `ps` shows it to every user of the
machine: give it in PGPASSWORD, in a `.pgpass` file (PGPASSFILE, default ~/.pgpass), or in a
backend URI read from the LOOP_SERVER_BACKEND variable. A password written into `--backend` is
taken out of the URI before MLflow starts and handed to it as PGPASSWORD; loop says that its own
command line still showed it. No message prints it.

`run_group` runs MLflow (`loop server`, `loop ui`) in its own process group and ends the whole
group (uvicorn, its workers) when loop gets SIGINT or SIGTERM.

This module builds the commands, checks the inputs and runs the processes; it does not import
mlflow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import unquote, urlsplit

from loop.errors import StoreError

# MLflow's background job runner (GenAI jobs, unused by loop) slows the start: median 33.1 s to a
# healthy server with it, 24.8 s without, on 2 cores under load ~4-6
# (benchmarks/results/figures/server_start.txt).
_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# SQLAlchemy driver name -> (importable module, pip package)
_PG_DRIVERS = {"psycopg2": ("psycopg2", "psycopg2-binary"), "psycopg": ("psycopg", "psycopg")}


def _userinfo(uri: str) -> tuple[str, str, str | None, str]:
    """(`scheme://`, user, password as written or None, `@host...`), by plain string
    splitting, so that any text works (urlsplit rejects some, e.g. a port that is no number)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", "", None, uri
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    if "@" not in netloc:
        return scheme + sep, "", None, rest
    userinfo, _, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return scheme + sep, user, password if colon else None, "@" + host + tail


def redact(uri: str) -> str:
    """The URI with its password replaced by `***`, for messages and logs."""
    head, user, password, rest = _userinfo(uri)
    return uri if password is None else f"{head}{user}:***{rest}"


def scrub(text: str, uri: str) -> str:
    """`text` with the password of `uri` (as written and percent-decoded) replaced by `***`."""
    raw = _userinfo(uri)[2]
    for secret in sorted({raw, unquote(raw)}, key=len, reverse=True) if raw else ():
        text = text.replace(secret, "***")
    return text


def split_password(uri: str) -> tuple[str, str | None]:
    """(the URI without its password, the password percent-decoded, or None)."""
    head, user, password, rest = _userinfo(uri)
    if password is None:
        return uri, None
    return f"{head}{user}{rest}", unquote(password)


def check_backend_uri(uri: str) -> str:
    """Validate a backend store URI; return its kind, `postgresql` or `sqlite`.

    Raises StoreError (a ValueError) saying what to write instead. The password never appears in a message.
    """
    shown = redact(uri)
    scheme, sep, _ = uri.partition("://")
    if not sep:
        raise StoreError(
            f"backend {shown!r} is not a database URI; write "
            "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB (a team) or "
            "sqlite:///path/to/mlflow.db (one user)"
        )
    dialect, _, driver = scheme.lower().partition("+")
    if dialect in ("postgresql", "postgres"):
        return _check_postgres(uri, shown, dialect, driver)
    if dialect == "sqlite":
        if uri.split("://", 1)[1] in ("", "/", "/:memory:"):
            raise StoreError(
                f"backend {shown!r} is an in-memory database that loses every run when the "
                "server stops; write sqlite:///path/to/mlflow.db"
            )
        return "sqlite"
    if dialect in ("http", "https"):
        raise StoreError(
            f"{shown!r} is a tracking server's address, not a database: the server needs "
            "--backend postgresql+psycopg2://...; workers use the address as MLFLOW_TRACKING_URI"
        )
    if dialect == "file":
        raise StoreError(
            f"backend {shown!r} is MLflow's folder store, which MLflow 3 refuses by default; "
            "write sqlite:///path/to/mlflow.db (one user) or postgresql+psycopg2://... (a team)"
        )
    raise StoreError(
        f"backend {shown!r}: unsupported database {scheme!r}; loop's server is tested with "
        "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB and sqlite:///path/to/mlflow.db"
    )


def _check_postgres(uri: str, shown: str, dialect: str, driver: str) -> str:
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. an unclosed [IPv6 address
        raise StoreError(f"backend {shown!r}: not a valid URI ({exc})") from None
    suggestion = "postgresql+psycopg2://" + shown.split("://", 1)[1]
    if dialect == "postgres":
        raise StoreError(
            f"backend {shown!r}: SQLAlchemy does not know the name 'postgres'; write {suggestion}"
        )
    if not driver:
        raise StoreError(
            f"backend {shown!r} names no driver, and SQLAlchemy 2.1 then needs psycopg 3, which "
            f"loop does not install; write {suggestion}"
        )
    if driver not in _PG_DRIVERS:
        raise StoreError(
            f"backend {shown!r}: unknown PostgreSQL driver {driver!r}; write {suggestion}"
        )
    module, package = _PG_DRIVERS[driver]
    if importlib.util.find_spec(module) is None:
        raise StoreError(
            f"backend {shown!r} needs the Python package {package!r}: pip install {package}"
        )
    try:
        port = parts.port
    except ValueError:
        raise StoreError(f"backend {shown!r}: the port must be a number") from None
    if not parts.path.strip("/"):
        raise StoreError(
            f"backend {shown!r} names no database; write {dialect}+{driver}://USER:PASSWORD@"
            f"{parts.hostname or 'HOST'}:{port or 5432}/DATABASE"
        )
    return "postgresql"


# ----------------------------------------------------------------------------------------------
# The tracking store a recipe logs to (checked before anything runs)
# ----------------------------------------------------------------------------------------------

# URI schemes MLflow 3 has a tracking store for (databricks: a hosted workspace).
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SCHEMES = (*_DB_SCHEMES, "http", "https", "databricks", "databricks-uc", "file")


def store_field(recipe_uri: str | None) -> str:
    """Where the tracking URI in use was set, for messages."""
    if recipe_uri:
        return "tracking.uri"
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default store"


def check_store(recipe_uri: str | None = None, *, probe: bool = True) -> list[str]:
    """Problems with the tracking store a recipe would use, found before any run is written.

    Checks the scheme, that an SQLite file can be created where it points, and (`probe`) that a
    tracking server answers `/health` within a few seconds: MLflow itself retries a dead server
    for minutes. Messages name `tracking.uri` or `MLFLOW_TRACKING_URI` and never a password.
    """
    uri = recipe_uri or os.environ.get("MLFLOW_TRACKING_URI")
    where = store_field(recipe_uri)
    if not uri:
        folder = Path.cwd() / "mlruns"
        if folder.exists() and not folder.is_dir():
            return [f"{where}: {folder} exists and is not a folder; the store lives in mlruns/"]
        return []
    shown = redact(uri)
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    dialect = scheme.partition("+")[0]
    if not scheme:
        return [
            f"{where}: {shown!r} is not a URI; write sqlite:///path/to/mlflow.db, "
            "http://host:port (a tracking server) or postgresql+psycopg2://..."
        ]
    if dialect not in _SCHEMES:
        return [
            f"{where}: unsupported scheme {scheme!r} in {shown!r}; MLflow stores are "
            "sqlite:///..., http(s)://host:port, postgresql+psycopg2://..., mysql://... "
            "or databricks"
        ]
    if dialect == "file":
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return []
        return [
            f"{where}: {shown!r} is MLflow's folder store, which MLflow 3 refuses by default; "
            "write sqlite:///path/to/mlflow.db"
        ]
    if dialect == "sqlite":
        return _check_sqlite(uri, where)
    if dialect in ("http", "https"):
        return _probe_server(uri, shown, where) if probe else []
    if dialect == "postgresql":  # the driver named and installed, a database given
        try:
            check_backend_uri(uri)
        except StoreError as exc:
            return [f"{where}: {exc}"]
    return []


def _check_sqlite(uri: str, where: str) -> list[str]:
    rest = uri.split("://", 1)[1]
    if rest in ("", "/", "/:memory:"):
        return [
            f"{where}: {uri!r} is an in-memory database that loses every run when the process "
            "ends; write sqlite:///path/to/mlflow.db"
        ]
    db = Path(rest[1:] if rest.startswith("/") else rest).expanduser()
    if db.is_dir():
        return [f"{where}: {db} is a folder; the SQLite URI names the database file in it"]
    parent = db.parent if str(db.parent) else Path(".")
    if not parent.is_dir():
        return [f"{where}: folder {parent} does not exist (for the database {db.name})"]
    if not os.access(parent if not db.exists() else db, os.W_OK):
        return [f"{where}: {db if db.exists() else parent} is not writable"]
    return []


def _probe_server(uri: str, shown: str, where: str, timeout: float = 5.0) -> list[str]:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status == 200:
                return []
            got = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        got = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        got = str(getattr(exc, "reason", exc))
    return [
        f"{where}: no MLflow tracking server answers at {shown} ({got}); start one with "
        "`loop server` or fix the address"
    ]


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
    The backend's password is left out (pass it with `server_env(password=...)`).

    `artifacts` is a local folder (made absolute) or a bucket URI such as `s3://bucket/loop`;
    `allowed_hosts` are extra Host headers to accept (DNS names the team uses to reach it).
    Runs with the interpreter running loop, the one with psycopg2 installed.
    """
    check_backend_uri(backend_uri)
    if not 0 < port < 65536:
        raise StoreError(f"--port: must be within 1..65535, got {port}")
    if workers is not None and workers < 1:
        raise StoreError(f"--workers: must be at least 1, got {workers}")
    backend_uri, _password = split_password(backend_uri)  # the password goes in server_env
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


def server_env(
    base: Mapping[str, str] | None = None, *, password: str | None = None
) -> dict[str, str]:
    """Environment for the server process: `base` (default os.environ) without
    MLFLOW_TRACKING_URI, which is the workers' setting, without MLflow's job runner, and with
    the backend password as PGPASSWORD (libpq reads it; it never appears in argv)."""
    env = dict(os.environ if base is None else base)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("LOOP_SERVER_BACKEND", None)
    if password is not None:
        env["PGPASSWORD"] = password
    return {**env, **_SERVER_ENV}


# ----------------------------------------------------------------------------------------------
# Running MLflow in its own process group
# ----------------------------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def run_group(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, grace: float = 10.0
) -> int:
    """Run `cmd` in a new session (its own process group) until it exits, or until this process
    gets SIGINT or SIGTERM; either way end every process left in the group: SIGTERM, then
    SIGKILL after `grace` seconds. Returns the command's status, or 128 + the signal number."""
    proc = subprocess.Popen(
        list(cmd), env=None if env is None else dict(env), start_new_session=True
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            return proc.wait()
        except _Stop as exc:
            return 128 + exc.signum
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
        finally:
            # while the group ends, a second signal must not cut the clean-up short
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            end_group(proc, grace=grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`."""
    import psutil

    out = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
    return out


def end_group(proc: subprocess.Popen, *, grace: float = 10.0) -> None:
    """SIGTERM to `proc`'s whole process group, SIGKILL to what is left after `grace` s."""
    pgid = proc.pid  # a session leader's group id is its pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_members(pgid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


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
