"""Cost of crypto-shredding: ingest with personal fields encrypted against the same ingest in
plaintext, and the cost of ``cxl forget`` for a customer with a long history, in one run.

    python -m bench.erasure [--events 100000] [--history 10000]

Targets (issue 7): ingest with encryption ≥ 0.85 of the same ingest without it (here the file
path, contract and sealing only: the dearest case; ``bench.ingest`` measures the Kafka path).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.figures import Figure, rate
from bench.ingest import ENCRYPTION_TARGETS, generate
from consumers.files import ingest_records
from consumers.records import InboundRecord
from ledger.contract import PERSONAL_FIELDS
from ledger.keys import KeyStore
from ledger.personal import PersonalCipher
from ledger.store import LedgerStore


def _ingest(values: list[bytes], store: LedgerStore) -> float:
    records = [InboundRecord(v, f"bench:{n}") for n, v in enumerate(values, 1)]
    started = time.perf_counter()
    report = ingest_records(records, store, batch_size=5000)
    elapsed = time.perf_counter() - started
    assert report.seal.sealed + report.seal.duplicates == len(values), report
    return elapsed


def encryption(values: list[bytes], root: Path) -> list[Figure]:
    """File ingest (contract + seal) of the same events into fresh SQLite stores, best of two."""
    decoded = [orjson.loads(v) for v in values]
    personal = sum(
        1 for e in decoded for name in PERSONAL_FIELDS[e["type"]] if e["data"].get(name) is not None
    )
    print(f"  {len(values):,} events carrying {personal:,} personal fields")
    plain_s, sealed_s = [], []
    for attempt in range(2):
        with LedgerStore(str(root / f"plain{attempt}.sqlite")) as plain:
            plain_s.append(_ingest(values, plain))
        keys = KeyStore(root / f"keys{attempt}.sqlite", root / "kek")
        with LedgerStore(str(root / f"sealed{attempt}.sqlite"), personal=PersonalCipher(keys)) as s:
            sealed_s.append(_ingest(values, s))
    off = rate("ingest, personal fields in plaintext (raw)", len(values), min(plain_s))
    on = rate(
        "ingest, personal fields encrypted",
        len(values),
        min(sealed_s),
        baseline=off,
        targets=ENCRYPTION_TARGETS,
    )
    return [off, on]


def forget_cost(history: int, root: Path) -> list[Figure]:
    """``cxl forget`` (a child process, as a user runs it) for a customer with ``history`` events,
    in a ledger that also holds 1,000 other customers."""
    home = root / "forget"
    events = [
        {
            "event_id": f"00000000-0000-4000-8000-{n:012d}",
            "customer_id": "cust-long" if n < history else f"cust-{n % 1000}",
            "occurred_at": "2026-01-02T09:00:00Z",
            "source": "bench",
            "type": "complaint.filed",
            "data": {
                "complaint_id": f"k{n}",
                "channel": "phone",
                "category": "delay",
                "severity": 3,
                "text": f"complaint number {n}: the parcel never came",
            },
        }
        for n in range(history + 1000)
    ]
    keys = KeyStore(home / "keys.sqlite", root / "kek")
    with LedgerStore(str(home / "ledger.sqlite"), personal=PersonalCipher(keys)) as store:
        _ingest([orjson.dumps(e) for e in events], store)
    command = [
        sys.executable,
        "-m",
        "cxl.cli",
        "--home",
        str(home),
        "--kek-file",
        str(root / "kek"),
        "forget",
        "cust-long",
        "--reason",
        "benchmark",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cxl forget failed: {done.stderr.strip()}")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cxl.cli", "--help"], capture_output=True, check=True)
    start_up = time.perf_counter() - started
    print(
        f"  cxl forget, customer with {history:,} events: {seconds:.2f} s "
        f"(of which {start_up:.2f} s is starting cxl)"
    )
    return [
        Figure(
            f"cxl forget, customer with {history:,} events (whole command)",
            "s",
            seconds,
            baseline=Figure("cxl --help (start-up)", "s", start_up),
            note="reported, no target",
        )
    ]


def run(events: int = 100_000, history: int = 10_000) -> list[Figure]:
    print(f"cx-ledger erasure benchmark · {events:,} events · forget after {history:,}")
    values = generate(events)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        return encryption(values, root) + forget_cost(history, root)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.erasure")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=10_000)
    args = parser.parse_args()
    run(args.events, args.history)


if __name__ == "__main__":
    main()
