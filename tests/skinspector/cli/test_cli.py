"""The CLI through click's runner: help everywhere, clear errors, real describe runs."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from skinspector.cli import cli
from skinspector.core.samples import lesion_photo


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


ALL_COMMANDS = _commands(cli)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    # Every command documents itself with at least one sentence.
    assert len(result.output.splitlines()) > 3


def test_sample_photo(tmp_path: Path) -> None:
    out = tmp_path / "x.jpg"
    result = CliRunner().invoke(cli, ["dev", "sample-photo", "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == lesion_photo(1024, 768, seed=3)


def test_describe_rejects_non_image(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    bogus = tmp_path / "note.jpg"
    bogus.write_text("not an image at all")
    result = CliRunner().invoke(
        cli,
        [
            "describe",
            str(bogus),
            "--model",
            str(tiny_model.model),
            "--mmproj",
            str(tiny_model.mmproj),
        ],
    )
    assert result.exit_code == 2
    assert "bad input" in result.output
    assert "Traceback" not in result.output


def test_describe_needs_both_model_files(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.jpg"
    photo.write_bytes(lesion_photo(400, 300))
    result = CliRunner().invoke(cli, ["describe", str(photo), "--model", str(tiny_model.model)])
    assert result.exit_code == 2
    assert "go together" in result.output


def test_describe_reports_model_error(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.jpg"
    photo.write_bytes(lesion_photo(400, 300))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nonsense")
    result = CliRunner().invoke(
        cli, ["describe", str(photo), "--model", str(bad), "--mmproj", str(tiny_model.mmproj)]
    )
    assert result.exit_code == 1
    assert "not a GGUF" in result.output


@pytest.mark.slow
def test_describe_json_with_tiny_model(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.jpg"
    photo.write_bytes(lesion_photo(1600, 1200, seed=4))
    args = [
        "describe",
        str(photo),
        "--model",
        str(tiny_model.model),
        "--mmproj",
        str(tiny_model.mmproj),
        "--json",
        "--seed",
        "7",
        "--max-tokens",
        "16",
        "--language",
        "id",
        "--age",
        "40",
        "--symptom",
        "gatal",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["image"]["width"] % 28 == 0
    assert payload["generation"]["completion_tokens"] == 16
    assessment = payload["assessment"]
    assert assessment["disclaimer"].startswith("Ini adalah alat bantu")
    # A random model states no usable action: the safe default applies and says so.
    assert assessment["action"] in ("routine referral", "urgent referral", "self-care")
    again = CliRunner().invoke(cli, args)
    assert json.loads(again.stdout)["assessment"]["raw_text"] == assessment["raw_text"]


@pytest.mark.slow
def test_describe_stream_with_demo_model(tmp_path: Path, cache_dir: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "p.jpg"
    photo.write_bytes(lesion_photo(800, 600, seed=5))
    result = CliRunner(env={"SKINSPECTOR_CACHE_DIR": str(cache_dir)}).invoke(
        cli, ["describe", str(photo), "--stream", "--max-tokens", "8", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "DEMO model" in result.output
    assert "Recommended action:" in result.output
    assert "decision support, not a diagnosis" in result.output
