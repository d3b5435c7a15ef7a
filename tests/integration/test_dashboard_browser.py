"""The live dashboard in headless Chromium (Debian's package, driven by Playwright): it renders
its charts from the live projections, states the as-of instant and the verification, loads
nothing from elsewhere, fits a laptop screen, and moves by itself when events arrive."""

from __future__ import annotations

import re
import shutil
import time
import uuid

import pytest

from tests.events import event_dict
from tests.integration.serve_helpers import Served, post

pytestmark = pytest.mark.integration


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is required; scripts/test.sh installs it (apt-get install chromium)")
    return found


def test_the_dashboard_renders_and_moves_when_events_arrive(served: Served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    team = f"dash-{uuid.uuid4().hex[:6]}"
    seed = [
        event_dict(
            "promise.made",
            customer_id=f"{team}-c",
            occurred_at="2026-01-05T10:00:00Z",
            made_by=team,
            due_at="2026-01-20T10:00:00Z",
            promise_id=f"{team}-seed-{i}",
        )
        for i in range(3)
    ]
    with served.writes() as client:
        assert post(client, seed).status_code == 202
    served.wait_sealed([e["event_id"] for e in seed])
    # The server is shared with the other tests of this worker: what the page must show once the
    # seed is projected is the server's own figure then, not the seed's alone.
    with served.reads() as client:
        seeded_at = max(client.get(f"/v1/proof/{e['event_id']}").json()["position"] for e in seed)
        deadline = time.monotonic() + 60
        while client.get("/v1/dashboard").json()["through_position"] < seeded_at:
            assert time.monotonic() < deadline, "the seed was never projected"
            time.sleep(0.5)
        seeded = f"{round(client.get('/v1/gap').json()[0]['made']):,}"

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("request", lambda request: requested.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{served.url}/#key={served.read_key}")
            page.wait_for_selector("#report figure.chart svg", timeout=60_000)
            assert page.locator("#report figure.chart svg").count() >= 6
            assert "key=" not in page.url  # the key leaves the address bar at once
            assert re.match(r"\d{4}-\d\d-\d\dT", page.locator("#as-of").inner_text())
            page.wait_for_selector("#verification.ok", timeout=60_000)
            assert "verify ok" in page.locator("#verification").inner_text()
            # Sealed is not yet projected: the page moves once the projection has the seed.
            page.wait_for_function(
                "seeded => document.querySelector(\"[data-kpi='promises-made'] b\")"
                ".textContent === seeded",
                arg=seeded,
                timeout=60_000,
            )
            made = page.locator("[data-kpi='promises-made'] b")
            before = made.inner_text()

            more = [
                event_dict(
                    "promise.made",
                    customer_id=f"{team}-c",
                    occurred_at="2026-01-06T10:00:00Z",
                    made_by=team,
                    due_at="2026-01-21T10:00:00Z",
                    promise_id=f"{team}-more-{i}",
                    weight=5,
                )
                for i in range(4)
            ]
            with served.writes() as client:
                assert post(client, more).status_code == 202
            page.wait_for_function(
                "before => document.querySelector(\"[data-kpi='promises-made'] b\")"
                ".textContent !== before",
                arg=before,
                timeout=60_000,
            )
            after = made.inner_text()
            assert int(after.replace(",", "")) == int(before.replace(",", "")) + 20
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{overflow}px wider than a 1366px laptop screen"
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=False)
            assert not errors, errors
        finally:
            browser.close()
    elsewhere = [url for url in requested if not url.startswith(served.url)]
    assert not elsewhere, elsewhere
