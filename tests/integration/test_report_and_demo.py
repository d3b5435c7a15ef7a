"""The report as a person sees it (rendered by headless Chromium) and the one-command demo."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from cxl.synthetic import HistoryGenerator
from ledger.contract import parse_event
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.live import open_caught_up
from projections.report import OUTCOME_COLOURS, provenance, write_report
from tests.events import raw
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.projection_helpers import at

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, (
        "Chromium is required for this test; scripts/test.sh installs it (apt-get install chromium)"
    )
    return found


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    with LedgerStore(str(root / "ledger.sqlite")) as store:
        store.seal(
            [parse_event(raw(e), "t") for e in HistoryGenerator(customers=300, seed=3).events()]
        )
        con = open_caught_up(root / "p.duckdb", store)
        source = provenance(con, store, "verified by the test")
        write_report(con, at("2026-10-01T00:00:00Z"), root / "report.html", source=source)
        con.close()
    return root / "report.html"


def test_the_report_says_what_it_reflects_and_marks_unsettled_months(report: Path) -> None:
    text = report.read_text()
    header = text[text.index("<dl class='provenance'>") : text.index("</dl>")]
    for stated in ("as of", "known at", "ledger range", "checkpoint root", "verified by the test"):
        assert stated in header, stated
    assert "cx-ledger/" in header and "sealed events" in header
    over_time = text[text.index("id='gap-over-time'") : text.index("id='kept-late'")]
    assert "2026-10" in over_time and "incomplete (month not over)" in over_time
    assert "<th>due</th>" in over_time
    assert "id='anomalies'" in text


def test_the_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    for fetches in ("<script", "<link", "<img", "src=", 'href="http', "url(http", "@import"):
        assert fetches not in text, fetches


def test_every_chart_is_drawn_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'u1'}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for chart in (
        "gap-over-time",
        "kept-late",
        "gap-by-team",
        "gap-by-kind",
        "gap-by-channel",
        "anomalies",
        "outcomes",
        "complaints",
        "contact-pressure",
    ):
        start = dom.index(f'data-chart="{chart}"')
        figure = dom[start : dom.index("</figure>", start)]
        assert "<svg" in figure and "<path" in figure, chart

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'u2'}",
            "--window-size=1100,4200",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    pixels = Counter(
        {colour: count for count, colour in image.getcolors(maxcolors=image.width * image.height)}
    )
    for colour in (*OUTCOME_COLOURS[:4], "#00838f", "#6a1b9a", "#ef9a9a"):
        assert pixels[_hex(colour)] > 200, (
            f"{colour} is not painted: a chart is missing from the page"
        )


def test_demo_runs_the_whole_pipeline_on_the_embedded_default(tmp_path: Path) -> None:
    env = cxl_env(Settings(home=tmp_path / "home"))
    env.pop("CXL_KAFKA_BOOTSTRAP", None)
    result = run_cxl(["demo", "--customers", "300"], env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(embedded, memory only)" in result.stdout
    assert "trust gap by team" in result.stdout
    assert (tmp_path / "home" / "report.html").exists()
    again = run_cxl(["demo", "--customers", "300"], env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "sealed 0 (duplicates skipped" in again.stdout
