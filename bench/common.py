"""What the benchmark scripts share: timings over repeats, and their docs/benchmarks.md section."""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
