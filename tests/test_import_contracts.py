"""The import direction is a checked contract (import-linter, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(found).is_file():
        pytest.skip("import-linter is not installed (the 'dev' extra)")
    return found


def test_import_contracts_hold() -> None:
    done = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


def test_a_broken_contract_is_caught(tmp_path: Path) -> None:
    """The checker really fails: a copy of the core that imports the clinic server."""
    probe = tmp_path / "project"
    probe.mkdir()
    for package in ("skinspector", "edge_server"):
        shutil.copytree(ROOT / package, probe / package, ignore=shutil.ignore_patterns("*.pyc"))
    (probe / "skinspector" / "core" / "leak.py").write_text("import edge_server.app\n")
    # Only the contracts about these two packages apply to the copy.
    (probe / ".importlinter").write_text(
        "[importlinter]\nroot_packages =\n    skinspector\n    edge_server\n\n"
        "[importlinter:contract:core]\nname = core imports no application package\n"
        "type = forbidden\nsource_modules = skinspector.core\nforbidden_modules = edge_server\n"
    )
    done = subprocess.run(
        [_lint_imports(), "--no-cache", "--config", str(probe / ".importlinter")],
        cwd=probe,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert "skinspector.core.leak" in done.stdout
