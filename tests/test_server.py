"""The team tracking server: the command it runs, backend checks, and a real sweep logged through
an MLflow server backed by PostgreSQL (needs LOOP_TEST_POSTGRES_URI, e.g. from .ci/postgres.sh)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
import pytest
from test_driver import tiny_recipe

from loop import driver, server
from loop.recipe import load_recipe

PG_URI = "postgresql+psycopg2://loop:s3cret@db.example:5432/loop"


# ----------------------------------------------------------------------------------------------
# server_command and backend checks
# ----------------------------------------------------------------------------------------------


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_server_command_proxies_artifacts_from_an_absolute_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cmd = server.server_command(PG_URI, artifacts=Path("art"), host="0.0.0.0", port=5001)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "server"]
    # the password stays out of argv (`ps` shows argv to every user); server_env carries it
    assert _flag(cmd, "--backend-store-uri") == "postgresql+psycopg2://loop@db.example:5432/loop"
    assert not any("s3cret" in part for part in cmd)
    assert _flag(cmd, "--artifacts-destination") == (tmp_path / "art").resolve().as_uri()
    assert "--serve-artifacts" in cmd
    assert (_flag(cmd, "--host"), _flag(cmd, "--port")) == ("0.0.0.0", "5001")
    assert "--workers" not in cmd and "--allowed-hosts" not in cmd
    assert "--default-artifact-root" not in cmd  # new experiments get mlflow-artifacts:/


def test_server_command_workers_hosts_and_bucket_destination():
    cmd = server.server_command(
        PG_URI, artifacts="s3://bucket/loop", workers=2, allowed_hosts=["mlflow.team", "10.0.*"]
    )
    assert _flag(cmd, "--artifacts-destination") == "s3://bucket/loop"
    assert _flag(cmd, "--workers") == "2"
    assert _flag(cmd, "--allowed-hosts") == "mlflow.team,10.0.*"
    assert (_flag(cmd, "--host"), _flag(cmd, "--port")) == ("127.0.0.1", "5000")


@pytest.mark.parametrize(
    ("kw", "message"), [({"port": 0}, "--port: must be"), ({"workers": 0}, "--workers: must be")]
)
def test_server_command_rejects_bad_numbers(tmp_path: Path, kw, message):
    with pytest.raises(ValueError, match=message):
        server.server_command(PG_URI, artifacts=tmp_path, **kw)


def test_server_command_checks_the_backend(tmp_path: Path):
    with pytest.raises(ValueError, match=r"postgresql\+psycopg2://"):
        server.server_command("postgresql://loop:pw@h/db", artifacts=tmp_path)


def test_backend_kinds():
    assert server.check_backend_uri(PG_URI) == "postgresql"
    assert server.check_backend_uri("sqlite:////srv/mlruns/mlflow.db") == "sqlite"
    assert server.check_backend_uri("sqlite:///mlruns/mlflow.db") == "sqlite"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # plain postgresql:// needs psycopg 3 under SQLAlchemy 2.1: say what to write instead
        (
            "postgresql://loop:s3cret@db:5432/loop",
            "write postgresql+psycopg2://loop:***@db:5432/loop",
        ),
        ("postgres://loop:s3cret@db/loop", "write postgresql+psycopg2://loop:***@db/loop"),
        ("postgresql+pg8000://loop@db/loop", "unknown PostgreSQL driver 'pg8000'"),
        ("postgresql+psycopg2://loop@db:5432/", "names no database"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("http://tracking:5000", "not a database"),
        ("file:///srv/mlruns", "folder store"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("mlruns/mlflow.db", "not a database URI"),
    ],
)
def test_backend_errors_say_what_to_write(uri: str, expected: str):
    with pytest.raises(ValueError) as info:
        server.check_backend_uri(uri)
    assert expected in str(info.value)
    assert "s3cret" not in str(info.value)


def test_backend_names_the_missing_driver_package(monkeypatch):
    monkeypatch.setitem(server._PG_DRIVERS, "psycopg2", ("loop_no_such_module", "psycopg2-binary"))
    with pytest.raises(ValueError, match="pip install psycopg2-binary"):
        server.check_backend_uri(PG_URI)


def test_redact_hides_only_the_password():
    assert server.redact(PG_URI) == "postgresql+psycopg2://loop:***@db.example:5432/loop"
    assert server.redact("sqlite:///x.db") == "sqlite:///x.db"


def test_server_env_drops_the_workers_setting_and_the_job_runner():
    env = server.server_env({"PATH": "/bin", "MLFLOW_TRACKING_URI": "http://me:5000"})
    assert env == {"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def test_tracking_url():
    assert server.tracking_url("10.0.0.5", 5000) == "http://10.0.0.5:5000"
    assert server.tracking_url("0.0.0.0", 5001) == f"http://{socket.getfqdn()}:5001"


# ----------------------------------------------------------------------------------------------
# wait_healthy
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _health_stub(status: int):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_wait_healthy_returns_once_health_answers():
    with _health_stub(200) as base:
        server.wait_healthy(base, timeout=5)


def test_wait_healthy_times_out_with_the_last_answer():
    with _health_stub(503) as base, pytest.raises(TimeoutError, match="HTTP 503"):
        server.wait_healthy(base, timeout=0.5, interval=0.1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer /health within 0.5 s"):
        server.wait_healthy(f"http://127.0.0.1:{_free_port()}", timeout=0.5, interval=0.1)
    assert time.monotonic() - t0 < 5


def test_wait_healthy_stops_when_the_server_process_exits():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(RuntimeError, match="exited with status 3"):
        server.wait_healthy(f"http://127.0.0.1:{_free_port()}", timeout=30, proc=proc)


# ----------------------------------------------------------------------------------------------
# A real sweep through the server, stored in PostgreSQL
# ----------------------------------------------------------------------------------------------


def _pg_connect(uri: str):
    import psycopg2

    u = urlsplit(uri)
    return psycopg2.connect(
        host=u.hostname,
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.path.lstrip("/"),
    )


@pytest.fixture()
def fresh_pg_uri():
    """A new, empty database for this test run (dropped afterwards), so reruns start clean."""
    base = os.environ.get("LOOP_TEST_POSTGRES_URI")
    if not base:
        reason = (
            "LOOP_TEST_POSTGRES_URI is unset: run `export LOOP_TEST_POSTGRES_URI=$(.ci/postgres.sh)`"
            " to test the tracking server on PostgreSQL"
        )
        if os.environ.get("LOOP_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"LOOP_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    name = f"loop_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_connect(base)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        u = urlsplit(base)
        yield urlunsplit(u._replace(path=f"/{name}"))
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


@contextlib.contextmanager
def _running_server(backend_uri: str, tmp_path: Path):
    port = _free_port()
    cmd = server.server_command(backend_uri, artifacts=tmp_path / "artifacts", port=port, workers=2)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        # its own session: uvicorn's worker processes are stopped with it, by process group
        proc = subprocess.Popen(
            cmd,
            env=server.server_env(password=server.split_password(backend_uri)[1]),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            server.wait_healthy(base, timeout=120, proc=proc)
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sweep_through_a_postgresql_backed_server(fresh_pg_uri: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load_recipe(tiny_recipe(tmp_path, name="team", sizes=(4,), seeds=(0,)))
    with _running_server(fresh_pg_uri, tmp_path) as base:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
        try:
            out = driver.sweep(recipe)
            assert (out.ran, out.skipped, out.failed) == (2, 0, 0)  # 2 tiers x 1 size x 1 seed

            client = mlflow.MlflowClient(base)
            exp = client.get_experiment_by_name(recipe.experiment)
            assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:")
            parents = client.search_runs(
                [exp.experiment_id], filter_string="tags.`loop.kind` = 'sweep'"
            )
            assert len(parents) == 1
            parent = parents[0].info.run_id
            kids = client.search_runs(
                [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
            )
            assert sorted(k.data.tags["loop.cell"] for k in kids) == [
                "high-n4-s0",
                "raw-n4-s0",
                "zero-shot-n0-s0",  # the untrained model, every tier's anchor
            ]
            for k in kids:
                assert k.info.status == "FINISHED"
                assert {"val_loss", "eval.json_match"} <= set(k.data.metrics)
                if k.data.tags["loop.tier"] != "zero-shot":  # the base model is not trained
                    assert client.get_metric_history(k.info.run_id, "train_loss")

            # the artifact went through the server's proxy into its destination folder
            kid = kids[0].info.run_id
            local = client.download_artifacts(kid, "predictions.json", str(tmp_path / "dl"))
            table = json.loads(Path(local).read_text())
            assert table["columns"] and len(table["data"]) == 4  # eval.samples
            stored = list((tmp_path / "artifacts").rglob("predictions.json"))
            assert len(stored) == 3, stored  # 2 cells and the zero-shot run

            again = driver.sweep(recipe)  # resume is read from the server too
            assert (again.ran, again.skipped) == (0, 2)
        finally:
            mlflow.set_tracking_uri(None)  # the driver set it (and its env var) to this server

    # the rows live in PostgreSQL, not in a file next to the test
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
    with contextlib.closing(_pg_connect(fresh_pg_uri)) as con, con.cursor() as cur:
        cur.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.experiment_id WHERE e.name = %s",
            (recipe.experiment,),
        )
        status = dict(cur.fetchall())
        cur.execute(
            "SELECT run_uuid, value FROM latest_metrics WHERE key = 'val_loss' AND run_uuid = ANY(%s)",
            ([k.info.run_id for k in kids],),
        )
        val_loss = dict(cur.fetchall())
    assert status[parent] == "FINISHED"
    assert all(status[k.info.run_id] == "FINISHED" for k in kids)
    assert val_loss == {k.info.run_id: pytest.approx(k.data.metrics["val_loss"]) for k in kids}


# ----------------------------------------------------------------------------------------------
# No password on a command line; MLflow's processes end with loop's
# ----------------------------------------------------------------------------------------------


@pytest.fixture()
def own_role(fresh_pg_uri: str):
    """(role, password, database URI without password): a throwaway role whose password is
    found nowhere else, owning a fresh database."""
    u = urlsplit(fresh_pg_uri)
    role = f"loop_pw_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    db = f"{u.path.lstrip('/')}_own"
    admin = _pg_connect(fresh_pg_uri)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
            cur.execute(f"GRANT {role} TO {u.username}")  # lets us make it the owner
            cur.execute(f"CREATE DATABASE {db} OWNER {role}")
        yield role, password, f"postgresql+psycopg2://{role}@{u.hostname}:{u.port}/{db}"
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            cur.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        admin.close()


def _tree(pid: int) -> list:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cmdline(proc) -> str:
    # what `ps` shows every user: /proc/<pid>/cmdline, NUL-separated
    return Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("how", ["pgpass", "env-uri", "argv"])
def test_server_password_is_in_no_command_line(own_role, tmp_path: Path, how: str):
    role, password, uri = own_role
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MLFLOW_"))}
    port = _free_port()
    argv = ["--artifacts", str(tmp_path / "art"), "--port", str(port), "--workers", "1"]
    if how == "pgpass":  # libpq's own password file: host:port:db:user:password
        u = urlsplit(uri)
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"{u.hostname}:{u.port}:{u.path.lstrip('/')}:{role}:{password}\n")
        passfile.chmod(0o600)
        env["PGPASSFILE"] = str(passfile)
        argv += ["--backend", uri]
    elif how == "env-uri":
        env["LOOP_SERVER_BACKEND"] = uri.replace(f"{role}@", f"{role}:{password}@")
    else:  # in loop's own argv: taken out before MLflow starts, with a warning
        argv += ["--backend", uri.replace(f"{role}@", f"{role}:{password}@")]
    log = tmp_path / "loop.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loop.cli", "server", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(base, timeout=120, proc=proc)
        # the server reached the database with that password: it can write an experiment
        client = mlflow.MlflowClient(base)
        exp_id = client.create_experiment(f"pw-{how}")
        assert client.get_experiment(exp_id).name == f"pw-{how}"
        tree = _tree(proc.pid)
        assert len(tree) >= 2  # loop, mlflow server (and its uvicorn worker)
        for p in tree:
            if how == "argv" and p.pid == proc.pid:
                continue  # loop's own argv holds what the user typed, and loop says so
            assert password not in _cmdline(p), _cmdline(p)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert password not in text
    assert ("visible to every user" in text) == (how == "argv")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_loop_ui_ends_every_process_it_started(tmp_path: Path, sig):
    import psutil

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}", timeout=120, proc=proc)
        children = _tree(proc.pid)[1:]
        assert children, "loop ui started no process"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 128 + sig
        deadline = time.monotonic() + 15
        alive = children
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.2)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        with socket.socket() as s:  # and the port is free again: nothing listens on it
            # (SO_REUSEADDR: the server's closed connections may sit in TIME_WAIT)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()


# ----------------------------------------------------------------------------------------------
# Two drivers, one store: leased cells
# ----------------------------------------------------------------------------------------------


def _leased_recipe(tmp: Path, name: str, **kw) -> Path:
    import yaml

    path = tiny_recipe(tmp, name=name, **kw)
    data = yaml.safe_load(path.read_text())
    data["tracking"] = {"heartbeat_seconds": 1}
    path.write_text(yaml.safe_dump(data))
    return path


def _driver(path: Path, base: str, folder: Path) -> tuple[subprocess.Popen, Path]:
    """`loop sweep` in its own work folder (as on another machine), logging to the server."""
    folder.mkdir()
    log = folder / "out.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": base, "CI": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loop.cli", "sweep", str(path)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


@contextlib.contextmanager
def _reaped(*procs: subprocess.Popen):
    """Kill whichever driver is still running when the block ends (a failed assertion)."""
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _started(log: Path) -> list[str]:
    """Cells a driver trained: its `[k/n] <cell>: ...` start lines."""
    import re

    return re.findall(r"^\[\d+/\d+\] (\S+): ", log.read_text(), flags=re.M)


def _cell_runs(client, exp_name: str, view=None) -> list:
    from mlflow.entities import ViewType

    exp = client.get_experiment_by_name(exp_name)
    if exp is None:  # no driver has got that far yet
        return []
    return client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`loop.kind` = 'cell'",
        run_view_type=view or ViewType.ACTIVE_ONLY,
    )


def test_two_drivers_share_one_sweep_and_take_over_a_dead_ones_cell(
    fresh_pg_uri: str, tmp_path: Path
):
    from mlflow.entities import ViewType

    with _running_server(fresh_pg_uri, tmp_path) as base:
        client = mlflow.MlflowClient(base)

        # 1. two drivers start the same recipe a second apart
        path = _leased_recipe(tmp_path, "pair", sizes=(4, 8), seeds=(0,), min_steps=10)
        a, a_log = _driver(path, base, tmp_path / "a")
        time.sleep(1)
        b, b_log = _driver(path, base, tmp_path / "b")
        with _reaped(a, b):
            assert a.wait(timeout=300) == 0, a_log.read_text()[-3000:]
            assert b.wait(timeout=300) == 0, b_log.read_text()[-3000:]
        cells = {"high-n4-s0", "raw-n4-s0", "high-n8-s0", "raw-n8-s0"}
        zero = {"zero-shot-n0-s0"}  # the base model's run: evaluated once, by one of the two
        runs = _cell_runs(client, "pair")
        assert sorted(r.data.tags["loop.cell"] for r in runs) == sorted(cells | zero)  # once each
        assert all(r.info.status == "FINISHED" and r.data.tags["loop.done"] == "1" for r in runs)
        trained = _started(a_log) + _started(b_log)
        assert sorted(trained) == sorted(cells), trained  # no cell trained twice
        # a claim that lost a race was withdrawn before it trained
        for r in _cell_runs(client, "pair", ViewType.DELETED_ONLY):
            assert not r.data.metrics, r.data.tags["loop.cell"]

        # 2. SIGKILL one driver mid-cell: the other one runs that cell once the lease is void
        path = _leased_recipe(tmp_path, "pair-kill", sizes=(4, 8), seeds=(0,), min_steps=60)
        a, a_log = _driver(path, base, tmp_path / "a2")
        time.sleep(1)
        b, b_log = _driver(path, base, tmp_path / "b2")
        with _reaped(a, b):
            deadline = time.monotonic() + 240
            held: list = []
            busy: set[str] = set()
            while time.monotonic() < deadline and not (held and str(b.pid) in busy):
                running = [
                    r
                    for r in _cell_runs(client, "pair-kill")
                    if r.info.status == "RUNNING" and r.data.tags["loop.cell"] not in zero
                ]
                owners = {
                    r.info.run_id: r.data.tags.get("loop.owner", "").split("/")[1] for r in running
                }
                busy = set(owners.values())
                held = [r for r in running if owners[r.info.run_id] == str(a.pid)]
                time.sleep(0.3)
            assert held and str(b.pid) in busy, a_log.read_text()[-3000:]  # both mid-cell
            a.kill()
            a.wait()
            assert b.wait(timeout=300) == 0, b_log.read_text()[-3000:]
        runs = _cell_runs(client, "pair-kill")
        done = [r.data.tags["loop.cell"] for r in runs if r.info.status == "FINISHED"]
        killed = [r for r in runs if r.info.status == "KILLED"]
        assert sorted(done) == sorted(cells | zero), done  # each cell finished exactly once
        assert [r.info.run_id for r in killed] == [held[0].info.run_id]  # A's cell, marked dead
        assert held[0].data.tags["loop.cell"] in _started(b_log)  # and B ran it
