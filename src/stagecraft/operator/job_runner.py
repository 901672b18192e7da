"""The migration Job's entry point: run `stagecraft migrate run ... --output json` and leave its
JSON run document in the container's termination message, where the operator reads it.

The kubelet keeps at most 4096 bytes of a termination message and cuts the rest, which would
leave broken JSON; the document is shortened here instead, keeping the outcome and the error and
dropping applied entries from the front first (the latest ones say where the run got to).

Usage: python -m stagecraft.operator.job_runner --termination-message-path PATH -- COMMAND...
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TERMINATION_MESSAGE_LIMIT = 4096
MESSAGE_LIMIT = 1024  # characters kept of an error message when the document is too long


def _encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _shortened_error(error: Any) -> Any:
    if not isinstance(error, dict):
        return error
    shortened = dict(error)
    for key in ("message", "database_message", "detail", "hint"):
        value = shortened.get(key)
        if isinstance(value, str) and len(value) > MESSAGE_LIMIT:
            shortened[key] = value[:MESSAGE_LIMIT] + "…"
    if len(_encoded(shortened)) > MESSAGE_LIMIT * 2:
        shortened.pop("problems", None)  # the message already lists them
    return shortened


def _latest_that_fit(document: dict[str, Any], applied: list[Any], limit: int) -> list[Any]:
    """The longest tail of `applied` with which the document stays within `limit` bytes."""
    room = limit - len(_encoded({**document, "applied": []}))
    kept = 0
    for entry in reversed(applied):
        cost = len(_encoded(entry)) + (1 if kept else 0)  # the comma between entries
        if cost > room:
            break
        room -= cost
        kept += 1
    return applied[len(applied) - kept :]


def fit_termination_message(output: str, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The run document in at most `limit` bytes of valid JSON.

    Output that is not a JSON object (a crash before the CLI could print) is cut to the limit
    as text: the operator reports it as the message of a failed run.
    """
    text = output.strip()
    if len(text.encode()) <= limit:
        return text
    try:
        document = json.loads(text)
    except ValueError:
        return text.encode()[: limit - 3].decode(errors="ignore") + "…"
    if not isinstance(document, dict):
        return text.encode()[: limit - 3].decode(errors="ignore") + "…"
    document["error"] = _shortened_error(document.get("error"))
    applied = list(document.get("applied") or [])
    document["applied_total"] = len(applied)
    document.pop("skipped", None)
    document["applied"] = _latest_that_fit(document, applied, limit)
    encoded = _encoded(document)
    if len(encoded) > limit:  # only a pathological error message can get here
        minimal = {key: document.get(key) for key in ("version", "kind", "status")}
        minimal["error"] = {"message": "run summary too long for the termination message"}
        return _encoded(minimal).decode()
    return encoded.decode()


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) < 4 or arguments[0] != "--termination-message-path" or arguments[2] != "--":
        sys.stderr.write(__doc__ or "")
        return 2
    message_path, command = Path(arguments[1]), arguments[3:]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(completed.stdout)  # the Job's log keeps the whole document
    sys.stdout.flush()
    message_path.write_text(fit_termination_message(completed.stdout), encoding="utf-8")
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
