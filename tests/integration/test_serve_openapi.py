"""API contract tests generated from ``cxl serve``'s own OpenAPI document by schemathesis (its
CLI, run against the live server): whatever the generated parameters and bodies — valid, invalid,
edge cases — the server never answers with a 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serve_helpers import Served

pytestmark = pytest.mark.integration

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.mark.parametrize(
    ("methods", "examples"),
    [(["--include-method", "POST"], 50), (["--exclude-method", "POST"], 12)],
    ids=["ingest", "reads-and-operations"],
)
def test_no_generated_request_gets_a_server_error(
    served: Served, methods: list[str], examples: int, tmp_path: Path
) -> None:
    key = served.write_key if "--include-method" in methods else served.read_key
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            served.url + "/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            *methods,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(examples),
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the repository
    )
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts is not None and counts.group(1) == counts.group(2), summary
    assert int(counts.group(1)) >= 100, summary
    print(f"schemathesis {methods}: {counts.group(0)}")
