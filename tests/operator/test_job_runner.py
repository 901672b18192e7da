"""The Job entry point leaves a valid JSON run document of at most 4096 bytes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stagecraft.operator.job_runner import fit_termination_message, main


def _run_document(applied: int, message: str = "") -> str:
    return json.dumps(
        {
            "version": 1,
            "kind": "run",
            "status": "failed" if message else "succeeded",
            "applied": [
                {"id": f"{index:04d}_create_table_number_{index}.sql", "duration_ms": index}
                for index in range(applied)
            ],
            "skipped": [],
            "error": {"type": "MigrationFailed", "message": message} if message else None,
        }
    )


def test_short_document_is_kept_as_it_is() -> None:
    document = _run_document(3)
    assert fit_termination_message(document + "\n") == document


@settings(deadline=None)  # speed is not what these properties are about
@given(st.integers(min_value=0, max_value=400), st.text(max_size=6000))
def test_any_document_fits_as_valid_json(applied: int, message: str) -> None:
    fitted = fit_termination_message(_run_document(applied, message))
    assert len(fitted.encode()) <= 4096
    assert json.loads(fitted)["kind"] == "run"


def test_long_document_keeps_the_latest_applied_and_the_total() -> None:
    fitted = json.loads(fit_termination_message(_run_document(300)))
    assert fitted["status"] == "succeeded"
    assert fitted["applied_total"] == 300
    assert fitted["applied"][-1]["id"].startswith("0299_")
    assert len(fitted["applied"]) < 300


def test_long_error_message_is_shortened_not_dropped() -> None:
    fitted = json.loads(fit_termination_message(_run_document(0, "syntax error " * 1000)))
    assert fitted["error"]["message"].startswith("syntax error")
    assert fitted["error"]["type"] == "MigrationFailed"


def test_output_that_is_not_json_is_cut_to_the_limit() -> None:
    assert len(fit_termination_message("x" * 10_000).encode()) <= 4096


def test_main_passes_output_through_and_keeps_the_exit_code(tmp_path: Path) -> None:
    message_path = tmp_path / "termination-log"
    script = 'import sys; print(\'{"kind": "run", "status": "failed"}\'); sys.exit(1)'
    code = main(
        ["--termination-message-path", str(message_path), "--", sys.executable, "-c", script]
    )
    assert code == 1
    assert json.loads(message_path.read_text(encoding="utf-8")) == {
        "kind": "run",
        "status": "failed",
    }


def test_main_refuses_a_malformed_command_line() -> None:
    assert main(["--", "true"]) == 2
