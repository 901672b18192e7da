"""`make demo` works: the example shop's migrations apply, fail loudly, and recover."""

from __future__ import annotations

import os
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


def test_the_cluster_demo_narrates_the_gate_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """`make demo`: the gate on an emulated cluster with the real operator and runner."""
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "cluster_demo.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        start_new_session=True,  # its own process group, to look for leftovers after
    )
    stdout, stderr = demo.communicate(timeout=300)

    assert demo.returncode == 0, stdout + stderr
    milestones = [
        "1. Installing shop-api 1.4.0",
        "paused by the webhook in the same write",
        "no pod of 1.4.0 has started",
        "the migration succeeded: customers has id, email, name",
        "released: the operator unpaused shop-api",
        "every pod now runs 1.4.0",
        "2. Shipping shop-api 1.5.0",
        "paused by the webhook in the same write",
        "serving 1.4.0: no pod of 1.5.0 has started",
        "customers has id, email, name, loyalty_points",
        "every pod now runs 1.5.0",
        "3. Shipping shop-api 1.6.0",
        "no pod of 1.6.0 has started",
        "the migration failed: Stalled/MigrationFailed",
        'no such column: "emial"',
        "1.5.0 keeps serving",
    ]
    position = 0
    for milestone in milestones:
        found = stdout.find(milestone, position)
        assert found >= 0, f"{milestone!r} missing or out of order in:\n{stdout}"
        position = found + len(milestone)
    assert "released" not in stdout[stdout.index("3. Shipping") : stdout.index("Done")]
    assert list(tmp_path.iterdir()) == []  # its database and cluster folders are gone
    with pytest.raises(ProcessLookupError):  # no process of its group is left running
        os.killpg(demo.pid, 0)
