"""``cxl``: command-line entry point. Flags mirror the ``CXL_*`` settings; errors are one line.

Exit codes: 0 ok · 1 error · 2 bad configuration or usage · 3 some input records rejected (the rest
were processed) · 4 a hash chain does not verify · 5 Kafka unreachable · 6 a Kafka log was reset ·
7 the key store or its key-encryption key is missing or wrong.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from eventsourcing.persistence import PersistenceError
from rich.text import Text

from consumers.broker import EmbeddedBroker
from consumers.files import ingest_records
from consumers.ingest import IngestStats
from consumers.kafka_access import kafka_access
from consumers.kafka_clients import make_producer
from consumers.pipeline import IngestPipeline
from consumers.publisher import publish_records
from consumers.records import read_jsonl
from consumers.relay import LedgerRelay
from consumers.topics import ensure_topics
from cxl import analytics, checkpoints, erasure, keepers, serve, store_admin
from cxl.output import Format, Ticker, emit_rows, err, out, report_rejects
from cxl.store_access import check_store_file, ensure_home, open_store
from ledger.audit import verify_chains
from ledger.contract import json_schemas
from ledger.errors import ConfigError, CxlError, RejectedRecordsError, StoreError
from ledger.settings import Settings, load_settings
from ledger.store import LedgerStore

app = typer.Typer(
    name="cxl",
    help="cx-ledger: what was promised to customers versus what was delivered, sealed and replayable.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@dataclass
class Context:
    settings: Settings
    debug: bool


def _ctx(ctx: typer.Context) -> Context:
    obj: Context = ctx.obj
    return obj


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option(help="Ledger home directory [env CXL_HOME, default ./.cxl].")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="SQLite path or postgresql:// URL [env CXL_STORE].")
    ] = None,
    key_store: Annotated[
        Path | None,
        typer.Option(help="SQLite file of the customers' data keys [env CXL_KEY_STORE]."),
    ] = None,
    kek_file: Annotated[
        Path | None,
        typer.Option(
            help="Key-encryption key file [env CXL_KEK_FILE, default ~/.config/cx-ledger/kek]."
        ),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka host:port [env CXL_KAFKA_BOOTSTRAP]; unset = embedded."),
    ] = None,
    events_topic: Annotated[
        str | None, typer.Option(help="Inbound topic [env CXL_EVENTS_TOPIC].")
    ] = None,
    ledger_topic: Annotated[
        str | None, typer.Option(help="Sealed-event topic [env CXL_LEDGER_TOPIC].")
    ] = None,
    dlq_topic: Annotated[
        str | None, typer.Option(help="Dead-letter topic [env CXL_DLQ_TOPIC].")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="Partitions for created topics [env CXL_PARTITIONS].")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Records per sealing transaction [env CXL_BATCH_SIZE].")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Ingest processes, one share of partitions each [env CXL_INGEST_WORKERS]."
        ),
    ] = None,
    stream_cache: Annotated[
        int | None,
        typer.Option(
            help="Customers whose stream heads a sealing process keeps in memory "
            "[env CXL_STREAM_CACHE]."
        ),
    ] = None,
    store_pool_size: Annotated[
        int | None,
        typer.Option(
            help="PostgreSQL connections per process to the store [env CXL_STORE_POOL_SIZE]."
        ),
    ] = None,
    store_statement_timeout: Annotated[
        float | None,
        typer.Option(
            help="Longest a PostgreSQL store statement may run, lock waits included "
            "[env CXL_STORE_STATEMENT_TIMEOUT_S]."
        ),
    ] = None,
    store_connect_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds connecting to a PostgreSQL store may take "
            "[env CXL_STORE_CONNECT_TIMEOUT_S]."
        ),
    ] = None,
    kafka_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds any Kafka call may take [env CXL_KAFKA_TIMEOUT_S]."),
    ] = None,
    checkpoint_key: Annotated[
        Path | None,
        typer.Option(
            help="Ed25519 checkpoint signing key [env CXL_CHECKPOINT_KEY, default "
            "HOME/checkpoint.key]."
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(help="Checkpoint every N sealed events [env CXL_CHECKPOINT_EVERY]."),
    ] = None,
    checkpoint_interval: Annotated[
        float | None,
        typer.Option(help="…or every S seconds [env CXL_CHECKPOINT_INTERVAL_S]."),
    ] = None,
    checkpoints_topic: Annotated[
        str | None, typer.Option(help="Checkpoint topic [env CXL_CHECKPOINTS_TOPIC].")
    ] = None,
    access_keys: Annotated[
        Path | None,
        typer.Option(help="SQLite file of the HTTP API keys [env CXL_ACCESS_KEYS]."),
    ] = None,
    http_max_body_bytes: Annotated[
        int | None,
        typer.Option(help="Largest POST /v1/events body [env CXL_HTTP_MAX_BODY_BYTES]."),
    ] = None,
    http_max_events: Annotated[
        int | None,
        typer.Option(help="Most events per POST /v1/events [env CXL_HTTP_MAX_EVENTS]."),
    ] = None,
    serve_max_lag: Annotated[
        int | None,
        typer.Option(help="/readyz bound on projector lag, events [env CXL_SERVE_MAX_LAG]."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="Server logs: text or json [env CXL_LOG_FORMAT].")
    ] = None,
    alerts_topic: Annotated[
        str | None, typer.Option(help="Alert topic [env CXL_ALERTS_TOPIC].")
    ] = None,
    consumer_group: Annotated[
        str | None,
        typer.Option(help="Kafka consumer group to join [env CXL_CONSUMER_GROUP]."),
    ] = None,
    group_session_timeout: Annotated[
        float | None,
        typer.Option(help="Group session timeout, s [env CXL_GROUP_SESSION_TIMEOUT_S]."),
    ] = None,
    group_heartbeat: Annotated[
        float | None,
        typer.Option(help="Group heartbeat interval, s [env CXL_GROUP_HEARTBEAT_S]."),
    ] = None,
    group_max_poll_interval: Annotated[
        float | None,
        typer.Option(help="Longest pause between polls, s [env CXL_GROUP_MAX_POLL_INTERVAL_S]."),
    ] = None,
    group_join_timeout: Annotated[
        float | None,
        typer.Option(
            help="Longest wait for the group to assign partitions, s "
            "[env CXL_GROUP_JOIN_TIMEOUT_S]."
        ),
    ] = None,
    at_risk_horizon: Annotated[
        str | None,
        typer.Option(
            help="How far ahead a promise is at risk, e.g. 48h [env CXL_AT_RISK_HORIZON]."
        ),
    ] = None,
    alerts_interval: Annotated[
        float | None,
        typer.Option(help="Seconds between alert rounds [env CXL_ALERTS_INTERVAL_S]."),
    ] = None,
    alerts_lookback: Annotated[
        str | None,
        typer.Option(help="Oldest condition still alerted, e.g. 7d [env CXL_ALERTS_LOOKBACK]."),
    ] = None,
    complaint_ack_targets: Annotated[
        str | None,
        typer.Option(
            help="Time to acknowledge per severity, e.g. 5:4h,…,1:72h "
            "[env CXL_COMPLAINT_ACK_TARGETS]."
        ),
    ] = None,
    complaint_resolve_targets: Annotated[
        str | None,
        typer.Option(
            help="Time to resolve per severity, e.g. 5:2d,…,1:30d "
            "[env CXL_COMPLAINT_RESOLVE_TARGETS]."
        ),
    ] = None,
    contact_saturation: Annotated[
        int | None,
        typer.Option(
            help="Outbound touchpoints in 30 days that saturate a customer "
            "[env CXL_CONTACT_SATURATION]."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help(), markup=False)
        raise typer.Exit(0)
    ctx.obj = Context(
        settings=load_settings(
            home=home,
            store=store,
            key_store=key_store,
            kek_file=kek_file,
            kafka_bootstrap=bootstrap,
            events_topic=events_topic,
            ledger_topic=ledger_topic,
            dlq_topic=dlq_topic,
            partitions=partitions,
            batch_size=batch_size,
            ingest_workers=workers,
            stream_cache=stream_cache,
            store_pool_size=store_pool_size,
            store_statement_timeout_s=store_statement_timeout,
            store_connect_timeout_s=store_connect_timeout,
            kafka_timeout_s=kafka_timeout,
            checkpoint_key=checkpoint_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval_s=checkpoint_interval,
            checkpoints_topic=checkpoints_topic,
            access_keys=access_keys,
            http_max_body_bytes=http_max_body_bytes,
            http_max_events=http_max_events,
            serve_max_lag=serve_max_lag,
            log_format=log_format,
            alerts_topic=alerts_topic,
            consumer_group=consumer_group,
            group_session_timeout_s=group_session_timeout,
            group_heartbeat_s=group_heartbeat,
            group_max_poll_interval_s=group_max_poll_interval,
            group_join_timeout_s=group_join_timeout,
            at_risk_horizon=at_risk_horizon,
            alerts_interval_s=alerts_interval,
            alerts_lookback=alerts_lookback,
            complaint_ack_targets=complaint_ack_targets,
            complaint_resolve_targets=complaint_resolve_targets,
            contact_saturation=contact_saturation,
        ),
        debug=debug,
    )


def _check_files(files: list[Path]) -> None:
    """Each a readable file or stream (a pipe or ``/dev/stdin`` is read as a file is)."""
    for path in files:
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a JSON-lines file")
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from exc


# -- files and Kafka in ----------------------------------------------------------------------------


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSON-lines files of v1 events.")],
    fmt: Annotated[Format, typer.Option("--format", help="Summary format.")] = Format.table,
) -> None:
    """Validate and seal JSON-lines files straight into the store (no broker needed)."""
    settings = _ctx(ctx).settings
    _check_files(files)
    ticker = Ticker("ingesting")
    with open_store(settings) as store, ticker.running():
        started = time.monotonic()
        report = ingest_records(
            (r for path in files for r in read_jsonl(str(path))),
            store,
            batch_size=settings.batch_size,
            on_batch=lambda r: ticker.update(
                f"{r.lines:,} lines, {r.seal.sealed:,} sealed, {r.lines / max(time.monotonic() - started, 1e-9):,.0f} lines/s"
            ),
        )
    rejects = [(e.origin, str(e)) for e in report.invalid] + [
        (r.event.origin, f"{r.event.origin}: event_id: {r.reason}") for r in report.seal.rejected
    ]
    report_rejects([message for _, message in sorted(rejects, key=_file_line)])
    summary = {
        "lines": report.lines,
        "sealed": report.seal.sealed,
        "duplicates_skipped": report.seal.duplicates,
        "refused_erased": report.seal.erased,
        "rejected": report.rejected,
        "anomalies": sum(report.seal.anomalies.values()),
    }
    _summary(summary, fmt, report.seal.anomalies)
    if report.rejected:
        raise RejectedRecordsError(
            f"{report.rejected:,} of {report.lines:,} lines rejected; the others were processed "
            f"({report.seal.sealed:,} sealed, {report.seal.duplicates:,} duplicates, "
            f"{report.seal.erased:,} refused for an erased customer)"
        )


def _summary(summary: dict[str, Any], fmt: Format, anomalies: dict[str, int] | None = None) -> None:
    if fmt is Format.table:
        out.print(
            ", ".join(
                f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k} {v}"
                for k, v in summary.items()
            )
        )
        if anomalies:
            out.print("anomalies: " + ", ".join(f"{k} {v:,}" for k, v in sorted(anomalies.items())))
    else:
        emit_rows(
            [summary | ({"anomaly_kinds": anomalies} if anomalies and fmt is Format.json else {})],
            fmt,
        )


@app.command()
def publish(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSON-lines files of v1 events.")],
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="Validate before sending.")
    ] = True,
) -> None:
    """Append the events of JSON-lines files to the events topic (key = customer_id)."""
    from consumers.kafka_clients import close_producer

    settings = _ctx(ctx).settings
    _check_files(files)
    with kafka_access(settings, may_embed=False) as kafka:
        # Created before anything produces: an auto-created topic gets the broker's partition count.
        ensure_topics(kafka.bootstrap, settings.topics, settings.kafka_timeout_s)
        producer = make_producer(kafka.bootstrap, settings.kafka_timeout_s)
        ticker = Ticker("publishing")
        try:
            with ticker.running():
                report = publish_records(
                    (r for path in files for r in read_jsonl(str(path))),
                    producer,
                    settings.events_topic,
                    validate=validate,
                    timeout_s=settings.kafka_timeout_s,
                    on_progress=lambda n: ticker.update(f"{n:,} delivered"),
                )
        finally:
            close_producer(producer, settings.kafka_timeout_s)
    report_rejects([str(e) for e in report.rejected] + [str(u) for u in report.undelivered])
    out.print(
        f"sent {report.delivered:,} to {settings.events_topic} (delivery acknowledged), "
        f"not delivered {report.failed:,}, rejected {len(report.rejected):,}"
    )
    if report.rejected or report.undelivered:
        raise RejectedRecordsError(
            f"{len(report.rejected):,} lines rejected and {report.failed:,} not delivered; "
            f"the other {report.delivered:,} were delivered"
        )


def _install_stop_handlers(stop: Any) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


class _StopSignals:
    """SIGINT/SIGTERM caught from a command's first line, not from when its pipeline exists: a
    service stopped while it still connects (a slow broker, a database that is starting) exits
    cleanly with 0 instead of dying of the signal. ``bind`` hands the request to what runs."""

    def __init__(self) -> None:
        self.requested = False
        self._stop: Callable[[], None] | None = None
        _install_stop_handlers(self._request)

    def _request(self) -> None:
        self.requested = True
        if self._stop is not None:
            self._stop()

    def bind(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self.requested:
            stop()


@app.command()
def consume(
    ctx: typer.Context,
    until_idle: Annotated[
        bool, typer.Option(help="Exit once every partition is caught up.")
    ] = False,
    relay: Annotated[
        bool,
        typer.Option("--relay/--no-relay", help="Also relay sealed events to the ledger topic."),
    ] = True,
    accept_reset: Annotated[
        bool, typer.Option(help="Read a reset partition again from offset 0 instead of stopping.")
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            help="Join this Kafka consumer group: share the partitions with the other members, on "
            "any host [env CXL_CONSUMER_GROUP]. The relay then runs apart (`cxl relay`, once)."
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Summary format.")] = Format.table,
) -> None:
    """Run the ingest consumer: events topic → validate → seal (→ relay). Stops on SIGINT/SIGTERM."""
    signals = _StopSignals()
    settings = _ctx(ctx).settings
    if group is not None:
        settings = load_settings(**{**settings.model_dump(), "consumer_group": group})
    if settings.consumer_group is not None and relay:
        err.print(
            f"consumer group {settings.consumer_group}: this process seals its share and does not "
            "relay; run one `cxl relay` for the ledger",
            markup=False,
        )
    with kafka_access(settings, may_embed=False) as kafka, open_store(settings) as store:
        stats = run_ingest(
            settings,
            store,
            kafka.bootstrap,
            owns_broker=kafka.owns_broker,
            accept_reset=accept_reset,
            until_idle=until_idle,
            relay=relay,
            signals=signals,
        )
    _summary(_ingest_summary(stats), fmt, stats.anomalies)


def run_ingest(
    settings: Settings,
    store: LedgerStore,
    bootstrap: str,
    *,
    owns_broker: bool,
    accept_reset: bool,
    until_idle: bool,
    relay: bool,
    signals: _StopSignals | None = None,
) -> IngestStats:
    """Ingest with ``settings.ingest_workers`` processes (in this one when 1), relaying from here;
    progress on stderr, SIGINT/SIGTERM stop it cleanly (``signals``: caught since earlier)."""
    ticker = Ticker("consuming")

    def progress(s: IngestStats) -> None:
        ticker.update(
            f"{s.consumed:,} consumed, {s.sealed:,} sealed, {s.duplicates:,} duplicates, "
            f"{s.dead_lettered:,} dead-lettered, {s.relayed:,} relayed, "
            f"{s.checkpoints:,} checkpoints, {s.rate:,.0f}/s"
        )

    pipeline = IngestPipeline(
        settings,
        store,
        bootstrap,
        owns_broker=owns_broker,
        accept_reset=accept_reset,
        relay=relay,
        on_progress=progress,
    )
    (signals or _StopSignals()).bind(pipeline.stop)
    with ticker.running():
        return pipeline.run(until_idle=until_idle)


def _ingest_summary(stats: IngestStats) -> dict[str, Any]:
    return {
        "consumed": stats.consumed,
        "sealed": stats.sealed,
        "duplicates_skipped": stats.duplicates,
        "refused_erased": stats.erased,
        "dead_lettered": stats.dead_lettered,
        "relayed": stats.relayed,
        "checkpoints": stats.checkpoints,
        "new_epochs": stats.resets,
        "events_per_s": round(stats.rate),
    }


@app.command("relay")
def relay_command(
    ctx: typer.Context,
    until_idle: Annotated[
        bool, typer.Option(help="Exit once everything sealed is relayed.")
    ] = False,
) -> None:
    """Publish sealed events, in ledger order, to the ledger topic (at-least-once, resumes by itself)."""
    settings = _ctx(ctx).settings
    stopping = {"stop": False}
    _install_stop_handlers(lambda: stopping.update(stop=True))
    with kafka_access(settings, may_embed=False) as kafka, open_store(settings) as store:
        relay = LedgerRelay.for_settings(store, kafka.bootstrap, settings)
        ticker = Ticker("relaying")
        try:
            with ticker.running():
                total = relay.run(
                    until_idle=until_idle,
                    should_stop=lambda: stopping["stop"],
                    on_progress=lambda n: ticker.update(f"{n:,} relayed"),
                )
        finally:
            relay.close()
    out.print(f"relayed {total:,} sealed events to {settings.ledger_topic}")


@app.command()
def broker(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Loopback port (default: a free one)."),
    ] = None,
) -> None:
    """Run the embedded Kafka broker (Tansu, memory only) in the foreground until Ctrl-C."""
    settings = _ctx(ctx).settings
    ensure_home(settings)
    stopping = {"stop": False}
    _install_stop_handlers(lambda: stopping.update(stop=True))
    with EmbeddedBroker(port=port, log_dir=settings.home) as running:
        out.print(f"Kafka broker (Tansu, memory only) listening on {running.bootstrap}")
        out.print(f"  export CXL_KAFKA_BOOTSTRAP={running.bootstrap}")
        out.print(f"  log: {running.log_path}; Ctrl-C stops it and forgets every topic.")
        sys.stdout.flush()
        while not stopping["stop"] and running.running:
            time.sleep(0.2)
        if not running.running:
            raise CxlError(f"the broker exited unexpectedly; see {running.log_path}")


def _file_line(reject: tuple[str, str]) -> tuple[str, int]:
    """Order rejects as the files hold them: ``file.jsonl:12`` by file, then line number."""
    name, _, line = reject[0].rpartition(":")
    return (name, int(line)) if line.isdigit() else (reject[0], 0)


# -- audit ----------------------------------------------------------------------------------------


@app.command()
def verify(
    ctx: typer.Context,
    checkpoint_file: checkpoints.CheckpointOption = None,
    public_key: checkpoints.PublicKeyOption = None,
    projections: Annotated[
        Path | None,
        typer.Option(
            "--projections",
            help="Also rebuild an export directory or a replay file from the ledger and compare "
            "(its manifest says how it was built).",
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Account for every stored byte; with --checkpoint, prove the ledger extends that checkpoint."""
    from projections.manifest import read_manifest, verify_projections

    settings = _ctx(ctx).settings
    ticker = Ticker("verifying")
    if projections is not None:
        if not projections.exists():
            raise ConfigError(f"--projections {projections}: no such file or directory")
        read_manifest(projections)  # a wrong path is said before the long verification
    with open_store(settings, read_only=True) as store:
        if public_key is not None and checkpoint_file is None:
            raise ConfigError("--public-key checks a --checkpoint: give one")
        point = (
            None
            if checkpoint_file is None
            else checkpoints.read_checkpoint(settings, store, checkpoint_file, public_key)[0]
        )
        with ticker.running():
            report = verify_chains(
                store, on_progress=lambda n: ticker.update(f"{n:,} events"), checkpoint=point
            )
            manifest = (
                None
                if projections is None
                else verify_projections(
                    projections,
                    store,
                    on_progress=lambda at, total: ticker.update(
                        f"rebuilding {projections}: position {at:,} of {total:,}"
                    ),
                )
            )
    row = report.as_row()
    root = row["tree_root"]
    if manifest is not None:
        row["projections_through_position"] = manifest["ledger"]["through_position"]
        row["projections_tables"] = len(manifest["tables"])
    if fmt is not Format.table:
        emit_rows([row], fmt)
        return
    out.print(f"ok {report.events} events, {report.customers} customers")
    out.print(f"head digest {report.head_digest}")
    out.print(f"tree root {root} ({report.events} leaves)")
    if report.checkpoint is not None:
        out.print(
            f"extends the checkpoint of {report.checkpoint.size} events "
            f"(consistency proof of {len(report.consistency)} hashes verified)"
        )
    if manifest is not None:
        out.print(
            f"{projections}: {len(manifest['tables'])} tables equal a rebuild from the ledger "
            f"through position {manifest['ledger']['through_position']}"
        )


