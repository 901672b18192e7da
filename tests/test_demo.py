"""`make demo` works: the example shop's migrations apply, fail loudly, and recover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_tells_the_whole_story_and_exits_cleanly() -> None:
    stagecraft = Path(sys.executable).parent / "stagecraft"
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "STAGECRAFT": str(stagecraft)},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "3 pending" in out
    assert "applied 3 migration(s)" in out
    assert "nothing to apply; database is up to date" in out
    assert "20260104090000_add_loyalty_points.sql:2:1: no such column: emial" in out
    assert "(exit code 1: a migration failed)" in out
    assert "4 applied, 0 pending, 0 problem(s)" in out


def start_cluster_demo(tmp_path: Path) -> subprocess.Popen[str]:
    """`make demo`'s command, in a process group of its own to look for leftovers after."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "cluster_demo.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        start_new_session=True,
    )


def assert_nothing_left(demo: subprocess.Popen[str], tmp_path: Path) -> None:
    assert list(tmp_path.iterdir()) == []  # its database, images and cluster folders are gone
    with pytest.raises(ProcessLookupError):  # no process of its group is left running
        os.killpg(demo.pid, 0)


def test_the_cluster_demo_narrates_the_gate_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """`make demo`: the gate on an emulated cluster with the real operator and runner."""
    demo = start_cluster_demo(tmp_path)
    stdout, stderr = demo.communicate(timeout=300)

    assert demo.returncode == 0, stdout + stderr
    milestones = [
        "kubectl apply: DatabaseMigration shop (raw engine, pre_deploy)",
        "1. Installing shop-api 1.4.0",
        "Deployment shop-api 1.4.0: paused by the gate (pending hash",
        "answer is already paused by the webhook in the same write",
        "created: `stagecraft migrate run` (images shop-api:1.4.0, stagecraft:test)",
        "DatabaseMigration shop: Reconciling/JobRunning",
        "meanwhile nothing serves and no pod of 1.4.0 has started",
        "its pod runs the runner on the SQLite database",
        "schema: customers(id, email, name); orders(",
        ": Complete",
        "Deployment shop-api 1.4.0: unpaused by the operator",
        "pods: 1 x 1.4.0 starting",
        "rolled out: every pod now runs 1.4.0",
        "2. Shipping shop-api 1.5.0",
        "Deployment shop-api 1.5.0: paused by the gate",
        "meanwhile 1.4.0 serves and no pod of 1.5.0 has started",
        "schema: customers(id, email, name, loyalty_points); orders(",
        "4 migrations recorded",
        "Deployment shop-api 1.5.0: unpaused by the operator",
        "pods: 2 x 1.4.0 ready, 1 x 1.5.0 starting",
        "1.4.0 terminating",
        "pods: 2 x 1.5.0 ready",
        "rolled out: every pod now runs 1.5.0",
        "3. Shipping shop-api 1.6.0",
        "Deployment shop-api 1.6.0: paused by the gate",
        "meanwhile 1.5.0 serves and no pod of 1.6.0 has started",
        ": Failed",
        "DatabaseMigration shop: Stalled/MigrationFailed",
        '20260105090000_rename_email.sql:2:1: no such column: "emial"',
        "shop-api stays paused at 1.6.0 and 1.5.0 keeps serving: 2 x 1.5.0 ready",
        "Done",
        "Final schema: customers(id, email, name, loyalty_points); orders(",
        "4 migrations recorded",
    ]
    told = " ".join(stdout.split())  # the operator's messages are wrapped to the terminal
    position = 0
    for milestone in milestones:
        found = told.find(milestone, position)
        assert found >= 0, f"{milestone!r} missing or out of order in:\n{stdout}"
        position = found + len(milestone)
    for version in ("1.4.0", "1.5.0"):  # the release goes first, the run's record follows it
        released = told.index(f"Deployment shop-api {version}: unpaused by the operator")
        rolled_out = told.index(f"rolled out: every pod now runs {version}")
        assert "DatabaseMigration shop: Ready/Succeeded" in told[released:rolled_out], stdout
    broken = stdout[stdout.index("3. Shipping") : stdout.index("Done")]
    assert "unpaused" not in broken  # the broken version is never released,
    assert "1.6.0 starting" not in broken  # none of its pods starts,
    assert "schema:" not in broken  # and the schema does not change
    assert "\033[" not in stdout  # colours only on a terminal
    assert_nothing_left(demo, tmp_path)


@pytest.mark.parametrize(
    "moment",
    [
        "Starting an emulated Kubernetes API",  # while the operator starts
        "meanwhile 1.4.0 serves",  # with a migration Job about to run
        "pods: 2 x 1.4.0 ready, 1 x 1.5.0 starting",  # in the middle of a rollout
    ],
)
def test_the_cluster_demo_cleans_up_on_ctrl_c(tmp_path: Path, moment: str) -> None:
    """Ctrl-C at any moment stops everything it started, removes its files and says so."""
    demo = start_cluster_demo(tmp_path)
    assert demo.stdout is not None
    for line in demo.stdout:
        if moment in line:
            break
    os.killpg(demo.pid, signal.SIGINT)  # as a terminal does: to every process of the group
    _, stderr = demo.communicate(timeout=120)

    assert demo.returncode == 130, stderr
    assert "interrupted; cleaned up" in stderr
    assert_nothing_left(demo, tmp_path)
