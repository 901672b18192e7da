"""The operator's Prometheus metrics, in the text exposition format."""

from __future__ import annotations

import urllib.request

from stagecraft.operator.metrics import OperatorMetrics, serve_metrics


def _lines(metrics: OperatorMetrics) -> list[str]:
    return metrics.render().splitlines()


def test_runs_are_counted_by_engine_and_namespace() -> None:
    metrics = OperatorMetrics()
    metrics.run_started("raw", "shop")
    metrics.run_started("raw", "shop")
    metrics.run_finished("raw", "shop", succeeded=True, durations_ms=[])
    metrics.run_finished("raw", "shop", succeeded=False, durations_ms=[])
    lines = _lines(metrics)
    assert 'stagecraft_runs_started_total{engine="raw",namespace="shop"} 2' in lines
    assert 'stagecraft_runs_succeeded_total{engine="raw",namespace="shop"} 1' in lines
    assert 'stagecraft_runs_failed_total{engine="raw",namespace="shop"} 1' in lines
    assert "# TYPE stagecraft_runs_started_total counter" in lines


def test_migration_durations_fill_cumulative_buckets() -> None:
    metrics = OperatorMetrics(buckets=(0.1, 1.0))
    metrics.run_finished("drizzle", "shop", succeeded=True, durations_ms=[50, 500, 5000])
    lines = _lines(metrics)
    name = "stagecraft_migration_duration_seconds"
    assert f'{name}_bucket{{engine="drizzle",le="0.1"}} 1' in lines
    assert f'{name}_bucket{{engine="drizzle",le="1"}} 2' in lines
    assert f'{name}_bucket{{engine="drizzle",le="+Inf"}} 3' in lines
    assert f'{name}_sum{{engine="drizzle"}} 5.55' in lines
    assert f'{name}_count{{engine="drizzle"}} 3' in lines


def test_pending_gauge_is_absent_when_unknown() -> None:
    metrics = OperatorMetrics()
    metrics.pending("shop", "shop-db", 3)
    assert 'stagecraft_pending_migrations{namespace="shop",name="shop-db"} 3' in _lines(metrics)
    metrics.pending("shop", "shop-db", None)
    assert not any(line.startswith("stagecraft_pending_migrations{") for line in _lines(metrics))


def test_reconciles_waiting_for_a_thread_are_a_gauge() -> None:
    metrics = OperatorMetrics()
    assert "stagecraft_reconciles_queued 0" in _lines(metrics)
    metrics.reconciles_queued(37)
    assert "# TYPE stagecraft_reconciles_queued gauge" in _lines(metrics)
    assert "stagecraft_reconciles_queued 37" in _lines(metrics)


def test_label_values_are_escaped() -> None:
    metrics = OperatorMetrics()
    metrics.run_started('we"ird\\', "shop")
    assert 'stagecraft_runs_started_total{engine="we\\"ird\\\\",namespace="shop"} 1' in _lines(
        metrics
    )


def test_metrics_are_served_over_http() -> None:
    metrics = OperatorMetrics()
    metrics.run_started("raw", "shop")
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            body = response.read().decode()
            content_type = response.headers["Content-Type"]
    finally:
        server.shutdown()
        server.server_close()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'stagecraft_runs_started_total{engine="raw",namespace="shop"} 1' in body
