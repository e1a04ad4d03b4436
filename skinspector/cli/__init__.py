"""The ``skinspector`` command line: thin commands over library functions.

This is the top floor of the import graph: it may import every package; none imports it.
"""

from __future__ import annotations

from skinspector.cli.main import cli, main

__all__ = ["cli", "main"]
