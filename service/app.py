"""The HTTP API of ``cxl serve`` (FastAPI): ingest, reads, the dashboard and operations.

Errors are JSON ``{"error": "..."}`` with a 4xx status for anything a client sent; a 5xx only
when the ledger itself cannot answer (503 with ``Retry-After`` for a broker or projections that are
not there yet). Read responses have the JSON shapes of the CLI's ``--format json``; pages of
history and dead letters link the next one in a ``Link`` header (RFC 8288).
"""

import json
import logging
import math
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.contract import json_schemas
from ledger.errors import BrokerUnavailableError, ConfigError, CxlError, StoreError
from ledger.instants import parse_instant
from projections.errors import ProjectionsError, QueryError
from service.access import AccessKeyError, ApiKey
from service.intake import BodyError, SourceMismatchError, split_items
from service.metrics import exposition
from service.server import Service

log = logging.getLogger("cxl.serve")
RETRY_AFTER_S = 5


class ApiError(Exception):
    """A response other than success, with its status, message and headers."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def rows_json(rows: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Rows serialised exactly as ``cxl … --format json`` prints them."""
    return Response(
        json.dumps(rows, default=str), status, headers=headers, media_type="application/json"
    )


def parse_instant_param(text: str | None, name: str) -> datetime | None:
    """An instant query parameter (absent or empty: None), a 400 naming it when it is not one."""
    if text is None or text == "":
        return None
    try:
        return parse_instant(text, name)
    except ConfigError as exc:
        raise ApiError(400, str(exc), field=name) from None


