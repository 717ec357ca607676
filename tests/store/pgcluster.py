"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's real server, in a temp folder, on 127.0.0.1.

`find_pg_bin()` looks for `initdb`/`pg_ctl` in `/usr/lib/postgresql/*/bin` (newest first) then PATH.
`PostgresCluster.start()` runs `initdb` (trust auth, superuser `klink`), starts the server on a
free loopback port with its unix socket in the temp folder and `fsync=off` (speed; the data is
thrown away), and `stop()` stops it and removes the folder. PostgreSQL refuses to run as root: when
uid is 0 the commands run as the `postgres` user (created by the Debian package) through
`runuser`, with the folder chown'd to it.

Importable by any test suite (`from tests.store.pgcluster import PostgresCluster`) without importing
another suite's conftest. Fixtures that use it skip loudly when the binaries are missing, unless
`KLINK_REQUIRE_REAL_SERVICES=1` (then they fail).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "klink"


def real_services_required() -> bool:
    return os.environ.get("KLINK_REQUIRE_REAL_SERVICES", "").strip().lower() in ("1", "true", "yes")


def find_pg_bin() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`, or None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    return None


def skip_or_fail(reason: str) -> None:
    """Skip loudly, or fail when real services are required (CI)."""
    if real_services_required():
        pytest.fail(f"KLINK_REQUIRE_REAL_SERVICES=1 but {reason}")
    pytest.skip(f"SKIPPED (real PostgreSQL): {reason}; run .ci/install-postgresql.sh")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """One running cluster. `url(dbname)` gives a libpq URL; `create_database(name)` makes one."""

    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="klink-pg-")))
    port: int = 0
    durable: bool = False  # fsync on (benchmarks that want real commit costs); off for tests
    _as_user: list[str] = field(default_factory=list)
    _running: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False, cwd=self.root
        )

    def start(self) -> None:
        """Raises: RuntimeError with the server's own words when initdb or start fails."""
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root and there is no 'postgres' user to run PostgreSQL"
                ) from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser") or shutil.which("setpriv")
            if runuser is None:
                raise RuntimeError("running as root and neither runuser nor setpriv is available")
            if runuser.endswith("runuser"):
                self._as_user = [runuser, "-u", "postgres", "--"]
            else:
                self._as_user = [runuser, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"]
        done = self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--locale=C",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-2000:]}")
        for _attempt in range(3):  # the free port can be taken between choosing and binding it
            self.port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            done = self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
            if done.returncode == 0:
                self._running = True
                return
        log = (
            (self.root / "server.log").read_text(errors="replace")[-2000:]
            if (self.root / "server.log").exists()
            else ""
        )
        raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()[-1000:]} {log}")

    def create_database(self, name: str) -> str:
        """Create database `name`; returns its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def stop(self) -> None:
        try:
            if self._running:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"
                )
                self._running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(*, durable: bool = False) -> PostgresCluster:
    """Start a cluster, or skip/fail the calling test as `skip_or_fail` says."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        raise AssertionError("unreachable")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed (pip install -e '.[dev]')")
    cluster = PostgresCluster(bin_dir, durable=durable)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
