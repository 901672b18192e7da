"""`python -m stagecraft.operator`: run the operator with settings from the environment."""

from __future__ import annotations

import os
import sys

from .logs import configure_logging
from .main import OperatorConfigError, options_from_environment, run_operator


def main() -> int:
    try:
        options = options_from_environment(os.environ)
    except OperatorConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    # kopf logs through the root logger, which only kopf's own CLI sets up: without this, the
    # chart's operator would say nothing, not even that a handler failed.
    configure_logging()
    run_operator(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
