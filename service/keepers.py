"""The read API for the people who keep promises: at-risk promises, inflation, complaint SLAs and
contact — what ``cxl at-risk``, ``inflation``, ``complaints`` and ``contact`` print with
``--format json``, from the live projections (read keys only)."""

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import Response

from ledger.errors import ConfigError
from ledger.instants import parse_duration
from projections.at_risk import at_risk
from projections.complaint_sla import complaint_sla, parse_groups
from projections.contact_pressure import contact_groups
from projections.explain import parse_where
from projections.inflation import DEFAULT_MONTHS, inflation
from service.app import ApiError, rows_json
from service.reads import AS_OF, KNOWN_AT, instants, named
from service.server import Service

BAD: dict[int | str, dict[str, Any]] = {400: {"description": "A bad parameter."}}


def _checked(parameter: str, parse: Any, *args: Any) -> Any:
    """``parse(*args)``, or a 400 naming ``parameter`` with the CLI's message."""
    try:
        return parse(*args)
    except ConfigError as exc:
        raise ApiError(400, named(exc, parameter), field=parameter) from None


def register_keepers(app: FastAPI, service: Service, reader: Any) -> None:
    settings = service.settings

    def answer(question: Any) -> Response:
        return rows_json(service.projector.ask(question))

    @app.get("/v1/at-risk", responses=BAD)
    def at_risk_promises(
        _: reader,
        as_of: Annotated[str | None, AS_OF] = None,
        known_at: Annotated[str | None, KNOWN_AT] = None,
        horizon: Annotated[
            str | None, Query(description="e.g. 48h, 90m, 7d (default CXL_AT_RISK_HORIZON).")
        ] = None,
        where: Annotated[
            str | None, Query(description="Comma-separated DIMENSION=VALUE.", max_length=1000)
        ] = None,
    ) -> Response:
        """Promises not settled by as_of and due within the horizon after it (as `cxl at-risk`)."""
        within = (
            settings.horizon
            if horizon is None
            else _checked("horizon", parse_duration, horizon, "--horizon")
        )
        filters = _checked("where", parse_where, where)
        instant, known = instants(as_of, known_at)
        return answer(lambda con: at_risk(con, instant, within, known_at=known, where=filters))

    @app.get("/v1/inflation", responses=BAD)
    def promise_inflation(
        _: reader,
        as_of: Annotated[str | None, AS_OF] = None,
        known_at: Annotated[str | None, KNOWN_AT] = None,
        by: Annotated[
            str, Query(description="made_by, channel, kind or on_behalf_of.")
        ] = "made_by",
        months: Annotated[int, Query(ge=1, le=24)] = DEFAULT_MONTHS,
    ) -> Response:
        """Promises made vs kept on time per month, with the inflation index (as `cxl inflation`)."""
        instant, known = instants(as_of, known_at)
        return answer(lambda con: _checked("by", inflation, con, instant, by, months, known))

    @app.get("/v1/complaints", responses=BAD)
    def complaints(
        _: reader,
        as_of: Annotated[str | None, AS_OF] = None,
        known_at: Annotated[str | None, KNOWN_AT] = None,
        by: Annotated[
            str | None,
            Query(
                description="severity, channel, category, made_by, on_behalf_of.", max_length=200
            ),
        ] = None,
    ) -> Response:
        """Complaint handling against the SLA targets (as `cxl complaints`)."""
        groups = _checked("by", parse_groups, by)
        instant, known = instants(as_of, known_at)
        targets = settings.complaint_targets
        return answer(lambda con: complaint_sla(con, instant, targets, groups, known))

    @app.get("/v1/contact", responses=BAD)
    def contact(
        _: reader,
        as_of: Annotated[str | None, AS_OF] = None,
        known_at: Annotated[str | None, KNOWN_AT] = None,
    ) -> Response:
        """Saturated customers, inbound that met only machines, complaint rates (as `cxl contact`)."""
        instant, known = instants(as_of, known_at)
        saturation = settings.contact_saturation
        return answer(lambda con: contact_groups(con, instant, saturation, known))
