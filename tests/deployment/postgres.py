"""A throwaway PostgreSQL cluster for the deployment tier's PostgreSQL leg.

The machine's own PostgreSQL server binaries (``initdb``, ``pg_ctl``; Debian keeps them in
``/usr/lib/postgresql/<version>/bin``, off ``PATH``) make a cluster in a fresh temporary directory,
listening on a free port on 127.0.0.1 only, fsync off. ``initdb`` refuses to run as root, so as
root the cluster belongs to the ``postgres`` system user. Missing binaries are an error that says
what to install (``scripts/test.sh`` installs them), never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port

SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
INSTALL_HINT = (
    "the deployment tier's PostgreSQL leg needs the PostgreSQL server binaries (initdb, pg_ctl): "
    "install them with `apt-get install postgresql-15` (or `postgresql`), or put their folder in "
    "PG_BINDIR"
)
USER = "airflow"


class PostgresUnavailableError(RuntimeError):
    """The PostgreSQL server binaries are missing, or the cluster did not start."""


@dataclass(frozen=True)
class PostgresCluster:
    url: str
    data_dir: Path


def server_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (``PG_BINDIR``, else the newest Debian one)."""
    candidates = [os.environ["PG_BINDIR"]] if os.environ.get("PG_BINDIR") else []
    for pattern in SEARCH:
        candidates += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    for candidate in candidates:
        if all((Path(candidate) / tool).is_file() for tool in ("initdb", "pg_ctl", "createdb")):
            return Path(candidate)
    raise PostgresUnavailableError(f"{INSTALL_HINT}; looked in {candidates or list(SEARCH)}")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in Path(path).parent.name.split(".") if part.isdigit())


def _run(argv: list[str], user: str | None, log: Path) -> None:
    with log.open("ab") as output:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if result.returncode != 0:
        raise PostgresUnavailableError(
            f"{' '.join(argv)} exited {result.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
        )


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster with database ``airflow``; stop it and delete its directory afterwards."""
    bindir = server_bindir()
    user = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="airflow-tier-postgres-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    data, log = directory / "data", directory / "server.log"
    port = free_port()
    started = False
    try:
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
            user,
            directory / "initdb.log",
        )
        options = (
            f"-p {port} -k {directory} -c listen_addresses={LOOPBACK} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        # The server writes its own log as the cluster's user; pg_ctl's output goes elsewhere.
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
        _run(pg_ctl, user, directory / "pg_ctl.out")
        started = True
        _run(
            [str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", USER, "airflow"],
            user,
            directory / "createdb.log",
        )
        yield PostgresCluster(f"postgresql+psycopg2://{USER}@{LOOPBACK}:{port}/airflow", data)
    finally:
        if started:
            _run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                user,
                directory / "pg_ctl.out",
            )
        shutil.rmtree(directory, ignore_errors=True)
