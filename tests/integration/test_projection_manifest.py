"""Exports and replays carry a manifest; ``verify --projections`` rebuilds them from the ledger and
names the first table that differs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import duckdb
import pytest

from cxl.synthetic import HistoryGenerator
from ledger.settings import Settings
from tests.events import write_jsonl
from tests.integration.conftest import cxl_env, run_cxl


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek")
    env = cxl_env(settings)
    write_jsonl(tmp_path / "h.jsonl", HistoryGenerator(customers=40, seed=5).events())
    assert run_cxl(["ingest", str(tmp_path / "h.jsonl")], env).returncode in (0, 3)
    return env


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_states_its_ledger_range_and_verifies_against_a_rebuild(
    env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out"
    assert run_cxl(["export", "--to", str(out), "--format", fmt], env).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    checkpoint = run_cxl(["checkpoint", "--to", str(tmp_path / "c.txt")], env)
    size, root = (tmp_path / "c.txt").read_text().splitlines()[1:3]
    assert (manifest["ledger"]["events"], manifest["ledger"]["root"]) == (int(size), root)
    assert checkpoint.returncode == 0 and base64.b64decode(root)
    assert set(manifest["tables"]) == {
        "promises",
        "promise_events",
        "complaint_events",
        "touchpoints",
        "ledger_events",
    }
    assert run_cxl(["verify", "--projections", str(out)], env).returncode == 0

    target = out / f"promise_events.{fmt}"
    if fmt == "csv":
        lines = target.read_text().splitlines()
        target.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    else:
        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT * FROM '{target}' ORDER BY ALL OFFSET 1) TO '{target}.x' (FORMAT parquet)"
        )
        Path(f"{target}.x").replace(target)
    edited = run_cxl(["verify", "--projections", str(out)], env)
    assert edited.returncode == 4, edited.stdout
    assert f"promise_events.{fmt} differs from a rebuild" in edited.stderr


def test_a_replay_carries_its_instant_and_knowledge_and_catches_an_edited_table(
    env: dict[str, str], tmp_path: Path
) -> None:
    replayed = tmp_path / "r.duckdb"
    made = run_cxl(
        [
            "replay",
            "--as-of",
            "2026-04-01T00:00:00Z",
            "--known-at",
            "2099-01-01T00:00:00Z",
            "--to",
            str(replayed),
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    con = duckdb.connect(str(replayed))
    try:
        (text,) = con.execute("SELECT manifest FROM projection_manifest").fetchone()
        manifest = json.loads(text)
        assert manifest["as_of"] == "2026-04-01T00:00:00.000000Z"
        assert manifest["known_at"] == "2099-01-01T00:00:00.000000Z"
        assert manifest["projection_schema"] == 2 and manifest["cx_ledger"]
    finally:
        con.close()
    assert run_cxl(["verify", "--projections", str(replayed)], env).returncode == 0
    con = duckdb.connect(str(replayed))
    try:
        con.execute(
            "UPDATE promises SET weight = weight * 2 WHERE promise_id = "
            "(SELECT min(promise_id) FROM promises)"
        )
    finally:
        con.close()
    edited = run_cxl(["verify", "--projections", str(replayed)], env)
    assert edited.returncode == 4 and "table promises in it differs" in edited.stderr
    missing = run_cxl(["verify", "--projections", str(tmp_path / "nope")], env)
    assert missing.returncode == 2 and "--projections" in missing.stderr
