"""The read API: what ``cxl gap``, ``explain``, ``history``, ``verify``, ``proof`` and the
checkpoints answer, over HTTP, from the live projections and the ledger (read keys only)."""

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response

from consumers.dead_letters import NoSuchPartitionError, read_dead_letters
from ledger.contract import PERSONAL_FIELDS
from ledger.errors import ConfigError, StoreError
from ledger.proofs import inclusion_proof, signed_checkpoint
from projections.explain import STATUSES, parse_where
from projections.explain import explain as explain_promises
from projections.trust_gap import parse_dimensions, trust_gap
from service.app import ApiError, parse_instant_param, rows_json
from service.server import Service

AS_OF = Query(description="RFC 3339 instant with offset (default: now).", max_length=64)
KNOWN_AT = Query(
    description="Count only events sealed by this instant (default: everything sealed).",
    max_length=64,
)


def _next_link(request: Request, **params: Any) -> dict[str, str]:
    query = urlencode({**request.query_params, **{k: str(v) for k, v in params.items()}})
    return {"Link": f'<{request.url.path}?{query}>; rel="next"'}


WITHHELD = "[personal text withheld]"
_PERSONAL_NAMES = frozenset(name for names in PERSONAL_FIELDS.values() for name in names)


def _withhold_personal_text(row: dict[str, Any]) -> None:
    """Dead letters are the raw records, personal text in plaintext included (never sealed, so
    never encrypted): a read key sees them with the free-text fields replaced, named in
    ``withheld_fields``. The rest stays as sent, to show what was wrong with it."""
    row["withheld_fields"] = []
    if row["value_encoding"] != "utf-8":
        return
    try:
        record = json.loads(row["value"])
    except (ValueError, RecursionError):  # what was dead-lettered need not be JSON at all
        return
    data = record.get("data") if isinstance(record, dict) else None
    if not isinstance(data, dict):
        return
    withheld = sorted(name for name in _PERSONAL_NAMES if name in data)
    for name in withheld:
        data[name] = WITHHELD
    if withheld:
        row["value"] = json.dumps(record, ensure_ascii=False)
        row["withheld_fields"] = [f"data.{name}" for name in withheld]


def instants(as_of: str | None, known_at: str | None) -> tuple[datetime, datetime | None]:
    """``as_of`` (absent: now) and ``known_at`` (absent: everything sealed), or a 400 naming one."""
    instant = parse_instant_param(as_of or "now", "as_of")
    assert instant is not None
    return instant, parse_instant_param(known_at, "known_at")


def named(error: Exception, parameter: str) -> str:
    """A message written for the CLI's ``--flag``, naming the query parameter instead."""
    return str(error).replace(f"--{parameter}", parameter)


