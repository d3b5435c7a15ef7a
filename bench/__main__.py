"""Every benchmark in one run, its figures in one place: ``bench/RESULTS.md``.

    python -m bench [--quick] [--ingest-events 200000] [--store sqlite|postgres] [--workers N]
                    [--projection-events 1000000] [--promises 10000000]
                    [--erasure-events 100000] [--forget-history 10000] [--http-events 50000]
                    [--memory-customers 100000,1000000] [--memory-load 100000]
                    [--scale-events 2000000] [--scale-customers 500000]
                    [--output bench/RESULTS.md]

Defaults are the README's sizes; ``--quick`` runs small sizes to check that everything works (its
figures mean little: do not publish them). Each figure is listed with its unit, target (README,
"Benchmarks"), measured value and ratio to the raw baseline measured in the same run, followed by
the facts of the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import erasure, http_ingest, ingest, memory, projections, scale
from bench.figures import Figure, format_value

QUICK = {
    "ingest_events": 20_000,
    "projection_events": 30_000,
    "promises": 500_000,
    "erasure_events": 10_000,
    "forget_history": 1_000,
    "http_events": 5_000,
    "memory_customers": "5000,50000",
    "memory_load": 10_000,
    "scale_events": 20_000,
    "scale_customers": 5_000,
}
DEFAULT_OUTPUT = Path(__file__).with_name("RESULTS.md")


def machine_facts() -> dict[str, str]:
    memory = "unknown"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git commit": commit,
        "cores (nproc)": str(os.cpu_count()),
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def render(
    figures: list[Figure], facts: dict[str, str], settings: dict[str, object], seconds: float
) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench`; every ratio compares two figures of the same run.",
        "",
        "| figure | unit | target | measured | raw baseline | ratio to baseline | target met |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        target = "; ".join(t.describe(f.unit) for t in f.targets) or (f.note or "reported")
        baseline = (
            f"{f.baseline.name.strip()}: {format_value(f.baseline.value, f.baseline.unit)}"
            if f.baseline
            else ""
        )
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        met = {True: "met", False: "**missed**", None: ""}[f.met]
        name = f.name.strip()
        if f.note and f.targets:
            name += f" ({f.note})"
        lines.append(
            f"| {name} | {f.unit} | {target} | {format_value(f.value, f.unit)} | {baseline} "
            f"| {ratio} | {met} |"
        )
    lines += ["", "## Run", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines.append(f"- wall time: {seconds:.0f} s")
    lines += ["", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the run only")
    parser.add_argument("--ingest-events", type=int, default=200_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=None, help="ingest processes")
    parser.add_argument("--projection-events", type=int, default=1_000_000)
    parser.add_argument("--promises", type=int, default=10_000_000)
    parser.add_argument("--erasure-events", type=int, default=100_000)
    parser.add_argument("--forget-history", type=int, default=10_000)
    parser.add_argument("--http-events", type=int, default=50_000)
    parser.add_argument("--memory-customers", default="100000,1000000", help="SMALL,LARGE")
    parser.add_argument("--memory-load", type=int, default=100_000)
    parser.add_argument("--scale-events", type=int, default=2_000_000)
    parser.add_argument("--scale-customers", type=int, default=500_000)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.quick:
        for name, size in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, size)

    small, large = (int(n) for n in str(args.memory_customers).split(","))
    settings: dict[str, object] = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "ingest events": f"{args.ingest_events:,}",
        "store": args.store,
        "projection events": f"{args.projection_events:,}",
        "promises": f"{args.promises:,}",
        "erasure events": f"{args.erasure_events:,}",
        "forget history": f"{args.forget_history:,}",
        "HTTP events": f"{args.http_events:,} (4 client threads)",
        "memory": f"ledgers of {small:,} and {large:,} customers, {args.memory_load:,} events",
        "scale": f"{args.scale_events:,} events, {args.scale_customers:,} customers, "
        "group mode on PostgreSQL at 1, 2, 3 processes",
    }
    if args.quick:
        settings["note"] = "quick run: sizes too small for the figures to mean anything"
    sections: list[Callable[[], list[Figure]]] = [
        lambda: ingest.run(args.ingest_events, args.store, workers=args.workers),
        lambda: projections.run(args.projection_events, args.promises),
        lambda: erasure.run(args.erasure_events, args.forget_history),
        lambda: http_ingest.run(args.http_events),
        lambda: memory.run((small, large), args.memory_load),
        lambda: scale.run(args.scale_events, args.scale_customers),
    ]
    started = time.perf_counter()
    figures: list[Figure] = []
    facts = machine_facts()
    for number, section in enumerate(sections, start=1):
        figures += section()
        print()
        # Written after each section: a run stopped part-way keeps what it measured.
        if number < len(sections):
            settings["incomplete"] = f"{number} of {len(sections)} sections so far"
        else:
            settings.pop("incomplete", None)
        args.output.write_text(render(figures, facts, settings, time.perf_counter() - started))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
