"""``python -m skinspector``: the CLI."""

from skinspector.cli import main

main()
