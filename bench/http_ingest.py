"""HTTP ingest (``POST /v1/events`` of a running ``cxl serve``) against ``cxl publish`` of the
same events to the same broker, in one run.

    python -m bench.http_ingest [--events 50000] [--clients 4]

The server runs as users run it (its own process, ingest and projector working behind the API,
the default two ingest workers), against a broker started here; a bounded local load of ``clients`` threads,
each with one keep-alive connection, posts batches of 1 and of 100 events. Events/s and
requests/s are counted from the first request to the last acknowledgement (every event
confirmed by the broker), latency per request. The baseline is the ``cxl publish`` command on the
same events (a JSON-lines file), its start-up — measured by publishing one event — taken off.
Target (issue 9): batch-100 HTTP ingest ≥ 0.5 × ``cxl publish``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

from bench.figures import Figure, Target, rate
from bench.ingest import generate
from consumers.broker import EmbeddedBroker

HTTP_TARGETS = (Target(">=", 0.5, on="ratio"),)
SOURCE = "bench-http"


def _events(n: int) -> list[bytes]:
    """The benchmark history, every event from one publishing service (one write key)."""
    values = []
    for value in generate(n):
        event = orjson.loads(value)
        event["source"] = SOURCE
        values.append(orjson.dumps(event))
    return values


def _env(home: Path, bootstrap: str, topic: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXL_")}
    env.update(
        CXL_HOME=str(home),
        CXL_KEK_FILE=str(home.parent / "kek"),
        CXL_KAFKA_BOOTSTRAP=bootstrap,
        CXL_EVENTS_TOPIC=topic,
        CXL_LEDGER_TOPIC=topic + ".ledger",
        CXL_DLQ_TOPIC=topic + ".dlq",
        CXL_CHECKPOINTS_TOPIC=topic + ".checkpoints",
    )
    return env


def _cxl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cxl.cli", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"cxl {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _start_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cxl.cli", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"serving on (http://\S+)", line)
        if match:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, match.group(1)
    raise SystemExit("cxl serve did not start")


def _post_all(url: str, key: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    """Post every body (split among ``clients`` threads); wall seconds and per-request latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def worker(share: list[bytes]) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        mine = []
        # Without TCP_NODELAY the client's body waits for the server's delayed ACK of the
        # headers (~40 ms a request): that would measure Nagle's algorithm, not the server.
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        with httpx.Client(base_url=url, headers=headers, timeout=60, transport=transport) as client:
            for body in share:
                started = time.perf_counter()
                answer = client.post("/v1/events", content=body)
                mine.append(time.perf_counter() - started)
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(bodies[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    return seconds, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(events: int, clients: int = 4) -> list[Figure]:
    print(f"HTTP ingest: {events:,} events, {clients} client threads")
    values = _events(events)
    single = values[: max(events // 25, 200)]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="cxl-bench-http-") as tmp:
        root = Path(tmp)
        with EmbeddedBroker(log_dir=root) as broker:
            publish_env = _env(root / "publish-home", broker.bootstrap, "bench.publish")
            history = root / "events.jsonl"
            history.write_bytes(b"\n".join(values) + b"\n")
            one = root / "one.jsonl"
            one.write_bytes(values[0] + b"\n")
            _cxl(["publish", str(one)], publish_env)  # topics created; warm
            started = time.perf_counter()
            _cxl(["publish", str(one)], publish_env)
            startup = time.perf_counter() - started
            started = time.perf_counter()
            _cxl(["publish", str(history)], publish_env)
            whole = time.perf_counter() - started
            publish = rate(
                "cxl publish (raw; start-up taken off)",
                len(values),
                whole - startup,
                note=f"whole command {whole:.2f} s, start-up {startup:.2f} s",
            )
            figures.append(publish)

            env = _env(root / "home", broker.bootstrap, "bench.http")
            (root / "home").mkdir()
            key = _cxl(["keys", "add", "--source", SOURCE], env).stdout.split()[-1]
            process, url = _start_server(env)
            try:
                for size, batch in ((1, single), (100, values)):
                    bodies = [
                        b"[" + b",".join(batch[i : i + size]) + b"]"
                        for i in range(0, len(batch), size)
                    ]
                    seconds, latencies = _post_all(url, key, bodies, clients)
                    p50 = statistics.median(latencies) * 1000
                    p99 = _percentile(latencies, 0.99) * 1000
                    figure = rate(
                        f"HTTP ingest, batches of {size}",
                        len(batch),
                        seconds,
                        baseline=publish if size == 100 else None,
                        targets=HTTP_TARGETS if size == 100 else (),
                        note=f"{len(bodies) / seconds:,.0f} requests/s, "
                        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {clients} clients",
                    )
                    print(f"    {figure.note}")
                    figure.details.update(
                        requests_per_s=len(bodies) / seconds, p50_ms=p50, p99_ms=p99
                    )
                    figures.append(figure)
                    figures.append(
                        Figure(f"HTTP ingest, batches of {size}: p99 latency", "ms", p99)
                    )
            finally:
                process.terminate()
                process.wait(60)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_ingest", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    run(args.events, args.clients)


if __name__ == "__main__":
    main()
