"""Prometheus metrics of the operator, in the text exposition format, without a client library.

Six series are all the operator needs, so they are kept here in a few lines instead of adding a
dependency: runs started, succeeded and failed (by engine and namespace), a histogram of each
applied migration's duration (by engine), the pending migrations of each resource when known, and
the reconciles waiting for a thread (lanes.py: a queue that stays long is an operator that cannot
keep up).
The reconciler records through `RunMetrics`; `serve_metrics` exposes them on /metrics.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

Labels = tuple[tuple[str, str], ...]
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)


class RunMetrics(Protocol):
    """What the reconciler reports; `OperatorMetrics` implements it."""

    def run_started(self, engine: str, namespace: str) -> None: ...

    def run_finished(
        self, engine: str, namespace: str, succeeded: bool, durations_ms: Sequence[int]
    ) -> None: ...

    def pending(self, namespace: str, name: str, count: int | None) -> None: ...

    def reconciles_queued(self, count: int) -> None: ...


class OperatorMetrics:
    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {
            "stagecraft_runs_started_total": {},
            "stagecraft_runs_succeeded_total": {},
            "stagecraft_runs_failed_total": {},
        }
        self._buckets = tuple(sorted(buckets))
        self._histogram: dict[Labels, list[float]] = {}  # bucket counts, then sum and count
        self._pending: dict[Labels, float] = {}
        self._queued = 0

    def _count(self, name: str, labels: Labels) -> None:
        series = self._counters[name]
        series[labels] = series.get(labels, 0) + 1

    def run_started(self, engine: str, namespace: str) -> None:
        with self._lock:
            self._count(
                "stagecraft_runs_started_total", (("engine", engine), ("namespace", namespace))
            )

    def run_finished(
        self, engine: str, namespace: str, succeeded: bool, durations_ms: Sequence[int]
    ) -> None:
        outcome = "succeeded" if succeeded else "failed"
        with self._lock:
            labels = (("engine", engine), ("namespace", namespace))
            self._count(f"stagecraft_runs_{outcome}_total", labels)
            cells = self._histogram.setdefault(
                (("engine", engine),), [0.0] * (len(self._buckets) + 2)
            )
            for duration_ms in durations_ms:
                seconds = duration_ms / 1000
                for index, bound in enumerate(self._buckets):
                    if seconds <= bound:
                        cells[index] += 1
                cells[-2] += seconds
                cells[-1] += 1

    def pending(self, namespace: str, name: str, count: int | None) -> None:
        with self._lock:
            labels = (("namespace", namespace), ("name", name))
            if count is None:
                self._pending.pop(labels, None)  # unknown is absent, not zero
            else:
                self._pending[labels] = count

    def reconciles_queued(self, count: int) -> None:
        with self._lock:
            self._queued = count

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in self._counters.items():
                lines += [
                    f"# HELP {name} Migration runs ({name.split('_')[2]}).",
                    f"# TYPE {name} counter",
                ]
                lines += [
                    f"{name}{_labels_text(labels)} {_number(v)}"
                    for labels, v in sorted(series.items())
                ]
            lines += self._render_histogram()
            lines += [
                "# HELP stagecraft_pending_migrations Pending migrations of a resource if known.",
                "# TYPE stagecraft_pending_migrations gauge",
            ]
            lines += [
                f"stagecraft_pending_migrations{_labels_text(labels)} {_number(value)}"
                for labels, value in sorted(self._pending.items())
            ]
            lines += [
                "# HELP stagecraft_reconciles_queued Reconciles asked for by watched objects that "
                "wait for a thread.",
                "# TYPE stagecraft_reconciles_queued gauge",
                f"stagecraft_reconciles_queued {self._queued}",
            ]
        return "\n".join(lines) + "\n"

    def _render_histogram(self) -> list[str]:
        name = "stagecraft_migration_duration_seconds"
        lines = [f"# HELP {name} Time each applied migration took.", f"# TYPE {name} histogram"]
        for labels, cells in sorted(self._histogram.items()):
            for index, bound in enumerate((*self._buckets, math.inf)):
                count = cells[index] if index < len(self._buckets) else cells[-1]
                bucket = (*labels, ("le", _number(bound)))
                lines.append(f"{name}_bucket{_labels_text(bucket)} {_number(count)}")
            lines.append(f"{name}_sum{_labels_text(labels)} {_number(cells[-2])}")
            lines.append(f"{name}_count{_labels_text(labels)} {_number(cells[-1])}")
        return lines


def serve_metrics(metrics: OperatorMetrics, address: str, port: int) -> ThreadingHTTPServer:
    """Serve GET /metrics from a daemon thread; the caller stops it with `shutdown()`."""

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # scrapes every few seconds would drown the operator's log

    server = ThreadingHTTPServer((address, port), MetricsHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
