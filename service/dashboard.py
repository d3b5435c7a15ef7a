"""The live dashboard: the report's figures, charts and tables from the live projections,
refreshed by the page itself, with the as-of instant and the ledger's verification state.

The page and its assets are static and served from this package (no CDN); the figures come from
``GET /v1/dashboard`` with a read key, which the page takes from its address (``/#key=…``, never
sent to the server in a URL) or asks for, and keeps for the browser tab only. A render is reused
while the projections have not moved and it is younger than ``FRESH_S``: charts cost a few hundred
milliseconds, and any number of open pages must not multiply that.
"""

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from projections.keeper_report import Thresholds
from projections.report import CSS, provenance, report_body
from service.app import ApiError
from service.server import Service

FRESH_S = 10.0
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class _Render:
    position: int
    made: float
    payload: dict[str, Any]


class DashboardRenderer:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._last: _Render | None = None
        self._lock = threading.Lock()

    def current(self) -> dict[str, Any]:
        projector = self.service.projector
        with self._lock:
            last = self._last
            if (
                last is not None
                and last.position == projector.position
                and time.monotonic() - last.made < FRESH_S
            ):
                return last.payload
            as_of = datetime.now(UTC)
            verification = self.service.verifier.last
            state = "first verification running" if verification is None else verification.summary
            cursor = projector.cursor()
            try:
                source = self.service.ledger.ask(lambda store: provenance(cursor, store, state))
                body = report_body(
                    cursor, as_of, None, source, Thresholds.of(self.service.settings)
                )
            finally:
                cursor.close()
            payload = {
                "as_of": as_of.isoformat(),
                "through_position": source.through_position,
                "ledger_position": projector.ledger_position,
                "verification": {
                    "ok": None if verification is None else verification.ok,
                    "at": None if verification is None else verification.at.isoformat(),
                    "events": None if verification is None else verification.position,
                    "summary": state,
                },
                "body": body,
            }
            self._last = _Render(source.through_position, time.monotonic(), payload)
            return payload


def register_dashboard(app: FastAPI, service: Service, reader: Any) -> None:
    renderer = DashboardRenderer(service)
    assets = files("service") / "static"
    page = (assets / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_page() -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": _POLICY})

    @app.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name == "report.css":
            return Response(CSS, media_type="text/css; charset=utf-8")
        if name not in _ASSETS:
            raise ApiError(404, f"no asset {name!r}")
        return Response((assets / name).read_bytes(), media_type=_ASSETS[name])

    @app.get("/v1/dashboard")
    def dashboard(_: reader) -> Response:
        """The dashboard's content now: report body (HTML), as-of instant, positions and the
        last verification."""
        return JSONResponse(renderer.current(), headers={"Cache-Control": "no-store"})
