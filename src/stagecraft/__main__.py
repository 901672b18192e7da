"""`python -m stagecraft`, the same as the `stagecraft` command."""

from stagecraft.cli import main

main()
