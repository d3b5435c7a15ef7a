"""Contact pressure: inbound vs outbound touchpoints per customer per 30-day window, share automated."""

from __future__ import annotations

from projections.promise_fold import VISIBLE

WINDOW_SECONDS = 30 * 86400

CONTACT_PRESSURE = f"""
SELECT customer_id,
       to_timestamp(floor(epoch(occurred_at) / {WINDOW_SECONDS}) * {WINDOW_SECONDS}) AS window_start,
       count(*) FILTER (WHERE direction = 'inbound') AS inbound,
       count(*) FILTER (WHERE direction = 'outbound') AS outbound,
       round(avg(automated::INTEGER), 4) AS automated_share
FROM touchpoints WHERE {VISIBLE}
GROUP BY ALL
"""
