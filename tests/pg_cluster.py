"""A throwaway PostgreSQL cluster from Debian's binaries, for the tests that run on PostgreSQL.

`initdb` refuses to run as root: as root, the cluster belongs to the `postgres` user, in a
temporary folder that user owns. It listens on a free loopback port and on a socket in that
folder, with durability off (a test database is thrown away), and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg

from bridge.store.pg_connection import PgConnection
from bridge.store.pg_migrations import upgrade
from tests.e2e.alertmanager_process import free_port

TEMPLATE = "smsbridge_template"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


def unavailable() -> str:
    """Why no cluster can be started here ('' when one can)."""
    if binaries() is None:
        return (
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb: Debian's postgresql)"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses root"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
    return ""


@dataclass
class Cluster:
    """A running cluster: its socket folder and port, and a fresh database per `database()`."""

    folder: Path
    port: int

    def __post_init__(self) -> None:
        self._numbers = count(1)

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def make_template(self) -> None:
        """The template database, with the schema of every migration applied."""
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
            upgrade(PgConnection(conn))  # type: ignore[arg-type]

    @contextmanager
    def database(self, *, template: str = TEMPLATE) -> Iterator[str]:
        """A new database copied from the template (or empty: `template="template0"`)."""
        name = f"test_{os.getpid()}_{next(self._numbers)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        try:
            yield self.url(name)
        finally:
            with self.admin() as conn:
                conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _run_as_owner(argv: list[str]) -> None:
    """Run a PostgreSQL program (as `postgres` when we are root); its stderr on failure."""
    command = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.decode(errors='replace')}")


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """initdb + pg_ctl into a temporary folder; stopped and removed at the end."""
    bin_dir = binaries()
    assert bin_dir is not None
    if os.geteuid() == 0:
        # /tmp, whatever TMPDIR says: the postgres user must be able to reach the folder.
        folder = Path(tempfile.mkdtemp(prefix="smsbridge-pg-", dir="/tmp"))
        shutil.chown(folder, "postgres", "postgres")
    else:
        folder = Path(tempfile.mkdtemp(prefix="smsbridge-pg-"))
    data = folder / "data"
    port = free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        _run_as_owner([*initdb, "--encoding=UTF8", "--locale=C", "--no-sync"])
        _run_as_owner([*pg_ctl, "-o", options, "-l", str(folder / "log"), "-w", "start"])
        cluster = Cluster(folder, port)
        cluster.make_template()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            _run_as_owner([*pg_ctl, "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)
