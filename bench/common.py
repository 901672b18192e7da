"""What the benchmark scripts share: timings over repeats, and their docs/benchmarks.md section."""

from __future__ import annotations

import os
import statistics
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from tests.support.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Timing:
    """Seconds over the repeats: the median is the figure; the minimum shows the noise of a
    shared machine (the work is the same each time, so a slower run waited for something else)."""

    median: float
    minimum: float

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        return cls(statistics.median(seconds), min(seconds))


def timing_of(repeat: int, measure: Callable[[], float]) -> Timing:
    return Timing.of([measure() for _ in range(repeat)])


def machine_note() -> str:
    """The cores and how busy the machine was: these benches run on machines shared with other
    work, whose load moves single runs (the fastest-run column shows by how much)."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cores shared with other work (load average {load} at the end)"


def node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write_results(heading: str, text: str) -> None:
    """Replace one benchmark's section (from `heading` to the next `## `) of docs/benchmarks.md,
    leaving the other sections as they are."""
    existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    start = existing.find(heading)
    if start < 0:
        updated = existing.rstrip("\n") + "\n\n" + text
    else:
        end = existing.find("\n## ", start + len(heading))
        rest = existing[end + 1 :] if end >= 0 else ""
        updated = existing[:start] + text + ("\n" + rest if rest else "")
    RESULTS.write_text(updated, encoding="utf-8")


def fresh_database(server: PostgresServer) -> str:
    """A new empty database on the bench's server; its URL."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    return server.url(name)


def ratios(results: dict[str, Timing], ours: str, theirs: str) -> tuple[float, float]:
    """Stagecraft's time over the tool's: by the medians, and by the fastest runs."""
    return (
        results[ours].median / results[theirs].median,
        results[ours].minimum / results[theirs].minimum,
    )


def timing_rows(results: dict[str, Timing]) -> str:
    """Markdown table rows: measurement, median seconds, fastest seconds."""
    return "\n".join(
        f"| {name} | {timing.median:.2f} | {timing.minimum:.2f} |"
        for name, timing in results.items()
    )