@app.command()
def schemas(
    directory: Annotated[Path, typer.Option("--dir", help="Where the v1 schemas live.")] = Path(
        "schemas/v1"
    ),
    check: Annotated[bool, typer.Option(help="Only check the files match the models.")] = False,
) -> None:
    """Write (or --check) the JSON Schema of every v1 event and alert type, from the models."""
    from ledger.alert_contract import alert_schemas

    if check and not directory.is_dir():
        raise ConfigError(
            f"--dir {directory}: no such directory (run from the repository root, or pass --dir)"
        )
    drift = []
    published = {**json_schemas(), **alert_schemas()}
    for name, schema in published.items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = directory / name
        if check:
            if not path.is_file() or path.read_text() != text:
                drift.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if drift:
        raise CxlError(
            "schemas differ from the models: " + ", ".join(drift) + " (run `cxl schemas`)"
        )
    out.print(f"{'checked' if check else 'wrote'} {len(published)} schemas in {directory}")


@app.command()
def demo(
    ctx: typer.Context,
    customers: Annotated[
        int, typer.Option(min=10, max=1_000_000, help="Synthetic customers (~16 events each).")
    ] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic history.")] = 7,
    save_history: Annotated[
        Path | None,
        typer.Option(help="Also write the generated history (JSON lines, plaintext) to this file."),
    ] = None,
) -> None:
    """The whole pipeline in one process on the embedded default: generate, publish, seal, verify."""
    from cxl.demo import run_demo

    settings = _ctx(ctx).settings
    ensure_home(settings)
    check_store_file(settings.store_url)
    if save_history is not None and not save_history.parent.is_dir():
        raise ConfigError(f"--save-history {save_history}: its directory does not exist")
    result = run_demo(
        settings,
        customers=customers,
        seed=seed,
        history=save_history,
        run_ingest=run_ingest,
        say=lambda text: out.print(text, markup=False),
    )
    emit_rows(
        result.gap_rows,
        Format.table,
        title=f"trust gap by team as of {result.as_of.isoformat()} (end of the synthetic history)",
    )
    for line in result.keepers:
        out.print(line, markup=False)
    out.print(f"report: {result.report_path.resolve()}")
    out.print(
        f"demo finished in {result.seconds:.1f} s · try: cxl gap --by made_by,due_month · "
        f"cxl at-risk --as-of {result.as_of.isoformat()} · cxl inflation --as-of "
        f'{result.as_of.isoformat()} · cxl sql "SELECT * FROM anomalies"'
    )


