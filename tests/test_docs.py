"""The README documents every CLI command, and its make targets exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from skinspector.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _leaf_commands(group: click.Group, prefix: str = "skinspector") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found += _leaf_commands(command, path) if isinstance(command, click.Group) else [path]
    return found


@pytest.mark.parametrize("command", _leaf_commands(cli))
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`{command}" in README, f"{command} is not documented in README.md"


def test_readme_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make ([a-z-]+)", README)):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"make {target} missing"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in README
