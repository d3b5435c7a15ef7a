"""A realistic, seeded synthetic history for the demo, the tests and the benchmarks.

Shape of the story: several teams promise things through several channels; ``logistics`` makes
ever more promises month after month while keeping a shrinking share of them; broken promises are
followed by complaints that cite them; a slice of customers is contacted far past saturation and
another only ever meets the IVR, and both complain more; a partner promises on the brand's behalf
and some brand promises depend on it; a little noise is realistic too (a keep published before its
promise, a publisher retrying an event).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

TEAMS = ("billing", "logistics", "support", "sales", "partner:acme")
CHANNELS = ("email", "phone", "chat", "store", "web", "app")
KINDS_BY_TEAM = {
    "billing": ("refund", "price"),
    "logistics": ("delivery",),
    "support": ("fix", "callback"),
    "sales": ("price", "feature", "delivery"),
    "partner:acme": ("delivery", "fix"),
}
PURPOSES = ("service", "sales", "marketing", "information", "billing")
CATEGORIES = ("delay", "billing", "quality", "rudeness", "no-callback")


def _iso(t: datetime) -> str:
    return t.isoformat()


class HistoryGenerator:
    """Yields v1 events (dicts) for ``customers`` customers over ``months`` months before ``end``."""

    def __init__(
        self,
        *,
        customers: int = 2000,
        months: int = 12,
        end: datetime = datetime(2026, 10, 1, tzinfo=UTC),
        seed: int = 7,
        promises_per_customer: float = 4.0,
    ) -> None:
        self.customers = customers
        self.months = months
        self.end = end
        self.start = end - timedelta(days=30 * months)
        self.rng = random.Random(seed)
        self.promises_per_customer = promises_per_customer
        self._uuid_rng = random.Random(seed + 1)

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self._uuid_rng.getrandbits(128), version=4))

    def _event(
        self, kind: str, customer: str, at: datetime, source: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "event_id": self._event_id(),
            "type": kind,
            "schema_version": 1,
            "customer_id": customer,
            "occurred_at": _iso(at),
            "source": source,
            "data": data,
        }

    def _kept(
        self, customer: str, at: datetime, source: str, promise_id: str, fraction: float
    ) -> dict[str, Any]:
        return self._event(
            "promise.kept", customer, at, source, {"promise_id": promise_id, "fraction": fraction}
        )

    def _moment(self) -> datetime:
        seconds = self.rng.random() * (self.end - self.start).total_seconds()
        return (self.start + timedelta(seconds=seconds)).replace(microsecond=0)

    def events(self) -> list[dict[str, Any]]:
        """The whole history in publication order: by occurred_at, with a little realistic noise."""
        events: list[dict[str, Any]] = []
        for n in range(self.customers):
            events.extend(self._customer(f"cust-{n:06d}"))
        events.sort(key=lambda e: e["occurred_at"])
        rng = self.rng
        # A few publishers deliver late (out of order) and a few retry (exact duplicates).
        for i in range(0, len(events) - 50, 997):
            j = i + rng.randrange(1, 40)
            events[i], events[j] = events[j], events[i]
        duplicates = [dict(events[i]) for i in range(0, len(events), 211)]
        for dup in duplicates:
            events.insert(rng.randrange(len(events)), dup)
        return events

    def _customer(self, customer: str) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = []
        saturated = rng.random() < 0.08
        # Some customers only ever reach the IVR when they call.
        machines_only = not saturated and rng.random() < 0.1
        touchpoints = rng.randint(2, 6) + (rng.randint(25, 60) if saturated else 0)
        campaign = self._moment()
        inbound_at: list[datetime] = []
        for i in range(touchpoints):
            outbound = saturated or rng.random() < 0.45
            # Saturated customers get a campaign: dozens of outbound contacts within ~45 days.
            if saturated and i >= 6:
                at = min(campaign + timedelta(days=rng.uniform(0, 45)), self.end).replace(
                    microsecond=0
                )
            else:
                at = self._moment()
            ivr = machines_only and not outbound
            if not outbound:
                inbound_at.append(at)
            out.append(
                self._event(
                    "touchpoint.recorded",
                    customer,
                    at,
                    "contact-center",
                    {
                        "channel": "ivr" if ivr else rng.choice(CHANNELS),
                        "direction": "outbound" if outbound else "inbound",
                        "automated": ivr or (outbound and rng.random() < 0.7),
                        "purpose": "marketing" if saturated and outbound else rng.choice(PURPOSES),
                        "outcome": rng.choice(("answered", "no-answer", "resolved", None)),
                        "duration_s": round(rng.uniform(5, 900), 1),
                    },
                )
            )
        promises = max(0, int(rng.gauss(self.promises_per_customer, 1.5)))
        broken_ids: list[tuple[str, datetime]] = []
        for p in range(promises):
            out.extend(self._promise(customer, p, broken_ids))
        for promise_id, broken_at in broken_ids:
            if rng.random() < 0.55:
                filed = broken_at + timedelta(hours=rng.uniform(1, 96))
                if filed < self.end:
                    out.extend(self._complaint(customer, filed, [promise_id]))
        if rng.random() < 0.05:
            out.extend(self._complaint(customer, self._moment(), []))
        # Pushed too hard, or never heard by a person: such customers complain more, soon after.
        if saturated and rng.random() < 0.35:
            filed = campaign + timedelta(days=rng.uniform(5, 25))
            if filed < self.end:
                out.extend(self._complaint(customer, filed.replace(microsecond=0), []))
        if machines_only and inbound_at and rng.random() < 0.3:
            filed = rng.choice(inbound_at) + timedelta(hours=rng.uniform(1, 48))
            if filed < self.end:
                out.extend(self._complaint(customer, filed, []))
        return out

    def _promise(
        self, customer: str, n: int, broken: list[tuple[str, datetime]]
    ) -> list[dict[str, Any]]:
        rng = self.rng
        team = rng.choices(TEAMS, weights=(2, 4, 3, 2, 1))[0]
        made = self._moment()
        month = (made - self.start).days / 30  # 0 … months
        if team == "logistics":
            # The growing team: more of its promises fall late in the window, and it keeps fewer.
            made = (self.start + (self.end - self.start) * (rng.random() ** 0.5)).replace(
                microsecond=0
            )
            month = (made - self.start).days / 30
            p_on_time = max(0.25, 0.85 - 0.05 * month)
        else:
            p_on_time = {"billing": 0.8, "support": 0.7, "sales": 0.65, "partner:acme": 0.55}[team]
        due = made + timedelta(days=rng.choice((1, 2, 3, 5, 7, 14, 30)))
        promise_id = f"{customer}-p{n}"
        source = f"{team.split(':')[0]}-service"
        kind = rng.choice(KINDS_BY_TEAM[team])
        data: dict[str, Any] = {
            "promise_id": promise_id,
            "made_by": team,
            "channel": rng.choice(CHANNELS),
            "kind": kind,
            "due_at": _iso(due),
            "weight": rng.choice((1.0, 1.0, 1.0, 2.0, 0.5)),
            "description": f"{team} promised {customer} an answer by {due:%d %B %Y}",
        }
        # The stakeholder web: the partner promises on the brand's behalf; some of the brand's
        # delivery promises depend on the partner.
        if team == "partner:acme":
            data["on_behalf_of"] = "logistics" if kind == "delivery" else "support"
        elif kind == "delivery" and rng.random() < 0.3:
            data["on_behalf_of"] = "partner:acme"
        out = [self._event("promise.made", customer, made, source, data)]
        roll = rng.random()
        if rng.random() < 0.1:
            agreed = rng.random() < 0.6
            at = made + (due - made) * rng.random()
            new_due = due + timedelta(days=rng.choice((2, 5, 10)))
            out.append(
                self._event(
                    "promise.renegotiated",
                    customer,
                    at,
                    source,
                    {
                        "promise_id": promise_id,
                        "new_due_at": _iso(new_due),
                        "agreed_by_customer": agreed,
                        "reason": "capacity",
                    },
                )
            )
            if not agreed:
                broken.append((promise_id, at))
                return [e for e in out if e["occurred_at"] <= _iso(self.end)]
            due = new_due
        if roll < p_on_time:
            at = made + (due - made) * rng.uniform(0.2, 1.0)
            if rng.random() < 0.1:
                half = made + (at - made) * 0.5
                out.append(self._kept(customer, half, source, promise_id, 0.5))
                out.append(self._kept(customer, at, source, promise_id, 0.5))
            else:
                out.append(self._kept(customer, at, source, promise_id, 1.0))
        elif roll < p_on_time + (1 - p_on_time) * 0.45:
            at = due + timedelta(hours=rng.uniform(1, 240))
            out.append(self._kept(customer, at, source, promise_id, 1.0))
        elif roll < p_on_time + (1 - p_on_time) * 0.8:
            at = due + timedelta(hours=rng.uniform(0, 72))
            out.append(
                self._event(
                    "promise.broken",
                    customer,
                    at,
                    source,
                    {"promise_id": promise_id, "reason": "not delivered"},
                )
            )
            broken.append((promise_id, at))
        # else: nothing heard back: overdue once due, pending before
        return [e for e in out if e["occurred_at"] <= _iso(self.end)]

    def _complaint(
        self, customer: str, filed: datetime, promise_ids: list[str]
    ) -> list[dict[str, Any]]:
        rng = self.rng
        complaint_id = f"{customer}-c{rng.randrange(10**9)}"
        severity = rng.randint(1, 5)
        out = [
            self._event(
                "complaint.filed",
                customer,
                filed,
                "complaints",
                {
                    "complaint_id": complaint_id,
                    "channel": rng.choice(CHANNELS),
                    "category": rng.choice(CATEGORIES),
                    "severity": severity,
                    "promise_ids": promise_ids,
                    "text": f"{customer} complained on {filed:%d %B %Y}; see the call notes",
                },
            )
        ]
        # The more severe, the sooner it is acknowledged — not always within its target.
        acked = filed + timedelta(hours=rng.uniform(0.25, 14 * (6 - severity)))
        if acked < self.end and rng.random() < 0.9:
            out.append(
                self._event(
                    "complaint.acknowledged",
                    customer,
                    acked,
                    "complaints",
                    {"complaint_id": complaint_id},
                )
            )
            resolved = acked + timedelta(hours=rng.uniform(2, 400))
            if resolved < self.end and rng.random() < 0.8:
                out.append(
                    self._event(
                        "complaint.resolved",
                        customer,
                        resolved,
                        "complaints",
                        {
                            "complaint_id": complaint_id,
                            "resolution": "compensated",
                            "customer_satisfied": rng.random() < 0.6,
                        },
                    )
                )
        return out


def write_jsonl(events: list[dict[str, Any]], path: str) -> None:
    import orjson

    with open(path, "wb") as handle:
        for event in events:
            handle.write(orjson.dumps(event) + b"\n")
