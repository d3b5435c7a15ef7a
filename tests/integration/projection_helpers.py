"""Seal a small, explicit history into a real SQLite store and project it into a real DuckDB file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from ledger.contract import parse_event
from ledger.store import LedgerStore
from projections.live import open_caught_up
from projections.trust_gap import trust_gap
from tests.events import event_dict, raw


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def promise(
    pid: str, made: str, due: str, *, customer: str = "c1", weight: float = 1.0, **kw: Any
) -> dict:
    return event_dict(
        "promise.made",
        customer_id=customer,
        occurred_at=made,
        promise_id=pid,
        due_at=due,
        weight=weight,
        **kw,
    )


def kept(pid: str, when: str, fraction: float = 1.0, customer: str = "c1") -> dict:
    return event_dict(
        "promise.kept", customer_id=customer, occurred_at=when, promise_id=pid, fraction=fraction
    )


def broken(pid: str, when: str, customer: str = "c1") -> dict:
    return event_dict("promise.broken", customer_id=customer, occurred_at=when, promise_id=pid)


def renegotiated(pid: str, when: str, new_due: str, agreed: bool, customer: str = "c1") -> dict:
    return event_dict(
        "promise.renegotiated",
        customer_id=customer,
        occurred_at=when,
        promise_id=pid,
        new_due_at=new_due,
        agreed_by_customer=agreed,
    )


class ProjectedLedger:
    """A ledger store and its live projections under one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.store = LedgerStore(str(root / "ledger.sqlite"))
        self.path = root / "projections.duckdb"

    def seal(self, events: list[dict]) -> None:
        report = self.store.seal([parse_event(raw(e), "test") for e in events])
        assert not report.rejected

    def projections(self) -> duckdb.DuckDBPyConnection:
        return open_caught_up(self.path, self.store)

    def gap(self, as_of: str, by: list[str] | None = None) -> list[dict[str, Any]]:
        con = self.projections()
        try:
            return trust_gap(con, at(as_of), by or [])
        finally:
            con.close()

    def close(self) -> None:
        self.store.close()
