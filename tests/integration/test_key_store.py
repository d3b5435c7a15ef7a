"""The key store belongs to one ledger: a missing, foreign or edited one is refused, never
replaced by new keys; its key-encryption key is a private regular file; ``forget`` destroys the key
before anything else and can always be finished."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from ledger.errors import ErasureIncompleteError, KeyStoreError, StoreError
from ledger.keys import KeyStore, read_kek
from ledger.personal import ERASED, reveal
from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, valid, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl


def _settings(root: Path, keys: str = "keys", store: str | None = None) -> Settings:
    return Settings(
        home=root / "home",
        store=store,
        key_store=root / keys / "keys.sqlite",
        kek_file=root / keys / "kek",
    )


def _key_rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT customer_id, kid FROM cxl_data_keys ORDER BY 1").fetchall()


def test_a_ledger_with_sealed_fields_refuses_a_new_key_store(
    tmp_path: Path, store_url: str
) -> None:
    with LedgerStore.for_settings(_settings(tmp_path, store=store_url)) as store:
        store.seal([valid("complaint.filed", customer_id="c1", text="t")])
    elsewhere = _settings(tmp_path, keys="other", store=store_url)
    with pytest.raises(KeyStoreError, match="holds personal fields sealed with one"):
        LedgerStore.for_settings(elsewhere)
    assert not (tmp_path / "other" / "keys.sqlite").exists()
    assert not (tmp_path / "other" / "kek").exists()


def test_a_ledger_without_sealed_fields_may_start_its_key_store_late(tmp_path: Path) -> None:
    plain = LedgerStore(str(tmp_path / "home" / "ledger.sqlite"))
    with plain:
        plain.seal([valid("promise.made", customer_id="c1", description=None)])
    with LedgerStore.for_settings(_settings(tmp_path)) as store:
        assert store.seal([valid("complaint.filed", customer_id="c1", text="t")]).sealed == 1


def test_a_customer_whose_key_went_missing_gets_no_second_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with LedgerStore.for_settings(settings) as store:
        store.seal([valid("complaint.filed", customer_id=c, text="t") for c in ("c1", "c2")])
    with sqlite3.connect(settings.key_store_path) as db:
        db.execute("DELETE FROM cxl_data_keys WHERE customer_id = 'c1'")
    with LedgerStore.for_settings(settings) as store:
        with pytest.raises(KeyStoreError, match="'c1' was sealed with data key"):
            store.seal([valid("complaint.filed", customer_id="c1", text="again")])
        with pytest.raises(KeyStoreError, match="'c1' was sealed with data key"):
            store.forget("c1", "ticket 1")
        assert [e.type for e in store.stream("c1")] == ["complaint.filed"]
        assert store.seal([valid("complaint.filed", customer_id="c2", text="ok")]).sealed == 1
    assert [c for c, _ in _key_rows(settings.key_store_path)] == ["c2"]


def test_a_key_is_made_only_for_a_customer_with_personal_text(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with LedgerStore.for_settings(settings) as store:
        store.seal([valid("promise.made", customer_id="c1", description=None)])
        assert store.forget("c1", "ticket 2").kid is None
        store.seal([valid("complaint.filed", customer_id="c2", text="t")])
    assert [c for c, _ in _key_rows(settings.key_store_path)] == ["c2"]


def test_keys_without_their_check_value_never_get_a_new_kek(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with LedgerStore.for_settings(settings) as store:
        store.seal([valid("complaint.filed", customer_id="c1", text="t")])
    with sqlite3.connect(settings.key_store_path) as db:
        db.execute("DELETE FROM cxl_key_meta")
    kek = settings.kek_path.read_bytes()
    settings.kek_path.unlink()
    with pytest.raises(KeyStoreError, match="is missing"):
        KeyStore(settings.key_store_path, settings.kek_path)
    assert not settings.kek_path.exists()
    settings.kek_path.touch(mode=0o600)
    settings.kek_path.write_bytes(base64.b64encode(os.urandom(32)))
    with pytest.raises(KeyStoreError, match="does not unwrap the data keys"):
        KeyStore(settings.key_store_path, settings.kek_path)
    settings.kek_path.write_bytes(kek)
    with KeyStore(settings.key_store_path, settings.kek_path) as keys:
        assert set(keys.keys_for(["c1"], create=False)) == {"c1"}


def test_the_kek_must_be_a_small_private_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []

    def read_fifo() -> None:
        try:
            read_kek(fifo)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read_fifo, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO as the KEK must not block"
    assert "not a regular file" in str(outcome[0])

    shared = tmp_path / "shared"
    shared.write_bytes(base64.b64encode(os.urandom(32)))
    shared.chmod(0o644)
    with pytest.raises(KeyStoreError, match=r"readable or writable by others \(mode 0644\)"):
        read_kek(shared)
    big = tmp_path / "big"
    big.touch(mode=0o600)
    big.write_bytes(b"A" * 10_000_000)
    with pytest.raises(KeyStoreError, match="is larger than 1,024 bytes"):
        read_kek(big)


def test_forget_destroys_the_key_first_and_a_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    with LedgerStore.for_settings(settings) as store:
        store.seal([valid("complaint.filed", customer_id="c1", text="secret words")])
        (kid,) = [k for _, k in _key_rows(settings.key_store_path)]

        def store_gone(*args: object, **kwargs: object) -> None:
            raise StoreError("the ledger store went away")

        monkeypatch.setattr(store, "seal", store_gone)
        with pytest.raises(
            ErasureIncompleteError, match=r"data key destroyed, but customer\.erased"
        ):
            store.forget("c1", "ticket 3")
        monkeypatch.undo()
        assert _key_rows(settings.key_store_path) == []
        assert reveal(store.stream("c1")[0].body, store.keys)[0]["data"]["text"] == ERASED
        finished = store.forget("c1", "ticket 3")
        assert (finished.kid, finished.sealed) == (kid, True)
        assert [e.type for e in store.stream("c1")] == ["complaint.filed", "customer.erased"]


def test_a_key_store_backup_older_than_the_erasure_reveals_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = cxl_env(settings)
    history = tmp_path / "h.jsonl"
    write_jsonl(history, [event_dict("complaint.filed", customer_id="c1", text="old secret")])
    assert run_cxl(["ingest", str(history)], env).returncode == 0
    backup = tmp_path / "backup.sqlite"
    shutil.copy(settings.key_store_path, backup)
    assert run_cxl(["forget", "c1", "--reason", "ticket 4"], env).returncode == 0
    shutil.copy(backup, settings.key_store_path)

    shown = run_cxl(["history", "c1", "--with-text", "--format", "json"], env)
    assert shown.returncode == 0, shown.stderr
    assert "old secret" not in shown.stdout and ERASED in shown.stdout
    exported = run_cxl(
        ["export", "--to", str(tmp_path / "out"), "--format", "csv", "--with-text"], env
    )
    assert exported.returncode == 0, exported.stderr
    texts = (tmp_path / "out" / "personal_text.csv").read_text()
    assert "old secret" not in texts and "true" in texts


def test_export_with_text_refuses_cxl_home_and_fails_before_writing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = cxl_env(settings)
    history = tmp_path / "h.jsonl"
    write_jsonl(history, [event_dict("complaint.filed", customer_id="c1", text="words")])
    assert run_cxl(["ingest", str(history)], env).returncode == 0
    inside = run_cxl(["export", "--to", str(settings.home / "x"), "--with-text"], env)
    assert inside.returncode == 2 and "must not be kept under CXL_HOME" in inside.stderr
    assert not (settings.home / "x").exists()
    settings.kek_path.unlink()
    no_kek = run_cxl(["export", "--to", str(tmp_path / "out"), "--with-text"], env)
    assert no_kek.returncode == 7 and "is missing" in no_kek.stderr
    assert not (tmp_path / "out").exists()


def test_forget_names_the_customer_argument_when_it_is_not_an_id(tmp_path: Path) -> None:
    env = cxl_env(_settings(tmp_path))
    bad = run_cxl(["forget", "bad\x1b[2Jid", "--reason", "r"], env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: CUSTOMER: "), bad.stderr
