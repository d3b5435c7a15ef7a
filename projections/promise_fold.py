"""The trust-gap definitions of DESIGN.md, as SQL over ``promise_events``.

As of instant T, only events with ``occurred_at <= T`` count. Per promise:

* due date in force: ``due_at``, replaced by the ``new_due_at`` of the latest renegotiation agreed by
  the customer; a renegotiation *not* agreed breaks the promise at its ``occurred_at``;
* keeps add their fractions in ``occurred_at`` order, the running total capped at 1; a keep at or
  before the due date in force (as of T) is on time (f1), after it late (f2);
* settled: f1 + f2 = 1, or broken; due: due date in force <= T, or settled;
* a due promise of weight w adds f1·w to kept_on_time, f2·w to kept_late and the remainder to broken
  (if broken by T) or overdue; a promise neither due nor settled is pending (all of w).

``fold_sql`` reduces events to one row per promise (the ``promises`` table's columns);
``classify_sql`` applies an instant T to such rows. Fractions are rounded to 12 decimals so that
sums do not depend on the order DuckDB happens to add them in.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPSILON = 1e-9
UNBOUNDED = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""``known_at`` when none is asked for: every sealed event is known."""


def horizon(sql: str, as_of: datetime, known_at: datetime | None = None) -> dict[str, datetime]:
    """The parameters ``sql`` uses of ``$as_of`` (events that occurred by then) and ``$known_at``
    (events the ledger had sealed by then; all of them when None)."""
    values = {"as_of": as_of, "known_at": known_at or UNBOUNDED}
    return {name: value for name, value in values.items() if f"${name}" in sql}


def visible(alias: str = "") -> str:
    """An event counts as of ``$as_of`` when it occurred by then and was known (sealed) by
    ``$known_at``: every projection filters its facts with this one predicate."""
    prefix = f"{alias}." if alias else ""
    return f"({prefix}occurred_at <= $as_of AND {prefix}recorded_at <= $known_at)"


VISIBLE = visible()

FOLD = """
WITH ev AS ({source}),
made AS (
    SELECT customer_id, promise_id, occurred_at AS made_at, made_by, channel, kind, due_at, weight,
           on_behalf_of
    FROM ev WHERE type = 'promise.made'
    QUALIFY row_number() OVER (PARTITION BY customer_id, promise_id ORDER BY occurred_at, position) = 1
),
agreed AS (
    SELECT customer_id, promise_id, new_due_at
    FROM ev WHERE type = 'promise.renegotiated' AND agreed_by_customer
    QUALIFY row_number() OVER (PARTITION BY customer_id, promise_id ORDER BY occurred_at DESC, position DESC) = 1
),
renegotiated AS (
    SELECT customer_id, promise_id, count(*) AS renegotiations
    FROM ev WHERE type = 'promise.renegotiated' GROUP BY ALL
),
breaks AS (
    SELECT customer_id, promise_id, min(occurred_at) AS broken_at
    FROM ev
    WHERE type = 'promise.broken' OR (type = 'promise.renegotiated' AND NOT agreed_by_customer)
    GROUP BY ALL
),
state AS (
    SELECT m.*, coalesce(a.new_due_at, m.due_at) AS due_in_force,
           coalesce(r.renegotiations, 0) AS renegotiations, b.broken_at
    FROM made m
    LEFT JOIN agreed a USING (customer_id, promise_id)
    LEFT JOIN renegotiated r USING (customer_id, promise_id)
    LEFT JOIN breaks b USING (customer_id, promise_id)
),
keeps AS (
    SELECT customer_id, promise_id, occurred_at, position, fraction,
           sum(fraction) OVER (PARTITION BY customer_id, promise_id ORDER BY occurred_at, position
                               ROWS UNBOUNDED PRECEDING) AS running
    FROM ev WHERE type = 'promise.kept'
),
kept AS (
    SELECT k.customer_id, k.promise_id, count(*) AS keeps,
           sum(greatest(0, least(k.running, 1) - least(k.running - k.fraction, 1)))
               FILTER (WHERE k.occurred_at <= s.due_in_force) AS f1,
           sum(greatest(0, least(k.running, 1) - least(k.running - k.fraction, 1)))
               FILTER (WHERE k.occurred_at > s.due_in_force) AS f2,
           min(k.occurred_at) AS first_kept_at, max(k.occurred_at) AS last_kept_at,
           min(k.occurred_at) FILTER (WHERE k.running >= 1 - {eps}) AS fully_kept_at
    FROM keeps k JOIN state s USING (customer_id, promise_id)
    GROUP BY ALL
)
SELECT s.customer_id, s.promise_id, s.made_at, s.made_by, s.channel, s.kind, s.weight,
       s.due_at, s.due_in_force, date_trunc('month', s.due_in_force)::DATE AS due_month,
       s.renegotiations::INTEGER AS renegotiations, s.broken_at,
       coalesce(k.keeps, 0)::INTEGER AS keeps,
       round(coalesce(k.f1, 0), 12) AS kept_on_time_fraction,
       round(coalesce(k.f2, 0), 12) AS kept_late_fraction,
       k.first_kept_at, k.last_kept_at,
       CASE WHEN s.broken_at IS NULL THEN k.fully_kept_at
            WHEN k.fully_kept_at IS NULL THEN s.broken_at
            ELSE least(s.broken_at, k.fully_kept_at) END AS settled_at,
       s.on_behalf_of
FROM state s LEFT JOIN kept k USING (customer_id, promise_id)
"""

