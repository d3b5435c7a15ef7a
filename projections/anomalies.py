"""Anomalies as of an instant: facts that are sealed but odd. Each resolves when the missing fact arrives.

* outcome before promise — a keep, break or renegotiation of a promise with no ``promise.made`` yet;
* kept twice — keeps adding up to more than the whole promise;
* kept after broken — a keep that occurred after the promise was broken;
* complaint about unknown promise — a complaint citing a promise the customer was never made.
"""

from __future__ import annotations

from projections.promise_fold import EPSILON, VISIBLE

ANOMALIES = f"""
WITH ev AS (SELECT * FROM promise_events WHERE {VISIBLE}),
made AS (SELECT DISTINCT customer_id, promise_id FROM ev WHERE type = 'promise.made'),
broken AS (
    SELECT customer_id, promise_id, min(occurred_at) AS broken_at FROM ev
    WHERE type = 'promise.broken' OR (type = 'promise.renegotiated' AND NOT agreed_by_customer)
    GROUP BY ALL
)
SELECT 'outcome before promise' AS anomaly, customer_id, promise_id AS subject, min(occurred_at) AS occurred_at
FROM ev e WHERE type <> 'promise.made'
  AND NOT EXISTS (SELECT 1 FROM made m WHERE m.customer_id = e.customer_id AND m.promise_id = e.promise_id)
GROUP BY ALL
UNION ALL
SELECT 'kept twice', customer_id, promise_id, max(occurred_at)
FROM ev WHERE type = 'promise.kept' GROUP BY ALL HAVING sum(fraction) > 1 + {EPSILON}
UNION ALL
SELECT 'kept after broken', e.customer_id, e.promise_id, min(e.occurred_at)
FROM ev e JOIN broken b USING (customer_id, promise_id)
WHERE e.type = 'promise.kept' AND e.occurred_at > b.broken_at
GROUP BY ALL
UNION ALL
SELECT 'complaint about unknown promise', c.customer_id, c.complaint_id, min(c.occurred_at)
FROM (SELECT customer_id, complaint_id, occurred_at, unnest(promise_ids) AS promise_id
      FROM complaint_events WHERE type = 'complaint.filed' AND {VISIBLE}) c
WHERE NOT EXISTS (SELECT 1 FROM made m WHERE m.customer_id = c.customer_id AND m.promise_id = c.promise_id)
GROUP BY ALL
"""
