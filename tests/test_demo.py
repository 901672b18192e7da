"""`make demo` works: the example shop's migrations apply, fail loudly, and recover."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
