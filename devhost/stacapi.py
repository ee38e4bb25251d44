"""A local STAC API to publish into: PostgreSQL with PostGIS (Debian's packages) in a
temporary folder, pgstac's schema (`pypgstac migrate`) and stac-fastapi-pgstac with the
Transactions extension under uvicorn, all on free loopback ports. The tests start one
(tests/stacapi.py) and `python -m devhost stac-api` (`./dev stac-api`) starts one for a
person to try the API target with; both use this code.

stac-fastapi-pgstac and pypgstac live in their own virtual environment, .tools/stac-api/
(`./dev setup-stac-api`; DEVHOST_STAC_API_VENV names another). PostgreSQL refuses to run as
root: as root the database runs as the `postgres` user the Debian packages create.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_ENV = "DEVHOST_STAC_API_VENV"  # where ./dev setup-stac-api put it (default .tools/stac-api)
DATABASE = "postgres"
USER = "postgres"
# trust authentication on loopback only: a throwaway database for tests and trying things.
PASSWORD = "pgstac-local"


class LocalStacApiUnavailable(RuntimeError):
    """PostgreSQL, PostGIS or stac-fastapi-pgstac is not installed, or did not start."""


def venv() -> Path:
    return Path(os.environ.get(VENV_ENV) or ROOT / ".tools" / "stac-api")


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server's bin folder (Debian: /usr/lib/postgresql/N)."""

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if not found:
        on_path = shutil.which("initdb")
        if on_path is None:
            raise LocalStacApiUnavailable(
                "PostgreSQL's server is not installed (no initdb): apt-get install "
                "postgresql-15 postgresql-15-postgis-3 (.ci/run does)."
            )
        return Path(on_path).parent
    return Path(found[-1]).parent


def check_installed() -> tuple[Path, Path]:
    """(PostgreSQL's bin folder, the stac-api venv), or LocalStacApiUnavailable saying what to
    install."""
    bindir = postgres_bin()
    sharedir = (
        subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or f"/usr/share/postgresql/{bindir.parent.name}"
    )
    if not glob.glob(os.path.join(sharedir, "extension", "postgis*.control")):
        raise LocalStacApiUnavailable(
            f"PostGIS is not installed for PostgreSQL {bindir.parent.name}: apt-get install "
            f"postgresql-{bindir.parent.name}-postgis-3 (.ci/run does)."
        )
    tools = venv()
    if not (tools / "bin" / "uvicorn").exists() or not (tools / "bin" / "pypgstac").exists():
        raise LocalStacApiUnavailable(
            f"stac-fastapi-pgstac is not installed in {tools}: run `./dev setup-stac-api`."
        )
    return bindir, tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_database_user() -> tuple[list[str], int | None, int | None]:
    """The prefix that runs a command as the database's owner, and that owner's uid/gid for
    chown: as root the `postgres` user (PostgreSQL refuses root), else the current user."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise LocalStacApiUnavailable(
            "Running as root and there is no `postgres` user to run PostgreSQL as "
            "(Debian's postgresql packages create it)."
        ) from None
    runuser = shutil.which("runuser") or "runuser"
    return [runuser, "-u", "postgres", "--"], entry.pw_uid, entry.pw_gid


@dataclass
class Postgres:
    """One PostgreSQL server in a temporary folder, listening on 127.0.0.1:port only."""

    bindir: Path
    folder: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        prefix, _, _ = _as_database_user()
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-2000:]
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise LocalStacApiUnavailable(f"{Path(args[0]).name} failed: {tail}\n{log}".strip())

    def init(self) -> None:
        _, uid, gid = _as_database_user()
        self.folder.mkdir(parents=True, exist_ok=True)
        if uid is not None and gid is not None:
            os.chown(self.folder, uid, gid)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "-E", "UTF8",
            "--auth=trust", "--no-sync", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def running(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True


@dataclass
class LocalStacApi:
    """A running stac-fastapi-pgstac over its own PostgreSQL: ``url`` is the API's root.
    ``stop_database``/``start_database`` take the database away and bring it back (the API
    keeps running and answers 5xx meanwhile); ``another`` serves a second API, configured
    otherwise, over the same database."""

    url: str
    postgres: Postgres
    tools: Path

    def stop_database(self) -> None:
        self.postgres.stop()

    def start_database(self) -> None:
        self.postgres.start()

    def another(self, **settings: str) -> contextlib.AbstractContextManager[str]:
        """A second stac-fastapi-pgstac on this database with these settings of its own
        (its environment variables, e.g. INVALID_ID_CHARS), stopped on exit; yields its URL."""
        return serving(self.postgres, self.tools, None, settings)


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalStacApiUnavailable(
                f"stac-fastapi-pgstac exited ({process.returncode}): "
                + log.read_text(errors="replace")[-3000:]
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise LocalStacApiUnavailable(
        f"stac-fastapi-pgstac did not answer at {url} within {seconds:.0f} s"
    )


def api_environment(postgres: Postgres) -> dict[str, str]:
    """stac-fastapi-pgstac's settings (its config.py, version 7): the database, and the
    Transactions extension on."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRES_"))},
        "PGUSER": USER,
        "PGPASSWORD": PASSWORD,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGDATABASE": DATABASE,
        "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
        # the pool re-connects after the database comes back (fail fast while it is down)
        "DB_MIN_CONN_SIZE": "0",
        "DB_MAX_CONN_SIZE": "4",
    }


