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
    for target in set(re.findall(r"make ([a-z0-9-]+)", README)):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"make {target} missing"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in README


#: The top-level import packages, as the people this is built for named the folders.
PACKAGES = (
    "skinspector",
    "edge_server",
    "sync_agent",
    "review_hub",
    "updates",
    "training",
    "kb_builder",
    "clients",
)


def test_layout_matches_the_readme() -> None:
    assert not (ROOT / "src").exists()
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), package
        assert f"`{package}/" in README, f"{package}/ is not in the README's package table"
    for folder in ("edge_server", "sync_agent", "review_hub", "updates", "training", "kb_builder"):
        assert (ROOT / "tests" / folder).is_dir(), f"tests/{folder} does not mirror {folder}/"


def test_resources_are_not_found_through_file_paths() -> None:
    """Package files load through importlib.resources, so a wheel runs like a checkout."""
    offenders = [
        f"{path.relative_to(ROOT)}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"Path\(__file__\)|__file__\)\.parent", path.read_text())
    ]
    assert offenders == []
