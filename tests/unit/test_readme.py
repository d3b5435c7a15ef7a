"""The README's promises about commands stay true (the docs cannot rot silently)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from cxl.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _first_block() -> list[str]:
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_the_readme_opens_with_the_setup_commands() -> None:
    demo, tests, serve = _first_block()
    assert demo.endswith("cxl demo")
    assert tests == "bash scripts/test.sh"
    assert serve.endswith("cxl serve")
    assert (ROOT / "scripts" / "test.sh").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nbash scripts/test.sh\n" in ci


def test_every_command_the_readme_documents_exists() -> None:
    documented = set(re.findall(r"^\| `cxl ([\w-]+)", README, flags=re.M))
    assert {
        "demo",
        "ingest",
        "publish",
        "consume",
        "relay",
        "broker",
        "verify",
        "gap",
        "replay",
        "sql",
        "export",
        "report",
        "serve",
        "keys",
    } <= documented
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert documented <= commands


def test_every_setting_the_readme_documents_exists() -> None:
    from ledger.settings import Settings

    documented = set(re.findall(r"`CXL_([A-Z_]+)`", README)) - {
        "TEST_KAFKA_BOOTSTRAP",
        "TEST_PG_RESTART",
    }
    fields = {name.upper() for name in Settings.model_fields}
    assert documented <= fields, documented - fields


def test_every_setting_has_a_cli_flag() -> None:
    from ledger.settings import Settings

    root = get_command(app)
    serve = root.commands["serve"]  # type: ignore[attr-defined]
    flags = {opt for command in (root, serve) for param in command.params for opt in param.opts}
    aliases = {
        "http_host": "--host",
        "http_port": "--port",
        "kafka_bootstrap": "--bootstrap",
        "ingest_workers": "--workers",
        "kafka_timeout_s": "--kafka-timeout",
        "checkpoint_interval_s": "--checkpoint-interval",
        "alerts_interval_s": "--alerts-interval",
        "group_session_timeout_s": "--group-session-timeout",
        "group_heartbeat_s": "--group-heartbeat",
        "group_max_poll_interval_s": "--group-max-poll-interval",
        "group_join_timeout_s": "--group-join-timeout",
        "store_statement_timeout_s": "--store-statement-timeout",
        "store_connect_timeout_s": "--store-connect-timeout",
    }
    for name in Settings.model_fields:
        assert aliases.get(name, "--" + name.replace("_", "-")) in flags, name
