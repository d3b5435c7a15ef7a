"""``cxl forget``, ``cxl history`` and ``cxl reveal``: erasing a customer, and reading personal
fields where someone asks for them (never in the projections)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from consumers.kafka_access import kafka_access
from consumers.relay import LedgerRelay
from cxl.analytics import protected, settings_of
from cxl.output import Format, emit_rows, err, out
from cxl.store_access import open_store
from ledger.contract import PERSONAL_FIELDS
from ledger.errors import ConfigError, CxlError, KeyStoreError, StoreError
from ledger.keys import KeyStore
from ledger.personal import is_sealed_field, reveal
from ledger.relationship import ERASED_TYPE
from ledger.settings import Settings
from ledger.store import LedgerStore


def open_keys(settings: Settings) -> KeyStore:
    """The key store, read-only: reading personal fields creates no key and no file."""
    settings.check_key_places()
    return KeyStore(settings.key_store_path, settings.kek_path, read_only=True)


def _text_of(body: dict[str, Any], fields: tuple[str, ...]) -> str:
    data = body["data"]
    return "; ".join(f"{name}: {data[name]}" for name in fields if data.get(name) is not None)


def _relay_erasure(settings: Settings, store: LedgerStore, customer: str) -> None:
    """Relay what is sealed (the erasure included); a failure says the erasure itself is done."""
    try:
        with kafka_access(settings, may_embed=False) as kafka:
            relay = LedgerRelay.for_settings(store, kafka.bootstrap, settings)
            try:
                relay.run(until_idle=True, should_stop=lambda: False)
            finally:
                relay.close()
    except CxlError as exc:
        failure = CxlError(
            f"customer {customer!r} is erased (data key destroyed, customer.erased sealed) but "
            f"the erasure was not relayed to {settings.ledger_topic}: {str(exc).rstrip('.')}; "
            "run `cxl relay`"
        )
        failure.exit_code = exc.exit_code
        raise failure from exc


def register(app: typer.Typer) -> None:
    @app.command()
    def forget(
        ctx: typer.Context,
        customer: Annotated[str, typer.Argument(help="The customer_id to erase.")],
        reason: Annotated[
            str,
            typer.Option(
                "--reason",
                help="Why (a ticket or legal basis), sealed in the ledger: no personal data.",
            ),
        ],
    ) -> None:
        """Erase a customer: destroy their data key, seal customer.erased; every figure stays."""
        settings = settings_of(ctx)
        with open_store(settings) as store:
            done = store.forget(customer, reason)
            plaintext = sum(
                1
                for event in store.stream(customer)
                for name in PERSONAL_FIELDS.get(event.type, ())
                if isinstance(event.body["data"].get(name), str)
            )
            if plaintext:
                err.print(
                    f"warning: {plaintext:,} personal fields of customer {customer!r} were sealed in "
                    "plaintext by a cx-ledger older than crypto-shredding; a sealed byte is forever, "
                    "so those stay readable",
                    markup=False,
                )
            relay = bool(settings.kafka_bootstrap)
            if relay:
                _relay_erasure(settings, store, customer)
        what = "customer.erased sealed" if done.sealed else "customer.erased was already sealed"
        key = f"data key {done.kid} destroyed" if done.kid else "it never had a data key"
        relayed = f", relayed to {settings.ledger_topic}" if relay else ""
        out.print(f"forgot customer {customer!r}: {key}, {what}{relayed}")

    @app.command()
    def history(
        ctx: typer.Context,
        customer: Annotated[str, typer.Argument(help="The customer_id whose events to list.")],
        with_text: Annotated[
            bool, typer.Option("--with-text", help="Decrypt the personal fields (needs the keys).")
        ] = False,
        fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    ) -> None:
        """One customer's sealed events in order; personal fields only with --with-text."""
        settings = settings_of(ctx)
        keys = open_keys(settings) if with_text else None
        rows: list[dict[str, Any]] = []
        try:
            with open_store(settings, read_only=True) as store:
                events = store.stream(customer)
            if not events:
                raise StoreError(f"the ledger holds no customer {customer!r}")
            forgotten = any(event.type == ERASED_TYPE for event in events)
            for event in events:
                row = event.history_row()
                if keys is not None:
                    body, erased = reveal(event.body, None if forgotten else keys)
                    fields = PERSONAL_FIELDS.get(event.type, ())
                    if fmt is Format.table:
                        row["text"] = _text_of(body, fields)
                    else:
                        row["text"] = {f: body["data"].get(f) for f in fields}
                        row["erased_fields"] = erased
                rows.append(row)
        finally:
            if keys is not None:
                keys.close()
        emit_rows(rows, fmt, title=f"history of customer {customer}")

    @app.command("reveal")
    def reveal_command(
        ctx: typer.Context,
        source: Annotated[
            Path,
            typer.Argument(help="JSON lines of ledger-topic records; - for standard input."),
        ] = Path("-"),
    ) -> None:
        """Decrypt the personal fields of ledger-topic records (JSON lines), for authorised readers.

        Each record is written back as one JSON line with its ``event`` decrypted and an
        ``erased_fields`` list naming the fields whose customer was erased.
        """
        settings = settings_of(ctx)
        if str(source) != "-" and not source.is_file():
            raise ConfigError(f"{source}: no such file")
        with open_keys(settings) as keys:
            for number, record in _records(source):
                event = record.get("event") if isinstance(record, dict) else None
                if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
                    raise CxlError(
                        f"{source}:{number}: not a ledger-topic record (no event object)"
                    )
                try:
                    body, erased = reveal(event, keys)
                except KeyStoreError as exc:
                    raise KeyStoreError(f"{source}:{number}: {exc}") from exc
                record["event"] = body
                record["erased_fields"] = erased
                sys.stdout.buffer.write(orjson.dumps(record) + b"\n")


