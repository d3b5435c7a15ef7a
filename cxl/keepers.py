"""Commands for the people who keep promises: at-risk, alerts, inflation, complaints, contact."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer

from consumers.alerts import AlertLog, AlertPublisher
from consumers.kafka_access import kafka_access
from consumers.topics import ensure_topics
from cxl.analytics import AsOf, KnownAt, answered, parse_known_at, settings_of
from cxl.output import Format, emit_rows, err, out
from cxl.store_access import ensure_home
from ledger.errors import BrokerUnavailableError, StoreError
from ledger.instants import format_duration, parse_duration, parse_instant
from ledger.settings import Settings
from projections.alerts import alerts_due
from projections.at_risk import at_risk
from projections.complaint_sla import complaint_sla, parse_groups
from projections.contact_pressure import contact_groups
from projections.errors import ProjectionsError
from projections.explain import parse_where
from projections.inflation import DEFAULT_MONTHS, flagged_groups, inflation

FormatOption = Annotated[Format, typer.Option("--format", help="table, json or csv.")]


def alert_round(settings: Settings, publisher: AlertPublisher, now: datetime | None) -> int:
    """Evaluate the alerts due at ``now`` (None: the clock) on caught-up projections and publish
    the new ones; returns how many were published."""
    alerts = answered(settings, lambda con: alerts_due(con, settings, now or datetime.now(UTC)))
    return publisher.publish(alerts)


def register(app: typer.Typer) -> None:
    @app.command("at-risk")
    def at_risk_command(
        ctx: typer.Context,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        horizon: Annotated[
            str | None,
            typer.Option(help="How far ahead, e.g. 48h, 90m, 7d [default CXL_AT_RISK_HORIZON]."),
        ] = None,
        where: Annotated[
            str | None,
            typer.Option(
                "--where",
                help="Comma-separated DIMENSION=VALUE: made_by, channel, kind, customer, "
                "on_behalf_of.",
            ),
        ] = None,
        fmt: FormatOption = Format.table,
    ) -> None:
        """Promises not settled by --as-of and due within the horizon after it, soonest first."""
        settings = settings_of(ctx)
        within = settings.horizon if horizon is None else parse_duration(horizon, "--horizon")
        filters = parse_where(where)
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        rows = answered(
            settings, lambda con: at_risk(con, instant, within, known_at=known, where=filters)
        )
        emit_rows(
            rows,
            fmt,
            title=f"{len(rows):,} promises at risk: due after {instant.isoformat()} and within "
            f"{format_duration(within)}",
        )

    @app.command()
    def alerts(
        ctx: typer.Context,
        until_idle: Annotated[
            bool, typer.Option(help="Publish what is due now, then exit (default: keep watching).")
        ] = False,
        now: Annotated[
            str | None,
            typer.Option(
                help="Evaluate at this RFC 3339 instant instead of the clock (one round)."
            ),
        ] = None,
    ) -> None:
        """Publish alerts (at risk, overdue, broken, complaint SLA breaches) to the alerts topic."""
        settings = settings_of(ctx)
        instant = None if now is None else parse_instant(now, "--now")
        ensure_home(settings)
        with kafka_access(settings, may_embed=False) as kafka:
            ensure_topics(
                kafka.bootstrap,
                {settings.alerts_topic: settings.partitions},
                settings.kafka_timeout_s,
            )
            log = AlertLog(settings.alerts_log_path)
            publisher = AlertPublisher(
                log, kafka.bootstrap, settings.alerts_topic, settings.kafka_timeout_s
            )
            try:
                if until_idle or instant is not None:
                    sent = alert_round(settings, publisher, instant)
                    out.print(f"published {sent:,} new alerts to {settings.alerts_topic}")
                    return
                _watch(settings, publisher)
            finally:
                log.close()

    @app.command("inflation")
    def inflation_command(
        ctx: typer.Context,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        by: Annotated[
            str, typer.Option(help="made_by, channel, kind or on_behalf_of.")
        ] = "made_by",
        months: Annotated[
            int, typer.Option(help="N: smoothing window and consecutive months to flag.")
        ] = DEFAULT_MONTHS,
        fmt: FormatOption = Format.table,
    ) -> None:
        """Promises made vs kept on time per month: growth, inflation index, flagged groups."""
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        rows = answered(settings_of(ctx), lambda con: inflation(con, instant, by, months, known))
        emit_rows(rows, fmt, title=f"promise inflation by {by} as of {instant.isoformat()}")
        if fmt is Format.table:
            flagged = [str(g) for g, f in flagged_groups(rows, by).items() if f]
            out.print(
                f"flagged (made outgrew kept on time for {months} consecutive months): "
                + (", ".join(flagged) or "none")
            )

    @app.command()
    def complaints(
        ctx: typer.Context,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        by: Annotated[
            str | None,
            typer.Option(
                help="Comma-separated: severity (default), channel, category, made_by, "
                "on_behalf_of (the teams whose promises a complaint cites)."
            ),
        ] = None,
        fmt: FormatOption = Format.table,
    ) -> None:
        """Complaint handling against the SLA targets per severity, as of an instant."""
        settings = settings_of(ctx)
        groups = parse_groups(by)
        targets = settings.complaint_targets
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        rows = answered(settings, lambda con: complaint_sla(con, instant, targets, groups, known))
        emit_rows(rows, fmt, title=f"complaints by {', '.join(groups)} as of {instant.isoformat()}")

    @app.command()
    def contact(
        ctx: typer.Context,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        fmt: FormatOption = Format.table,
    ) -> None:
        """Contact that serves, not pushes: saturated customers, inbound that met only machines,
        and each group's complaint rate, per customer per 30 days."""
        settings = settings_of(ctx)
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        saturation = settings.contact_saturation
        rows = answered(settings, lambda con: contact_groups(con, instant, saturation, known))
        emit_rows(
            rows,
            fmt,
            title=f"contact per customer per 30 days back from {instant.isoformat()} "
            f"(saturated: ≥ {settings.contact_saturation} outbound)",
        )


def _watch(settings: Settings, publisher: AlertPublisher) -> None:
    """A round every ``CXL_ALERTS_INTERVAL_S`` until SIGINT/SIGTERM; a broker outage is reported
    and the next round tries again."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    err.print(
        f"watching for alerts every {settings.alerts_interval_s:g} s → {settings.alerts_topic} "
        "(Ctrl-C stops)"
    )
    while not stopping.is_set():
        try:
            sent = alert_round(settings, publisher, None)
            if sent:
                err.print(f"published {sent:,} new alerts")
        except (BrokerUnavailableError, ProjectionsError, StoreError) as exc:
            # A broker away, the projections busy with another writer: the next round retries.
            err.print(f"alerts: {exc}; trying again in {settings.alerts_interval_s:g} s")
        stopping.wait(settings.alerts_interval_s)
    out.print(f"published {publisher.published:,} new alerts to {settings.alerts_topic}")
