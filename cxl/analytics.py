"""Analyst and auditor commands: gap, replay, sql, export, report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cxl.output import Format, Ticker, emit_rows, err, out
from cxl.store_access import ensure_home, open_store
from ledger.errors import ConfigError
from ledger.settings import Settings
from projections.export import export_all
from projections.live import open_caught_up, replay
from projections.sql import run_read_only
from projections.targets import protected_files, refuse_protected, require_directory
from projections.trust_gap import parse_dimensions, trust_gap

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="RFC 3339 instant with offset, e.g. 2026-06-30T23:59:59Z (default: now)."
    ),
]


def parse_instant(text: str | None) -> datetime:
    if text is None or text == "now":
        return datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--as-of {text!r} is not an RFC 3339 timestamp (e.g. 2026-06-30T23:59:59Z)"
        ) from None
    if instant.tzinfo is None:
        raise ConfigError(f"--as-of {text!r} needs a UTC offset, e.g. {text}Z or {text}+02:00")
    return instant


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj.settings
    return settings


def _protected(settings: Settings) -> list[Path]:
    return protected_files(
        settings.store_url,
        settings.projections_path,
        (settings.key_store_path, settings.kek_path),
    )


def _check_target(settings: Settings, target: Path) -> None:
    """Refuse a ``--to`` file before any work: protected, or in a directory that is not there."""
    refuse_protected(target, _protected(settings))
    require_directory(target.parent)


def _caught_up(settings: Settings) -> Any:
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
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def gap(
        ctx: typer.Context,
        as_of: AsOf = None,
        by: Annotated[
            str | None,
            typer.Option(help="Comma-separated: made_by, channel, kind, due_month, customer."),
        ] = None,
        fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    ) -> None:
        """The trust gap (promised vs kept on time), weighted, as of an instant, grouped as asked."""
        dims = parse_dimensions(by)
        instant = parse_instant(as_of)
        con = _caught_up(settings_of(ctx))
        try:
            rows = trust_gap(con, instant, dims)
        finally:
            con.close()
        emit_rows(rows, fmt, title=f"trust gap as of {instant.isoformat()}")

    @app.command("replay")
    def replay_command(
        ctx: typer.Context,
        as_of: Annotated[str, typer.Option("--as-of", help="RFC 3339 instant with offset.")],
        to: Annotated[Path, typer.Option("--to", help="New DuckDB file to build.")],
        force: Annotated[bool, typer.Option(help="Replace the file if it exists.")] = False,
    ) -> None:
        """Rebuild every projection from the ledger into a new file, from events occurred by --as-of."""
        instant = parse_instant(as_of)
        settings = settings_of(ctx)
        _check_target(settings, to)
        ticker = Ticker("replaying")
        with open_store(settings, read_only=True) as store, ticker.running():
            applied = replay(
                store,
                instant,
                to,
                overwrite=force,
                protected=_protected(settings),
                on_progress=lambda at, total: ticker.update(f"position {at:,} of {total:,}"),
            )
        out.print(f"replayed {applied:,} events that occurred by {instant.isoformat()} into {to}")

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
        if database is None:
            _caught_up(settings).close()
        emit_rows(run_read_only(database or settings.projections_path, query), fmt)

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
    ) -> None:
        """Export every projection table and view as Parquet or CSV files."""
        if fmt not in ("parquet", "csv"):
            raise ConfigError(f"--format {fmt!r}: choose parquet or csv")
        settings = settings_of(ctx)
        require_directory(to.parent)
        con = _caught_up(settings)
        try:
            written = export_all(con, to, fmt, _protected(settings))
        finally:
            con.close()
        if with_text:
            from cxl.erasure import PERSONAL_TEXT, export_personal_text

            written[PERSONAL_TEXT] = export_personal_text(settings, to, fmt)
        for name, rows in written.items():
            out.print(f"{to / (name + '.' + fmt)}  {rows:,} rows")

    @app.command()
    def report(
        ctx: typer.Context,
        to: Annotated[Path, typer.Option("--to", help="HTML file to write.")] = Path("report.html"),
        as_of: AsOf = None,
    ) -> None:
        """Write a self-contained HTML report with charts (works offline)."""
        from projections.report import write_report

        instant = parse_instant(as_of)
        settings = settings_of(ctx)
        _check_target(settings, to)
        con = _caught_up(settings)
        try:
            write_report(con, instant, to, _protected(settings))
        finally:
            con.close()
        out.print(f"report written to {to.resolve()}")
