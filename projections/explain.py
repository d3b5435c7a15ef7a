"""Drill-down: the promises behind a trust-gap figure, and the sealed events behind each promise.

``explain`` classifies promises exactly as ``trust_gap`` sums them (the same folded rows, as of the
same instant and knowledge), so the amounts it lists add up to the figures ``gap`` prints for the
same filter; each promise carries the ledger coordinates of its events (id, customer seq, ledger
position, seal hash), which ``cxl proof`` and ``cxl verify`` take from there.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from ledger.canonical import format_instant
from ledger.errors import ConfigError
from projections.promise_fold import classify_sql, horizon, visible
from projections.trust_gap import DIMENSIONS, MEASURES, promise_rows_sql

STATUSES = ("kept_on_time", "kept_late", "broken", "overdue", "pending")


def parse_where(text: str | None) -> dict[str, str]:
    """``made_by=X,channel=Y,…`` → {dimension: value}; ``ConfigError`` naming a bad part."""
    where: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or name not in DIMENSIONS:
            raise ConfigError(
                f"--where {part.strip()!r}: expected DIMENSION=VALUE with a dimension from "
                f"{', '.join(DIMENSIONS)}"
            )
        value = value.strip()
        if name == "due_month" and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ConfigError(f"--where due_month={value!r}: expected YYYY-MM")
        where[name] = value
    return where


def where_conditions(where: dict[str, str] | None) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions (over folded promise rows) and their parameters for ``parse_where``'s result."""
    conditions = []
    params: dict[str, Any] = {}
    for number, (name, value) in enumerate((where or {}).items()):
        column = "strftime(due_month, '%Y-%m')" if name == "due_month" else DIMENSIONS[name]
        conditions.append(f"{column} = $w{number}")
        params[f"w{number}"] = value
    return conditions, params


def explain(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    *,
    known_at: datetime | None = None,
    where: dict[str, str] | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """One dict per promise that counts as of ``as_of`` (and ``known_at``) and matches ``where``
    and ``status``: its keys, status, weighted amounts (``gap``'s names) and ``events``."""
    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {status!r}: choose from {', '.join(STATUSES)}")
    conditions, params = where_conditions(where)
    if status is not None:
        conditions.append("status = $status")
        params["status"] = status
    amounts = ", ".join(f"{m}_w AS {m}" if m != "made" else "made_w AS made" for m in MEASURES)
    sql = (
        "SELECT customer_id, promise_id, made_by, on_behalf_of, channel, kind, "
        f"strftime(due_month, '%Y-%m') AS due_month, status, {amounts} "
        f"FROM ({classify_sql(promise_rows_sql(con, as_of, known_at))}) p"
        + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        + " ORDER BY due_month, made_by, customer_id, promise_id"
    )
    cursor = con.execute(sql, {**horizon(sql, as_of, known_at), **params})
    names = [d[0] for d in cursor.description]
    promises = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for promise in promises:
        promise["events"] = []
    _attach_events(con, promises, as_of, known_at)
    return promises


def _attach_events(
    con: duckdb.DuckDBPyConnection,
    promises: list[dict[str, Any]],
    as_of: datetime,
    known_at: datetime | None,
) -> None:
    if not promises:
        return
    by_key = {(p["customer_id"], p["promise_id"]): p for p in promises}
    con.register(
        "explained",
        pa.table(
            {
                "customer_id": [p["customer_id"] for p in promises],
                "promise_id": [p["promise_id"] for p in promises],
            }
        ),
    )
    try:
        sql = (
            "SELECT e.customer_id, e.promise_id, l.event_id, l.type, l.occurred_at, "
            "l.recorded_at, l.seq, l.position, l.hash "
            "FROM promise_events e SEMI JOIN explained USING (customer_id, promise_id) "
            f"JOIN ledger_events l USING (position) WHERE {visible('e')} "
            "ORDER BY e.occurred_at, e.position"
        )
        cursor = con.execute(sql, horizon(sql, as_of, known_at))
        for customer_id, promise_id, *event in cursor.fetchall():
            event_id, kind, occurred_at, recorded_at, seq, position, hash_ = event
            by_key[customer_id, promise_id]["events"].append(
                {
                    "event_id": event_id,
                    "type": kind,
                    "occurred_at": format_instant(occurred_at),
                    "recorded_at": format_instant(recorded_at),
                    "seq": seq,
                    "position": position,
                    "hash": hash_,
                }
            )
    finally:
        con.unregister("explained")
