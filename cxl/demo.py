"""``cxl demo``: the whole pipeline on the embedded default, from nothing to a sealed, verified ledger.

Generate a synthetic history (optionally saved, with ``--save-history``) → publish it to Kafka → consume, validate and seal it → relay it →
verify every chain → project it into DuckDB → print the trust gap → write the HTML report. Re-running it is harmless: the same seed yields the same events, which the
ledger recognises as duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from consumers.ingest import IngestStats
from consumers.kafka_access import kafka_access
from consumers.kafka_clients import make_producer
from consumers.publisher import publish_records
from consumers.records import InboundRecord
from consumers.topics import ensure_topics
from cxl.synthetic import HistoryGenerator, write_jsonl
from ledger.audit import VerifyReport, verify_chains
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.keeper_report import Thresholds, keeper_lines
from projections.live import open_caught_up
from projections.report import provenance, write_report
from projections.targets import protected_files
from projections.trust_gap import trust_gap


@dataclass
class DemoResult:
    history_path: Path | None
    generated: int
    published: int
    ingest: IngestStats
    verify: VerifyReport
    gap_rows: list[dict[str, Any]]
    keepers: list[str]
    as_of: datetime
    report_path: Path
    seconds: float


def run_demo(
    settings: Settings,
    *,
    customers: int,
    seed: int,
    run_ingest: Callable[..., IngestStats],
    say: Callable[[str], None],
    history: Path | None = None,
) -> DemoResult:
    """Run the pipeline; the generated history (the publishers' side, in plaintext) is written
    only to ``history`` when one is given, never under ``CXL_HOME``."""
    started = time.monotonic()
    generator = HistoryGenerator(customers=customers, seed=seed)
    events = generator.events()
    if history is not None:
        write_jsonl(events, str(history))
    say(
        f"generated {len(events):,} events for {customers:,} customers"
        + (f" → {history}" if history is not None else "")
    )
    with kafka_access(settings, may_embed=True) as kafka:
        say(f"Kafka at {kafka.bootstrap}{' (embedded, memory only)' if kafka.owns_broker else ''}")
        producer = make_producer(kafka.bootstrap, settings.kafka_timeout_s)
        try:
            ensure_topics(kafka.bootstrap, settings.topics, settings.kafka_timeout_s)
            published = publish_records(
                (
                    InboundRecord(orjson.dumps(event), f"demo event {n}")
                    for n, event in enumerate(events, 1)
                ),
                producer,
                settings.events_topic,
                timeout_s=settings.kafka_timeout_s,
            )
        finally:
            producer.close(timeout=settings.kafka_timeout_s)
        say(f"published {published.sent:,} to {settings.events_topic}")
        with LedgerStore.for_settings(settings) as store:
            stats = run_ingest(
                settings,
                store,
                kafka.bootstrap,
                owns_broker=kafka.owns_broker,
                accept_reset=False,
                until_idle=True,
                relay=True,
            )
            say(
                f"sealed {stats.sealed:,} (duplicates skipped {stats.duplicates:,}, dead-lettered "
                f"{stats.dead_lettered:,}) into {settings.store_url}; relayed {stats.relayed:,} to "
                f"{settings.ledger_topic}"
            )
            report = verify_chains(store)
            say(f"verified {report.events:,} events in {report.customers:,} hash chains")
            con = open_caught_up(
                settings.projections_path,
                store,
                on_rebuild=lambda why: say(f"rebuilding the projections from the ledger: {why}"),
                within=settings.horizon,
            )
            source = provenance(con, store, report.summary())
    try:
        as_of = generator.end
        rows = trust_gap(con, as_of, ["made_by"])
        keepers = keeper_lines(con, as_of, Thresholds.of(settings))
        report_path = settings.home / "report.html"
        write_report(
            con,
            as_of,
            report_path,
            protected_files(
                settings.store_url,
                settings.projections_path,
                (settings.key_store_path, settings.kek_path),
            ),
            source=source,
            thresholds=Thresholds.of(settings),
        )
    finally:
        con.close()
    say(f"projected into {settings.projections_path}")
    return DemoResult(
        history,
        len(events),
        published.sent,
        stats,
        report,
        rows,
        keepers,
        as_of,
        report_path,
        time.monotonic() - started,
    )
