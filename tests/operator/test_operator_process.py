"""`python -m stagecraft.operator`, the chart's command, as a process of its own against the
emulator: what it says in its log."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from tests.cli.emulated_cluster import write_kubeconfig
from tests.operator.harness import Cluster

LOG_WAIT_SECONDS = 60.0


async def test_the_operator_process_logs_what_kopf_does(cluster: Cluster, tmp_path: Path) -> None:
    """kopf logs through the root logger, which only kopf's CLI sets up; the chart runs the
    module, which must set it up too, or a failing handler is never told of."""
    await cluster.stop_operator()  # one operator at a time
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", cluster.operator.server)),
        "STAGECRAFT_RUNNER_IMAGE": "registry.example/stagecraft:0.1.0",
        "STAGECRAFT_LIVENESS": "",
        "STAGECRAFT_METRICS_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stagecraft.operator",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    said: list[str] = []
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    try:
        while not any("Activity 'login' succeeded" in line for line in said):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the operator logged no login in {LOG_WAIT_SECONDS} s: {said}"
            try:
                line = await asyncio.wait_for(process.stdout.readline(), remaining)
            except TimeoutError:
                raise AssertionError(f"the operator logged no login, only {said}") from None
            assert line, f"the operator ended ({await process.wait()}) after saying {said}"
            said.append(line.decode(errors="replace"))
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