class Timing:
    """ASGI middleware: request latency by route template and status, and one log line each."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.service.latency.observe(scope["method"], route, status, seconds)
            # As sent (percent-encoded), and escaped: a request cannot write lines into the log.
            path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            path = path.encode("unicode_escape").decode("ascii")
            log.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "%s %s %d %.1f ms",
                scope["method"],
                path,
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "key_id": scope.get("state", {}).get("key_id"),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )


EVENTS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                ]
            }
        }
    },
}

ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def create_app(service: Service) -> FastAPI:
    settings = service.settings
    app = FastAPI(
        title="cx-ledger",
        version="1",
        description="Promises, complaints and touchpoints: sealed, verified, projected.",
        openapi_url="/openapi.json",
        docs_url=None,  # Swagger UI and ReDoc load their code from a CDN: nothing here does
        redoc_url=None,
        responses={
            401: {"description": "No API key, or an unknown or revoked one.", **ERROR},
            403: {"description": "The wrong kind of key for this request.", **ERROR},
            429: {"description": "Over the key's rate limit: see Retry-After.", **ERROR},
        },
    )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return JSONResponse(
            {"error": exc.message, **exc.extra}, exc.status, headers=exc.headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or str(first["loc"][0])
        return JSONResponse({"error": f"{where}: {first['msg']}", "field": where}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(CxlError)
    async def cxl_error(_: Request, exc: CxlError) -> Response:
        if isinstance(exc, AccessKeyError):
            log.error("%s", exc)
            return JSONResponse(
                {"error": "the server cannot read its API keys; see its log"},
                503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if isinstance(exc, BrokerUnavailableError):
            status = 503
        elif isinstance(exc, ConfigError | QueryError):
            status = 400
        elif isinstance(exc, ProjectionsError | StoreError):
            status = 503
        else:
            status = 500
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONResponse({"error": " ".join(str(exc).split())}, status, headers=headers)

    bearer = HTTPBearer(auto_error=False, description="A key from `cxl keys add`.")

    def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey:
        challenge = {"WWW-Authenticate": 'Bearer realm="cx-ledger"'}
        if credentials is None or not credentials.credentials.strip():
            raise ApiError(401, "send an API key: Authorization: Bearer <key>", challenge)
        key = service.access.authenticate(credentials.credentials.strip())
        if key is None:
            raise ApiError(401, "unknown or revoked API key", challenge)
        request.scope.setdefault("state", {})["key_id"] = key.id
        wait = service.limiter.wait_needed(key)
        if wait > 0:
            raise ApiError(
                429,
                f"rate limit of key {key.id}: {key.rate_per_s:g} requests/s",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return key

    def writer(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        if key.can_read:
            raise ApiError(403, f"key {key.id} is a read key; publishing needs a write key")
        return key

    def reader(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        if not key.can_read:
            raise ApiError(403, f"key {key.id} is a write key; reading needs a read key")
        return key

    Writer = Annotated[ApiKey, Depends(writer)]
    Reader = Annotated[ApiKey, Depends(reader)]

    # -- ingest -------------------------------------------------------------------------------

    @app.post(
        "/v1/events",
        status_code=202,
        openapi_extra={"requestBody": EVENTS_BODY},
        responses={
            202: {"description": "Every event appended and confirmed by the broker."},
            400: {"description": "The body is not JSON, or not events.", **ERROR},
            401: {"description": "No or unknown API key.", **ERROR},
            403: {"description": "Not this key's source, or a read key.", **ERROR},
            413: {"description": "Body larger than CXL_HTTP_MAX_BODY_BYTES.", **ERROR},
            415: {"description": "Not application/json.", **ERROR},
            422: {"description": "Some events invalid; the valid ones were appended."},
            429: {"description": "Rate limit of the key.", **ERROR},
            503: {"description": "Broker unavailable: retry after Retry-After.", **ERROR},
        },
    )
    async def post_events(request: Request, key: Writer) -> Response:
        """Append one event, or an array of up to CXL_HTTP_MAX_EVENTS, to the events topic."""
        kind, _, parameters = request.headers.get("content-type", "").partition(";")
        charset = parameters.strip().lower().removeprefix("charset=").strip('"')
        if kind.strip().lower() != "application/json" or charset not in ("", "utf-8"):
            raise ApiError(415, "send Content-Type: application/json (UTF-8)")
        limit = settings.http_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body is {int(declared):,} bytes; the limit is {limit:,}")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise ApiError(413, f"the body is over the limit of {limit:,} bytes")
        except ClientDisconnect:
            raise ApiError(400, "the client went away before the whole body arrived") from None
        try:
            items = split_items(bytes(body), settings.http_max_events)
        except BodyError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            result = await run_in_threadpool(service.intake.submit, items, key.source)
        except SourceMismatchError as exc:
            raise ApiError(403, str(exc), index=exc.index) from None
        service.http.accepted += len(result.accepted)
        service.http.rejected += len({e.index for e in result.errors})
        if result.errors:
            return JSONResponse(
                {
                    "accepted": result.accepted,
                    "errors": [
                        {"index": e.index, "field": e.field, "reason": e.reason}
                        for e in result.errors
                    ],
                },
                422,
            )
        return JSONResponse({"accepted": result.accepted}, 202)

    # -- operations ---------------------------------------------------------------------------

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, Any]:
        """The process is up."""
        return {"status": "up", "uptime_s": round(time.time() - service.started_at, 1)}

    @app.get("/readyz", responses={503: {"description": "Not ready: see the checks."}})
    def readyz() -> Response:
        """Broker and store reachable, projections within CXL_SERVE_MAX_LAG of the ledger."""
        checks = service.readiness()
        return JSONResponse(checks, 200 if checks["ok"] else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(
            exposition(service.registry), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    from service.dashboard import register_dashboard
    from service.keepers import register_keepers
    from service.reads import register_reads

    register_reads(app, service, Reader)
    register_keepers(app, service, Reader)
    register_dashboard(app, service, Reader)
    _add_schemas(app)
    app.add_middleware(Timing, service=service)
    return app


def _add_schemas(app: FastAPI) -> None:
    """Put the contract's JSON Schemas into the OpenAPI document (the body of ``POST /v1/events``)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        variants = []
        for name, schema in json_schemas().items():
            key = "Event_" + name.removesuffix(".json").replace(".", "_")
            schema = json.loads(
                json.dumps(
                    {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
                ).replace('"#/$defs/', '"#/components/schemas/')
            )
            components.update(schema.pop("$defs", {}))
            components[key] = schema
            variants.append({"$ref": f"#/components/schemas/{key}"})
        components["Event"] = {"oneOf": variants}
        components["Error"] = {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
