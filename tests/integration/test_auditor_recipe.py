"""The README's recipe recomputes every chain from ``cx.ledger`` records without cx-ledger's code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from consumers.relay import ledger_record
from ledger.store import LedgerStore
from tests.events import valid

README = Path(__file__).resolve().parents[2] / "README.md"


def _recipe() -> str:
    found = re.search(
        r"<!-- auditor-recipe -->\n```python\n(.*?)```\n<!-- /auditor-recipe -->",
        README.read_text(),
        re.S,
    )
    assert found, "the README lost its auditor recipe"
    return found.group(1)


def _run(tmp_path: Path, lines: list[bytes]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "recompute.py"
    script.write_text(_recipe())
    dump = tmp_path / "ledger.jsonl"
    dump.write_bytes(b"\n".join(lines) + b"\n")
    return subprocess.run(
        [sys.executable, "-I", str(script), str(dump)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _relayed(tmp_path: Path) -> list[bytes]:
    with LedgerStore(str(tmp_path / "l.sqlite")) as store:
        store.seal(
            [
                valid(customer_id="c1", promise_id="p1", weight=0.000001, description='é\n\t"x"'),
                valid("promise.kept", customer_id="c1", promise_id="p1", fraction=0.25),
                valid("touchpoint.recorded", customer_id="c2", duration_s=12.0),
            ]
        )
        store.seal([valid("complaint.filed", customer_id="c2", promise_ids=["p1"])])
        return [ledger_record(e) for page in store.read() for e in page]


def test_the_readme_recipe_recomputes_every_chain_without_our_code(tmp_path: Path) -> None:
    recipe = _recipe()
    assert not re.search(r"^\s*(import|from)\s+(ledger|consumers|projections|cxl)\b", recipe, re.M)
    lines = _relayed(tmp_path)
    result = _run(tmp_path, lines + lines[:2])  # with repeats, as an at-least-once relay delivers
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 4 events, 2 customers"


def test_the_readme_recipe_catches_an_edited_record(tmp_path: Path) -> None:
    lines = _relayed(tmp_path)
    edited = orjson.loads(lines[1])
    edited["event"]["data"]["fraction"] = 0.5
    result = _run(tmp_path, [lines[0], orjson.dumps(edited), *lines[2:]])
    assert result.returncode != 0
    assert "c1 seq 2: hash" in result.stderr
