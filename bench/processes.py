"""Benchmark processes: our own interpreter running one of our modules on a loopback port,
with only the environment it is given, its output in a log file, stopped with SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from testing.app_server import PROJECT_ROOT, child_environment, stop


@dataclass
class Server:
    """A process listening on a loopback port, its output in a log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def started(
    name: str,
    argv: Sequence[str],
    port: int,
    env: Mapping[str, str],
    launcher: Sequence[str] = (),
) -> Iterator[Server]:
    """Start ``argv`` (not waiting for it to listen); SIGTERM, then SIGKILL, at the end.

    ``launcher`` goes before the interpreter (``valgrind --tool=callgrind ...``)."""
    with tempfile.NamedTemporaryFile("wb", prefix=f"bench-{name}-", suffix=".log") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [*launcher, sys.executable, *argv],
            cwd=PROJECT_ROOT,
            env=child_environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(name, port, process, Path(log.name))
        try:
            yield server
        finally:
            stop(process, timeout=15)


def wait_until_listening(server: Server, ready_path: str, timeout: float = 120.0) -> None:
    """Until ``GET ready_path`` answers (with 200 when the path is the app's ``/ready``)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            status = httpx2.get(server.origin + ready_path, timeout=2).status_code
            if ready_path != "/ready" or status == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{server.name} did not start in {timeout:g} s:\n{server.log_tail()}"
            )
        time.sleep(0.1)
