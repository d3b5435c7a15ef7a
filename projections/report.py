"""``cxl report``: one self-contained HTML file — charts as inline SVG, no scripts, no CDN.

Every chart is followed by the table of the numbers it draws, so the report can be checked (and
copied) without reading pixels.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ledger.store import LedgerStore
from projections.anomalies import ANOMALIES
from projections.charts import PALETTE, plt, svg_of, table_html
from projections.complaints import complaint_summary, complaints_sql
from projections.contact_pressure import CONTACT_PRESSURE
from projections.inflation import flagged_groups
from projections.keeper_report import Thresholds, keeper_sections
from projections.ledger_binding import recorded_mark
from projections.promise_fold import horizon
from projections.targets import refuse_protected, replaced_on_success, require_directory
from projections.trust_gap import classified_promises_sql, trust_gap

OUTCOMES = ("kept_on_time", "kept_late", "broken", "overdue", "pending")
OUTCOME_COLOURS = ("#2e7d32", "#9ccc65", "#c62828", "#ff8f00", "#90a4ae")


def _query(
    con: duckdb.DuckDBPyConnection, sql: str, as_of: datetime, known_at: datetime | None
) -> list[dict[str, Any]]:
    cursor = con.execute(sql, horizon(sql, as_of, known_at))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


SMALL_DUE_SHARE = 0.2
"""A month whose due volume is below this share of the median month's is marked: its gap swings on
a handful of promises."""


def _month_marks(rows: list[dict[str, Any]], as_of: datetime) -> None:
    """Add ``complete`` and ``note`` to monthly rows: a month not over by ``as_of`` is incomplete
    (promises due in it may still be kept on time), and a month with little due is marked."""
    dues = sorted(r["due"] for r in rows)
    median = dues[len(dues) // 2] if dues else 0.0
    current = as_of.astimezone(UTC).strftime("%Y-%m")
    for row in rows:
        notes = []
        if row["due_month"] >= current:
            notes.append("incomplete (month not over)")
        if row["due"] < SMALL_DUE_SHARE * median:
            notes.append(f"small volume (due < {SMALL_DUE_SHARE:.0%} of the median month)")
        row["complete"] = not notes
        row["note"] = "; ".join(notes)


def _monthly_chart(rows: list[dict[str, Any]], value: str, label: str, colour: str) -> str:
    """``value`` by due month as a line over grey bars of the due volume; incomplete or
    small months drawn hollow and dashed."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    volume = ax.twinx()
    months = [r["due_month"] for r in rows]
    volume.bar(months, [r["due"] for r in rows], color="#e0e0e0", zorder=0)
    volume.set_ylabel("due (weighted)", color="#757575")
    ax.set_zorder(volume.get_zorder() + 1)
    ax.patch.set_visible(False)
    values = [r[value] for r in rows]
    ax.plot(months, values, color=colour, linewidth=2, label=label)
    hollow = [(m, v) for m, v, r in zip(months, values, rows, strict=True) if not r["complete"]]
    solid = [(m, v) for m, v, r in zip(months, values, rows, strict=True) if r["complete"]]
    if solid:
        ax.plot(*zip(*solid, strict=True), "o", color=colour, markersize=4)
    if hollow:
        ax.plot(
            *zip(*hollow, strict=True),
            "o",
            markerfacecolor="white",
            markeredgecolor=colour,
            markersize=6,
            label="incomplete or small month",
        )
    ax.set_ylabel(label)
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return svg_of(fig)


