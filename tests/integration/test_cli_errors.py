"""Every failure of the real `cxl` is one line on stderr with its documented exit code.

Each case runs the entry point in a child process, as a user would, with ``CXL_HOME`` in a
temporary directory and no ``CXL_KAFKA_BOOTSTRAP`` (so nothing waits for a broker). ``{tmp}`` in an
argument or a variable stands for the test's temporary directory.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cxl import cli
from ledger.keys import KeyStore
from ledger.personal import PersonalCipher
from ledger.store import LedgerStore
from tests.events import valid

NOT_A_FILE = "{tmp}/a-directory"
GARBAGE_HOME = "{tmp}/garbage-home"  # holds a ledger.sqlite that is not a SQLite database
NOT_DUCKDB = "{tmp}/not.duckdb"
AS_OF = ["--as-of", "2026-04-01T00:00:00Z"]
# Root can write anywhere a mode bit forbids; nobody can create a directory inside /proc.
UNWRITABLE_HOME = "/proc/cxl-home" if os.geteuid() == 0 else "{tmp}/read-only/home"

USAGE = 2
CONFIG = 2
ERROR = 1
KEYS = 7
# A home whose key store was made with a key-encryption key that is gone (KEYED), or is there.
KEYED = {"CXL_HOME": "{tmp}/keyed-home", "CXL_KEK_FILE": "{tmp}/kek-gone"}
KEYED_OK = {"CXL_HOME": "{tmp}/keys-home", "CXL_KEK_FILE": "{tmp}/kek-kept"}

CASES: list[tuple[str, list[str], dict[str, str], int]] = [
    # usage, whatever the command
    ("unknown command", ["nope"], {}, USAGE),
    ("unknown global option", ["--nope", "gap"], {}, USAGE),
    ("non-integer --partitions", ["--partitions", "abc", "gap"], {}, USAGE),
    ("missing option value", ["gap", "--as-of"], {}, USAGE),
    # ingest
    ("ingest without files", ["ingest"], {}, USAGE),
    ("ingest unknown option", ["ingest", "--nope", "x.jsonl"], {}, USAGE),
    ("ingest --format xml", ["ingest", "--format", "xml", "x.jsonl"], {}, USAGE),
    ("ingest a missing file", ["ingest", "{tmp}/missing.jsonl"], {}, CONFIG),
    ("ingest a directory", ["ingest", NOT_A_FILE], {}, CONFIG),
    ("ingest an unreadable file", ["ingest", "{tmp}/unreadable.jsonl"], {}, CONFIG),
    # publish
    ("publish without files", ["publish"], {}, USAGE),
    ("publish with no broker", ["publish", "{tmp}/events.jsonl"], {}, CONFIG),
    ("publish unknown option", ["publish", "--nope", "x"], {}, USAGE),
    (
        "publish to a nonsense bootstrap",
        ["publish", "{tmp}/events.jsonl"],
        {"CXL_KAFKA_BOOTSTRAP": "nonsense"},
        CONFIG,
    ),
    # consume
    ("consume with no broker", ["consume", "--until-idle"], {}, CONFIG),
    ("consume --format xml", ["consume", "--format", "xml"], {}, USAGE),
    ("consume nonsense bootstrap", ["consume"], {"CXL_KAFKA_BOOTSTRAP": "nonsense"}, CONFIG),
    # relay
    ("relay with no broker", ["relay", "--until-idle"], {}, CONFIG),
    ("relay unknown option", ["relay", "--nope"], {}, USAGE),
    ("relay nonsense bootstrap", ["relay"], {"CXL_KAFKA_BOOTSTRAP": "nonsense"}, CONFIG),
    # broker (only failures: a good invocation runs until Ctrl-C)
    ("broker non-integer --port", ["broker", "--port", "abc"], {}, USAGE),
    ("broker --port without value", ["broker", "--port"], {}, USAGE),
    ("broker --port out of range", ["broker", "--port", "99999"], {}, USAGE),
    # verify
    ("verify --format xml", ["verify", "--format", "xml"], {}, USAGE),
    ("verify a store that is not SQLite", ["verify"], {"CXL_HOME": GARBAGE_HOME}, ERROR),
    ("verify with no ledger there", ["verify"], {"CXL_HOME": "{tmp}/empty-home"}, ERROR),
    ("verify a SQLite file that is no ledger", ["verify"], {"CXL_STORE": "{tmp}/other.db"}, ERROR),
    # schemas
    ("schemas unknown option", ["schemas", "--nope"], {}, USAGE),
    ("schemas --check finds drift", ["schemas", "--check", "--dir", NOT_A_FILE], {}, ERROR),
    ("schemas --check, no such dir", ["schemas", "--check", "--dir", "{tmp}/none"], {}, CONFIG),
    ("schemas into an unwritable place", ["schemas", "--dir", "/proc/cxl-schemas"], {}, ERROR),
    # demo (only failures: a good invocation runs the whole pipeline)
    ("demo too few customers", ["demo", "--customers", "5"], {}, USAGE),
    ("demo non-integer --seed", ["demo", "--seed", "x"], {}, USAGE),
    ("demo with CXL_HOME a file", ["demo"], {"CXL_HOME": "{tmp}/a-file"}, CONFIG),
    ("demo with CXL_HOME unwritable", ["demo"], {"CXL_HOME": UNWRITABLE_HOME}, CONFIG),
    # gap
    ("gap bad --as-of", ["gap", "--as-of", "yesterday"], {}, USAGE),
    ("gap naive --as-of", ["gap", "--as-of", "2026-04-01T00:00:00"], {}, USAGE),
    ("gap --by nonsense", ["gap", "--by", "nonsense"], {}, USAGE),
    ("gap --format xml", ["gap", "--format", "xml"], {}, USAGE),
    ("gap with CXL_HOME a file", ["gap"], {"CXL_HOME": "{tmp}/a-file"}, CONFIG),
    ("gap with no ledger there", ["gap"], {"CXL_HOME": "{tmp}/empty-home"}, ERROR),
    ("gap with CXL_PARTITIONS=abc", ["gap"], {"CXL_PARTITIONS": "abc"}, CONFIG),
    ("gap with a store that is not SQLite", ["gap"], {"CXL_HOME": GARBAGE_HOME}, ERROR),
    ("gap with a bad CXL_STORE URL", ["gap"], {"CXL_STORE": "mysql://x/y"}, CONFIG),
    # replay
    ("replay without --to", ["replay", *AS_OF], {}, USAGE),
    ("replay without --as-of", ["replay", "--to", "{tmp}/r.duckdb"], {}, USAGE),
    ("replay bad --as-of", ["replay", "--as-of", "bad", "--to", "{tmp}/r.duckdb"], {}, USAGE),
    (
        "replay onto the store",
        ["replay", *AS_OF, "--to", "{tmp}/home/ledger.sqlite", "--force"],
        {},
        CONFIG,
    ),
    (
        "replay onto the live projections",
        ["replay", *AS_OF, "--to", "{tmp}/home/../home/projections.duckdb", "--force"],
        {},
        CONFIG,
    ),
    ("replay into a missing directory", ["replay", *AS_OF, "--to", "{tmp}/no/r.duckdb"], {}, ERROR),
    ("replay into /proc", ["replay", *AS_OF, "--to", "/proc/r.duckdb"], {}, ERROR),
    # sql
    ("sql without a query", ["sql"], {}, USAGE),
    ("sql with an empty query", ["sql", ""], {}, USAGE),
    ("sql with a blank query", ["sql", "  "], {}, USAGE),
    ("sql --format xml", ["sql", "SELECT 1", "--format", "xml"], {}, USAGE),
    ("sql that fails", ["sql", "SELECT * FROM nowhere"], {}, USAGE),
    ("sql that writes", ["sql", "COPY promises TO '{tmp}/x.csv'"], {}, USAGE),
    ("sql --db not DuckDB", ["sql", "--db", NOT_DUCKDB, "SELECT 1"], {}, ERROR),
    ("sql --db missing", ["sql", "--db", "{tmp}/missing.duckdb", "SELECT 1"], {}, ERROR),
    # export
    ("export --format xml", ["export", "--format", "xml", "--to", "{tmp}/out"], {}, USAGE),
    ("export without --to", ["export"], {}, USAGE),
    ("export into a missing directory", ["export", "--to", "{tmp}/no/out"], {}, ERROR),
    ("export into /proc", ["export", "--to", "/proc/cxl-out"], {}, ERROR),
    # report
    ("report bad --as-of", ["report", "--as-of", "bad"], {}, USAGE),
    ("report onto the store", ["report", "--to", "{tmp}/home/ledger.sqlite"], {}, CONFIG),
    ("report into a missing directory", ["report", "--to", "{tmp}/no/r.html"], {}, ERROR),
    ("report into /proc", ["report", "--to", "/proc/r.html"], {}, ERROR),
    # forget, history, reveal
    ("forget without --reason", ["forget", "c1"], {}, USAGE),
    ("forget without a customer", ["forget", "--reason", "r"], {}, USAGE),
    ("forget an unknown customer", ["forget", "nobody", "--reason", "r"], {}, ERROR),
    ("forget with a control character", ["forget", "c1", "--reason", "a\x07b"], {}, CONFIG),
    ("forget with the KEK gone", ["forget", "c1", "--reason", "r"], KEYED, KEYS),
    ("history without a customer", ["history"], {}, USAGE),
    ("history of an unknown customer", ["history", "nobody"], {}, ERROR),
    ("history with no ledger", ["history", "c1"], {"CXL_HOME": "{tmp}/empty-home"}, ERROR),
    ("history --with-text, KEK gone", ["history", "c1", "--with-text"], KEYED, KEYS),
    ("reveal a missing file", ["reveal", "{tmp}/missing.jsonl"], {}, CONFIG),
    ("reveal with no key store", ["reveal", "{tmp}/events.jsonl"], {}, KEYS),
    ("reveal a record with no event", ["reveal", "{tmp}/events.jsonl"], KEYED_OK, ERROR),
    (
        "key store is the ledger",
        ["forget", "c1", "--reason", "r"],
        {"CXL_KEY_STORE": "{tmp}/home/ledger.sqlite"},
        CONFIG,
    ),
    (
        "KEK is the projections",
        ["history", "c1", "--with-text"],
        {"CXL_KEK_FILE": "{tmp}/home/projections.duckdb"},
        CONFIG,
    ),
    (
        "KEK is the key store",
        ["ingest", "{tmp}/events.jsonl"],
        {"CXL_KEK_FILE": "{tmp}/home/keys.sqlite"},
        CONFIG,
    ),
    ("report onto the key store", ["report", "--to", "{tmp}/home/keys.sqlite"], {}, CONFIG),
    ("report onto the KEK", ["report", "--to", "{tmp}/kek"], {}, CONFIG),
    ("export --with-text, KEK gone", ["export", "--to", "{tmp}/out", "--with-text"], KEYED, KEYS),
]


def _prepare(tmp: Path) -> None:
    (tmp / "home").mkdir()
    LedgerStore(str(tmp / "home" / "ledger.sqlite")).close()  # an empty ledger
    (tmp / "empty-home").mkdir()
    with sqlite3.connect(tmp / "other.db") as other:
        other.execute("CREATE TABLE unrelated (x)")
    (tmp / "a-directory").mkdir()
    (tmp / "a-file").write_text("not a directory\n")
    (tmp / "events.jsonl").write_text("{}\n")
    (tmp / "not.duckdb").write_bytes(b"definitely not DuckDB\n" * 200)
    (tmp / "garbage-home").mkdir()
    (tmp / "garbage-home" / "ledger.sqlite").write_bytes(os.urandom(8192))
    (tmp / "unreadable.jsonl").write_text("{}\n")
    (tmp / "unreadable.jsonl").chmod(0)
    if os.geteuid() != 0:
        (tmp / "read-only").mkdir(mode=0o500)
    for home, kek in (("keyed-home", "kek-gone"), ("keys-home", "kek-kept")):
        keys = KeyStore(tmp / home / "keys.sqlite", tmp / kek)
        with LedgerStore(str(tmp / home / "ledger.sqlite"), personal=PersonalCipher(keys)) as store:
            store.seal([valid("complaint.filed", customer_id="c1", text="t")])
    (tmp / "kek-gone").unlink()


def _cxl(tmp: Path, args: list[str], extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXL_")}
    env["CXL_HOME"] = str(tmp / "home")
    env["CXL_KEK_FILE"] = str(tmp / "kek")
    env.update({k: v.format(tmp=tmp) for k, v in extra.items()})
    return subprocess.run(
        [sys.executable, "-m", "cxl", *(a.format(tmp=tmp) for a in args)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _param(name: str, args: list[str], extra: dict[str, str], code: int) -> object:
    root_reads_anything = name == "ingest an unreadable file" and os.geteuid() == 0
    skip = pytest.mark.skipif(root_reads_anything, reason="root reads any file whatever its mode")
    return pytest.param(args, extra, code, id=name, marks=skip)


@pytest.mark.parametrize(("args", "extra", "code"), [_param(*case) for case in CASES])
def test_every_failure_is_one_line_with_its_exit_code(
    tmp_path: Path, args: list[str], extra: dict[str, str], code: int
) -> None:
    _prepare(tmp_path)
    result = _cxl(tmp_path, args, extra)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_the_table_covers_every_command(tmp_path: Path) -> None:
    listed = _cxl(tmp_path, ["--help"], {})
    assert listed.returncode == 0
    commands = listed.stdout.split("Commands:", 1)[1].split()
    names = {word for word in commands if word.isalpha() and word.islower() and len(word) > 2}
    documented = {"ingest", "publish", "consume", "relay", "broker", "verify", "schemas", "demo"}
    documented |= {"gap", "replay", "sql", "export", "report", "forget", "history", "reveal"}
    assert documented <= names
    covered = {args[0] for _, args, _, _ in CASES}
    assert documented <= covered


def test_debug_adds_the_traceback_before_the_line(tmp_path: Path) -> None:
    _prepare(tmp_path)
    result = _cxl(tmp_path, ["--debug", "gap", "--as-of", "yesterday"], {})
    assert result.returncode == 2
    assert result.stderr.startswith("Traceback")
    assert result.stderr.splitlines()[-1].startswith("error: --as-of 'yesterday'")


def test_an_unexpected_exception_is_one_internal_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def surprise(**_: object) -> None:
        raise KeyError("nobody expected this\nat all")

    monkeypatch.setattr(cli, "app", surprise)
    monkeypatch.setattr(sys, "argv", ["cxl", "gap"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: internal error: KeyError: ")
    assert lines[0].endswith("(run with --debug for the traceback)")
