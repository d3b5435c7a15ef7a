"""Benchmark figures as data: a measured value, its raw baseline from the same run, its targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Target:
    """A bound on a figure's value (``on="value"``) or on its ratio to the baseline."""

    op: Literal[">=", "<="]
    bound: float
    on: Literal["value", "ratio"] = "value"

    def met(self, figure: Figure) -> bool | None:
        measured = figure.value if self.on == "value" else figure.ratio
        if measured is None:
            return None
        return measured >= self.bound if self.op == ">=" else measured <= self.bound

    def describe(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        if self.on == "ratio":
            return f"ratio {sign} {self.bound:.2f}"
        return f"{sign} {self.bound:,.0f} {unit}"


@dataclass
class Figure:
    """One measured figure; ``baseline`` is the raw figure of the same run it is compared with."""

    name: str
    unit: str
    value: float
    baseline: Figure | None = None
    targets: tuple[Target, ...] = ()
    note: str = ""
    details: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.value:
            return None
        return self.value / self.baseline.value

    @property
    def met(self) -> bool | None:
        """True when every target is met, False when one is missed, None without targets."""
        outcomes = [t.met(self) for t in self.targets]
        if not outcomes or any(o is None for o in outcomes):
            return None
        return all(outcomes)


def format_value(value: float, unit: str) -> str:
    if unit in ("s", "ms", "µs/event"):
        return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"
    return f"{value:,.0f}"


def rate(
    name: str,
    count: int,
    seconds: float,
    *,
    baseline: Figure | None = None,
    targets: tuple[Target, ...] = (),
    note: str = "",
) -> Figure:
    """A throughput figure in events/s, printed as the benchmarks always have."""
    value = count / seconds if seconds > 0 else 0.0
    print(f"  {name:<44} {count:>9,} in {seconds:7.2f} s = {value:>10,.0f} events/s")
    return Figure(name, "events/s", value, baseline=baseline, targets=targets, note=note)
