"""Signed checkpoints catch what a chain cannot: removed, reordered or rewritten history, even with
every hash recomputed; and their signatures and inclusion proofs check without cx-ledger's code."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.audit import verify_chains
from ledger.checkpoint import Checkpoint, CheckpointSigner, open_note
from ledger.errors import LedgerTamperedError
from ledger.merkle import leaf_hash, root_of
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, raw, valid, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.kafka_helpers import produce, read_all

README = Path(__file__).resolve().parents[2] / "README.md"


def _history(n: int = 60) -> list[dict]:
    return [
        event_dict(
            "complaint.filed",
            customer_id=f"c{i % 6}",
            occurred_at=f"2026-03-{1 + i % 28:02d}T09:00:00Z",
            text=f"complaint number {i}",
        )
        for i in range(n)
    ]


def _ledger(tmp_path: Path, events: list[dict]) -> tuple[Settings, dict[str, str], Path]:
    """A ledger of ``events`` and a checkpoint of it (its path)."""
    tmp_path.mkdir(exist_ok=True)
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek")
    env = cxl_env(settings)
    write_jsonl(tmp_path / "h.jsonl", events)
    assert run_cxl(["ingest", str(tmp_path / "h.jsonl")], env).returncode == 0
    made = run_cxl(["checkpoint"], env)
    assert made.returncode == 0, made.stderr
    return settings, env, Path(made.stdout.strip().splitlines()[-1])


def _ledger_id(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(
            db.execute("SELECT value FROM cxl_ledger WHERE name = 'ledger_id'").fetchone()[0]
        )


def _rebuilt(settings: Settings, tmp_path: Path, events: list[dict]) -> None:
    """Replace the ledger by one sealed anew from ``events`` — every chain hash recomputed —
    under the original ledger id: what an operator who rewrites history would do."""
    ledger_id = _ledger_id(Path(settings.store_url))
    fresh = tmp_path / "rewritten.sqlite"
    with LedgerStore(str(fresh)) as store:
        store.seal([valid(e["type"], **_fields(e)) for e in events])
    with sqlite3.connect(fresh) as db:
        db.execute("UPDATE cxl_ledger SET value = ? WHERE name = 'ledger_id'", [ledger_id])
    with sqlite3.connect(fresh) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("", "-wal", "-shm"):
        Path(settings.store_url + suffix).unlink(missing_ok=True)
    fresh.rename(settings.store_url)


def _fields(event: dict) -> dict:
    return {
        "customer_id": event["customer_id"],
        "occurred_at": event["occurred_at"],
        "event_id": event["event_id"],
        **event["data"],
    }


def _truncate_tail(settings: Settings, tmp_path: Path, events: list[dict]) -> None:
    """Delete the last 3 sealed events in place with their index rows, and let the next writer
    rebuild the tree, and ``cxl store migrate`` the stream heads, over what is left."""
    with sqlite3.connect(settings.store_url) as db:
        last = db.execute(
            "SELECT rowid, state FROM stored_events WHERE originator_version > 1 "
            "ORDER BY rowid DESC LIMIT 3"
        ).fetchall()
        for rowid, state in last:
            db.execute("DELETE FROM stored_events WHERE rowid = ?", [rowid])
            db.execute(
                "DELETE FROM cxl_event_ids WHERE event_id = ?", [json.loads(state)["event_id"]]
            )
        db.execute("DELETE FROM cxl_tree_leaves")
        db.execute("DELETE FROM cxl_tree_nodes")
        db.execute("DELETE FROM cxl_stream_heads")
        db.execute("DELETE FROM cxl_ledger WHERE name = 'schema_version'")
    assert run_cxl(["store", "migrate"], cxl_env(settings)).returncode == 0


def _delete_stream(settings: Settings, tmp_path: Path, events: list[dict]) -> None:
    _rebuilt(settings, tmp_path, [e for e in events if e["customer_id"] != "c3"])


def _rewrite_one_text(settings: Settings, tmp_path: Path, events: list[dict]) -> None:
    changed = [dict(e) for e in events]
    changed[7] = {**changed[7], "data": {**changed[7]["data"], "severity": 1}}
    _rebuilt(settings, tmp_path, changed)


def _reorder(settings: Settings, tmp_path: Path, events: list[dict]) -> None:
    _rebuilt(settings, tmp_path, [*events[1:], events[0]])


TAMPERING: dict[str, tuple[Callable[[Settings, Path, list[dict]], None], str]] = {
    "tail truncated": (_truncate_tail, "events were removed"),
    "stream deleted": (_delete_stream, "events were removed"),
    "rewritten with recomputed hashes": (_rewrite_one_text, "not those the checkpoint signed"),
    "reordered": (_reorder, "not those the checkpoint signed"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_checkpoint_catches_history_that_verifies_on_its_own(tmp_path: Path, case: str) -> None:
    events = _history()
    settings, env, checkpoint = _ledger(tmp_path, events)
    tamper, reason = TAMPERING[case]
    tamper(settings, tmp_path, events)
    alone = run_cxl(["verify"], env)
    assert alone.returncode == 0, alone.stderr  # every chain and the tree are self-consistent
    proved = run_cxl(["verify", "--checkpoint", str(checkpoint)], env)
    assert proved.returncode == 4, proved.stdout
    assert proved.stderr.count("\n") == 1 and reason in proved.stderr, proved.stderr


def test_a_grown_ledger_extends_its_checkpoint_and_proves_inclusion_to_outside_code(
    tmp_path: Path,
) -> None:
    events = _history(45)
    _, env, checkpoint = _ledger(tmp_path, events)
    write_jsonl(tmp_path / "more.jsonl", _history(30))
    assert run_cxl(["ingest", str(tmp_path / "more.jsonl")], env).returncode == 0
    proved = run_cxl(["verify", "--checkpoint", str(checkpoint), "--format", "json"], env)
    assert proved.returncode == 0, proved.stderr
    (report,) = json.loads(proved.stdout)
    assert (report["events"], report["checkpoint_size"]) == (75, 45)
    assert report["consistency_proof"]

    key = run_cxl(["checkpoint", "--public-key", "--to", str(tmp_path / "now.txt")], env)
    verifier = key.stdout.strip().splitlines()[-2]
    proof = run_cxl(["proof", events[17]["event_id"], "--checkpoint", str(checkpoint)], env)
    assert proof.returncode == 0, proof.stderr
    (tmp_path / "proof.json").write_text(proof.stdout)
    recipe = re.search(
        r"<!-- checkpoint-recipe -->\n```python\n(.*?)```\n<!-- /checkpoint-recipe -->",
        README.read_text(),
        re.S,
    )
    assert recipe, "the README lost its checkpoint recipe"
    (tmp_path / "check.py").write_text(recipe.group(1))

    def check(note: Path, proof_file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-I",
                str(tmp_path / "check.py"),
                str(note),
                verifier,
                str(proof_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    ok = check(checkpoint, tmp_path / "proof.json")
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok {events[17]['event_id']}"), ok.stderr
    forged = json.loads(proof.stdout)
    forged["seal_hash"] = "00" * 32
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert "not in the checkpointed ledger" in check(checkpoint, tmp_path / "forged.json").stderr
    signed = checkpoint.read_text()
    (tmp_path / "resized.txt").write_text(signed.replace("\n45\n", "\n44\n", 1))
    assert check(tmp_path / "resized.txt", tmp_path / "proof.json").returncode != 0


def test_a_checkpoint_by_another_key_or_of_another_ledger_does_not_verify(
    tmp_path: Path,
) -> None:
    _, env, _ = _ledger(tmp_path / "a", _history(10))
    _, other_env, other = _ledger(tmp_path / "b", _history(10))
    foreign = run_cxl(["verify", "--checkpoint", str(other)], env)
    assert foreign.returncode == 8, foreign.stderr
    assert "carries no signature by the key" in foreign.stderr
    key = run_cxl(["checkpoint", "--public-key", "--to", str(tmp_path / "b.txt")], other_env)
    other_key = key.stdout.strip().splitlines()[-2]
    elsewhere = run_cxl(["verify", "--checkpoint", str(other), "--public-key", other_key], env)
    assert elsewhere.returncode == 4 and "is of ledger" in elsewhere.stderr
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    assert run_cxl(["verify", "--checkpoint", str(junk)], env).returncode == 8


@pytest.mark.parametrize(
    ("edit", "caught"),
    [
        ("UPDATE cxl_tree_nodes SET hash = '{zero}' WHERE level = 2 AND idx = 1", "node 2/1"),
        ("UPDATE cxl_tree_leaves SET hash = '{zero}' WHERE leaf = 7", "leaf 7"),
        ("DELETE FROM cxl_tree_nodes WHERE level = 1 AND idx = 3", "node 1/3"),
        ("INSERT INTO cxl_tree_nodes VALUES (9, 0, '{zero}')", "node 9/0"),
        ("INSERT INTO cxl_tree_leaves VALUES (20, '{zero}')", "leaf 20"),
        ("UPDATE cxl_ledger SET value = 'x'", "settings table"),
    ],
)
def test_every_edit_of_the_tree_or_the_ledger_id_fails_verify(
    tmp_path: Path, edit: str, caught: str
) -> None:
    settings, env, _ = _ledger(tmp_path, _history(20))
    with sqlite3.connect(settings.store_url) as db:
        db.execute(edit.format(zero="00" * 32))
    broken = run_cxl(["verify"], env)
    assert broken.returncode == 4 and caught in broken.stderr, broken.stderr


def test_the_tree_is_kept_on_every_backend_and_proves_extension(store: LedgerStore) -> None:
    first = [valid("complaint.filed", customer_id=f"c{i % 4}", text="t") for i in range(21)]
    store.seal(first[:9])
    store.seal(first[9:])
    size, root = store.tree_root()
    hashes = [e.hash for page in store.read() for e in page]
    assert (size, root) == (21, root_of(leaf_hash(bytes.fromhex(h)) for h in hashes))
    point = Checkpoint(store.origin, size, root)
    store.seal([valid("promise.made", customer_id=f"c{i}") for i in range(13)])
    report = verify_chains(store, checkpoint=point)
    assert (report.events, len(report.consistency) > 0) == (34, True)
    with pytest.raises(LedgerTamperedError, match="not those the checkpoint signed"):
        verify_chains(store, checkpoint=Checkpoint(store.origin, size, bytes(32)))


def test_the_sealed_count_through_a_position_is_exact_asked_in_any_order(
    store: LedgerStore,
) -> None:
    """``sealed_through`` counts on from its last answer when asked further on (a dashboard asks
    every few seconds); asked of an earlier position, or once the row it ended at has changed,
    it counts again from the start. Creation rows are never counted."""
    store.seal([valid(customer_id=f"c{i % 5}", promise_id=f"p{i}") for i in range(20)])
    store.seal([valid(customer_id=f"d{i % 3}", promise_id=f"q{i}") for i in range(9)])
    rows = [row for page in store.rows() for row in page]
    truth = {}
    sealed = 0
    for row in rows:
        sealed += row.originator_version > 1
        truth[row.position] = sealed
    order = [5, 17, 30, 12, rows[-1].position, 3, 1, rows[-1].position, 22]
    assert [store.sealed_through(p) for p in order] == [truth[p] for p in order]
    assert store.checkpoint_through(rows[-1].position) == store.tree_root()
    store.seal([valid(customer_id="e", promise_id="r")])
    last = store.max_position()
    assert store.sealed_through(last) == 30


def test_consume_publishes_signed_checkpoints_that_verify(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap
    settings = settings.model_copy(update={"checkpoint_every": 100})
    env = cxl_env(settings)
    events = [raw(event_dict(customer_id=f"c{i % 9}", promise_id=f"p{i}")) for i in range(350)]
    produce(settings.kafka_bootstrap, settings.events_topic, events)
    consumed = run_cxl(["consume", "--until-idle", "--no-relay", "--format", "json"], env)
    assert consumed.returncode == 0, consumed.stderr
    assert json.loads(consumed.stdout)[0]["checkpoints"] >= 1
    notes = [
        r.value.decode() for r in read_all(settings.kafka_bootstrap, settings.checkpoints_topic)
    ]
    with LedgerStore(settings.store_url, read_only=True) as store:
        verifier = CheckpointSigner(settings.checkpoint_key_path, create=False).verifier_key(
            store.origin
        )
        points = [open_note(note, verifier) for note in notes]
        assert [p.size for p in points] == sorted({p.size for p in points})
        assert points[-1].size == 350
        for point in points:
            verify_chains(store, checkpoint=point)
    assert oct(settings.checkpoint_key_path.stat().st_mode & 0o777) == "0o600"


def test_a_checkpoint_never_overwrites_the_ledgers_files(tmp_path: Path) -> None:
    settings, env, _ = _ledger(tmp_path, _history(5))
    before = Path(settings.store_url).read_bytes()
    key_wal = Path(f"{settings.key_store_path}-wal")
    for target in (
        Path(settings.store_url),
        settings.checkpoint_key_path,
        settings.key_store_path,
        key_wal,
    ):
        refused = run_cxl(["checkpoint", "--to", str(target)], env)
        assert refused.returncode == 2 and "would overwrite" in refused.stderr, refused.stderr
    assert Path(settings.store_url).read_bytes() == before
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    device = run_cxl(["checkpoint", "--to", str(fifo)], env)
    assert device.returncode == 2 and "not a regular file" in device.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    kept = tmp_path / "kept.txt"
    kept.write_text("evidence\n")
    assert run_cxl(["checkpoint", "--to", str(kept)], env).returncode == 2
    assert kept.read_text() == "evidence\n"
    typo_key = run_cxl(["checkpoint", "--key", str(tmp_path / "typo.key")], env)
    assert typo_key.returncode == 8 and not (tmp_path / "typo.key").exists()
    directory = run_cxl(["verify", "--checkpoint", str(tmp_path)], env)
    assert directory.returncode == 2 and "not a regular file" in directory.stderr
    typo = run_cxl(["checkpoint", "--to", str(tmp_path / "no" / "such" / "c.txt")], env)
    assert typo.returncode != 0 and not (tmp_path / "no").exists()