PERSONAL_TEXT = "personal_text"
"""The export file of decrypted personal fields (``cxl export --with-text``)."""


def personal_text_table(settings: Settings, destination: Path) -> Any:
    """The decrypted personal fields of every sealed event, as a ``pyarrow`` table in ledger
    order: (position, event_id, customer_id, type, field, text, erased). An erased customer's
    fields have no text and ``erased`` true, also when the key store was restored from a backup
    older than the erasure (the ledger's ``customer.erased`` decides).

    Read before anything is written, so a missing key or KEK fails the export cleanly; refused
    when ``destination`` is under ``CXL_HOME``, which must never hold plaintext."""
    import pyarrow as pa

    home = settings.home.resolve()
    if destination.resolve() == home or home in destination.resolve().parents:
        raise ConfigError(
            f"--to {destination}: --with-text writes decrypted personal data, which must not be "
            f"kept under CXL_HOME ({settings.home}); choose a directory outside it"
        )
    names = ("position", "event_id", "customer_id", "type", "field", "text", "erased")
    rows: list[list[Any]] = []
    sealed_rows: dict[str, list[list[Any]]] = {}
    forgotten: set[str] = set()
    with open_store(settings, read_only=True) as store, open_keys(settings) as keys:
        for page in store.read():
            for event in page:
                if event.type == ERASED_TYPE:
                    forgotten.add(event.customer_id)
                fields = PERSONAL_FIELDS.get(event.type, ())
                if not fields:
                    continue
                body, erased = reveal(event.body, keys)
                for name in fields:
                    value = body["data"].get(name)
                    if value is None:
                        continue
                    path = f"data.{name}"
                    is_erased = path in erased
                    row = [
                        event.position,
                        event.event_id,
                        event.customer_id,
                        event.type,
                        path,
                        None if is_erased else value,
                        is_erased,
                    ]
                    rows.append(row)
                    if is_sealed_field(event.body["data"][name]):
                        sealed_rows.setdefault(event.customer_id, []).append(row)
    for customer_id in forgotten:
        for row in sealed_rows.get(customer_id, ()):
            row[5:] = [None, True]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    return pa.table(columns)


def write_personal_text(settings: Settings, table: Any, directory: Path, fmt: str) -> int:
    """Write ``table`` (``personal_text_table``) to ``directory/personal_text.<fmt>``; its rows."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pa_parquet

    from projections.targets import refuse_protected, replaced_on_success

    target = directory / f"{PERSONAL_TEXT}.{fmt}"
    refuse_protected(target, protected(settings))
    with replaced_on_success(target) as temporary:
        if fmt == "parquet":
            pa_parquet.write_table(table, temporary)
        else:
            pa_csv.write_csv(table, temporary)
    return int(table.num_rows)


def _records(source: Path) -> Iterator[tuple[int, Any]]:
    if str(source) == "-":
        lines: Any = sys.stdin.buffer
    else:
        lines = source.open("rb")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CxlError(f"{source}:{number}: not JSON ({exc})") from None