@contextlib.contextmanager
def serving(
    postgres: Postgres, tools: Path, port: int | None, settings: dict[str, str] | None = None
) -> Iterator[str]:
    """stac-fastapi-pgstac under uvicorn on 127.0.0.1 over ``postgres``, until exit; yields
    its URL."""
    api_port = port or free_port()
    log = postgres.folder.parent / f"stac-api-{api_port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(tools / "bin" / "uvicorn"), "stac_fastapi.pgstac.app:create_app",
             "--factory", "--host", "127.0.0.1", "--port", str(api_port),
             "--log-level", "warning"],
            env={**api_environment(postgres), **(settings or {})},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{api_port}"
        _wait_for(f"{url}/_mgmt/ping", process, log, 60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_stac_api(port: int | None = None) -> Iterator[LocalStacApi]:
    """Start PostgreSQL, migrate pgstac into it, start stac-fastapi-pgstac on 127.0.0.1, and
    stop both (and remove the database) on exit."""
    bindir, tools = check_installed()
    folder = Path(tempfile.mkdtemp(prefix="stac-api-"))
    folder.chmod(0o711)  # the database's user (postgres, when we are root) reaches its folder
    postgres = Postgres(bindir, folder / "pg")
    try:
        postgres.init()
        postgres.start()
        migrate = subprocess.run(
            [str(tools / "bin" / "pypgstac"), "migrate", "--dsn", postgres.dsn],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise LocalStacApiUnavailable(f"pypgstac migrate failed: {migrate.stderr[-3000:]}")
        with serving(postgres, tools, port) as url:
            yield LocalStacApi(url=url, postgres=postgres, tools=tools)
    finally:
        with contextlib.suppress(LocalStacApiUnavailable, subprocess.TimeoutExpired):
            postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def add_stac_api_parser(subparsers: Any) -> None:
    """Add `stac-api` to the CLI's subcommands."""
    command = subparsers.add_parser(
        "stac-api",
        help="start a local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac) to publish into",
        description="Start PostgreSQL with PostGIS in a temporary folder, migrate pgstac into "
        "it and serve stac-fastapi-pgstac with the Transactions extension on 127.0.0.1, until "
        "Ctrl-C; everything is removed when it stops. Needs `./dev setup-stac-api` and "
        "Debian's postgresql-15-postgis-3.",
    )
    command.add_argument("--port", type=int, default=8082, help="the API's port (0: any free)")


def stac_api_command(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit code."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with running_stac_api(port=args.port or None) as api:
            print(
                f"STAC API (stac-fastapi-pgstac, transactions on) at {api.url}\n"
                f"  PostgreSQL on 127.0.0.1:{api.postgres.port} (data in {api.postgres.folder})\n"
                f"publish into it:  python -m devhost run SOURCE --dataset ID --stac-api "
                f"{api.url}\n"
                f"search it:        {api.url}/search?collections=ID\n"
                "Ctrl-C stops it and removes the database.",
                flush=True,
            )
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    except LocalStacApiUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped.", flush=True)
    return 0
