"""The README's backup and restore of a PostgreSQL ledger: ``pg_dump`` of its schema, restored into
another database, is proved to be the same ledger by ``cxl verify --checkpoint``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from ledger.settings import Settings
from tests.events import event_dict, write_jsonl
from tests.integration.conftest import POSTGRES_ADMIN, cxl_env, run_cxl

pytestmark = pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump")


def test_a_restored_dump_verifies_against_a_checkpoint_of_the_original(
    settings: Settings, tmp_path: Path, postgres_url: str, postgres_database: str
) -> None:
    schema = parse_qs(urlparse(postgres_url).query)["schema"][0]
    env = cxl_env(settings, CXL_STORE=postgres_url)
    events = tmp_path / "events.jsonl"
    write_jsonl(
        events,
        [event_dict(customer_id=f"c{n % 7}", promise_id=f"p{n}") for n in range(50)],
    )
    assert run_cxl(["ingest", str(events)], env).returncode == 0
    checkpoint = tmp_path / "kept.checkpoint"
    made = run_cxl(["checkpoint", "--to", str(checkpoint)], env)
    assert made.returncode == 0, made.stderr

    dump = tmp_path / "ledger.dump"
    admin = urlparse(POSTGRES_ADMIN)
    connection = ["-h", admin.hostname or "", "-p", str(admin.port), "-U", admin.username or ""]
    subprocess.run(
        [
            "pg_dump",
            *connection,
            "-d",
            admin.path.lstrip("/"),
            "-n",
            schema,
            "-Fc",
            "-f",
            str(dump),
        ],
        check=True,
    )
    subprocess.run(
        ["pg_restore", *connection, "-d", postgres_database, "--no-owner", str(dump)], check=True
    )

    restored_url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{postgres_database}?schema={schema}"
    restored = cxl_env(settings, CXL_STORE=restored_url)
    proved = run_cxl(["verify", "--checkpoint", str(checkpoint)], restored)
    assert proved.returncode == 0, proved.stderr
    assert "ok 50 events, 7 customers" in proved.stdout