def register_reads(app: FastAPI, service: Service, reader: Any) -> None:
    @app.get("/v1/gap", responses={400: {"description": "A bad parameter."}})
    def gap(
        _: reader,
        as_of: Annotated[str | None, AS_OF] = None,
        known_at: Annotated[str | None, KNOWN_AT] = None,
        by: Annotated[
            str | None,
            Query(
                description="Comma-separated: made_by, channel, kind, due_month, customer, on_behalf_of.",
                max_length=200,
            ),
        ] = None,
    ) -> Response:
        """The trust gap as of an instant, grouped as asked (as `cxl gap --format json`)."""
        try:
            dims = parse_dimensions(by)
        except ConfigError as exc:
            raise ApiError(400, named(exc, "by"), field="by") from None
        instant, known = instants(as_of, known_at)
        return rows_json(service.projector.ask(lambda con: trust_gap(con, instant, dims, known)))

    @app.get("/v1/explain", responses={400: {"description": "A bad parameter."}})
    def explain(
        _: reader,
        as_of: Annotated[str | None, AS_OF] = None,
        known_at: Annotated[str | None, KNOWN_AT] = None,
        where: Annotated[
            str | None,
            Query(
                description="Comma-separated DIMENSION=VALUE (made_by, channel, kind, due_month, "
                "customer).",
                max_length=1000,
            ),
        ] = None,
        status: Annotated[str | None, Query(description=", ".join(STATUSES), max_length=32)] = None,
    ) -> Response:
        """The promises behind a gap figure, with their sealed events (as `cxl explain`)."""
        try:
            filters = parse_where(where)
        except ConfigError as exc:
            raise ApiError(400, named(exc, "where"), field="where") from None
        instant, known = instants(as_of, known_at)
        cursor = service.projector.cursor()
        try:
            promises = explain_promises(
                cursor, instant, known_at=known, where=filters, status=status
            )
        except ConfigError as exc:
            raise ApiError(400, named(exc, "status"), field="status") from None
        finally:
            cursor.close()
        return rows_json(promises)

    @app.get(
        "/v1/customers/{customer_id:path}/history",
        responses={404: {"description": "No such customer."}},
    )
    def history(
        request: Request,
        _: reader,
        customer_id: Annotated[str, Path(min_length=1, max_length=128)],
        after_seq: Annotated[int, Query(ge=0, le=2**53, description="Events after this seq.")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """A customer's sealed events with their hashes, in order (as `cxl history`), paginated:
        the ``Link`` header names the next page."""
        events = service.ledger.ask(
            lambda store: (
                store.stream(customer_id, after_seq=after_seq, limit=limit + 1)
                or store.stream(customer_id, limit=1)
            )  # none after it: is there such a customer?
        )
        if not events:
            raise ApiError(404, f"the ledger holds no customer {customer_id!r}")
        page = [e for e in events if e.seq > after_seq][:limit]
        headers = {}
        if len(page) == limit and events[-1].seq > page[-1].seq:
            headers = _next_link(request, after_seq=page[-1].seq)
        return rows_json([e.history_row() for e in page], headers=headers)

    @app.get("/v1/verify", responses={409: {"description": "The ledger does not verify."}})
    def verify(_: reader) -> Response:
        """The last verification of the whole ledger (as `cxl verify --format json`); re-run by
        the server whenever the ledger grew. Headers say when and through which position."""
        last = service.verifier.last
        if last is None:
            raise ApiError(503, "the first verification is still running", {"Retry-After": "5"})
        headers = {
            "X-Cxl-Verified-At": last.at.isoformat(),
            "X-Cxl-Verified-Events": str(last.position),
        }
        if last.row is None:
            raise ApiError(409, last.summary, headers)
        return rows_json([last.row], headers=headers)

    @app.get(
        "/v1/checkpoints/latest",
        response_class=PlainTextResponse,
        responses={404: {"description": "Nothing sealed yet."}},
    )
    def latest_checkpoint(_: reader) -> Response:
        """The latest signed checkpoint (C2SP signed note), as published to the checkpoints topic;
        before the first one, a checkpoint of the ledger now, signed with the same key."""
        checkpoints = service.ingest.checkpoints
        note = None if checkpoints is None else checkpoints.last_note
        if note is None:
            from ledger.checkpoint import CheckpointSigner

            signer = CheckpointSigner(service.settings.checkpoint_key_path)

            def sign_now(store: Any) -> str | None:
                if store.recorder.tree_size() == 0:
                    return None
                return signed_checkpoint(store, signer)[1]

            note = service.ledger.ask(sign_now)
            if note is None:
                raise ApiError(404, "nothing is sealed yet: there is no checkpoint")
        return PlainTextResponse(note)

    @app.get("/v1/proof/{event_id}", responses={404: {"description": "No such sealed event."}})
    def proof(_: reader, event_id: Annotated[str, Path(min_length=1, max_length=128)]) -> Response:
        """The RFC 9162 inclusion proof of a sealed event in today's tree (as `cxl proof`)."""
        try:
            return rows_json(
                service.ledger.ask(lambda store: inclusion_proof(store, event_id, None))
            )
        except StoreError as exc:
            raise ApiError(404, str(exc)) from None

    @app.get("/v1/dead-letters", responses={404: {"description": "No such partition."}})
    def dead_letters(
        request: Request,
        _: reader,
        partition: Annotated[int, Query(ge=0, le=1023)] = 0,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Rejected records with their reasons, one partition of the dead-letter topic at a time,
        oldest first; the ``Link`` header names the next page (next offset, or next partition)."""
        settings = service.settings
        try:
            page = read_dead_letters(
                service.bootstrap,
                settings.dlq_topic,
                partition,
                offset,
                limit,
                settings.kafka_timeout_s,
            )
        except NoSuchPartitionError as exc:
            raise ApiError(404, str(exc), field="partition") from None
        for row in page.rows:
            _withhold_personal_text(row)
        headers = {}
        if len(page.rows) == limit:
            headers = _next_link(request, partition=partition, offset=page.next_offset)
        elif partition + 1 < settings.partitions:
            headers = _next_link(request, partition=partition + 1, offset=0)
        return rows_json(page.rows, headers=headers)
