"""Analyst and auditor commands: gap, replay, sql, export, report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cxl.output import Format, Ticker, emit_rows, err, out
from cxl.store_access import ensure_home, open_store
from ledger.errors import ChainBrokenError, ConfigError, CxlError, LedgerTamperedError
from ledger.instants import parse_instant
from ledger.settings import Settings
from projections.export import export_all, export_replay
from projections.live import open_caught_up, replay
from projections.manifest import build_manifest
from projections.served import open_served, running_server
from projections.sql import run_read_only
from projections.targets import protected_files, refuse_protected, require_directory
from projections.trust_gap import MEASURES, parse_dimensions, trust_gap

T = TypeVar("T")

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="RFC 3339 instant with offset, e.g. 2026-06-30T23:59:59Z (default: now)."
    ),
]


KnownAt = Annotated[
    str | None,
    typer.Option(
        "--known-at",
        help="Count only events the ledger had sealed by this instant (recorded_at): what it "
        "knew then (default: everything sealed).",
    ),
]


def parse_known_at(text: str | None) -> datetime | None:
    return None if text is None else parse_instant(text, "--known-at")


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj.settings
    return settings


def protected(settings: Settings) -> list[Path]:
    """The files no output may overwrite: the ledger store, the live projections and keys."""
    return protected_files(
        settings.store_url,
        settings.projections_path,
        (settings.key_store_path, settings.kek_path, settings.checkpoint_key_path),
    )


def _check_target(settings: Settings, target: Path) -> None:
    """Refuse a ``--to`` file before any work: protected, or in a directory that is not there."""
    refuse_protected(target, protected(settings))
    require_directory(target.parent)


def caught_up(settings: Settings) -> Any:
    """The live projections with everything sealed applied; while ``cxl serve`` runs on this home,
    its published copy once it covers everything sealed now (the server is their only writer)."""
    server = running_server(settings.home)
    if server is not None:
        with open_store(settings, read_only=True) as store:
            position = store.max_position()
        return open_served(server, position)
    ticker = Ticker("projecting")
    with open_store(settings, read_only=True) as store, ticker.running():
        ensure_home(settings)  # the projections live there
        return open_caught_up(
            settings.projections_path,
            store,
            on_progress=lambda at, total: ticker.update(f"position {at:,} of {total:,}"),
            on_rebuild=lambda why: err.print(
                f"rebuilding the projections from the ledger: {why}", markup=False
            ),
            within=settings.horizon,
        )


def answered(settings: Settings, question: Callable[[Any], T]) -> T:
    """``question`` asked of the projections caught up (``caught_up``), then closed."""
    con = caught_up(settings)
    try:
        return question(con)
    finally:
        con.close()


def _export_replay(
    settings: Settings,
    to: Path,
    fmt: str,
    as_of: datetime | None,
    known_at: datetime | None,
) -> dict[str, int]:
    ticker = Ticker("replaying")
    with open_store(settings, read_only=True) as store, ticker.running():
        return export_replay(
            store,
            to,
            fmt,
            as_of or datetime.now(UTC),
            known_at,
            protected(settings),
            on_progress=lambda at, total: ticker.update(f"position {at:,} of {total:,}"),
            within=settings.horizon,
        )


def _print_explained(promises: list[dict[str, Any]], instant: datetime) -> None:
    """One block per promise for people: its keys and amounts, then its sealed events."""
    out.print(f"{len(promises):,} promises as of {instant.isoformat()}")
    for p in promises:
        amounts = ", ".join(
            f"{m.replace('_', ' ')} {p[m]:g}" for m in MEASURES if m != "made" and p[m]
        )
        out.print(
            f"\n{p['promise_id']}  customer {p['customer_id']}  {p['made_by']}/{p['channel']}/"
            f"{p['kind']}  due {p['due_month']}  {p['status']}  made {p['made']:g}"
            + (f": {amounts}" if amounts else "")
        )
        for e in p["events"]:
            out.print(
                f"  #{e['position']}  seq {e['seq']}  {e['occurred_at']}  {e['type']:<22}"
                f"{e['event_id']}  {e['hash']}"
            )


def register(app: typer.Typer) -> None:
    @app.command()
    def gap(
        ctx: typer.Context,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        by: Annotated[
            str | None,
            typer.Option(
                help="Comma-separated: made_by, channel, kind, due_month, customer, on_behalf_of."
            ),
        ] = None,
        fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    ) -> None:
        """The trust gap (promised vs kept on time), weighted, as of an instant, grouped as asked."""
        dims = parse_dimensions(by)
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        rows = answered(settings_of(ctx), lambda con: trust_gap(con, instant, dims, known))
        title = f"trust gap as of {instant.isoformat()}"
        if known is not None:
            title += f", as known at {known.isoformat()}"
        emit_rows(rows, fmt, title=title)

    @app.command()
    def explain(
        ctx: typer.Context,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        where: Annotated[
            str | None,
            typer.Option(
                "--where",
                help="Comma-separated DIMENSION=VALUE: made_by, channel, kind, "
                "due_month (YYYY-MM), customer, on_behalf_of.",
            ),
        ] = None,
        status: Annotated[
            str | None,
            typer.Option(help="kept_on_time, kept_late, broken, overdue or pending."),
        ] = None,
        fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    ) -> None:
        """The promises behind a gap figure, each with its amounts and its sealed events."""
        from projections.explain import explain as explain_promises
        from projections.explain import parse_where

        filters = parse_where(where)
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        promises = answered(
            settings_of(ctx),
            lambda con: explain_promises(
                con, instant, known_at=known, where=filters, status=status
            ),
        )
        if fmt is Format.json:
            emit_rows(promises, fmt)
        elif fmt is Format.csv:
            emit_rows(
                [
                    {
                        **{k: v for k, v in p.items() if k != "events"},
                        "event_ids": " ".join(e["event_id"] for e in p["events"]),
                    }
                    for p in promises
                ],
                fmt,
            )
        else:
            _print_explained(promises, instant)

    @app.command("replay")
    def replay_command(
        ctx: typer.Context,
        as_of: Annotated[str, typer.Option("--as-of", help="RFC 3339 instant with offset.")],
        to: Annotated[Path, typer.Option("--to", help="New DuckDB file to build.")],
        known_at: KnownAt = None,
        force: Annotated[bool, typer.Option(help="Replace the file if it exists.")] = False,
    ) -> None:
        """Rebuild every projection from the ledger into a new file, from events occurred by --as-of."""
        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        settings = settings_of(ctx)
        _check_target(settings, to)
        ticker = Ticker("replaying")
        with open_store(settings, read_only=True) as store, ticker.running():
            applied = replay(
                store,
                instant,
                to,
                known_at=known,
                overwrite=force,
                protected=protected(settings),
                on_progress=lambda at, total: ticker.update(f"position {at:,} of {total:,}"),
                within=settings.horizon,
            )
        known_by = "" if known is None else f" and were sealed by {known.isoformat()}"
        out.print(
            f"replayed {applied:,} events that occurred by {instant.isoformat()}{known_by} "
            f"into {to}"
        )

    @app.command()
    def sql(
        ctx: typer.Context,
        query: Annotated[
            str, typer.Argument(help="SQL to run, read-only, against the projections.")
        ],
        fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
        database: Annotated[
            Path | None, typer.Option("--db", help="Another projections file (e.g. a replay).")
        ] = None,
    ) -> None:
        """Run SQL, read-only, against the projections (caught up first)."""
        if not query.strip():
            raise ConfigError("the SQL query is empty")
        settings = settings_of(ctx)
        target = database
        if target is None:
            server = running_server(settings.home)
            caught_up(settings).close()
            target = settings.projections_path if server is None else server.snapshot
        emit_rows(run_read_only(target, query), fmt)

    @app.command()
    def export(
        ctx: typer.Context,
        to: Annotated[
            Path, typer.Option("--to", help="Directory for one file per table and view.")
        ],
        fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
        with_text: Annotated[
            bool,
            typer.Option(
                "--with-text",
                help="Also write personal_text: the personal fields, decrypted (needs the keys).",
            ),
        ] = False,
        as_of: Annotated[
            str | None,
            typer.Option(
                "--as-of",
                help="Export a replay as of this instant instead of the live projections.",
            ),
        ] = None,
        known_at: KnownAt = None,
    ) -> None:
        """Export every projection table and view as Parquet or CSV files."""
        if fmt not in ("parquet", "csv"):
            raise ConfigError(f"--format {fmt!r}: choose parquet or csv")
        settings = settings_of(ctx)
        require_directory(to.parent)
        instant = None if as_of is None else parse_instant(as_of)
        known = parse_known_at(known_at)
        texts = None
        if with_text:
            from cxl.erasure import personal_text_table

            texts = personal_text_table(settings, to)
        if instant is None and known is None:
            con = caught_up(settings)
            try:
                with open_store(settings, read_only=True) as store:
                    manifest = build_manifest(con, store, as_of=None, known_at=None)
                written = export_all(con, to, fmt, protected(settings), manifest)
            finally:
                con.close()
        else:
            written = _export_replay(settings, to, fmt, instant, known)
        if texts is not None:
            from cxl.erasure import PERSONAL_TEXT, write_personal_text

            written[PERSONAL_TEXT] = write_personal_text(settings, texts, to, fmt)
        for name, rows in written.items():
            out.print(f"{to / (name + '.' + fmt)}  {rows:,} rows")

    @app.command()
    def report(
        ctx: typer.Context,
        to: Annotated[Path, typer.Option("--to", help="HTML file to write.")] = Path("report.html"),
        as_of: AsOf = None,
        known_at: KnownAt = None,
        verify: Annotated[
            bool,
            typer.Option(
                "--verify/--no-verify",
                help="Verify the ledger first and say so in the report's header (default).",
            ),
        ] = True,
    ) -> None:
        """Write a self-contained HTML report with charts (works offline)."""
        from ledger.audit import verify_chains
        from projections.keeper_report import Thresholds
        from projections.report import provenance, write_report

        instant = parse_instant(as_of)
        known = parse_known_at(known_at)
        settings = settings_of(ctx)
        _check_target(settings, to)
        con = caught_up(settings)
        failure: CxlError | None = None
        try:
            with open_store(settings, read_only=True) as store:
                state = "not verified (--no-verify)"
                if verify:
                    ticker = Ticker("verifying")
                    try:
                        with ticker.running():
                            state = verify_chains(
                                store, on_progress=lambda n: ticker.update(f"{n:,} events")
                            ).summary()
                    except (ChainBrokenError, LedgerTamperedError) as exc:
                        failure, state = exc, f"cxl verify FAILED: {exc}"
                source = provenance(con, store, state)
            write_report(
                con,
                instant,
                to,
                protected(settings),
                known_at=known,
                source=source,
                thresholds=Thresholds.of(settings),
            )
        finally:
            con.close()
        out.print(f"report written to {to.resolve()}")
        if failure is not None:
            raise failure
