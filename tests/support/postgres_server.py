"""A throwaway PostgreSQL server started from the machine's own binaries, for tests and benches.

PostgreSQL refuses to run as root, and CI runs as root, so the server then runs as the
`postgres` system user that Debian's package creates (`make test` installs the package when it is
missing). The superuser has a password so that tests see real password-bearing URLs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
PASSWORD = "s3cret-pw-for-tests"
INSTALL_HINT = "install PostgreSQL (Debian: `apt-get install postgresql`), or run `make test`"


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl, newest PostgreSQL first."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for folder in candidates + [str(Path(p).parent) for p in _on_path("initdb")]:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")


def _version_key(folder: str) -> int:
    try:
        return int(Path(folder).parent.name)
    except ValueError:
        return 0


def _on_path(name: str) -> list[str]:
    found = shutil.which(name)
    return [os.path.realpath(found)] if found else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    datadir: Path
    bindir: Path
    options: str  # the server settings given to pg_ctl -o
    log: Path

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@{self.host}:{self.port}/{database}"

    def crash_and_restart(self) -> None:
        """Stop without a shutdown checkpoint, as a power cut would, then start again:
        the server recovers from its WAL, keeping exactly what was flushed."""
        pg_ctl = str(self.bindir / "pg_ctl")
        stop = [pg_ctl, "stop", "-D", str(self.datadir), "-m", "immediate"]
        subprocess.run(_as_server_user(stop), check=True, capture_output=True)
        start = [pg_ctl, "start", "-w", "-t", "60", "-D", str(self.datadir), "-l", str(self.log)]
        subprocess.run(
            _as_server_user([*start, "-o", self.options]), check=True, capture_output=True
        )


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            f"running as root, PostgreSQL needs an unprivileged `postgres` user; {INSTALL_HINT}"
        ) from None
    return ["runuser", "-u", "postgres", "--", *command]


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a server on a free loopback port; stop it and delete its files afterwards.

    `durable=False` turns fsync off, which is right for tests and wrong for benchmarks.
    """
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="stagecraft-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its data folder
    datadir, sockets = root / "data", root / "sockets"
    for folder in (datadir, sockets):
        folder.mkdir()
        _give_to_server_user(folder)
    password_file = root / "password"
    password_file.write_text(PASSWORD)
    os.chmod(password_file, 0o644)
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
                f"--pwfile={password_file}",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
        cwd=root,
    )
    port = free_port()
    settings = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={sockets}",
        "-c",
        "max_connections=200",
    ]
    if not durable:
        settings += [
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
    log = root / "server.log"
    log.touch()
    _give_to_server_user(log)
    server = PostgresServer("127.0.0.1", port, datadir, bindir, " ".join(settings), log)
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(datadir),
                "-l",
                str(log),
                "-o",
                server.options,
            ]
        ),
        check=True,
        capture_output=True,
        cwd=root,
    )
    try:
        yield server
    finally:
        subprocess.run(
            _as_server_user(
                [str(bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", "immediate"]
            ),
            check=False,
            capture_output=True,
            cwd=root,
        )
        time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)
