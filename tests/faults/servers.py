"""Throwaway PostgreSQL and Redis servers, each in its own process group on a free port, for
the fault tier to kill, freeze (SIGSTOP) and thaw (SIGCONT) under a running app."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from testing.app_server import free_port

IN_CI = os.environ.get("CI", "").lower() == "true"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``postgres``), if installed."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists() and Path(folder, "postgres").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, its programs run as ``postgres``."""
    return "postgres" if os.geteuid() == 0 else None


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no server on port {port} after {seconds}s")


def _descendants(pid: int) -> list[int]:
    """Every process started by ``pid``, and by those, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it has exited
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found: list[int] = []
    waiting = [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child)
    return found


class ServerProcess:
    """A server in a process group of its own: signals reach every process of it (PostgreSQL's
    backends too), as when a host or container freezes."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def _signal(self, signum: int) -> None:
        """``signum`` to the server and every process it started. PostgreSQL's backends each
        lead a process group of their own, so a signal to the server's group is not enough."""
        assert self.process is not None
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL to every process of the server, as a crash or an OOM kill."""
        if self.process is None or self.process.poll() is not None:
            return
        pids = [self.process.pid, *_descendants(self.process.pid)]
        for pid in pids:
            for signum in (signal.SIGKILL, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        self.process.wait(10)
        # Its other processes are not ours to wait for: wait until none is left holding the
        # port or the shared memory.
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in pids[1:]):
            if time.monotonic() > deadline:
                raise TimeoutError("the server's processes outlived SIGKILL")
            time.sleep(0.05)


class ThrowawayPostgres(ServerProcess):
    """``initdb`` in a temporary folder, then ``postgres`` on a free port, trust auth."""

    def __init__(self, bin_dir: Path) -> None:
        super().__init__()
        self.bin_dir = bin_dir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="ask-faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.user = _server_user()
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        subprocess.run(  # noqa: S603 - PostgreSQL's own program
            [
                *(str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres"),
                *("--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"),
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - PostgreSQL's own program
                [
                    *(str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)),
                    *("-k", str(self.folder), "-c", "listen_addresses=127.0.0.1"),
                    *("-c", "fsync=off", "-c", "full_page_writes=off"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                start_new_session=True,
            )
        _wait_for_port(self.port, self.process, self.log, 30)
        # The port opens before recovery ends; pg_isready says when it accepts connections.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(  # noqa: S603 - PostgreSQL's own program
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not accept connections in 30 s")

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class ThrowawayRedis(ServerProcess):
    """``redis-server`` on a free port, keeping nothing on disk."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="ask-faults-redis-"))
        self.log = self.folder / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - Redis's own program
                [
                    *(self.program, "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.port, self.process, self.log, 10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
