"""``cxl ingest``: files straight into the store through the same validation and sealing path."""

from __future__ import annotations

from pathlib import Path

from ledger.settings import Settings
from ledger.store import LedgerStore
from tests.events import event_dict, write_jsonl
from tests.integration.conftest import cxl_env, run_cxl


def test_reingesting_a_file_seals_nothing_new(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    events = [event_dict(customer_id=f"c{i % 4}", promise_id=f"p{i}") for i in range(40)]
    write_jsonl(tmp_path / "a.jsonl", events)
    first = run_cxl(["ingest", str(tmp_path / "a.jsonl")], cxl_env(settings))
    assert first.returncode == 0, first.stderr
    assert "sealed 40, duplicates skipped 0" in first.stdout
    second = run_cxl(["ingest", str(tmp_path / "a.jsonl")], cxl_env(settings))
    assert second.returncode == 0, second.stderr
    assert "sealed 0, duplicates skipped 40" in second.stdout
    with LedgerStore(settings.store_url) as store:
        assert sum(len(p) for p in store.read()) == 40


def test_poison_lines_are_reported_and_the_rest_sealed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    path = tmp_path / "mixed.jsonl"
    write_jsonl(
        path,
        [
            event_dict(customer_id="c1"),
            "{not json",
            event_dict(customer_id="c1", occurred_at="2026-03-01T09:00:00"),
            event_dict("promise.kept", customer_id="c1"),
            event_dict("complaint.filed", customer_id="c2", severity=9),
            event_dict("touchpoint.recorded", customer_id="c2"),
        ],
    )
    result = run_cxl(["ingest", str(path)], cxl_env(settings))
    assert result.returncode == 3
    assert f"{path}:2: (record): not valid JSON" in result.stderr
    assert f"{path}:3: occurred_at: timestamp must carry a UTC offset" in result.stderr
    assert f"{path}:5: data.severity: Input should be less than or equal to 5" in result.stderr
    assert "sealed 3" in result.stdout
    assert "Traceback" not in result.stderr
    with LedgerStore(settings.store_url) as store:
        assert len(store.stream("c1")) == 2
        assert len(store.stream("c2")) == 1


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cxl(["ingest", str(tmp_path / "nope.jsonl")], cxl_env(Settings(home=tmp_path)))
    assert result.returncode == 2
    assert "nope.jsonl: no such file" in result.stderr


def test_a_pipe_is_read_as_a_file_is(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    events = [event_dict(customer_id="c1", promise_id=f"p{i}") for i in range(3)]
    write_jsonl(tmp_path / "a.jsonl", events)
    piped = run_cxl(
        ["ingest", "/dev/stdin"], cxl_env(settings), input=(tmp_path / "a.jsonl").read_text()
    )
    assert piped.returncode == 0, piped.stderr
    assert "sealed 3" in piped.stdout


def test_an_event_id_reused_under_another_customer_is_rejected_with_its_reason(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    event = event_dict(customer_id="alice")
    write_jsonl(tmp_path / "a.jsonl", [event])
    write_jsonl(tmp_path / "b.jsonl", [{**event, "customer_id": "bob"}])
    assert run_cxl(["ingest", str(tmp_path / "a.jsonl")], cxl_env(settings)).returncode == 0
    second = run_cxl(["ingest", str(tmp_path / "b.jsonl")], cxl_env(settings))
    assert second.returncode == 3
    assert f"{tmp_path / 'b.jsonl'}:1: event_id: event_id reused with different content" in (
        second.stderr
    )
    with LedgerStore(settings.store_url) as store:
        assert store.stream("bob") == []


def test_rejected_lines_are_listed_in_file_order(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    event = event_dict(customer_id="alice")
    write_jsonl(tmp_path / "a.jsonl", [event])
    later = [event_dict(customer_id="bob") for _ in range(8)]
    write_jsonl(tmp_path / "b.jsonl", ["{bad", {**event, "customer_id": "bob"}, *later, "{bad"])
    assert run_cxl(["ingest", str(tmp_path / "a.jsonl")], cxl_env(settings)).returncode == 0
    result = run_cxl(["ingest", str(tmp_path / "b.jsonl")], cxl_env(settings))
    assert result.returncode == 3
    listed = [line for line in result.stderr.splitlines() if line.startswith(str(tmp_path))]
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in listed] == ["1", "2", "11"]
