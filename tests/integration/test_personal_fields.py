"""Personal fields sealed encrypted, deduplicated without plaintext, erased by destroying one key;
the key store and its key-encryption key fail loudly, never with garbage."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.audit import verify_chains
from ledger.contract import parse_event
from ledger.errors import KeyStoreError
from ledger.keys import KeyStore
from ledger.personal import ERASED, PersonalCipher, dedupe_digest, reveal
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.live import open_caught_up
from projections.trust_gap import trust_gap
from tests.events import event_dict, raw, valid, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl
from tests.integration.projection_helpers import broken, kept, promise

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def _writer(root: Path, name: str = "ledger.sqlite") -> LedgerStore:
    keys = KeyStore(root / "keys.sqlite", root / "kek")
    return LedgerStore(str(root / name), personal=PersonalCipher(keys))


def _write_kek(path: Path, content: bytes) -> None:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(content)


def test_personal_fields_are_sealed_as_ciphertext_bound_to_their_event(tmp_path: Path) -> None:
    event = valid("complaint.filed", customer_id="c1", text="my card number is 4111")
    with _writer(tmp_path) as store:
        store.seal([event])
        (sealed,) = store.stream("c1")
        field = sealed.body["data"]["text"]
        assert set(field) == {"$enc", "kid", "iv", "ct", "mac"}
        assert b"4111" not in orjson.dumps(sealed.body)
        assert reveal(sealed.body, store.keys)[0]["data"]["text"] == "my card number is 4111"
        other = valid("complaint.filed", customer_id="c1", text="x")
        store.seal([other])
        moved = store.stream("c1")[1].body
        moved = {**moved, "data": {**moved["data"], "text": field}}  # ciphertext of another event
        with pytest.raises(KeyStoreError, match="does not decrypt"):
            reveal(moved, store.keys)
        assert verify_chains(store).events == 2


def test_dedupe_needs_no_plaintext_and_tells_a_changed_text_apart(tmp_path: Path) -> None:
    record = event_dict("promise.broken", customer_id="c1", reason="courier lost it")
    changed = {**record, "data": {**record["data"], "reason": "courier lost it!"}}
    with _writer(tmp_path) as store:
        assert store.seal([parse_event(raw(record), "a")]).sealed == 1
        again = store.seal([parse_event(raw(record), "b")])
        assert (again.sealed, again.duplicates) == (0, 1)
        conflict = store.seal([parse_event(raw(changed), "c")])
        assert [r.reason for r in conflict.rejected] == ["event_id reused with different content"]
        (row,) = next(store.event_id_rows())
        (sealed,) = store.stream("c1")
        assert row[2] == dedupe_digest(sealed.body)  # computed from stored bytes, no key


def test_a_missing_or_wrong_key_encryption_key_stops_with_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", kek_file=tmp_path / "kek")
    env = cxl_env(settings)
    history = tmp_path / "h.jsonl"
    write_jsonl(history, [event_dict("complaint.filed", customer_id="c1", text="hello")])
    assert run_cxl(["ingest", str(history)], env).returncode == 0
    kek = (tmp_path / "kek").read_bytes()
    assert oct((tmp_path / "kek").stat().st_mode & 0o777) == "0o600"

    (tmp_path / "kek").unlink()
    for args in (["ingest", str(history)], ["history", "c1", "--with-text"]):
        missing = run_cxl(args, env)
        assert missing.returncode == 7, missing.stderr
        assert missing.stderr.startswith(
            f"error: the key-encryption key file {tmp_path / 'kek'} is missing"
        )
    assert not (tmp_path / "kek").exists()  # never silently replaced by a new one

    _write_kek(tmp_path / "kek", base64.b64encode(b"\x01" * 32) + b"\n")
    wrong = run_cxl(["history", "c1", "--with-text"], env)
    assert wrong.returncode == 7 and "is not the one the key store" in wrong.stderr
    _write_kek(tmp_path / "kek", b"not a key\n")
    garbage = run_cxl(["ingest", str(history)], env)
    assert garbage.returncode == 7 and "is not a key-encryption key" in garbage.stderr

    # Reading figures and verifying need no key at all.
    assert run_cxl(["verify"], env).returncode == 0
    assert run_cxl(["gap"], env).returncode == 0
    _write_kek(tmp_path / "kek", kek)
    shown = run_cxl(["history", "c1", "--with-text"], env)
    assert shown.returncode == 0 and "hello" in shown.stdout


def test_a_key_row_moved_to_another_customer_does_not_unwrap(tmp_path: Path) -> None:
    with _writer(tmp_path) as store:
        store.seal([valid("complaint.filed", customer_id=c, text="t") for c in ("c1", "c2")])
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        (wrapped,) = db.execute(
            "SELECT wrapped FROM cxl_data_keys WHERE customer_id='c1'"
        ).fetchone()
        db.execute("UPDATE cxl_data_keys SET wrapped=? WHERE customer_id='c2'", [wrapped])
    with (
        KeyStore(tmp_path / "keys.sqlite", tmp_path / "kek") as keys,
        pytest.raises(KeyStoreError, match="does not unwrap"),
    ):
        keys.keys_for(["c2"])


def test_a_writer_that_missed_the_erasure_refuses_the_customer(tmp_path: Path) -> None:
    with _writer(tmp_path) as early, _writer(tmp_path) as late:
        early.seal([valid("complaint.filed", customer_id="c1", text="first")])
        assert late.forget("c1", "ticket 9").sealed
        report = early.seal([valid("complaint.filed", customer_id="c1", text="second")])
        assert (report.sealed, report.erased) == (0, 1)
        assert [e.type for e in early.stream("c1")] == ["complaint.filed", "customer.erased"]
        with KeyStore(tmp_path / "keys.sqlite", tmp_path / "kek") as keys:
            assert keys.keys_for(["c1"]) == {}  # a tombstone: no key is ever made again
            assert reveal(early.stream("c1")[0].body, keys)[0]["data"]["text"] == ERASED


_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=30
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), _TEXT), min_size=1, max_size=25),
    erase=st.sets(st.integers(0, 4)),
)
def test_any_mix_of_erasures_keeps_the_gap_of_a_ledger_without_texts(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[int, int, str]], erase: set[int]
) -> None:
    root = tmp_path_factory.mktemp("mix")
    events, plain = [], []
    for number, (customer, outcome, text) in enumerate(plan):
        c, pid = f"c{customer}", f"p{number}"
        made = promise(
            pid, "2026-01-02T09:00:00Z", "2026-01-10T09:00:00Z", customer=c, description=text
        )
        follow = [
            [],
            [kept(pid, "2026-01-09T09:00:00Z", customer=c)],
            [kept(pid, "2026-01-12T09:00:00Z", 0.5, customer=c)],
            [
                {
                    **broken(pid, "2026-01-05T09:00:00Z", customer=c),
                    "data": {"promise_id": pid, "reason": text},
                }
            ],
        ][outcome]
        for e in (made, *follow):
            events.append(e)
            data = {k: ("-" if k in ("description", "reason") else v) for k, v in e["data"].items()}
            plain.append({**e, "data": data})

    def gap(store: LedgerStore, name: str) -> list[dict]:
        con = open_caught_up(root / name, store)
        try:
            return trust_gap(con, AS_OF, ["made_by", "customer"])
        finally:
            con.close()

    with LedgerStore(str(root / "plain.sqlite")) as baseline:
        baseline.seal([parse_event(raw(e), "p") for e in plain])
        expected = gap(baseline, "plain.duckdb")
    with _writer(root) as store:
        store.seal([parse_event(raw(e), "e") for e in events])
        assert gap(store, "p.duckdb") == expected
        for customer in sorted(erase):
            if store.stream(f"c{customer}"):
                store.forget(f"c{customer}", "property test")
        assert gap(store, "p.duckdb") == expected
        assert verify_chains(store).events == len(events) + sum(
            1 for c in erase if any(e["customer_id"] == f"c{c}" for e in events)
        )


def test_projections_that_hold_personal_text_are_rebuilt_without_it(tmp_path: Path) -> None:
    path = tmp_path / "projections.duckdb"
    old = duckdb.connect(str(path))
    old.execute("CREATE TABLE promise_events (position BIGINT, reason VARCHAR)")
    old.execute("INSERT INTO promise_events VALUES (1, 'the customer told us her diagnosis')")
    old.close()
    rebuilt: list[str] = []
    with _writer(tmp_path) as store:
        store.seal([valid("promise.broken", customer_id="c1", reason="lost parcel")])
        con = open_caught_up(path, store, on_rebuild=rebuilt.append)
        columns = {r[0] for r in con.execute("DESCRIBE promise_events").fetchall()}
        con.close()
    assert rebuilt == [f"{path} was built by an earlier cx-ledger and holds personal text"]
    assert "reason" not in columns
    assert b"diagnosis" not in path.read_bytes()


def test_another_ledgers_key_store_is_an_error_not_an_erasure(tmp_path: Path) -> None:
    with _writer(tmp_path / "a") as store:
        store.seal([valid("complaint.filed", customer_id="c1", text="t")])
        (sealed,) = store.stream("c1")
    with (
        KeyStore(tmp_path / "b" / "keys.sqlite", tmp_path / "b" / "kek") as other,
        pytest.raises(KeyStoreError, match="never held data key"),
    ):
        reveal(sealed.body, other)


def test_the_sealing_digest_is_the_one_verify_recomputes_from_stored_bytes(tmp_path: Path) -> None:
    tricky = 'a "ct":"QUJD","iv":"QUJD", b \\ "'  # looks like the members the digest leaves out
    with _writer(tmp_path) as store:
        cipher = store._personal
        assert cipher is not None
        cipher.provide({"c1": None, "c2": None})
        for event in (
            valid("promise.made", customer_id="c1", promise_id=tricky, description=tricky),
            valid("complaint.resolved", customer_id="c1", resolution="r" * 4000),
            valid("touchpoint.recorded", customer_id="c2", duration_s=1e-7),  # no personal value
        ):
            canonical, digest = cipher.seal_fields(event.body)
            assert (digest or hashlib.sha256(canonical).hexdigest()) == dedupe_digest(
                orjson.loads(canonical)
            )
