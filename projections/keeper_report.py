"""The report's sections for the people who keep promises: promises at risk, promise inflation, the
stakeholder web, complaint SLAs and contact that serves — each a chart and the numbers it draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb

from ledger.instants import format_duration, parse_severity_targets
from ledger.settings import ComplaintTargets, Settings
from projections.at_risk import DEFAULT_HORIZON, at_risk
from projections.charts import PALETTE, plt, svg_of
from projections.complaint_sla import complaint_sla
from projections.contact_pressure import contact_groups
from projections.inflation import DEFAULT_MONTHS, flagged_groups, inflation
from projections.trust_gap import trust_gap

Section = tuple[str, str, str, list[dict[str, Any]]]
"""(anchor, title, svg, rows)"""


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def _default_targets() -> ComplaintTargets:
    return ComplaintTargets(
        parse_severity_targets(_default("complaint_ack_targets"), "default"),
        parse_severity_targets(_default("complaint_resolve_targets"), "default"),
    )


@dataclass(frozen=True)
class Thresholds:
    """What the report measures against: the at-risk horizon, complaint SLA targets, the
    saturation threshold (``CXL_*`` settings; their defaults when a report has no settings)."""

    horizon: timedelta = DEFAULT_HORIZON
    targets: ComplaintTargets = field(default_factory=_default_targets)
    saturation: int = field(default_factory=lambda: int(_default("contact_saturation")))

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        return cls(settings.horizon, settings.complaint_targets, settings.contact_saturation)


def at_risk_section(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None, t: Thresholds
) -> Section:
    rows = at_risk(con, as_of, t.horizon, known_at=known_at)
    by_team: dict[str, float] = {}
    for row in rows:
        by_team[row["made_by"]] = by_team.get(row["made_by"], 0.0) + row["weight"]
    fig, ax = plt.subplots(figsize=(6, 2.4))
    teams = sorted(by_team) or ["none"]
    ax.barh(teams, [by_team.get(team, 0.0) for team in teams], color="#ff8f00")
    ax.set_xlabel(f"promises at risk in the next {format_duration(t.horizon)} (weighted)")
    title = f"Promises at risk: due in the next {format_duration(t.horizon)}, not settled"
    return "at-risk", title, svg_of(fig), rows


def inflation_section(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> Section:
    rows = inflation(con, as_of, "made_by", DEFAULT_MONTHS, known_at)
    flagged = flagged_groups(rows, "made_by")
    fig, ax = plt.subplots(figsize=(8, 3))
    for n, team in enumerate(flagged):
        points = [(r["month"], r["inflation_index"]) for r in rows if r["made_by"] == team]
        points = [(m, v) for m, v in points if v is not None]
        if not points:
            continue
        months, values = zip(*points, strict=True)
        ax.plot(
            months,
            values,
            color=PALETTE[n % len(PALETTE)],
            linewidth=3 if flagged[team] else 1,
            label=f"{team} (flagged)" if flagged[team] else team,
        )
    ax.axhline(1, color="#757575", linewidth=0.8, linestyle=":")
    ax.set_ylabel(f"inflation index ({DEFAULT_MONTHS}-month)")
    ax.tick_params(axis="x", rotation=45)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, frameon=False, ncol=3)
    title = (
        "Promise inflation by team: promises made growing faster than kept on time "
        f"(flagged after {DEFAULT_MONTHS} consecutive months)"
    )
    return "inflation", title, svg_of(fig), rows


def stakeholder_section(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None
) -> Section:
    rows = [
        r
        for r in trust_gap(con, as_of, ["made_by", "on_behalf_of"], known_at)
        if r["on_behalf_of"] is not None
    ]
    fig, ax = plt.subplots(figsize=(7, 2.6))
    labels = [f"{r['made_by']} → {r['on_behalf_of']}" for r in rows] or ["none"]
    ax.barh(labels, [r["broken"] for r in rows] or [0], color="#c62828", label="broken")
    ax.barh(
        labels,
        [r["overdue"] for r in rows] or [0],
        left=[r["broken"] for r in rows] or [0],
        color="#ff8f00",
        label="overdue",
    )
    ax.set_xlabel("broken and overdue (weighted): made by → on behalf of")
    ax.legend(fontsize=8, frameon=False)
    title = "The stakeholder web: who carries whose broken promises"
    return "stakeholders", title, svg_of(fig), rows


def complaint_sla_section(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None, t: Thresholds
) -> Section:
    rows = complaint_sla(con, as_of, t.targets, ["severity"], known_at)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    severities = [str(r["severity"]) for r in rows]
    width = 0.4
    positions = range(len(rows))
    ax.bar(
        [p - width / 2 for p in positions],
        [r["acknowledged_within_target"] or 0 for r in rows],
        width,
        color="#1565c0",
        label="acknowledged within target",
    )
    ax.bar(
        [p + width / 2 for p in positions],
        [r["resolved_within_target"] or 0 for r in rows],
        width,
        color="#2e7d32",
        label="resolved within target",
    )
    ax.set_xticks(list(positions), severities)
    ax.set_xlabel("severity (5 = most severe)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, frameon=False)
    return "complaint-sla", "Complaint SLAs by severity", svg_of(fig), rows


def complaints_by_team_section(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None, t: Thresholds
) -> Section:
    rows = [
        r
        for r in complaint_sla(con, as_of, t.targets, ["made_by"], known_at)
        if r["made_by"] is not None
    ]
    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.barh(
        [r["made_by"] for r in rows] or ["none"],
        [r["per_100_promises"] or 0 for r in rows] or [0],
        color="#6a1b9a",
    )
    ax.set_xlabel("complaints citing the team's promises, per 100 promises made")
    return "complaints-by-team", "Complaints per 100 promises, by team", svg_of(fig), rows


def contact_section(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None, t: Thresholds
) -> Section:
    rows = contact_groups(con, as_of, t.saturation, known_at)
    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.barh(
        [r["group"] for r in rows][::-1] or ["none"],
        [r["complaints_per_100"] for r in rows][::-1] or [0],
        color="#00838f",
    )
    ax.set_xlabel("complaints per 100 customer-windows of 30 days")
    title = f"Contact that serves, not pushes (saturated: ≥ {t.saturation} outbound in 30 days)"
    return "contact-serves", title, svg_of(fig), rows


def keeper_sections(
    con: duckdb.DuckDBPyConnection, as_of: datetime, known_at: datetime | None, t: Thresholds
) -> list[Section]:
    return [
        at_risk_section(con, as_of, known_at, t),
        inflation_section(con, as_of, known_at),
        stakeholder_section(con, as_of, known_at),
        complaint_sla_section(con, as_of, known_at, t),
        complaints_by_team_section(con, as_of, known_at, t),
        contact_section(con, as_of, known_at, t),
    ]


def keeper_lines(con: duckdb.DuckDBPyConnection, as_of: datetime, t: Thresholds) -> list[str]:
    """The headline of each measure as of ``as_of``, one line each (what ``cxl demo`` prints)."""
    risky = at_risk(con, as_of, t.horizon)
    flagged = [str(g) for g, f in flagged_groups(inflation(con, as_of), "made_by").items() if f]
    sla = complaint_sla(con, as_of, t.targets, ["severity"])
    carried = [r for r in trust_gap(con, as_of, ["made_by", "on_behalf_of"]) if r["on_behalf_of"]]
    contact = {
        r["group"]: r["complaints_per_100"] for r in contact_groups(con, as_of, t.saturation)
    }
    return [
        f"at risk: {len(risky):,} promises due in the next {format_duration(t.horizon)}",
        f"inflation: flagged {', '.join(flagged) or 'none'}",
        "stakeholders: "
        + "; ".join(
            f"{r['made_by']} → {r['on_behalf_of']} gap {r['trust_gap']:.1%}"
            for r in carried
            if r["trust_gap"] is not None
        ),
        "complaints acknowledged within target by severity 1–5: "
        + ", ".join(
            "—"
            if r["acknowledged_within_target"] is None
            else f"{r['acknowledged_within_target']:.0%}"
            for r in sla
        ),
        "complaints per 100 customer-windows: "
        + ", ".join(f"{group} {rate}" for group, rate in contact.items()),
    ]
