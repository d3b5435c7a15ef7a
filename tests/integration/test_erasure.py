"""Crypto-shredding end to end: personal text is never at rest in plaintext, and `cxl forget` makes
every copy unreadable while every figure, chain and hash stays the same."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, valid, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.kafka_helpers import read_all
from tests.integration.projection_helpers import broken, kept, promise

PHRASE = "zebra-lantern 4471"
AS_OF = "2026-06-01T00:00:00Z"


def _history() -> list[dict]:
    events: list[dict] = []
    for n in range(1, 6):
        customer = f"c{n}"
        events.append(
            promise(
                "p1",
                "2026-01-02T09:00:00Z",
                "2026-01-10T09:00:00Z",
                customer=customer,
                description=f"refund for {customer}: {PHRASE}" if n == 1 else "refund",
            )
        )
        events.append(
            promise("p2", "2026-01-03T09:00:00Z", "2026-01-20T09:00:00Z", customer=customer)
        )
        events.append(kept("p1", "2026-01-09T09:00:00Z", customer=customer))
        if n % 2:
            events.append(broken("p2", "2026-01-25T09:00:00Z", customer=customer))
        events.append(
            event_dict(
                "complaint.filed",
                customer_id=customer,
                occurred_at="2026-01-26T09:00:00Z",
                promise_ids=["p2"],
                text=f"I said {PHRASE} twice" if n == 1 else "late",
            )
        )
        events.append(
            event_dict(
                "touchpoint.recorded",
                customer_id=customer,
                occurred_at="2026-01-27T09:00:00Z",
                outcome=f"called back about {PHRASE}" if n == 1 else "ok",
                duration_s=60,
            )
        )
    return events


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [
        str(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and needle in path.read_bytes()
    ]


def _figures(env: dict[str, str]) -> tuple[object, object]:
    gap = run_cxl(["gap", "--by", "made_by,customer", "--as-of", AS_OF, "--format", "json"], env)
    assert gap.returncode == 0, gap.stderr
    complaints = run_cxl(
        [
            "sql",
            "SELECT * EXCLUDE (filed_at) FROM complaints ORDER BY customer_id",
            "--format",
            "json",
        ],
        env,
    )
    assert complaints.returncode == 0, complaints.stderr
    return json.loads(gap.stdout), json.loads(complaints.stdout)


def _ledger_topic_file(settings: Settings, path: Path) -> list[dict]:
    assert settings.kafka_bootstrap
    records = [
        json.loads(r.value) for r in read_all(settings.kafka_bootstrap, settings.ledger_topic)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_forget_leaves_every_figure_and_no_readable_copy(
    settings: Settings, tmp_path: Path
) -> None:
    env = cxl_env(settings)
    history = tmp_path / "history.jsonl"
    write_jsonl(history, _history())
    c1_events = sum(1 for e in _history() if e["customer_id"] == "c1")
    assert run_cxl(["publish", str(history)], env).returncode == 0
    consumed = run_cxl(["consume", "--until-idle", "--format", "json"], env)
    assert consumed.returncode == 0, consumed.stderr
    before = _figures(env)

    # At rest and on the bus, before any erasure: ciphertext only.
    needle = PHRASE.encode()
    assert _files_holding(settings.home, needle) == []
    relayed = tmp_path / "ledger-before.jsonl"
    assert needle not in json.dumps(_ledger_topic_file(settings, relayed)).encode()
    revealed = run_cxl(["reveal", str(relayed)], env)
    assert revealed.returncode == 0, revealed.stderr
    texts = {
        (r["customer_id"], r["seq"]): json.dumps(r["event"]["data"])
        for r in map(json.loads, revealed.stdout.splitlines())
    }
    assert sum(PHRASE in t for t in texts.values()) == 3  # an authorised reader gets it back
    with sqlite3.connect(settings.key_store_path) as keys:
        (wrapped,) = keys.execute(
            "SELECT wrapped FROM cxl_data_keys WHERE customer_id = 'c1'"
        ).fetchone()
    hashes_before = run_cxl(["history", "c1", "--format", "json"], env)

    forgot = run_cxl(["forget", "c1", "--reason", "erasure request 1"], env)
    assert forgot.returncode == 0, forgot.stderr
    assert "destroyed" in forgot.stdout and "relayed" in forgot.stdout

    assert _figures(env) == before
    verified = run_cxl(["verify"], env)
    assert verified.returncode == 0, verified.stderr
    after = json.loads(run_cxl(["history", "c1", "--format", "json"], env).stdout)
    assert after[:-1] == json.loads(hashes_before.stdout)  # no stored byte of the old events moved
    assert after[-1]["type"] == "customer.erased"

    relayed_after = tmp_path / "ledger-after.jsonl"
    records = _ledger_topic_file(settings, relayed_after)
    assert records[-1]["type"] == "customer.erased" and records[-1]["customer_id"] == "c1"
    revealed = run_cxl(["reveal", str(relayed_after)], env)
    assert revealed.returncode == 0, revealed.stderr
    assert PHRASE not in revealed.stdout
    # The relay is at-least-once: readers drop repeats by customer and seq.
    lines = [json.loads(line) for line in revealed.stdout.splitlines()]
    c1 = {(r["customer_id"], r["seq"]): r for r in lines if r["customer_id"] == "c1"}
    assert (
        sum(1 for r in c1.values() if r["erased_fields"]) == 4
    )  # description, reason, text, outcome
    for record in c1.values():
        for path in record["erased_fields"]:
            assert record["event"]["data"][path.removeprefix("data.")] == "[erased]"

    exported = tmp_path / "export"
    export = run_cxl(["export", "--to", str(exported), "--format", "csv", "--with-text"], env)
    assert export.returncode == 0, export.stderr
    texts = (exported / "personal_text.csv").read_text()
    assert (
        "refund for c2" not in texts
        and '"c2","promise.made","data.description","refund",false' in texts
    )
    assert texts.count('"c1"') == 4 and texts.count(",true") == 4

    shown = run_cxl(["history", "c1", "--with-text"], env)
    assert shown.returncode == 0, shown.stderr
    assert "[erased]" in shown.stdout and PHRASE not in shown.stdout
    assert _files_holding(settings.home, needle) == []
    assert _files_holding(exported, needle) == []
    assert _files_holding(settings.home, bytes(wrapped)) == []  # the key itself is gone

    # The same events again (a replay after a reset): nothing sealed for c1, nothing dead-lettered.
    assert run_cxl(["publish", str(history)], env).returncode == 0
    again = run_cxl(["consume", "--until-idle", "--format", "json"], env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)[0]
    assert (summary["sealed"], summary["refused_erased"]) == (0, c1_events)
    assert summary["dead_lettered"] == 0
    assert settings.kafka_bootstrap
    assert read_all(settings.kafka_bootstrap, settings.dlq_topic, timeout_s=3) == []
    assert _figures(env) == before
    ingested = run_cxl(["ingest", str(history), "--format", "json"], env)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)[0]["refused_erased"] == c1_events


def test_forget_is_idempotent_and_refuses_an_unknown_customer(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek")
    env = cxl_env(settings)
    history = tmp_path / "h.jsonl"
    write_jsonl(history, [promise("p1", "2026-01-02T09:00:00Z", "2026-01-10T09:00:00Z")])
    assert run_cxl(["ingest", str(history)], env).returncode == 0
    unknown = run_cxl(["forget", "nobody", "--reason", "r"], env)
    assert unknown.returncode == 1 and "no customer 'nobody'" in unknown.stderr
    bad = run_cxl(["forget", "c1", "--reason", "bad\x1b[2Jreason"], env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --reason: control characters")
    assert run_cxl(["forget", "c1", "--reason", "ticket 7"], env).returncode == 0
    second = run_cxl(["forget", "c1", "--reason", "ticket 7"], env)
    assert second.returncode == 0 and "was already sealed" in second.stdout
    assert run_cxl(["verify"], env).stdout.startswith("ok 2 events, 1 customers")


def test_forget_says_what_it_cannot_erase_and_what_it_could_not_relay(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek")
    with LedgerStore(settings.store_url) as older:  # sealed before crypto-shredding: plaintext
        older.seal([valid("complaint.filed", customer_id="c1", text="old words")])
    env = cxl_env(settings, CXL_KAFKA_BOOTSTRAP="127.0.0.1:9", CXL_KAFKA_TIMEOUT_S="2")
    forgot = run_cxl(["forget", "c1", "--reason", "ticket 3"], env)
    assert forgot.returncode == 5, forgot.stderr
    lines = forgot.stderr.splitlines()
    assert lines[0].startswith(
        "warning: 1 personal fields of customer 'c1' were sealed in plaintext"
    )
    assert lines[1].startswith("error: customer 'c1' is erased (data key destroyed")
    assert "run `cxl relay`" in lines[1]
    assert run_cxl(["history", "c1"], cxl_env(settings)).stdout.count("customer.erased") == 1
