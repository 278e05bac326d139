"""Local stand-ins for Azure services, started by the tests themselves.

`cosmos()` starts `@vercel/cosmosdb-server` (HTTPS, self-signed certificate) and
`azurite()` starts Azurite's blob service, each once per test process on a free port,
from `node_modules` (`make test` runs `npm ci` first). Each returns the settings that
point the app at it (`env`), for in-process adapters and for a host subprocess alike.
`stop_all()` stops whatever was started; the contract and e2e conftests call it at the
end of the session. A missing `node_modules` skips the caller; a server that is there but
does not come up within `STARTUP_SECONDS` fails it, with the server's output.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
STARTUP_SECONDS = 30.0
STOP_GRACE_SECONDS = 2.0

# The emulators' published development credentials (not secrets).
COSMOS_EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Terminate; kill after a short grace (Azurite waits for idle keep-alive
        connections to close, and a test server's data is thrown away anyway)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


_started: dict[str, Emulator] = {}
_lock = threading.Lock()
_work_dir = Path(tempfile.mkdtemp(prefix="emulators-"))


def _launch(name: str, command: list[str], port: int, needs: Path) -> Emulator:
    if not needs.exists():
        pytest.skip(f"{needs} is missing: run `npm ci` (make test does)")
    log_path = _work_dir / f"{name}-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    emulator = Emulator(name, port, process, log_path)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{emulator.logs()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return emulator
        except OSError:
            time.sleep(0.1)
    emulator.stop()
    raise TimeoutError(f"{name} did not listen within {STARTUP_SECONDS}s:\n{emulator.logs()}")


def cosmos() -> Emulator:
    """The Cosmos DB-compatible server of this test process (started on first call)."""
    with _lock:
        if "cosmos" not in _started:
            port = free_port()
            # The package's API rather than its CLI: the CLI closes every connection after
            # one response, and a new TLS connection per request costs tens of ms here.
            script = (
                "require('@vercel/cosmosdb-server')"
                f".createHttpsServer({{keepAlive: true}}).listen({port}, '127.0.0.1')"
            )
            emulator = _launch(
                "cosmosdb-server",
                ["node", "-e", script],
                port,
                NODE_MODULES / "@vercel/cosmosdb-server",
            )
            emulator.env = {
                "STORE": "cosmos",
                "COSMOS_ENDPOINT": f"https://127.0.0.1:{port}",
                "COSMOS_KEY": COSMOS_EMULATOR_KEY,
                "COSMOS_VERIFY_TLS": "false",
                "COSMOS_DATABASE": f"test-{uuid.uuid4().hex[:8]}",
            }
            _started["cosmos"] = emulator
        return _started["cosmos"]


def azurite() -> Emulator:
    """Azurite's blob service for this test process (started on first call)."""
    with _lock:
        if "azurite" not in _started:
            port = free_port()
            location = _work_dir / f"azurite-{port}"
            location.mkdir()
            emulator = _launch(
                "azurite-blob",
                [
                    str(NODE_MODULES / ".bin" / "azurite-blob"),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(port),
                    "--location",
                    str(location),
                    "--silent",
                    "--skipApiVersionCheck",
                    "--loose",
                ],
                port,
                NODE_MODULES / ".bin" / "azurite-blob",
            )
            emulator.env = {
                "BLOBS": "azure",
                "BLOB_CONNECTION_STRING": (
                    "DefaultEndpointsProtocol=http;"
                    f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                    f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
                ),
            }
            _started["azurite"] = emulator
        return _started["azurite"]


def stop_all() -> None:
    with _lock:
        started = list(_started.values())
        _started.clear()
    for emulator in started:
        emulator.stop()


atexit.register(stop_all)