analytics.register(app)
keepers.register(app)
erasure.register(app)
checkpoints.register(app)
serve.register(app)
store_admin.register(app)


def main() -> None:
    """Entry point: one line on stderr and a documented exit code for every failure.

    Usage errors (unknown command or option, a value of the wrong type, a missing argument) exit 2;
    ``CxlError``s exit with their own code; an ``OSError`` that escaped a boundary exits 1 naming
    its path; anything else is an internal error, still one line. ``--debug`` adds the traceback.
    """
    debug = "--debug" in sys.argv[1:]
    try:
        status = app(standalone_mode=False)
    except CxlError as exc:
        _fail(str(exc), exc.exit_code, debug)
    except (typer.Abort, KeyboardInterrupt):
        _fail("aborted", 130, debug)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # the CLI parser's usage errors
        _fail(exc.format_message(), getattr(exc, "exit_code", 2), debug)
    except PersistenceError as exc:  # the store's library, past the boundaries that wrap it
        _fail(f"the ledger store failed: {type(exc).__name__}: {exc}", StoreError.exit_code, debug)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", 1, debug)
    except Exception as exc:
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            1,
            debug,
        )
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, code: int, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    line = " ".join(message.split()) or "failed"
    err.print(Text.assemble(("error:", "red"), " ", line), highlight=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
