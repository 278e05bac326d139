"""Starts the local host as a subprocess, the way a user runs it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HostProcess:
    def __init__(
        self, data_dir: Path, app: str = "function_app:app", env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.app = app
        self.env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"host-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> HostProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("RUNTIME", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.local",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--app",
                self.app,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"host exited with {self.process.returncode}:\n{self.logs()[-4000:]}"
                )
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"host not healthy within {timeout}s:\n{self.logs()[-4000:]}")

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator:
    started: list[HostProcess] = []

    def start(
        app: str = "function_app:app",
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> HostProcess:
        host = HostProcess(data_dir or tmp_path / "data", app, env).start()
        started.append(host)
        return host

    yield start
    for host in started:
        host.kill()


def effects(data_dir: Path, kind: str) -> dict[str, str]:
    path = data_dir / "effects.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT key, value FROM effects WHERE kind = ?", (kind,)).fetchall()
        except sqlite3.OperationalError:
            return {}
    return dict(rows)


def attempts(data_dir: Path, kind: str) -> int:
    path = data_dir / "effects.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=30) as conn:
        try:
            return int(
                conn.execute("SELECT COUNT(*) FROM attempts WHERE kind = ?", (kind,)).fetchone()[0]
            )
        except sqlite3.OperationalError:
            return 0


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