# The per-promise predicates of the definitions, shared by the status view and the gap aggregate.
SETTLED_BY_KEEPS = "(kept_on_time_fraction + kept_late_fraction >= 1 - {eps})"
IS_DUE = "(due_in_force <= {t} OR coalesce(settled_at <= {t}, false))"
IS_BROKEN = "coalesce(broken_at <= {t}, false)"
REMAINDER = (
    f"(CASE WHEN {SETTLED_BY_KEEPS} THEN 0 ELSE 1 - kept_on_time_fraction - kept_late_fraction END)"
)

CLASSIFY = f"""
SELECT p.*,
       CASE WHEN NOT is_due THEN 'pending'
            WHEN settled_by_keeps AND kept_late_fraction > 0 THEN 'kept_late'
            WHEN settled_by_keeps THEN 'kept_on_time'
            WHEN is_broken THEN 'broken'
            ELSE 'overdue' END AS status,
       weight AS made_w,
       CASE WHEN is_due THEN weight ELSE 0 END AS due_w,
       CASE WHEN is_due THEN kept_on_time_fraction * weight ELSE 0 END AS kept_on_time_w,
       CASE WHEN is_due THEN kept_late_fraction * weight ELSE 0 END AS kept_late_w,
       CASE WHEN is_due AND is_broken THEN remainder * weight ELSE 0 END AS broken_w,
       CASE WHEN is_due AND NOT is_broken THEN remainder * weight ELSE 0 END AS overdue_w,
       CASE WHEN is_due THEN 0 ELSE weight END AS pending_w
FROM (
    SELECT *, {SETTLED_BY_KEEPS} AS settled_by_keeps, {IS_DUE} AS is_due, {IS_BROKEN} AS is_broken,
           {REMAINDER} AS remainder
    FROM ({{rows}}) base
) p
"""

# The same definitions summed straight from the folded rows: no per-promise columns are built,
# which is what keeps `gap` on 10M promises within its latency budget.
MEASURES = f"""
SELECT {{keys}}
       sum(weight) AS made,
       sum(weight) FILTER (WHERE is_due) AS due,
       sum(kept_on_time_fraction * weight) FILTER (WHERE is_due) AS kept_on_time,
       sum(kept_late_fraction * weight) FILTER (WHERE is_due) AS kept_late,
       sum(remainder * weight) FILTER (WHERE is_due AND is_broken) AS broken,
       sum(remainder * weight) FILTER (WHERE is_due AND NOT is_broken) AS overdue,
       sum(weight) FILTER (WHERE NOT is_due) AS pending
FROM (
    SELECT *, {IS_DUE} AS is_due, {IS_BROKEN} AS is_broken, {REMAINDER} AS remainder
    FROM ({{rows}}) base
) p
"""


AS_KNOWN = """
WITH late AS (
    SELECT DISTINCT customer_id, promise_id FROM promise_events WHERE NOT {visible}
)
SELECT * FROM promises ANTI JOIN late USING (customer_id, promise_id)
UNION ALL BY NAME
SELECT * FROM ({refold})
"""


def as_known_sql() -> str:
    """Folded promise rows as of ``$as_of`` / ``$known_at``: the stored fold, with the promises
    that have an event not yet visible then refolded from their visible events (few, in the
    ordinary case: a promise made after the instant simply has no row)."""
    refold = fold_sql(
        "SELECT e.* FROM promise_events e SEMI JOIN late USING (customer_id, promise_id) "
        f"WHERE {VISIBLE}"
    )
    return AS_KNOWN.format(visible=VISIBLE, refold=refold)


def fold_sql(source: str) -> str:
    """SQL folding the promise events selected by ``source`` into one row per promise."""
    return FOLD.format(source=source, eps=EPSILON)


def classify_sql(rows: str, as_of: str = "$as_of") -> str:
    """SQL adding status and weighted outcome columns as of ``as_of`` to folded promise rows."""
    return CLASSIFY.format(rows=rows, t=as_of, eps=EPSILON)


def measures_sql(rows: str, keys: str, as_of: str = "$as_of") -> str:
    """SQL summing made/due/kept/broken/overdue/pending (weighted) of folded rows, keys first."""
    return MEASURES.format(rows=rows, keys=keys, t=as_of, eps=EPSILON)
