"""A real ``cxl serve`` in a child process, and an HTTP client for it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integration.conftest import run_cxl


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    write_key: str
    read_key: str
    log: list[str] = field(default_factory=list)

    def client(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def reads(self) -> httpx.Client:
        return self.client(self.read_key)

    def writes(self) -> httpx.Client:
        return self.client(self.write_key)

    def wait_sealed(self, event_ids: list[str], timeout_s: float = 60.0) -> None:
        """Until every event is in the ledger (its proof exists)."""
        deadline = time.monotonic() + timeout_s
        with self.reads() as client:
            for event_id in event_ids:
                while client.get(f"/v1/proof/{event_id}").status_code != 200:
                    assert time.monotonic() < deadline, f"{event_id} not sealed in {timeout_s} s"
                    time.sleep(0.1)

    def wait_projected(self, timeout_s: float = 30.0) -> None:
        """Until the projections have applied everything sealed."""
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while True:
                checks = client.get("/readyz").json()
                if checks["projections"]["lag"] == 0 and checks["projections"]["ok"]:
                    return
                assert time.monotonic() < deadline, checks
                time.sleep(0.1)


def add_key(env: dict[str, str], *args: str) -> str:
    done = run_cxl(["keys", "add", *args], env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


@contextmanager
def serving(env: dict[str, str], source: str = "test-suite") -> Iterator[Served]:
    """Keys for ``source`` and a reader, then ``cxl serve --port 0`` until the block ends (SIGTERM;
    the exit status is checked by whoever stops it first)."""
    write_key = add_key(env, "--source", source)
    read_key = add_key(env, "--read")
    process = subprocess.Popen(
        [sys.executable, "-m", "cxl.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served("", process, env, write_key, read_key)
    found = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            served.log.append(line)
            match = re.search(r"serving on (http://\S+)", line)
            if match and not found.is_set():
                served.url = match.group(1)
                found.set()

    threading.Thread(target=read_output, daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not found.wait(0.2):
            assert process.poll() is None and time.monotonic() < deadline, (
                "cxl serve did not start:\n" + "".join(served.log)
            )
        served.wait_projected(60)
        yield served
    finally:
        stop(served)


def stop(served: Served, timeout_s: float = 60.0) -> int:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        served.process.kill()
        raise


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/v1/events", json=body)