def _gap_over_time(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> tuple[str, list[dict[str, Any]]]:
    overall = [r for r in trust_gap(con, as_of, ["due_month"], known_at) if r["due"]]
    _month_marks(overall, as_of)
    rows = [{k: r[k] for k in ("due_month", "due", "trust_gap", "note")} for r in overall]
    return _monthly_chart(overall, "trust_gap", "trust gap (1 − kept on time / due)", "black"), rows


def _kept_late_over_time(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> tuple[str, list[dict[str, Any]]]:
    overall = [r for r in trust_gap(con, as_of, ["due_month"], known_at) if r["due"]]
    _month_marks(overall, as_of)
    for row in overall:
        row["kept_late_share"] = round(row["kept_late"] / row["due"], 9)
    rows = [
        {k: r[k] for k in ("due_month", "due", "kept_late", "kept_late_share", "note")}
        for r in overall
    ]
    svg = _monthly_chart(overall, "kept_late_share", "kept late / due", OUTCOME_COLOURS[1])
    return svg, rows


def _anomalies(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> tuple[str, list[dict[str, Any]]]:
    sql = (
        f"SELECT anomaly, count(*) AS facts, min(occurred_at) AS first, "
        f"max(occurred_at) AS last FROM ({ANOMALIES}) a GROUP BY anomaly ORDER BY anomaly"
    )
    rows = _query(con, sql, as_of, known_at)
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.barh(
        [r["anomaly"] for r in rows] or ["none"], [r["facts"] for r in rows] or [0], color="#5d4037"
    )
    ax.set_xlabel("sealed facts that are odd as of this instant")
    return svg_of(fig), rows


def _gap_bars(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None, dim: str
) -> tuple[str, list[dict[str, Any]]]:
    rows = [r for r in trust_gap(con, as_of, [dim], known_at) if r["due"]]
    fig, ax = plt.subplots(figsize=(5, 2.8))
    ax.barh(
        [str(r[dim]) for r in rows],
        [r["trust_gap"] for r in rows],
        color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))],
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("trust gap")
    return svg_of(fig), rows


def _outcomes(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> tuple[str, list[dict[str, Any]]]:
    rows = trust_gap(con, as_of, ["made_by"], known_at)
    fig, ax = plt.subplots(figsize=(8, 3))
    left = [0.0] * len(rows)
    teams = [r["made_by"] for r in rows]
    for outcome, colour in zip(OUTCOMES, OUTCOME_COLOURS, strict=True):
        values = [r[outcome] for r in rows]
        ax.barh(teams, values, left=left, color=colour, label=outcome.replace("_", " "))
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("promises (weighted)")
    ax.legend(ncol=5, fontsize=8, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return svg_of(fig), rows


def _complaints_vs_broken(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> tuple[str, list[dict[str, Any]]]:
    sql = f"""
        WITH c AS (SELECT strftime(filed_at, '%Y-%m') AS month, count(*) AS complaints,
                          count(*) FILTER (WHERE linked_to_broken_promise) AS citing_broken
                   FROM ({complaints_sql(con, as_of, known_at)}) x GROUP BY 1),
             b AS (SELECT strftime(broken_at, '%Y-%m') AS month, count(*) AS broken_promises
                   FROM ({classified_promises_sql(con, as_of, known_at)}) p WHERE broken_w > 0 GROUP BY 1)
        SELECT month, coalesce(b.broken_promises, 0) AS broken_promises,
               coalesce(c.complaints, 0) AS complaints, coalesce(c.citing_broken, 0) AS citing_broken
        FROM c FULL JOIN b USING (month) ORDER BY month"""
    rows = _query(con, sql, as_of, known_at)
    fig, ax = plt.subplots(figsize=(8, 3))
    months = [r["month"] for r in rows]
    ax.bar(months, [r["broken_promises"] for r in rows], color="#ef9a9a", label="promises broken")
    ax.plot(
        months,
        [r["complaints"] for r in rows],
        color="#6a1b9a",
        marker="o",
        label="complaints filed",
    )
    ax.plot(
        months,
        [r["citing_broken"] for r in rows],
        color="#6a1b9a",
        linestyle="--",
        label="…citing a broken promise",
    )
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=8, frameon=False)
    return svg_of(fig), rows


def _contact_pressure(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> tuple[str, list[dict[str, Any]]]:
    sql = f"""
        SELECT least(outbound, 30) AS outbound_per_30_days, count(*) AS customer_windows,
               round(avg(inbound), 2) AS avg_inbound, round(avg(automated_share), 3) AS automated_share
        FROM ({CONTACT_PRESSURE}) cp GROUP BY 1 ORDER BY 1"""
    rows = _query(con, sql, as_of, known_at)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(
        [r["outbound_per_30_days"] for r in rows],
        [r["customer_windows"] for r in rows],
        color="#00838f",
    )
    ax.set_xlabel("outbound contacts per customer per 30 days (30 = 30 or more)")
    ax.set_ylabel("customer × window")
    ax.set_yscale("log")
    return svg_of(fig), rows


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
.lede{color:#555} .kpis{display:flex;gap:1rem;flex-wrap:wrap} .kpi{background:#f5f5f5;padding:.6rem 1rem;border-radius:6px}
.kpi b{display:block;font-size:1.4rem} figure.chart{margin:0} figure.chart svg{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:.8rem;margin:.6rem 0} th,td{padding:.2rem .5rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left} details summary{cursor:pointer;color:#1565c0}
dl.provenance{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.85rem;color:#444}
dl.provenance dt{font-weight:600} dl.provenance dd{margin:0;word-break:break-all}
"""


@dataclass(frozen=True)
class Provenance:
    """What a report reflects: the ledger (origin), the range of it the projections had applied
    (through a ledger position: that many sealed events, and their Merkle root — what a
    checkpoint of that size signs), and the verification done for it."""

    origin: str
    through_position: int
    events: int
    root: str
    verification: str


def provenance(con: duckdb.DuckDBPyConnection, store: LedgerStore, verification: str) -> Provenance:
    position = recorded_mark(con).position
    size, root = store.checkpoint_through(position)
    return Provenance(
        store.origin, position, size, base64.b64encode(root).decode("ascii"), verification
    )


def write_report(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    to: Path,
    protected: Sequence[Path] = (),
    known_at: datetime | None = None,
    source: Provenance | None = None,
    thresholds: Thresholds | None = None,
) -> None:
    """Render the report as of ``as_of`` (as the ledger knew it at ``known_at``, when given)
    into ``to``, replacing it only once complete; its header states ``source``.

    ``to`` may not be a ``protected`` file (the ledger store, the live projections); its directory
    must exist.
    """
    refuse_protected(to, protected)
    require_directory(to.parent)
    document = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>cx-ledger report</title>"
        f"<style>{CSS}</style></head><body>"
        f"{report_body(con, as_of, known_at, source, thresholds)}</body></html>"
    )
    with replaced_on_success(to) as temporary:
        temporary.write_text(document, encoding="utf-8")


def report_body(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    known_at: datetime | None = None,
    source: Provenance | None = None,
    thresholds: Thresholds | None = None,
) -> str:
    """The report's content (header, figures, charts, tables) as HTML for a page styled by
    ``CSS``: the file ``write_report`` writes, and the live dashboard, show the same."""
    overall = trust_gap(con, as_of, [], known_at)[0]
    complaints = complaint_summary(con, as_of, known_at)
    at = (con, as_of, known_at)
    sections = [
        (
            "gap-over-time",
            "Trust gap over time (by month due, with the due volume)",
            *_gap_over_time(*at),
        ),
        (
            "kept-late",
            "Kept late over time (share of due, by month due)",
            *_kept_late_over_time(*at),
        ),
        ("gap-by-team", "Trust gap by team (made_by)", *_gap_bars(*at, "made_by")),
        ("gap-by-kind", "Trust gap by kind of promise", *_gap_bars(*at, "kind")),
        ("gap-by-channel", "Trust gap by channel", *_gap_bars(*at, "channel")),
        ("outcomes", "Promise outcomes by team (weighted, stacked)", *_outcomes(*at)),
        ("complaints", "Complaints vs broken promises (by month)", *_complaints_vs_broken(*at)),
        ("contact-pressure", "Contact pressure distribution", *_contact_pressure(*at)),
        *keeper_sections(con, as_of, known_at, thresholds or Thresholds()),
        ("anomalies", "Anomalies: sealed facts that are odd", *_anomalies(*at)),
    ]

    rows_of = {anchor: rows for anchor, _, _, rows in sections}

    def kpi(label: str, value: Any) -> str:
        shown = (
            "—"
            if value is None
            else (
                f"{value:.1%}"
                if isinstance(value, float) and value <= 1
                else (value if isinstance(value, str) else f"{value:,}")
            )
        )
        slug = "-".join(label.split()[:2]).strip("()")
        return (
            f"<div class='kpi' data-kpi='{html.escape(slug)}'>{html.escape(label)}"
            f"<b>{html.escape(shown)}</b></div>"
        )

    facts = [
        ("as of", as_of.isoformat()),
        ("known at", "everything sealed" if known_at is None else known_at.isoformat()),
    ]
    if source is not None:
        facts += [
            ("ledger", source.origin),
            (
                "ledger range",
                f"positions 1–{source.through_position:,}: {source.events:,} sealed events"
                + (
                    ""
                    if known_at is None
                    else f" (the figures count only those sealed by {known_at.isoformat()})"
                ),
            ),
            ("checkpoint root", f"{source.root} (tree size {source.events:,})"),
            ("verification", source.verification),
        ]
    header = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    body = [
        "<h1>cx-ledger: promised vs delivered</h1>",
        f"<dl class='provenance'>{header}</dl>",
        "<p class='lede'>Trust gap = 1 − kept on time / due (weighted); definitions in the "
        "README. Months not over yet, or with little due, are drawn hollow and noted in the "
        "numbers: their gap is not settled.</p>",
        "<div class='kpis'>",
        kpi("trust gap", overall["trust_gap"]),
        kpi("promises made (weighted)", round(overall["made"])),
        kpi("due", round(overall["due"])),
        kpi("complaints", complaints["complaints"]),
        kpi("complaints citing a broken promise", complaints["share_linked_to_broken"]),
        kpi("promises at risk", len(rows_of["at-risk"])),
        kpi(
            "teams flagged for inflation",
            ", ".join(
                str(team)
                for team, flag in flagged_groups(rows_of["inflation"], "made_by").items()
                if flag
            )
            or "none",
        ),
        "</div>",
    ]
    for anchor, title, svg, rows in sections:
        body.append(
            f"<section id='{anchor}'><h2>{html.escape(title)}</h2><figure class='chart' data-chart='{anchor}'>"
            f"{svg}</figure><details><summary>numbers behind the chart</summary>{table_html(rows)}</details></section>"
        )
    return "".join(body)
