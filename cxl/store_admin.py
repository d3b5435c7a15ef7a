"""``cxl store migrate``: bring the ledger store's own tables to this version's schema."""

from __future__ import annotations

import typer

from cxl.analytics import settings_of
from cxl.output import Ticker, out
from cxl.store_access import check_store_file
from ledger.migrations import migrate, schema_version
from ledger.store import SCHEMA_VERSION, LedgerStore

store_app = typer.Typer(
    help="The ledger store itself: migrate its tables to this cx-ledger's schema.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")

    @store_app.command("migrate")
    def migrate_command(ctx: typer.Context) -> None:
        """Apply the store's pending migrations (versioned, idempotent: safe to rerun after a
        crash). Stop every `cxl consume` / `cxl serve` first and back the store up."""
        settings = settings_of(ctx)
        check_store_file(settings.store_url)
        LedgerStore(settings.store_url, read_only=True).close()  # it must exist: never made here
        ticker = Ticker("migrating")
        with (
            LedgerStore(settings.store_url, migrating=True) as store,
            ticker.running(),
        ):
            before = schema_version(store)
            applied = migrate(store, lambda text: ticker.update(text))
        if not applied:
            out.print(f"store at schema version {before}: nothing to migrate", markup=False)
            return
        for line in applied:
            out.print(f"applied {line}", markup=False)
        out.print(f"store at schema version {SCHEMA_VERSION}", markup=False)
