"""Projection benchmark: catch-up vs raw notification-log read, full replay, and gap latency at 10M.

    python -m bench.projections [--events 1000000] [--promises 10000000]

Targets (issue 3): catch-up / raw read ≥ 0.4 over ≥ 1M sealed events; report the full replay time of
1M events; ``cxl gap --by made_by,due_month`` median ≤ 300 ms on 10M promises.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.figures import Figure, Target
from cxl.synthetic import HistoryGenerator
from ledger.contract import parse_event
from ledger.store import SEALED_TOPIC, LedgerStore
from projections.follower import catch_up
from projections.live import replay
from projections.schema import connect
from projections.trust_gap import trust_gap


def seal_history(store: LedgerStore, n: int) -> int:
    sealed = 0
    seed = 1
    while sealed < n:
        events = HistoryGenerator(
            customers=min(20_000, max(200, (n - sealed) // 16)), seed=seed
        ).events()
        seed += 1
        for i in range(0, len(events), 5000):
            report = store.seal(
                [parse_event(orjson.dumps(e), "bench") for e in events[i : i + 5000]]
            )
            sealed += report.sealed
        # Each generator run reuses customer ids; new seeds make new event ids, so nothing is a duplicate.
        print(f"    sealed {sealed:,}", end="\r", flush=True)
    print()
    return sealed


def raw_read(store: LedgerStore) -> tuple[int, float]:
    recorder = store.recorder  # the recorder itself: what any follower must at least pay
    started = time.perf_counter()
    count, start = 0, 1
    while True:
        page = recorder.select_notifications(start, 5000, topics=(SEALED_TOPIC,))
        if not page:
            break
        count += len(page)
        start = page[-1].id + 1
    return count, time.perf_counter() - started


def gap_latency(path: Path, promises: int, runs: int = 7) -> list[float]:
    con = connect(path)
    con.execute(f"""
        INSERT INTO promises
        SELECT 'cust-' || (i % 500000) AS customer_id, 'p' || i AS promise_id,
               TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_seconds((i * 7919) % 31536000) AS made_at,
               ['billing','logistics','support','sales','partner:acme'][1 + i % 5] AS made_by,
               ['email','phone','chat','store','web','app'][1 + i % 6] AS channel,
               ['delivery','refund','callback','fix','price'][1 + i % 5] AS kind,
               1.0 + (i % 3) AS weight,
               made_at + to_days(1 + i % 30) AS due_at, due_at AS due_in_force,
               date_trunc('month', due_at)::DATE AS due_month, 0 AS renegotiations,
               CASE WHEN i % 11 = 0 THEN due_at + to_hours(5) END AS broken_at,
               CASE WHEN i % 11 = 0 THEN 0 ELSE 1 END AS keeps,
               CASE WHEN i % 11 = 0 THEN 0 WHEN i % 4 = 0 THEN 0 ELSE 1 END AS kept_on_time_fraction,
               CASE WHEN i % 11 <> 0 AND i % 4 = 0 THEN 1 ELSE 0 END AS kept_late_fraction,
               NULL AS first_kept_at, NULL AS last_kept_at,
               CASE WHEN i % 13 = 0 THEN NULL ELSE due_at END AS settled_at,
               NULL AS on_behalf_of
        FROM range({promises}) t(i)
    """)
    con.execute("CHECKPOINT")
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = trust_gap(con, as_of, ["made_by", "due_month"])
        timings.append(time.perf_counter() - started)
    assert rows
    con.close()
    return timings


def run(events: int = 1_000_000, promises: int = 10_000_000) -> list[Figure]:
    """Run the projection benchmark; print and return its figures."""
    print(f"cx-ledger projection benchmark · {events:,} sealed events · {promises:,} promises")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with LedgerStore(str(root / "ledger.sqlite")) as store:
            started = time.perf_counter()
            sealed = seal_history(store, events)
            print(f"  setup: sealed {sealed:,} events in {time.perf_counter() - started:.1f} s")

            count, seconds = raw_read(store)
            raw = Figure("raw notification-log read", "events/s", count / seconds)
            print(
                f"  raw notification-log read     {count:>10,} in {seconds:6.2f} s = {raw.value:>9,.0f} events/s"
            )

            con = connect(root / "live.duckdb")
            started = time.perf_counter()
            applied = catch_up(con, store)
            seconds = time.perf_counter() - started
            con.close()
            catch = Figure(
                f"projection catch-up over {applied:,} sealed events",
                "events/s",
                applied / seconds,
                baseline=raw,
                targets=(Target(">=", 0.4, on="ratio"),),
            )
            print(
                f"  projection catch-up (from 0)  {applied:>10,} in {seconds:6.2f} s = {catch.value:>9,.0f} events/s"
            )

            started = time.perf_counter()
            replayed = replay(store, datetime(2100, 1, 1, tzinfo=UTC), root / "replay.duckdb")
            replay_s = time.perf_counter() - started
            full_replay = Figure(
                f"full replay of {replayed:,} events to a new file",
                "s",
                replay_s,
                note="reported, no target",
            )
            print(f"  full replay to a new file     {replayed:>10,} in {replay_s:6.2f} s")

        timings = gap_latency(root / "gap.duckdb", promises)
        median_ms = statistics.median(timings) * 1000
        gap = Figure(
            f"gap --by made_by,due_month on {promises:,} promises (median)",
            "ms",
            median_ms,
            targets=(Target("<=", 300),),
            note="runs: " + ", ".join(f"{t * 1000:.0f}" for t in timings) + " ms",
        )
        print(
            f"  gap --by made_by,due_month on {promises:,} promises: median {median_ms:.0f} ms "
            f"(runs: {', '.join(f'{t * 1000:.0f}' for t in timings)} ms)"
        )
    ratio = catch.ratio or 0.0
    print()
    print(
        f"  catch-up / raw read   {ratio:6.2f}   target ≥ 0.40    {'met' if catch.met else 'MISSED'}"
    )
    print(f"  replay of {replayed:,}   {replay_s:6.1f} s  (reported, no target)")
    print(
        f"  gap median            {median_ms:6.0f} ms target ≤ 300  {'met' if gap.met else 'MISSED'}"
    )
    return [raw, catch, full_replay, gap]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--promises", type=int, default=10_000_000)
    args = parser.parse_args()
    run(args.events, args.promises)


if __name__ == "__main__":
    main()
