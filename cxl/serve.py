"""``cxl serve`` and ``cxl keys``: the ledger as a service, and who may use its HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from cxl.analytics import settings_of
from cxl.output import Format, emit_rows, out
from cxl.store_access import check_store_file, ensure_home

keys_app = typer.Typer(
    help="API keys of `cxl serve`: add, list, revoke (stored hashed in CXL_ACCESS_KEYS).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[
            str | None, typer.Option("--host", help="Address to listen on [env CXL_HTTP_HOST].")
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(
                "--port", min=0, max=65535, help="Port (0: any free one) [env CXL_HTTP_PORT, 8080]."
            ),
        ] = None,
    ) -> None:
        """Run the ledger as a service: ingest, relay, live projections, checkpoints, HTTP API
        and dashboard, until SIGTERM/SIGINT. Embedded broker when CXL_KAFKA_BOOTSTRAP is unset."""
        from service.server import serve as run

        given = {"http_host": host, "http_port": port}
        settings = settings_of(ctx).model_copy(
            update={k: v for k, v in given.items() if v is not None}
        )
        ensure_home(settings)
        check_store_file(settings.store_url)
        run(settings, say=lambda text: out.print(text, markup=False))


@keys_app.command("add")
def add(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="The publishing service: a write key may publish only events with this source "
            "(for a read key, a name for its holder).",
        ),
    ] = None,
    read: Annotated[
        bool, typer.Option("--read", help="A read key (reads the API; cannot publish).")
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Requests per second allowed (default: no limit)."),
    ] = None,
) -> None:
    """Create a key and print it once: the last word of the output is the key."""
    from ledger.errors import ConfigError
    from service.access import AccessKeys

    settings = settings_of(ctx)
    if source is None:
        if not read:
            raise ConfigError("--source NAME is required for a write key (the events' `source`)")
        source = "reader"
    ensure_home(settings)
    key = AccessKeys(settings.access_keys_path).add(source, can_read=read, rate_per_s=rate)
    role = "read" if read else f"write (source {source!r})"
    out.print(f"{role} key {key.split('_')[1]}, shown once — keep it: {key}", markup=False)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Every key's id, source, role, rate and state (never the key itself)."""
    from service.access import AccessKeys

    rows = [
        {
            "id": k.id,
            "source": k.source,
            "role": k.role,
            "rate_per_s": k.rate_per_s,
            "created_at": k.created_at,
            "revoked_at": k.revoked_at,
        }
        for k in AccessKeys(settings_of(ctx).access_keys_path).list()
    ]
    emit_rows(rows, fmt, title="API keys")


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(metavar="ID", help="The key's id (see `cxl keys list`).")
    ],
) -> None:
    """Revoke a key: the running server refuses it from the next request on."""
    from service.access import AccessKeys

    key = AccessKeys(settings_of(ctx).access_keys_path).revoke(key_id)
    out.print(f"key {key.id} ({key.role}, source {key.source!r}) revoked at {key.revoked_at}")
